//! Proof validation (RFC 9449 section 4.3): [`Validator`], its [`ValidatorConfig`], and the
//! [`ValidatedProof`] it yields.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value};
use subtle::ConstantTimeEq;
use token_jwt::{Algorithm, CryptoProvider, JsonLimits, Jwk, JwsVerifier, Part, UnverifiedJws};

use crate::error::{Error, Result};
use crate::htu;
use crate::nonce::NonceIssuer;
use crate::proof::{DPOP_TYP, access_token_hash};
use crate::replay::{ReplayCache, ReplayError, ReplayKey};

/// Default allowed algorithms.
pub const DEFAULT_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
];
/// Default maximum age of a proof, in seconds.
pub const DEFAULT_MAX_AGE: u64 = 60;
/// Default clock leeway, in seconds, applied in both directions.
pub const DEFAULT_LEEWAY: u64 = 5;
/// Default size limit of a proof, in bytes.
pub const DEFAULT_MAX_PROOF_BYTES: usize = 8 * 1024;
/// Default length limit of `jti`, in bytes.
pub const DEFAULT_MAX_JTI_LEN: usize = 256;
/// Default number of prepared public keys a [`Validator`] keeps (see
/// [`ValidatorConfig::key_cache_capacity`]).
pub const DEFAULT_KEY_CACHE_CAPACITY: usize = 1024;
/// Default JSON limits for the payload: depth 4, 32 members.
pub const DEFAULT_JSON_LIMITS: JsonLimits = JsonLimits::new(4, 32);

/// The HTTP request a proof is presented with, and what the proof must be bound to.
///
/// ```
/// # use token_dpop::Request;
/// let request = Request::new("GET", "https://api.example.com/resource")
///     .with_access_token("the-access-token")
///     .with_expected_jkt("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
/// assert_eq!(request.access_token(), Some("the-access-token"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The HTTP method the request was made with; the proof's `htm` must equal it.
    method: &'a str,
    /// The absolute target URI; the proof's `htu` must match it (normalized, without query
    /// and fragment).
    uri: &'a str,
    /// The access token presented with the request (`Authorization: DPoP <token>`), if any:
    /// the proof must then carry the matching `ath`.
    access_token: Option<&'a str>,
    /// The RFC 7638 thumbprint of the key the access token or grant is bound to (`cnf.jkt`,
    /// or a refresh-token family's key), if any: the proof's key must have this thumbprint.
    expected_jkt: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A request with this method (case-sensitive, as in HTTP: `GET`, `POST`) and absolute
    /// target URI (`https://host/path?query`; query and fragment are ignored). Behind a proxy,
    /// pass the URI the client used, not the internal one. No access token and no expected
    /// key: add them with [`Request::with_access_token`] and [`Request::with_expected_jkt`].
    pub fn new(method: &'a str, uri: &'a str) -> Self {
        Request {
            method,
            uri,
            access_token: None,
            expected_jkt: None,
        }
    }

    /// The request presents this access token: the proof must carry `ath`, the base64url
    /// SHA-256 of the token ([`access_token_hash`]), or validation fails with
    /// [`Error::MissingAth`] or [`Error::AthMismatch`].
    #[must_use]
    pub fn with_access_token(mut self, access_token: &'a str) -> Self {
        self.access_token = Some(access_token);
        self
    }

    /// The proof's key must have this RFC 7638 thumbprint (base64url SHA-256, as in
    /// `cnf.jkt`), or validation fails with [`Error::JktMismatch`].
    #[must_use]
    pub fn with_expected_jkt(mut self, jkt: &'a str) -> Self {
        self.expected_jkt = Some(jkt);
        self
    }

    /// The method.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The target URI.
    pub fn uri(&self) -> &'a str {
        self.uri
    }

    /// The access token whose hash the proof's `ath` must be, if any.
    pub fn access_token(&self) -> Option<&'a str> {
        self.access_token
    }

    /// The thumbprint the proof's key must have, if any.
    pub fn expected_jkt(&self) -> Option<&'a str> {
        self.expected_jkt
    }
}

