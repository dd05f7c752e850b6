//! JWS algorithms this library knows (RFC 7518, RFC 8037).

use crate::error::{Error, Result};

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

    /// Parses a registered JWS name, with a specific error for `none` and `HS*`.
    ///
    /// # Errors
    /// [`Error::AlgNone`], [`Error::SymmetricAlgorithm`] or [`Error::UnsupportedAlgorithm`].
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            "RS256" => Algorithm::RS256,
            "PS256" => Algorithm::PS256,
            _ if name.eq_ignore_ascii_case("none") => return Err(Error::AlgNone),
            _ if name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) => {
                return Err(Error::SymmetricAlgorithm);
            }
            _ => return Err(Error::UnsupportedAlgorithm),
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

impl std::str::FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Algorithm::parse(s)
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
            assert_eq!(Algorithm::parse(alg.as_str()).unwrap(), alg);
        }
    }

    #[test]
    fn none_and_hmac_have_their_own_errors() {
        assert!(matches!(Algorithm::parse("none"), Err(Error::AlgNone)));
        assert!(matches!(Algorithm::parse("NONE"), Err(Error::AlgNone)));
        assert!(matches!(
            Algorithm::parse("HS256"),
            Err(Error::SymmetricAlgorithm)
        ));
        assert!(matches!(
            Algorithm::parse("hs512"),
            Err(Error::SymmetricAlgorithm)
        ));
        assert!(matches!(
            Algorithm::parse("es256"),
            Err(Error::UnsupportedAlgorithm)
        ));
        assert!(matches!(
            Algorithm::parse(""),
            Err(Error::UnsupportedAlgorithm)
        ));
    }
}
