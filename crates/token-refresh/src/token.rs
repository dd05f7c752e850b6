//! The refresh-token format, family ids, the pepper and the keyed token hash.
//!
//! A refresh token is 77 ASCII characters:
//!
//! ```text
//! rt1_<family id: 16 bytes, 22 chars>_<secret: 32 bytes, 43 chars>_<checksum: 4 bytes, 6 chars>
//! ```
//!
//! Each segment is strict unpadded base64url. Since base64url itself uses `_` and `-`, the
//! segments are found by position, not by splitting; the separators are checked too. The
//! checksum is the first 4 bytes of SHA-256 over the first 70 characters (`rt1_…<secret>`):
//! it is not a secret and only catches typos and truncated copies before any store lookup.
//! Secret scanners can match `rt1_[A-Za-z0-9_-]{73}`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The prefix of every refresh token (version 1 of the format).
pub const TOKEN_PREFIX: &str = "rt1_";
/// The exact length of a refresh token in bytes.
pub const TOKEN_LEN: usize = 77;
/// Inputs longer than this are refused before they are looked at.
pub const MAX_TOKEN_BYTES: usize = 256;

const FAMILY_ID_BYTES: usize = 16;
const SECRET_BYTES: usize = 32;
const CHECKSUM_BYTES: usize = 4;
const FID_START: usize = 4;
const FID_END: usize = FID_START + 22;
const SECRET_START: usize = FID_END + 1;
const SECRET_END: usize = SECRET_START + 43;
const CHECKSUM_START: usize = SECRET_END + 1;
const _: () = assert!(CHECKSUM_START + 6 == TOKEN_LEN);

/// Fills `buf` from the thread's CSPRNG: rand's `ThreadRng`, ChaCha12 seeded from the OS and
/// reseeded from it every 64 KiB of output and after a `fork`. Family ids, secrets and grace
/// nonces come from here, so issuing a family costs no `getrandom` system call per value
/// (two per `GenerateTokens` before; measured with `perf stat`).
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    use rand::RngCore as _;
    rand::thread_rng()
        .try_fill_bytes(buf)
        .map_err(|_| Error::Random)
}

/// Decodes strict unpadded base64url into a fixed-size array; `None` on any deviation or a
/// different length (non-canonical trailing bits are refused by the engine).
pub(crate) fn b64_decode_array<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != (N * 4).div_ceil(3) {
        return None;
    }
    let mut out = [0u8; N];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
        Ok(n) if n == N => Some(out),
        _ => None,
    }
}

pub(crate) fn b64_encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn b64_decode(text: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

// ---- family id ---------------------------------------------------------------------------

/// The id of a refresh-token family: 16 random bytes, written as 22 base64url characters.
///
/// Not a secret: it appears in every token of the family and in access tokens as `sid`.
/// Knowing it is not enough to do anything to the family (a forged token is refused without
/// touching it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FamilyId([u8; FAMILY_ID_BYTES]);

impl FamilyId {
    /// A new random id from the OS CSPRNG.
    ///
    /// # Errors
    /// [`Error::Random`] when the OS random number generator fails.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; FAMILY_ID_BYTES];
        random_bytes(&mut bytes)?;
        Ok(FamilyId(bytes))
    }

    /// The id made of these bytes.
    pub const fn from_bytes(bytes: [u8; FAMILY_ID_BYTES]) -> Self {
        FamilyId(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; FAMILY_ID_BYTES] {
        &self.0
    }

    /// Parses the 22-character base64url form.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the text is not exactly 16 bytes of strict unpadded
    /// base64url.
    pub fn parse(text: &str) -> Result<Self> {
        b64_decode_array(text.as_bytes())
            .map(FamilyId)
            .ok_or(Error::InvalidInput(
                "family id is not 22 characters of base64url",
            ))
    }
}

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&b64_encode(self.0))
    }
}

impl fmt::Debug for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FamilyId({self})")
    }
}

impl FromStr for FamilyId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        FamilyId::parse(s)
    }
}

impl serde::Serialize for FamilyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&b64_encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for FamilyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        FamilyId::parse(&text).map_err(|_| serde::de::Error::custom("invalid family id"))
    }
}

// ---- token hash --------------------------------------------------------------------------

/// HMAC-SHA-256 of a refresh token under the server pepper: what a store keeps instead of the
/// token.
///
/// Compared in constant time; `Debug` never prints it. The serde form is unpadded base64url
/// (43 characters), for stores that keep families as JSON.
#[derive(Clone, Copy)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash made of these bytes (a store reading its own records).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        TokenHash(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 43-character base64url form (what the serde form and a Lua script compare).
    pub fn to_base64url(&self) -> String {
        b64_encode(self.0)
    }
}

