//! A primary behind one sentinel (`redis-server --sentinel`).

use std::fmt;
use std::time::{Duration, Instant};

use crate::redis::{Mode, Settings};
use crate::{FixtureError, RedisServer, Reply};

/// A standalone primary and one sentinel monitoring it as `mymaster`, both killed on drop.
pub struct RedisSentinel {
    // Dropped in this order: the sentinel first, then the primary.
    sentinel: RedisServer,
    primary: RedisServer,
}

impl fmt::Debug for RedisSentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSentinel")
            .field("primary", &self.primary.port())
            .field("sentinel", &self.sentinel.port())
            .finish()
    }
}

impl RedisSentinel {
    /// Starts a standalone primary and a sentinel monitoring it, and waits until the sentinel
    /// names the primary.
    ///
    /// # Errors
    /// When `redis-server` is missing (the message says how to install it) or the sentinel
    /// does not know the primary within 10 s.
    pub fn start() -> Result<Self, FixtureError> {
        let primary = RedisServer::start()?;
        let sentinel = RedisServer::start_in(
            primary.dir(),
            Mode::Sentinel(primary.port()),
            Settings::default(),
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let expected = primary.port().to_string();
        loop {
            let reply = sentinel.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]);
            if let Ok(Reply::Array(Some(addr))) = &reply
                && addr.get(1).and_then(Reply::text).as_deref() == Some(expected.as_str())
            {
                return Ok(RedisSentinel { sentinel, primary });
            }
            if Instant::now() > deadline {
                return Err(FixtureError::new(format!(
                    "the sentinel does not know the primary: {reply:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis-sentinel://127.0.0.1:<sentinel port>/0?sentinelServiceName=mymaster`.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName=mymaster",
            self.sentinel.port()
        )
    }

    /// The primary.
    pub fn primary(&self) -> &RedisServer {
        &self.primary
    }
}
