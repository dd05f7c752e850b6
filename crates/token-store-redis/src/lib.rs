#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(all(feature = "refresh", feature = "dpop")),
    allow(
        dead_code,
        reason = "with a backend feature off, parts of the shared connection code go unused"
    )
)]

mod config;
mod conn;
mod error;
#[cfg(any(feature = "refresh", feature = "keys"))]
mod events;
#[cfg(feature = "keys")]
mod keys;
#[cfg(feature = "dpop")]
mod replay;
mod store;

pub use config::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_POOL_SIZE,
    DEFAULT_TTL_MARGIN, Deployment, MAX_KEY_PREFIX_BYTES, MAX_POOL_SIZE, ReconnectPolicy,
    RedisConfig, RedisConfigBuilder,
};
pub use error::{BoxError, Error};
pub use store::RedisStore;

#[cfg(any(feature = "refresh", feature = "keys"))]
impl RedisStore {
    /// How many times the pub/sub subscriber has resubscribed (and re-read the revocation
    /// list) after a reconnect (for tests and metrics).
    #[doc(hidden)]
    pub fn subscriber_resyncs(&self) -> u64 {
        self.inner.subscriber.resyncs()
    }
}
