//! [`RevocationWatcher`]: token-service's revocation list, kept current over its
//! `WatchRevocations` stream.
//!
//! The watcher runs as one task spawned on the tokio runtime that calls
//! [`RevocationWatcherBuilder::spawn`] (the only thing this crate asks of a runtime; the guard
//! itself runs on any executor). The task:
//!
//! - opens `WatchRevocations` with the caller's bearer token (the caller needs the right
//!   `WatchRevocations`); the first stream starts from an empty cursor, so the service sends
//!   every `sid` listed now, then each new revocation as it happens, from any instance;
//! - keeps each `sid` until its `listed_until`;
//! - when the stream fails or ends, reconnects after a backoff (250 ms doubling to 30 s, with
//!   jitter) with the cursor of the last event, so nothing revoked meanwhile is missed;
//! - while the stream has been down longer than the staleness limit (default 60 s), follows
//!   the [`StalePolicy`]: by default the guard keeps serving on the last list, and the watcher
//!   sets the gauge `token_guard_revocations_stale` to 1 and logs a warning once per outage;
//!   with [`StalePolicy::FailClosed`] the guard answers every request 503 until the stream is
//!   back.
//!
//! The task ends when the last clone of the watcher (the guard holds one) is dropped.
//!
//! Metrics (through the `metrics` facade): gauges `token_guard_revocations_connected`,
//! `token_guard_revocations_stale`, `token_guard_revocations_listed`; counters
//! `token_guard_revocation_events_total`, `token_guard_revocation_reconnects_total`.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use token_proto::token_service_client::TokenServiceClient;
use token_proto::{RevocationEvent, WatchRevocationsRequest};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use zeroize::Zeroizing;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::revocation::{RevocationCheck, RevokedSids};

/// Metric names.
const CONNECTED: &str = "token_guard_revocations_connected";
const STALE: &str = "token_guard_revocations_stale";
const LISTED: &str = "token_guard_revocations_listed";
const EVENTS: &str = "token_guard_revocation_events_total";
const RECONNECTS: &str = "token_guard_revocation_reconnects_total";

/// What the guard does while the revocation stream has been down longer than the staleness
/// limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StalePolicy {
    /// Keep serving: tokens are checked against the last list (revocations made during the
    /// outage are not seen until the stream is back); the gauge
    /// `token_guard_revocations_stale` is 1 and a warning is logged once per outage.
    #[default]
    ServeLastList,
    /// Refuse every request with 503 until the stream is back (also before the first
    /// connection).
    FailClosed,
}

/// A handle on the revocation-watching task: a [`RevocationCheck`] to give the guard
/// ([`GuardBuilder::revocations`](crate::GuardBuilder::revocations)). Cheap to clone; the task
/// stops when the last clone is dropped. See the [module docs](self).
#[derive(Clone)]
pub struct RevocationWatcher {
    shared: Arc<Shared>,
    _task: Arc<Task>,
}

/// Aborts the task when dropped.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    list: RevokedSids,
    policy: StalePolicy,
    staleness: Duration,
    clock: Arc<dyn Clock>,
    /// When the watcher started: the origin of `changed_at`.
    origin: Instant,
    connected: AtomicBool,
    /// Milliseconds since `origin` of the last connect or disconnect.
    changed_at: AtomicU64,
    /// Whether this outage was reported (log line, gauge).
    stale_reported: AtomicBool,
    events: AtomicU64,
    reconnects: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn set_connected(&self, connected: bool) {
        self.changed_at.store(self.elapsed_ms(), Ordering::Relaxed);
        self.connected.store(connected, Ordering::Release);
        metrics::gauge!(CONNECTED).set(if connected { 1.0 } else { 0.0 });
        if connected && self.stale_reported.swap(false, Ordering::Relaxed) {
            metrics::gauge!(STALE).set(0.0);
            tracing::info!("revocation stream back; the revocation list is current again");
        }
    }

    /// Whether the stream has been down longer than the staleness limit (reporting it once
    /// per outage).
    fn stale(&self) -> bool {
        if self.connected.load(Ordering::Acquire) {
            return false;
        }
        let down_ms = self
            .elapsed_ms()
            .saturating_sub(self.changed_at.load(Ordering::Relaxed));
        let stale = u128::from(down_ms) > self.staleness.as_millis();
        if stale && !self.stale_reported.swap(true, Ordering::Relaxed) {
            metrics::gauge!(STALE).set(1.0);
            match self.policy {
                StalePolicy::FailClosed => tracing::error!(
                    down_seconds = down_ms / 1000,
                    "revocation stream down longer than the staleness limit; refusing every request until it is back (fail closed)"
                ),
                StalePolicy::ServeLastList => tracing::warn!(
                    down_seconds = down_ms / 1000,
                    "revocation stream down longer than the staleness limit; serving on the last revocation list"
                ),
            }
        }
        stale
    }

    fn record(&self, event: &RevocationEvent) {
        if event.sid.is_empty() {
            return;
        }
        self.list
            .insert(event.sid.as_str(), event.listed_until, self.clock.now());
        self.events.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(EVENTS).increment(1);
        #[allow(
            clippy::cast_precision_loss,
            reason = "a gauge: a list beyond 2^53 entries need not be exact"
        )]
        metrics::gauge!(LISTED).set(self.list.len() as f64);
    }

    fn failed(&self, what: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(what);
    }
}

