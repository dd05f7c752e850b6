//! The one error type of `token-refresh`.
//!
//! Every distinct rejection is its own variant so callers (and metrics) can tell them apart;
//! [`Error::oauth_error`] maps each to the OAuth error code it stands for. No variant ever
//! carries a token, a token hash or the pepper: only sizes and short static reasons.

/// The OAuth 2.0 error code (RFC 6749 section 5.2) an [`Error`] stands for.
///
/// The conversion to a transport status (gRPC, HTTP) happens in the server, not here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OAuthError {
    /// `invalid_grant`: the refresh token is malformed, unknown, forged, reused, revoked,
    /// expired, presented by another client than its own, or without the DPoP key it is
    /// bound to.
    InvalidGrant,
    /// `invalid_scope`: the refresh asked for a scope the family was not granted.
    InvalidScope,
    /// `invalid_target` (RFC 8707): the refresh asked for an audience the family was not
    /// granted.
    InvalidTarget,
    /// `invalid_request`: an argument to issue a family is not acceptable.
    InvalidRequest,
    /// `temporarily_unavailable`: the store failed; nothing was issued (fail closed).
    TemporarilyUnavailable,
    /// `server_error`: a configuration or environment problem.
    ServerError,
}

impl OAuthError {
    /// The wire value, such as `"invalid_grant"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthError::InvalidGrant => "invalid_grant",
            OAuthError::InvalidTarget => "invalid_target",
            OAuthError::InvalidScope => "invalid_scope",
            OAuthError::InvalidRequest => "invalid_request",
            OAuthError::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthError::ServerError => "server_error",
        }
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong while issuing, parsing, rotating or revoking refresh tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- token format (checked in memory, before any store lookup) ------------------------
    /// The presented token is larger than [`MAX_TOKEN_BYTES`](crate::MAX_TOKEN_BYTES).
    #[error("refresh token of {actual} bytes exceeds the limit of {limit} bytes")]
    TokenTooLarge {
        /// The limit in bytes.
        limit: usize,
        /// The size of the input in bytes.
        actual: usize,
    },
    /// The presented token does not have the refresh-token shape (prefix, length, separators,
    /// strict base64url segments).
    #[error("malformed refresh token: {0}")]
    MalformedToken(&'static str),
    /// The presented token has the right shape but its checksum does not match (a typo or a
    /// truncated copy).
    #[error("refresh token checksum mismatch")]
    TokenChecksum,

    // ---- refresh refusals (the store was asked) --------------------------------------------
    /// No family with the token's family id exists (never issued, or expired and purged).
    #[error("unknown refresh-token family")]
    UnknownFamily,
    /// The token names a real family but matches none of its current or remembered token
    /// hashes. The family is left untouched.
    #[error("refresh token matches no token of its family")]
    ForgedToken,
    /// A rotated (already used) token was presented: the whole family is now revoked.
    #[error("refresh token reuse detected; the family has been revoked")]
    ReuseDetected,
    /// The family has been revoked.
    #[error("the refresh-token family has been revoked")]
    Revoked,
    /// The family reached its absolute or idle expiry.
    #[error("the refresh-token family has expired")]
    Expired,
    /// The token was presented by another client than the one its family was granted to.
    /// The family is left untouched.
    #[error("the refresh token was issued to another client")]
    ClientMismatch,
    /// The family is bound to a DPoP key but the refresh came without a DPoP proof. The family
    /// is left untouched.
    #[error("the refresh token is DPoP-bound and no DPoP proof was presented")]
    DpopProofRequired,
    /// The family is bound to a different DPoP key than the one presented. The family is left
    /// untouched.
    #[error("the DPoP key does not match the key the refresh token is bound to")]
    DpopKeyMismatch,
    /// The refresh asked for a scope that the family was not granted (down-scoping only).
    #[error("requested scope exceeds the granted scope")]
    ScopeExceeded,
    /// The refresh asked for an audience that the family was not granted (narrowing only).
    #[error("requested audience exceeds the granted audience")]
    AudienceExceeded,

    // ---- arguments and configuration -------------------------------------------------------
    /// An argument to issue a family is not acceptable (empty subject, oversized value, a
    /// scope that is not an RFC 6749 scope token, ...).
    #[error("invalid argument: {0}")]
    InvalidInput(&'static str),
    /// The configuration is not acceptable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The pepper is not acceptable (too short, too long, bad encoding).
    #[error("invalid pepper: {0}")]
    InvalidPepper(&'static str),
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed")]
    Random,

    // ---- backend ---------------------------------------------------------------------------
    /// A family with this id already exists (creation never overwrites).
    #[error("a family with this id already exists")]
    FamilyExists,
    /// The store failed (unreachable, timed out, answered something unexpected, or holds
    /// state that does not verify). The operation did not take effect as far as the caller
    /// can tell, and nothing was issued: callers fail closed.
    #[error("store failure: {reason}")]
    Store {
        /// A short description; never contains a token, a hash or the pepper.
        reason: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// A revocation subscriber fell behind and missed this many events; it should re-read the
    /// list ([`RevocationList::revoked`](crate::RevocationList::revoked)).
    #[error("revocation subscriber lagged and missed {missed} events")]
    SubscriptionLagged {
        /// How many events were dropped for this subscriber.
        missed: u64,
    },
    /// The revocation event source is gone (the store was dropped).
    #[error("the revocation event source is closed")]
    SubscriptionClosed,
    /// A revocation event could not be decoded.
    #[error("invalid revocation event: {0}")]
    InvalidEvent(&'static str),
}

impl Error {
    /// A store failure with a reason and no source.
    pub fn store(reason: impl Into<String>) -> Self {
        Error::Store {
            reason: reason.into(),
            source: None,
        }
    }

    /// A store failure with a reason and the underlying error.
    pub fn store_with_source(
        reason: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Store {
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    /// The OAuth error code this error stands for.
    pub fn oauth_error(&self) -> OAuthError {
        match self {
            Error::TokenTooLarge { .. }
            | Error::MalformedToken(_)
            | Error::TokenChecksum
            | Error::UnknownFamily
            | Error::ForgedToken
            | Error::ReuseDetected
            | Error::Revoked
            | Error::Expired
            | Error::DpopProofRequired
            | Error::ClientMismatch
            | Error::DpopKeyMismatch => OAuthError::InvalidGrant,
            Error::ScopeExceeded => OAuthError::InvalidScope,
            Error::AudienceExceeded => OAuthError::InvalidTarget,
            Error::InvalidInput(_) => OAuthError::InvalidRequest,
            Error::Store { .. } => OAuthError::TemporarilyUnavailable,
            Error::InvalidConfig(_)
            | Error::InvalidPepper(_)
            | Error::Random
            | Error::FamilyExists
            | Error::SubscriptionLagged { .. }
            | Error::SubscriptionClosed
            | Error::InvalidEvent(_) => OAuthError::ServerError,
        }
    }

    /// Whether the presented token was refused before any store lookup (shape, size or
    /// checksum).
    pub fn is_format_error(&self) -> bool {
        matches!(
            self,
            Error::TokenTooLarge { .. } | Error::MalformedToken(_) | Error::TokenChecksum
        )
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_codes() {
        assert_eq!(Error::ReuseDetected.oauth_error().as_str(), "invalid_grant");
        assert_eq!(
            Error::DpopProofRequired.oauth_error(),
            OAuthError::InvalidGrant
        );
        assert_eq!(Error::ScopeExceeded.oauth_error().as_str(), "invalid_scope");
        assert_eq!(
            Error::store("down").oauth_error().as_str(),
            "temporarily_unavailable"
        );
        assert!(Error::TokenChecksum.is_format_error());
        assert!(!Error::ForgedToken.is_format_error());
    }
}
