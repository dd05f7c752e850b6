//! The fetcher/cache for verifiers: a [`token_jwt::KeyResolver`] over a remote JWK Set.
//!
//! - Cached for the response's `Cache-Control: max-age` (minus `Age`), clamped to
//!   `[min_ttl, max_ttl]`; `default_ttl` when the response says nothing.
//! - An unknown `kid` triggers a refetch, at most one attempt per `refetch_interval` (any
//!   attempt, successful or not, counts), and concurrent misses share one in-flight fetch: a
//!   flood of tokens with random `kid`s costs at most one request per interval.
//! - When the source fails, the last good keys are served for `max_stale` past their
//!   expiry; after that, resolution fails until a fetch succeeds.
//! - Responses larger than `max_bytes` (default [`token_jwt::MAX_JWKS_BYTES`]) are refused
//!   while being read.
//!
//! Time comes from a [`Clock`], so tests move it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use token_jwt::{CryptoProvider, JwkSet, JwsVerifier, KeyResolver, KeySet, ResolveFuture};

use crate::error::{Error, Result};

// ---- time --------------------------------------------------------------------------------------

/// A monotonic clock: time since an arbitrary origin.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Duration;
}

impl<T: Clock + ?Sized> Clock for Arc<T> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

/// The process's monotonic clock (`Instant`).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Duration>,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        ManualClock::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.saturating_add(by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// ---- sources -----------------------------------------------------------------------------------

/// A fetched JWK Set document.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchedJwks {
    /// The body (at most the source's size limit).
    pub body: Vec<u8>,
    /// How long it may be cached (`Cache-Control: max-age` minus `Age`), when the source said.
    pub max_age: Option<Duration>,
}

impl fmt::Debug for FetchedJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedJwks")
            .field("body_len", &self.body.len())
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl FetchedJwks {
    /// A fetched document.
    pub fn new(body: Vec<u8>, max_age: Option<Duration>) -> Self {
        FetchedJwks { body, max_age }
    }
}

/// The future returned by [`JwksSource::fetch`].
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<FetchedJwks>> + Send + 'a>>;

/// Where JWK Sets come from. [`HttpSource`] fetches a URL; implement this to use another HTTP
/// client. The body is untrusted; the fetcher parses it strictly.
pub trait JwksSource: Send + Sync + fmt::Debug {
    /// Fetches the current document.
    fn fetch(&self) -> FetchFuture<'_>;
}

impl<T: JwksSource + ?Sized> JwksSource for Arc<T> {
    fn fetch(&self) -> FetchFuture<'_> {
        (**self).fetch()
    }
}

/// Reads the freshness lifetime from `Cache-Control` and `Age` header values: `max-age`
/// minus `Age`; `no-store` and `no-cache` give zero (the fetcher's `min_ttl` then applies).
pub fn freshness(cache_control: Option<&str>, age: Option<&str>) -> Option<Duration> {
    let cc = cache_control?;
    let mut max_age = None;
    for directive in cc.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    let age = age.and_then(|a| a.trim().parse::<u64>().ok()).unwrap_or(0);
    max_age.map(|m| Duration::from_secs(m.saturating_sub(age)))
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Fetches a JWKS URL (`https`, or `http` for tests and sidecars) with hyper and rustls
/// (aws-lc-rs, the system's root certificates). Redirects are not followed; only `200` is
/// accepted.
#[derive(Clone)]
pub struct HttpSource {
    client: HttpsClient,
    uri: http::Uri,
    timeout: Duration,
    max_bytes: usize,
}

impl fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSource")
            .field("uri", &self.uri)
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl HttpSource {
    /// A source for `url`, with a 5 s timeout and a [`token_jwt::MAX_JWKS_BYTES`] size limit.
    /// Needs a tokio runtime when fetching.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`], or [`Error::Tls`] when no trusted root certificates are found.
    pub fn new(url: &str) -> Result<Self> {
        let uri: http::Uri = url.parse().map_err(|_| Error::InvalidUrl("not a URL"))?;
        match uri.scheme_str() {
            Some("https" | "http") => {}
            _ => return Err(Error::InvalidUrl("the scheme must be https or http")),
        }
        if uri.host().is_none() {
            return Err(Error::InvalidUrl("no host"));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| Error::Tls(Arc::new(e)))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpSource {
            client: Client::builder(TokioExecutor::new()).build(connector),
            uri,
            timeout: Duration::from_secs(5),
            max_bytes: token_jwt::MAX_JWKS_BYTES,
        })
    }

    /// The timeout of one fetch (connect, headers and body).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest body accepted (at most [`token_jwt::MAX_JWKS_BYTES`]).
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.min(token_jwt::MAX_JWKS_BYTES);
        self
    }

    async fn get(&self) -> Result<FetchedJwks> {
        let request = http::Request::get(self.uri.clone())
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .body(Empty::<Bytes>::new())
            .map_err(|_| Error::InvalidUrl("cannot build a request"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| Error::Transport(Arc::new(e)))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(Error::Status(status));
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let max_age = freshness(
            header(http::header::CACHE_CONTROL).as_deref(),
            header(http::header::AGE).as_deref(),
        );
        let too_large = Error::TooLarge {
            limit: self.max_bytes,
        };
        if let Some(len) = header(http::header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok())
            && usize::try_from(len).map_or(true, |l| l > self.max_bytes)
        {
            return Err(too_large);
        }
        let body = Limited::new(response.into_body(), self.max_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    Error::TooLarge {
                        limit: self.max_bytes,
                    }
                } else {
                    Error::Body(Arc::from(e))
                }
            })?
            .to_bytes();
        Ok(FetchedJwks::new(body.to_vec(), max_age))
    }
}

