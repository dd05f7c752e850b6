//! The one error type of `token-dpop`.
//!
//! Every check of RFC 9449 section 4.3 (the proof) and section 7 (the request to a protected
//! resource) fails with its own variant, so callers and metrics can tell them apart.
//! [`Error::oauth_error`] gives the OAuth error code to answer with and [`Error::description`]
//! a short `error_description`; neither ever echoes the input.

/// Everything that can go wrong while validating or building a DPoP proof, or verifying a
/// request to a protected resource ([`RequestVerifier`](crate::RequestVerifier)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- framing -------------------------------------------------------------------------
    /// The request carries no `DPoP` header.
    #[error("no DPoP proof")]
    MissingProof,
    /// The request carries more than one `DPoP` header (RFC 9449 4.3 step 1).
    #[error("more than one DPoP proof")]
    MultipleProofs,
    /// The proof is larger than the configured limit.
    #[error("the DPoP proof exceeds the size limit of {limit} bytes")]
    ProofTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The proof is not a well-formed compact JWS (framing, base64url, JSON, duplicate
    /// members, JSON limits, `crit`, header member types).
    #[error("the DPoP proof is not a well-formed JWS")]
    Malformed(#[source] token_jwt::Error),

    // ---- header --------------------------------------------------------------------------
    /// `typ` is missing or not `dpop+jwt`.
    #[error("typ is not dpop+jwt")]
    WrongTyp,
    /// `alg` is `none`, symmetric, unknown, or not on the validator's allow-list.
    #[error("alg is not allowed")]
    AlgNotAllowed,
    /// The header has no `jwk`.
    #[error("the header has no jwk")]
    MissingJwk,
    /// The `jwk` contains private key members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`).
    #[error("the jwk contains private key material")]
    PrivateKey,
    /// The `jwk` is a symmetric (`oct`) key.
    #[error("the jwk is a symmetric key")]
    SymmetricKey,
    /// The `jwk` is not a valid public key (unsupported type or curve, bad member, point off
    /// the curve, small-order Ed25519 key, RSA modulus out of range).
    #[error("the jwk is not a valid public key")]
    InvalidKey(#[source] token_jwt::Error),
    /// `alg` does not fit the key type (or contradicts the `jwk`'s own `alg`).
    #[error("alg does not fit the jwk")]
    AlgKeyMismatch,

    // ---- signature -----------------------------------------------------------------------
    /// The signature does not verify with the `jwk` (includes DER-encoded and out-of-range
    /// ECDSA signatures and non-canonical Ed25519 signatures).
    #[error("the DPoP proof signature is invalid")]
    BadSignature,

    // ---- claims --------------------------------------------------------------------------
    /// A claim has the wrong JSON type (for example a string `iat`).
    #[error("claim {0} has the wrong type")]
    InvalidClaim(&'static str),
    /// `jti` is missing or empty.
    #[error("jti is missing")]
    MissingJti,
    /// `jti` is longer than the configured limit.
    #[error("jti exceeds {limit} bytes")]
    JtiTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// `htm` is missing.
    #[error("htm is missing")]
    MissingHtm,
    /// `htm` is not the request method.
    #[error("htm does not match the request method")]
    HtmMismatch,
    /// `htu` is missing.
    #[error("htu is missing")]
    MissingHtu,
    /// `htu` is not an absolute `http` or `https` URI.
    #[error("htu is not a valid http(s) URI")]
    InvalidHtu,
    /// `htu` does not match the request URI (after RFC 3986 normalization, ignoring query and
    /// fragment).
    #[error("htu does not match the request URI")]
    HtuMismatch,
    /// The request URI passed to the validator is not an absolute `http` or `https` URI: a
    /// server-side integration error.
    #[error("the request URI given to the validator is not an absolute http(s) URI")]
    InvalidRequestUri,
    /// `iat` is missing.
    #[error("iat is missing")]
    MissingIat,
    /// `iat` is older than the maximum age plus leeway.
    #[error("the DPoP proof is too old")]
    IatTooOld,
    /// `iat` is further in the future than the leeway.
    #[error("the DPoP proof was issued in the future")]
    IatInFuture,
    /// An access token was presented but the proof has no `ath`.
    #[error("ath is missing")]
    MissingAth,
    /// `ath` is not the hash of the presented access token.
    #[error("ath does not match the access token")]
    AthMismatch,
    /// The key's thumbprint is not the expected `jkt` (the access token's `cnf.jkt`, or the
    /// key a refresh-token family is bound to).
    #[error("the DPoP key does not match the bound key")]
    JktMismatch,

    // ---- nonces --------------------------------------------------------------------------
    /// The server requires a nonce and the proof has none. Answer `use_dpop_nonce` with the
    /// fresh nonce in a `DPoP-Nonce` header.
    #[error("a DPoP nonce is required")]
    NonceRequired {
        /// A nonce the client can use.
        fresh_nonce: String,
    },
    /// The nonce was not issued by this server (bad MAC, unknown or rotated-out key, bad
    /// encoding).
    #[error("the DPoP nonce is invalid")]
    NonceInvalid {
        /// A nonce the client can use.
        fresh_nonce: String,
    },
    /// The nonce is valid but too old.
    #[error("the DPoP nonce is stale")]
    NonceStale {
        /// A nonce the client can use.
        fresh_nonce: String,
    },

    // ---- replay --------------------------------------------------------------------------
    /// This (`jkt`, `jti`) pair was already used within the acceptance window.
    #[error("the DPoP proof was already used")]
    Replay,
    /// The replay cache is full (even after purging expired entries) and refuses new entries
    /// rather than forgetting live ones. A server-side condition.
    #[error("the replay cache is full")]
    ReplayCacheFull,
    /// The replay cache could not be reached. A server-side condition.
    #[error("the replay cache is unavailable")]
    ReplayCacheUnavailable(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// [`Validator::validate_sync`](crate::Validator::validate_sync) was used with a replay
    /// cache that has no synchronous path (a networked one); the proof was not recorded. A
    /// server-side integration error: use `Validator::validate`.
    #[error("the replay cache has no synchronous path")]
    ReplayCacheNotSynchronous,

    // ---- the request to a protected resource (RFC 6750, RFC 9449 section 7) ---------------
    /// The request carries no `Authorization` header. The challenge carries no error code
    /// (RFC 6750 section 3.1).
    #[error("no Authorization header")]
    MissingAuthorization,
    /// The request carries more than one `Authorization` header.
    #[error("more than one Authorization header")]
    MultipleAuthorizations,
    /// The `Authorization` scheme is neither `DPoP` nor an accepted `Bearer`. The challenge
    /// carries no error code (RFC 6750 section 3.1).
    #[error("the authorization scheme is not accepted")]
    UnsupportedScheme,
    /// The `Authorization` header is not `scheme SP token68` in visible ASCII.
    #[error("the Authorization header is malformed")]
    MalformedAuthorization,
    /// The `Authorization` header is larger than the access-token size limit allows.
    #[error("the access token exceeds the size limit of {limit} bytes")]
    AccessTokenTooLarge {
        /// The limit in bytes (the token-jwt policy's `max_token_bytes`).
        limit: usize,
    },
    /// The access token failed verification (signature, `kid`, `typ`, issuer, audience,
    /// expiry, required claims, ...); the source names the check.
    #[error("the access token is invalid")]
    InvalidAccessToken(#[source] token_jwt::Error),
    /// A key-bound access token (with a `cnf` claim, RFC 7800) was presented with the `Bearer`
    /// scheme (RFC 9449 section 7.2: a downgrade).
    #[error("a key-bound access token was presented as a Bearer token")]
    BoundTokenAsBearer,
    /// An access token without `cnf.jkt` was presented with the `DPoP` scheme.
    #[error("the access token is not DPoP-bound")]
    TokenNotBound,
    /// The access token lacks a scope the resource requires.
    #[error("the access token lacks a required scope")]
    InsufficientScope,
    /// The verified claims do not deserialize into the caller's claims type.
    #[error("the access token claims do not have the expected form")]
    UnexpectedClaims,

    // ---- client side ---------------------------------------------------------------------
    /// Building a proof failed: the key could not sign, or the OS random number generator
    /// failed.
    #[error("the DPoP proof could not be built")]
    Signing(#[source] token_jwt::Error),
    /// The OS random number generator failed (nonce key generation).
    #[error("the OS random number generator failed")]
    Random,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The OAuth error code for a proof that fails a check (RFC 9449 section 7.1, 12.2).
pub const INVALID_DPOP_PROOF: &str = "invalid_dpop_proof";
/// The OAuth error code asking the client to retry with the server's nonce (RFC 9449 8, 9).
pub const USE_DPOP_NONCE: &str = "use_dpop_nonce";
/// The OAuth error code for failures on the server's side (RFC 6749 4.1.2.1).
pub const SERVER_ERROR: &str = "server_error";
/// The OAuth error code for a missing, malformed or repeated request parameter (RFC 6750
/// section 3.1): answered with 400.
pub const INVALID_REQUEST: &str = "invalid_request";
/// The OAuth error code for an access token that is expired, revoked, malformed or invalid
/// for other reasons (RFC 6750 section 3.1): answered with 401.
pub const INVALID_TOKEN: &str = "invalid_token";
/// The OAuth error code for an access token without the scope the resource requires (RFC 6750
/// section 3.1): answered with 403.
pub const INSUFFICIENT_SCOPE: &str = "insufficient_scope";

impl Error {
    /// The OAuth error code: [`USE_DPOP_NONCE`] for the nonce variants, [`SERVER_ERROR`] for
    /// replay-cache and integration failures (see [`Error::is_server_error`]),
    /// [`INVALID_REQUEST`] for a missing, repeated, malformed or unsupported `Authorization`
    /// header, [`INVALID_TOKEN`] for the access-token variants, [`INSUFFICIENT_SCOPE`], and
    /// [`INVALID_DPOP_PROOF`] for everything else (the proof).
    ///
    /// A resource server's challenge leaves the code out when the request has no usable
    /// credentials ([`Error::MissingAuthorization`], [`Error::UnsupportedScheme`], RFC 6750
    /// section 3.1) and reports a proof bound to another key than the token's
    /// ([`Error::JktMismatch`]) as `invalid_token`: see
    /// [`Rejection::oauth_error`](crate::Rejection::oauth_error).
    pub fn oauth_error(&self) -> &'static str {
        if self.fresh_nonce().is_some() {
            USE_DPOP_NONCE
        } else if self.is_server_error() {
            SERVER_ERROR
        } else {
            match self {
                Error::MissingAuthorization
                | Error::MultipleAuthorizations
                | Error::UnsupportedScheme
                | Error::MalformedAuthorization => INVALID_REQUEST,
                Error::AccessTokenTooLarge { .. }
                | Error::InvalidAccessToken(_)
                | Error::BoundTokenAsBearer
                | Error::TokenNotBound
                | Error::UnexpectedClaims => INVALID_TOKEN,
                Error::InsufficientScope => INSUFFICIENT_SCOPE,
                _ => INVALID_DPOP_PROOF,
            }
        }
    }

    /// Whether the failure is the server's, not the client's: the replay cache is full,
    /// unreachable or has no synchronous path for `validate_sync`, the request URI given to the validator is not usable, or (client side)
    /// a proof could not be built. Answer with a 5xx status, not `invalid_dpop_proof`.
    pub fn is_server_error(&self) -> bool {
        matches!(
            self,
            Error::ReplayCacheFull
                | Error::ReplayCacheUnavailable(_)
                | Error::ReplayCacheNotSynchronous
                | Error::InvalidRequestUri
                | Error::Signing(_)
                | Error::Random
        )
    }

    /// A nonce to send back in a `DPoP-Nonce` header, for the nonce variants.
    pub fn fresh_nonce(&self) -> Option<&str> {
        match self {
            Error::NonceRequired { fresh_nonce }
            | Error::NonceInvalid { fresh_nonce }
            | Error::NonceStale { fresh_nonce } => Some(fresh_nonce),
            _ => None,
        }
    }

    /// A short `error_description` naming the failed check. It never contains the input.
    pub fn description(&self) -> &'static str {
        match self {
            Error::MissingProof => "DPoP proof missing",
            Error::MultipleProofs => "more than one DPoP proof",
            Error::ProofTooLarge { .. } => "DPoP proof too large",
            Error::Malformed(_) => "DPoP proof is not a well-formed JWS",
            Error::WrongTyp => "DPoP proof typ is not dpop+jwt",
            Error::AlgNotAllowed => "DPoP proof alg not allowed",
            Error::MissingJwk => "DPoP proof has no jwk",
            Error::PrivateKey => "DPoP proof jwk contains a private key",
            Error::SymmetricKey => "DPoP proof jwk is a symmetric key",
            Error::InvalidKey(_) => "DPoP proof jwk is not a valid public key",
            Error::AlgKeyMismatch => "DPoP proof alg does not fit the jwk",
            Error::BadSignature => "DPoP proof signature invalid",
            Error::InvalidClaim(_) => "DPoP proof claim has the wrong type",
            Error::MissingJti => "DPoP proof jti missing",
            Error::JtiTooLong { .. } => "DPoP proof jti too long",
            Error::MissingHtm => "DPoP proof htm missing",
            Error::HtmMismatch => "DPoP proof htm does not match the request method",
            Error::MissingHtu => "DPoP proof htu missing",
            Error::InvalidHtu => "DPoP proof htu is not a valid http(s) URI",
            Error::HtuMismatch => "DPoP proof htu does not match the request URI",
            Error::InvalidRequestUri => "request URI cannot be compared",
            Error::MissingIat => "DPoP proof iat missing",
            Error::IatTooOld => "DPoP proof too old",
            Error::IatInFuture => "DPoP proof issued in the future",
            Error::MissingAth => "DPoP proof ath missing",
            Error::AthMismatch => "DPoP proof ath does not match the access token",
            Error::JktMismatch => "DPoP key does not match the bound key",
            Error::NonceRequired { .. } => "DPoP nonce required",
            Error::NonceInvalid { .. } => "DPoP nonce invalid",
            Error::NonceStale { .. } => "DPoP nonce stale",
            Error::Replay => "DPoP proof replayed",
            Error::ReplayCacheFull => "DPoP replay cache full",
            Error::ReplayCacheUnavailable(_) => "DPoP replay cache unavailable",
            Error::ReplayCacheNotSynchronous => "DPoP replay cache has no synchronous path",
            Error::MissingAuthorization => "access token missing",
            Error::MultipleAuthorizations => "more than one Authorization header",
            Error::UnsupportedScheme => "authorization scheme not accepted",
            Error::MalformedAuthorization => "Authorization header malformed",
            Error::AccessTokenTooLarge { .. } => "access token too large",
            Error::InvalidAccessToken(e) => access_token_description(e),
            Error::BoundTokenAsBearer => "key-bound access token presented as a Bearer token",
            Error::TokenNotBound => "access token is not DPoP-bound",
            Error::InsufficientScope => "access token lacks a required scope",
            Error::UnexpectedClaims => "access token claims do not have the expected form",
            Error::Signing(_) => "DPoP proof could not be signed",
            Error::Random => "random number generator failed",
        }
    }
}

/// The `error_description` for an access token refused by token-jwt: the check, never the
/// token or its claims.
fn access_token_description(e: &token_jwt::Error) -> &'static str {
    use token_jwt::Error as J;
    match e {
        J::Expired => "access token expired",
        J::NotYetValid => "access token not yet valid",
        J::IssuedInFuture => "access token issued in the future",
        J::TooOld => "access token too old",
        J::WrongIssuer => "access token issuer not accepted",
        J::WrongAudience => "access token audience not accepted",
        J::MissingClaim(_) => "access token lacks a required claim",
        J::InvalidClaim(_) => "access token claim has the wrong type",
        J::InvalidSignature => "access token signature invalid",
        J::UnknownKeyId | J::MissingKeyId => "access token signing key unknown",
        J::WrongType => "access token typ not accepted",
        J::TooLarge { .. } => "access token too large",
        _ => "access token malformed or not accepted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Error::Replay.oauth_error(), INVALID_DPOP_PROOF);
        assert_eq!(Error::ReplayCacheFull.oauth_error(), SERVER_ERROR);
        assert_eq!(Error::ReplayCacheNotSynchronous.oauth_error(), SERVER_ERROR);
        let e = Error::NonceStale {
            fresh_nonce: "n".into(),
        };
        assert_eq!(e.oauth_error(), USE_DPOP_NONCE);
        assert_eq!(e.fresh_nonce(), Some("n"));
        assert_eq!(Error::BadSignature.fresh_nonce(), None);
        assert!(!Error::BadSignature.description().is_empty());
        assert_eq!(Error::MultipleAuthorizations.oauth_error(), INVALID_REQUEST);
        assert_eq!(Error::BoundTokenAsBearer.oauth_error(), INVALID_TOKEN);
        assert_eq!(Error::InsufficientScope.oauth_error(), INSUFFICIENT_SCOPE);
        assert_eq!(Error::JktMismatch.oauth_error(), INVALID_DPOP_PROOF);
        assert_eq!(
            Error::InvalidAccessToken(token_jwt::Error::Expired).description(),
            "access token expired"
        );
    }
}
