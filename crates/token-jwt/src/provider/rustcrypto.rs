//! The pure-Rust provider: `p256`, `p384`, `ed25519-dalek` (strict verification) and `rsa`.

use std::sync::Arc;

use p256::pkcs8::DecodePrivateKey;
use sha2::Sha256;
use signature::Verifier;

use super::{CryptoProvider, Decoded, JwsVerifier, ProviderKey, check_fit, decode, key_verifier};
use crate::alg::Algorithm;
use crate::error::{Error, Result};
use crate::jwk::Jwk;
use crate::key::PrivateKey;
use crate::signer::{JwsSigner, RustCryptoSigner};

/// The pure-Rust provider.
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCryptoProvider {
    _private: (),
}

impl RustCryptoProvider {
    /// The provider.
    pub const fn new() -> Self {
        RustCryptoProvider { _private: () }
    }
}

enum Key {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rs256(rsa::pkcs1v15::VerifyingKey<Sha256>),
    Ps256(rsa::pss::VerifyingKey<Sha256>),
}

impl ProviderKey for Key {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            // from_slice refuses r or s equal to zero or not below the group order.
            Key::P256(k) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| k.verify(message, &sig).is_ok()),
            Key::P384(k) => p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| k.verify(message, &sig).is_ok()),
            // Strict: canonical s, R and A not of small order.
            Key::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| k.verify_strict(message, &sig).is_ok()),
            Key::Rs256(k) => rsa::pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|sig| k.verify(message, &sig).is_ok()),
            Key::Ps256(k) => rsa::pss::Signature::try_from(signature)
                .is_ok_and(|sig| k.verify(message, &sig).is_ok()),
        }
    }
}

impl CryptoProvider for RustCryptoProvider {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn verifying_key(&self, jwk: &Jwk, alg: Algorithm) -> Result<Arc<dyn JwsVerifier>> {
        check_fit(jwk, alg)?;
        let off_curve = |_| Error::InvalidPublicKey("point is not on the curve");
        let key = match (decode(jwk)?, alg) {
            (Decoded::Ec { sec1 }, Algorithm::ES256) => {
                Key::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(off_curve)?)
            }
            (Decoded::Ec { sec1 }, Algorithm::ES384) => {
                Key::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(off_curve)?)
            }
            (Decoded::Ed25519 { key }, Algorithm::EdDSA) => Key::Ed25519(key),
            (Decoded::Rsa { n, e }, Algorithm::RS256 | Algorithm::PS256) => {
                let pk = rsa::RsaPublicKey::new_with_max_size(
                    rsa::BigUint::from_bytes_be(&n),
                    rsa::BigUint::from_bytes_be(&e),
                    crate::jwk::MAX_RSA_BITS,
                )
                .map_err(|_| Error::InvalidPublicKey("invalid RSA key"))?;
                if alg == Algorithm::RS256 {
                    Key::Rs256(rsa::pkcs1v15::VerifyingKey::new(pk))
                } else {
                    Key::Ps256(rsa::pss::VerifyingKey::new(pk))
                }
            }
            _ => return Err(Error::AlgorithmKeyMismatch(alg)),
        };
        Ok(key_verifier("RustCryptoVerifier", jwk, alg, key))
    }

    fn signer(&self, key: &PrivateKey) -> Result<Arc<dyn JwsSigner>> {
        let der = key.pkcs8_der();
        let bad = |_| Error::InvalidPrivateKey("PKCS#8 does not match the algorithm");
        Ok(match key.algorithm() {
            Algorithm::ES256 => Arc::new(RustCryptoSigner::new(
                p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(bad)?,
            )?),
            Algorithm::ES384 => Arc::new(RustCryptoSigner::new(
                p384::ecdsa::SigningKey::from_pkcs8_der(der).map_err(bad)?,
            )?),
            Algorithm::EdDSA => Arc::new(RustCryptoSigner::new(
                ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(bad)?,
            )?),
            alg => {
                return Err(Error::ProviderUnsupported {
                    provider: "rustcrypto",
                    alg,
                    operation: "signing",
                });
            }
        })
    }
}
