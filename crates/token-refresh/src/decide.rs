//! The rotation and revocation decisions, as pure functions of the stored family and the
//! request.
//!
//! A store runs [`decide`] (or [`decide_revoke`], or [`decide_revoke_absent`] when it has no
//! record of the family) atomically with reading the family and writing the new state back:
//! the memory store under its lock, the Redis store as one Lua script that mirrors these
//! functions step by step. The conformance suite pins the semantics
//! down so every backend agrees.

use subtle::{Choice, ConstantTimeEq};

use crate::family::{
    Family, GraceState, MAX_ROTATED_HASHES, Revocation, RevocationEvent, RevocationReason,
};
use crate::grace::SealedSuccessor;
use crate::token::{FamilyId, TokenHash};

/// The grace policy in force for one rotation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GracePolicy {
    /// Seconds after a rotation during which the immediately previous token is a retry;
    /// `0` turns grace off.
    pub window: i64,
    /// How many retries are answered within the window.
    pub max_uses: u32,
}

impl GracePolicy {
    /// Grace off.
    pub const OFF: GracePolicy = GracePolicy {
        window: 0,
        max_uses: 0,
    };

    /// Whether grace retries can happen under this policy.
    pub fn is_enabled(&self) -> bool {
        self.window > 0 && self.max_uses > 0
    }
}

/// One refresh, as the store sees it: everything [`decide`] needs, prepared by the
/// [`Rotator`](crate::Rotator).
///
/// Exhaustive on purpose, like [`Family`]: a store must honour every field.
#[derive(Clone, Debug)]
pub struct RotateRequest {
    /// The family named by the presented token.
    pub family_id: FamilyId,
    /// The keyed hash of the presented token.
    pub presented_hash: TokenHash,
    /// The client presenting the token; a family answers its own client only.
    pub client_id: String,
    /// The thumbprint of the DPoP key that signed the refresh's proof, if there was a proof.
    pub presented_jkt: Option<String>,
    /// The scopes asked for (deduplicated), or `None` for all of the family's scopes.
    pub requested_scopes: Option<Vec<String>>,
    /// The audiences asked for (deduplicated), or `None` for all of the family's audiences.
    pub requested_audience: Option<Vec<String>>,
    /// Whether the next access token must name an audience of the grant: set when the caller
    /// has no default audience to mint with. A request whose token would have none (the
    /// family has no audience, a family stored before grants kept theirs, and none is
    /// requested) is then refused as `AudienceExceeded`, family untouched, in the same
    /// decision: no separate read before the rotation.
    pub require_audience: bool,
    /// The keyed hash of the successor token, current after a rotation.
    pub new_hash: TokenHash,
    /// The successor sealed under the presented token, kept for grace retries; `Some` exactly
    /// when [`RotateRequest::grace`] is enabled.
    pub sealed_successor: Option<SealedSuccessor>,
    /// The current time (seconds since the Unix epoch).
    pub now: i64,
    /// The idle TTL: a rotation sets the idle expiry to `now + idle_ttl` (capped at the
    /// absolute expiry).
    pub idle_ttl: i64,
    /// The grace policy in force now (not the one at the previous rotation).
    pub grace: GracePolicy,
    /// How long a revocation caused by this request stays on the revocation list.
    pub revocation_ttl: i64,
}

/// What a rotation request came to. The variants carrying a [`Family`] carry the *new* state,
/// which the store must write back atomically with the decision; the others leave the family
/// untouched.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotateOutcome {
    /// The presented token was current: it is retired and `new_hash` is current now.
    Rotated(Family),
    /// The presented token is the immediately previous one, within the grace window and the
    /// use limit (and with the right DPoP key): the same successor is handed out again.
    /// The new state only counts the use.
    GraceRetry {
        /// The new state (one more grace use).
        family: Family,
        /// The successor, sealed under the presented token.
        sealed_successor: SealedSuccessor,
    },
    /// The presented token was rotated before: the family is now revoked
    /// ([`RevocationReason::ReuseDetected`]); the store lists it and publishes the event.
    Reuse(Family),
    /// The token names this family but matches none of its known hashes. Untouched.
    Forged,
    /// The family was already revoked. Untouched.
    Revoked,
    /// The family is past its absolute or idle expiry. Untouched.
    Expired,
    /// The family was granted to another client than the one presenting the token.
    /// Untouched (no rotation, no reuse detection, no revocation).
    ClientMismatch,
    /// The family is DPoP-bound and the presented key differs (or there was no proof).
    /// Untouched.
    DpopMismatch,
    /// The request asked for scopes the family does not have. Untouched.
    ScopeExceeded,
    /// The request asked for audiences the family does not have. Untouched.
    AudienceExceeded,
    /// No such family (never created, or expired and purged).
    NotFound,
}

