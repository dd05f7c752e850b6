//! Strict JWT verification (RFC 8725): [`KeyResolver`], [`Policy`], and the [`Verified`]
//! type that alone hands out claims.
//!
//! The verifier takes the algorithm from the key that the `kid` resolves to, never from the
//! token: a header `alg` that differs is refused, as are `none`, `HS*`, keys embedded in or
//! referenced by the header, and `crit`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::alg::Algorithm;
use crate::claims::Claims;
use crate::error::{Error, Result};
use crate::json::Limits;
use crate::jwk::JwkSet;
use crate::jws::{Header, UnverifiedJws};
use crate::provider::{CryptoProvider, JwsVerifier};

/// The future returned by [`KeyResolver::resolve_async`].
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<dyn JwsVerifier>>> + Send + 'a>>;

/// Finds the verification key for a `kid`.
///
/// `kid` is attacker-controlled: implementations must treat it as an opaque string (no path or
/// query built from it) and must not panic.
pub trait KeyResolver: Send + Sync + fmt::Debug {
    /// The key for `kid`.
    ///
    /// # Errors
    /// [`Error::UnknownKeyId`] when no key has this `kid`.
    fn resolve(&self, kid: &str) -> Result<Arc<dyn JwsVerifier>>;

    /// The key for `kid`, allowed to wait (a JWKS fetcher refetching on an unknown `kid`).
    /// Defaults to [`KeyResolver::resolve`].
    fn resolve_async<'a>(&'a self, kid: &'a str) -> ResolveFuture<'a> {
        Box::pin(std::future::ready(self.resolve(kid)))
    }
}

impl<T: KeyResolver + ?Sized> KeyResolver for Arc<T> {
    fn resolve(&self, kid: &str) -> Result<Arc<dyn JwsVerifier>> {
        (**self).resolve(kid)
    }
    fn resolve_async<'a>(&'a self, kid: &'a str) -> ResolveFuture<'a> {
        (**self).resolve_async(kid)
    }
}

/// A fixed set of verification keys by `kid`; the in-process [`KeyResolver`].
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<dyn JwsVerifier>>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        KeySet::default()
    }

    /// Builds verifiers for every key of a JWK Set. A key without `kid` is filed under its
    /// RFC 7638 thumbprint.
    ///
    /// # Errors
    /// [`Error::InvalidJwk`] for an RSA key without `alg` (ambiguous), or any provider error
    /// (a point off the curve, a small-order Ed25519 key).
    pub fn from_jwks(jwks: &JwkSet, provider: &dyn CryptoProvider) -> Result<Self> {
        let mut set = KeySet::new();
        for jwk in &jwks.keys {
            let alg = jwk
                .algorithm()
                .ok_or(Error::InvalidJwk("RSA key without alg is ambiguous"))?;
            let kid = jwk.kid.clone().unwrap_or_else(|| jwk.thumbprint());
            set.insert(kid, provider.verifying_key(jwk, alg)?);
        }
        Ok(set)
    }

    /// Adds or replaces a key.
    pub fn insert(&mut self, kid: impl Into<String>, key: Arc<dyn JwsVerifier>) {
        self.keys.insert(kid.into(), key);
    }

    /// Removes a key.
    pub fn remove(&mut self, kid: &str) -> Option<Arc<dyn JwsVerifier>> {
        self.keys.remove(kid)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl KeyResolver for KeySet {
    fn resolve(&self, kid: &str) -> Result<Arc<dyn JwsVerifier>> {
        self.keys.get(kid).cloned().ok_or(Error::UnknownKeyId)
    }
}

/// Registered claims a [`Policy`] can require.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequiredClaim {
    /// `exp` (required by default).
    Exp,
    /// `iat` (required by default).
    Iat,
    /// `nbf`.
    Nbf,
    /// `sub`.
    Sub,
    /// `jti`.
    Jti,
    /// `iss` (implied by [`PolicyBuilder::issuer`]).
    Iss,
    /// `aud` (implied by [`PolicyBuilder::audience`]).
    Aud,
    /// `client_id`.
    ClientId,
}

