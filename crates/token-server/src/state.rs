//! The shared state of a running server, built once from the [`Config`]: the signing keys, the
//! refresh-token rotator and its store, the revocation list, the DPoP validator and the
//! verification policy for our own tokens.

use std::sync::Arc;

use token_dpop::{
    MemoryReplayCache, NonceIssuer, NonceKey, ReplayCache, Validator, ValidatorConfig,
};
use token_jwt::Policy;
use token_kms::managed::{KeyStore, MemoryKeyStore};
use token_refresh::{FamilyStore, MemoryStore, Pepper, RevocationList, Rotator, RotatorConfig};
use token_store_redis::RedisStore;
use zeroize::Zeroizing;

use crate::config::{Config, ConfigError, StoreConfig};
use crate::error::StartError;
use crate::keys::Keys;

/// How far apart the clocks of this service and of the verifiers of its tokens may be, in
/// seconds: added to how long revocations stay listed.
pub const CLOCK_SKEW_MARGIN_SECS: u64 = 60;

/// The four faces of the store: refresh-token families, the revocation list, DPoP replay
/// entries, managed keys.
type Stores = (
    Arc<dyn FamilyStore>,
    Arc<dyn RevocationList>,
    Arc<dyn ReplayCache>,
    Arc<dyn KeyStore>,
);

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
    /// The Redis store, when there is one (the same object as the rotator's store): readiness
    /// reports why it refuses operations (an eviction policy).
    pub redis: Option<Arc<RedisStore>>,
}

impl AppState {
    /// Builds the state: loads the key, connects the store, prepares the validators.
    ///
    /// # Errors
    /// A [`StartError`] naming the variable at fault.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let provider = token_jwt::fastest_provider();
        let mut redis_store = None;
        let (store, revocations, replay, key_store): Stores = match &config.store {
            StoreConfig::Memory => {
                tracing::warn!(
                    "REDIS_URL is unset: refresh-token families, revocations and DPoP replay entries live in \
                     this process's memory. Run ONE instance only; everything is lost on restart."
                );
                let memory = Arc::new(MemoryStore::new());
                (
                    memory.clone(),
                    memory,
                    Arc::new(MemoryReplayCache::new()),
                    Arc::new(MemoryKeyStore::new()),
                )
            }
            StoreConfig::Redis(redis_config) => {
                let redis = Arc::new(
                    RedisStore::connect((**redis_config).clone())
                        .await
                        .map_err(StartError::Redis)?,
                );
                tracing::info!(
                    url = %redis_config.redacted_url(),
                    deployment = ?redis.deployment(),
                    "connected to Redis"
                );
                redis_store = Some(redis.clone());
                (redis.clone(), redis.clone(), redis.clone(), redis)
            }
        };

        let keys = Arc::new(Keys::load(&config, key_store, crate::clock::now()).await?);

        // `Config` refuses Redis without a pepper: a random one is for a single instance only.
        let pepper = match &config.pepper {
            Some(pepper) => pepper.clone(),
            None => {
                let mut bytes = Zeroizing::new(vec![0u8; 32]);
                getrandom::getrandom(&mut bytes).map_err(StartError::Random)?;
                Pepper::new(bytes.to_vec()).map_err(|e| {
                    ConfigError::new("REFRESH_TOKEN_PEPPER", format!("a random pepper: {e}"))
                })?
            }
        };
        // A revoked family stays listed until its last access token is refused by every
        // verifier: its lifetime, plus the leeway verifiers grant on `exp`, plus a margin
        // for clocks that disagree between this service and the verifiers.
        let policy = Policy::builder().issuer(config.issuer.clone()).build();
        let listed_for = config
            .access_token_ttl
            .saturating_add(policy.leeway)
            .saturating_add(CLOCK_SKEW_MARGIN_SECS);
        let secs = std::time::Duration::from_secs;
        let rotator_config = RotatorConfig::builder()
            .family_lifetime(secs(config.family_lifetime))
            .idle_ttl(secs(config.refresh_token_ttl))
            .grace_window(secs(config.grace_seconds))
            .grace_max_uses(config.grace_max_uses)
            .max_access_token_lifetime(secs(listed_for))
            // Without DEFAULT_AUDIENCE a grant with no audience cannot mint a token: refused
            // by the rotation itself (RFC 9068 section 2.2), family untouched.
            .require_audience(config.default_audience.is_empty())
            .build()
            .map_err(|e| ConfigError::new("REFRESH_TOKEN_TTL", e.to_string()))?;
        let rotator = Rotator::new(store, pepper, rotator_config);

        let mut dpop_config = ValidatorConfig::builder(provider.clone())
            .max_age(config.dpop_max_age)
            .leeway(config.dpop_leeway);
        if config.dpop_nonce_required {
            // `Config` refuses Redis without a nonce key: a random one is for one instance.
            let key = match &config.dpop_nonce_key {
                Some(key) => key.clone(),
                None => {
                    tracing::warn!(
                        "DPOP_NONCE_KEY is unset: nonces are only valid at this instance"
                    );
                    NonceKey::generate().map_err(|e| {
                        ConfigError::new("DPOP_NONCE_KEY", format!("a random key: {e}"))
                    })?
                }
            };
            dpop_config = dpop_config.require_nonce(Arc::new(NonceIssuer::new(key)));
        }
        let dpop = Validator::new(dpop_config.build(), replay);

        Ok(AppState {
            config,
            keys,
            rotator,
            revocations,
            dpop,
            policy,
            redis: redis_store,
        })
    }
}
