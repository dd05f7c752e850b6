//! The service-facing API: issue a family, refresh (rotate) a token, revoke.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::decide::{GracePolicy, RevokeOutcome, RevokeRequest, RotateOutcome, RotateRequest};
use crate::error::{Error, Result};
use crate::family::{Family, RevocationReason};
use crate::grace;
use crate::store::FamilyStore;
use crate::token::{FamilyId, Pepper, RefreshToken};

/// Default family lifetime: 30 days.
pub const DEFAULT_FAMILY_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default idle TTL (`REFRESH_TOKEN_TTL`): 7 days.
pub const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(604_800);
/// Default longest access-token lifetime (how long a revoked family stays listed): 1 hour.
pub const DEFAULT_MAX_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The longest subject or client id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 1024;
/// The most scopes a family may have.
pub const MAX_SCOPES: usize = 64;
/// The longest scope token accepted, in bytes.
pub const MAX_SCOPE_BYTES: usize = 256;
/// The longest DPoP key thumbprint accepted, in bytes (a SHA-256 RFC 7638 thumbprint is 43).
pub const MAX_JKT_BYTES: usize = 128;
/// The most audiences a family may have.
pub const MAX_AUDIENCES: usize = 64;
/// The longest custom-claims text a family may keep, in bytes.
pub const MAX_CLAIMS_BYTES: usize = 8 * 1024;

/// What a grant puts in its access tokens beyond subject, client, scopes and DPoP key: kept
/// in the family, so every refresh mints the same (see [`Rotator::issue_with`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantDetails {
    /// The audiences (`aud`).
    pub audience: Vec<String>,
    /// Custom claims: the text of a JSON object (the server checks which claims it allows).
    pub claims_json: Option<String>,
    /// The access-token lifetime asked for, in seconds (`None`, or `Some(0)`, which is kept
    /// as `None`: the server's default).
    pub access_ttl: Option<u32>,
}
/// Upper bound of every configured duration: 10 years.
const MAX_DURATION_SECS: u64 = 10 * 366 * 24 * 3600;

/// How the [`Rotator`] behaves. Built with [`RotatorConfig::builder`]; the defaults are the
/// issue's: 30-day families, 7-day idle TTL, grace off.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotatorConfig {
    family_lifetime: i64,
    idle_ttl: i64,
    grace_window: i64,
    grace_max_uses: u32,
    max_access_token_lifetime: i64,
    require_audience: bool,
}

impl RotatorConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> RotatorConfigBuilder {
        RotatorConfigBuilder {
            config: RotatorConfig::default(),
            error: None,
        }
    }

    /// The family lifetime in seconds (absolute expiry = creation + this; rotation never
    /// extends it).
    pub fn family_lifetime(&self) -> i64 {
        self.family_lifetime
    }

    /// The idle TTL in seconds (renewed by each rotation).
    pub fn idle_ttl(&self) -> i64 {
        self.idle_ttl
    }

    /// The grace window in seconds (0: grace off).
    pub fn grace_window(&self) -> i64 {
        self.grace_window
    }

    /// How many grace retries are answered per rotation.
    pub fn grace_max_uses(&self) -> u32 {
        self.grace_max_uses
    }

    /// The longest access-token lifetime in seconds: how long a revoked family stays on the
    /// revocation list.
    pub fn max_access_token_lifetime(&self) -> i64 {
        self.max_access_token_lifetime
    }

    /// Whether a refresh whose token would name no audience is refused
    /// ([`RotateRequest::require_audience`]).
    pub fn require_audience(&self) -> bool {
        self.require_audience
    }

    /// The grace policy these settings stand for.
    pub fn grace(&self) -> GracePolicy {
        if self.grace_window > 0 && self.grace_max_uses > 0 {
            GracePolicy {
                window: self.grace_window,
                max_uses: self.grace_max_uses,
            }
        } else {
            GracePolicy::OFF
        }
    }
}

impl Default for RotatorConfig {
    fn default() -> Self {
        RotatorConfig {
            family_lifetime: secs(DEFAULT_FAMILY_LIFETIME),
            idle_ttl: secs(DEFAULT_IDLE_TTL),
            grace_window: 0,
            grace_max_uses: 1,
            max_access_token_lifetime: secs(DEFAULT_MAX_ACCESS_TOKEN_LIFETIME),
            require_audience: false,
        }
    }
}

/// Whole seconds of a duration already checked against [`MAX_DURATION_SECS`].
fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs().min(MAX_DURATION_SECS)).unwrap_or(i64::MAX)
}