impl RequiredClaim {
    fn name(self) -> &'static str {
        match self {
            RequiredClaim::Exp => "exp",
            RequiredClaim::Iat => "iat",
            RequiredClaim::Nbf => "nbf",
            RequiredClaim::Sub => "sub",
            RequiredClaim::Jti => "jti",
            RequiredClaim::Iss => "iss",
            RequiredClaim::Aud => "aud",
            RequiredClaim::ClientId => "client_id",
        }
    }

    fn present(self, c: &Claims) -> bool {
        match self {
            RequiredClaim::Exp => c.exp.is_some(),
            RequiredClaim::Iat => c.iat.is_some(),
            RequiredClaim::Nbf => c.nbf.is_some(),
            RequiredClaim::Sub => c.sub.is_some(),
            RequiredClaim::Jti => c.jti.is_some(),
            RequiredClaim::Iss => c.iss.is_some(),
            RequiredClaim::Aud => c.aud.is_some(),
            RequiredClaim::ClientId => c.client_id.is_some(),
        }
    }
}

/// What a token must satisfy beyond its signature. Build with [`Policy::builder`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Policy {
    /// Expected `iss`; `None` accepts any issuer.
    pub issuer: Option<String>,
    /// Accepted audiences (`aud` must contain one); empty accepts any audience.
    pub audiences: Vec<String>,
    /// Expected `typ` header; `None` accepts any (or none).
    pub typ: Option<String>,
    /// Claims that must be present.
    pub required: Vec<RequiredClaim>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// Maximum age from `iat`, in seconds.
    pub max_age: Option<u64>,
    /// Size limit of the compact token.
    pub max_token_bytes: usize,
    /// JSON limits of the payload.
    pub payload_limits: Limits,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            issuer: None,
            audiences: Vec::new(),
            typ: Some("at+jwt".to_owned()),
            required: vec![RequiredClaim::Exp, RequiredClaim::Iat],
            leeway: 30,
            max_age: None,
            max_token_bytes: crate::jws::DEFAULT_MAX_TOKEN_BYTES,
            payload_limits: Limits::default(),
        }
    }
}

impl Policy {
    /// A builder starting from the defaults: `typ` must be `at+jwt`, `exp` and `iat` required,
    /// 30 s leeway, 16 KiB size limit, any issuer and audience.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder(Policy::default())
    }

    fn check_claims(&self, c: &Claims, now: i64) -> Result<()> {
        for r in &self.required {
            if !r.present(c) {
                return Err(Error::MissingClaim(r.name()));
            }
        }
        let leeway = i64::try_from(self.leeway).unwrap_or(i64::MAX);
        if let Some(exp) = c.exp
            && now >= exp.saturating_add(leeway)
        {
            return Err(Error::Expired);
        }
        if let Some(nbf) = c.nbf
            && now.saturating_add(leeway) < nbf
        {
            return Err(Error::NotYetValid);
        }
        if let Some(iat) = c.iat {
            if iat > now.saturating_add(leeway) {
                return Err(Error::IssuedInFuture);
            }
            if let Some(max_age) = self.max_age {
                let max_age = i64::try_from(max_age).unwrap_or(i64::MAX);
                if now.saturating_sub(iat) > max_age.saturating_add(leeway) {
                    return Err(Error::TooOld);
                }
            }
        }
        if let Some(issuer) = &self.issuer {
            match &c.iss {
                Some(iss) if iss == issuer => {}
                Some(_) => return Err(Error::WrongIssuer),
                None => return Err(Error::MissingClaim("iss")),
            }
        }
        if !self.audiences.is_empty() {
            match &c.aud {
                Some(aud) if self.audiences.iter().any(|a| aud.contains(a)) => {}
                Some(_) => return Err(Error::WrongAudience),
                None => return Err(Error::MissingClaim("aud")),
            }
        }
        Ok(())
    }

    fn check_header(&self, header: &Header) -> Result<()> {
        if header.jwk.is_some() {
            return Err(Error::EmbeddedKey("jwk"));
        }
        if let Some(name) = header.key_reference {
            return Err(Error::EmbeddedKey(name));
        }
        if let Some(typ) = &self.typ
            && !header.typ_is(typ)
        {
            return Err(Error::WrongType);
        }
        Ok(())
    }

    /// Verifies a compact JWT: size, framing, header rules, key by `kid`, signature with the
    /// key's algorithm, then claims against this policy at time `now` (seconds since the
    /// epoch).
    ///
    /// # Errors
    /// The specific [`Error`] variant of the first check that failed.
    pub fn verify(
        &self,
        token: &str,
        keys: &(impl KeyResolver + ?Sized),
        now: i64,
    ) -> Result<Verified<Claims>> {
        let (jws, kid) = self.parse(token)?;
        let key = keys.resolve(&kid)?;
        self.finish(jws, key.as_ref(), now)
    }

    /// As [`Policy::verify`], with a resolver that may wait ([`KeyResolver::resolve_async`]).
    ///
    /// # Errors
    /// As [`Policy::verify`].
    pub async fn verify_async(
        &self,
        token: &str,
        keys: &(impl KeyResolver + ?Sized),
        now: i64,
    ) -> Result<Verified<Claims>> {
        let (jws, kid) = self.parse(token)?;
        let key = keys.resolve_async(&kid).await?;
        self.finish(jws, key.as_ref(), now)
    }

    /// The checks before the key is looked up: size, framing and header rules; the token and
    /// the `kid` of the key to look up.
    fn parse<'t>(&self, token: &'t str) -> Result<(UnverifiedJws<'t>, String)> {
        let jws = UnverifiedJws::parse_with_limit(token, self.max_token_bytes)?;
        self.check_header(jws.header())?;
        let kid = jws.header().kid.clone().ok_or(Error::MissingKeyId)?;
        Ok((jws, kid))
    }

    fn finish(
        &self,
        jws: UnverifiedJws<'_>,
        key: &dyn JwsVerifier,
        now: i64,
    ) -> Result<Verified<Claims>> {
        let verified = jws.verify_signature(key)?;
        let claims = Claims::from_map(verified.payload_json(self.payload_limits)?)?;
        self.check_claims(&claims, now)?;
        let (header, _) = verified.into_parts();
        Ok(Verified { header, claims })
    }
}

