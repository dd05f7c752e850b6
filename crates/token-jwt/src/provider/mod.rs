//! Crypto providers: where signatures are actually computed and checked.
//!
//! A provider is a *value* passed to whatever needs one, never a process-wide default picked
//! by cargo features. Two ship with this crate:
//!
//! - [`RustCryptoProvider`]: pure Rust (`p256`, `p384`, `ed25519-dalek`, `rsa`), always
//!   available.
//! - `AwsLcProvider` (feature `aws-lc-rs`): the same algorithms on AWS-LC, about three times
//!   faster for ECDSA. Enabling the feature only *adds* this value; nothing else changes.
//!
//! Both enforce the same rules, checked by the same test suites (RFC and Wycheproof
//! vectors): fixed-size `r || s` ECDSA signatures with `0 < r, s < n`, EC points on their
//! curve, strict Ed25519 (canonical `s`, no small-order keys or `R`), RSA moduli of 2048 to
//! 8192 bits, PSS with a 32-byte salt.

use std::fmt;
use std::sync::Arc;

use crate::alg::Algorithm;
use crate::error::{Error, Result};
use crate::jwk::Jwk;
use crate::key::PrivateKey;
use crate::signer::JwsSigner;

#[cfg(feature = "aws-lc-rs")]
mod aws_lc;
mod rustcrypto;

#[cfg(feature = "aws-lc-rs")]
pub use aws_lc::AwsLcProvider;
pub use rustcrypto::RustCryptoProvider;

/// A public key bound to one algorithm, ready to check signatures.
///
/// Implementations treat `message` and `signature` as attacker-controlled: any length, any
/// bytes; they must not panic and must answer [`Error::InvalidSignature`] for anything that
/// is not a valid signature in the algorithm's JWS encoding.
pub trait JwsVerifier: Send + Sync + fmt::Debug {
    /// The one algorithm this key verifies.
    fn algorithm(&self) -> Algorithm;
    /// The public key.
    fn jwk(&self) -> &Jwk;
    /// Checks `signature` over `message`.
    ///
    /// # Errors
    /// [`Error::InvalidSignature`].
    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<()>;
}

/// A source of signers and verifiers.
pub trait CryptoProvider: Send + Sync + fmt::Debug {
    /// A short name for logs and benchmarks (`"rustcrypto"`, `"aws-lc-rs"`).
    fn name(&self) -> &'static str;

    /// A verifier for `jwk` and `alg`.
    ///
    /// # Errors
    /// [`Error::AlgorithmKeyMismatch`] when `alg` does not fit the key type,
    /// [`Error::InvalidPublicKey`] when the key is not valid (point off the curve, small-order
    /// Ed25519 key), [`Error::ProviderUnsupported`] when the provider lacks the algorithm.
    fn verifying_key(&self, jwk: &Jwk, alg: Algorithm) -> Result<Arc<dyn JwsVerifier>>;

    /// A signer for a private key.
    ///
    /// # Errors
    /// [`Error::InvalidPrivateKey`] or [`Error::ProviderUnsupported`].
    fn signer(&self, key: &PrivateKey) -> Result<Arc<dyn JwsSigner>>;
}

/// `Arc<T>` and `&T` provide what the provider they point to provides.
macro_rules! forward_provider {
    ($($pointer:ty),+) => {$(
        impl<T: CryptoProvider + ?Sized> CryptoProvider for $pointer {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            fn verifying_key(&self, jwk: &Jwk, alg: Algorithm) -> Result<Arc<dyn JwsVerifier>> {
                (**self).verifying_key(jwk, alg)
            }
            fn signer(&self, key: &PrivateKey) -> Result<Arc<dyn JwsSigner>> {
                (**self).signer(key)
            }
        }
    )+};
}

forward_provider!(Arc<T>, &T);

/// The fastest provider compiled in: `AwsLcProvider` with the `aws-lc-rs` feature, else
/// [`RustCryptoProvider`]. A convenience for binaries; libraries should take a provider as a
/// parameter.
pub fn fastest_provider() -> Arc<dyn CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    {
        Arc::new(AwsLcProvider::new())
    }
    #[cfg(not(feature = "aws-lc-rs"))]
    {
        Arc::new(RustCryptoProvider::new())
    }
}