impl JwksSource for HttpSource {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.get())
                .await
                .map_err(|_| Error::Timeout)?
        })
    }
}

// ---- the fetcher -------------------------------------------------------------------------------

/// Cache settings of a [`JwksFetcher`]. Build with [`FetcherConfig::builder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetcherConfig {
    /// Shortest caching time, whatever the source says. Default 60 s.
    pub min_ttl: Duration,
    /// Longest caching time, whatever the source says. Default 24 h.
    pub max_ttl: Duration,
    /// Caching time when the source sends no `max-age`. Default 5 min.
    pub default_ttl: Duration,
    /// At most one fetch attempt per this interval (unknown-`kid` refetches and retries after
    /// failures alike). Default 30 s.
    pub refetch_interval: Duration,
    /// How long past expiry the last good keys are served while the source fails. Default 1 h.
    pub max_stale: Duration,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        FetcherConfig {
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            default_ttl: Duration::from_secs(300),
            refetch_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(3600),
        }
    }
}

impl FetcherConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> FetcherConfigBuilder {
        FetcherConfigBuilder(FetcherConfig::default())
    }

    fn ttl(&self, max_age: Option<Duration>) -> Duration {
        max_age
            .unwrap_or(self.default_ttl)
            .clamp(self.min_ttl, self.max_ttl.max(self.min_ttl))
    }
}

/// Builds a [`FetcherConfig`].
#[derive(Clone, Copy, Debug)]
pub struct FetcherConfigBuilder(FetcherConfig);

impl FetcherConfigBuilder {
    /// Bounds on the caching time.
    #[must_use]
    pub fn ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.0.min_ttl = min;
        self.0.max_ttl = max.max(min);
        self
    }

    /// Caching time without `max-age`.
    #[must_use]
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.0.default_ttl = ttl;
        self
    }

    /// At most one fetch attempt per `interval`.
    #[must_use]
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.0.refetch_interval = interval;
        self
    }

    /// Serve keys this long past expiry while the source fails.
    #[must_use]
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.0.max_stale = max_stale;
        self
    }

    /// The configuration.
    pub fn build(self) -> FetcherConfig {
        self.0
    }
}

/// What the cache holds; replaced as a whole.
#[derive(Clone)]
struct State {
    keys: Option<Arc<KeySet>>,
    fresh_until: Duration,
    stale_until: Duration,
    /// When the last fetch attempt started.
    last_attempt: Option<Duration>,
    /// Counts attempts; a waiter that sees it change knows a fetch happened meanwhile.
    generation: u64,
    /// The last attempt's error, which callers that waited for that attempt get as the source
    /// of [`Error::SharedFetch`].
    last_error: Option<Arc<Error>>,
}

/// A snapshot of a fetcher's state, for health checks and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetcherStatus {
    /// Fetch attempts so far.
    pub attempts: u64,
    /// Failed attempts so far.
    pub failures: u64,
    /// Keys held.
    pub keys: usize,
    /// Whether the keys are within their caching time.
    pub fresh: bool,
    /// Whether keys are served at all (fresh, or stale within `max_stale`).
    pub usable: bool,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
}

/// A caching, rate-limited JWKS fetcher that implements [`KeyResolver`]: see the
/// [module docs](self).
///
/// [`KeyResolver::resolve`] answers from the cache (fresh or within `max_stale`) without
/// waiting; [`KeyResolver::resolve_async`] (used by `Policy::verify_async`) also refetches
/// when the cache expired or the `kid` is unknown, within the rate limit.
pub struct JwksFetcher {
    source: Arc<dyn JwksSource>,
    provider: Arc<dyn CryptoProvider>,
    clock: Arc<dyn Clock>,
    config: FetcherConfig,
    state: RwLock<Arc<State>>,
    fetch_lock: tokio::sync::Mutex<()>,
    failures: AtomicU64,
}

