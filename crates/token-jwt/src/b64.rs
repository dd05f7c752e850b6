//! Strict base64url (RFC 4648 section 5) without padding, as JWS requires (RFC 7515 section 2).
//!
//! Decoding refuses padding, characters outside the URL-safe alphabet, and non-canonical
//! trailing bits, so every byte string has exactly one accepted encoding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Appends the unpadded base64url encoding of `bytes` to `out`.
pub fn encode_into(bytes: impl AsRef<[u8]>, out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

/// Decodes strict unpadded base64url; `None` on any deviation.
pub fn decode(text: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Decodes strict unpadded base64url into a fixed-size array; `None` on any deviation or a
/// different length.
pub fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    // A valid encoding of N bytes has exactly this many characters.
    if text.len() != (N * 4).div_ceil(3) {
        return None;
    }
    let mut out = [0u8; N];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
        Ok(n) if n == N => Some(out),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictness() {
        assert_eq!(decode("AQAB").unwrap(), vec![1, 0, 1]);
        assert!(decode("AQAB=").is_none(), "padding");
        assert!(decode("AQ+B").is_none(), "standard alphabet");
        assert!(decode("AQ/B").is_none(), "standard alphabet");
        assert!(decode("AQ B").is_none(), "whitespace");
        assert!(decode("AR").is_none(), "non-canonical trailing bits");
        assert!(decode("A").is_none(), "impossible length");
        assert_eq!(decode_array::<3>("AQAB"), Some([1, 0, 1]));
        assert_eq!(decode_array::<2>("AQAB"), None);
    }
}
