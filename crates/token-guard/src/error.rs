//! The one error type of `token-guard`: what can go wrong while building a guard or starting
//! a revocation watcher. A refused request is not an error of the guard but a
//! [`Rejection`](crate::Rejection), answered to the client.

/// A guard, watcher or replay cache that could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder has no source of verification keys: call `jwks_url` or `keys`.
    #[error("no verification keys: set a JWKS URL or a key resolver")]
    MissingKeys,
    /// The builder has no external base URL (the scheme and host clients use, which DPoP
    /// proofs name in `htu`).
    #[error("no external base URL")]
    MissingExternalUrl,
    /// The external base URL is not `http(s)://host[:port][/prefix]`.
    #[error("the external base URL is invalid: {0}")]
    InvalidExternalUrl(&'static str),
    /// A configured value that goes into a header or a document is not visible ASCII (or holds
    /// a `"` or `\`).
    #[error("{0} must be visible ASCII without quotes or backslashes")]
    InvalidHeaderText(&'static str),
    /// The JWKS URL or its HTTP client could not be set up.
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    #[error("the JWKS fetcher could not be set up")]
    Jwks(#[source] token_jwks::Error),
    /// The token service's URL is not a valid gRPC endpoint, or TLS could not be set up.
    #[cfg(feature = "watch")]
    #[cfg_attr(docsrs, doc(cfg(feature = "watch")))]
    #[error("the revocation watcher's endpoint is invalid: {0}")]
    InvalidEndpoint(String),
    /// The caller token cannot be sent in a header (not visible ASCII).
    #[cfg(feature = "watch")]
    #[cfg_attr(docsrs, doc(cfg(feature = "watch")))]
    #[error("the caller token is not visible ASCII")]
    InvalidCallerToken,
    /// `RevocationWatcher::spawn` was called outside a tokio runtime.
    #[cfg(feature = "watch")]
    #[cfg_attr(docsrs, doc(cfg(feature = "watch")))]
    #[error("the revocation watcher needs a tokio runtime to spawn its task on")]
    NoRuntime,
    /// The Redis replay cache could not connect.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[error("the Redis replay cache could not be set up")]
    Redis(#[source] token_store_redis::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
