//! The shared state of a running server, built once from the [`Config`]: the signing keys, the
//! refresh-token rotator and its store, the revocation list, the DPoP validator and the
//! verification policy for our own tokens.

use std::fmt;
use std::sync::Arc;

use token_dpop::{MemoryReplayCache, NonceIssuer, NonceKey, Validator, ValidatorConfig};
use token_jwt::{
    AsyncJwsSigner, CryptoProvider, JwkSet, JwsEncoder, JwsVerifier, KeyResolver, KeySet, Policy,
    PrivateKey,
};
use token_refresh::{FamilyStore, MemoryStore, Pepper, RevocationList, Rotator, RotatorConfig};

use crate::config::{Config, KeySource, StoreConfig};

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

/// The signing key and everything derived from it once: the encoder (header serialized once),
/// the verification keys and the JWK Set bytes.
pub struct SigningKeys {
    signer: Arc<dyn AsyncJwsSigner>,
    encoder: JwsEncoder,
    verify: KeySet,
    jwks_json: String,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kid", &self.signer.key_id())
            .field("alg", &self.signer.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Keys for one active signer.
    ///
    /// # Errors
    /// When the public key cannot be turned into a verifier.
    pub fn new(
        signer: Arc<dyn AsyncJwsSigner>,
        provider: &dyn CryptoProvider,
    ) -> Result<Self, StartError> {
        let jwks = JwkSet::new(vec![signer.public_jwk().clone()]);
        let verify =
            KeySet::from_jwks(&jwks, provider).map_err(|e| StartError::Other(e.to_string()))?;
        Ok(SigningKeys {
            encoder: JwsEncoder::for_signer(&*signer, "at+jwt"),
            jwks_json: jwks.to_json(),
            signer,
            verify,
        })
    }

    /// The signer of new tokens.
    pub fn active(&self) -> Arc<dyn AsyncJwsSigner> {
        self.signer.clone()
    }

    /// The encoder for the active signer.
    pub fn encoder(&self) -> &JwsEncoder {
        &self.encoder
    }

    /// The JWK Set document.
    pub fn jwks_json(&self) -> String {
        self.jwks_json.clone()
    }
}

impl KeyResolver for SigningKeys {
    fn resolve(&self, kid: &str) -> token_jwt::Result<Arc<dyn JwsVerifier>> {
        self.verify.resolve(kid)
    }
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    /// The configuration.
    pub config: Config,
    /// Signing and verification keys.
    pub keys: Arc<SigningKeys>,
    /// Refresh-token families.
    pub rotator: Rotator,
    /// Revoked families.
    pub revocations: Arc<dyn RevocationList>,
    /// DPoP proof validation.
    pub dpop: Validator,
    /// Verification policy for our own access tokens.
    pub policy: Policy,
}

fn load_key(config: &Config) -> Result<PrivateKey, StartError> {
    match &config.key_source {
        KeySource::Ephemeral => {
            tracing::warn!(
                "SIGNING_KEY_FILE and KMS_KEY_ID are unset: signing with an EPHEMERAL {} key generated at start-up. \
                 Tokens stop verifying when this process exits, and other instances cannot verify them. \
                 Development only.",
                config.signing_alg
            );
            PrivateKey::generate(config.signing_alg).map_err(|e| StartError::Other(e.to_string()))
        }
        KeySource::File(path) => {
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                config_err(
                    "SIGNING_KEY_FILE",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?);
            let key = if text.trim_start().starts_with('{') {
                PrivateKey::from_jwk(text.as_bytes())
            } else {
                PrivateKey::from_pkcs8_pem(&text)
            };
            key.map_err(|e| config_err("SIGNING_KEY_FILE", e))
        }
        KeySource::Kms(_) => Err(config_err(
            "KMS_KEY_ID",
            "KMS signing is not wired into the server yet; use SIGNING_KEY_FILE",
        )),
    }
}

impl AppState {
    /// Builds the state: loads the key, connects the store, prepares the validators.
    ///
    /// # Errors
    /// A [`StartError`] naming the variable at fault.
    pub fn build(config: Config) -> Result<Self, StartError> {
        let provider = token_jwt::fastest_provider();
        let key = load_key(&config)?;
        let signer = provider
            .signer(&key)
            .map_err(|e| StartError::Other(e.to_string()))?;
        tracing::info!(kid = signer.key_id(), alg = %signer.algorithm(), "signing key loaded");
        // A local signer is usable wherever an async one is expected (blanket impl).
        let signer: Arc<dyn AsyncJwsSigner> = Arc::new(signer);
        let keys = Arc::new(SigningKeys::new(signer, &*provider)?);

        let (store, revocations): (Arc<dyn FamilyStore>, Arc<dyn RevocationList>) = match &config
            .store
        {
            StoreConfig::Memory => {
                tracing::warn!(
                    "REDIS_URL is unset: refresh-token families, revocations and DPoP replay entries live in \
                     this process's memory. Run ONE instance only; everything is lost on restart."
                );
                let memory = Arc::new(MemoryStore::new());
                (memory.clone(), memory)
            }
            StoreConfig::Redis(_) => {
                return Err(config_err(
                    "REDIS_URL",
                    "the Redis store is not wired into the server yet; unset REDIS_URL for the in-memory store",
                ));
            }
        };

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
        let dpop = Validator::new(dpop_config.build(), Arc::new(MemoryReplayCache::new()));

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
