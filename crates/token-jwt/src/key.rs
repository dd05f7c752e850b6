//! Private signing keys: generate, load from PKCS#8 (PEM or DER) or from a private JWK, and
//! hand to a [`crate::CryptoProvider`] to get a signer.
//!
//! A [`PrivateKey`] keeps the key as PKCS#8 DER in memory that is zeroized on drop; its
//! `Debug` shows only the algorithm and `kid`.

use std::fmt;

use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding, SecretDocument};
use rand_core::OsRng;
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use crate::alg::Algorithm;
use crate::b64;
use crate::error::{Error, Part, Result};
use crate::json::{self, Limits};
use crate::jwk::{EcCurve, Jwk, KeyParams};
use crate::signer::JwsPublicKey;

/// Largest PEM or JWK private-key text accepted.
pub const MAX_PRIVATE_KEY_BYTES: usize = 16 * 1024;

/// A private signing key (ES256, ES384 or EdDSA), held as zeroizing PKCS#8 DER.
pub struct PrivateKey {
    alg: Algorithm,
    pkcs8: Zeroizing<Vec<u8>>,
    public: Jwk,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("alg", &self.alg)
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a new key with the OS CSPRNG.
    ///
    /// # Errors
    /// [`Error::ProviderUnsupported`] for algorithms without local signing (RS256, PS256).
    pub fn generate(alg: Algorithm) -> Result<Self> {
        let der = match alg {
            Algorithm::ES256 => p256::SecretKey::random(&mut OsRng).to_pkcs8_der(),
            Algorithm::ES384 => p384::SecretKey::random(&mut OsRng).to_pkcs8_der(),
            Algorithm::EdDSA => ed25519_dalek::SigningKey::generate(&mut OsRng).to_pkcs8_der(),
            _ => {
                return Err(Error::ProviderUnsupported {
                    provider: "local key",
                    alg,
                    operation: "key generation",
                });
            }
        }
        .map_err(|_| Error::InvalidPrivateKey("PKCS#8 encoding failed"))?;
        PrivateKey::from_pkcs8_der(der.as_bytes())
    }

