//! The one error type of `token-jwks`.

use std::sync::Arc;

/// Everything that can go wrong rendering or fetching a JWK Set. No variant carries a response
/// body: only sizes, status codes and short reasons.
///
/// Errors are `Clone`, their sources shared behind an [`Arc`]: one failed fetch is the answer
/// to every caller that waited for it (see [`Error::SharedFetch`]).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key cannot be published: an RSA key without `alg` (RS256 or PS256 is ambiguous).
    #[error("key {kid} cannot be published: {reason}")]
    Unpublishable {
        /// The key's `kid` (or thumbprint).
        kid: String,
        /// Why.
        reason: &'static str,
    },
    /// The JWKS URL is not an absolute `http` or `https` URL.
    #[error("invalid JWKS URL: {0}")]
    InvalidUrl(&'static str),
    /// The TLS configuration could not be built (for example no trusted root certificates).
    #[cfg(feature = "fetch")]
    #[error("TLS setup failed: {0}")]
    Tls(#[source] Arc<std::io::Error>),
    /// The JWKS endpoint could not be reached or the connection failed.
    #[cfg(feature = "fetch")]
    #[error("fetching the JWKS failed: {}", chain(&**.0))]
    Transport(#[source] Arc<hyper_util::client::legacy::Error>),
    /// The connection failed while the response body was read.
    #[cfg(feature = "fetch")]
    #[error("fetching the JWKS failed: {}", chain(&**.0))]
    Body(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// A fetch another caller started at the same time failed: this caller waited for it
    /// instead of fetching again, and gets the same error (the one that caller got) as the
    /// source. Tells a caller that its own call did not reach the endpoint.
    #[error("fetching the JWKS failed: {0}")]
    SharedFetch(#[source] Arc<Error>),
    /// The JWKS endpoint did not answer in time.
    #[error("fetching the JWKS timed out")]
    Timeout,
    /// The JWKS endpoint answered with a status other than 200.
    #[error("the JWKS endpoint answered HTTP {0}")]
    Status(u16),
    /// The response is larger than the limit.
    #[error("the JWKS response exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The response is not a valid JWK Set.
    #[error("the JWKS response is not a valid JWK Set: {0}")]
    InvalidJwks(#[source] Arc<token_jwt::Error>),
    /// The fetch was not attempted: the last attempt was less than the refetch interval ago.
    #[error("JWKS refetch rate-limited")]
    RateLimited,
}

/// `e`'s message followed by the messages of its sources, `: `-separated.
#[cfg(feature = "fetch")]
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
