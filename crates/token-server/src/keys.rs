//! The server's signing keys, in one of two modes, and the JWK Set they publish.
//!
//! - **Managed keys** (`SIGNING_KEY_FILE` and `KMS_KEY_ID` unset): the fleet generates and
//!   rotates its own keys through the store (`token_kms::managed`): each key wrapped under
//!   `KEY_ENCRYPTION_KEY` or `WRAPPING_KMS_KEY_ID`, exactly one instance creating each next
//!   key, every instance publishing it from its creation and signing with it only after
//!   `JWKS_MAX_AGE` plus the propagation margin.
//! - **Provided keys** (a key file, a wrapped blob, or a KMS key): a `token-kms` [`KeyRing`].
//!   A KMS alias (`KMS_KEY_ID=alias/…`) is re-read every sync interval; when it points to
//!   another KMS key, that key is published at once and signs after the same pre-publication
//!   time, and the old one stays published until its tokens have expired.
//!
//! Both add the verification-only keys of `PUBLISHED_KEY_FILES`. [`Keys::run`] is the
//! background task that keeps them in step; [`Keys::active`] and the [`KeyResolver`] read
//! snapshots and never wait for the store or KMS.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use token_jwks::{JwksDocument, JwksPublisher};
use token_jwt::{
    Algorithm, AsyncJwsSigner, CryptoProvider, Jwk, JwsEncoder, JwsVerifier, KeyResolver,
    PrivateKey,
};
use token_kms::managed::{KeyStore, ManagedKeys, ManagedState, Timing, Transition, Wrapper};
use token_kms::{KeyRing, Schedule};

use crate::config::{Config, ConfigError, KeySource, propagation_margin, sync_interval};
use crate::error::StartError;
use crate::metrics as m;

/// The verifiers' leeway on `exp` that retained keys allow for (token-jwt's default policy).
const VERIFIER_LEEWAY: u64 = 60;

/// The signer and the encoder of its header, cached per `kid`.
type ActiveEncoder = (Arc<dyn AsyncJwsSigner>, Arc<JwsEncoder>);
/// A verification-only key of `PUBLISHED_KEY_FILES`.
type PublishedKey = (Jwk, Arc<dyn JwsVerifier>);

enum Source {
    Ring {
        ring: Arc<KeyRing>,
        /// A KMS alias that is followed, and the key it pointed to when last read.
        alias: Option<(token_kms::KmsClient, String, Mutex<String>)>,
    },
    Managed(Arc<ManagedKeys>),
}

