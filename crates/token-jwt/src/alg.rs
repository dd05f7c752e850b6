//! JWS algorithms this library knows (RFC 7518, RFC 8037).
//!
//! This module names no other: [`Error`](crate::Error) holds `Algorithm`s in its variants, so
//! a name that is not an algorithm is reported here as a [`Refused`] reason, and `error.rs`,
//! which maps each reason to its own `Error` variant, also holds the public parsers
//! (`Algorithm::parse` and `FromStr`).

/// A JWS signature algorithm. Only asymmetric algorithms exist here: `none` and `HS*` cannot
/// even be represented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA with P-256 and SHA-256, signature as 64 bytes `r || s`.
    ES256,
    /// ECDSA with P-384 and SHA-384, signature as 96 bytes `r || s`.
    ES384,
    /// EdDSA with Ed25519 (RFC 8037).
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256, MGF1 with SHA-256 and a 32-byte salt.
    PS256,
}

/// Why a name is not an [`Algorithm`]; each reason becomes its own [`Error`](crate::Error)
/// variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `none` (an unsecured JWS), in any case.
    None,
    /// A symmetric `HS*` algorithm, in any case.
    Symmetric,
    /// Any other name this library does not implement.
    Unsupported,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::RS256,
        Algorithm::PS256,
    ];

    /// The registered JWS name (`"ES256"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::RS256 => "RS256",
            Algorithm::PS256 => "PS256",
        }
    }

    /// The algorithm a registered JWS name stands for, or why the name is refused. Names are
    /// case-sensitive (RFC 7515 section 4.1.1), except that `none` and `HS*` are recognized in
    /// any case, so that `NONE` earns the same specific refusal as `none`.
    pub(crate) fn from_name(name: &str) -> Result<Self, Refused> {
        Ok(match name {
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            "RS256" => Algorithm::RS256,
            "PS256" => Algorithm::PS256,
            _ if name.eq_ignore_ascii_case("none") => return Err(Refused::None),
            _ if name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) => {
                return Err(Refused::Symmetric);
            }
            _ => return Err(Refused::Unsupported),
        })
    }

    /// The length of a signature in bytes when it is fixed (ECDSA, EdDSA).
    pub const fn fixed_signature_len(self) -> Option<usize> {
        match self {
            Algorithm::ES256 | Algorithm::EdDSA => Some(64),
            Algorithm::ES384 => Some(96),
            Algorithm::RS256 | Algorithm::PS256 => None,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.as_str()), Ok(alg));
            assert_eq!(alg.to_string(), alg.as_str());
        }
    }

    #[test]
    fn none_and_hmac_have_their_own_refusals() {
        assert_eq!(Algorithm::from_name("none"), Err(Refused::None));
        assert_eq!(Algorithm::from_name("NONE"), Err(Refused::None));
        assert_eq!(Algorithm::from_name("HS256"), Err(Refused::Symmetric));
        assert_eq!(Algorithm::from_name("hs512"), Err(Refused::Symmetric));
        assert_eq!(Algorithm::from_name("es256"), Err(Refused::Unsupported));
        assert_eq!(Algorithm::from_name(""), Err(Refused::Unsupported));
    }
}
