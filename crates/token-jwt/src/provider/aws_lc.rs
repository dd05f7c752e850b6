//! The AWS-LC provider (feature `aws-lc-rs`): the same algorithms and rules as
//! [`super::RustCryptoProvider`], on AWS-LC's optimized assembly.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as lc, KeyPair as _, ParsedPublicKey};

use super::{CryptoProvider, Decoded, JwsVerifier, check_fit, check_len, decode};
use crate::alg::Algorithm;
use crate::error::{Error, Result};
use crate::jwk::{EcCurve, Jwk};
use crate::key::PrivateKey;
use crate::signer::{JwsSigner, ec_jwk};

/// The AWS-LC provider.
#[derive(Clone, Debug, Default)]
pub struct AwsLcProvider {
    rng: SystemRandom,
}

impl AwsLcProvider {
    /// The provider.
    pub fn new() -> Self {
        AwsLcProvider {
            rng: SystemRandom::new(),
        }
    }
}

enum Key {
    Parsed(ParsedPublicKey),
    /// Ed25519: `R` is also checked for small order, as `ed25519-dalek`'s `verify_strict`
    /// does (AWS-LC itself already refuses a non-canonical `s`).
    Ed25519(ParsedPublicKey),
    Rsa(lc::RsaPublicKeyComponents<Vec<u8>>, &'static lc::RsaParameters),
}

struct LcVerifier {
    alg: Algorithm,
    jwk: Jwk,
    key: Key,
}

impl fmt::Debug for LcVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsLcVerifier")
            .field("alg", &self.alg)
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

/// Whether the 32-byte encoding is a point of small order (or not a point at all).
fn small_order_or_invalid(encoding: &[u8]) -> bool {
    match <[u8; 32]>::try_from(encoding) {
        Ok(bytes) => ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_or(true, |p| p.is_weak()),
        Err(_) => true,
    }
}

impl JwsVerifier for LcVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        check_len(self.alg, signature)?;
        let ok = match &self.key {
            Key::Parsed(k) => k.verify_sig(message, signature).is_ok(),
            Key::Ed25519(k) => {
                signature
                    .get(..32)
                    .is_some_and(|r| !small_order_or_invalid(r))
                    && k.verify_sig(message, signature).is_ok()
            }
            Key::Rsa(k, params) => k.verify(params, message, signature).is_ok(),
        };
        if ok { Ok(()) } else { Err(Error::InvalidSignature) }
    }
}

impl CryptoProvider for AwsLcProvider {
    fn name(&self) -> &'static str {
        "aws-lc-rs"
    }

    fn verifying_key(&self, jwk: &Jwk, alg: Algorithm) -> Result<Arc<dyn JwsVerifier>> {
        check_fit(jwk, alg)?;
        let off_curve = |_| Error::InvalidPublicKey("point is not on the curve");
        let key = match (decode(jwk)?, alg) {
            (Decoded::Ec { sec1 }, Algorithm::ES256) => Key::Parsed(
                ParsedPublicKey::new(&lc::ECDSA_P256_SHA256_FIXED, sec1).map_err(off_curve)?,
            ),
            (Decoded::Ec { sec1 }, Algorithm::ES384) => Key::Parsed(
                ParsedPublicKey::new(&lc::ECDSA_P384_SHA384_FIXED, sec1).map_err(off_curve)?,
            ),
            (Decoded::Ed25519 { key }, Algorithm::EdDSA) => Key::Ed25519(
                ParsedPublicKey::new(&lc::ED25519, key.as_bytes())
                    .map_err(|_| Error::InvalidPublicKey("not an Ed25519 point"))?,
            ),
            (Decoded::Rsa { n, e }, Algorithm::RS256) => Key::Rsa(
                lc::RsaPublicKeyComponents { n, e },
                &lc::RSA_PKCS1_2048_8192_SHA256,
            ),
            (Decoded::Rsa { n, e }, Algorithm::PS256) => Key::Rsa(
                lc::RsaPublicKeyComponents { n, e },
                &lc::RSA_PSS_2048_8192_SHA256,
            ),
            _ => return Err(Error::AlgorithmKeyMismatch(alg)),
        };
        Ok(Arc::new(LcVerifier {
            alg,
            jwk: jwk.clone(),
            key,
        }))
    }

    fn signer(&self, key: &PrivateKey) -> Result<Arc<dyn JwsSigner>> {
        let der = key.pkcs8_der();
        let bad = |_| Error::InvalidPrivateKey("AWS-LC refused the PKCS#8 key");
        let inner = match key.algorithm() {
            Algorithm::ES256 => Inner::Ecdsa(
                lc::EcdsaKeyPair::from_pkcs8(&lc::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(bad)?,
            ),
            Algorithm::ES384 => Inner::Ecdsa(
                lc::EcdsaKeyPair::from_pkcs8(&lc::ECDSA_P384_SHA384_FIXED_SIGNING, der)
                    .map_err(bad)?,
            ),
            Algorithm::EdDSA => {
                Inner::Ed25519(lc::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(bad)?)
            }
            alg => {
                return Err(Error::ProviderUnsupported {
                    provider: "aws-lc-rs",
                    alg,
                    operation: "signing",
                });
            }
        };
        // The public key AWS-LC derived must be the one the key material declares.
        let derived = match &inner {
            Inner::Ecdsa(k) => ec_jwk(
                if key.algorithm() == Algorithm::ES256 {
                    EcCurve::P256
                } else {
                    EcCurve::P384
                },
                k.public_key().as_ref(),
            )?,
            Inner::Ed25519(k) => Jwk::ed25519(
                k.public_key()
                    .as_ref()
                    .try_into()
                    .map_err(|_| Error::InvalidPrivateKey("Ed25519 public key length"))?,
            ),
        };
        if derived.params != key.public_jwk().params {
            return Err(Error::InvalidPrivateKey(
                "AWS-LC derived a different public key",
            ));
        }
        Ok(Arc::new(LcSigner {
            alg: key.algorithm(),
            jwk: key.public_jwk().clone(),
            inner,
            rng: self.rng.clone(),
        }))
    }
}

enum Inner {
    Ecdsa(lc::EcdsaKeyPair),
    Ed25519(lc::Ed25519KeyPair),
}

struct LcSigner {
    alg: Algorithm,
    jwk: Jwk,
    inner: Inner,
    rng: SystemRandom,
}

impl fmt::Debug for LcSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsLcSigner")
            .field("alg", &self.alg)
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

impl JwsSigner for LcSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
    fn key_id(&self) -> &str {
        self.jwk.kid.as_deref().unwrap_or_default()
    }
    fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }
    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>> {
        match &self.inner {
            Inner::Ecdsa(k) => k
                .sign(&self.rng, signing_input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::signing("AWS-LC ECDSA signing failed")),
            Inner::Ed25519(k) => Ok(k.sign(signing_input).as_ref().to_vec()),
        }
    }
}