impl fmt::Debug for RevocationWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationWatcher")
            .field("policy", &self.shared.policy)
            .field("staleness", &self.shared.staleness)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// A snapshot of a watcher, for health checks and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatcherStatus {
    /// Whether the stream is up.
    pub connected: bool,
    /// Whether it has been down longer than the staleness limit.
    pub stale: bool,
    /// `sid`s held (entries past their time not yet swept out included).
    pub listed: usize,
    /// Events received.
    pub events: u64,
    /// Reconnections after a failed or ended stream.
    pub reconnects: u64,
    /// The last failure (a gRPC status code and message), if any.
    pub last_error: Option<String>,
}

impl RevocationWatcher {
    /// A builder for a watcher of the token service at `endpoint` (`https://host:port`, or
    /// `http://` for a local or sidecar connection), calling with `caller_token` as a bearer
    /// token.
    pub fn builder(
        endpoint: impl Into<String>,
        caller_token: impl Into<String>,
    ) -> RevocationWatcherBuilder {
        RevocationWatcherBuilder {
            endpoint: endpoint.into(),
            caller_token: Zeroizing::new(caller_token.into()),
            staleness: Duration::from_secs(60),
            policy: StalePolicy::default(),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            clock: Arc::new(SystemClock),
        }
    }

    /// The watcher's state.
    pub fn status(&self) -> WatcherStatus {
        let s = &self.shared;
        WatcherStatus {
            connected: s.connected.load(Ordering::Acquire),
            stale: s.stale(),
            listed: s.list.len(),
            events: s.events.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            last_error: s
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// Whether `sid` is listed at `now` (Unix seconds).
    pub fn is_listed(&self, sid: &str, now: i64) -> bool {
        self.shared.list.is_listed(sid, now)
    }
}

impl RevocationCheck for RevocationWatcher {
    fn is_revoked(&self, sid: &str, now: i64) -> bool {
        self.shared.list.is_listed(sid, now)
    }

    fn available(&self) -> bool {
        let stale = self.shared.stale();
        !(stale && self.shared.policy == StalePolicy::FailClosed)
    }
}

/// Builds a [`RevocationWatcher`].
#[must_use]
pub struct RevocationWatcherBuilder {
    endpoint: String,
    caller_token: Zeroizing<String>,
    staleness: Duration,
    policy: StalePolicy,
    min_backoff: Duration,
    max_backoff: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RevocationWatcherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationWatcherBuilder")
            .field("endpoint", &self.endpoint)
            .field("caller_token", &"<redacted>")
            .field("staleness", &self.staleness)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RevocationWatcherBuilder {
    /// How long the stream may be down before the [`StalePolicy`] applies (default 60 s).
    pub fn staleness(mut self, staleness: Duration) -> Self {
        self.staleness = staleness;
        self
    }

    /// What the guard does while the list is stale (default
    /// [`StalePolicy::ServeLastList`]).
    pub fn stale_policy(mut self, policy: StalePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// [`StalePolicy::FailClosed`] when `true`.
    pub fn fail_closed(self, on: bool) -> Self {
        self.stale_policy(if on {
            StalePolicy::FailClosed
        } else {
            StalePolicy::ServeLastList
        })
    }

    /// The reconnection delays: `min` after a stream that was up, doubling to `max` while
    /// attempts fail (each with up to 50 % less at random, so a fleet does not reconnect in
    /// step). Defaults: 250 ms and 30 s.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// The clock that tells which entries have lapsed (default: the system's).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Starts the watching task on the current tokio runtime (`tokio::spawn`) and returns its
    /// handle. The connection is made by the task, so this does not wait for the service.
    ///
    /// # Errors
    /// [`Error::NoRuntime`] outside a tokio runtime, [`Error::InvalidEndpoint`],
    /// [`Error::InvalidCallerToken`].
    pub fn spawn(self) -> Result<RevocationWatcher> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let mut authorization =
            AsciiMetadataValue::try_from(format!("Bearer {}", &*self.caller_token))
                .map_err(|_| Error::InvalidCallerToken)?;
        authorization.set_sensitive(true);
        let channel = channel(&self.endpoint)?;
        let shared = Arc::new(Shared {
            list: RevokedSids::new(),
            policy: self.policy,
            staleness: self.staleness,
            clock: self.clock,
            origin: Instant::now(),
            connected: AtomicBool::new(false),
            changed_at: AtomicU64::new(0),
            stale_reported: AtomicBool::new(false),
            events: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let run = Run {
            shared: Arc::clone(&shared),
            client: TokenServiceClient::new(channel),
            authorization,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
        };
        let task = runtime.spawn(run.run());
        Ok(RevocationWatcher {
            shared,
            _task: Arc::new(Task(task)),
        })
    }
}

/// A lazily connecting channel (TLS with the system's roots for `https`), with HTTP/2
/// keep-alive pings so a connection that died silently is noticed within about 30 s.
fn channel(url: &str) -> Result<Channel> {
    let invalid = |e: &dyn fmt::Display| Error::InvalidEndpoint(e.to_string());
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| invalid(&e))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    match endpoint.uri().scheme_str() {
        Some("https") => {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|e| invalid(&e))?;
        }
        Some("http") => {}
        _ => {
            return Err(Error::InvalidEndpoint(
                "the scheme must be https or http".into(),
            ));
        }
    }
    Ok(endpoint.connect_lazy())
}

/// The watching task's state.
struct Run {
    shared: Arc<Shared>,
    client: TokenServiceClient<Channel>,
    authorization: AsciiMetadataValue,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl Run {
    async fn run(mut self) {
        let mut cursor = String::new();
        let mut delay = self.min_backoff;
        loop {
            let mut request = tonic::Request::new(WatchRevocationsRequest {
                cursor: cursor.clone(),
            });
            request
                .metadata_mut()
                .insert("authorization", self.authorization.clone());
            match self.client.watch_revocations(request).await {
                Ok(response) => {
                    self.shared.set_connected(true);
                    tracing::info!(resumed = !cursor.is_empty(), "revocation stream open");
                    delay = self.min_backoff;
                    let mut stream = response.into_inner();
                    let ended = loop {
                        match stream.message().await {
                            Ok(Some(event)) => {
                                self.shared.record(&event);
                                if !event.cursor.is_empty() {
                                    cursor = event.cursor;
                                }
                            }
                            Ok(None) => break "the service ended the stream".to_owned(),
                            Err(status) => break describe(&status),
                        }
                    };
                    self.shared.set_connected(false);
                    tracing::warn!(reason = %ended, "revocation stream closed; reconnecting");
                    self.shared.failed(ended);
                }
                Err(status) => {
                    let what = describe(&status);
                    match status.code() {
                        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                            tracing::error!(
                                error = %what,
                                "WatchRevocations refused: the caller token must be valid and have the right WatchRevocations"
                            );
                        }
                        tonic::Code::InvalidArgument if !cursor.is_empty() => {
                            // A cursor the service does not know (another deployment, a
                            // version change): start again from the whole list.
                            tracing::warn!(error = %what, "revocation cursor refused; starting from the whole list");
                            cursor.clear();
                        }
                        _ => tracing::warn!(error = %what, "revocation stream unavailable"),
                    }
                    self.shared.failed(what);
                }
            }
            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(RECONNECTS).increment(1);
            let _ = self.shared.stale();
            tokio::time::sleep(jitter(delay)).await;
            delay = delay.saturating_mul(2).min(self.max_backoff);
        }
    }
}

/// A status as `CODE: message` (the message is the service's; no credentials in it).
fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// `delay` less up to half of it, at random.
fn jitter(delay: Duration) -> Duration {
    let mut byte = [0u8; 1];
    if getrandom::getrandom(&mut byte).is_err() {
        return delay;
    }
    let half = delay / 2;
    half + half.mul_f64(f64::from(byte[0]) / 255.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_all_of_the_delay() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(matches!(
            channel("ftp://x:1"),
            Err(Error::InvalidEndpoint(_))
        ));
        assert!(matches!(
            channel("not a url"),
            Err(Error::InvalidEndpoint(_))
        ));
    }
}
