//! The shared state of a running server, built once from the [`Config`]: the signing keys, the
//! refresh-token rotator and its store, the revocation list, the DPoP validator and the
//! verification policy for our own tokens.

use std::fmt;
use std::sync::Arc;

use token_dpop::{
    MemoryReplayCache, NonceIssuer, NonceKey, ReplayCache, Validator, ValidatorConfig,
};
use token_jwt::Policy;
use token_refresh::{FamilyStore, MemoryStore, Pepper, RevocationList, Rotator, RotatorConfig};
use token_store_redis::{RedisConfig, RedisStore};

use crate::config::{Config, StoreConfig};
use crate::keys::Keys;

/// Why the server could not start; names the variable when one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration value that parsed but cannot be used.
    #[error("{var}: {reason}")]
    Config {
        /// The variable.
        var: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Anything else at start-up.
    #[error("{0}")]
    Other(String),
}

fn config_err(var: &'static str, reason: impl fmt::Display) -> StartError {
    StartError::Config {
        var,
        reason: reason.to_string(),
    }
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    /// The configuration.
    pub config: Config,
    /// Signing and verification keys, and the JWK Set.
    pub keys: Arc<Keys>,
    /// Refresh-token families.
    pub rotator: Rotator,
    /// Revoked families.
    pub revocations: Arc<dyn RevocationList>,
    /// DPoP proof validation.
    pub dpop: Validator,
    /// Verification policy for our own access tokens.
    pub policy: Policy,
}

impl AppState {
    /// Builds the state: loads the key, connects the store, prepares the validators.
    ///
    /// # Errors
    /// A [`StartError`] naming the variable at fault.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let provider = token_jwt::fastest_provider();
        let keys = Arc::new(Keys::load(&config, crate::service::now()).await?);

        let (store, revocations, replay): (
            Arc<dyn FamilyStore>,
            Arc<dyn RevocationList>,
            Arc<dyn ReplayCache>,
        ) = match &config.store {
            StoreConfig::Memory => {
                tracing::warn!(
                    "REDIS_URL is unset: refresh-token families, revocations and DPoP replay entries live in \
                     this process's memory. Run ONE instance only; everything is lost on restart."
                );
                let memory = Arc::new(MemoryStore::new());
                (memory.clone(), memory, Arc::new(MemoryReplayCache::new()))
            }
            StoreConfig::Redis(url) => {
                let redis_config = RedisConfig::builder(url.clone())
                    .pool_size(config.redis_pool_size)
                    .command_timeout(std::time::Duration::from_millis(
                        config.redis_command_timeout_ms,
                    ))
                    .build()
                    .map_err(|e| config_err("REDIS_URL", e))?;
                let redacted = redis_config.redacted_url();
                let redis = Arc::new(
                    RedisStore::connect(redis_config)
                        .await
                        .map_err(|e| config_err("REDIS_URL", e))?,
                );
                tracing::info!(url = %redacted, deployment = ?redis.deployment(), "connected to Redis");
                (redis.clone(), redis.clone(), redis)
            }
        };
        if config.pepper.is_none() && matches!(config.store, StoreConfig::Redis(_)) {
            return Err(config_err(
                "REFRESH_TOKEN_PEPPER",
                "required with REDIS_URL: every instance must hash refresh tokens with the same key",
            ));
        }

        let pepper = match &config.pepper {
            Some(bytes) => {
                Pepper::new(bytes.to_vec()).map_err(|e| config_err("REFRESH_TOKEN_PEPPER", e))?
            }
            None => {
                let mut bytes = zeroize::Zeroizing::new(vec![0u8; 32]);
                getrandom::getrandom(&mut bytes).map_err(|e| StartError::Other(e.to_string()))?;
                Pepper::new(bytes.to_vec()).map_err(|e| StartError::Other(e.to_string()))?
            }
        };
        let secs = std::time::Duration::from_secs;
        let rotator_config = RotatorConfig::builder()
            .family_lifetime(secs(config.family_lifetime))
            .idle_ttl(secs(config.refresh_token_ttl))
            .grace_window(secs(config.grace_seconds))
            .grace_max_uses(config.grace_max_uses)
            .max_access_token_lifetime(secs(config.access_token_ttl))
            .build()
            .map_err(|e| config_err("REFRESH_TOKEN_TTL", e))?;
        let rotator = Rotator::new(store, pepper, rotator_config);

        let mut dpop_config = ValidatorConfig::builder(provider.clone())
            .max_age(config.dpop_max_age)
            .leeway(config.dpop_leeway);
        if config.dpop_nonce_required {
            let key = match &config.dpop_nonce_key {
                Some(bytes) => {
                    let secret: [u8; 32] = bytes
                        .get(..32)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| config_err("DPOP_NONCE_KEY", "must be at least 32 bytes"))?;
                    NonceKey::from_bytes(&secret)
                }
                None => {
                    tracing::warn!(
                        "DPOP_NONCE_KEY is unset: nonces are only valid at this instance"
                    );
                    NonceKey::generate().map_err(|e| StartError::Other(e.to_string()))?
                }
            };
            dpop_config = dpop_config.require_nonce(Arc::new(NonceIssuer::new(key)));
        }
        let dpop = Validator::new(dpop_config.build(), replay);

        let policy = Policy::builder().issuer(config.issuer.clone()).build();
        Ok(AppState {
            config,
            keys,
            rotator,
            revocations,
            dpop,
            policy,
        })
    }
}