    /// Loads a PKCS#8 DER private key (P-256, P-384 or Ed25519).
    ///
    /// # Errors
    /// [`Error::InvalidPrivateKey`] when the DER is not a supported PKCS#8 private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        if der.len() > MAX_PRIVATE_KEY_BYTES {
            return Err(Error::TooLarge {
                limit: MAX_PRIVATE_KEY_BYTES,
                actual: der.len(),
            });
        }
        let (alg, public) = if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            (Algorithm::ES256, k.verifying_key().to_jwk()?)
        } else if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_der(der) {
            (Algorithm::ES384, k.verifying_key().to_jwk()?)
        } else if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
            (Algorithm::EdDSA, k.verifying_key().to_jwk()?)
        } else {
            return Err(Error::InvalidPrivateKey(
                "not a PKCS#8 P-256, P-384 or Ed25519 private key",
            ));
        };
        let kid = public.thumbprint();
        Ok(PrivateKey {
            alg,
            pkcs8: Zeroizing::new(der.to_vec()),
            public: public.with_kid(kid).with_alg(alg),
        })
    }

    /// Loads a PEM `PRIVATE KEY` (PKCS#8).
    ///
    /// # Errors
    /// [`Error::InvalidPrivateKey`] when the text is not a PKCS#8 PEM of a supported key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        if pem.len() > MAX_PRIVATE_KEY_BYTES {
            return Err(Error::TooLarge {
                limit: MAX_PRIVATE_KEY_BYTES,
                actual: pem.len(),
            });
        }
        let (label, doc) = SecretDocument::from_pem(pem)
            .map_err(|_| Error::InvalidPrivateKey("not a PEM document"))?;
        if label != "PRIVATE KEY" {
            return Err(Error::InvalidPrivateKey("PEM label is not PRIVATE KEY"));
        }
        PrivateKey::from_pkcs8_der(doc.as_bytes())
    }

    /// Loads a private JWK (`kty: EC` with `d`, or `kty: OKP`/`Ed25519` with `d`). The public
    /// members must match the private key.
    ///
    /// # Errors
    /// [`Error::InvalidPrivateKey`] or a JWK error.
    pub fn from_jwk(json: &[u8]) -> Result<Self> {
        if json.len() > MAX_PRIVATE_KEY_BYTES {
            return Err(Error::TooLarge {
                limit: MAX_PRIVATE_KEY_BYTES,
                actual: json.len(),
            });
        }
        let mut map = json::parse_object(json, Part::Jwk, Limits::new(4, 64))?;
        let d_text = match map.remove("d") {
            Some(Value::String(s)) => Zeroizing::new(s),
            _ => return Err(Error::InvalidPrivateKey("missing d")),
        };
        // What remains must be a valid public JWK, which the private key must match.
        let public = Jwk::from_map(&map)?;
        let mut d = Zeroizing::new(
            b64::decode(d_text.as_bytes()).ok_or(Error::InvalidPrivateKey("d is not base64url"))?,
        );
        let der = match &public.params {
            KeyParams::Ec {
                crv: EcCurve::P256, ..
            } => p256::SecretKey::from_slice(&d)
                .map_err(|_| Error::InvalidPrivateKey("invalid P-256 scalar"))?
                .to_pkcs8_der(),
            KeyParams::Ec {
                crv: EcCurve::P384, ..
            } => p384::SecretKey::from_slice(&d)
                .map_err(|_| Error::InvalidPrivateKey("invalid P-384 scalar"))?
                .to_pkcs8_der(),
            KeyParams::Ed25519 { .. } => {
                let seed: &[u8; 32] = d
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::InvalidPrivateKey("Ed25519 d must be 32 bytes"))?;
                ed25519_dalek::SigningKey::from_bytes(seed).to_pkcs8_der()
            }
            _ => return Err(Error::UnsupportedKey),
        }
        .map_err(|_| Error::InvalidPrivateKey("PKCS#8 encoding failed"))?;
        d.zeroize();
        let key = PrivateKey::from_pkcs8_der(der.as_bytes())?;
        if key.public.params != public.params {
            return Err(Error::InvalidPrivateKey(
                "the public members do not match the private key",
            ));
        }
        Ok(key)
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The `kid`: the RFC 7638 thumbprint of the public key.
    pub fn key_id(&self) -> &str {
        self.public.kid.as_deref().unwrap_or_default()
    }

    /// The public key as a JWK with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self) -> &Jwk {
        &self.public
    }

    /// The PKCS#8 DER encoding (secret: handle with care).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The PKCS#8 PEM encoding (secret: handle with care).
    ///
    /// # Errors
    /// [`Error::InvalidPrivateKey`] if the encoding fails.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        let doc = SecretDocument::try_from(self.pkcs8.as_slice())
            .map_err(|_| Error::InvalidPrivateKey("invalid DER"))?;
        doc.to_pem("PRIVATE KEY", LineEnding::LF)
            .map_err(|_| Error::InvalidPrivateKey("PEM encoding failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_and_reload_each_algorithm() {
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            let k = PrivateKey::generate(alg).unwrap();
            assert_eq!(k.algorithm(), alg);
            let pem = k.to_pkcs8_pem().unwrap();
            let again = PrivateKey::from_pkcs8_pem(&pem).unwrap();
            assert_eq!(again.key_id(), k.key_id());
            assert_eq!(again.public_jwk(), k.public_jwk());
        }
        assert!(PrivateKey::generate(Algorithm::RS256).is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let k = PrivateKey::generate(Algorithm::ES256).unwrap();
        let pem = k.to_pkcs8_pem().unwrap();
        let dbg = format!("{k:?}");
        assert!(dbg.contains("ES256"));
        let body: String = pem.lines().nth(1).unwrap().chars().take(16).collect();
        assert!(!dbg.contains(&body));
    }

    #[test]
    fn private_jwk_must_match_public_members() {
        // RFC 8037 A.1
        let jwk = br#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        let k = PrivateKey::from_jwk(jwk).unwrap();
        assert_eq!(k.key_id(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        let wrong = br#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"}"#;
        assert!(matches!(
            PrivateKey::from_jwk(wrong),
            Err(Error::InvalidPrivateKey(_))
        ));
        assert!(
            PrivateKey::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            )
            .is_err()
        );
    }
}
