//! The server's signing keys: a `token-kms` [`KeyRing`] (local, KMS-wrapped or AWS KMS keys),
//! the `token-jwks` publisher that renders the JWK Set once per key-ring change, and the JWS
//! encoder of the active key (its header serialized once per key).
//!
//! A background task ([`Keys::run_rotation`]) ticks the ring: keys the server generates
//! itself (`SIGNING_KEY_FILE` and `KMS_KEY_ID` unset) are rotated on schedule; a key that an
//! operator provides (a file, a wrapped blob, a KMS key) is never replaced by the server, and a
//! due rotation is logged instead.

use std::fmt;
use std::sync::{Arc, RwLock};

use token_jwks::{JwksDocument, JwksPublisher};
use token_jwt::{
    Algorithm, AsyncJwsSigner, CryptoProvider, JwsEncoder, JwsVerifier, KeyResolver, PrivateKey,
};
use token_kms::{KeyRing, Schedule};

use crate::config::{Config, ConfigError, KeySource};
use crate::error::StartError;

/// How long verifiers may cache the JWK Set (the `Cache-Control: max-age` of the document, and
/// the time a new key is published before it signs).
pub const JWKS_CACHE_TTL: u64 = 300;

/// Signing keys, the JWK Set and the active encoder.
pub struct Keys {
    ring: Arc<KeyRing>,
    publisher: JwksPublisher,
    encoder: RwLock<Option<Arc<JwsEncoder>>>,
    provider: Arc<dyn CryptoProvider>,
    generated_alg: Option<Algorithm>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Loads or generates the first key and publishes it.
    ///
    /// # Errors
    /// A [`StartError`] naming the variable at fault (unreadable key file, KMS key refused,
    /// wrapped blob under the wrong key or tampered).
    pub async fn load(config: &Config, now: i64) -> Result<Self, StartError> {
        let provider = token_jwt::fastest_provider();
        let schedule = Schedule::new(
            JWKS_CACHE_TTL,
            config.access_token_ttl,
            config.key_rotation_period,
        )
        .map_err(|source| StartError::Kms {
            var: "KEY_ROTATION_PERIOD",
            source,
        })?;
        let ring = Arc::new(KeyRing::new(schedule, provider.clone()).map_err(StartError::KeyRing)?);
        let mut generated_alg = None;
        let signer: Arc<dyn AsyncJwsSigner> = match &config.key_source {
            KeySource::Ephemeral => {
                tracing::warn!(
                    "SIGNING_KEY_FILE and KMS_KEY_ID are unset: signing with an EPHEMERAL {} key generated at start-up. \
                     Tokens stop verifying when this process exits, and other instances cannot verify them. \
                     Development only.",
                    config.signing_alg
                );
                generated_alg = Some(config.signing_alg);
                local_signer(
                    &*provider,
                    &PrivateKey::generate(config.signing_alg).map_err(|source| {
                        StartError::Key {
                            var: "SIGNING_ALG",
                            source,
                        }
                    })?,
                )?
            }
            KeySource::File(path) => {
                let text =
                    zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                        StartError::ReadFile {
                            var: "SIGNING_KEY_FILE",
                            path: path.clone(),
                            source,
                        }
                    })?);
                if text.contains("\"ciphertext\"") {
                    wrapped_signer(config, text.as_bytes(), &*provider).await?
                } else {
                    let key = if text.trim_start().starts_with('{') {
                        PrivateKey::from_jwk(text.as_bytes())
                    } else {
                        PrivateKey::from_pkcs8_pem(&text)
                    }
                    .map_err(|source| StartError::Key {
                        var: "SIGNING_KEY_FILE",
                        source,
                    })?;
                    local_signer(&*provider, &key)?
                }
            }
            KeySource::Kms(key_id) => {
                let client = kms_client(config).await?;
                let signer = token_kms::KmsSigner::connect(&client, key_id.as_str())
                    .await
                    .map_err(|source| StartError::Kms {
                        var: "KMS_KEY_ID",
                        source,
                    })?;
                Arc::new(signer)
            }
        };
        tracing::info!(kid = signer.key_id(), alg = %signer.algorithm(), "signing key loaded");
        ring.rotate_now(signer, now).map_err(StartError::KeyRing)?;
        let keys = Keys {
            ring,
            publisher: JwksPublisher::new(JWKS_CACHE_TTL),
            encoder: RwLock::new(None),
            provider,
            generated_alg,
        };
        keys.republish()?;
        Ok(keys)
    }

    fn republish(&self) -> Result<(), StartError> {
        let (version, published) = self.ring.published_with_version();
        self.publisher
            .update(version, &published)
            .map_err(StartError::Jwks)?;
        Ok(())
    }

    /// The active signer and its encoder.
    ///
    /// # Errors
    /// When the ring has no active key (never after a successful [`Keys::load`]).
    pub fn active(&self) -> Result<(Arc<dyn AsyncJwsSigner>, Arc<JwsEncoder>), token_kms::Error> {
        let signer = self.ring.active()?;
        if let Ok(guard) = self.encoder.read()
            && let Some(enc) = guard.as_ref()
            && enc.key_id() == signer.key_id()
            && enc.algorithm() == signer.algorithm()
        {
            return Ok((signer, enc.clone()));
        }
        let enc = Arc::new(JwsEncoder::for_signer(&*signer, "at+jwt"));
        if let Ok(mut guard) = self.encoder.write() {
            *guard = Some(enc.clone());
        }
        Ok((signer, enc))
    }

    /// The current JWK Set document (bytes, `ETag`, `Cache-Control`).
    pub fn jwks(&self) -> Arc<JwksDocument> {
        self.publisher.current()
    }

    /// Advances the ring to `now`, adding a generated pending key when one is due, and
    /// re-renders the JWK Set when anything changed.
    pub fn tick(&self, now: i64) {
        let report = self.ring.tick(now);
        if report.needs_pending_key {
            match self.generated_alg {
                Some(alg) => match PrivateKey::generate(alg)
                    .map_err(|e| e.to_string())
                    .and_then(|k| local_signer(&*self.provider, &k).map_err(|e| e.to_string()))
                    .and_then(|s| self.ring.add_pending(s, now).map_err(|e| e.to_string()))
                {
                    Ok(()) => tracing::info!(
                        "key rotation: a new key is published and will sign after the JWKS cache lifetime"
                    ),
                    Err(e) => tracing::error!(error = %e, "key rotation: cannot add a new key"),
                },
                None => tracing::warn!(
                    "key rotation is due: provide a new key (SIGNING_KEY_FILE / KMS_KEY_ID) and restart; \
                     the current key keeps signing"
                ),
            }
        }
        if (report.changed || report.needs_pending_key)
            && let Err(e) = self.republish()
        {
            tracing::error!(error = %e, "cannot render the JWK Set");
        }
    }

    /// Ticks the ring every `interval` until `stop` fires.
    pub async fn run_rotation(
        self: Arc<Self>,
        interval: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => self.tick(crate::clock::now()),
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

impl KeyResolver for Keys {
    fn resolve(&self, kid: &str) -> token_jwt::Result<Arc<dyn JwsVerifier>> {
        self.ring.resolve(kid)
    }
}

fn local_signer(
    provider: &dyn CryptoProvider,
    key: &PrivateKey,
) -> Result<Arc<dyn AsyncJwsSigner>, StartError> {
    let signer = provider.signer(key).map_err(|source| StartError::Key {
        var: "SIGNING_KEY_FILE",
        source,
    })?;
    // A local signer is usable wherever an async one is expected (blanket impl).
    Ok(Arc::new(signer))
}

async fn kms_client(config: &Config) -> Result<token_kms::KmsClient, StartError> {
    let mut b = token_kms::KmsConfig::builder();
    if let Some(url) = &config.kms_endpoint {
        b = b.endpoint_url(url.clone());
    }
    token_kms::KmsClient::connect(&b.build())
        .await
        .map_err(|source| StartError::Kms {
            var: "KMS_KEY_ID",
            source,
        })
}

async fn wrapped_signer(
    config: &Config,
    blob: &[u8],
    provider: &dyn CryptoProvider,
) -> Result<Arc<dyn AsyncJwsSigner>, StartError> {
    // Only the KMS key the operator names may unwrap the signing key, never simply the one
    // the file names: whoever can write the file must not choose which key decrypts it.
    let Some(wrapping) = config.wrapping_key_id.clone() else {
        return Err(StartError::Config(ConfigError::new(
            "WRAPPING_KMS_KEY_ID",
            "required with a wrapped SIGNING_KEY_FILE: name the KMS key that may unwrap it \
             (the one `token-service keys wrap --kms-key-id` was given)",
        )));
    };
    let blob = token_kms::WrappedKeyBlob::from_json(blob).map_err(|source| StartError::Kms {
        var: "SIGNING_KEY_FILE",
        source,
    })?;
    let client = kms_client(config).await?;
    let key = token_kms::WrappedKey::unwrap(&client, &blob, &wrapping, provider)
        .await
        .map_err(|source| StartError::Kms {
            var: "SIGNING_KEY_FILE",
            source,
        })?;
    Ok(Arc::new(key))
}

/// `token-service keys wrap`: generates a key, wraps it with KMS and prints the blob (JSON) to
/// stdout. Nothing secret is printed: the blob is ciphertext.
///
/// # Errors
/// When KMS refuses.
pub async fn wrap_command(
    config: &Config,
    kms_key_id: &str,
    alg: Algorithm,
) -> Result<String, StartError> {
    let client = kms_client(config).await?;
    let blob = token_kms::wrap_new_key(&client, kms_key_id, alg)
        .await
        .map_err(|source| StartError::Kms {
            var: "WRAPPING_KMS_KEY_ID",
            source,
        })?;
    Ok(blob.to_json())
}