impl RotateOutcome {
    /// The state the store must write back, if any.
    pub fn new_state(&self) -> Option<&Family> {
        match self {
            RotateOutcome::Rotated(f)
            | RotateOutcome::GraceRetry { family: f, .. }
            | RotateOutcome::Reuse(f) => Some(f),
            _ => None,
        }
    }
}

/// How a presented hash relates to a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    Current,
    /// The token rotated by the last rotation, while the family keeps its grace state.
    Previous,
    /// Any other remembered rotated token.
    Rotated,
    Unknown,
}

fn classify(family: &Family, presented: &TokenHash) -> Known {
    // Every comparison is constant-time and all of them are made, whatever matches.
    let current = family.current_hash.ct_eq(presented);
    let previous = family
        .grace
        .as_ref()
        .map_or(Choice::from(0), |g| g.previous_hash.ct_eq(presented));
    let rotated = family
        .rotated
        .iter()
        .fold(Choice::from(0), |acc, h| acc | h.ct_eq(presented));
    if current.into() {
        Known::Current
    } else if previous.into() {
        Known::Previous
    } else if rotated.into() {
        Known::Rotated
    } else {
        Known::Unknown
    }
}

fn jkt_matches(bound: Option<&str>, presented: Option<&str>) -> bool {
    match (bound, presented) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(b), Some(p)) => b.as_bytes().ct_eq(p.as_bytes()).into(),
    }
}

fn scopes_allowed(family: &Family, requested: Option<&[String]>) -> bool {
    requested.is_none_or(|req| req.iter().all(|s| family.scopes.contains(s)))
}

fn audience_allowed(family: &Family, requested: Option<&[String]>) -> bool {
    requested.is_none_or(|req| req.iter().all(|a| family.audience.contains(a)))
}

/// Whether the next token would name no audience (the requested ones, else the family's).
fn audience_missing(family: &Family, requested: Option<&[String]>) -> bool {
    requested.unwrap_or(&family.audience).is_empty()
}

fn client_matches(family: &Family, presented: &str) -> bool {
    family
        .client_id
        .as_bytes()
        .ct_eq(presented.as_bytes())
        .into()
}

