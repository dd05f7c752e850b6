//! The compact JWS codec (RFC 7515 section 7.1): parse untrusted tokens into an
//! [`UnverifiedJws`], check a signature into a [`VerifiedJws`], and encode with a
//! [`JwsEncoder`] whose header is serialized once.
//!
//! Parsing is strict and total: a size limit (default [`DEFAULT_MAX_TOKEN_BYTES`]), exactly
//! three non-empty segments, strict base64url without padding, a JSON header without
//! duplicate members, typed `alg`/`typ`/`kid`, `crit` refused. It never panics on any input.

use serde_json::{Map, Value};

use crate::alg::Algorithm;
use crate::b64;
use crate::claims::Claims;
use crate::error::{Error, Part, Result};
use crate::json::{self, Limits};
use crate::jwk::Jwk;
use crate::provider::JwsVerifier;
use crate::signer::{AsyncJwsSigner, JwsSigner};

/// Default size limit of a compact JWS, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Header members that point at a key outside the token (never trusted).
const KEY_REFERENCES: [&str; 5] = ["jku", "x5u", "x5c", "x5t", "x5t#S256"];

/// The protected header of a JWS, as read from the token (not yet trusted).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Header {
    /// `alg`.
    pub alg: Algorithm,
    /// `typ`, if present.
    pub typ: Option<String>,
    /// `kid`, if present.
    pub kid: Option<String>,
    /// `jwk`, if present (a public key; private members were refused). DPoP proofs carry
    /// their key here; token verification refuses it.
    pub jwk: Option<Jwk>,
    /// The first of `jku`, `x5u`, `x5c`, `x5t`, `x5t#S256` present, if any.
    pub key_reference: Option<&'static str>,
}

impl Header {
    fn from_json(bytes: &[u8]) -> Result<Self> {
        let map = json::parse_object(bytes, Part::Header, Limits::new(4, 64))?;
        if map.contains_key("crit") {
            // No extension is understood, so any `crit` must be refused (RFC 7515 4.1.11).
            return Err(Error::UnsupportedCritical);
        }
        if map.get("b64").is_some_and(|v| v != &Value::Bool(true)) {
            return Err(Error::InvalidHeader("b64"));
        }
        let alg = match map.get("alg") {
            None => return Err(Error::MissingAlgorithm),
            Some(Value::String(s)) => Algorithm::parse(s)?,
            Some(_) => return Err(Error::InvalidHeader("alg")),
        };
        let string = |name: &'static str| match map.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::InvalidHeader(name)),
        };
        let jwk = match map.get("jwk") {
            None => None,
            Some(Value::Object(m)) => Some(Jwk::from_map(m)?),
            Some(_) => return Err(Error::InvalidHeader("jwk")),
        };
        Ok(Header {
            alg,
            typ: string("typ")?,
            kid: string("kid")?,
            jwk,
            key_reference: KEY_REFERENCES.into_iter().find(|k| map.contains_key(*k)),
        })
    }

    /// Whether `typ` names the media type `expected` (RFC 7515 4.1.9: compared without case,
    /// with or without the `application/` prefix).
    pub fn typ_is(&self, expected: &str) -> bool {
        self.typ.as_deref().is_some_and(|t| {
            let t = strip_application(t);
            t.eq_ignore_ascii_case(strip_application(expected))
        })
    }
}

fn strip_application(t: &str) -> &str {
    match t.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => t.get(12..).unwrap_or(t),
        _ => t,
    }
}

/// A parsed compact JWS whose signature has not been checked. Nothing in it is trusted;
/// only [`UnverifiedJws::header`] is readable, to pick a key.
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    header: Header,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl<'a> UnverifiedJws<'a> {
    /// Parses with the default size limit.
    ///
    /// # Errors
    /// Any framing, base64 or header error; see [`Error`].
    pub fn parse(token: &'a str) -> Result<Self> {
        UnverifiedJws::parse_with_limit(token, DEFAULT_MAX_TOKEN_BYTES)
    }

    /// Parses with a given size limit in bytes.
    ///
    /// # Errors
    /// [`Error::TooLarge`], [`Error::Malformed`], [`Error::Base64`], JSON and header errors.
    pub fn parse_with_limit(token: &'a str, max_bytes: usize) -> Result<Self> {
        if token.len() > max_bytes {
            return Err(Error::TooLarge {
                limit: max_bytes,
                actual: token.len(),
            });
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Malformed("expected three segments"));
        };
        if parts.next().is_some() {
            return Err(Error::Malformed("more than three segments"));
        }
        if h.is_empty() || p.is_empty() || s.is_empty() {
            return Err(Error::Malformed("empty segment"));
        }
        let header_bytes = b64::decode(h).ok_or(Error::Base64(Part::Header))?;
        let payload = b64::decode(p).ok_or(Error::Base64(Part::Payload))?;
        let signature = b64::decode(s).ok_or(Error::Base64(Part::Signature))?;
        let header = Header::from_json(&header_bytes)?;
        let signing_input = token
            .get(..h.len() + 1 + p.len())
            .ok_or(Error::Malformed("segment boundaries"))?;
        Ok(UnverifiedJws {
            header,
            signing_input,
            payload,
            signature,
        })
    }

    /// The header, untrusted until the signature is verified.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The bytes the signature covers (`header.payload` as sent).
    pub fn signing_input(&self) -> &'a str {
        self.signing_input
    }

    /// Checks the signature with `key`. The algorithm comes from the key: a header `alg` that
    /// differs is refused before any cryptography runs.
    ///
    /// # Errors
    /// [`Error::AlgorithmMismatch`] or [`Error::InvalidSignature`].
    pub fn verify_signature(self, key: &dyn JwsVerifier) -> Result<VerifiedJws> {
        if self.header.alg != key.algorithm() {
            return Err(Error::AlgorithmMismatch {
                header: self.header.alg,
                key: key.algorithm(),
            });
        }
        key.verify(self.signing_input.as_bytes(), &self.signature)?;
        Ok(VerifiedJws {
            header: self.header,
            payload: self.payload,
        })
    }
}

