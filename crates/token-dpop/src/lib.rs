#![doc = include_str!("../README.md")]
//!
//! # Where this crate sits
//!
//! `token-dpop` depends only on `token-jwt` (JWS parsing, JWKs, thumbprints, crypto
//! providers, the access-token verifier), and on `http` for its types only with the `http`
//! feature. `token-store-redis` implements [`ReplayCache`] on Redis, `token-server`
//! validates proofs on `GenerateTokens`, `RefreshTokens` and `ValidateDPoP`, and resource
//! servers verify requests with [`RequestVerifier`].
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
pub mod htu;
pub mod nonce;
mod proof;
mod proof_builder;
pub mod replay;
mod request;
mod validator;

pub use error::{
    Error, INSUFFICIENT_SCOPE, INVALID_DPOP_PROOF, INVALID_REQUEST, INVALID_TOKEN, Result,
    SERVER_ERROR, USE_DPOP_NONCE,
};
pub use nonce::{NonceIssuer, NonceKey};
pub use proof::{DPOP_TYP, access_token_hash};
pub use proof_builder::ProofBuilder;
pub use replay::{MemoryReplayCache, ReplayCache, ReplayError, ReplayFuture, ReplayKey};
pub use request::{
    Authorized, Rejection, RequestVerifier, RequestVerifierBuilder, ResourceRequest, Scheme,
};
/// The `token-jwt` this crate is built on (keys, providers, algorithms, JWKs).
pub use token_jwt;
pub use token_jwt::{Algorithm, CryptoProvider, Jwk, PrivateKey};
pub use validator::{
    CheckedProof, DEFAULT_ALGORITHMS, DEFAULT_JSON_LIMITS, DEFAULT_KEY_CACHE_CAPACITY,
    DEFAULT_LEEWAY, DEFAULT_MAX_AGE, DEFAULT_MAX_JTI_LEN, DEFAULT_MAX_PROOF_BYTES, NoncePolicy,
    Request, ValidatedProof, Validator, ValidatorConfig, ValidatorConfigBuilder,
};

/// Entry points for `cargo fuzz` targets (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::{Arc, OnceLock};

    use token_jwt::{JwkSet, KeySet, Policy, RustCryptoProvider};

    use crate::{
        MemoryReplayCache, NonceIssuer, NonceKey, Request, RequestVerifier, ResourceRequest,
        Validator, ValidatorConfig, htu,
    };

    fn validators() -> &'static [Validator; 2] {
        static V: OnceLock<[Validator; 2]> = OnceLock::new();
        V.get_or_init(|| {
            let provider = Arc::new(token_jwt::RustCryptoProvider::new());
            let plain = ValidatorConfig::new(provider.clone());
            let nonces = ValidatorConfig::builder(provider)
                .require_nonce(Arc::new(NonceIssuer::new(NonceKey::from_bytes(&[7; 32]))))
                .build();
            // Small caches: the fuzzer also exercises the full-cache path.
            [
                Validator::new(plain, Arc::new(MemoryReplayCache::with_capacity(1024))),
                Validator::new(nonces, Arc::new(MemoryReplayCache::with_capacity(1024))),
            ]
        })
    }

    /// Validates arbitrary bytes as a proof (with and without nonces, access token and
    /// expected `jkt`), and normalizes them as a URI.
    pub fn validate_proof(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let _ = htu::normalize(text);
        let request = Request::new("POST", "https://server.example.com/token");
        let [plain, nonces] = validators();
        let _ = plain.validate_sync(&[text], &request, 1_562_262_616);
        let bound = request
            .with_access_token("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU")
            .with_expected_jkt("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
        let _ = nonces.validate_sync(&[text], &bound, 1_562_262_616);
    }

    /// Request verifiers over a fixed ES256 key: one accepting both schemes, one accepting
    /// only DPoP with nonces and a required scope.
    fn request_verifiers() -> &'static [RequestVerifier] {
        static V: OnceLock<Vec<RequestVerifier>> = OnceLock::new();
        V.get_or_init(|| {
            static KEY: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","alg":"ES256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
            let provider = RustCryptoProvider::new();
            let keys = JwkSet::from_json(KEY.as_bytes())
                .and_then(|set| KeySet::from_jwks(&set, &provider))
                .unwrap_or_default();
            let keys = Arc::new(keys);
            let [plain, nonces] = validators();
            let both = RequestVerifier::new(
                Policy::default(),
                keys.clone(),
                Arc::new(Validator::new(
                    plain.config().clone(),
                    plain.replay_cache().clone(),
                )),
            );
            let dpop_only = RequestVerifier::builder(
                Policy::default(),
                keys,
                Arc::new(Validator::new(
                    nonces.config().clone(),
                    nonces.replay_cache().clone(),
                )),
            )
            .accept_bearer(false)
            .require_scope("read")
            .realm("fuzz \"realm\"")
            .build();
            vec![both, dpop_only]
        })
    }

    /// Verifies arbitrary bytes as a request's header values: the first byte says how many of
    /// the newline-separated values that follow are `Authorization` values (0 to 3), the rest
    /// are `DPoP` values. Every rejection is rendered.
    pub fn verify_request(data: &[u8]) {
        let (selector, rest) = data.split_first().unwrap_or((&0, &[][..]));
        let values: Vec<&[u8]> = rest.split(|b| *b == b'\n').collect();
        let (authorization, dpop) = values.split_at(usize::from(selector % 4).min(values.len()));
        let request = ResourceRequest::new(
            authorization.iter().copied(),
            dpop.iter().copied(),
            "GET",
            "https://rs.example/resource",
        );
        for verifier in request_verifiers() {
            if let Err(rejection) = verifier.verify_sync(&request, 1_700_000_000) {
                let _ = (rejection.status(), rejection.www_authenticate());
                let _ = rejection.dpop_nonce();
            }
        }
    }
}