/// Whether proofs must carry a server nonce.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum NoncePolicy {
    /// Nonces are not required (a `nonce` claim, if any, is ignored).
    #[default]
    Disabled,
    /// Every proof must carry a nonce from this issuer (or one sharing its key); otherwise the
    /// answer is `use_dpop_nonce` with a fresh nonce.
    Required(Arc<NonceIssuer>),
}

/// What a [`Validator`] accepts. Build with [`ValidatorConfig::builder`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ValidatorConfig {
    /// Accepted `alg` values (default ES256, ES384, EdDSA, RS256, PS256).
    pub allowed_algs: Vec<Algorithm>,
    /// Maximum age of `iat`, in seconds (default 60).
    pub max_age: u64,
    /// Clock leeway in seconds, added to the maximum age and allowed for `iat` in the future
    /// (default 5).
    pub leeway: u64,
    /// Size limit of a proof in bytes (default 8 KiB).
    pub max_proof_bytes: usize,
    /// Length limit of `jti` in bytes (default 256).
    pub max_jti_len: usize,
    /// JSON depth and member limits for the payload (the header has token-jwt's fixed limits).
    pub json_limits: JsonLimits,
    /// The nonce policy (default [`NoncePolicy::Disabled`]).
    pub nonce: NoncePolicy,
    /// The crypto provider that checks keys and signatures.
    pub provider: Arc<dyn CryptoProvider>,
    /// How many prepared public keys to keep (default 1024; 0 turns the cache off). A client
    /// signs many proofs with one key: a key seen before (same RFC 7638 thumbprint and `alg`,
    /// whose last proof had a valid signature) skips decoding and curve checks. Entries are
    /// dropped at random when full; a miss only costs the preparation again.
    pub key_cache_capacity: usize,
}

impl ValidatorConfig {
    /// The defaults, with this provider.
    pub fn new(provider: Arc<dyn CryptoProvider>) -> Self {
        ValidatorConfig {
            allowed_algs: DEFAULT_ALGORITHMS.to_vec(),
            max_age: DEFAULT_MAX_AGE,
            leeway: DEFAULT_LEEWAY,
            max_proof_bytes: DEFAULT_MAX_PROOF_BYTES,
            max_jti_len: DEFAULT_MAX_JTI_LEN,
            json_limits: DEFAULT_JSON_LIMITS,
            nonce: NoncePolicy::Disabled,
            provider,
            key_cache_capacity: DEFAULT_KEY_CACHE_CAPACITY,
        }
    }

    /// A builder starting from the defaults, with this provider.
    pub fn builder(provider: Arc<dyn CryptoProvider>) -> ValidatorConfigBuilder {
        ValidatorConfigBuilder(ValidatorConfig::new(provider))
    }
}

/// Builds a [`ValidatorConfig`].
#[derive(Clone, Debug)]
pub struct ValidatorConfigBuilder(ValidatorConfig);

impl ValidatorConfigBuilder {
    /// Sets the accepted algorithms.
    #[must_use]
    pub fn allowed_algs(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.0.allowed_algs = algs.into_iter().collect();
        self
    }

    /// Sets the maximum age of `iat` in seconds.
    #[must_use]
    pub fn max_age(mut self, seconds: u64) -> Self {
        self.0.max_age = seconds;
        self
    }

