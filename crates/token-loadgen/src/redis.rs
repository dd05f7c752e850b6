//! Redis spoken directly (token-testkit's RESP client): `PING`, the raw round trip the
//! benchmark compares the service against, and `INFO memory`, for the soak report. A client
//! library would add its own cost to the very figure we want as the baseline. The client
//! blocks, so each use runs on tokio's blocking threads.

use std::time::Duration;

use token_testkit::FixtureError;
use token_testkit::resp::Connection;

use crate::Error;

/// Connect and read/write timeout.
const TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn error(e: FixtureError) -> Error {
    Error::Redis(e.to_string())
}

/// Connects to `redis://host:port` (no TLS, no authentication: a local benchmark server).
pub(crate) fn connect(url: &str) -> Result<Connection, Error> {
    Connection::open(url, TIMEOUT).map_err(error)
}

/// Runs `f` on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Redis(format!("the Redis task failed: {e}")))?
}

/// `used_memory` of the Redis server at `url`, bytes, on a new connection.
pub(crate) async fn used_memory(url: &str) -> Result<u64, Error> {
    let url = url.to_owned();
    blocking(move || {
        let value = connect(&url)?
            .info_field("memory", "used_memory")
            .map_err(error)?;
        value
            .trim()
            .parse()
            .map_err(|_| Error::Redis(format!("INFO memory: used_memory is {value:?}")))
    })
    .await
}
