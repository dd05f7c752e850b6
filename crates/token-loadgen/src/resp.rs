//! Two Redis commands spoken directly over TCP (RESP): `PING`, the raw round trip the
//! benchmark compares the service against, and `INFO memory`, for the soak report. A client
//! library would add its own cost to the very figure we want as the baseline.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::Error;

/// Largest `INFO` reply read.
const MAX_REPLY: usize = 1 << 20;

/// An open connection to one Redis server.
#[derive(Debug)]
pub struct Connection(BufReader<TcpStream>);

impl Connection {
    /// Connects to `redis://host:port` (no TLS, no authentication: a local benchmark server).
    ///
    /// # Errors
    /// [`Error::Redis`] when the URL is not of that form or the server cannot be reached.
    pub async fn open(url: &str) -> Result<Self, Error> {
        let addr = url
            .strip_prefix("redis://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.contains(['@', '/']))
            .ok_or_else(|| Error::Redis(format!("`{url}`: expected redis://host:port")))?;
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Redis(format!("{addr}: connect timed out")))?
            .map_err(|e| Error::Redis(format!("{addr}: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Error::Redis(e.to_string()))?;
        Ok(Connection(BufReader::new(stream)))
    }

    async fn line(&mut self) -> Result<String, Error> {
        let mut line = String::new();
        self.0
            .read_line(&mut line)
            .await
            .map_err(|e| Error::Redis(e.to_string()))?;
        Ok(line.trim_end().to_owned())
    }

    /// One `PING` round trip.
    ///
    /// # Errors
    /// [`Error::Redis`] on I/O errors or an unexpected reply.
    pub async fn ping(&mut self) -> Result<(), Error> {
        self.0
            .get_mut()
            .write_all(b"PING\r\n")
            .await
            .map_err(|e| Error::Redis(e.to_string()))?;
        match self.line().await?.as_str() {
            "+PONG" => Ok(()),
            other => Err(Error::Redis(format!("PING answered {other:?}"))),
        }
    }

    /// `used_memory` from `INFO memory`, bytes.
    ///
    /// # Errors
    /// [`Error::Redis`] on I/O errors or an unexpected reply.
    pub async fn used_memory(&mut self) -> Result<u64, Error> {
        self.0
            .get_mut()
            .write_all(b"INFO memory\r\n")
            .await
            .map_err(|e| Error::Redis(e.to_string()))?;
        let header = self.line().await?;
        let len: usize = header
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .filter(|n| *n <= MAX_REPLY)
            .ok_or_else(|| Error::Redis(format!("INFO answered {header:?}")))?;
        let mut body = vec![0; len + 2];
        self.0
            .read_exact(&mut body)
            .await
            .map_err(|e| Error::Redis(e.to_string()))?;
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::Redis("INFO memory without used_memory".into()))
    }
}

/// `used_memory` of the Redis server at `url`, on a new connection.
pub(crate) async fn used_memory(url: &str) -> Result<u64, Error> {
    Connection::open(url).await?.used_memory().await
}