    /// Sets the clock leeway in seconds.
    #[must_use]
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.0.leeway = seconds;
        self
    }

    /// Sets the size limit of a proof in bytes.
    #[must_use]
    pub fn max_proof_bytes(mut self, bytes: usize) -> Self {
        self.0.max_proof_bytes = bytes;
        self
    }

    /// Sets the length limit of `jti` in bytes.
    #[must_use]
    pub fn max_jti_len(mut self, bytes: usize) -> Self {
        self.0.max_jti_len = bytes;
        self
    }

    /// Sets the JSON limits for the payload.
    #[must_use]
    pub fn json_limits(mut self, limits: JsonLimits) -> Self {
        self.0.json_limits = limits;
        self
    }

    /// Sets how many prepared public keys to keep (0: none).
    #[must_use]
    pub fn key_cache_capacity(mut self, keys: usize) -> Self {
        self.0.key_cache_capacity = keys;
        self
    }

    /// Requires nonces from this issuer.
    #[must_use]
    pub fn require_nonce(mut self, issuer: Arc<NonceIssuer>) -> Self {
        self.0.nonce = NoncePolicy::Required(issuer);
        self
    }

    /// Sets the nonce policy.
    #[must_use]
    pub fn nonce_policy(mut self, policy: NoncePolicy) -> Self {
        self.0.nonce = policy;
        self
    }

    /// The configuration.
    pub fn build(self) -> ValidatorConfig {
        self.0
    }
}

/// A proof that passed every check, including the replay check.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidatedProof {
    /// The RFC 7638 thumbprint of the proof's key: bind tokens to it (`cnf.jkt`).
    pub jkt: String,
    /// The proof's public key.
    pub jwk: Jwk,
    /// The signature algorithm.
    pub alg: Algorithm,
    /// `jti`.
    pub jti: String,
    /// `iat`.
    pub iat: i64,
    /// `htm`.
    pub htm: String,
    /// `htu` as sent.
    pub htu: String,
    /// `nonce`, when the proof carries one.
    pub nonce: Option<String>,
}

/// A proof that passed every check except the replay check. Only
/// [`CheckedProof::record`] turns it into a [`ValidatedProof`].
#[derive(Debug)]
#[must_use = "a checked proof is not valid until recorded in a replay cache"]
pub struct CheckedProof {
    proof: ValidatedProof,
    replay_key: ReplayKey,
    expires_at: i64,
}

impl CheckedProof {
    /// The replay-cache key: (`jkt`, `jti`) hashed.
    pub fn replay_key(&self) -> &ReplayKey {
        &self.replay_key
    }

    /// The end of the proof's acceptance window (Unix seconds, exclusive): how long the
    /// replay cache must remember it.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// Records the proof in `cache` and returns it, unless it was seen before.
    ///
    /// # Errors
    /// [`Error::Replay`], [`Error::ReplayCacheFull`] or [`Error::ReplayCacheUnavailable`].
    pub async fn record(self, cache: &dyn ReplayCache, now: i64) -> Result<ValidatedProof> {
        match cache
            .insert_if_absent(&self.replay_key, self.expires_at, now)
            .await
        {
            Ok(inserted) => self.recorded(inserted),
            Err(e) => Err(replay_error(e)),
        }
    }

    /// [`CheckedProof::record`] through the cache's synchronous path
    /// ([`ReplayCache::insert_if_absent_sync`]), without blocking on a future;
    /// [`Error::ReplayCacheNotSynchronous`] when the cache has none.
    fn record_sync(self, cache: &dyn ReplayCache, now: i64) -> Result<ValidatedProof> {
        match cache.insert_if_absent_sync(&self.replay_key, self.expires_at, now) {
            None => Err(Error::ReplayCacheNotSynchronous),
            Some(Ok(inserted)) => self.recorded(inserted),
            Some(Err(e)) => Err(replay_error(e)),
        }
    }

    fn recorded(self, inserted: bool) -> Result<ValidatedProof> {
        if inserted {
            Ok(self.proof)
        } else {
            Err(Error::Replay)
        }
    }
}

fn replay_error(e: ReplayError) -> Error {
    match e {
        ReplayError::Full => Error::ReplayCacheFull,
        ReplayError::Unavailable(e) => Error::ReplayCacheUnavailable(e),
    }
}

