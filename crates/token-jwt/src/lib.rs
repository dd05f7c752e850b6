#![doc = include_str!("../README.md")]
//!
//! # Where this crate sits
//!
//! `token-jwt` is the bottom of the token-service workspace and depends on no other project
//! crate. `token-dpop` validates proofs with its JWS codec and JWK thumbprints, `token-kms`
//! implements [`AsyncJwsSigner`] on AWS KMS, `token-jwks` publishes [`JwkSet`]s and resolves
//! keys for verifiers, and `token-server` mints access tokens with [`AccessTokenBuilder`] and
//! [`JwsEncoder`].
#![cfg_attr(docsrs, feature(doc_cfg))]

mod alg;
mod b64;
mod builder;
mod claims;
mod error;
mod json;
mod jwk;
mod jws;
mod key;
mod provider;
mod public_key;
mod signer;
mod verify;

pub use alg::Algorithm;
pub use builder::{AccessTokenBuilder, random_id};
pub use claims::{Audience, Claims, Confirmation, CustomClaims, REGISTERED_CLAIMS};
pub use error::{Error, Part, Result};
pub use json::Limits as JsonLimits;
pub use jwk::{
    EcCurve, Jwk, JwkSet, KeyParams, MAX_JWK_BYTES, MAX_JWKS_BYTES, MAX_RSA_BITS, MIN_RSA_BITS,
};
pub use jws::{DEFAULT_MAX_TOKEN_BYTES, Header, JwsEncoder, UnverifiedJws, VerifiedJws};
pub use key::{MAX_PRIVATE_KEY_BYTES, PrivateKey};
#[cfg(feature = "aws-lc-rs")]
pub use provider::AwsLcProvider;
pub use provider::{
    CryptoProvider, JwsVerifier, RustCryptoProvider, all_providers, fastest_provider,
};
pub use public_key::MAX_PUBLIC_KEY_BYTES;
pub use signer::{AsyncJwsSigner, JwsPublicKey, JwsSigner, RustCryptoSigner, SignFuture};
pub use verify::{
    KeyResolver, KeySet, Policy, PolicyBuilder, RequiredClaim, ResolveFuture, Verified,
};

/// Strict base64url helpers shared with the other token-service crates.
pub mod base64url {
    pub use crate::b64::{decode, decode_array, encode, encode_into};
}

/// Strict JSON object parsing (duplicate members refused, depth and size limits), shared with
/// the other token-service crates.
pub mod strict_json {
    pub use crate::json::{Limits, parse_object};
}

/// Entry points for `cargo fuzz` targets (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::Arc;

    use crate::{Algorithm, JwkSet, KeySet, Policy, RustCryptoProvider, UnverifiedJws};

    /// Parses arbitrary bytes as a compact JWS.
    pub fn parse_jws(data: &[u8]) {
        if let Ok(s) = std::str::from_utf8(data) {
            let _ = UnverifiedJws::parse(s);
        }
    }

    /// Parses arbitrary bytes as a JWK and as a JWK Set, and thumbprints what parses.
    pub fn parse_jwk(data: &[u8]) {
        if let Ok(jwk) = crate::Jwk::from_json(data) {
            let _ = jwk.thumbprint();
            for alg in Algorithm::ALL {
                let _ = crate::CryptoProvider::verifying_key(&RustCryptoProvider::new(), &jwk, alg);
            }
        }
        let _ = JwkSet::from_json(data);
    }

    /// Parses arbitrary bytes as a JWK and checks its RFC 7638 thumbprint against an independent
    /// computation: serde_json's serialization of the required members in a sorted map (with
    /// JSON escaping, which the crate's own formatting assumes is never needed), hashed with
    /// SHA-256. The thumbprint must also survive a round trip through `to_json` and ignore the
    /// optional members (`kid`, `alg`, `use`).
    ///
    /// # Panics
    /// When a thumbprint differs from the independent computation or between the round trips.
    pub fn jwk_thumbprint(data: &[u8]) {
        use std::collections::BTreeMap;

        use sha2::{Digest as _, Sha256};

        use crate::KeyParams;

        let Ok(jwk) = crate::Jwk::from_json(data) else {
            return;
        };
        let thumbprint = jwk.thumbprint();
        assert_eq!(thumbprint.len(), 43, "base64url of 32 bytes, unpadded");
        assert_eq!(thumbprint, crate::b64::encode(jwk.thumbprint_sha256()));

        let required: BTreeMap<&str, &str> = match &jwk.params {
            KeyParams::Ec { crv, x, y } => BTreeMap::from([
                ("crv", crv.as_str()),
                ("kty", "EC"),
                ("x", x.as_str()),
                ("y", y.as_str()),
            ]),
            KeyParams::Ed25519 { x } => {
                BTreeMap::from([("crv", "Ed25519"), ("kty", "OKP"), ("x", x.as_str())])
            }
            KeyParams::Rsa { n, e } => {
                BTreeMap::from([("e", e.as_str()), ("kty", "RSA"), ("n", n.as_str())])
            }
        };
        let Ok(canonical) = serde_json::to_string(&required) else {
            return;
        };
        let expected: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
        assert_eq!(jwk.thumbprint_sha256(), expected, "{canonical}");

        let again = crate::Jwk::from_json(jwk.to_json().as_bytes());
        assert_eq!(again.map(|k| k.thumbprint()).ok(), Some(thumbprint.clone()));
        let bare = crate::Jwk::new(jwk.params.clone());
        assert_eq!(
            bare.thumbprint(),
            thumbprint,
            "optional members are not hashed"
        );
    }

    /// Reads arbitrary bytes as the text of a published-key file (`Jwk::from_public_key_text`,
    /// and `Jwk::from_public_pem` directly). What is accepted must have a `kid`, verify with
    /// the crate's provider and read back identically from its JWK text.
    ///
    /// # Panics
    /// When an accepted key breaks one of those properties.
    pub fn parse_public_key(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let _ = crate::Jwk::from_public_pem(text);
        let Ok(jwk) = crate::Jwk::from_public_key_text(text) else {
            return;
        };
        assert!(jwk.kid.as_deref().is_some_and(|kid| !kid.is_empty()));
        let alg = jwk.algorithm().unwrap_or(Algorithm::RS256);
        assert!(
            crate::CryptoProvider::verifying_key(&RustCryptoProvider::new(), &jwk, alg).is_ok(),
            "an accepted key must verify"
        );
        let again = crate::Jwk::from_public_key_text(&jwk.to_json());
        assert_eq!(again.ok(), Some(jwk), "the JWK text reads back identically");
    }

    /// Verifies arbitrary bytes as a token against a fixed ES256 key.
    pub fn verify(data: &[u8]) {
        static KEY: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        let Ok(set) = JwkSet::from_json(KEY.as_bytes()) else {
            return;
        };
        let Ok(keys) = KeySet::from_jwks(&set, &RustCryptoProvider::new()) else {
            return;
        };
        let keys = Arc::new(keys);
        if let Ok(s) = std::str::from_utf8(data) {
            let _ = Policy::default().verify(s, &keys, 1_700_000_000);
        }
    }
}
