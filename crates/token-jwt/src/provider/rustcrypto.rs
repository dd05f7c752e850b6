//! The pure-Rust provider: `p256`, `p384`, `ed25519-dalek` (strict verification) and `rsa`.

use std::fmt;
use std::sync::Arc;

use p256::pkcs8::DecodePrivateKey;
use sha2::Sha256;
use signature::Verifier;

use super::{CryptoProvider, Decoded, JwsVerifier, check_fit, check_len, decode};
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

struct RcVerifier {
    alg: Algorithm,
    jwk: Jwk,
    key: Key,
}

impl fmt::Debug for RcVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustCryptoVerifier")
            .field("alg", &self.alg)
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

fn invalid<E>(_: E) -> Error {
    Error::InvalidSignature
}

impl JwsVerifier for RcVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        check_len(self.alg, signature)?;
        match &self.key {
            Key::P256(k) => {
                // from_slice refuses r or s equal to zero or not below the group order.
                let sig = p256::ecdsa::Signature::from_slice(signature).map_err(invalid)?;
                k.verify(message, &sig).map_err(invalid)
            }
            Key::P384(k) => {
                let sig = p384::ecdsa::Signature::from_slice(signature).map_err(invalid)?;
                k.verify(message, &sig).map_err(invalid)
            }
            Key::Ed25519(k) => {
                let sig = ed25519_dalek::Signature::from_slice(signature).map_err(invalid)?;
                // Strict: canonical s, R and A not of small order.
                k.verify_strict(message, &sig).map_err(invalid)
            }
            Key::Rs256(k) => {
                let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(invalid)?;
                k.verify(message, &sig).map_err(invalid)
            }
            Key::Ps256(k) => {
                let sig = rsa::pss::Signature::try_from(signature).map_err(invalid)?;
                k.verify(message, &sig).map_err(invalid)
            }
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
        Ok(Arc::new(RcVerifier {
            alg,
            jwk: jwk.clone(),
            key,
        }))
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