/// Builds a [`RotatorConfig`]; [`RotatorConfigBuilder::build`] validates.
#[derive(Debug)]
#[must_use]
pub struct RotatorConfigBuilder {
    config: RotatorConfig,
    error: Option<&'static str>,
}

impl RotatorConfigBuilder {
    fn duration(&mut self, d: Duration, what: &'static str) -> i64 {
        if d.as_secs() > MAX_DURATION_SECS {
            self.error.get_or_insert(what);
        }
        secs(d)
    }

    /// The family lifetime (default 30 days); at least one second.
    pub fn family_lifetime(mut self, d: Duration) -> Self {
        self.config.family_lifetime = self.duration(d, "family lifetime over 10 years");
        self
    }

    /// The idle TTL (`REFRESH_TOKEN_TTL`, default 604800 s); at least one second.
    pub fn idle_ttl(mut self, d: Duration) -> Self {
        self.config.idle_ttl = self.duration(d, "idle TTL over 10 years");
        self
    }

    /// The grace window for lost responses (default zero: off). Keep it short (seconds).
    pub fn grace_window(mut self, d: Duration) -> Self {
        self.config.grace_window = self.duration(d, "grace window over 10 years");
        self
    }

    /// How many retries the grace window answers per rotation (default 1).
    pub fn grace_max_uses(mut self, uses: u32) -> Self {
        self.config.grace_max_uses = uses;
        self
    }

    /// The longest access-token lifetime the server issues (default 1 hour): a revoked family
    /// stays on the revocation list this long.
    pub fn max_access_token_lifetime(mut self, d: Duration) -> Self {
        self.config.max_access_token_lifetime =
            self.duration(d, "access-token lifetime over 10 years");
        self
    }

    /// Refuse a refresh whose access token would name no audience: none requested and none in
    /// the grant (a family stored before grants kept their audience). Set it when the caller
    /// has no default audience to mint such a token with (default off). The refusal
    /// ([`Error::AudienceExceeded`], `invalid_target`) is part of the rotation's one atomic
    /// decision: the family is untouched and the token still works once an audience is
    /// requested, and no read of the family precedes the rotation.
    pub fn require_audience(mut self, required: bool) -> Self {
        self.config.require_audience = required;
        self
    }

    /// The validated configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero lifetime or TTL, a duration over 10 years, or grace
    /// enabled with zero uses.
    pub fn build(self) -> Result<RotatorConfig> {
        if let Some(e) = self.error {
            return Err(Error::InvalidConfig(e));
        }
        let c = self.config;
        if c.family_lifetime <= 0 {
            return Err(Error::InvalidConfig("family lifetime must be positive"));
        }
        if c.idle_ttl <= 0 {
            return Err(Error::InvalidConfig("idle TTL must be positive"));
        }
        if c.max_access_token_lifetime <= 0 {
            return Err(Error::InvalidConfig(
                "access-token lifetime must be positive",
            ));
        }
        if c.grace_window > 0 && c.grace_max_uses == 0 {
            return Err(Error::InvalidConfig(
                "grace enabled with zero uses; set the window to zero instead",
            ));
        }
        Ok(c)
    }
}

/// A successful refresh.
#[non_exhaustive]
pub struct RefreshOutcome {
    /// The refresh token to return to the client (the same one again for a grace retry).
    pub token: RefreshToken,
    /// The family after the refresh.
    pub family: Family,
    /// The scopes for the new access token: the requested subset, or all of the family's.
    pub scopes: Vec<String>,
    /// Whether this answered a retry within the grace window (no rotation happened).
    pub is_grace_retry: bool,
}

impl fmt::Debug for RefreshOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshOutcome")
            .field("token", &self.token)
            .field("family", &self.family)
            .field("scopes", &self.scopes)
            .field("is_grace_retry", &self.is_grace_retry)
            .finish()
    }
}

/// Issues, rotates and revokes refresh tokens over a [`FamilyStore`].
///
/// Every method takes the current time (`now`, seconds since the Unix epoch); the library reads
/// no clock. Share one `Rotator` (it is `Send + Sync`) or clone it (cheap).
#[derive(Clone)]
pub struct Rotator {
    store: Arc<dyn FamilyStore>,
    pepper: Pepper,
    config: RotatorConfig,
}

impl fmt::Debug for Rotator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotator")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn check_id(value: &str, what: &'static str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_ID_BYTES || value.chars().any(char::is_control) {
        return Err(Error::InvalidInput(what));
    }
    Ok(())
}

