//! The one error type of `token-store-redis`.
//!
//! Trait methods report failures as the owning crate's error ([`token_refresh::Error::Store`],
//! [`token_dpop::ReplayError::Unavailable`], [`token_kms::Error::KeyStore`]) with an [`Error`]
//! of this crate as the source.
//! No variant carries a password, a token or a token hash: only operation names and short
//! static reasons, plus the client library's error as an opaque source.

/// A boxed error from the Redis client (kept opaque: the client's types are not part of this
/// crate's API).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is not acceptable (the reason never repeats the URL).
    #[error("invalid Redis configuration: {0}")]
    InvalidConfig(&'static str),
    /// The first connection (or loading the Lua scripts) failed.
    #[error("cannot connect to Redis: {reason}")]
    Connect {
        /// What was being done.
        reason: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// A command failed (connection lost, server error, script error).
    #[error("Redis {op} failed")]
    Command {
        /// The operation (`"rotate"`, `"get"`, ...).
        op: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// A command got no answer within the command timeout (the server may or may not have
    /// applied it).
    #[error("Redis {op} timed out")]
    Timeout {
        /// The operation.
        op: &'static str,
    },
    /// Redis (a primary) may evict keys: its `maxmemory-policy` is not `noeviction`. Every
    /// key this crate writes has a TTL, so a `volatile-*` or `allkeys-*` policy could drop
    /// revocations, rotated-token history or replay entries, and revoked or replayed tokens
    /// would work again: the store refuses to connect, and fails every operation when a
    /// reconnect finds such a policy.
    #[error(
        "Redis may evict keys (maxmemory-policy is `{policy}`): revocations and replay entries \
         would be lost; set `maxmemory-policy noeviction` and size maxmemory for the working set"
    )]
    EvictionPolicy {
        /// The policy found.
        policy: String,
    },
    /// Redis answered something this crate does not expect (a reply of the wrong shape, a
    /// stored value that does not decode): the operation fails closed.
    #[error("unexpected Redis reply to {op}: {reason}")]
    UnexpectedReply {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
}

impl Error {
    /// Whether the error is a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    pub(crate) fn command(op: &'static str, e: fred::error::Error) -> Self {
        if *e.kind() == fred::error::ErrorKind::Timeout {
            Error::Timeout { op }
        } else {
            Error::Command {
                op,
                source: Box::new(e),
            }
        }
    }

    pub(crate) fn unexpected(op: &'static str, reason: &'static str) -> Self {
        Error::UnexpectedReply { op, reason }
    }
}

#[cfg(feature = "refresh")]
impl From<Error> for token_refresh::Error {
    fn from(e: Error) -> Self {
        token_refresh::Error::store_with_source(e.to_string(), e)
    }
}

#[cfg(feature = "dpop")]
impl From<Error> for token_dpop::ReplayError {
    fn from(e: Error) -> Self {
        token_dpop::ReplayError::Unavailable(Box::new(e))
    }
}

#[cfg(feature = "keys")]
impl From<Error> for token_kms::Error {
    fn from(e: Error) -> Self {
        token_kms::Error::KeyStore(Box::new(e))
    }
}
