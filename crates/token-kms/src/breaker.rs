//! A small circuit breaker: after `failure_threshold` consecutive failures the circuit opens and
//! calls fail at once for `cool_down`; then one probe call goes through (half-open). A probe
//! that succeeds closes the circuit, one that fails opens it for another cool-down.
//!
//! Time is a parameter (`now: Instant`) so the state machine is tested without sleeping.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::Error;

/// Circuit-breaker settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failed calls that open the circuit (at least 1).
    pub failure_threshold: u32,
    /// How long the circuit stays open before a probe call is let through.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    /// 5 consecutive failures open the circuit for 10 seconds.
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(10),
        }
    }
}

impl BreakerConfig {
    /// A configuration with these values (`failure_threshold` 0 is taken as 1).
    pub fn new(failure_threshold: u32, cool_down: Duration) -> Self {
        BreakerConfig {
            failure_threshold: failure_threshold.max(1),
            cool_down,
        }
    }
}

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once (cool-down running, or a probe call is in flight).
    Open,
    /// The cool-down is over: the next call is a probe.
    HalfOpen,
}

#[derive(Debug, Default)]
struct Inner {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// What a finished call tells the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// KMS answered (successfully, or with an error that is not about its availability).
    Answered,
    /// KMS was unreachable, timed out, throttled or failed on its side.
    Failed,
}

/// Permission to make one call; report its outcome with [`Permit::finish`]. A permit dropped
/// without a report (a cancelled call) releases a probe slot without changing the state.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    finished: bool,
}

impl CircuitBreaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is a few integers, valid after any panic: ignore poisoning.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks to make a call at `now`.
    pub(crate) fn acquire(&self, now: Instant) -> Result<Permit<'_>, Error> {
        let mut inner = self.lock();
        let Some(opened_at) = inner.opened_at else {
            return Ok(Permit {
                breaker: self,
                probe: false,
                finished: false,
            });
        };
        let reopens = opened_at + self.config.cool_down;
        if now < reopens || inner.probe_in_flight {
            return Err(Error::CircuitOpen {
                failures: inner.consecutive_failures,
                retry_in: reopens.saturating_duration_since(now),
            });
        }
        inner.probe_in_flight = true;
        Ok(Permit {
            breaker: self,
            probe: true,
            finished: false,
        })
    }

    /// The state at `now`.
    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        let inner = self.lock();
        match inner.opened_at {
            None => BreakerState::Closed,
            Some(at) if now < at + self.config.cool_down || inner.probe_in_flight => {
                BreakerState::Open
            }
            Some(_) => BreakerState::HalfOpen,
        }
    }

    fn record(&self, probe: bool, outcome: Outcome, now: Instant) {
        let mut inner = self.lock();
        if probe {
            inner.probe_in_flight = false;
        }
        match outcome {
            Outcome::Answered => {
                inner.consecutive_failures = 0;
                inner.opened_at = None;
            }
            Outcome::Failed => {
                inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                if probe || inner.consecutive_failures >= self.config.failure_threshold {
                    inner.opened_at = Some(now);
                }
            }
        }
    }
}

impl Permit<'_> {
    /// Whether this call is the half-open probe.
    #[cfg(test)]
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the call's outcome at `now`.
    pub(crate) fn finish(mut self, outcome: Outcome, now: Instant) {
        self.finished = true;
        self.breaker.record(self.probe, outcome, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.finished && self.probe {
            self.breaker.lock().probe_in_flight = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig::new(3, Duration::from_secs(10)))
    }

    #[test]
    fn opens_after_threshold_and_fails_fast() {
        let b = breaker();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(b.state(t0), BreakerState::Closed, "after {i} failures");
            b.acquire(t0).unwrap().finish(Outcome::Failed, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Open);
        let err = b.acquire(t0 + Duration::from_secs(4)).unwrap_err();
        match err {
            Error::CircuitOpen { failures, retry_in } => {
                assert_eq!(failures, 3);
                assert_eq!(retry_in, Duration::from_secs(6));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn success_resets_the_failure_count() {
        let b = breaker();
        let t0 = Instant::now();
        b.acquire(t0).unwrap().finish(Outcome::Failed, t0);
        b.acquire(t0).unwrap().finish(Outcome::Failed, t0);
        b.acquire(t0).unwrap().finish(Outcome::Answered, t0);
        b.acquire(t0).unwrap().finish(Outcome::Failed, t0);
        b.acquire(t0).unwrap().finish(Outcome::Failed, t0);
        assert_eq!(b.state(t0), BreakerState::Closed);
    }

    #[test]
    fn half_open_probe_closes_or_reopens() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.acquire(t0).unwrap().finish(Outcome::Failed, t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        // One probe at a time: a second caller still fails fast.
        let probe = b.acquire(t1).unwrap();
        assert!(probe.is_probe());
        assert!(matches!(b.acquire(t1), Err(Error::CircuitOpen { .. })));
        assert_eq!(b.state(t1), BreakerState::Open);
        // The probe fails: open for another full cool-down.
        probe.finish(Outcome::Failed, t1);
        assert!(b.acquire(t1 + Duration::from_secs(9)).is_err());
        let t2 = t1 + Duration::from_secs(10);
        let probe = b.acquire(t2).unwrap();
        probe.finish(Outcome::Answered, t2);
        assert_eq!(b.state(t2), BreakerState::Closed);
        assert!(!b.acquire(t2).unwrap().is_probe());
    }

    #[test]
    fn a_cancelled_probe_frees_the_slot() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.acquire(t0).unwrap().finish(Outcome::Failed, t0);
        }
        let t1 = t0 + Duration::from_secs(11);
        drop(b.acquire(t1).unwrap());
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        assert!(b.acquire(t1).unwrap().is_probe());
    }
}
