//! The wall clock the guard reads for each request.
//!
//! A tower service is called with a request and nothing else, so the guard cannot take the time
//! as a parameter the way token-jwt and token-dpop do: it asks a [`Clock`]. [`SystemClock`] is
//! the one place this crate reads the system time; tests pass a [`ManualClock`] and move it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The current time in seconds since the Unix epoch, for token and proof lifetimes.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

impl<T: Clock + ?Sized> Clock for Arc<T> {
    fn now(&self) -> i64 {
        (**self).now()
    }
}

/// The system's wall clock (0 before 1970, `i64::MAX` past the year 292 billion).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        #[allow(
            clippy::disallowed_methods,
            reason = "the guard is called per request with no time to pass: this is where it reads the clock"
        )]
        let t = std::time::SystemTime::now();
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `now` (Unix seconds).
    pub fn new(now: i64) -> Self {
        ManualClock(AtomicI64::new(now))
    }

    /// Sets the time.
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::Relaxed);
    }

    /// Moves the clock by `seconds` (negative moves it back).
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}
