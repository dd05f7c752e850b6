//! [`AccessTokenBuilder`]: the claims of an RFC 9068 access token, with `iat`, `exp` and a
//! random `jti` filled from the time and lifetime you pass in.

use serde_json::Value;

use crate::b64;
use crate::claims::{Audience, Claims, Confirmation, CustomClaims};
use crate::error::{Error, Result};

/// Builds the claims of an access token. Time is a parameter of [`AccessTokenBuilder::build`];
/// the library never reads the clock.
#[derive(Clone, Debug)]
pub struct AccessTokenBuilder {
    claims: Claims,
    ttl: u64,
}

impl AccessTokenBuilder {
    /// Claims issued by `issuer` that live `ttl_seconds`.
    pub fn new(issuer: impl Into<String>, ttl_seconds: u64) -> Self {
        let claims = Claims {
            iss: Some(issuer.into()),
            ..Claims::default()
        };
        AccessTokenBuilder {
            claims,
            ttl: ttl_seconds,
        }
    }

    /// `sub`.
    #[must_use]
    pub fn subject(mut self, sub: impl Into<String>) -> Self {
        self.claims.sub = Some(sub.into());
        self
    }

    /// `aud`: one value becomes a string, several an array, none removes it.
    #[must_use]
    pub fn audience<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.claims.aud = Audience::from_list(audiences);
        self
    }

    /// `client_id`.
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.claims.client_id = Some(client_id.into());
        self
    }

    /// `scope`, joined with spaces; no scopes removes it.
    #[must_use]
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined = scopes
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .collect::<Vec<_>>()
            .join(" ");
        self.claims.scope = (!joined.is_empty()).then_some(joined);
        self
    }

    /// `auth_time`.
    #[must_use]
    pub fn auth_time(mut self, t: i64) -> Self {
        self.claims.auth_time = Some(t);
        self
    }

    /// `acr`.
    #[must_use]
    pub fn acr(mut self, acr: impl Into<String>) -> Self {
        self.claims.acr = Some(acr.into());
        self
    }

    /// `amr`.
    #[must_use]
    pub fn amr<I, S>(mut self, amr: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.claims.amr = Some(amr.into_iter().map(Into::into).collect());
        self
    }

    /// `cnf.jkt`: binds the token to a DPoP key thumbprint.
    #[must_use]
    pub fn dpop_jkt(mut self, jkt: impl Into<String>) -> Self {
        self.claims.cnf = Some(Confirmation::jkt(jkt));
        self
    }

    /// `sid`.
    #[must_use]
    pub fn session_id(mut self, sid: impl Into<String>) -> Self {
        self.claims.sid = Some(sid.into());
        self
    }

    /// `nbf`.
    #[must_use]
    pub fn not_before(mut self, nbf: i64) -> Self {
        self.claims.nbf = Some(nbf);
        self
    }

    /// Adds a custom claim.
    ///
    /// # Errors
    /// [`Error::ReservedClaim`] when `name` is registered.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Result<Self> {
        self.claims.custom.insert(name, value)?;
        Ok(self)
    }

    /// Replaces the custom claims.
    #[must_use]
    pub fn custom_claims(mut self, custom: CustomClaims) -> Self {
        self.claims.custom = custom;
        self
    }

    /// The claims at time `now` (seconds since the epoch): `iat = now`, `exp = now + ttl`,
    /// `jti` = 128 random bits from the OS, base64url.
    ///
    /// # Errors
    /// [`Error::Random`] if the OS generator fails; [`Error::InvalidClaim`] if `exp`
    /// overflows.
    pub fn build(self, now: i64) -> Result<Claims> {
        let mut c = self.claims;
        let ttl = i64::try_from(self.ttl).map_err(|_| Error::InvalidClaim("exp"))?;
        c.iat = Some(now);
        c.exp = Some(now.checked_add(ttl).ok_or(Error::InvalidClaim("exp"))?);
        c.jti = Some(random_id()?);
        Ok(c)
    }
}

/// 128 random bits as 22 base64url characters: an identifier (`jti`), not a secret.
///
/// The bits come from `rand`'s thread-local ChaCha12 CSPRNG, seeded from the OS and reseeded
/// from it every 64 KiB of output, so minting a token costs no system call. Secrets (refresh
/// tokens, nonce keys) are drawn from the OS directly, by their own crates.
///
/// # Errors
/// [`Error::Random`] if the generator cannot be seeded from the OS.
pub fn random_id() -> Result<String> {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::thread_rng()
        .try_fill_bytes(&mut bytes)
        .map_err(|_| Error::Random)?;
    Ok(b64::encode(bytes))
}