/// Every provider compiled in, for tests and benchmarks that must cover each.
pub fn all_providers() -> Vec<Arc<dyn CryptoProvider>> {
    vec![
        Arc::new(RustCryptoProvider::new()),
        #[cfg(feature = "aws-lc-rs")]
        Arc::new(AwsLcProvider::new()),
    ]
}

/// Checks that `alg` fits the key type and returns it.
pub(crate) fn check_fit(jwk: &Jwk, alg: Algorithm) -> Result<()> {
    if jwk.compatible(alg) {
        Ok(())
    } else {
        Err(Error::AlgorithmKeyMismatch(alg))
    }
}

/// Refuses a signature whose length is wrong for a fixed-size algorithm (DER-encoded ECDSA
/// among them) before any backend sees it.
pub(crate) fn check_len(alg: Algorithm, signature: &[u8]) -> Result<()> {
    match alg.fixed_signature_len() {
        Some(n) if n != signature.len() => Err(Error::InvalidSignature),
        _ => Ok(()),
    }
}

/// A provider's public key, already checked and bound to one algorithm.
pub(crate) trait ProviderKey: Send + Sync {
    /// Whether `signature`, in the JWS encoding of the key's algorithm, is valid over `message`.
    /// Both are attacker-controlled: any length, any bytes.
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool;
}

/// The [`JwsVerifier`] of both providers: a provider's key with its algorithm and JWK.
pub(crate) struct KeyVerifier<K> {
    /// The name `Debug` prints (`RustCryptoVerifier`, `AwsLcVerifier`).
    name: &'static str,
    alg: Algorithm,
    jwk: Jwk,
    key: K,
}

/// `key`, which verifies `alg` signatures, as the verifier of `jwk`; `name` is what `Debug`
/// prints.
pub(crate) fn key_verifier<K: ProviderKey + 'static>(
    name: &'static str,
    jwk: &Jwk,
    alg: Algorithm,
    key: K,
) -> Arc<dyn JwsVerifier> {
    Arc::new(KeyVerifier {
        name,
        alg,
        jwk: jwk.clone(),
        key,
    })
}

impl<K> fmt::Debug for KeyVerifier<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(self.name)
            .field("alg", &self.alg)
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

impl<K: ProviderKey> JwsVerifier for KeyVerifier<K> {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        check_len(self.alg, signature)?;
        if self.key.verifies(message, signature) {
            Ok(())
        } else {
            Err(Error::InvalidSignature)
        }
    }
}

/// A decoded public key, shared by both providers.
pub(crate) enum Decoded {
    Ec { sec1: Vec<u8> },
    Ed25519 { key: ed25519_dalek::VerifyingKey },
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// Decodes the JWK's members; validates Ed25519 keys (decompression, not small order).
pub(crate) fn decode(jwk: &Jwk) -> Result<Decoded> {
    use crate::b64;
    use crate::jwk::KeyParams;
    let bad = || Error::InvalidJwk("member is not base64url");
    Ok(match &jwk.params {
        KeyParams::Ec { x, y, .. } => {
            let mut sec1 = vec![4u8];
            sec1.extend(b64::decode(x).ok_or_else(bad)?);
            sec1.extend(b64::decode(y).ok_or_else(bad)?);
            Decoded::Ec { sec1 }
        }
        KeyParams::Ed25519 { x } => {
            let bytes = b64::decode_array::<32>(x).ok_or_else(bad)?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| Error::InvalidPublicKey("not an Ed25519 point"))?;
            if key.is_weak() {
                return Err(Error::InvalidPublicKey("small-order Ed25519 key"));
            }
            Decoded::Ed25519 { key }
        }
        KeyParams::Rsa { n, e } => Decoded::Rsa {
            n: b64::decode(n).ok_or_else(bad)?,
            e: b64::decode(e).ok_or_else(bad)?,
        },
    })
}
