//! The one error type of `token-jwt`.
//!
//! Every distinct rejection is its own variant so callers (and metrics) can tell them apart.
//! No variant ever carries a token, a signature or key material: only names, sizes and
//! short static reasons.
//!
//! The public parsers of algorithm names live here too, next to the variants they return:
//! `alg.rs` stays a leaf module (this one names `Algorithm`) and reports why a name is refused
//! as a crate-private [`Refused`].

use crate::alg::{Algorithm, Refused};

/// Which part of a compact JWS an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The protected header (first segment).
    Header,
    /// The payload (second segment).
    Payload,
    /// The signature (third segment).
    Signature,
    /// A JSON Web Key.
    Jwk,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
            Part::Jwk => "JWK",
        })
    }
}

/// Everything that can go wrong while building, signing, parsing or verifying a JWT.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- framing -------------------------------------------------------------------------
    /// The input is larger than the configured limit.
    #[error("input of {actual} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
        /// The size of the input in bytes.
        actual: usize,
    },
    /// The input is not a compact JWS of exactly three non-empty dot-separated segments.
    #[error("malformed compact JWS: {0}")]
    Malformed(&'static str),
    /// A segment is not strict base64url without padding.
    #[error("the {0} is not strict unpadded base64url")]
    Base64(Part),
    /// A segment is not a valid JSON object.
    #[error("the {part} is not a valid JSON object: {reason}")]
    Json {
        /// Which part.
        part: Part,
        /// A short description (never the input itself).
        reason: &'static str,
    },
    /// A JSON object repeats a member name.
    #[error("the {0} repeats a member name")]
    DuplicateMember(Part),
    /// JSON nesting or member count exceeds the limits.
    #[error("the {0} exceeds the JSON nesting or member limits")]
    JsonLimits(Part),

    // ---- header --------------------------------------------------------------------------
    /// The header has no `alg`.
    #[error("the header has no alg")]
    MissingAlgorithm,
    /// `alg: none` (unsecured JWS) is never accepted.
    #[error("alg none is refused")]
    AlgNone,
    /// Symmetric (`HS*`) algorithms are never accepted.
    #[error("symmetric algorithms (HS*) are refused")]
    SymmetricAlgorithm,
    /// The algorithm is not one this library supports.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The header's `alg` differs from the algorithm of the key that verifies it.
    #[error("header alg {header} does not match the key's algorithm {key}")]
    AlgorithmMismatch {
        /// The `alg` of the header.
        header: Algorithm,
        /// The algorithm bound to the key.
        key: Algorithm,
    },
    /// The header names `crit` extensions this library does not understand.
    #[error("the header has critical extensions that are not understood")]
    UnsupportedCritical,
    /// The header embeds or references a key (`jwk`, `jku`, `x5u`, `x5c`): never trusted for
    /// token verification.
    #[error("the header embeds or references a key ({0}); keys are never taken from a token")]
    EmbeddedKey(&'static str),
    /// The header has no `kid` but the verifier needs one.
    #[error("the header has no kid")]
    MissingKeyId,
    /// No key with this `kid` is known.
    #[error("unknown kid")]
    UnknownKeyId,
    /// A header member has the wrong JSON type.
    #[error("header member {0} has the wrong type")]
    InvalidHeader(&'static str),
    /// The `typ` header is missing or not the expected type.
    #[error("wrong or missing typ")]
    WrongType,

    // ---- signature -----------------------------------------------------------------------
    /// The signature does not verify (or is malformed: wrong length, r or s out of range, DER).
    #[error("invalid signature")]
    InvalidSignature,

    // ---- claims --------------------------------------------------------------------------
    /// A registered claim has the wrong JSON type (for example a string `exp`).
    #[error("claim {0} has the wrong type or value")]
    InvalidClaim(&'static str),
    /// A claim required by the policy is missing.
    #[error("required claim {0} is missing")]
    MissingClaim(&'static str),
    /// A custom claim tried to use a registered or reserved name.
    #[error("claim name {0:?} is registered and cannot be set as a custom claim")]
    ReservedClaim(String),
    /// The token has expired.
    #[error("the token has expired")]
    Expired,
    /// The token is not yet valid (`nbf` in the future).
    #[error("the token is not yet valid")]
    NotYetValid,
    /// `iat` is in the future beyond the leeway.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// `iat` is older than the policy's maximum age.
    #[error("the token is older than the maximum age")]
    TooOld,
    /// The `iss` claim is not the expected issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// The `aud` claim does not contain an accepted audience.
    #[error("wrong audience")]
    WrongAudience,

    // ---- keys ----------------------------------------------------------------------------
    /// A JWK is invalid (missing member, wrong length, bad encoding).
    #[error("invalid JWK: {0}")]
    InvalidJwk(&'static str),
    /// A JWK contains private key members where a public key was expected.
    #[error("the JWK contains private key material")]
    PrivateKeyInJwk,
    /// A PEM given as a public key is (or contains) a private key: any `... PRIVATE KEY` label,
    /// or private-key DER under a `PUBLIC KEY` label. Private material is never accepted where a
    /// public key is published.
    #[error("the PEM is a private key; give the public key")]
    PrivateKeyInPem,
    /// A PEM given as a public key is not a `PUBLIC KEY` (SubjectPublicKeyInfo) document: not
    /// PEM, another label, or DER that is not a SubjectPublicKeyInfo.
    #[error("invalid public key PEM: {0}")]
    InvalidPem(&'static str),
    /// Symmetric (`oct`) keys are not accepted.
    #[error("symmetric (oct) keys are refused")]
    SymmetricKey,
    /// The key type or curve is not supported.
    #[error("unsupported key type or curve")]
    UnsupportedKey,
    /// The public key is not valid for its curve (for example a point not on the curve, or a
    /// small-order Ed25519 key).
    #[error("invalid public key: {0}")]
    InvalidPublicKey(&'static str),
    /// The algorithm does not fit the key type (for example ES256 with an RSA key).
    #[error("algorithm {0} does not fit the key type")]
    AlgorithmKeyMismatch(Algorithm),
    /// A private key could not be loaded.
    #[error("invalid private key: {0}")]
    InvalidPrivateKey(&'static str),
    /// The provider does not implement this algorithm for this operation.
    #[error("the {provider} provider does not support {alg} for {operation}")]
    ProviderUnsupported {
        /// Provider name.
        provider: &'static str,
        /// Algorithm.
        alg: Algorithm,
        /// `signing` or `verification`.
        operation: &'static str,
    },

    // ---- signing -------------------------------------------------------------------------
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed")]
    Random,
    /// A signer failed (a local key error, or a remote signer that is unreachable).
    #[error("signing failed: {reason}")]
    Signing {
        /// A short description from the signer; never contains key material.
        reason: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// Claims could not be serialized.
    #[error("claims could not be serialized")]
    Serialize,
}

impl Error {
    /// A signer failure with a reason and no source.
    pub fn signing(reason: impl Into<String>) -> Self {
        Error::Signing {
            reason: reason.into(),
            source: None,
        }
    }
}

impl From<Refused> for Error {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::None => Error::AlgNone,
            Refused::Symmetric => Error::SymmetricAlgorithm,
            Refused::Unsupported => Error::UnsupportedAlgorithm,
        }
    }
}

impl Algorithm {
    /// Parses a registered JWS name, with a specific error for `none` and `HS*`.
    ///
    /// # Errors
    /// [`Error::AlgNone`], [`Error::SymmetricAlgorithm`] or [`Error::UnsupportedAlgorithm`].
    pub fn parse(name: &str) -> Result<Self> {
        Ok(Algorithm::from_name(name)?)
    }
}

impl std::str::FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Algorithm::parse(s)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_a_name_gives_each_refusal_its_own_error() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::parse(alg.as_str()).unwrap(), alg);
            assert_eq!(alg.as_str().parse::<Algorithm>().unwrap(), alg);
        }
        assert!(matches!(Algorithm::parse("none"), Err(Error::AlgNone)));
        assert!(matches!(Algorithm::parse("NONE"), Err(Error::AlgNone)));
        assert!(matches!(
            Algorithm::parse("HS256"),
            Err(Error::SymmetricAlgorithm)
        ));
        assert!(matches!(
            "hs512".parse::<Algorithm>(),
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