/// Builds a [`Policy`].
#[derive(Clone, Debug)]
pub struct PolicyBuilder(Policy);

impl PolicyBuilder {
    /// Requires `iss` to equal `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.0.issuer = Some(issuer.into());
        self
    }

    /// Accepts tokens whose `aud` contains `audience` (call again to accept several).
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.0.audiences.push(audience.into());
        self
    }

    /// Requires the `typ` header to be this media type (`None`: no requirement).
    #[must_use]
    pub fn typ(mut self, typ: Option<&str>) -> Self {
        self.0.typ = typ.map(str::to_owned);
        self
    }

    /// Requires a claim to be present.
    #[must_use]
    pub fn require(mut self, claim: RequiredClaim) -> Self {
        if !self.0.required.contains(&claim) {
            self.0.required.push(claim);
        }
        self
    }

    /// Stops requiring a claim (for example `iat` for tokens from issuers that omit it).
    #[must_use]
    pub fn allow_missing(mut self, claim: RequiredClaim) -> Self {
        self.0.required.retain(|c| *c != claim);
        self
    }

    /// Clock skew tolerance in seconds.
    #[must_use]
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.0.leeway = seconds;
        self
    }

    /// Maximum age from `iat` in seconds.
    #[must_use]
    pub fn max_age(mut self, seconds: u64) -> Self {
        self.0.max_age = Some(seconds);
        self
    }

    /// Size limit of the compact token in bytes.
    #[must_use]
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.0.max_token_bytes = bytes;
        self
    }

    /// The policy.
    pub fn build(self) -> Policy {
        self.0
    }
}

/// A token whose signature and policy checks passed. Only this type hands out claims.
#[derive(Clone, Debug)]
pub struct Verified<C> {
    header: Header,
    claims: C,
}

impl<C> Verified<C> {
    /// The verified header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The verified claims.
    pub fn claims(&self) -> &C {
        &self.claims
    }

    /// The verified claims, by value.
    pub fn into_claims(self) -> C {
        self.claims
    }

    /// The algorithm the token was verified with.
    pub fn algorithm(&self) -> Algorithm {
        self.header.alg
    }
}