/// A JWS whose signature has been checked with a chosen key.
#[derive(Debug)]
pub struct VerifiedJws {
    header: Header,
    payload: Vec<u8>,
}

impl VerifiedJws {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The raw payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload as a strictly parsed JSON object.
    ///
    /// # Errors
    /// JSON errors for the payload.
    pub fn payload_json(&self, limits: Limits) -> Result<Map<String, Value>> {
        json::parse_object(&self.payload, Part::Payload, limits)
    }

    /// Splits into header and payload.
    pub fn into_parts(self) -> (Header, Vec<u8>) {
        (self.header, self.payload)
    }
}

/// Encodes compact JWS tokens for one key: the header (`alg`, `typ`, `kid`) is serialized
/// and base64url-encoded once, at construction.
#[derive(Clone, Debug)]
pub struct JwsEncoder {
    alg: Algorithm,
    kid: String,
    header_b64: String,
}

impl JwsEncoder {
    /// An encoder for tokens of type `typ` signed with `alg` under `kid`.
    pub fn new(alg: Algorithm, kid: &str, typ: &str) -> Self {
        let header = serde_json::json!({ "alg": alg.as_str(), "typ": typ, "kid": kid });
        JwsEncoder {
            alg,
            kid: kid.to_owned(),
            header_b64: b64::encode(header.to_string()),
        }
    }

    /// An encoder for the signer's algorithm and `kid`.
    pub fn for_signer<S: AsyncJwsSigner + ?Sized>(signer: &S, typ: &str) -> Self {
        JwsEncoder::new(signer.algorithm(), signer.key_id(), typ)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The `kid`.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// `base64url(header) '.' base64url(payload)` for these claims.
    ///
    /// # Errors
    /// [`Error::Serialize`].
    pub fn signing_input(&self, claims: &Claims) -> Result<String> {
        let payload = claims.to_json()?;
        Ok(self.signing_input_raw(&payload))
    }

    /// `base64url(header) '.' base64url(payload)` for a raw payload.
    pub fn signing_input_raw(&self, payload: &[u8]) -> String {
        let mut out = String::with_capacity(self.header_b64.len() + 2 + payload.len() * 4 / 3 + 90);
        out.push_str(&self.header_b64);
        out.push('.');
        b64::encode_into(payload, &mut out);
        out
    }

    fn finish(&self, mut signing_input: String, signature: &[u8]) -> Result<String> {
        if crate::provider::check_len(self.alg, signature).is_err() {
            return Err(Error::signing(
                "the signer returned a signature of the wrong length",
            ));
        }
        signing_input.push('.');
        b64::encode_into(signature, &mut signing_input);
        Ok(signing_input)
    }

    fn check_signer(&self, alg: Algorithm, kid: &str) -> Result<()> {
        if alg == self.alg && kid == self.kid {
            Ok(())
        } else {
            Err(Error::signing(
                "the signer does not match the encoder's alg and kid",
            ))
        }
    }

    /// Signs the claims with a local signer and returns the compact JWS.
    ///
    /// # Errors
    /// [`Error::Signing`] or [`Error::Serialize`].
    pub fn encode<S: JwsSigner + ?Sized>(&self, claims: &Claims, signer: &S) -> Result<String> {
        self.check_signer(signer.algorithm(), signer.key_id())?;
        let input = self.signing_input(claims)?;
        let sig = signer.sign(input.as_bytes())?;
        self.finish(input, &sig)
    }

    /// Signs the claims with any signer (local or remote) and returns the compact JWS.
    ///
    /// # Errors
    /// [`Error::Signing`] or [`Error::Serialize`].
    pub async fn encode_async<S: AsyncJwsSigner + ?Sized>(
        &self,
        claims: &Claims,
        signer: &S,
    ) -> Result<String> {
        self.check_signer(signer.algorithm(), signer.key_id())?;
        let input = self.signing_input(claims)?;
        let sig = signer.sign_async(input.as_bytes()).await?;
        self.finish(input, &sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_typ_comparison() {
        let h = Header {
            alg: Algorithm::ES256,
            typ: Some("application/AT+JWT".into()),
            kid: None,
            jwk: None,
            key_reference: None,
        };
        assert!(h.typ_is("at+jwt"));
        assert!(h.typ_is("application/at+jwt"));
        assert!(!h.typ_is("jwt"));
    }

    #[test]
    fn framing_errors() {
        assert!(matches!(
            UnverifiedJws::parse("a.b"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            UnverifiedJws::parse("a.b.c.d"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            UnverifiedJws::parse("a..c"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(UnverifiedJws::parse(""), Err(Error::Malformed(_))));
        assert!(matches!(
            UnverifiedJws::parse("é.b.c"),
            Err(Error::Base64(Part::Header))
        ));
    }
}