/// Decides a rotation request against the stored family. Pure: the store writes back
/// [`RotateOutcome::new_state`] atomically with having read `family`.
///
/// The steps, in order (the first that applies decides):
///
/// 1. The presented hash is compared (constant time) with the current hash, the grace state's
///    previous hash and every remembered rotated hash. **No match → `Forged`**, whatever the
///    family's state, so a family id alone reveals nothing and changes nothing.
/// 2. **Revoked family → `Revoked`.**
/// 3. **`now >= absolute_expires_at` or `now >= idle_expires_at` → `Expired`.**
/// 4. **`client_id` not the family's → `ClientMismatch`**, family untouched (also for
///    rotated tokens: another client can neither use nor revoke the family).
/// 5. **Bound family (`dpop_jkt` set) and `presented_jkt` absent or different →
///    `DpopMismatch`**, family untouched (also for rotated tokens: a party without the key
///    can use no token of the family, and must not be able to revoke it either). An unbound
///    family accepts any or no key and stays unbound.
/// 6. **Current token**: requested scopes not a subset of the family's → `ScopeExceeded`;
///    requested audiences not a subset, or no audience at all for the next token while
///    [`RotateRequest::require_audience`] is set → `AudienceExceeded`; otherwise **`Rotated`**: generation + 1, the current hash moves to the end of `rotated`
///    (dropping the oldest beyond [`MAX_ROTATED_HASHES`]), `new_hash` becomes current,
///    `rotated_at = now`, `idle_expires_at = min(now + idle_ttl, absolute_expires_at)` (the
///    absolute expiry never moves), and `grace` is replaced by
///    `{previous_hash: old current, sealed_successor, uses: 0, rotated_at: now}` when the
///    request's grace policy is enabled and carries a sealed successor, else cleared.
/// 7. **Previous token** (equal to `grace.previous_hash`): when the request's grace policy is
///    enabled, `now < grace.rotated_at + window` and `grace.uses < max_uses`: requested scopes
///    or audiences not a subset → `ScopeExceeded` / `AudienceExceeded`, else **`GraceRetry`**
///    with `grace.uses + 1` and the sealed successor. Otherwise (grace off, window over, uses
///    exhausted) it is reuse, step 8.
/// 8. **Any other remembered token → `Reuse`**: `revoked = {ReuseDetected, now}`, `grace`
///    cleared (nothing sealed outlives the revocation).
pub fn decide(family: &Family, req: &RotateRequest) -> RotateOutcome {
    let known = classify(family, &req.presented_hash);
    if known == Known::Unknown {
        return RotateOutcome::Forged;
    }
    if family.revoked.is_some() {
        return RotateOutcome::Revoked;
    }
    if family.is_expired(req.now) {
        return RotateOutcome::Expired;
    }
    if !client_matches(family, &req.client_id) {
        return RotateOutcome::ClientMismatch;
    }
    if !jkt_matches(family.dpop_jkt.as_deref(), req.presented_jkt.as_deref()) {
        return RotateOutcome::DpopMismatch;
    }
    let narrowing = if !scopes_allowed(family, req.requested_scopes.as_deref()) {
        Some(RotateOutcome::ScopeExceeded)
    } else if !audience_allowed(family, req.requested_audience.as_deref())
        || (req.require_audience && audience_missing(family, req.requested_audience.as_deref()))
    {
        Some(RotateOutcome::AudienceExceeded)
    } else {
        None
    };
    match known {
        Known::Current => {
            if let Some(refused) = narrowing {
                return refused;
            }
            let mut next = family.clone();
            next.generation = next.generation.saturating_add(1);
            next.rotated.push(family.current_hash);
            if next.rotated.len() > MAX_ROTATED_HASHES {
                let excess = next.rotated.len() - MAX_ROTATED_HASHES;
                next.rotated.drain(..excess);
            }
            next.current_hash = req.new_hash;
            next.rotated_at = Some(req.now);
            next.idle_expires_at = req
                .now
                .saturating_add(req.idle_ttl)
                .min(family.absolute_expires_at);
            next.grace = match (&req.sealed_successor, req.grace.is_enabled()) {
                (Some(sealed), true) => Some(GraceState {
                    previous_hash: family.current_hash,
                    sealed_successor: sealed.clone(),
                    uses: 0,
                    rotated_at: req.now,
                }),
                _ => None,
            };
            RotateOutcome::Rotated(next)
        }
        Known::Previous => match &family.grace {
            Some(g)
                if req.grace.is_enabled()
                    && req.now < g.rotated_at.saturating_add(req.grace.window)
                    && g.uses < req.grace.max_uses =>
            {
                if let Some(refused) = narrowing {
                    return refused;
                }
                let mut next = family.clone();
                let sealed = g.sealed_successor.clone();
                if let Some(ng) = next.grace.as_mut() {
                    ng.uses = ng.uses.saturating_add(1);
                }
                RotateOutcome::GraceRetry {
                    family: next,
                    sealed_successor: sealed,
                }
            }
            _ => RotateOutcome::Reuse(revoked(family, RevocationReason::ReuseDetected, req.now)),
        },
        Known::Rotated | Known::Unknown => {
            RotateOutcome::Reuse(revoked(family, RevocationReason::ReuseDetected, req.now))
        }
    }
}

fn revoked(family: &Family, reason: RevocationReason, now: i64) -> Family {
    let mut next = family.clone();
    next.revoked = Some(Revocation { reason, at: now });
    next.grace = None;
    next
}

/// One revocation (of a family, or of each family of a subject), as the store sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeRequest {
    /// Why.
    pub reason: RevocationReason,
    /// With a revocation by token: the client presenting it (a family is revoked by its own
    /// client only). `None` for the operator's revocations by family id or subject.
    pub client_id: Option<String>,
    /// The current time.
    pub now: i64,
    /// How long the family stays on the revocation list (the longest access-token lifetime).
    pub revocation_ttl: i64,
}