/// Validates DPoP proofs (RFC 9449 section 4.3). Share one (`Arc`) between requests and
/// threads.
///
/// The checks run cheapest first, and all of them before the replay cache is touched:
///
/// 1. exactly one proof, within the size limit, a well-formed compact JWS;
/// 2. `typ` is `dpop+jwt`; `alg` is on the allow-list and fits the `jwk`; the `jwk` is public;
/// 3. the claims: `jti` (present, bounded), `htm`, `htu` (normalized, without query and
///    fragment), `nonce` when required, `iat` within the window, `ath` when an access token is
///    presented, the thumbprint against an expected `jkt`;
/// 4. the key (points on the curve, no small-order Ed25519 key) and the signature;
/// 5. the replay cache, last, so forged proofs never reach it.
///
/// The claims are read before the signature is checked only to refuse early: nothing from an
/// unverified proof is returned. The nonce is checked before `iat`, so a client refused for
/// want of a nonce learns one even when its clock is off.
#[derive(Debug)]
pub struct Validator {
    config: ValidatorConfig,
    replay: Arc<dyn ReplayCache>,
    keys: KeyCache,
}

impl Validator {
    /// A validator with this configuration and replay cache.
    pub fn new(config: ValidatorConfig, replay: Arc<dyn ReplayCache>) -> Self {
        let keys = KeyCache::new(config.key_cache_capacity);
        Validator {
            config,
            replay,
            keys,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ValidatorConfig {
        &self.config
    }

    /// The replay cache.
    pub fn replay_cache(&self) -> &Arc<dyn ReplayCache> {
        &self.replay
    }

    /// A fresh nonce to send in a `DPoP-Nonce` header, when nonces are required.
    pub fn fresh_nonce(&self, now: i64) -> Option<String> {
        match &self.config.nonce {
            NoncePolicy::Required(issuer) => Some(issuer.issue(now)),
            NoncePolicy::Disabled => None,
        }
    }

    /// Validates the request's `DPoP` header values (all of them: more than one is refused)
    /// against the request (method, URI, and, when set, the presented access token, whose
    /// hash `ath` must be, and the key thumbprint the token or grant is bound to), at time
    /// `now` (Unix seconds), then records the proof in the replay cache.
    ///
    /// # Errors
    /// One [`Error`] variant per failed check; see [`Error::oauth_error`] for the answer.
    pub async fn validate(
        &self,
        proofs: &[&str],
        request: &Request<'_>,
        now: i64,
    ) -> Result<ValidatedProof> {
        let checked = self.check(proofs, request, now)?;
        checked.record(&*self.replay, now).await
    }

    /// [`Validator::validate`] for synchronous callers, through the replay cache's
    /// synchronous path ([`ReplayCache::insert_if_absent_sync`]), such as
    /// [`crate::MemoryReplayCache`]'s. It never blocks on a future: a cache without a
    /// synchronous path (a networked one) fails with [`Error::ReplayCacheNotSynchronous`];
    /// use `validate` for those.
    ///
    /// # Errors
    /// As [`Validator::validate`], and [`Error::ReplayCacheNotSynchronous`].
    pub fn validate_sync(
        &self,
        proofs: &[&str],
        request: &Request<'_>,
        now: i64,
    ) -> Result<ValidatedProof> {
        let checked = self.check(proofs, request, now)?;
        checked.record_sync(&*self.replay, now)
    }

    /// Every check except the replay check, synchronously. The result must be
    /// [recorded](CheckedProof::record) before the proof is trusted.
    ///
    /// # Errors
    /// As [`Validator::validate`], except the replay errors.
    pub fn check(&self, proofs: &[&str], request: &Request<'_>, now: i64) -> Result<CheckedProof> {
        let cfg = &self.config;
        let proof = match proofs {
            [] => return Err(Error::MissingProof),
            [one] => *one,
            _ => return Err(Error::MultipleProofs),
        };
        if proof.len() > cfg.max_proof_bytes {
            return Err(Error::ProofTooLarge {
                limit: cfg.max_proof_bytes,
            });
        }

        // ---- header ----------------------------------------------------------------------
        let jws = UnverifiedJws::parse_with_limit(proof, cfg.max_proof_bytes)
            .map_err(|e| self.parse_error(e, proof))?;
        let header = jws.header();
        if !header.typ_is(DPOP_TYP) {
            return Err(Error::WrongTyp);
        }
        let alg = header.alg;
        if !cfg.allowed_algs.contains(&alg) {
            return Err(Error::AlgNotAllowed);
        }
        let jwk = header.jwk.as_ref().ok_or(Error::MissingJwk)?;
        if !jwk.compatible(alg) || jwk.alg.is_some_and(|a| a != alg) {
            return Err(Error::AlgKeyMismatch);
        }

        // ---- claims (read early only to refuse early) -------------------------------------
        let payload_b64 = jws
            .signing_input()
            .split_once('.')
            .map(|(_, p)| p)
            .unwrap_or_default();
        let payload = token_jwt::base64url::decode(payload_b64)
            .ok_or(Error::Malformed(token_jwt::Error::Base64(Part::Payload)))?;
        let claims = token_jwt::strict_json::parse_object(&payload, Part::Payload, cfg.json_limits)
            .map_err(Error::Malformed)?;

        let jti = match string_claim(&claims, "jti")? {
            None | Some("") => return Err(Error::MissingJti),
            Some(j) if j.len() > cfg.max_jti_len => {
                return Err(Error::JtiTooLong {
                    limit: cfg.max_jti_len,
                });
            }
            Some(j) => j,
        };

        let htm = string_claim(&claims, "htm")?.ok_or(Error::MissingHtm)?;
        if htm != request.method {
            return Err(Error::HtmMismatch);
        }

        let htu = string_claim(&claims, "htu")?.ok_or(Error::MissingHtu)?;
        let request_htu = htu::normalize(request.uri).ok_or(Error::InvalidRequestUri)?;
        let proof_htu = htu::normalize(htu).ok_or(Error::InvalidHtu)?;
        if proof_htu != request_htu {
            return Err(Error::HtuMismatch);
        }

        // Before `iat`: a client whose proof is refused for want of a nonce learns one, even
        // when its clock is off.
        let nonce = string_claim(&claims, "nonce")?;
        if let NoncePolicy::Required(issuer) = &cfg.nonce {
            match nonce {
                None => {
                    return Err(Error::NonceRequired {
                        fresh_nonce: issuer.issue(now),
                    });
                }
                Some(n) => issuer.check(n, now)?,
            }
        }

        let iat = match claims.get("iat") {
            None => return Err(Error::MissingIat),
            Some(v) => v.as_i64().ok_or(Error::InvalidClaim("iat"))?,
        };
        let leeway = i64::try_from(cfg.leeway).unwrap_or(i64::MAX);
        let window = i64::try_from(cfg.max_age)
            .unwrap_or(i64::MAX)
            .saturating_add(leeway);
        if iat > now.saturating_add(leeway) {
            return Err(Error::IatInFuture);
        }
        if now.saturating_sub(iat) > window {
            return Err(Error::IatTooOld);
        }

        if let Some(token) = request.access_token {
            let ath = string_claim(&claims, "ath")?.ok_or(Error::MissingAth)?;
            let expected = access_token_hash(token);
            if !bool::from(ath.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(Error::AthMismatch);
            }
        }

        let thumbprint = jwk.thumbprint_sha256();
        let jkt = token_jwt::base64url::encode(thumbprint);
        if let Some(expected) = request.expected_jkt
            && !bool::from(jkt.as_bytes().ct_eq(expected.as_bytes()))
        {
            return Err(Error::JktMismatch);
        }

        // ---- key and signature ------------------------------------------------------------
        let cached = self.keys.get(alg, &thumbprint);
        let key = match &cached {
            Some(key) => key.clone(),
            None => cfg.provider.verifying_key(jwk, alg).map_err(|e| match e {
                token_jwt::Error::AlgorithmKeyMismatch(_) => Error::AlgKeyMismatch,
                e => Error::InvalidKey(e),
            })?,
        };
        let jwk = jwk.clone();
        jws.verify_signature(&*key)
            .map_err(|_| Error::BadSignature)?;
        if cached.is_none() {
            // Only keys that just verified a signature are kept.
            self.keys.insert(alg, thumbprint, key);
        }

        let replay_key = ReplayKey::new(&jkt, jti);
        Ok(CheckedProof {
            replay_key,
            expires_at: iat.saturating_add(window).saturating_add(1),
            proof: ValidatedProof {
                jkt,
                jwk,
                alg,
                jti: jti.to_owned(),
                iat,
                htm: htm.to_owned(),
                htu: htu.to_owned(),
                nonce: nonce.map(str::to_owned),
            },
        })
    }

    /// Maps a token-jwt parse error onto this crate's variants.
    fn parse_error(&self, e: token_jwt::Error, proof: &str) -> Error {
        use token_jwt::Error as J;
        match e {
            J::TooLarge { .. } => Error::ProofTooLarge {
                limit: self.config.max_proof_bytes,
            },
            J::AlgNone | J::SymmetricAlgorithm | J::UnsupportedAlgorithm => Error::AlgNotAllowed,
            J::PrivateKeyInJwk => Error::PrivateKey,
            J::SymmetricKey => Error::SymmetricKey,
            e @ (J::InvalidJwk(_) | J::UnsupportedKey | J::AlgorithmKeyMismatch(_)) => {
                Error::InvalidKey(e)
            }
            J::Malformed(_) if self.unsecured_with_refused_alg(proof) => Error::AlgNotAllowed,
            e => Error::Malformed(e),
        }
    }

    /// Whether a proof that failed framing (an unsecured JWS has an empty signature segment)
    /// names an `alg` that is refused anyway (`none`), so that the error says so.
    fn unsecured_with_refused_alg(&self, proof: &str) -> bool {
        let Some(header_b64) = proof.split('.').next() else {
            return false;
        };
        let Some(bytes) = token_jwt::base64url::decode(header_b64) else {
            return false;
        };
        let Ok(header) =
            token_jwt::strict_json::parse_object(&bytes, Part::Header, JsonLimits::new(4, 64))
        else {
            return false;
        };
        match header.get("alg") {
            Some(Value::String(name)) => {
                Algorithm::parse(name).map_or(true, |alg| !self.config.allowed_algs.contains(&alg))
            }
            _ => false,
        }
    }
}

fn string_claim<'m>(claims: &'m Map<String, Value>, name: &'static str) -> Result<Option<&'m str>> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::InvalidClaim(name)),
    }
}

