//! Test fixtures of the token-service workspace, written once for every crate's tests,
//! benches and `cargo xtask`: real server processes on free loopback ports, in temporary
//! directories, killed when their handle is dropped. Not published and not a stable API.
//!
//! One module per job:
//!
//! - [`port`]: the free-port picker (a port is never handed out twice in one process);
//! - [`process`]: a child process with its output in a log file, waited for until it is
//!   ready (or fails with its log), killed on drop;
//! - [`resp`]: a minimal RESP2 client (one command per call), for fixtures that inspect Redis
//!   and for the load generator's raw `PING` baseline;
//! - [`redis`]: a standalone `redis-server`, optionally persistent across a kill and restart;
//! - [`cluster`]: a 3-master Redis Cluster, optionally with one replica per master;
//! - [`sentinel`]: a primary behind `redis-server --sentinel`;
//! - [`venv`]: the Python virtual environment of the KMS tests, created on first use;
//! - `moto` (feature `kms`): the moto KMS emulator and an AWS SDK admin client for it;
//! - `harness` (feature `conformance`): [`token_refresh::conformance::Harness`] on tokio;
//! - [`error`]: [`FixtureError`], what every fixture returns when it cannot start or answer.
//!
//! A missing `redis-server`, `redis-cli` or `python3` is an error whose message says how to
//! install it; nothing is skipped silently. Crates that only need Redis or RESP depend on this
//! crate without features and link neither the AWS SDK nor a Redis client library.
//!
//! ```no_run
//! # fn main() -> Result<(), token_testkit::FixtureError> {
//! let server = token_testkit::RedisServer::start()?;
//! let reply = server.command(&["PING"])?;
//! assert_eq!(reply.text().as_deref(), Some("PONG"));
//! # Ok(()) }
//! ```

pub mod cluster;
pub mod error;
#[cfg(feature = "conformance")]
pub mod harness;
#[cfg(feature = "kms")]
pub mod moto;
pub mod port;
pub mod process;
pub mod redis;
pub mod resp;
pub mod sentinel;
pub mod venv;

pub use cluster::{RedisCluster, Shard};
pub use error::FixtureError;
#[cfg(feature = "conformance")]
pub use harness::TokioHarness;
#[cfg(feature = "kms")]
pub use moto::Moto;
pub use process::Process;
pub use redis::RedisServer;
pub use resp::Reply;
pub use sentinel::RedisSentinel;
pub use venv::Venv;
