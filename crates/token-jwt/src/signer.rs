//! The signer traits: [`JwsSigner`] for local keys, [`AsyncJwsSigner`] for remote signers
//! (AWS KMS in `token-kms`), and a blanket impl so every local signer is also an async one.
//!
//! [`RustCryptoSigner`] adapts any RustCrypto key (`signature::Signer` + `Keypair`) whose
//! verifying key is a P-256, P-384 or Ed25519 key, so a hardware-backed RustCrypto signer
//! plugs in the same way as the in-memory keys this crate loads.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use signature::{Keypair, SignatureEncoding};

use crate::alg::Algorithm;
use crate::error::{Error, Result};
use crate::jwk::{EcCurve, Jwk};

/// A signer whose key is in this process: signing is a synchronous CPU operation.
///
/// Implementations must never expose key material through `Debug` or errors.
pub trait JwsSigner: Send + Sync + fmt::Debug {
    /// The JWS algorithm of every signature this signer makes.
    fn algorithm(&self) -> Algorithm;
    /// The `kid` put in the header of every token (the keys of this crate use the key's RFC
    /// 7638 thumbprint). By default the `kid` of [`JwsSigner::public_jwk`], so the header and
    /// the published JWK cannot disagree; empty when the JWK has none.
    fn key_id(&self) -> &str {
        self.public_jwk().kid.as_deref().unwrap_or_default()
    }
    /// The public key as a JWK (with `kid`, `alg` and `use: sig`).
    fn public_jwk(&self) -> &Jwk;
    /// Signs the JWS signing input (`base64url(header) || '.' || base64url(payload)`) and
    /// returns the signature in its JWS form (`r || s` for ECDSA).
    ///
    /// # Errors
    /// [`Error::Signing`] when the key cannot sign.
    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>>;
}

/// The future returned by [`AsyncJwsSigner::sign_async`]. It is `Send`, so a signer can be
/// used from any multi-threaded runtime.
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>>> + Send + 'a>>;

/// A signer that may have to wait (a remote KMS or HSM). Object safe: a key ring holds
/// `Arc<dyn AsyncJwsSigner>` of any kind.
pub trait AsyncJwsSigner: Send + Sync + fmt::Debug {
    /// The JWS algorithm of every signature this signer makes.
    fn algorithm(&self) -> Algorithm;
    /// The `kid` put in the header of every token; by default the `kid` of
    /// [`AsyncJwsSigner::public_jwk`] (empty when it has none).
    fn key_id(&self) -> &str {
        self.public_jwk().kid.as_deref().unwrap_or_default()
    }
    /// The public key as a JWK.
    fn public_jwk(&self) -> &Jwk;
    /// Signs the JWS signing input; see [`JwsSigner::sign`].
    fn sign_async<'a>(&'a self, signing_input: &'a [u8]) -> SignFuture<'a>;
}

impl<T: JwsSigner + ?Sized> AsyncJwsSigner for T {
    fn algorithm(&self) -> Algorithm {
        JwsSigner::algorithm(self)
    }
    fn key_id(&self) -> &str {
        JwsSigner::key_id(self)
    }
    fn public_jwk(&self) -> &Jwk {
        JwsSigner::public_jwk(self)
    }
    fn sign_async<'a>(&'a self, signing_input: &'a [u8]) -> SignFuture<'a> {
        Box::pin(std::future::ready(self.sign(signing_input)))
    }
}

/// `Arc<T>` and `Box<T>` sign as the signer they point to.
macro_rules! forward_signer {
    ($($pointer:ident),+) => {$(
        impl<T: JwsSigner + ?Sized> JwsSigner for $pointer<T> {
            fn algorithm(&self) -> Algorithm {
                (**self).algorithm()
            }
            fn key_id(&self) -> &str {
                (**self).key_id()
            }
            fn public_jwk(&self) -> &Jwk {
                (**self).public_jwk()
            }
            fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>> {
                (**self).sign(signing_input)
            }
        }
    )+};
}

forward_signer!(Arc, Box);