impl ConstantTimeEq for TokenHash {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for TokenHash {}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

impl serde::Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&b64_encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // A visitor, not `String` or `Cow<str>` (whose impl always allocates): a family
        // document holds up to `MAX_ROTATED_HASHES` of these and is read on every rotation.
        struct HashText;
        impl serde::de::Visitor<'_> for HashText {
            type Value = TokenHash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token hash (base64url)")
            }
            fn visit_str<E: serde::de::Error>(
                self,
                text: &str,
            ) -> std::result::Result<TokenHash, E> {
                b64_decode_array(text.as_bytes())
                    .map(TokenHash)
                    .ok_or_else(|| E::custom("invalid token hash"))
            }
        }
        d.deserialize_str(HashText)
    }
}

// ---- refresh token -----------------------------------------------------------------------

/// A refresh token: opaque to clients, zeroized on drop, never printed.
///
/// There is deliberately no `Display`; [`RefreshToken::as_str`] is the one way to the text
/// (to put it in a response). Equality is constant-time.
#[derive(Clone)]
pub struct RefreshToken {
    text: Zeroizing<String>,
    family_id: FamilyId,
}

impl RefreshToken {
    /// A new token for `family_id` with 256 fresh bits from the OS CSPRNG.
    ///
    /// # Errors
    /// [`Error::Random`] when the OS random number generator fails.
    pub fn generate(family_id: FamilyId) -> Result<Self> {
        let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
        random_bytes(secret.as_mut())?;
        let mut text = Zeroizing::new(String::with_capacity(TOKEN_LEN));
        text.push_str(TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(family_id.0, &mut text);
        text.push('_');
        URL_SAFE_NO_PAD.encode_string(secret.as_ref(), &mut text);
        let checksum = checksum(text.as_bytes());
        text.push('_');
        URL_SAFE_NO_PAD.encode_string(checksum, &mut text);
        Ok(RefreshToken { text, family_id })
    }

    /// Parses a presented token: size limit, prefix, length, separators, strict base64url
    /// segments and checksum, in that order. Never panics, on any input.
    ///
    /// # Errors
    /// [`Error::TokenTooLarge`], [`Error::MalformedToken`] or [`Error::TokenChecksum`].
    pub fn parse(text: &str) -> Result<Self> {
        let bytes = text.as_bytes();
        if bytes.len() > MAX_TOKEN_BYTES {
            return Err(Error::TokenTooLarge {
                limit: MAX_TOKEN_BYTES,
                actual: bytes.len(),
            });
        }
        if !bytes.starts_with(TOKEN_PREFIX.as_bytes()) {
            return Err(Error::MalformedToken("missing rt1_ prefix"));
        }
        if bytes.len() != TOKEN_LEN {
            return Err(Error::MalformedToken("wrong length"));
        }
        if bytes.get(FID_END) != Some(&b'_') || bytes.get(SECRET_END) != Some(&b'_') {
            return Err(Error::MalformedToken("misplaced separator"));
        }
        let family = bytes
            .get(FID_START..FID_END)
            .and_then(b64_decode_array::<FAMILY_ID_BYTES>)
            .ok_or(Error::MalformedToken("family id is not base64url"))?;
        let secret = bytes
            .get(SECRET_START..SECRET_END)
            .and_then(b64_decode_array::<SECRET_BYTES>)
            .map(Zeroizing::new)
            .ok_or(Error::MalformedToken("secret is not base64url"))?;
        drop(secret);
        let presented = bytes
            .get(CHECKSUM_START..)
            .and_then(b64_decode_array::<CHECKSUM_BYTES>)
            .ok_or(Error::MalformedToken("checksum is not base64url"))?;
        let expected = checksum(bytes.get(..SECRET_END).unwrap_or_default());
        if !bool::from(presented.ct_eq(&expected)) {
            return Err(Error::TokenChecksum);
        }
        Ok(RefreshToken {
            text: Zeroizing::new(text.to_owned()),
            family_id: FamilyId(family),
        })
    }

    /// The token text, to hand to the client. Handle with care: it is a bearer credential.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The family this token belongs to.
    pub fn family_id(&self) -> FamilyId {
        self.family_id
    }
}

impl PartialEq for RefreshToken {
    fn eq(&self, other: &Self) -> bool {
        self.text.as_bytes().ct_eq(other.text.as_bytes()).into()
    }
}

impl Eq for RefreshToken {}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshToken")
            .field("family_id", &self.family_id)
            .finish_non_exhaustive()
    }
}