/// Signing keys, the JWK Set and the active encoder.
pub struct Keys {
    source: Source,
    /// `PUBLISHED_KEY_FILES`: published, verify, never sign.
    extra: Vec<PublishedKey>,
    publisher: JwksPublisher,
    /// The JWK Set's content version (bumped whenever the published keys change).
    version: Mutex<(u64, Vec<Jwk>)>,
    encoder: RwLock<Option<ActiveEncoder>>,
    jwks_max_age: u64,
    /// Whether the due rotation of a provided key was logged.
    due_reported: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.source {
            Source::Ring { .. } => "provided",
            Source::Managed(_) => "managed",
        };
        f.debug_struct("Keys")
            .field("mode", &mode)
            .field("published", &self.jwks().keys().len())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Loads the keys and publishes them. `store` holds the managed keys (the fleet's store,
    /// or memory for one instance); it is not used with provided keys.
    ///
    /// # Errors
    /// A [`StartError`] naming the variable at fault (unreadable key file, KMS key refused,
    /// wrapped blob or stored keys under another key, the store unreachable).
    pub async fn load(
        config: &Config,
        store: Arc<dyn KeyStore>,
        now: i64,
    ) -> Result<Self, StartError> {
        let provider = token_jwt::fastest_provider();
        let extra = published_files(config, &*provider)?;
        let source = match &config.key_source {
            KeySource::Managed => Source::Managed(managed(config, store, &provider, now).await?),
            KeySource::File(path) => {
                let signer = file_signer(config, path, &*provider).await?;
                Source::Ring {
                    ring: ring_with(config, &provider, signer, now, false)?,
                    alias: None,
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
                let is_alias = key_id.starts_with("alias/") || key_id.contains(":alias/");
                // What the alias resolves to, in the form `resolve_key` gives (emulators report
                // a bare key id from GetPublicKey but an ARN from DescribeKey). Moved between
                // the two calls: empty, so that the first sync adds the new key.
                let mut arn = String::new();
                if is_alias {
                    let resolved =
                        client
                            .resolve_key(key_id)
                            .await
                            .map_err(|source| StartError::Kms {
                                var: "KMS_KEY_ID",
                                source,
                            })?;
                    if signer.signs_with(&resolved) {
                        arn = resolved;
                    }
                }
                Source::Ring {
                    ring: ring_with(config, &provider, Arc::new(signer), now, is_alias)?,
                    alias: is_alias.then(|| (client, key_id.clone(), Mutex::new(arn))),
                }
            }
        };
        let keys = Keys {
            source,
            extra,
            publisher: JwksPublisher::new(config.jwks_max_age),
            version: Mutex::new((0, Vec::new())),
            encoder: RwLock::new(None),
            due_reported: std::sync::atomic::AtomicBool::new(false),
            jwks_max_age: config.jwks_max_age,
        };
        keys.republish();
        let active = keys.active().map_err(StartError::KeyRing)?.0;
        tracing::info!(kid = active.key_id(), alg = %active.algorithm(), "signing key loaded");
        Ok(keys)
    }

    /// The managed keys, in that mode.
    pub fn managed(&self) -> Option<&Arc<ManagedKeys>> {
        match &self.source {
            Source::Managed(m) => Some(m),
            Source::Ring { .. } => None,
        }
    }

    fn published_now(&self) -> Vec<Jwk> {
        let mut keys = match &self.source {
            Source::Ring { ring, .. } => ring.published(),
            Source::Managed(m) => m.published(),
        };
        keys.extend(self.extra.iter().map(|(jwk, _)| jwk.clone()));
        keys
    }

    /// Re-renders the JWK Set when the published keys changed.
    fn republish(&self) {
        let keys = self.published_now();
        let mut version = self.version.lock().unwrap_or_else(PoisonError::into_inner);
        if version.1 == keys && version.0 != 0 {
            return;
        }
        let next = version.0.wrapping_add(1);
        match self.publisher.update(next, &keys) {
            Ok(_) => {
                metrics::gauge!(m::JWKS_KEYS).set(keys.len() as f64);
                metrics::gauge!(m::JWKS_CHANGED).set(crate::clock::now() as f64);
                *version = (next, keys);
            }
            Err(e) => tracing::error!(error = %e, "cannot render the JWK Set"),
        }
    }

    /// The active signer and its encoder.
    ///
    /// # Errors
    /// When no key can sign (never after a successful [`Keys::load`], unless every managed
    /// key was retired and the store cannot be reached to create the next).
    pub fn active(&self) -> Result<(Arc<dyn AsyncJwsSigner>, Arc<JwsEncoder>), token_kms::Error> {
        let kid_now = match &self.source {
            Source::Ring { ring, .. } => {
                let signer = ring.active()?;
                return Ok(self.encoder_for(signer.key_id().to_owned(), || signer.clone()));
            }
            Source::Managed(m) => m.signer()?,
        };
        let kid = kid_now.key_id().to_owned();
        Ok(self.encoder_for(kid, move || Arc::new(kid_now) as Arc<dyn AsyncJwsSigner>))
    }

    fn encoder_for(
        &self,
        kid: String,
        signer: impl FnOnce() -> Arc<dyn AsyncJwsSigner>,
    ) -> (Arc<dyn AsyncJwsSigner>, Arc<JwsEncoder>) {
        if let Ok(guard) = self.encoder.read()
            && let Some((s, enc)) = guard.as_ref()
            && s.key_id() == kid
        {
            return (s.clone(), enc.clone());
        }
        let signer = signer();
        let enc = Arc::new(JwsEncoder::for_signer(&*signer, "at+jwt"));
        if let Ok(mut guard) = self.encoder.write() {
            *guard = Some((signer.clone(), enc.clone()));
        }
        (signer, enc)
    }

    /// The current JWK Set document (bytes, `ETag`, `Cache-Control`).
    pub fn jwks(&self) -> Arc<JwksDocument> {
        self.publisher.current()
    }

    /// Keeps the keys in step until `stop` fires: managed keys are re-read on every change
    /// signal of the store and every [`sync_interval`], and re-planned every second; a KMS
    /// alias is re-read every sync interval; a provided key ring is ticked.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let interval = Duration::from_secs(sync_interval(self.jwks_max_age));
        let mut changes = self.managed().map(|m| m.store().changes());
        let mut last_sync = tokio::time::Instant::now();
        loop {
            let signalled = async {
                match changes.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let sync = tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => last_sync.elapsed() >= interval,
                alive = signalled => {
                    if !alive {
                        changes = None;
                    }
                    true
                }
                _ = stop.wait_for(|s| *s) => return,
            };
            let now = crate::clock::now();
            if sync {
                last_sync = tokio::time::Instant::now();
                self.sync(now).await;
            } else {
                self.tick(now);
            }
        }
    }

    /// Re-reads the store (managed keys) or the KMS alias, then ticks.
    pub async fn sync(&self, now: i64) {
        match &self.source {
            Source::Managed(managed) => match managed.sync(now).await {
                Ok(report) => {
                    if let Some(kid) = &report.created {
                        let at = managed.plan().key(kid).map(|k| k.activates_at);
                        tracing::info!(kid = %kid, signs_from = ?at, "key rotation: this instance created the next key; it is published now");
                        metrics::counter!(m::KEYS_CREATED).increment(1);
                    }
                    for (kid, reason) in &report.refused {
                        tracing::error!(kid = %kid, reason = %reason, "a stored signing key is refused: it is neither published nor used");
                    }
                    metrics::gauge!(m::KEYS_REFUSED).set(report.refused.len() as f64);
                    self.after_transitions(&report.transitions);
                }
                Err(e) => {
                    metrics::counter!(m::KEY_SYNC_ERRORS).increment(1);
                    tracing::error!(error = %e, "cannot read the managed keys: the current key keeps signing, no key is created until the store answers");
                    self.tick(now);
                }
            },
            Source::Ring { ring, alias } => {
                if let Some((client, alias, current)) = alias {
                    self.follow_alias(ring, client, alias, current, now).await;
                }
                self.tick(now);
            }
        }
        self.export_metrics(now);
    }

    /// Moves states along with the clock (no store access).
    pub fn tick(&self, now: i64) {
        match &self.source {
            Source::Managed(managed) => {
                let transitions = managed.replan(now);
                self.after_transitions(&transitions);
            }
            Source::Ring { ring, alias } => {
                let report = ring.tick(now);
                if report.changed {
                    for k in ring.keys() {
                        tracing::debug!(kid = %k.kid, state = ?k.state, "key ring");
                    }
                    metrics::counter!(m::KEY_TRANSITIONS, "to" => "ring").increment(1);
                    self.republish();
                }
                // Once per process: a provided key is never replaced by the server.
                if report.needs_pending_key
                    && alias.is_none()
                    && !self
                        .due_reported
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(
                        "key rotation is due (KEY_ROTATION_PERIOD): provide the next key (README, Key management: \
                         move to managed keys or a KMS alias); the current key keeps signing"
                    );
                }
            }
        }
    }

