//! [`RedisConfig`]: where Redis is and how to talk to it.

use std::fmt;
use std::time::Duration;

use crate::error::Error;

/// Default number of pooled connections (each pipelines many concurrent commands).
pub const DEFAULT_POOL_SIZE: usize = 4;
/// Default command timeout: past it an operation fails closed.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Default timeout of the first connection (TCP, TLS, `HELLO`/`AUTH`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default prefix of every key and of the pub/sub channel.
pub const DEFAULT_KEY_PREFIX: &str = "ts:";
/// Default margin added to every key TTL computed from a request's `now` (absorbs clock skew
/// between instances; the decisions themselves use the stored times, not the TTL).
pub const DEFAULT_TTL_MARGIN: Duration = Duration::from_secs(60);
/// Largest accepted key prefix, in bytes.
pub const MAX_KEY_PREFIX_BYTES: usize = 128;
/// Largest accepted pool size.
pub const MAX_POOL_SIZE: usize = 64;

/// How the clients reconnect after a connection is lost. While disconnected, every operation
/// fails with a store error after the command timeout; nothing is answered from memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconnectPolicy {
    kind: ReconnectKind,
    max_attempts: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ReconnectKind {
    Never,
    Constant(Duration),
    Exponential { min: Duration, max: Duration },
}

impl ReconnectPolicy {
    /// Never reconnect: a lost connection stays lost (every later operation fails, and the
    /// revocation subscriber receives nothing more). For tests and one-shot tools.
    pub fn never() -> Self {
        ReconnectPolicy {
            kind: ReconnectKind::Never,
            max_attempts: 0,
        }
    }

    /// Retry every `delay` (plus up to 100 ms of jitter), forever unless
    /// [`with_max_attempts`](Self::with_max_attempts) says otherwise.
    pub fn constant(delay: Duration) -> Self {
        ReconnectPolicy {
            kind: ReconnectKind::Constant(delay),
            max_attempts: 0,
        }
    }

    /// Retry after `min`, doubling up to `max` (plus jitter), forever unless
    /// [`with_max_attempts`](Self::with_max_attempts) says otherwise.
    pub fn exponential(min: Duration, max: Duration) -> Self {
        ReconnectPolicy {
            kind: ReconnectKind::Exponential { min, max },
            max_attempts: 0,
        }
    }

    /// Gives up after `attempts` consecutive failed attempts (`0`: never gives up).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    pub(crate) fn to_fred(&self) -> Option<fred::types::config::ReconnectPolicy> {
        use fred::types::config::ReconnectPolicy as P;
        match self.kind {
            ReconnectKind::Never => None,
            ReconnectKind::Constant(delay) => Some(P::new_constant(self.max_attempts, ms(delay))),
            ReconnectKind::Exponential { min, max } => Some(P::new_exponential(
                self.max_attempts,
                ms(min),
                ms(max.max(min)),
                2,
            )),
        }
    }
}

impl Default for ReconnectPolicy {
    /// Exponential from 50 ms to 2 s, forever.
    fn default() -> Self {
        ReconnectPolicy::exponential(Duration::from_millis(50), Duration::from_secs(2))
    }
}

/// Milliseconds as the client wants them (saturating at `u32::MAX`, about 49 days).
fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// The kind of deployment a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deployment {
    /// One server (`redis://`, `rediss://`).
    Standalone,
    /// A Redis Cluster (`redis-cluster://`, `rediss-cluster://`).
    Cluster,
    /// A primary found through Sentinel (`redis-sentinel://`, `rediss-sentinel://`).
    Sentinel,
}

/// Where Redis is and how to talk to it. Build it with [`RedisConfig::builder`].
///
/// The URL forms are the ones the `fred` client documents:
///
/// ```text
/// redis://[[user]:password@]host[:port][/db]
/// rediss://[[user]:password@]host[:port][/db]                       (TLS, feature `tls`)
/// redis-cluster://[[user]:password@]host:port[?node=host:port&node=host:port]
/// rediss-cluster://...                                                (TLS Cluster)
/// redis-sentinel://[[user]:password@]host[:port][/db]?sentinelServiceName=name[&node=host:port]
/// ```
///
/// `Debug` shows the URL without its password and without its query (which may carry
/// sentinel credentials); no error of this crate repeats the URL.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    url: String,
    deployment: Deployment,
    pool_size: usize,
    command_timeout: Duration,
    connect_timeout: Duration,
    reconnect: ReconnectPolicy,
    key_prefix: String,
    resp3: bool,
    ttl_margin: Duration,
    event_capacity: usize,
}

