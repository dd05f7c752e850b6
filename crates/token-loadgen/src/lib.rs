//! A load generator for the token-service gRPC API.
//!
//! It drives the real API over several HTTP/2 connections with a number of *virtual clients*,
//! each with one request in flight, its own DPoP key and its own refresh-token families:
//!
//! - **closed loop** (the default): every client sends its next request when the previous one
//!   is answered, so `concurrency` requests are always in flight;
//! - **open loop** (`rate`): requests fall due on a fixed schedule, and each one's latency is
//!   measured from when it was *due*, so a server that stalls cannot hide the stall by slowing
//!   the generator down (no coordinated omission).
//!
//! Latency goes into an HDR histogram (p50, p90, p99, p99.9, max), failures are counted by gRPC
//! status and `oauth-error`, and with the server's process id the report adds the server's CPU
//! time per request and its peak RSS, read from `/proc`. [`primitives::measure`] times the raw
//! operations (ES256 and Ed25519 with aws-lc-rs, a Redis round trip, the CPU of one store round
//! trip through token-store-redis) that `cargo xtask bench` divides every figure by, and
//! [`otlp_sink::serve`] is the OTLP trace receiver of its trace-export run.
//!
//! The scenarios ([`Scenario`]) are `health` (the framework's no-op ceiling), `ready` (the
//! health `Check` of `token.v1.TokenService`: one store round trip), `generate`,
//! `generate-dpop`, `refresh`, `refresh-dpop`, `validate-dpop`, `introspect` and `mixed`
//! (1 generate : 10 refresh : 50 validate). With `verify`, every issued access token is checked
//! against the server's JWKS, its DPoP binding and the grant it was minted for (the load
//! generator's `client_id` and audience, on refreshed tokens too): the correctness mode the
//! tests use.
//!
//! The binary `token-loadgen` is the command-line front end; `cargo xtask bench` and
//! `cargo xtask soak` run it against a release build of the server. It talks to the server
//! through `token-proto`'s generated client only, so it builds without the server crate (and
//! its AWS dependencies; its Redis client, token-store-redis, only to time a store round trip);
//! only its integration test starts a server in-process.
//!
//! ```no_run
//! # async fn example() -> Result<(), token_loadgen::Error> {
//! use std::time::Duration;
//! use token_loadgen::{Options, Scenario};
//!
//! let report = token_loadgen::run(&Options {
//!     scenario: Scenario::Refresh,
//!     caller_token: Some("the-caller-token".into()),
//!     duration: Duration::from_secs(10),
//!     ..Options::new("http://127.0.0.1:50052")
//! })
//! .await?;
//! println!("{report}");
//! assert_eq!(report.error_count(), 0);
//! # Ok(()) }
//! ```

mod driver;
pub mod otlp_sink;
pub mod primitives;
pub mod procfs;
mod redis;
mod report;
mod scenario;

use std::time::Duration;

pub use driver::run;
pub use report::{Latency, Report, Sample, ServerUsage};
pub use scenario::Scenario;

/// Errors that stop a run (failed requests during a run are counted in the [`Report`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Inconsistent options.
    #[error("usage: {0}")]
    Usage(String),
    /// The server could not be reached.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The virtual clients could not create their starting state.
    #[error("setting up the load: {0}")]
    Setup(String),
    /// `/proc` could not be read.
    #[error("reading /proc: {0}")]
    Proc(String),
    /// Redis could not be reached or answered unexpectedly.
    #[error("redis: {0}")]
    Redis(String),
}

/// How to run one scenario.
#[derive(Clone, Debug)]
pub struct Options {
    /// The server's gRPC address, `http://host:port`.
    pub target: String,
    /// The caller's bearer token (`authorization: Bearer …` on every request).
    pub caller_token: Option<String>,
    /// What the virtual clients do.
    pub scenario: Scenario,
    /// Virtual clients: the most requests in flight.
    pub concurrency: usize,
    /// HTTP/2 connections the clients are spread over.
    pub connections: usize,
    /// Open loop at this many requests per second; `None`: closed loop.
    pub rate: Option<f64>,
    /// Length of the measured window.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    /// Check every issued access token against the JWKS, its DPoP binding and its grant
    /// (client and audience) (costs client CPU).
    pub verify: bool,
    /// The `htu` of the DPoP proofs.
    pub htu: String,
    /// The server's process id: its CPU and memory are reported.
    pub server_pid: Option<u32>,
    /// Redis's URL (`redis://host:port`): its memory is reported over time.
    pub redis_url: Option<String>,
    /// How often memory is sampled.
    pub sample_every: Duration,
    /// Virtual clients start a new refresh-token family after this long, as clients sign in
    /// again before their grant's absolute lifetime ends (`None`: one family for the run).
    pub family_lifetime: Option<Duration>,
}

impl Options {
    /// Defaults for `target`: closed loop, 64 clients over 4 connections, 10 s after 2 s of
    /// warm-up, the `generate` scenario.
    pub fn new(target: impl Into<String>) -> Self {
        Options {
            target: target.into(),
            caller_token: None,
            scenario: Scenario::Generate,
            concurrency: 64,
            connections: 4,
            rate: None,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            verify: false,
            htu: "https://as.example/token".into(),
            server_pid: None,
            redis_url: None,
            sample_every: Duration::from_secs(10),
            family_lifetime: None,
        }
    }
}

/// Seconds since the Unix epoch: the `iat` of proofs and the `now` of verification.
#[allow(
    clippy::disallowed_methods,
    reason = "a load generator is a client: it reads the wall clock like any client does"
)]
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