    fn after_transitions(&self, transitions: &[Transition]) {
        for t in transitions {
            let from = t.from.map_or("new", ManagedState::as_str);
            tracing::info!(kid = %t.kid, from, to = t.to.as_str(), "signing key transition");
            metrics::counter!(m::KEY_TRANSITIONS, "to" => t.to.as_str()).increment(1);
            if let Some(prev) = t.from {
                metrics::gauge!(m::KEY_STATE, "kid" => t.kid.clone(), "state" => prev.as_str())
                    .set(0.0);
            }
            metrics::gauge!(m::KEY_STATE, "kid" => t.kid.clone(), "state" => t.to.as_str())
                .set(1.0);
        }
        if !transitions.is_empty() {
            self.republish();
        }
    }

    fn export_metrics(&self, now: i64) {
        let Some(managed) = self.managed() else {
            return;
        };
        let plan = managed.plan();
        for k in &plan.keys {
            metrics::gauge!(m::KEY_AGE, "kid" => k.kid.clone(), "state" => k.state.as_str())
                .set((now - k.created_at) as f64);
        }
        // With a pending key waiting for its turn, the next one is due one lead before that
        // key's own period ends.
        let t = managed.timing();
        let due = plan.next_key.map(|(due, _)| due).or_else(|| {
            plan.keys
                .iter()
                .filter(|k| k.state == ManagedState::Pending)
                .map(|k| k.activates_at)
                .max()
                .map(|at| {
                    at.saturating_add_unsigned(t.rotation_period)
                        .saturating_sub_unsigned(t.lead())
                })
        });
        if let Some(due) = due {
            metrics::gauge!(m::KEY_ROTATION_DUE).set((due - now) as f64);
        }
    }

