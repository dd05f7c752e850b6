//! One managed key as the store holds it: a small versioned JSON document whose private key is
//! only ever wrapped.
//!
//! ```json
//! {"v":1,"generation":7,"kid":"<RFC 7638 thumbprint>","alg":"ES256","jwk":{…public…},
//!  "wrapped":{"kek":"<base64url nonce||ciphertext>"},"created_at":…,"activates_at":…}
//! ```
//!
//! Records come from a store that other processes write, so parsing is strict: a size limit,
//! no unknown members, a public JWK that must match the `kid` and `alg`.

use std::fmt;

use serde::{Deserialize, Serialize};
use token_jwt::{Algorithm, Jwk};

use crate::error::{Error, Result};

/// The largest record accepted (a KMS-wrapped RSA-4096 key is about 4 KiB of base64).
pub const MAX_RECORD_BYTES: usize = 16 * 1024;
/// The record format this crate writes and reads.
const VERSION: u8 = 1;

/// How the private key of a record is wrapped. Neither form is usable without the fleet's
/// wrapping key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Wrapped {
    /// XChaCha20-Poly1305 under the [`KeyEncryptionKey`](super::KeyEncryptionKey):
    /// base64url (no padding) of `nonce || ciphertext`, the `kid` and `alg` bound as
    /// associated data.
    Kek(String),
    /// A KMS envelope: the JSON of a `WrappedKeyBlob` (its encryption context binds `kid` and
    /// `alg`).
    Kms(String),
}

impl Wrapped {
    /// `"kek"` or `"kms"`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Wrapped::Kek(_) => "kek",
            Wrapped::Kms(_) => "kms",
        }
    }
}

impl fmt::Debug for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ciphertext is not secret, but it is long and says nothing to a reader of a log.
        write!(f, "Wrapped::{}(..)", self.kind())
    }
}

/// One generation of the fleet's managed keys.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRecord {
    /// 1 for the first key, then one more for each next key (the store's atomic claim).
    pub generation: u64,
    /// The key id: the RFC 7638 thumbprint of [`KeyRecord::jwk`].
    pub kid: String,
    /// The JWS algorithm.
    pub alg: Algorithm,
    /// The public key, with `kid`, `alg` and `use: sig`: what the JWK Set publishes.
    pub jwk: Jwk,
    /// The private key, wrapped.
    pub wrapped: Wrapped,
    /// When the record was created (published from then on), seconds since the epoch.
    pub created_at: i64,
    /// When the key starts signing.
    pub activates_at: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    v: u8,
    generation: u64,
    kid: String,
    alg: String,
    jwk: serde_json::Map<String, serde_json::Value>,
    wrapped: Wrapped,
    created_at: i64,
    activates_at: i64,
}

impl KeyRecord {
    /// A record for a new key.
    pub fn new(
        generation: u64,
        jwk: &Jwk,
        alg: Algorithm,
        wrapped: Wrapped,
        created_at: i64,
        activates_at: i64,
    ) -> Self {
        let kid = jwk.thumbprint();
        KeyRecord {
            generation,
            jwk: jwk.clone().with_kid(kid.clone()).with_alg(alg),
            kid,
            alg,
            wrapped,
            created_at,
            activates_at,
        }
    }

    /// The record as stored.
    pub fn to_json(&self) -> String {
        let jwk = match self.jwk.to_json_value() {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let raw = Raw {
            v: VERSION,
            generation: self.generation,
            kid: self.kid.clone(),
            alg: self.alg.as_str().to_owned(),
            jwk,
            wrapped: self.wrapped.clone(),
            created_at: self.created_at,
            activates_at: self.activates_at,
        };
        // A struct of strings, integers and a JSON map always serializes.
        serde_json::to_string(&raw).unwrap_or_default()
    }

    /// Parses and checks a stored record: at most [`MAX_RECORD_BYTES`], the known version, no
    /// unknown members, a public JWK whose thumbprint is the `kid` and which suits `alg`, and
    /// `created_at <= activates_at`.
    ///
    /// # Errors
    /// [`Error::InvalidKeyRecord`] saying what is wrong.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        if json.len() > MAX_RECORD_BYTES {
            return Err(Error::InvalidKeyRecord(format!(
                "{} bytes, more than the {MAX_RECORD_BYTES} allowed",
                json.len()
            )));
        }
        let raw: Raw = serde_json::from_slice(json)
            .map_err(|e| Error::InvalidKeyRecord(format!("not a key record: {e}")))?;
        if raw.v != VERSION {
            return Err(Error::InvalidKeyRecord(format!(
                "version {} (this build reads {VERSION})",
                raw.v
            )));
        }
        let alg: Algorithm = raw
            .alg
            .parse()
            .map_err(|e| Error::InvalidKeyRecord(format!("alg: {e}")))?;
        let jwk =
            Jwk::from_map(&raw.jwk).map_err(|e| Error::InvalidKeyRecord(format!("jwk: {e}")))?;
        if jwk.thumbprint() != raw.kid {
            return Err(Error::InvalidKeyRecord(
                "the kid is not the thumbprint of the public key".to_owned(),
            ));
        }
        if !jwk.compatible(alg) {
            return Err(Error::InvalidKeyRecord(format!(
                "the public key does not suit {alg}"
            )));
        }
        if raw.generation == 0 || raw.created_at > raw.activates_at {
            return Err(Error::InvalidKeyRecord(
                "generation 0, or a key that signs before it was created".to_owned(),
            ));
        }
        Ok(KeyRecord {
            generation: raw.generation,
            jwk: jwk.with_kid(raw.kid.clone()).with_alg(alg),
            kid: raw.kid,
            alg,
            wrapped: raw.wrapped,
            created_at: raw.created_at,
            activates_at: raw.activates_at,
        })
    }
}