/// A RustCrypto verifying-key type that has a JWS algorithm and a JWK form.
pub trait JwsPublicKey {
    /// The RustCrypto signature type, whose encoding is the JWS signature encoding.
    type Signature: SignatureEncoding;
    /// The JWS algorithm.
    const ALGORITHM: Algorithm;
    /// The public key as a JWK (without `kid`).
    ///
    /// # Errors
    /// [`Error::InvalidPublicKey`] if the key cannot be encoded (never for a valid key).
    fn to_jwk(&self) -> Result<Jwk>;
}

/// A JWK from a SEC1 uncompressed point (`0x04 || x || y`).
pub(crate) fn ec_jwk(crv: EcCurve, uncompressed: &[u8]) -> Result<Jwk> {
    let n = crv.coordinate_len();
    match uncompressed.split_first() {
        Some((4, xy)) if xy.len() == 2 * n => {
            let (x, y) = xy.split_at(n);
            Jwk::ec(crv, x, y)
        }
        _ => Err(Error::InvalidPublicKey("not an uncompressed SEC1 point")),
    }
}

impl JwsPublicKey for p256::ecdsa::VerifyingKey {
    type Signature = p256::ecdsa::Signature;
    const ALGORITHM: Algorithm = Algorithm::ES256;
    fn to_jwk(&self) -> Result<Jwk> {
        ec_jwk(EcCurve::P256, self.to_encoded_point(false).as_bytes())
    }
}

impl JwsPublicKey for p384::ecdsa::VerifyingKey {
    type Signature = p384::ecdsa::Signature;
    const ALGORITHM: Algorithm = Algorithm::ES384;
    fn to_jwk(&self) -> Result<Jwk> {
        ec_jwk(EcCurve::P384, self.to_encoded_point(false).as_bytes())
    }
}

impl JwsPublicKey for ed25519_dalek::VerifyingKey {
    type Signature = ed25519_dalek::Signature;
    const ALGORITHM: Algorithm = Algorithm::EdDSA;
    fn to_jwk(&self) -> Result<Jwk> {
        Ok(Jwk::ed25519(self.as_bytes()))
    }
}

/// A [`JwsSigner`] over any RustCrypto signing key.
///
/// The `kid` is the RFC 7638 thumbprint of the public key unless set with
/// [`RustCryptoSigner::with_key_id`].
pub struct RustCryptoSigner<K> {
    key: K,
    alg: Algorithm,
    jwk: Jwk,
}

impl<K> RustCryptoSigner<K>
where
    K: Keypair,
    K::VerifyingKey: JwsPublicKey,
{
    /// Wraps a RustCrypto key.
    ///
    /// # Errors
    /// [`Error::InvalidPublicKey`] if the public key cannot be encoded as a JWK.
    pub fn new(key: K) -> Result<Self> {
        let alg = <K::VerifyingKey as JwsPublicKey>::ALGORITHM;
        let jwk = key.verifying_key().to_jwk()?;
        let kid = jwk.thumbprint();
        Ok(RustCryptoSigner {
            key,
            alg,
            jwk: jwk.with_kid(kid).with_alg(alg),
        })
    }

    /// Overrides the `kid` (for keys whose id is assigned elsewhere).
    #[must_use]
    pub fn with_key_id(mut self, kid: impl Into<String>) -> Self {
        self.jwk.kid = Some(kid.into());
        self
    }
}

impl<K> fmt::Debug for RustCryptoSigner<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustCryptoSigner")
            .field("alg", &self.alg)
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

impl<K> JwsSigner for RustCryptoSigner<K>
where
    K: Keypair + signature::Signer<<K::VerifyingKey as JwsPublicKey>::Signature> + Send + Sync,
    K::VerifyingKey: JwsPublicKey,
{
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
    fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }
    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>> {
        let sig = self
            .key
            .try_sign(signing_input)
            .map_err(|_| Error::signing("the RustCrypto key failed to sign"))?;
        Ok(sig.to_bytes().as_ref().to_vec())
    }
}