    async fn follow_alias(
        &self,
        ring: &KeyRing,
        client: &token_kms::KmsClient,
        alias: &str,
        current: &Mutex<String>,
        now: i64,
    ) {
        let target = match client.resolve_key(alias).await {
            Ok(arn) => arn,
            Err(e) => {
                metrics::counter!(m::KEY_SYNC_ERRORS).increment(1);
                tracing::warn!(alias, error = %e, "cannot re-read the KMS alias: the current key keeps signing");
                return;
            }
        };
        let known = current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if target == known {
            return;
        }
        match token_kms::KmsSigner::connect(client, target.as_str()).await {
            Ok(signer) => {
                let kid = signer.key_id().to_owned();
                match ring.add_pending(Arc::new(signer), now) {
                    Ok(()) => {
                        tracing::info!(alias, key = %target, kid = %kid, "KMS alias re-pointed: the new key is published now and signs after JWKS_MAX_AGE plus the margin");
                        metrics::counter!(m::KEY_TRANSITIONS, "to" => "pending").increment(1);
                        *current.lock().unwrap_or_else(PoisonError::into_inner) = target;
                        self.republish();
                    }
                    Err(e) => tracing::error!(alias, error = %e, "cannot add the alias's new key"),
                }
            }
            Err(e) => {
                metrics::counter!(m::KEY_SYNC_ERRORS).increment(1);
                tracing::error!(alias, key = %target, error = %e, "the KMS alias points to a key that cannot sign: the current key keeps signing");
            }
        }
    }
}

impl KeyResolver for Keys {
    fn resolve(&self, kid: &str) -> token_jwt::Result<Arc<dyn JwsVerifier>> {
        if let Some((_, v)) = self
            .extra
            .iter()
            .find(|(j, _)| j.kid.as_deref() == Some(kid))
        {
            return Ok(v.clone());
        }
        match &self.source {
            Source::Ring { ring, .. } => ring.resolve(kid),
            Source::Managed(m) => m.resolve(kid),
        }
    }
}

async fn managed(
    config: &Config,
    store: Arc<dyn KeyStore>,
    provider: &Arc<dyn CryptoProvider>,
    now: i64,
) -> Result<Arc<ManagedKeys>, StartError> {
    let wrapper = match wrapper(config).await? {
        Some(w) => w,
        None => {
            // `Config` refuses Redis without one of the two: this is the memory store.
            tracing::warn!(
                "SIGNING_KEY_FILE, KMS_KEY_ID and REDIS_URL are unset: signing keys are EPHEMERAL, generated and \
                 rotated in this process's memory; tokens stop verifying when it exits, and other instances cannot \
                 verify them. Development only."
            );
            Wrapper::Kek(
                token_kms::managed::KeyEncryptionKey::generate()
                    .map_err(|e| ConfigError::new("KEY_ENCRYPTION_KEY", e.to_string()))?,
            )
        }
    };
    let timing = managed_timing(config)?;
    if config.key_rotation_period < 86_400 || config.jwks_max_age < 60 {
        tracing::warn!(
            key_rotation_period = config.key_rotation_period,
            jwks_max_age = config.jwks_max_age,
            "KEY_ROTATION_PERIOD below a day or JWKS_MAX_AGE below a minute: fine for tests, \
             wasteful in production (verifiers refetch the JWK Set that often)"
        );
    }
    let keys = Arc::new(ManagedKeys::new(
        store,
        wrapper,
        provider.clone(),
        config.signing_alg,
        timing,
    ));
    let report = keys.sync(now).await.map_err(|e| match e {
        token_kms::Error::WrongKeyEncryptionKey | token_kms::Error::WrongWrapper { .. } => {
            StartError::Config(ConfigError::new("KEY_ENCRYPTION_KEY", e.to_string()))
        }
        other => StartError::KeyRing(other),
    })?;
    for (kid, reason) in &report.refused {
        tracing::error!(kid = %kid, reason = %reason, "a stored signing key is refused: it is neither published nor used");
    }
    if let Some(kid) = &report.created {
        tracing::info!(kid = %kid, "managed keys: this instance created a key");
    }
    Ok(keys)
}