/// RFC 6749 section 3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SCOPE_BYTES
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Deduplicates scopes, keeping the first occurrence's order.
fn dedup(scopes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(scopes.len());
    for s in scopes {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

impl Rotator {
    /// A rotator over `store`, hashing tokens under `pepper`.
    pub fn new(store: Arc<dyn FamilyStore>, pepper: Pepper, config: RotatorConfig) -> Self {
        Rotator {
            store,
            pepper,
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RotatorConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn FamilyStore> {
        &self.store
    }

    fn revocation_ttl(&self) -> i64 {
        self.config.max_access_token_lifetime
    }

    /// Creates a family for a new grant and returns its first refresh token.
    ///
    /// `scopes` are deduplicated; `dpop_jkt` binds the family to a DPoP key for life. The token
    /// is returned only once the family is persisted.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty or oversized subject or client id, a scope that is
    /// not an RFC 6749 scope token, more than [`MAX_SCOPES`] scopes, or an empty or oversized
    /// thumbprint; [`Error::Random`]; any store error ([`Error::Store`]: nothing was issued).
    pub async fn issue(
        &self,
        subject: &str,
        client_id: &str,
        scopes: &[String],
        dpop_jkt: Option<&str>,
        now: i64,
    ) -> Result<(RefreshToken, Family)> {
        self.issue_with(
            subject,
            client_id,
            scopes,
            dpop_jkt,
            &GrantDetails::default(),
            now,
        )
        .await
    }

    /// [`Rotator::issue`] for a grant with audiences, custom claims or an access-token
    /// lifetime, all kept in the family.
    ///
    /// # Errors
    /// As [`Rotator::issue`], and [`Error::InvalidInput`] for more than [`MAX_AUDIENCES`]
    /// audiences, an empty or oversized audience, or claims that are longer than
    /// [`MAX_CLAIMS_BYTES`] or not a JSON object.
    pub async fn issue_with(
        &self,
        subject: &str,
        client_id: &str,
        scopes: &[String],
        dpop_jkt: Option<&str>,
        details: &GrantDetails,
        now: i64,
    ) -> Result<(RefreshToken, Family)> {
        if details.audience.len() > MAX_AUDIENCES {
            return Err(Error::InvalidInput("too many audiences"));
        }
        for audience in &details.audience {
            check_id(
                audience,
                "an audience is empty, too long or has control characters",
            )?;
        }
        if let Some(claims) = &details.claims_json
            && (claims.len() > MAX_CLAIMS_BYTES
                || serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(claims)
                    .is_err())
        {
            return Err(Error::InvalidInput(
                "custom claims are too long or not a JSON object",
            ));
        }
        check_id(
            subject,
            "subject is empty, too long or has control characters",
        )?;
        check_id(
            client_id,
            "client id is empty, too long or has control characters",
        )?;
        if scopes.len() > MAX_SCOPES {
            return Err(Error::InvalidInput("too many scopes"));
        }
        if !scopes.iter().all(|s| is_scope_token(s)) {
            return Err(Error::InvalidInput(
                "a scope is not an RFC 6749 scope token",
            ));
        }
        if let Some(jkt) = dpop_jkt
            && (jkt.is_empty() || jkt.len() > MAX_JKT_BYTES || !jkt.is_ascii())
        {
            return Err(Error::InvalidInput(
                "DPoP key thumbprint is empty, too long or not ASCII",
            ));
        }
        let id = FamilyId::generate()?;
        let token = RefreshToken::generate(id)?;
        let absolute = now.saturating_add(self.config.family_lifetime);
        let family = Family {
            id,
            subject: subject.to_owned(),
            client_id: client_id.to_owned(),
            scopes: dedup(scopes),
            dpop_jkt: dpop_jkt.map(str::to_owned),
            audience: dedup(&details.audience),
            claims_json: details.claims_json.clone(),
            access_ttl: details.access_ttl.filter(|ttl| *ttl > 0),
            created_at: now,
            absolute_expires_at: absolute,
            idle_expires_at: now.saturating_add(self.config.idle_ttl).min(absolute),
            generation: 0,
            current_hash: self.pepper.hash(&token),
            rotated: Vec::new(),
            rotated_at: None,
            grace: None,
            revoked: None,
        };
        self.store.create(&family).await?;
        Ok((token, family))
    }

    /// Redeems a refresh token: rotates the family (or answers a grace retry) in one atomic
    /// store operation, and returns the refresh token for the response.
    ///
    /// `client_id` is the client presenting the token (the family answers its own client
    /// only); `presented_jkt` is the thumbprint of the key of an already validated DPoP
    /// proof, if the request had one; `requested_scopes` and `requested_audience` narrow the
    /// grant for this token only (RFC 6749 section 6, RFC 8707), if given.
    ///
    /// # Errors
    /// Format errors ([`Error::TokenTooLarge`], [`Error::MalformedToken`],
    /// [`Error::TokenChecksum`]) before any store lookup; then [`Error::UnknownFamily`],
    /// [`Error::ForgedToken`], [`Error::ReuseDetected`] (the family is now revoked),
    /// [`Error::Revoked`], [`Error::Expired`], [`Error::ClientMismatch`],
    /// [`Error::DpopProofRequired`], [`Error::DpopKeyMismatch`] (all `invalid_grant`),
    /// [`Error::ScopeExceeded`] (`invalid_scope`), [`Error::AudienceExceeded`]
    /// (`invalid_target`), [`Error::Random`], or [`Error::Store`] (fail closed: no token).
    pub async fn refresh(
        &self,
        token: &str,
        client_id: &str,
        presented_jkt: Option<&str>,
        requested_scopes: Option<&[String]>,
        requested_audience: Option<&[String]>,
        now: i64,
    ) -> Result<RefreshOutcome> {
        let presented = RefreshToken::parse(token)?;
        if client_id.is_empty() || client_id.len() > MAX_ID_BYTES {
            // No family was granted to such a client.
            return Err(Error::ClientMismatch);
        }
        let requested_audience = match requested_audience {
            Some(req) => {
                if req.len() > MAX_AUDIENCES || req.iter().any(|a| a.len() > MAX_ID_BYTES) {
                    return Err(Error::AudienceExceeded);
                }
                Some(dedup(req))
            }
            None => None,
        };
        let requested = match requested_scopes {
            Some(req) => {
                if req.len() > MAX_SCOPES || !req.iter().all(|s| is_scope_token(s)) {
                    // Not a scope the family can have been granted.
                    return Err(Error::ScopeExceeded);
                }
                Some(dedup(req))
            }
            None => None,
        };
        let presented_jkt = match presented_jkt {
            Some(jkt) if jkt.len() > MAX_JKT_BYTES => return Err(Error::DpopKeyMismatch),
            other => other.map(str::to_owned),
        };
        let successor = RefreshToken::generate(presented.family_id())?;
        let grace = self.config.grace();
        let sealed_successor = if grace.is_enabled() {
            Some(grace::seal(&self.pepper, &presented, &successor)?)
        } else {
            None
        };
        let req = RotateRequest {
            family_id: presented.family_id(),
            presented_hash: self.pepper.hash(&presented),
            client_id: client_id.to_owned(),
            presented_jkt,
            requested_scopes: requested,
            requested_audience,
            require_audience: self.config.require_audience,
            new_hash: self.pepper.hash(&successor),
            sealed_successor,
            now,
            idle_ttl: self.config.idle_ttl,
            grace,
            revocation_ttl: self.revocation_ttl(),
        };
        let outcome = self.store.rotate(&req).await?;
        let scopes_for = |family: &Family| {
            req.requested_scopes
                .clone()
                .unwrap_or_else(|| family.scopes.clone())
        };
        match outcome {
            RotateOutcome::Rotated(family) => {
                if family.current_hash != req.new_hash {
                    return Err(Error::store("rotation did not install the successor"));
                }
                Ok(RefreshOutcome {
                    scopes: scopes_for(&family),
                    token: successor,
                    family,
                    is_grace_retry: false,
                })
            }
            RotateOutcome::GraceRetry {
                family,
                sealed_successor,
            } => {
                let again = grace::open(&self.pepper, &presented, &sealed_successor)?;
                // Only ever hand out the family's current token.
                if self.pepper.hash(&again) != family.current_hash {
                    return Err(Error::store("grace successor is not the current token"));
                }
                Ok(RefreshOutcome {
                    scopes: scopes_for(&family),
                    token: again,
                    family,
                    is_grace_retry: true,
                })
            }
            RotateOutcome::Reuse(_) => Err(Error::ReuseDetected),
            RotateOutcome::Forged => Err(Error::ForgedToken),
            RotateOutcome::Revoked => Err(Error::Revoked),
            RotateOutcome::Expired => Err(Error::Expired),
            RotateOutcome::DpopMismatch => Err(if req.presented_jkt.is_none() {
                Error::DpopProofRequired
            } else {
                Error::DpopKeyMismatch
            }),
            RotateOutcome::ScopeExceeded => Err(Error::ScopeExceeded),
            RotateOutcome::AudienceExceeded => Err(Error::AudienceExceeded),
            RotateOutcome::ClientMismatch => Err(Error::ClientMismatch),
            RotateOutcome::NotFound => Err(Error::UnknownFamily),
        }
    }

    /// Revokes the family of a refresh token presented by `client_id` (RFC 7009). Any token
    /// of the family that the store still recognises (current or rotated) proves the right
    /// to revoke, when presented by the family's own client; an unknown one changes nothing
    /// ([`RevokeOutcome::Forged`]), nor does one of another client's family
    /// ([`RevokeOutcome::ClientMismatch`]), nor one of a family the store no longer keeps
    /// ([`RevokeOutcome::NotFound`]: a token proves nothing without its family).
    ///
    /// # Errors
    /// Format errors before any store lookup; [`Error::Store`].
    pub async fn revoke_token(
        &self,
        token: &str,
        client_id: &str,
        now: i64,
    ) -> Result<RevokeOutcome> {
        let presented = RefreshToken::parse(token)?;
        let hash = self.pepper.hash(&presented);
        let req = RevokeRequest {
            reason: RevocationReason::TokenRevoked,
            client_id: Some(client_id.to_owned()),
            now,
            revocation_ttl: self.revocation_ttl(),
        };
        self.store
            .revoke_family(&presented.family_id(), Some(&hash), &req)
            .await
    }

    /// Revokes a family by id (administrative). A family the store no longer keeps (expired
    /// and forgotten) is listed all the same, for the access tokens that outlive it:
    /// [`RevokeOutcome::Tombstoned`].
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn revoke_family(&self, family_id: &FamilyId, now: i64) -> Result<RevokeOutcome> {
        let req = RevokeRequest {
            reason: RevocationReason::FamilyRevoked,
            client_id: None,
            now,
            revocation_ttl: self.revocation_ttl(),
        };
        self.store.revoke_family(family_id, None, &req).await
    }

    /// Revokes every family of `subject` ("sign out everywhere"); returns how many families
    /// this call revoked. Families the store has forgotten but its subject index still names
    /// (until their absolute expiry) are listed as tombstones and not counted.
    ///
    /// # Errors
    /// [`Error::Store`]; families revoked before the failure stay revoked.
    pub async fn revoke_subject(&self, subject: &str, now: i64) -> Result<usize> {
        let req = RevokeRequest {
            reason: RevocationReason::SubjectRevoked,
            client_id: None,
            now,
            revocation_ttl: self.revocation_ttl(),
        };
        self.store.revoke_subject(subject, &req).await
    }

    /// The ids of the subject's families (see [`FamilyStore::families_of`]).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn families_of(&self, subject: &str) -> Result<Vec<FamilyId>> {
        self.store.families_of(subject).await
    }

    /// The stored family, if any.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn family(&self, family_id: &FamilyId) -> Result<Option<Family>> {
        self.store.get(family_id).await
    }

    /// The keyed hash of a token under this rotator's pepper (for tooling; stores never need
    /// it).
    pub fn hash(&self, token: &RefreshToken) -> crate::TokenHash {
        self.pepper.hash(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let c = RotatorConfig::default();
        assert_eq!(c.idle_ttl(), 604_800);
        assert_eq!(c.family_lifetime(), 30 * 86_400);
        assert_eq!(c.grace(), GracePolicy::OFF);
        let c = RotatorConfig::builder()
            .grace_window(Duration::from_secs(10))
            .grace_max_uses(2)
            .build()
            .unwrap();
        assert_eq!(
            c.grace(),
            GracePolicy {
                window: 10,
                max_uses: 2
            }
        );
        assert!(
            RotatorConfig::builder()
                .idle_ttl(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(
            RotatorConfig::builder()
                .family_lifetime(Duration::from_secs(u64::MAX))
                .build()
                .is_err()
        );
        assert!(
            RotatorConfig::builder()
                .grace_window(Duration::from_secs(5))
                .grace_max_uses(0)
                .build()
                .is_err()
        );
    }

    #[test]
    fn scope_tokens() {
        assert!(is_scope_token("orders:read"));
        assert!(!is_scope_token("a b"));
        assert!(!is_scope_token("a\"b"));
        assert!(!is_scope_token("a\\b"));
        assert!(!is_scope_token(""));
        assert_eq!(
            dedup(&["a".into(), "b".into(), "a".into()]),
            vec!["a".to_owned(), "b".to_owned()]
        );
    }
}