/// What a revocation came to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per request, moved once; boxing would cost an allocation for nothing"
)]
pub enum RevokeOutcome {
    /// The family is revoked now; the store writes this state back, lists the family and
    /// publishes the event.
    Revoked(Family),
    /// It was revoked before; nothing changed (no new list entry, no event).
    AlreadyRevoked,
    /// A token was presented as proof and matches none of the family's hashes. Untouched.
    Forged,
    /// The token was presented by another client than the family's. Untouched.
    ClientMismatch,
    /// No such family, for a revocation by token (a token proves nothing without its
    /// family): nothing is listed.
    NotFound,
    /// An operator's revocation (by family id or subject) of a family the store has no record
    /// of: it expired and was forgotten (or was never stored). Its access tokens may still be
    /// alive (they may outlive the record by up to their lifetime), so the store lists its id
    /// anyway: this entry, written and published like that of [`RevokeOutcome::Revoked`]
    /// (reason, `revoked_at = now`, `listed_until = now + revocation_ttl`). No family is
    /// revoked: a count of revoked families counts it 0.
    Tombstoned(RevocationEvent),
}

/// Decides a revocation against the stored family. Pure, like [`decide`].
///
/// 1. With `presented_hash` (revocation by token): no match with the current, previous or a
///    remembered rotated hash → `Forged` (a family id alone cannot revoke).
/// 2. With a `client_id` in the request that is not the family's → `ClientMismatch`.
/// 3. Already revoked → `AlreadyRevoked`.
/// 4. Otherwise `Revoked`: `revoked = {reason, now}`, `grace` cleared. Expired families are
///    revoked too: access tokens minted shortly before the expiry may still be alive.
pub fn decide_revoke(
    family: &Family,
    presented_hash: Option<&TokenHash>,
    req: &RevokeRequest,
) -> RevokeOutcome {
    if let Some(h) = presented_hash
        && classify(family, h) == Known::Unknown
    {
        return RevokeOutcome::Forged;
    }
    if let Some(client) = req.client_id.as_deref()
        && !client_matches(family, client)
    {
        return RevokeOutcome::ClientMismatch;
    }
    if family.revoked.is_some() {
        return RevokeOutcome::AlreadyRevoked;
    }
    RevokeOutcome::Revoked(revoked(family, req.reason, req.now))
}

