//! [`StartError`]: why the server could not start (or stop cleanly). Each variant keeps the
//! error it came from as its `source`, and names the variable at fault where one is.
//!
//! Errors while serving are gRPC statuses, made in [`crate::status`].

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::ConfigError;

/// Why the server could not start; names the variable when one is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A variable that does not parse or breaks a rule of [`crate::config`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file a variable names cannot be read.
    #[error("{var}: cannot read {}: {source}", path.display())]
    ReadFile {
        /// The variable naming the file.
        var: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key (a key file's contents, a generated key) that token-jwt refuses.
    #[error("{var}: {source}{}", key_hint(var))]
    Key {
        /// The variable the key comes from (`SIGNING_KEY_FILE`, `SIGNING_ALG`).
        var: &'static str,
        /// token-jwt's reason.
        source: token_jwt::Error,
    },
    /// AWS KMS refused or could not be reached (connecting, a key, a wrapped blob).
    #[error("{var}: {source}")]
    Kms {
        /// The variable naming the KMS key or blob.
        var: &'static str,
        /// token-kms's reason.
        source: token_kms::Error,
    },
    /// The key ring refused its schedule or its first key.
    #[error("the key ring: {0}")]
    KeyRing(#[source] token_kms::Error),
    /// The JWK Set could not be rendered.
    #[error("the JWK Set: {0}")]
    Jwks(#[source] token_jwks::Error),
    /// Redis could not be reached or refused the connection.
    #[error("REDIS_URL: {0}")]
    Redis(#[source] token_store_redis::Error),
    /// The operating system's random number generator failed.
    #[error("the OS random number generator: {0}")]
    Random(#[source] getrandom::Error),
    /// The Prometheus recorder could not be installed.
    #[error("the metrics recorder: {0}")]
    Metrics(#[source] crate::metrics::MetricsError),
    /// gRPC reflection could not read the descriptor set.
    #[error("gRPC reflection: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
    /// TLS settings that tonic refuses.
    #[error("TLS_CERT_FILE: {0}")]
    Tls(#[source] tonic::transport::Error),
    /// A listener could not be bound or has no local address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The gRPC server stopped with an error.
    #[error("the gRPC server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
    /// The admin HTTP server stopped with an error.
    #[error("the admin HTTP server failed: {0}")]
    Admin(#[source] std::io::Error),
    /// A server task panicked or was cancelled.
    #[error("a server task ended abnormally: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// In-flight requests did not finish within `SHUTDOWN_GRACE_SECONDS`.
    #[error("in-flight requests did not finish within SHUTDOWN_GRACE_SECONDS")]
    DrainTimeout,
}

/// What an error about the signing key file adds: how to make a good one.
fn key_hint(var: &str) -> &'static str {
    if var == crate::config::vars::SIGNING_KEY_FILE.name {
        "; make an ES256 key with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
         -out signing-key.pem` (EdDSA: `openssl genpkey -algorithm ed25519 -out signing-key.pem`)"
    } else {
        ""
    }
}
