//! Public JSON Web Keys (RFC 7517), JWK Sets, and RFC 7638 thumbprints.
//!
//! [`Jwk`] only ever holds a *public* key. Parsing refuses private members (`d`, `p`, `q`,
//! `dp`, `dq`, `qi`, `oth`), symmetric (`oct`) keys, unknown key types and curves, and
//! coordinates of the wrong length, so a `Jwk` that exists is well-formed. Whether an EC
//! point is on its curve is checked when a provider turns the JWK into a verifying key
//! ([`crate::CryptoProvider::verifying_key`]).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::alg::Algorithm;
use crate::b64;
use crate::error::{Error, Part, Result};
use crate::json::{self, Limits};

/// Largest JWK document accepted by [`Jwk::from_json`] (an 8192-bit RSA key fits easily).
pub const MAX_JWK_BYTES: usize = 4096;
/// Largest JWK Set document accepted by [`JwkSet::from_json`].
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
pub const MAX_RSA_BITS: usize = 8192;

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// An elliptic curve for `kty: EC` keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EcCurve {
    /// NIST P-256 (`ES256`).
    P256,
    /// NIST P-384 (`ES384`).
    P384,
    /// NIST P-521 (thumbprints only; no signing or verification here).
    P521,
}

impl EcCurve {
    /// The JWK `crv` name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EcCurve::P256 => "P-256",
            EcCurve::P384 => "P-384",
            EcCurve::P521 => "P-521",
        }
    }

    /// Length of one coordinate in bytes.
    pub const fn coordinate_len(self) -> usize {
        match self {
            EcCurve::P256 => 32,
            EcCurve::P384 => 48,
            EcCurve::P521 => 66,
        }
    }
}

/// The key-type specific members of a public JWK, base64url text as it appeared (the
/// encoding is strict, so this is also the canonical text).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyParams {
    /// `kty: EC`.
    Ec {
        /// Curve.
        crv: EcCurve,
        /// X coordinate, base64url.
        x: String,
        /// Y coordinate, base64url.
        y: String,
    },
    /// `kty: OKP` with `crv: Ed25519` (RFC 8037).
    Ed25519 {
        /// The 32-byte public key, base64url.
        x: String,
    },
    /// `kty: RSA`.
    Rsa {
        /// Modulus, base64url, no leading zero byte.
        n: String,
        /// Public exponent, base64url, no leading zero byte.
        e: String,
    },
}

/// A public JSON Web Key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Jwk {
    /// Key type and public parameters.
    pub params: KeyParams,
    /// Key id (`kid`).
    pub kid: Option<String>,
    /// Intended algorithm (`alg`), when stated.
    pub alg: Option<Algorithm>,
    /// Intended use (`use`), when stated (`sig` for every key here).
    pub key_use: Option<String>,
}

impl Jwk {
    /// A public JWK from its parameters, without `kid`, `alg` or `use`.
    pub fn new(params: KeyParams) -> Self {
        Jwk {
            params,
            kid: None,
            alg: None,
            key_use: None,
        }
    }

    /// An EC JWK from raw big-endian coordinates.
    ///
    /// # Errors
    /// [`Error::InvalidJwk`] when a coordinate has the wrong length for the curve.
    pub fn ec(crv: EcCurve, x: &[u8], y: &[u8]) -> Result<Self> {
        if x.len() != crv.coordinate_len() || y.len() != crv.coordinate_len() {
            return Err(Error::InvalidJwk("EC coordinate has the wrong length"));
        }
        Ok(Jwk::new(KeyParams::Ec {
            crv,
            x: b64::encode(x),
            y: b64::encode(y),
        }))
    }

    /// An Ed25519 JWK from the 32-byte public key.
    pub fn ed25519(public_key: &[u8; 32]) -> Self {
        Jwk::new(KeyParams::Ed25519 {
            x: b64::encode(public_key),
        })
    }

