//! token-dpop's replay cache on Redis (standalone, Cluster or Sentinel) through
//! token-store-redis: every instance of a resource server records proofs in one place, so a
//! proof accepted by one instance is a replay at all the others.

use std::sync::Arc;

use token_dpop::ReplayCache;
pub use token_store_redis::{RedisConfig, RedisConfigBuilder, RedisStore};

use crate::error::{Error, Result};

/// The key prefix of [`replay_cache`]: the guard's entries stay apart from a token service's
/// sharing the Redis (whose default prefix is `ts:`).
pub const KEY_PREFIX: &str = "token-guard:";

/// Connects to the Redis at `url` (`redis://`, `rediss://`, `redis+sentinel://`, a Cluster
/// node) with token-store-redis's defaults and [`KEY_PREFIX`], for
/// [`GuardBuilder::replay_cache`](crate::GuardBuilder::replay_cache). For other settings,
/// build a [`RedisConfig`], connect a [`RedisStore`] and pass it (`Arc::new(store)`).
/// Must run inside a tokio runtime.
///
/// # Errors
/// [`Error::Redis`]: an invalid URL, or Redis unreachable within the connect timeout.
pub async fn replay_cache(url: &str) -> Result<Arc<dyn ReplayCache>> {
    let config = RedisConfig::builder(url)
        .key_prefix(KEY_PREFIX)
        .build()
        .map_err(Error::Redis)?;
    let store = RedisStore::connect(config).await.map_err(Error::Redis)?;
    Ok(Arc::new(store))
}