const KEY_CACHE_SHARDS: usize = 8;

type KeyMap = HashMap<(Algorithm, [u8; 32]), Arc<dyn JwsVerifier>>;

/// Prepared public keys by (`alg`, SHA-256 thumbprint). The thumbprint covers every public
/// member, so equal thumbprints mean the same key.
struct KeyCache {
    shards: Vec<Mutex<KeyMap>>,
    per_shard: usize,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("capacity", &(self.per_shard * KEY_CACHE_SHARDS))
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    fn new(capacity: usize) -> Self {
        KeyCache {
            shards: (0..KEY_CACHE_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            per_shard: capacity.div_ceil(KEY_CACHE_SHARDS),
        }
    }

    fn shard(&self, thumbprint: &[u8; 32]) -> Option<&Mutex<KeyMap>> {
        if self.per_shard == 0 {
            return None;
        }
        let first = thumbprint.first().copied().unwrap_or_default();
        self.shards.get(usize::from(first) % KEY_CACHE_SHARDS)
    }

    fn get(&self, alg: Algorithm, thumbprint: &[u8; 32]) -> Option<Arc<dyn JwsVerifier>> {
        let shard = self
            .shard(thumbprint)?
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(&(alg, *thumbprint)).cloned()
    }

    fn insert(&self, alg: Algorithm, thumbprint: [u8; 32], key: Arc<dyn JwsVerifier>) {
        let Some(shard) = self.shard(&thumbprint) else {
            return;
        };
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= self.per_shard {
            // An arbitrary victim (the map's hasher is randomly keyed).
            if let Some(victim) = shard.keys().next().copied() {
                shard.remove(&victim);
            }
        }
        shard.insert((alg, thumbprint), key);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

    use super::*;
    use crate::replay::{MemoryReplayCache, ReplayFuture};
    use crate::{PrivateKey, ProofBuilder, SERVER_ERROR};

    const NOW: i64 = 1_700_000_000;
    const URI: &str = "https://as.example/token";

    /// A cache with only the async path (like a networked one).
    #[derive(Debug, Default)]
    struct AsyncOnly(MemoryReplayCache);

    impl ReplayCache for AsyncOnly {
        fn insert_if_absent<'a>(
            &'a self,
            key: &'a ReplayKey,
            expires_at: i64,
            now: i64,
        ) -> ReplayFuture<'a> {
            self.0.insert_if_absent(key, expires_at, now)
        }
    }