    /// An RSA JWK from the big-endian modulus and exponent (leading zero bytes are removed).
    ///
    /// # Errors
    /// [`Error::InvalidJwk`] when the modulus size is outside 2048..=8192 bits or the exponent
    /// is empty.
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<Self> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        check_rsa(n, e)?;
        Ok(Jwk::new(KeyParams::Rsa {
            n: b64::encode(n),
            e: b64::encode(e),
        }))
    }

    /// Sets the `kid`.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Sets the `alg` (and `use: sig`).
    #[must_use]
    pub fn with_alg(mut self, alg: Algorithm) -> Self {
        self.alg = Some(alg);
        self.key_use = Some("sig".to_owned());
        self
    }

    /// The algorithms this key type can verify.
    pub fn compatible(&self, alg: Algorithm) -> bool {
        matches!(
            (&self.params, alg),
            (
                KeyParams::Ec {
                    crv: EcCurve::P256,
                    ..
                },
                Algorithm::ES256
            ) | (
                KeyParams::Ec {
                    crv: EcCurve::P384,
                    ..
                },
                Algorithm::ES384
            ) | (KeyParams::Ed25519 { .. }, Algorithm::EdDSA)
                | (KeyParams::Rsa { .. }, Algorithm::RS256 | Algorithm::PS256)
        )
    }

    /// The one algorithm this key is for: its `alg` when stated, else the only algorithm its
    /// type allows. RSA keys without `alg` are ambiguous (RS256 or PS256) and give `None`.
    pub fn algorithm(&self) -> Option<Algorithm> {
        if let Some(alg) = self.alg {
            return self.compatible(alg).then_some(alg);
        }
        match &self.params {
            KeyParams::Ec {
                crv: EcCurve::P256, ..
            } => Some(Algorithm::ES256),
            KeyParams::Ec {
                crv: EcCurve::P384, ..
            } => Some(Algorithm::ES384),
            KeyParams::Ed25519 { .. } => Some(Algorithm::EdDSA),
            _ => None,
        }
    }

    /// The RFC 7638 thumbprint: base64url(SHA-256) of the required members in lexicographic
    /// order, without whitespace.
    pub fn thumbprint(&self) -> String {
        b64::encode(self.thumbprint_sha256())
    }

    /// The raw SHA-256 RFC 7638 thumbprint.
    pub fn thumbprint_sha256(&self) -> [u8; 32] {
        // Every value is base64url or a fixed curve name, so no JSON escaping is needed.
        let canonical = match &self.params {
            KeyParams::Ec { crv, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{x}","y":"{y}"}}"#,
                crv.as_str()
            ),
            KeyParams::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            KeyParams::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        };
        Sha256::digest(canonical.as_bytes()).into()
    }

    /// Parses a public JWK from JSON text (at most [`MAX_JWK_BYTES`]).
    ///
    /// # Errors
    /// [`Error::TooLarge`], JSON errors, [`Error::PrivateKeyInJwk`], [`Error::SymmetricKey`],
    /// [`Error::UnsupportedKey`] or [`Error::InvalidJwk`].
    pub fn from_json(json: &[u8]) -> Result<Self> {
        if json.len() > MAX_JWK_BYTES {
            return Err(Error::TooLarge {
                limit: MAX_JWK_BYTES,
                actual: json.len(),
            });
        }
        let map = json::parse_object(json, Part::Jwk, Limits::new(4, 64))?;
        Jwk::from_map(&map)
    }

    /// Reads a public JWK from an already parsed JSON object (for example the `jwk` header of
    /// a DPoP proof).
    ///
    /// # Errors
    /// As [`Jwk::from_json`].
    pub fn from_map(map: &Map<String, Value>) -> Result<Self> {
        if PRIVATE_MEMBERS.iter().any(|m| map.contains_key(*m)) {
            return Err(Error::PrivateKeyInJwk);
        }
        if map.contains_key("k") {
            return Err(Error::SymmetricKey);
        }
        let kty = str_member(map, "kty")?.ok_or(Error::InvalidJwk("missing kty"))?;
        let params = match kty {
            "EC" => {
                let crv = match str_member(map, "crv")? {
                    Some("P-256") => EcCurve::P256,
                    Some("P-384") => EcCurve::P384,
                    Some("P-521") => EcCurve::P521,
                    Some(_) => return Err(Error::UnsupportedKey),
                    None => return Err(Error::InvalidJwk("missing crv")),
                };
                let x = coordinate(map, "x", crv.coordinate_len())?;
                let y = coordinate(map, "y", crv.coordinate_len())?;
                KeyParams::Ec { crv, x, y }
            }
            "OKP" => match str_member(map, "crv")? {
                Some("Ed25519") => KeyParams::Ed25519 {
                    x: coordinate(map, "x", 32)?,
                },
                Some(_) => return Err(Error::UnsupportedKey),
                None => return Err(Error::InvalidJwk("missing crv")),
            },
            "RSA" => {
                let n_text = str_member(map, "n")?.ok_or(Error::InvalidJwk("missing n"))?;
                let e_text = str_member(map, "e")?.ok_or(Error::InvalidJwk("missing e"))?;
                let n = b64::decode(n_text).ok_or(Error::InvalidJwk("n is not base64url"))?;
                let e = b64::decode(e_text).ok_or(Error::InvalidJwk("e is not base64url"))?;
                if n.first() == Some(&0) || e.first() == Some(&0) {
                    return Err(Error::InvalidJwk("RSA integer has a leading zero byte"));
                }
                check_rsa(&n, &e)?;
                KeyParams::Rsa {
                    n: n_text.to_owned(),
                    e: e_text.to_owned(),
                }
            }
            "oct" => return Err(Error::SymmetricKey),
            _ => return Err(Error::UnsupportedKey),
        };
        let alg = match str_member(map, "alg")? {
            Some(name) => Some(Algorithm::parse(name)?),
            None => None,
        };
        let jwk = Jwk {
            params,
            kid: str_member(map, "kid")?.map(str::to_owned),
            alg,
            key_use: str_member(map, "use")?.map(str::to_owned),
        };
        if let Some(alg) = jwk.alg
            && !jwk.compatible(alg)
        {
            return Err(Error::AlgorithmKeyMismatch(alg));
        }
        if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
            return Err(Error::InvalidJwk("use is not sig"));
        }
        Ok(jwk)
    }

    /// The JWK as a JSON object (public members plus `kid`, `use`, `alg` when set).
    pub fn to_json_value(&self) -> Value {
        let mut m = Map::new();
        match &self.params {
            KeyParams::Ec { crv, x, y } => {
                m.insert("kty".into(), "EC".into());
                m.insert("crv".into(), crv.as_str().into());
                m.insert("x".into(), x.as_str().into());
                m.insert("y".into(), y.as_str().into());
            }
            KeyParams::Ed25519 { x } => {
                m.insert("kty".into(), "OKP".into());
                m.insert("crv".into(), "Ed25519".into());
                m.insert("x".into(), x.as_str().into());
            }
            KeyParams::Rsa { n, e } => {
                m.insert("kty".into(), "RSA".into());
                m.insert("n".into(), n.as_str().into());
                m.insert("e".into(), e.as_str().into());
            }
        }
        if let Some(kid) = &self.kid {
            m.insert("kid".into(), kid.as_str().into());
        }
        if let Some(u) = &self.key_use {
            m.insert("use".into(), u.as_str().into());
        }
        if let Some(alg) = self.alg {
            m.insert("alg".into(), alg.as_str().into());
        }
        Value::Object(m)
    }

    /// The JWK as compact JSON text.
    pub fn to_json(&self) -> String {
        self.to_json_value().to_string()
    }
}

