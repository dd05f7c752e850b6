//! The AWS-LC provider (feature `aws-lc-rs`): the same algorithms and rules as
//! [`super::RustCryptoProvider`], on AWS-LC's optimized assembly.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as lc, KeyPair as _, ParsedPublicKey};

use super::{CryptoProvider, Decoded, JwsVerifier, ProviderKey, check_fit, decode, key_verifier};
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
    Rsa(
        lc::RsaPublicKeyComponents<Vec<u8>>,
        &'static lc::RsaParameters,
    ),
}

/// Encodings of the Ed25519 points of small order, with the sign bit cleared (the list
/// libsodium uses in `has_small_order`): the eight-torsion points plus the non-canonical
/// encodings `p - 1`, `p` and `p + 1` of three of them.
const SMALL_ORDER: [[u8; 32]; 7] = [
    // 0 (order 4)
    [0; 32],
    // 1 (order 1)
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    // order 8
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    // order 8
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    // p - 1 (order 2)
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // p (non-canonical 0)
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // p + 1 (non-canonical 1)
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

/// Whether a 32-byte point encoding (`R` of a signature) is of small order. A table lookup
/// instead of a decompression: the point is public, so no constant-time concern.
fn small_order(encoding: &[u8]) -> bool {
    let Ok(mut bytes) = <[u8; 32]>::try_from(encoding) else {
        return true;
    };
    bytes[31] &= 0x7f;
    SMALL_ORDER.contains(&bytes)
}

impl ProviderKey for Key {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Key::Parsed(k) => k.verify_sig(message, signature).is_ok(),
            Key::Ed25519(k) => {
                signature.get(..32).is_some_and(|r| !small_order(r))
                    && k.verify_sig(message, signature).is_ok()
            }
            Key::Rsa(k, params) => k.verify(params, message, signature).is_ok(),
        }
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
        Ok(key_verifier("AwsLcVerifier", jwk, alg, key))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table entry, with either sign bit, is refused by `ed25519-dalek` as a key: it is
    /// either not a point or a point of small order. And every point of the eight-torsion
    /// subgroup is in the table, so the table is complete for canonical encodings (AWS-LC
    /// compares `R` byte for byte with a canonical encoding, so non-canonical ones never verify).
    #[test]
    fn small_order_table_is_right_and_complete() {
        for entry in SMALL_ORDER {
            for sign in [0u8, 0x80] {
                let mut e = entry;
                e[31] |= sign;
                assert!(small_order(&e));
                let weak =
                    ed25519_dalek::VerifyingKey::from_bytes(&e).map_or(true, |k| k.is_weak());
                assert!(weak, "{e:02x?}");
            }
        }
        for point in curve25519_dalek::constants::EIGHT_TORSION {
            assert!(small_order(point.compress().as_bytes()));
        }
        // A real public key is not flagged.
        let key = crate::PrivateKey::generate(Algorithm::EdDSA).unwrap();
        let crate::KeyParams::Ed25519 { x } = &key.public_jwk().params else {
            unreachable!()
        };
        assert!(!small_order(&crate::b64::decode(x).unwrap()));
    }
}
