#![doc = include_str!("../README.md")]
//!
//! # Where this crate sits
//!
//! `token-dpop` depends only on `token-jwt` (JWS parsing, JWKs, thumbprints, crypto
//! providers). `token-store-redis` implements [`ReplayCache`] on Redis, and `token-server`
//! validates proofs on `GenerateTokens`, `RefreshTokens` and `ValidateDPoP`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
pub mod htu;
pub mod nonce;
mod proof_builder;
pub mod replay;
mod validator;

pub use error::{Error, INVALID_DPOP_PROOF, Result, SERVER_ERROR, USE_DPOP_NONCE};
pub use nonce::{NonceIssuer, NonceKey};
pub use proof_builder::ProofBuilder;
pub use replay::{MemoryReplayCache, ReplayCache, ReplayError, ReplayFuture, ReplayKey};
/// The `token-jwt` this crate is built on (keys, providers, algorithms, JWKs).
pub use token_jwt;
pub use token_jwt::{Algorithm, CryptoProvider, Jwk, PrivateKey};
pub use validator::{
    CheckedProof, DEFAULT_ALGORITHMS, DEFAULT_JSON_LIMITS, DEFAULT_KEY_CACHE_CAPACITY,
    DEFAULT_LEEWAY, DEFAULT_MAX_AGE, DEFAULT_MAX_JTI_LEN, DEFAULT_MAX_PROOF_BYTES, DPOP_TYP,
    NoncePolicy, Request, ValidatedProof, Validator, ValidatorConfig, ValidatorConfigBuilder,
    access_token_hash,
};

/// Entry points for `cargo fuzz` targets (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::{Arc, OnceLock};

    use crate::{
        MemoryReplayCache, NonceIssuer, NonceKey, Request, Validator, ValidatorConfig, htu,
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
}
