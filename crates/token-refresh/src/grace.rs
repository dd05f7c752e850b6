//! The sealed grace successor: the successor refresh token, encrypted under a key derived from
//! its parent token, so a retry within the grace window can get the *same* successor back while
//! the store holds nothing usable on its own.
//!
//! key = HMAC-SHA-256(pepper, "token-refresh/grace-key/v1\0" || parent token); the successor is
//! sealed with ChaCha20-Poly1305 (RFC 8439) under a random 96-bit nonce, with the family id as
//! associated data. Opening needs both the pepper and the parent token; the store has neither.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::token::{Pepper, RefreshToken, b64_decode, b64_encode, random_bytes};

const VERSION: u8 = 1;
const NONCE_BYTES: usize = 12;
const AAD_LABEL: &[u8] = b"token-refresh/grace-successor/v1";
/// Upper bound of a sealed successor (version + nonce + token + tag, with room to spare);
/// larger values are refused when decoding.
pub const MAX_SEALED_BYTES: usize = 256;

/// A successor refresh token sealed under a key derived from its parent token.
///
/// Opaque bytes to a store; the serde form is unpadded base64url. `Debug` shows only the
/// length.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSuccessor(Vec<u8>);

impl SealedSuccessor {
    /// The sealed value made of these bytes (a store reading its own records).
    ///
    /// # Errors
    /// [`Error::Store`] when the value is longer than [`MAX_SEALED_BYTES`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() > MAX_SEALED_BYTES {
            return Err(Error::store("sealed successor is too large"));
        }
        Ok(SealedSuccessor(bytes))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The base64url form (what the serde form holds).
    pub fn to_base64url(&self) -> String {
        b64_encode(&self.0)
    }
}

impl fmt::Debug for SealedSuccessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedSuccessor({} bytes)", self.0.len())
    }
}

impl serde::Serialize for SealedSuccessor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&b64_encode(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for SealedSuccessor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if text.len() > MAX_SEALED_BYTES * 2 {
            return Err(serde::de::Error::custom("sealed successor is too large"));
        }
        let bytes = b64_decode(text.as_bytes())
            .ok_or_else(|| serde::de::Error::custom("invalid sealed successor"))?;
        SealedSuccessor::from_bytes(bytes)
            .map_err(|_| serde::de::Error::custom("sealed successor is too large"))
    }
}

fn aad(parent: &RefreshToken) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 16);
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(parent.family_id().as_bytes());
    aad
}

/// The AEAD keyed for `parent` (the cipher zeroizes its key copy on drop).
fn cipher(pepper: &Pepper, parent: &RefreshToken) -> ChaCha20Poly1305 {
    let key = pepper.grace_key(parent);
    let key: &[u8; 32] = &key;
    let key: &Key = key.into();
    ChaCha20Poly1305::new(key)
}

/// Seals `successor` under a key derived from `parent`.
pub(crate) fn seal(
    pepper: &Pepper,
    parent: &RefreshToken,
    successor: &RefreshToken,
) -> Result<SealedSuccessor> {
    let cipher = cipher(pepper, parent);
    let mut nonce = [0u8; NONCE_BYTES];
    random_bytes(&mut nonce)?;
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: successor.as_str().as_bytes(),
                aad: &aad(parent),
            },
        )
        .map_err(|_| Error::store("sealing the grace successor failed"))?;
    let mut out = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    SealedSuccessor::from_bytes(out)
}

/// Opens a sealed successor with the parent token that was presented.
///
/// # Errors
/// [`Error::Store`] when the value does not decrypt or is not a well-formed token: the store
/// returned something this crate did not seal for this parent, so the operation fails closed.
pub(crate) fn open(
    pepper: &Pepper,
    parent: &RefreshToken,
    sealed: &SealedSuccessor,
) -> Result<RefreshToken> {
    let corrupt = || Error::store("the sealed grace successor does not open");
    let (version, rest) = sealed.0.split_first().ok_or_else(corrupt)?;
    if *version != VERSION || rest.len() < NONCE_BYTES {
        return Err(corrupt());
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| corrupt())?;
    let plain = cipher(pepper, parent)
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad(parent),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| corrupt())?;
    let text = std::str::from_utf8(&plain).map_err(|_| corrupt())?;
    let token = RefreshToken::parse(text).map_err(|_| corrupt())?;
    if token.family_id() != parent.family_id() {
        return Err(corrupt());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::FamilyId;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let pepper = Pepper::new([9u8; 32]).unwrap();
        let fid = FamilyId::generate().unwrap();
        let parent = RefreshToken::generate(fid).unwrap();
        let successor = RefreshToken::generate(fid).unwrap();
        let sealed = seal(&pepper, &parent, &successor).unwrap();
        assert!(sealed.as_bytes().len() < MAX_SEALED_BYTES);
        assert!(!format!("{sealed:?}").contains(&successor.as_str()[4..20]));
        assert_eq!(open(&pepper, &parent, &sealed).unwrap(), successor);

        // Another parent, another pepper, or a flipped bit: does not open.
        let other = RefreshToken::generate(fid).unwrap();
        assert!(open(&pepper, &other, &sealed).is_err());
        assert!(open(&Pepper::new([8u8; 32]).unwrap(), &parent, &sealed).is_err());
        let mut bytes = sealed.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(
            open(
                &pepper,
                &parent,
                &SealedSuccessor::from_bytes(bytes).unwrap()
            )
            .is_err()
        );
        assert!(
            open(
                &pepper,
                &parent,
                &SealedSuccessor::from_bytes(vec![]).unwrap()
            )
            .is_err()
        );

        let json = serde_json::to_string(&sealed).unwrap();
        assert_eq!(
            serde_json::from_str::<SealedSuccessor>(&json).unwrap(),
            sealed
        );
    }
}