fn checksum(prefix: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let digest = Sha256::digest(prefix);
    let mut out = [0u8; CHECKSUM_BYTES];
    for (o, d) in out.iter_mut().zip(digest.iter()) {
        *o = *d;
    }
    out
}

// ---- pepper ------------------------------------------------------------------------------

/// The server-side secret under which token hashes are computed (HMAC-SHA-256) and grace
/// successors are sealed. Zeroized on drop, never printed.
///
/// Every instance sharing a store must use the same pepper. Losing it invalidates every
/// refresh token; leaking it lets whoever holds the store contents test guesses offline
/// (still 256-bit guesses).
#[derive(Clone)]
pub struct Pepper {
    /// The HMAC key normalised to one SHA-256 block (RFC 2104: a longer key is hashed first,
    /// a shorter one zero-padded), so building a MAC is infallible.
    block: Zeroizing<[u8; 64]>,
}

/// The shortest accepted pepper in bytes.
pub const MIN_PEPPER_BYTES: usize = 32;
/// The longest accepted pepper in bytes.
pub const MAX_PEPPER_BYTES: usize = 1024;

/// Domain separation of the grace key derivation from the token hash (a token never contains
/// a NUL byte, so the inputs cannot collide).
const GRACE_KEY_LABEL: &[u8] = b"token-refresh/grace-key/v1\0";