/// The store field of generation `n`: zero-padded, so fields sort by generation.
pub(crate) fn generation_field(n: u64) -> String {
    format!("gen:{n:020}")
}

/// The store field that marks `kid` as retired in an emergency.
pub(crate) fn retired_field(kid: &str) -> String {
    format!("retired:{kid}")
}

/// The store field holding the key-encryption key's check value.
pub(crate) const CHECK_FIELD: &str = "kek-check";

#[cfg(test)]
mod tests {
    use super::*;
    use token_jwt::PrivateKey;

    fn record() -> KeyRecord {
        let key = PrivateKey::generate(Algorithm::ES256).expect("key");
        KeyRecord::new(
            3,
            key.public_jwk(),
            Algorithm::ES256,
            Wrapped::Kek("AAAA".into()),
            10,
            20,
        )
    }

    #[test]
    fn round_trips() {
        let r = record();
        assert_eq!(
            KeyRecord::from_json(r.to_json().as_bytes()).expect("parse"),
            r
        );
    }

    #[test]
    fn refuses_a_kid_that_is_not_the_thumbprint() {
        let r = record();
        let json = r.to_json().replace(&r.kid, "someone-elses-kid");
        let err = KeyRecord::from_json(json.as_bytes()).expect_err("must fail");
        assert!(err.to_string().contains("thumbprint"), "{err}");
    }

    #[test]
    fn refuses_unknown_members_oversize_and_wrong_versions() {
        let r = record().to_json();
        for bad in [
            r.replacen('{', "{\"extra\":1,", 1),
            r.replace("\"v\":1", "\"v\":2"),
            format!("{r}{}", " ".repeat(MAX_RECORD_BYTES)),
            r.replace("\"ES256\"", "\"HS256\""),
            String::from("[]"),
        ] {
            assert!(KeyRecord::from_json(bad.as_bytes()).is_err(), "{bad:.80}");
        }
    }

    #[test]
    fn debug_shows_no_ciphertext() {
        let r = record();
        assert!(!format!("{r:?}").contains("AAAA"));
    }

    /// The RFC 8037 Ed25519 key, whose RFC 7638 thumbprint the RFC gives.
    const RFC8037: &str = r#"{"v":1,"generation":1,"kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k","alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},"wrapped":{"kek":"AAAA"},"created_at":1,"activates_at":2}"#;

    #[test]
    fn reads_a_record_of_the_rfc_8037_key() {
        let r = KeyRecord::from_json(RFC8037.as_bytes()).expect("parse");
        assert_eq!(r.alg, Algorithm::EdDSA);
        assert_eq!(
            KeyRecord::from_json(r.to_json().as_bytes()).expect("again"),
            r
        );
    }

    proptest::proptest! {
        /// Whatever the store holds, parsing returns, and never panics: arbitrary bytes, and
        /// the RFC 8037 record with any byte replaced or cut short.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
                        at in 0usize..300, byte in proptest::prelude::any::<u8>(), cut in 0usize..300) {
            let _ = KeyRecord::from_json(&bytes);
            let mut edited = RFC8037.as_bytes().to_vec();
            if let Some(b) = edited.get_mut(at) {
                *b = byte;
            }
            let _ = KeyRecord::from_json(&edited);
            let _ = KeyRecord::from_json(edited.get(..cut).unwrap_or(&edited));
        }
    }

    #[test]
    fn fields_sort_by_generation() {
        assert!(generation_field(9) < generation_field(10));
    }
}