    fn proof_and_validator(cache: Arc<dyn ReplayCache>) -> (String, String, Validator) {
        let provider: Arc<dyn CryptoProvider> = Arc::new(token_jwt::RustCryptoProvider::new());
        let key = PrivateKey::generate(Algorithm::ES256).unwrap();
        let client = ProofBuilder::new(&key, &*provider).unwrap();
        let proof = client.proof("POST", URI, Some("at"), None, NOW).unwrap();
        let validator = Validator::new(ValidatorConfig::new(provider), cache);
        (proof, client.jkt(), validator)
    }

    #[test]
    fn validate_sync_uses_the_synchronous_path() {
        for cache in [
            Arc::new(MemoryReplayCache::new()) as Arc<dyn ReplayCache>,
            Arc::new(Arc::new(MemoryReplayCache::new())),
        ] {
            let (proof, jkt, v) = proof_and_validator(cache);
            let request = Request::new("POST", URI)
                .with_access_token("at")
                .with_expected_jkt(&jkt);
            assert_eq!(request.access_token(), Some("at"));
            assert_eq!(request.expected_jkt(), Some(jkt.as_str()));
            let ok = v.validate_sync(&[&proof], &request, NOW).unwrap();
            assert_eq!(ok.jkt, jkt);
            assert!(matches!(
                v.validate_sync(&[&proof], &request, NOW),
                Err(Error::Replay)
            ));
        }
    }

    #[test]
    fn validate_sync_refuses_a_cache_without_a_synchronous_path() {
        let cache = Arc::new(AsyncOnly::default());
        let (proof, jkt, v) = proof_and_validator(cache.clone());
        let request = Request::new("POST", URI)
            .with_access_token("at")
            .with_expected_jkt(&jkt);
        let e = v.validate_sync(&[&proof], &request, NOW).unwrap_err();
        assert!(matches!(e, Error::ReplayCacheNotSynchronous), "{e:?}");
        assert!(e.is_server_error());
        assert_eq!(e.oauth_error(), SERVER_ERROR);
        // nothing was recorded
        assert!(cache.0.is_empty());
        // the checks still run first
        let wrong = Request::new("POST", URI).with_access_token("other");
        assert!(matches!(
            v.validate_sync(&[&proof], &wrong, NOW),
            Err(Error::AthMismatch)
        ));
    }
}
