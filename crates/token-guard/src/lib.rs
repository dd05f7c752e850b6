#![doc = include_str!("../README.md")]
//!
//! # Where this crate sits
//!
//! `token-guard` is the resource server's side of the project. It verifies each request with
//! `token-dpop`'s `RequestVerifier` (which verifies the access token with `token-jwt` and the
//! proof with its `Validator` and `ReplayCache`), resolves keys with `token-jwks`'s fetcher
//! (feature `jwks`), and adds what a service needs around that call: the tower layer, the
//! external URL for `htu`, the axum extractor, the RFC 9728 metadata, and the revocation list.
//! With the `watch` feature it is a client of `token-service` through `token-proto` (the
//! `WatchRevocations` stream); with the `redis` feature it records proofs through
//! `token-store-redis`. It depends on no server crate, and on tokio only for what a feature
//! needs (`jwks`: the fetcher's HTTP client; `watch`: one spawned task).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authenticated;
mod clock;
mod error;
mod guard;
mod layer;
pub mod metadata;
mod origin;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod rejection;
mod revocation;
#[cfg(feature = "watch")]
#[cfg_attr(docsrs, doc(cfg(feature = "watch")))]
pub mod watch;

pub use authenticated::Authenticated;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use guard::{Guard, GuardBuilder};
pub use layer::{GuardFuture, GuardLayer, GuardService};
pub use metadata::{MetadataService, ProtectedResourceMetadata};
pub use origin::ProxyHeaders;
pub use rejection::{Rejection, RejectionKind};
pub use revocation::{RevocationCheck, RevokedSids};
/// The `token-dpop` this crate is built on (`Authorized`, `Scheme`, nonces, replay caches, and
/// `token_jwt` through it).
pub use token_dpop;
pub use token_dpop::{Authorized, NonceIssuer, NonceKey, Scheme};
#[cfg(feature = "watch")]
pub use watch::{RevocationWatcher, RevocationWatcherBuilder, StalePolicy, WatcherStatus};

/// The `DPoP-Nonce` response header (RFC 9449 section 8.1).
pub const DPOP_NONCE: http::HeaderName = http::HeaderName::from_static("dpop-nonce");

/// Entry points for `cargo fuzz` targets (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    use crate::origin::{Origin, ProxyHeaders};

    /// Parses arbitrary bytes as `Forwarded` field values (split at newlines, as several header
    /// fields) and as `X-Forwarded-Proto`/`X-Forwarded-Host` values, and builds the request URI
    /// from them with one to three trusted hops.
    ///
    /// # Panics
    /// When a URI built does not start with `http://` or `https://` (a bug the fuzzer is to
    /// find); parsing itself never panics.
    pub fn parse_forwarded(data: &[u8]) {
        let fields: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
        let _ = crate::origin::parse_forwarded(fields.iter().copied());
        let mut headers = http::HeaderMap::new();
        for field in &fields {
            if let Ok(value) = http::HeaderValue::from_bytes(field) {
                headers.append(http::header::FORWARDED, value.clone());
                headers.append("x-forwarded-proto", value.clone());
                headers.append("x-forwarded-host", value);
            }
        }
        let Ok(base) = Origin::parse("https://rs.example/api") else {
            return;
        };
        for which in [ProxyHeaders::Forwarded, ProxyHeaders::XForwarded] {
            for hops in 1..=3 {
                let uri = base
                    .clone()
                    .trust(which, hops)
                    .request_uri(&headers, "/items");
                assert!(uri.starts_with("http://") || uri.starts_with("https://"));
            }
        }
    }
}