impl RedisConfig {
    /// A builder for a configuration connecting to `url`, with every other setting at its
    /// default.
    pub fn builder(url: impl Into<String>) -> RedisConfigBuilder {
        RedisConfigBuilder {
            config: RedisConfig {
                url: url.into(),
                deployment: Deployment::Standalone,
                pool_size: DEFAULT_POOL_SIZE,
                command_timeout: DEFAULT_COMMAND_TIMEOUT,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                reconnect: ReconnectPolicy::default(),
                key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
                resp3: true,
                ttl_margin: DEFAULT_TTL_MARGIN,
                event_capacity: 1024,
            },
        }
    }

    /// The deployment the URL names.
    pub fn deployment(&self) -> Deployment {
        self.deployment
    }

    /// The URL with its password and query replaced by `***` (for logs).
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Number of pooled command connections.
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// The command timeout.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// The timeout of the first connection.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The reconnect policy.
    pub fn reconnect(&self) -> &ReconnectPolicy {
        &self.reconnect
    }

    /// The prefix of every key and of the pub/sub channel.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Whether RESP3 is negotiated (`HELLO 3`, Redis 6 and later).
    pub fn resp3(&self) -> bool {
        self.resp3
    }

    /// The margin added to key TTLs.
    pub fn ttl_margin(&self) -> Duration {
        self.ttl_margin
    }

    /// How far a local revocation subscriber may fall behind.
    pub fn event_capacity(&self) -> usize {
        self.event_capacity
    }

    /// The client configuration (carries the password: never logged).
    pub(crate) fn fred_config(&self) -> Result<fred::types::config::Config, Error> {
        // fred would build a TLS URL's connector on rustls's process-wide default provider,
        // which does not exist once a binary enables two providers (aws-lc-rs here, ring
        // through reqwest, for one): it would panic. The TLS part is made here instead, with
        // aws-lc-rs passed explicitly, and fred reads the rest of the URL without TLS.
        let (url, tls) = without_tls(&self.url);
        let mut config = fred::types::config::Config::from_url(&url)
            .map_err(|_| Error::InvalidConfig("the URL is not a Redis URL"))?;
        if tls {
            #[cfg(feature = "tls")]
            {
                config.tls = Some(tls_connector()?.into());
            }
            #[cfg(not(feature = "tls"))]
            return Err(Error::InvalidConfig(
                "a TLS URL needs the `tls` feature of token-store-redis",
            ));
        }
        config.version = if self.resp3 {
            fred::types::RespVersion::RESP3
        } else {
            fred::types::RespVersion::RESP2
        };
        config.fail_fast = true;
        Ok(config)
    }

    pub(crate) fn fred_connection(&self) -> fred::types::config::ConnectionConfig {
        fred::types::config::ConnectionConfig {
            connection_timeout: self.connect_timeout,
            internal_command_timeout: self.connect_timeout,
            // A command in flight when its connection drops is NOT sent again: a rotation
            // script that already ran would run twice and see its own token as reused. The
            // caller gets a store error instead (and the token presented stays either current
            // or rotated, with no successor handed out).
            max_command_attempts: 1,
            // Bounded queue while reconnecting: past it commands fail at once.
            max_command_buffer_len: 16_384,
            // Every command is a request waiting for its answer: Nagle's algorithm would hold a
            // command back while the previous one on the connection is unacknowledged.
            tcp: fred::types::config::TcpConfig {
                nodelay: Some(true),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    pub(crate) fn fred_performance(&self) -> fred::types::config::PerformanceConfig {
        fred::types::config::PerformanceConfig {
            default_command_timeout: self.command_timeout,
            broadcast_channel_capacity: self.event_capacity.max(32),
            ..Default::default()
        }
    }

    pub(crate) fn ttl_margin_ms(&self) -> u64 {
        u64::try_from(self.ttl_margin.as_millis()).unwrap_or(u64::MAX)
    }
}

/// The URL with its TLS scheme (`rediss…`, `valkeys…`, any case) replaced by the plain one, and
/// whether it had one.
fn without_tls(url: &str) -> (String, bool) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), false);
    };
    let scheme = scheme.to_ascii_lowercase();
    for (tls, plain) in [("rediss", "redis"), ("valkeys", "valkey")] {
        if let Some(suffix) = scheme.strip_prefix(tls) {
            return (format!("{plain}{suffix}://{rest}"), true);
        }
    }
    (format!("{scheme}://{rest}"), false)
}

