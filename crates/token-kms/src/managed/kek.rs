//! The fleet's key-encryption key: wraps managed private keys with XChaCha20-Poly1305.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use token_jwt::{Algorithm, PrivateKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The shortest key accepted, in bytes.
pub const MIN_KEK_BYTES: usize = 32;
/// Domain separation of the derived AEAD key.
const HKDF_INFO: &[u8] = b"token-kms managed signing keys v1";
/// Associated data of the check value.
const CHECK_AAD: &[u8] = b"token-kms/managed-key/v1/kek-check";
const CHECK_PLAINTEXT: &[u8] = b"token-service key-encryption key check";
const NONCE_LEN: usize = 24;

/// A key-encryption key shared by every instance (`KEY_ENCRYPTION_KEY`): the AEAD key is
/// HKDF-SHA256 of it, and every wrapped private key binds its `kid` and `alg` as associated
/// data, so a wrapped key moved to another record, or any byte changed, does not decrypt.
///
/// The key is zeroized on drop and never printed (`Debug` shows nothing of it).
pub struct KeyEncryptionKey {
    aead: XChaCha20Poly1305,
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey(..)")
    }
}

impl KeyEncryptionKey {
    /// A key from its bytes (at least [`MIN_KEK_BYTES`]).
    ///
    /// # Errors
    /// [`Error::InvalidKeyEncryptionKey`] when it is shorter.
    pub fn new(ikm: &[u8]) -> Result<Self> {
        if ikm.len() < MIN_KEK_BYTES {
            return Err(Error::InvalidKeyEncryptionKey(format!(
                "{} bytes; at least {MIN_KEK_BYTES} are needed",
                ikm.len()
            )));
        }
        let mut okm = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, ikm)
            .expand(HKDF_INFO, okm.as_mut_slice())
            .map_err(|_| Error::InvalidKeyEncryptionKey("HKDF refused the length".to_owned()))?;
        let aead = XChaCha20Poly1305::new_from_slice(okm.as_slice())
            .map_err(|_| Error::InvalidKeyEncryptionKey("bad AEAD key length".to_owned()))?;
        Ok(KeyEncryptionKey { aead })
    }

    /// A key from hex (`KEY_ENCRYPTION_KEY`); whitespace around it is ignored.
    ///
    /// # Errors
    /// [`Error::InvalidKeyEncryptionKey`] for non-hex text or fewer than 32 bytes.
    pub fn from_hex(text: &str) -> Result<Self> {
        let text = text.trim();
        if !text.len().is_multiple_of(2) {
            return Err(Error::InvalidKeyEncryptionKey(
                "an odd number of hex digits".to_owned(),
            ));
        }
        let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(
            (0..text.len())
                .step_by(2)
                .map(|i| {
                    text.get(i..i + 2)
                        .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                        .ok_or_else(|| Error::InvalidKeyEncryptionKey("not hexadecimal".to_owned()))
                })
                .collect::<Result<Vec<u8>>>()?,
        );
        Self::new(&bytes)
    }

    /// A fresh random key (a single instance with the in-memory store).
    ///
    /// # Errors
    /// When the OS random source fails.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(bytes.as_mut_slice())
            .map_err(|e| Error::InvalidKeyEncryptionKey(format!("no randomness: {e}")))?;
        Self::new(bytes.as_slice())
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce)
            .map_err(|e| Error::InvalidKeyEncryptionKey(format!("no randomness: {e}")))?;
        let ct = self
            .aead
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::TamperedBlob("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(B64.encode(out))
    }

    fn open(&self, aad: &[u8], sealed: &str) -> Result<Zeroizing<Vec<u8>>> {
        let bytes = B64
            .decode(sealed)
            .map_err(|_| Error::TamperedBlob("the wrapped key is not base64url"))?;
        if bytes.len() <= NONCE_LEN {
            return Err(Error::TamperedBlob("the wrapped key is too short"));
        }
        let (nonce, ct) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| Error::TamperedBlob("the wrapped key is too short"))?;
        self.aead
            .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| {
                Error::TamperedBlob(
                    "the wrapped key does not decrypt under KEY_ENCRYPTION_KEY with its kid and alg",
                )
            })
    }

    fn key_aad(alg: Algorithm, kid: &str) -> Vec<u8> {
        format!("token-kms/managed-key/v1|{}|{kid}", alg.as_str()).into_bytes()
    }

    /// Wraps a private key: base64url of `nonce || ciphertext` of its PKCS#8, with its
    /// `alg` and `kid` as associated data.
    ///
    /// # Errors
    /// Only when the OS random source fails.
    pub fn wrap(&self, key: &PrivateKey) -> Result<String> {
        self.seal(
            &Self::key_aad(key.algorithm(), key.key_id()),
            key.pkcs8_der(),
        )
    }

    /// Unwraps what [`KeyEncryptionKey::wrap`] made for the key `kid` of algorithm `alg`.
    ///
    /// # Errors
    /// [`Error::TamperedBlob`] when it does not decrypt (another key, another `kid` or `alg`,
    /// a changed byte) or decrypts to a key that is not `kid`.
    pub fn unwrap(&self, alg: Algorithm, kid: &str, sealed: &str) -> Result<PrivateKey> {
        let der = self.open(&Self::key_aad(alg, kid), sealed)?;
        let key = PrivateKey::from_pkcs8_der(&der)
            .map_err(|_| Error::TamperedBlob("the unwrapped key is not a PKCS#8 private key"))?;
        if key.algorithm() != alg || key.key_id() != kid {
            return Err(Error::TamperedBlob(
                "the unwrapped key does not match the record's alg and kid",
            ));
        }
        Ok(key)
    }

    /// A check value: stored once beside the keys, it tells an instance started with another
    /// key-encryption key that it has the wrong one before it tries any key.
    ///
    /// # Errors
    /// Only when the OS random source fails.
    pub fn check_value(&self) -> Result<String> {
        self.seal(CHECK_AAD, CHECK_PLAINTEXT)
    }

    /// Whether `check` is a [`KeyEncryptionKey::check_value`] of this key.
    pub fn verifies(&self, check: &str) -> bool {
        self.open(CHECK_AAD, check)
            .is_ok_and(|p| p.as_slice() == CHECK_PLAINTEXT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn wraps_and_unwraps_bound_to_kid_and_alg() {
        let kek = KeyEncryptionKey::from_hex(HEX).expect("kek");
        let key = PrivateKey::generate(Algorithm::ES256).expect("key");
        let sealed = kek.wrap(&key).expect("wrap");
        let back = kek
            .unwrap(Algorithm::ES256, key.key_id(), &sealed)
            .expect("unwrap");
        assert_eq!(back.key_id(), key.key_id());
        // another kid, another alg, another key, a flipped byte: all refused
        assert!(kek.unwrap(Algorithm::ES256, "other", &sealed).is_err());
        assert!(kek.unwrap(Algorithm::EdDSA, key.key_id(), &sealed).is_err());
        let other = KeyEncryptionKey::from_hex(&HEX.replace("00", "ff")).expect("kek");
        assert!(
            other
                .unwrap(Algorithm::ES256, key.key_id(), &sealed)
                .is_err()
        );
        let mut bytes = B64.decode(&sealed).expect("b64");
        if let Some(b) = bytes.last_mut() {
            *b ^= 1;
        }
        assert!(
            kek.unwrap(Algorithm::ES256, key.key_id(), &B64.encode(bytes))
                .is_err()
        );
    }

    #[test]
    fn the_check_value_tells_keys_apart() {
        let kek = KeyEncryptionKey::from_hex(HEX).expect("kek");
        let other = KeyEncryptionKey::from_hex(&HEX.replace("1f", "20")).expect("kek");
        let check = kek.check_value().expect("check");
        assert!(kek.verifies(&check));
        assert!(!other.verifies(&check));
        assert!(!kek.verifies("garbage"));
    }

    #[test]
    fn refuses_short_or_non_hex_keys() {
        for bad in ["", "00", &HEX[..62], &HEX.replace('0', "g"), &HEX[1..]] {
            let err = KeyEncryptionKey::from_hex(bad).expect_err(bad);
            assert!(!err.to_string().contains(HEX), "the key is never echoed");
        }
        assert!(
            format!("{:?}", KeyEncryptionKey::from_hex(HEX).expect("kek"))
                == "KeyEncryptionKey(..)"
        );
    }
}