impl Pepper {
    /// A pepper from raw secret bytes (32 to 1024 bytes). The input is zeroized.
    ///
    /// # Errors
    /// [`Error::InvalidPepper`] for a length outside the accepted range.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self> {
        let bytes = Zeroizing::new(bytes.into());
        if bytes.len() < MIN_PEPPER_BYTES {
            return Err(Error::InvalidPepper("shorter than 32 bytes"));
        }
        if bytes.len() > MAX_PEPPER_BYTES {
            return Err(Error::InvalidPepper("longer than 1024 bytes"));
        }
        let mut block = Zeroizing::new([0u8; 64]);
        if bytes.len() > block.len() {
            let digest: Zeroizing<[u8; 32]> =
                Zeroizing::new(Sha256::digest(bytes.as_slice()).into());
            for (b, d) in block.iter_mut().zip(digest.iter()) {
                *b = *d;
            }
        } else {
            for (b, d) in block.iter_mut().zip(bytes.iter()) {
                *b = *d;
            }
        }
        Ok(Pepper { block })
    }

    /// A pepper from its unpadded base64url form (as kept in a secret manager).
    ///
    /// # Errors
    /// [`Error::InvalidPepper`] for bad encoding or a length outside the accepted range.
    pub fn from_base64url(text: &str) -> Result<Self> {
        let bytes = b64_decode(text.trim())
            .map(Zeroizing::new)
            .ok_or(Error::InvalidPepper("not unpadded base64url"))?;
        Pepper::new(bytes.as_slice())
    }

    /// A new random 32-byte pepper (tests, single-instance deployments that accept losing all
    /// refresh tokens on restart).
    ///
    /// # Errors
    /// [`Error::Random`] when the OS random number generator fails.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new(vec![0u8; MIN_PEPPER_BYTES]);
        random_bytes(&mut bytes)?;
        Pepper::new(bytes.as_slice())
    }

    fn mac(&self) -> Hmac<Sha256> {
        let block: &[u8; 64] = &self.block;
        <Hmac<Sha256> as hmac::digest::KeyInit>::new(block.into())
    }

    /// The keyed hash a store keeps for `token`.
    pub fn hash(&self, token: &RefreshToken) -> TokenHash {
        let mut mac = self.mac();
        mac.update(token.as_str().as_bytes());
        TokenHash(mac.finalize().into_bytes().into())
    }

    /// The key that seals the grace successor of `parent` (distinct from its hash).
    pub(crate) fn grace_key(&self, parent: &RefreshToken) -> Zeroizing<[u8; 32]> {
        let mut mac = self.mac();
        mac.update(GRACE_KEY_LABEL);
        mac.update(parent.as_str().as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_parse_round_trip() {
        let fid = FamilyId::generate().unwrap();
        let t = RefreshToken::generate(fid).unwrap();
        assert_eq!(t.as_str().len(), TOKEN_LEN);
        assert!(t.as_str().starts_with("rt1_"));
        let p = RefreshToken::parse(t.as_str()).unwrap();
        assert_eq!(p, t);
        assert_eq!(p.family_id(), fid);
        assert_eq!(FamilyId::parse(&fid.to_string()).unwrap(), fid);
    }

    #[test]
    fn known_answer() {
        // Family id 00..0f, secret 00..1f: the checksum is SHA-256 of the first 70 characters,
        // truncated to 4 bytes (also the seed of the fuzz corpus).
        let text = "rt1_AAECAwQFBgcICQoLDA0ODw_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8_MRYzkQ";
        let t = RefreshToken::parse(text).unwrap();
        let expected: Vec<u8> = (0u8..16).collect();
        assert_eq!(t.family_id().as_bytes().as_slice(), expected.as_slice());
        let pepper = Pepper::new(*b"0123456789abcdef0123456789abcdef").unwrap();
        let mut mac =
            <Hmac<Sha256> as hmac::Mac>::new_from_slice(b"0123456789abcdef0123456789abcdef")
                .unwrap();
        mac.update(text.as_bytes());
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(pepper.hash(&t).as_bytes(), &expected);
    }

    #[test]
    fn parse_refusals_are_distinct() {
        let t = RefreshToken::generate(FamilyId::generate().unwrap()).unwrap();
        let s = t.as_str();
        assert!(matches!(
            RefreshToken::parse(&"a".repeat(300)),
            Err(Error::TokenTooLarge { .. })
        ));
        assert!(matches!(
            RefreshToken::parse(&s.replacen("rt1_", "rt2_", 1)),
            Err(Error::MalformedToken(_))
        ));
        assert!(matches!(
            RefreshToken::parse(&s[..76]),
            Err(Error::MalformedToken(_))
        ));
        // Flip one character of the secret: still base64url, checksum no longer matches.
        let mut chars: Vec<char> = s.chars().collect();
        chars[40] = if chars[40] == 'A' { 'B' } else { 'A' };
        let typo: String = chars.into_iter().collect();
        assert!(matches!(
            RefreshToken::parse(&typo),
            Err(Error::TokenChecksum)
        ));
        // A non-ASCII character in the middle never panics.
        let mut weird = s[..40].to_owned();
        weird.push('é');
        weird.push_str(&s[42..]);
        assert!(RefreshToken::parse(&weird).is_err());
        let mut sep = s.to_owned().into_bytes();
        sep[26] = b'x';
        assert!(matches!(
            RefreshToken::parse(std::str::from_utf8(&sep).unwrap()),
            Err(Error::MalformedToken(_))
        ));
    }

    #[test]
    fn debug_never_prints_secrets() {
        let t = RefreshToken::generate(FamilyId::generate().unwrap()).unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains(&t.as_str()[27..70]));
        let pepper = Pepper::new([7u8; 40]).unwrap();
        assert_eq!(format!("{pepper:?}"), "Pepper(..)");
        assert_eq!(format!("{:?}", pepper.hash(&t)), "TokenHash(..)");
    }

    #[test]
    fn hash_is_rfc2104_hmac() {
        // The block-normalised key gives exactly HMAC-SHA-256(pepper, token), for short and
        // long peppers alike.
        let t = RefreshToken::generate(FamilyId::generate().unwrap()).unwrap();
        for len in [32usize, 64, 65, 200] {
            let raw: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
            let pepper = Pepper::new(raw.clone()).unwrap();
            let mut reference =
                <Hmac<Sha256> as hmac::Mac>::new_from_slice(&raw).expect("any length");
            reference.update(t.as_str().as_bytes());
            let expected: [u8; 32] = reference.finalize().into_bytes().into();
            assert_eq!(pepper.hash(&t).as_bytes(), &expected, "len {len}");
            assert_ne!(&*pepper.grace_key(&t), &expected);
        }
    }

    #[test]
    fn pepper_limits() {
        assert!(Pepper::new([0u8; 31]).is_err());
        assert!(Pepper::new(vec![0u8; 1025]).is_err());
        assert!(Pepper::from_base64url(&b64_encode([1u8; 32])).is_ok());
        assert!(Pepper::from_base64url("***").is_err());
    }

    #[test]
    fn serde_forms() {
        let fid = FamilyId::from_bytes([1; 16]);
        let json = serde_json::to_string(&fid).unwrap();
        assert_eq!(json, format!("\"{fid}\""));
        assert_eq!(serde_json::from_str::<FamilyId>(&json).unwrap(), fid);
        let h = TokenHash::from_bytes([2; 32]);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<TokenHash>(&json).unwrap(), h);
        assert!(serde_json::from_str::<TokenHash>("\"AAAA\"").is_err());
    }
}