/// How managed keys are wrapped: `KEY_ENCRYPTION_KEY`, or `WRAPPING_KMS_KEY_ID`; `None`
/// without either.
async fn wrapper(config: &Config) -> Result<Option<Wrapper>, StartError> {
    Ok(
        match (&config.key_encryption_key, &config.wrapping_key_id) {
            (Some(kek), _) => Some(Wrapper::Kek(
                token_kms::managed::KeyEncryptionKey::new(kek)
                    .map_err(|e| ConfigError::new("KEY_ENCRYPTION_KEY", e.to_string()))?,
            )),
            (None, Some(kms_key)) => Some(Wrapper::Kms {
                client: kms_client(config).await?,
                key_id: kms_key.clone(),
            }),
            (None, None) => None,
        },
    )
}

/// The timing of managed keys from the configuration.
///
/// # Errors
/// When `KEY_ROTATION_PERIOD` is shorter than the pre-publication time.
pub fn managed_timing(config: &Config) -> Result<Timing, StartError> {
    Timing::new(
        config.jwks_max_age,
        propagation_margin(config.jwks_max_age),
        config.key_rotation_period,
        config.access_token_ttl.saturating_add(VERIFIER_LEEWAY),
    )
    .map_err(|source| StartError::Kms {
        var: "KEY_ROTATION_PERIOD",
        source,
    })
}

fn ring_with(
    config: &Config,
    provider: &Arc<dyn CryptoProvider>,
    signer: Arc<dyn AsyncJwsSigner>,
    now: i64,
    follows_alias: bool,
) -> Result<Arc<KeyRing>, StartError> {
    let margin = propagation_margin(config.jwks_max_age);
    let lead = config.jwks_max_age.saturating_add(margin);
    // A followed alias switches as soon as the new key has been published for `lead`; a
    // provided key is only reported due after KEY_ROTATION_PERIOD.
    let period = if follows_alias {
        lead
    } else {
        config.key_rotation_period.max(lead)
    };
    let schedule = Schedule::new(lead, config.access_token_ttl, period)
        .map_err(|source| StartError::Kms {
            var: "KEY_ROTATION_PERIOD",
            source,
        })?
        .with_leeway(VERIFIER_LEEWAY.saturating_add(margin));
    let ring = Arc::new(KeyRing::new(schedule, provider.clone()).map_err(StartError::KeyRing)?);
    ring.rotate_now(signer, now).map_err(StartError::KeyRing)?;
    Ok(ring)
}

async fn file_signer(
    config: &Config,
    path: &std::path::Path,
    provider: &dyn CryptoProvider,
) -> Result<Arc<dyn AsyncJwsSigner>, StartError> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        StartError::ReadFile {
            var: "SIGNING_KEY_FILE",
            path: path.to_owned(),
            source,
        }
    })?);
    if text.contains("\"ciphertext\"") {
        return wrapped_signer(config, text.as_bytes(), provider).await;
    }
    let key = if text.trim_start().starts_with('{') {
        PrivateKey::from_jwk(text.as_bytes())
    } else {
        PrivateKey::from_pkcs8_pem(&text)
    }
    .map_err(|source| StartError::Key {
        var: "SIGNING_KEY_FILE",
        source,
    })?;
    local_signer(provider, &key)
}