/// rustls on aws-lc-rs, passed explicitly, trusting the system's root certificates.
#[cfg(feature = "tls")]
fn tls_connector() -> Result<fred::types::config::TlsConnector, Error> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable or unparsable system certificates are skipped, as long as some remain.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ignored = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(Error::InvalidConfig(
            "a TLS URL needs the system's root certificates, and none could be read (install ca-certificates)",
        ));
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| Error::InvalidConfig("TLS: aws-lc-rs offers no protocol version"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config.into())
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("deployment", &self.deployment)
            .field("pool_size", &self.pool_size)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect", &self.reconnect)
            .field("key_prefix", &self.key_prefix)
            .field("resp3", &self.resp3)
            .field("ttl_margin", &self.ttl_margin)
            .field("event_capacity", &self.event_capacity)
            .finish()
    }
}

/// Builds a [`RedisConfig`]; [`build`](Self::build) checks it.
#[derive(Clone)]
pub struct RedisConfigBuilder {
    config: RedisConfig,
}

impl fmt::Debug for RedisConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfigBuilder")
            .field("config", &self.config)
            .finish()
    }
}

impl RedisConfigBuilder {
    /// Number of pooled command connections (1 to [`MAX_POOL_SIZE`]; default
    /// [`DEFAULT_POOL_SIZE`]). The revocation subscriber has a connection of its own.
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.config.pool_size = size;
        self
    }

    /// How long a command may take before the operation fails closed (default 1 s).
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.config.command_timeout = timeout;
        self
    }

    /// How long the first connection may take (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How lost connections are re-established (default: exponential, 50 ms to 2 s, forever).
    #[must_use]
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.config.reconnect = policy;
        self
    }

    /// The prefix of every key and of the pub/sub channel (default `ts:`), so several
    /// deployments can share a Redis. At most [`MAX_KEY_PREFIX_BYTES`], and without `{` or
    /// `}` (those would change the Cluster hash tags).
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// Negotiate RESP3 (default `true`; needs Redis 6 or later). Turn it off for older
    /// servers.
    #[must_use]
    pub fn resp3(mut self, on: bool) -> Self {
        self.config.resp3 = on;
        self
    }

    /// The margin added to every key TTL computed from a request's `now` (default 60 s).
    #[must_use]
    pub fn ttl_margin(mut self, margin: Duration) -> Self {
        self.config.ttl_margin = margin;
        self
    }

    /// How many revocation events a local subscriber may fall behind before it is told it
    /// lagged (default 1024).
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.config.event_capacity = capacity;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a URL that is not a Redis URL (or `rediss` without the
    /// `tls` feature), a pool size of 0 or above [`MAX_POOL_SIZE`], a zero timeout, or a key
    /// prefix that is too long or holds `{` or `}`.
    pub fn build(mut self) -> Result<RedisConfig, Error> {
        let c = &mut self.config;
        let scheme = c
            .url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .ok_or(Error::InvalidConfig("the URL has no scheme"))?;
        c.deployment = match scheme.as_str() {
            "redis" | "rediss" | "valkey" | "valkeys" => Deployment::Standalone,
            "redis-cluster" | "rediss-cluster" | "valkey-cluster" | "valkeys-cluster" => {
                Deployment::Cluster
            }
            "redis-sentinel" | "rediss-sentinel" | "valkey-sentinel" | "valkeys-sentinel" => {
                Deployment::Sentinel
            }
            _ => return Err(Error::InvalidConfig("unknown URL scheme")),
        };
        let tls = scheme.starts_with("rediss") || scheme.starts_with("valkeys");
        if tls && !cfg!(feature = "tls") {
            return Err(Error::InvalidConfig(
                "a TLS URL needs the `tls` feature of token-store-redis",
            ));
        }
        if c.pool_size == 0 || c.pool_size > MAX_POOL_SIZE {
            return Err(Error::InvalidConfig("pool size must be 1 to 64"));
        }
        if c.command_timeout.is_zero() || c.connect_timeout.is_zero() {
            return Err(Error::InvalidConfig("timeouts must be positive"));
        }
        if c.key_prefix.len() > MAX_KEY_PREFIX_BYTES {
            return Err(Error::InvalidConfig("key prefix too long"));
        }
        if c.key_prefix.contains(['{', '}']) {
            return Err(Error::InvalidConfig(
                "key prefix must not contain `{` or `}`",
            ));
        }
        // Parse once now so a bad URL fails here, not at connect time.
        c.fred_config()?;
        Ok(self.config)
    }
}