/// Decides a revocation of `family_id` when the store has no record of it (the family expired
/// and was forgotten, or never existed). Pure, like [`decide_revoke`]; `listed` is the
/// family's revocation-list entry, if the store still has one (lapsed or not).
///
/// 1. A revocation by token (`presented_hash` or `req.client_id` set) → `NotFound`: a token
///    proves nothing without its family, so nothing is listed.
/// 2. An entry listed at `req.now` → `AlreadyRevoked`: the family was revoked (or tombstoned)
///    before; no access token was minted since, so that entry already covers them all.
///    Nothing changes.
/// 3. Otherwise `Tombstoned`: the entry `{family_id, reason, now, now + revocation_ttl}`,
///    which the store writes (replacing a lapsed one) and publishes. Access tokens outlive
///    the family record (a family idle for its idle TTL is forgotten while a token minted at
///    its last refresh lives on), so an operator's revocation must still reach them.
pub fn decide_revoke_absent(
    family_id: &FamilyId,
    presented_hash: Option<&TokenHash>,
    listed: Option<&RevocationEvent>,
    req: &RevokeRequest,
) -> RevokeOutcome {
    if presented_hash.is_some() || req.client_id.is_some() {
        return RevokeOutcome::NotFound;
    }
    if listed.is_some_and(|e| e.is_listed(req.now)) {
        return RevokeOutcome::AlreadyRevoked;
    }
    RevokeOutcome::Tombstoned(RevocationEvent {
        family_id: *family_id,
        reason: req.reason,
        revoked_at: req.now,
        listed_until: req.now.saturating_add(req.revocation_ttl),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> TokenHash {
        TokenHash::from_bytes([b; 32])
    }

    fn family() -> Family {
        Family {
            id: FamilyId::from_bytes([1; 16]),
            subject: "alice".into(),
            client_id: "app".into(),
            scopes: vec!["a".into(), "b".into()],
            dpop_jkt: None,
            audience: vec!["https://api".into(), "https://b".into()],
            claims_json: Some(r#"{"tenant":"t-42"}"#.into()),
            access_ttl: Some(120),
            created_at: 0,
            absolute_expires_at: 1000,
            idle_expires_at: 100,
            generation: 0,
            current_hash: h(1),
            rotated: vec![],
            rotated_at: None,
            grace: None,
            revoked: None,
        }
    }

    fn req(presented: TokenHash, new: TokenHash, now: i64) -> RotateRequest {
        RotateRequest {
            family_id: FamilyId::from_bytes([1; 16]),
            presented_hash: presented,
            client_id: "app".into(),
            presented_jkt: None,
            requested_scopes: None,
            requested_audience: None,
            require_audience: false,
            new_hash: new,
            sealed_successor: None,
            now,
            idle_ttl: 100,
            grace: GracePolicy::OFF,
            revocation_ttl: 60,
        }
    }

    #[test]
    fn rotation_caps_idle_at_absolute_and_bounds_history() {
        let mut f = family();
        for i in 0..70u8 {
            let now = 10 * i64::from(i);
            match decide(&f, &req(f.current_hash, h(i + 2), now)) {
                RotateOutcome::Rotated(n) => f = n,
                other => panic!("{other:?}"),
            }
            assert_eq!(f.idle_expires_at, (now + 100).min(1000));
        }
        assert_eq!(f.generation, 70);
        assert_eq!(f.rotated.len(), MAX_ROTATED_HASHES);
        // h(1) was dropped from history: forged, not reuse.
        assert_eq!(decide(&f, &req(h(1), h(200), 695)), RotateOutcome::Forged);
        assert!(matches!(
            decide(&f, &req(h(10), h(200), 695)),
            RotateOutcome::Reuse(_)
        ));
    }

    #[test]
    fn order_of_checks() {
        let mut f = family();
        f.dpop_jkt = Some("k".into());
        // Unknown before everything.
        f.revoked = Some(Revocation {
            reason: RevocationReason::FamilyRevoked,
            at: 1,
        });
        assert_eq!(decide(&f, &req(h(9), h(2), 5)), RotateOutcome::Forged);
        assert_eq!(decide(&f, &req(h(1), h(2), 5)), RotateOutcome::Revoked);
        f.revoked = None;
        assert_eq!(decide(&f, &req(h(1), h(2), 100)), RotateOutcome::Expired);
        let mut other_client = req(h(1), h(2), 5);
        other_client.client_id = "app2".into();
        other_client.presented_jkt = Some("k".into());
        assert_eq!(decide(&f, &other_client), RotateOutcome::ClientMismatch);
        assert_eq!(decide(&f, &req(h(1), h(2), 5)), RotateOutcome::DpopMismatch);
        let mut r = req(h(1), h(2), 5);
        r.presented_jkt = Some("k".into());
        r.requested_scopes = Some(vec!["c".into()]);
        assert_eq!(decide(&f, &r), RotateOutcome::ScopeExceeded);
        r.requested_scopes = Some(vec!["b".into()]);
        r.requested_audience = Some(vec!["https://elsewhere".into()]);
        assert_eq!(decide(&f, &r), RotateOutcome::AudienceExceeded);
        r.requested_audience = Some(vec!["https://b".into()]);
        let RotateOutcome::Rotated(next) = decide(&f, &r) else {
            panic!("a narrowing refresh rotates")
        };
        // The grant is kept whole: narrowing is per token, never stored.
        assert_eq!(
            (
                &next.scopes,
                &next.audience,
                &next.claims_json,
                next.access_ttl
            ),
            (&f.scopes, &f.audience, &f.claims_json, f.access_ttl)
        );
    }

    #[test]
    fn a_grant_without_audience_is_refused_only_when_one_is_required() {
        let mut f = family();
        f.audience.clear();
        let mut r = req(h(1), h(2), 5);
        assert!(matches!(decide(&f, &r), RotateOutcome::Rotated(_)));
        r.require_audience = true;
        assert_eq!(decide(&f, &r), RotateOutcome::AudienceExceeded);
        // An empty requested list names no audience either.
        r.requested_audience = Some(vec![]);
        assert_eq!(decide(&f, &r), RotateOutcome::AudienceExceeded);
        // A grant with audiences satisfies it, narrowed or not.
        let f = family();
        r.requested_audience = None;
        assert!(matches!(decide(&f, &r), RotateOutcome::Rotated(_)));
        r.requested_audience = Some(vec!["https://b".into()]);
        assert!(matches!(decide(&f, &r), RotateOutcome::Rotated(_)));
        // The previous token's grace retry is refused the same way, and nothing changes.
        let mut f = family();
        f.audience.clear();
        f.grace = Some(crate::GraceState {
            previous_hash: h(0),
            sealed_successor: crate::SealedSuccessor::from_bytes(vec![1]).unwrap(),
            uses: 0,
            rotated_at: 4,
        });
        let mut retry = req(h(0), h(2), 5);
        retry.grace = GracePolicy {
            window: 10,
            max_uses: 1,
        };
        retry.require_audience = true;
        assert_eq!(decide(&f, &retry), RotateOutcome::AudienceExceeded);
    }

    #[test]
    fn a_rotated_token_of_another_client_is_no_reuse() {
        let f = family();
        let RotateOutcome::Rotated(f) = decide(&f, &req(h(1), h(2), 5)) else {
            panic!()
        };
        let mut r = req(h(1), h(3), 6);
        r.client_id = "app2".into();
        assert_eq!(decide(&f, &r), RotateOutcome::ClientMismatch);
        assert!(matches!(
            decide(&f, &req(h(1), h(3), 6)),
            RotateOutcome::Reuse(_)
        ));
    }

    #[test]
    fn revoke_decisions() {
        let f = family();
        let mut r = RevokeRequest {
            reason: RevocationReason::TokenRevoked,
            client_id: Some("app2".into()),
            now: 5,
            revocation_ttl: 60,
        };
        assert_eq!(decide_revoke(&f, Some(&h(7)), &r), RevokeOutcome::Forged);
        assert_eq!(
            decide_revoke(&f, Some(&h(1)), &r),
            RevokeOutcome::ClientMismatch
        );
        r.client_id = Some("app".into());
        let RevokeOutcome::Revoked(n) = decide_revoke(&f, Some(&h(1)), &r) else {
            panic!()
        };
        assert_eq!(
            n.revoked,
            Some(Revocation {
                reason: RevocationReason::TokenRevoked,
                at: 5
            })
        );
        assert_eq!(decide_revoke(&n, None, &r), RevokeOutcome::AlreadyRevoked);
    }

    #[test]
    fn revoking_an_absent_family_lists_a_tombstone_for_an_operator_only() {
        let id = FamilyId::from_bytes([1; 16]);
        let operator = RevokeRequest {
            reason: RevocationReason::SubjectRevoked,
            client_id: None,
            now: 500,
            revocation_ttl: 990,
        };
        let tombstone = RevocationEvent {
            family_id: id,
            reason: RevocationReason::SubjectRevoked,
            revoked_at: 500,
            listed_until: 1490,
        };
        assert_eq!(
            decide_revoke_absent(&id, None, None, &operator),
            RevokeOutcome::Tombstoned(tombstone)
        );
        // By token, with or without a client: nothing to prove the right to revoke.
        let by_token = RevokeRequest {
            reason: RevocationReason::TokenRevoked,
            client_id: Some("app".into()),
            ..operator.clone()
        };
        assert_eq!(
            decide_revoke_absent(&id, Some(&h(1)), None, &by_token),
            RevokeOutcome::NotFound
        );
        assert_eq!(
            decide_revoke_absent(&id, None, None, &by_token),
            RevokeOutcome::NotFound
        );
        assert_eq!(
            decide_revoke_absent(&id, Some(&h(1)), None, &operator),
            RevokeOutcome::NotFound
        );
        // Listed: already covered, until the entry lapses; then a new tombstone.
        let earlier = RevocationEvent {
            reason: RevocationReason::ReuseDetected,
            revoked_at: 100,
            listed_until: 501,
            ..tombstone
        };
        assert_eq!(
            decide_revoke_absent(&id, None, Some(&earlier), &operator),
            RevokeOutcome::AlreadyRevoked
        );
        let lapsed = RevocationEvent {
            listed_until: 500,
            ..earlier
        };
        assert_eq!(
            decide_revoke_absent(&id, None, Some(&lapsed), &operator),
            RevokeOutcome::Tombstoned(tombstone)
        );
    }
}