impl serde::Serialize for Jwk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json_value().serialize(s)
    }
}

fn strip_leading_zeros(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

fn check_rsa(n: &[u8], e: &[u8]) -> Result<()> {
    // An empty modulus has no bits (found by the `jwk_thumbprint` fuzz target: the
    // subtraction underflowed).
    let bits = n
        .first()
        .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(Error::InvalidJwk("RSA modulus size out of range"));
    }
    if e.is_empty() || e.len() > 8 {
        return Err(Error::InvalidJwk("RSA exponent out of range"));
    }
    Ok(())
}

fn str_member<'m>(map: &'m Map<String, Value>, name: &'static str) -> Result<Option<&'m str>> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::InvalidJwk("member has the wrong type")),
    }
}

fn coordinate(map: &Map<String, Value>, name: &'static str, len: usize) -> Result<String> {
    let text = str_member(map, name)?.ok_or(Error::InvalidJwk("missing coordinate"))?;
    match b64::decode(text) {
        Some(bytes) if bytes.len() == len => Ok(text.to_owned()),
        Some(_) => Err(Error::InvalidJwk("coordinate has the wrong length")),
        None => Err(Error::InvalidJwk("coordinate is not base64url")),
    }
}

/// A JWK Set (RFC 7517 section 5): the document published at a `jwks_uri`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    /// A set of these keys.
    pub fn new(keys: Vec<Jwk>) -> Self {
        JwkSet { keys }
    }

    /// Parses a JWK Set. Keys this library cannot use (unsupported `kty`, `use: enc`) are
    /// skipped, as RFC 7517 section 5 asks; malformed or private keys fail the whole set.
    ///
    /// # Errors
    /// Size, JSON, or key errors as in [`Jwk::from_json`].
    pub fn from_json(json: &[u8]) -> Result<Self> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(Error::TooLarge {
                limit: MAX_JWKS_BYTES,
                actual: json.len(),
            });
        }
        let map = json::parse_object(json, Part::Jwk, Limits::new(4, 4096))?;
        let Some(Value::Array(items)) = map.get("keys") else {
            return Err(Error::InvalidJwk("missing keys array"));
        };
        let mut keys = Vec::with_capacity(items.len());
        for item in items {
            let Value::Object(m) = item else {
                return Err(Error::InvalidJwk("key is not an object"));
            };
            match Jwk::from_map(m) {
                Ok(k) => keys.push(k),
                Err(Error::UnsupportedKey | Error::UnsupportedAlgorithm) => {}
                Err(Error::InvalidJwk("use is not sig")) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(JwkSet { keys })
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// The set as compact JSON text: `{"keys":[...]}`.
    pub fn to_json(&self) -> String {
        let keys: Vec<Value> = self.keys.iter().map(Jwk::to_json_value).collect();
        serde_json::json!({ "keys": keys }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    #[test]
    fn parses_and_reserializes_ec() {
        let k = Jwk::from_json(P256.as_bytes()).unwrap();
        assert_eq!(k.algorithm(), Some(Algorithm::ES256));
        let again = Jwk::from_json(k.to_json().as_bytes()).unwrap();
        assert_eq!(k, again);
    }

    #[test]
    fn refuses_private_and_symmetric() {
        let private = P256.replace(r#""kty""#, r#""d":"AAAA","kty""#);
        assert!(matches!(
            Jwk::from_json(private.as_bytes()),
            Err(Error::PrivateKeyInJwk)
        ));
        assert!(matches!(
            Jwk::from_json(br#"{"kty":"oct","k":"AAAA"}"#),
            Err(Error::SymmetricKey)
        ));
        assert!(matches!(
            Jwk::from_json(br#"{"kty":"oct"}"#),
            Err(Error::SymmetricKey)
        ));
    }

    #[test]
    fn refuses_bad_lengths_and_types() {
        let short = P256.replace("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "f83O");
        assert!(matches!(
            Jwk::from_json(short.as_bytes()),
            Err(Error::InvalidJwk(_))
        ));
        assert!(matches!(
            Jwk::from_json(br#"{"kty":"EC","crv":"secp256k1","x":"","y":""}"#),
            Err(Error::UnsupportedKey)
        ));
        let wrong_alg = P256.replace(r#""kty""#, r#""alg":"EdDSA","kty""#);
        assert!(matches!(
            Jwk::from_json(wrong_alg.as_bytes()),
            Err(Error::AlgorithmKeyMismatch(Algorithm::EdDSA))
        ));
    }
}