/// `scheme://***@host:port/path?***`: no password, no query.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::from("<not a URL>");
    };
    let (before_fragment, _) = rest.split_once('#').unwrap_or((rest, ""));
    let (before_query, query) = match before_fragment.split_once('?') {
        Some((b, _)) => (b, "?***"),
        None => (before_fragment, ""),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    format!("{scheme}://{host}{path}{query}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn commands_are_sent_at_once_and_never_retried() {
        let config = super::RedisConfig::builder("redis://127.0.0.1:6379")
            .build()
            .unwrap();
        let fred = config.fred_connection();
        assert_eq!(fred.tcp.nodelay, Some(true), "no Nagle delay on a command");
        assert_eq!(
            fred.max_command_attempts, 1,
            "a rotation is never sent twice"
        );
    }

    #[test]
    fn tls_schemes_are_read_without_tls_and_flagged() {
        for (url, plain, tls) in [
            ("rediss://h:1", "redis://h:1", true),
            ("REDISS-CLUSTER://h:1", "redis-cluster://h:1", true),
            ("rediss-sentinel://h:1/0", "redis-sentinel://h:1/0", true),
            ("valkeys://h:1", "valkey://h:1", true),
            ("Redis://h:1", "redis://h:1", false),
            ("redis-cluster://h:1", "redis-cluster://h:1", false),
        ] {
            assert_eq!(super::without_tls(url), (plain.to_owned(), tls), "{url}");
        }
    }

    /// A TLS URL gets its connector on aws-lc-rs passed explicitly: no rustls process default
    /// is needed, which would not exist in a build with two providers (this workspace's tests
    /// have aws-lc-rs and, through a benchmark's reqwest, ring).
    #[cfg(feature = "tls")]
    #[test]
    fn a_tls_url_needs_no_process_wide_crypto_provider() {
        let config = super::RedisConfig::builder("rediss://:secret@127.0.0.1:6380")
            .build()
            .unwrap();
        let fred = config.fred_config().unwrap();
        assert!(fred.tls.is_some());
        assert!(!fred.server.hosts().is_empty());
    }

    use super::*;

    #[test]
    fn password_never_in_debug() {
        let c = RedisConfig::builder("redis://user:s3cret-pw@localhost:6379/2")
            .build()
            .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("***@localhost:6379/2"), "{shown}");
        assert_eq!(c.deployment(), Deployment::Standalone);

        let c = RedisConfig::builder(
            "redis-sentinel://:pw1@h1:26379/0?sentinelServiceName=m&sentinelPassword=pw2",
        )
        .build()
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("pw1") && !shown.contains("pw2"), "{shown}");
        assert_eq!(c.deployment(), Deployment::Sentinel);

        let c = RedisConfig::builder("redis-cluster://:pw@127.0.0.1:7000?node=127.0.0.1:7001")
            .build()
            .unwrap();
        assert_eq!(c.deployment(), Deployment::Cluster);
        assert_eq!(c.redacted_url(), "redis-cluster://***@127.0.0.1:7000?***");
        assert_eq!(redact_url("nonsense"), "<not a URL>");
    }

    #[test]
    fn invalid_settings() {
        let bad = |b: RedisConfigBuilder| match b.build() {
            Err(Error::InvalidConfig(reason)) => reason,
            other => panic!("{other:?}"),
        };
        bad(RedisConfig::builder("http://localhost"));
        bad(RedisConfig::builder("localhost:6379"));
        bad(RedisConfig::builder("redis://localhost").pool_size(0));
        bad(RedisConfig::builder("redis://localhost").command_timeout(Duration::ZERO));
        bad(RedisConfig::builder("redis://localhost").key_prefix("a{b}"));
        bad(RedisConfig::builder("redis://localhost").key_prefix("x".repeat(200)));
        let reason = bad(RedisConfig::builder("redis://:hunter2@[bad"));
        assert!(!reason.contains("hunter2"));
        assert!(
            RedisConfig::builder("rediss://localhost:6380")
                .build()
                .is_ok()
                == cfg!(feature = "tls")
        );
    }
}