impl fmt::Debug for JwksFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksFetcher")
            .field("source", &self.source)
            .field("config", &self.config)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl JwksFetcher {
    /// A fetcher with an empty cache (the first resolution fetches; or call
    /// [`JwksFetcher::refresh`] at start-up).
    pub fn new(
        source: Arc<dyn JwksSource>,
        provider: Arc<dyn CryptoProvider>,
        clock: Arc<dyn Clock>,
        config: FetcherConfig,
    ) -> Self {
        JwksFetcher {
            source,
            provider,
            clock,
            config,
            state: RwLock::new(Arc::new(State {
                keys: None,
                fresh_until: Duration::ZERO,
                stale_until: Duration::ZERO,
                last_attempt: None,
                generation: 0,
                last_error: None,
            })),
            fetch_lock: tokio::sync::Mutex::new(()),
            failures: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> Arc<State> {
        Arc::clone(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn may_attempt(&self, state: &State, now: Duration) -> bool {
        state
            .last_attempt
            .is_none_or(|t| now >= t.saturating_add(self.config.refetch_interval))
    }

    /// Fetches now, unless the last attempt was less than `refetch_interval` ago. Concurrent
    /// callers share one fetch.
    ///
    /// # Errors
    /// [`Error::RateLimited`], or the fetch's error (the cached keys stay).
    pub async fn refresh(&self) -> Result<()> {
        let seen = self.snapshot().generation;
        self.fetch_shared(seen).await
    }

    /// Fetches unless another caller fetched since generation `seen` (then that result counts)
    /// or the rate limit says no.
    async fn fetch_shared(&self, seen: u64) -> Result<()> {
        let _one_at_a_time = self.fetch_lock.lock().await;
        let state = self.snapshot();
        if state.generation != seen {
            return match &state.last_error {
                None => Ok(()),
                Some(e) => Err(Error::SharedFetch(Arc::clone(e))),
            };
        }
        let now = self.clock.now();
        if !self.may_attempt(&state, now) {
            return Err(Error::RateLimited);
        }
        let result = match self.source.fetch().await {
            Ok(fetched) => self.parse(&fetched).map(|keys| (keys, fetched.max_age)),
            Err(e) => Err(e),
        };
        let mut next = State {
            last_attempt: Some(now),
            generation: state.generation.wrapping_add(1),
            ..State::clone(&state)
        };
        let out = match result {
            Ok((keys, max_age)) => {
                // Freshness counts from when the response arrived.
                let arrived = self.clock.now();
                next.fresh_until = arrived.saturating_add(self.config.ttl(max_age));
                next.stale_until = next.fresh_until.saturating_add(self.config.max_stale);
                next.keys = Some(Arc::new(keys));
                next.last_error = None;
                metrics::counter!("token_jwks_fetch_total", "outcome" => "ok").increment(1);
                Ok(())
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                next.last_error = Some(Arc::new(e.clone()));
                metrics::counter!("token_jwks_fetch_total", "outcome" => "error").increment(1);
                Err(e)
            }
        };
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        out
    }

    /// Parses a JWK Set strictly and builds verifiers. Keys that cannot be used (an RSA key
    /// without `alg`, a point off its curve) are skipped, not fatal: one odd key must not take
    /// down verification with the others.
    fn parse(&self, fetched: &FetchedJwks) -> Result<KeySet> {
        if fetched.body.len() > token_jwt::MAX_JWKS_BYTES {
            return Err(Error::TooLarge {
                limit: token_jwt::MAX_JWKS_BYTES,
            });
        }
        let set = JwkSet::from_json(&fetched.body).map_err(|e| Error::InvalidJwks(Arc::new(e)))?;
        let mut keys = KeySet::new();
        for jwk in &set.keys {
            let Some(alg) = jwk.algorithm() else { continue };
            if let Ok(verifier) = self.provider.verifying_key(jwk, alg) {
                keys.insert(
                    jwk.kid.clone().unwrap_or_else(|| jwk.thumbprint()),
                    verifier,
                );
            }
        }
        Ok(keys)
    }

    fn lookup(
        &self,
        state: &State,
        kid: &str,
        now: Duration,
    ) -> token_jwt::Result<Arc<dyn JwsVerifier>> {
        match &state.keys {
            Some(keys) if now < state.stale_until => keys.resolve(kid),
            _ => Err(token_jwt::Error::UnknownKeyId),
        }
    }

    /// The cache's state.
    pub fn status(&self) -> FetcherStatus {
        let state = self.snapshot();
        let now = self.clock.now();
        FetcherStatus {
            attempts: state.generation,
            failures: self.failures.load(Ordering::Relaxed),
            keys: state.keys.as_ref().map_or(0, |k| k.len()),
            fresh: state.keys.is_some() && now < state.fresh_until,
            usable: state.keys.is_some() && now < state.stale_until,
            last_error: state.last_error.as_ref().map(ToString::to_string),
        }
    }

    async fn resolve_fetching(&self, kid: &str) -> token_jwt::Result<Arc<dyn JwsVerifier>> {
        let state = self.snapshot();
        let now = self.clock.now();
        let fresh = state.keys.is_some() && now < state.fresh_until;
        if fresh && let Ok(key) = self.lookup(&state, kid, now) {
            return Ok(key);
        }
        // Expired, empty, or an unknown kid: refetch if the rate limit allows. The outcome
        // does not matter here: the lookup below uses whatever the cache now holds.
        if self.may_attempt(&state, now) {
            let _ = self.fetch_shared(state.generation).await;
        }
        self.lookup(&self.snapshot(), kid, self.clock.now())
    }
}

impl KeyResolver for JwksFetcher {
    fn resolve(&self, kid: &str) -> token_jwt::Result<Arc<dyn JwsVerifier>> {
        self.lookup(&self.snapshot(), kid, self.clock.now())
    }

    fn resolve_async<'a>(&'a self, kid: &'a str) -> ResolveFuture<'a> {
        Box::pin(self.resolve_fetching(kid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_parsing() {
        let s = |v: u64| Some(Duration::from_secs(v));
        assert_eq!(freshness(Some("public, max-age=600"), None), s(600));
        assert_eq!(freshness(Some("Max-Age=60, public"), Some("10")), s(50));
        assert_eq!(freshness(Some("max-age=60"), Some("100")), s(0));
        assert_eq!(freshness(Some("no-store"), None), s(0));
        assert_eq!(freshness(Some("public, no-cache"), None), s(0));
        assert_eq!(freshness(Some("public"), None), None);
        assert_eq!(freshness(Some("max-age=abc"), None), None);
        assert_eq!(freshness(None, Some("5")), None);
    }

    #[test]
    fn ttl_is_clamped() {
        let c = FetcherConfig::builder()
            .ttl_bounds(Duration::from_secs(60), Duration::from_secs(3600))
            .default_ttl(Duration::from_secs(300))
            .build();
        assert_eq!(c.ttl(None), Duration::from_secs(300));
        assert_eq!(c.ttl(Some(Duration::ZERO)), Duration::from_secs(60));
        assert_eq!(
            c.ttl(Some(Duration::from_secs(999_999))),
            Duration::from_secs(3600)
        );
        assert_eq!(
            c.ttl(Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
    }

    /// A source whose endpoint always answers HTTP 503.
    #[derive(Debug)]
    struct Unavailable;

    impl JwksSource for Unavailable {
        fn fetch(&self) -> FetchFuture<'_> {
            Box::pin(async { Err(Error::Status(503)) })
        }
    }

    #[tokio::test]
    async fn a_caller_that_waited_for_a_failed_fetch_gets_that_error_as_its_source() {
        let fetcher = JwksFetcher::new(
            Arc::new(Unavailable),
            Arc::new(token_jwt::RustCryptoProvider::new()),
            Arc::new(ManualClock::new()),
            FetcherConfig::default(),
        );
        // The caller that fetches gets the source's error itself.
        assert!(matches!(fetcher.refresh().await, Err(Error::Status(503))));
        // A caller that saw generation 0 and queued behind that fetch does not fetch again.
        let waited = fetcher.fetch_shared(0).await.unwrap_err();
        let Error::SharedFetch(shared) = &waited else {
            panic!("{waited:?}")
        };
        assert!(matches!(**shared, Error::Status(503)));
        let source = std::error::Error::source(&waited).unwrap();
        assert_eq!(source.to_string(), "the JWKS endpoint answered HTTP 503");
        assert_eq!(
            fetcher.status().last_error.as_deref(),
            Some("the JWKS endpoint answered HTTP 503")
        );
    }

    #[test]
    fn urls_are_checked() {
        assert!(matches!(
            HttpSource::new("ftp://x/jwks"),
            Err(Error::InvalidUrl(_))
        ));
        assert!(matches!(
            HttpSource::new("/jwks"),
            Err(Error::InvalidUrl(_))
        ));
        assert!(matches!(
            HttpSource::new("not a url"),
            Err(Error::InvalidUrl(_))
        ));
    }
}