/// `PUBLISHED_KEY_FILES`: public keys that verify and are published, never sign.
fn published_files(
    config: &Config,
    provider: &dyn CryptoProvider,
) -> Result<Vec<PublishedKey>, StartError> {
    let mut out = Vec::new();
    for path in &config.published_key_files {
        let bad = |reason: String| {
            StartError::Config(ConfigError::new(
                "PUBLISHED_KEY_FILES",
                format!("{}: {reason}", path.display()),
            ))
        };
        let text = std::fs::read_to_string(path).map_err(|source| StartError::ReadFile {
            var: "PUBLISHED_KEY_FILES",
            path: path.clone(),
            source,
        })?;
        let jwk = Jwk::from_public_key_text(&text).map_err(|e| bad(e.to_string()))?;
        let alg = jwk.algorithm().ok_or_else(|| {
            bad("the key's algorithm cannot be told (give a JWK with `alg`)".into())
        })?;
        let kid = jwk.kid.clone().unwrap_or_else(|| jwk.thumbprint());
        let jwk = jwk.with_kid(kid).with_alg(alg);
        let verifier = provider
            .verifying_key(&jwk, alg)
            .map_err(|e| bad(e.to_string()))?;
        tracing::info!(kid = jwk.kid.as_deref().unwrap_or_default(), %alg, path = %path.display(), "verification-only key published");
        out.push((jwk, verifier));
    }
    Ok(out)
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

/// `token-service keys list|rotate|retire KID`, against the fleet's store (`REDIS_URL`).
///
/// # Errors
/// Without managed keys or without Redis (the memory store lives inside one process and no
/// command can reach it), and any store or wrapping error.
pub async fn operator_command(
    config: &Config,
    op: &str,
    kid: Option<&str>,
) -> Result<String, StartError> {
    if config.key_source != KeySource::Managed {
        return Err(StartError::Config(ConfigError::new(
            "SIGNING_KEY_FILE",
            "keys list/rotate/retire act on managed keys; this configuration provides its key \
             (SIGNING_KEY_FILE or KMS_KEY_ID): rotate it by providing the next key (see README, Key management)",
        )));
    }
    let crate::config::StoreConfig::Redis(redis) = &config.store else {
        return Err(StartError::Config(ConfigError::new(
            "REDIS_URL",
            "keys list/rotate/retire act on the fleet's store: set REDIS_URL (and the fleet's KEY_ENCRYPTION_KEY); \
             the in-memory store lives inside one running process",
        )));
    };
    let store: Arc<dyn KeyStore> = Arc::new(
        token_store_redis::RedisStore::connect((**redis).clone())
            .await
            .map_err(StartError::Redis)?,
    );
    let provider = token_jwt::fastest_provider();
    // `Config` refuses REDIS_URL with managed keys and neither wrapping setting.
    let wrapper = wrapper(config).await?.ok_or_else(|| {
        ConfigError::new(
            "KEY_ENCRYPTION_KEY",
            "required with REDIS_URL: set KEY_ENCRYPTION_KEY or WRAPPING_KMS_KEY_ID",
        )
    })?;
    let keys = ManagedKeys::new(
        store,
        wrapper,
        provider,
        config.signing_alg,
        managed_timing(config)?,
    );
    let now = crate::clock::now();
    match (op, kid) {
        ("rotate", _) => {
            let record = keys.rotate(now).await.map_err(StartError::KeyRing)?;
            Ok(format!(
                "created key {} (generation {}): published now, signs from {} (in {} s)\n",
                record.kid,
                record.generation,
                record.activates_at,
                record.activates_at - now
            ))
        }
        ("public", Some(kid)) => {
            let (records, _) = keys.list(now).await.map_err(StartError::KeyRing)?;
            let record = records.iter().find(|r| r.kid == kid).ok_or_else(|| {
                StartError::KeyRing(token_kms::Error::UnknownKeyId(kid.to_owned()))
            })?;
            Ok(format!("{}\n", record.jwk.to_json()))
        }
        ("retire", Some(kid)) => {
            keys.retire(kid, now).await.map_err(StartError::KeyRing)?;
            Ok(format!(
                "retired key {kid}: every instance drops it within {} s; its tokens are refused from then on\n",
                propagation_margin(config.jwks_max_age)
            ))
        }
        _ => {
            let (records, plan) = keys.list(now).await.map_err(StartError::KeyRing)?;
            let mut out = format!(
                "{:<4} {:<43} {:<6} {:<9} {:>11} {:>11} {:>11} {:>11} {}\n",
                "gen",
                "kid",
                "alg",
                "state",
                "created",
                "activates",
                "retires",
                "unpublished",
                "wrapped"
            );
            let time = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), |t| t.to_string());
            for k in &plan.keys {
                let wrapped = records
                    .iter()
                    .find(|r| r.generation == k.generation)
                    .map_or("?", |r| r.wrapped.kind());
                let alg = records
                    .iter()
                    .find(|r| r.generation == k.generation)
                    .map_or("?", |r| r.alg.as_str());
                out.push_str(&format!(
                    "{:<4} {:<43} {:<6} {:<9} {:>11} {:>11} {:>11} {:>11} {}\n",
                    k.generation,
                    k.kid,
                    alg,
                    k.state.as_str(),
                    k.created_at,
                    k.activates_at,
                    time(k.retires_at),
                    time(k.unpublished_at),
                    wrapped
                ));
            }
            if let Some((due, signs)) = plan.next_key {
                out.push_str(&format!(
                    "next key due at {due} (in {} s), signing from {signs}\n",
                    due - now
                ));
            }
            Ok(out)
        }
    }
}
