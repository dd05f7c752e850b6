//! Logging setup: tracing with pretty or JSON output, filtered by `RUST_LOG` (read and checked
//! by [`crate::config`]).
//!
//! Nothing logs tokens, proofs or keys: handlers log outcomes, ids they minted (family ids,
//! `jti`s) and caller ids, never request bodies.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber with `filter` (an `EnvFilter` directive; `info` when it does
/// not parse), once; later calls do nothing.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// As [`init`] for a subcommand whose standard output is its result (`keys list`, `keys
/// public`, `keys wrap`): log lines go to standard error.
pub fn init_for_command(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(std::io::stderr)
        .try_init();
}
