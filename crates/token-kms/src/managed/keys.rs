//! [`ManagedKeys`]: one instance's view of the fleet's managed keys, kept in step with the
//! store.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use token_jwt::{Algorithm, CryptoProvider, Jwk, JwsSigner, JwsVerifier, KeyResolver, PrivateKey};

use super::kek::KeyEncryptionKey;
use super::plan::{ManagedState, Plan, Timing, plan};
use super::record::{CHECK_FIELD, KeyRecord, Wrapped, generation_field, retired_field};
use super::store::KeyStore;
use crate::error::{Error, Result};

/// How private keys are wrapped in the store.
pub enum Wrapper {
    /// Under the fleet's [`KeyEncryptionKey`] (`KEY_ENCRYPTION_KEY`).
    Kek(KeyEncryptionKey),
    /// KMS envelope encryption under a symmetric KMS key (`WRAPPING_KMS_KEY_ID`): one
    /// `Encrypt` per new key, one `Decrypt` per key and instance; signing stays local.
    #[cfg(feature = "aws")]
    Kms {
        /// The client.
        client: crate::KmsClient,
        /// The symmetric KMS key (id, ARN or alias) that wraps and alone may unwrap.
        key_id: String,
    },
}

impl fmt::Debug for Wrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wrapper::Kek(_) => f.write_str("Wrapper::Kek(..)"),
            #[cfg(feature = "aws")]
            Wrapper::Kms { key_id, .. } => write!(f, "Wrapper::Kms({key_id})"),
        }
    }
}

impl Wrapper {
    /// `"kek"` or `"kms"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Wrapper::Kek(_) => "kek",
            #[cfg(feature = "aws")]
            Wrapper::Kms { .. } => "kms",
        }
    }

    async fn new_key(
        &self,
        alg: Algorithm,
        provider: &dyn CryptoProvider,
    ) -> Result<(Wrapped, Arc<dyn JwsSigner>)> {
        match self {
            Wrapper::Kek(kek) => {
                let key = PrivateKey::generate(alg)?;
                Ok((Wrapped::Kek(kek.wrap(&key)?), provider.signer(&key)?))
            }
            #[cfg(feature = "aws")]
            Wrapper::Kms { client, key_id } => {
                let blob = crate::wrap_new_key(client, key_id, alg).await?;
                let key = crate::WrappedKey::unwrap(client, &blob, key_id, provider).await?;
                Ok((Wrapped::Kms(blob.to_json()), Arc::new(key)))
            }
        }
    }

    async fn unwrap(
        &self,
        record: &KeyRecord,
        provider: &dyn CryptoProvider,
    ) -> Result<Arc<dyn JwsSigner>> {
        let signer: Arc<dyn JwsSigner> = match (self, &record.wrapped) {
            (Wrapper::Kek(kek), Wrapped::Kek(sealed)) => {
                provider.signer(&kek.unwrap(record.alg, &record.kid, sealed)?)?
            }
            #[cfg(feature = "aws")]
            (Wrapper::Kms { client, key_id }, Wrapped::Kms(blob)) => {
                let blob = crate::WrappedKeyBlob::from_json(blob.as_bytes())?;
                if blob.key_id() != record.kid || blob.algorithm() != record.alg {
                    return Err(Error::TamperedBlob(
                        "the KMS blob is for another kid or alg than its record",
                    ));
                }
                Arc::new(crate::WrappedKey::unwrap(client, &blob, key_id, provider).await?)
            }
            (wrapper, wrapped) => {
                return Err(Error::WrongWrapper {
                    stored: wrapped.kind(),
                    configured: wrapper.kind(),
                });
            }
        };
        if signer.key_id() != record.kid || signer.algorithm() != record.alg {
            return Err(Error::TamperedBlob(
                "the unwrapped key is not the record's public key",
            ));
        }
        Ok(signer)
    }
}

/// One key change seen by an instance, for its log line and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The key.
    pub kid: String,
    /// Its previous state here (`None`: first seen).
    pub from: Option<ManagedState>,
    /// Its new state.
    pub to: ManagedState,
}

/// What a [`ManagedKeys::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// The `kid` of the key this instance created (it won the claim of the next generation).
    pub created: Option<String>,
    /// Records that cannot be used, with the reason: they are neither published nor used.
    pub refused: Vec<(String, String)>,
    /// State changes since the previous plan.
    pub transitions: Vec<Transition>,
    /// Fields of expired keys deleted from the store.
    pub pruned: usize,
}

struct Usable {
    signer: Arc<dyn JwsSigner>,
    verifier: Arc<dyn JwsVerifier>,
}

/// One consistent view: records, the plan at some time, and what signs.
struct View {
    records: Vec<KeyRecord>,
    retired: HashMap<String, i64>,
    plan: Plan,
    signer: Option<Arc<dyn JwsSigner>>,
    published: Vec<Jwk>,
    verifiers: HashMap<String, Arc<dyn JwsVerifier>>,
}

/// Cache of unwrapped keys, kept across syncs (each record is unwrapped once per instance).
#[derive(Default)]
struct Cache {
    usable: HashMap<String, Usable>,
    refused: HashMap<String, String>,
    check_verified: bool,
}

/// The store's fields, sorted into their kinds.
#[derive(Default)]
struct Stored {
    records: Vec<KeyRecord>,
    retired: HashMap<String, i64>,
    check: Option<String>,
    /// Generation fields that do not parse, with the reason.
    malformed: Vec<(String, String)>,
}

/// One instance's managed keys.
///
/// Call [`ManagedKeys::sync`] when the store signals a change and periodically (the period is
/// part of [`Timing::margin`]), and [`ManagedKeys::replan`] at the plan's
/// [`Plan::next_change_at`] (or simply every second): signing switches keys by the clock, with
/// no store read needed. [`ManagedKeys::signer`], [`ManagedKeys::published`] and the
/// [`KeyResolver`] read an `Arc` snapshot and never wait on the store.
pub struct ManagedKeys {
    store: Arc<dyn KeyStore>,
    wrapper: Wrapper,
    provider: Arc<dyn CryptoProvider>,
    alg: Algorithm,
    timing: Timing,
    cache: tokio::sync::Mutex<Cache>,
    view: RwLock<Arc<View>>,
}

impl fmt::Debug for ManagedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedKeys")
            .field("store", &self.store)
            .field("wrapper", &self.wrapper)
            .field("alg", &self.alg)
            .field("timing", &self.timing)
            .field("plan", &self.plan())
            .finish_non_exhaustive()
    }
}

impl ManagedKeys {
    /// Keys of algorithm `alg` in `store`, wrapped by `wrapper`. Nothing is read until the
    /// first [`ManagedKeys::sync`].
    pub fn new(
        store: Arc<dyn KeyStore>,
        wrapper: Wrapper,
        provider: Arc<dyn CryptoProvider>,
        alg: Algorithm,
        timing: Timing,
    ) -> Self {
        let empty = View {
            records: Vec::new(),
            retired: HashMap::new(),
            plan: plan(&[], &HashMap::new(), &timing, 0),
            signer: None,
            published: Vec::new(),
            verifiers: HashMap::new(),
        };
        ManagedKeys {
            store,
            wrapper,
            provider,
            alg,
            timing,
            cache: tokio::sync::Mutex::new(Cache::default()),
            view: RwLock::new(Arc::new(empty)),
        }
    }

    /// The timing.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    fn snapshot(&self) -> Arc<View> {
        Arc::clone(&self.view.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The plan as of the last sync or replan.
    pub fn plan(&self) -> Plan {
        self.snapshot().plan.clone()
    }

    /// The records as of the last sync (refused ones included).
    pub fn records(&self) -> Vec<KeyRecord> {
        self.snapshot().records.clone()
    }

    /// The key that signs now.
    ///
    /// # Errors
    /// [`Error::NoActiveKey`] before the first successful sync, or when no usable key exists.
    pub fn signer(&self) -> Result<Arc<dyn JwsSigner>> {
        self.snapshot().signer.clone().ok_or(Error::NoActiveKey)
    }

    /// The published public keys (pending, active, retiring), by generation: the JWK Set.
    pub fn published(&self) -> Vec<Jwk> {
        self.snapshot().published.clone()
    }

    /// Reads the store, checks the wrapping key, unwraps keys not seen before, creates the
    /// next generation when it is due (exactly one instance wins each), deletes expired
    /// records, and installs the new plan.
    ///
    /// # Errors
    /// - [`Error::KeyStore`] when the store fails: nothing changes here, the current key
    ///   keeps signing and no key is created;
    /// - [`Error::WrongKeyEncryptionKey`] when the stored check value was made under another
    ///   `KEY_ENCRYPTION_KEY`.
    pub async fn sync(&self, now: i64) -> Result<SyncReport> {
        let mut cache = self.cache.lock().await;
        let mut report = SyncReport::default();
        let (mut records, mut retired) = self.load(&mut cache).await?;
        if self.usable_plan(&cache, &records, &retired, now).key_due() {
            let created = self.create(&cache, &records, &retired, now, None).await?;
            if let Some((record, usable)) = created {
                report.created = Some(record.kid.clone());
                cache.usable.insert(record.kid.clone(), usable);
            }
            // Won or lost, the store now holds the next generation: read it back.
            (records, retired) = self.load(&mut cache).await?;
        }
        report.pruned = self.prune(&records, &retired, now).await?;
        report.transitions = self.install(&cache, records, retired, now);
        report.refused = cache
            .refused
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        report.refused.sort();
        Ok(report)
    }

    /// Recomputes the plan at `now` from the records of the last sync (no store access) and
    /// returns the state changes.
    pub fn replan(&self, now: i64) -> Vec<Transition> {
        let Ok(cache) = self.cache.try_lock() else {
            // A sync is running and will install a fresh plan.
            return Vec::new();
        };
        let view = self.snapshot();
        self.install(&cache, view.records.clone(), view.retired.clone(), now)
    }

    /// An early rotation (`keys rotate`): creates the next generation now, to sign after the
    /// usual pre-publication time (`max_age + margin`).
    ///
    /// # Errors
    /// [`Error::RotationPending`] when a next key already exists; store and wrapping errors.
    pub async fn rotate(&self, now: i64) -> Result<KeyRecord> {
        let mut cache = self.cache.lock().await;
        let (records, retired) = self.load(&mut cache).await?;
        let p = self.usable_plan(&cache, &records, &retired, now);
        if let Some(pending) = p
            .keys
            .iter()
            .find(|k| k.state == ManagedState::Pending && p.signing != Some(k.generation))
        {
            return Err(Error::RotationPending {
                kid: pending.kid.clone(),
                activates_at: pending.activates_at,
            });
        }
        let activates_at =
            now.saturating_add(i64::try_from(self.timing.lead()).unwrap_or(i64::MAX));
        match self
            .create(&cache, &records, &retired, now, Some(activates_at))
            .await?
        {
            Some((record, usable)) => {
                cache.usable.insert(record.kid.clone(), usable);
                Ok(record)
            }
            None => Err(Error::RotationPending {
                kid: String::from("(created by another instance just now)"),
                activates_at,
            }),
        }
    }

    /// Emergency retirement of `kid` (`keys retire`): from every instance's next sync on, the
    /// key is out of the JWK Set and its tokens are refused; if it was signing, a new key is
    /// created at once and signs at once.
    ///
    /// # Errors
    /// [`Error::UnknownKeyId`] when no record has this `kid`; store errors.
    pub async fn retire(&self, kid: &str, now: i64) -> Result<()> {
        if !self.read().await?.records.iter().any(|r| r.kid == kid) {
            return Err(Error::UnknownKeyId(kid.to_owned()));
        }
        self.store.put(&retired_field(kid), &now.to_string()).await
    }

    /// Reads the store without changing anything (no key created, nothing unwrapped): every
    /// parsable record and the plan over them at `now`, for `keys list`.
    ///
    /// # Errors
    /// [`Error::KeyStore`].
    pub async fn list(&self, now: i64) -> Result<(Vec<KeyRecord>, Plan)> {
        let Stored {
            mut records,
            retired,
            ..
        } = self.read().await?;
        records.sort_by_key(|r| r.generation);
        let p = plan(&records, &retired, &self.timing, now);
        Ok((records, p))
    }

    /// Every field of the store, sorted into its kinds (nothing unwrapped).
    async fn read(&self) -> Result<Stored> {
        let mut stored = Stored::default();
        for (field, value) in self.store.load().await? {
            if field == CHECK_FIELD {
                stored.check = Some(value);
            } else if let Some(kid) = field.strip_prefix("retired:") {
                // An unreadable time counts as retired since ever: fail safe.
                let at = value.trim().parse().unwrap_or(i64::MIN);
                stored.retired.insert(kid.to_owned(), at);
            } else if field.starts_with("gen:") {
                match KeyRecord::from_json(value.as_bytes()) {
                    Ok(r) => stored.records.push(r),
                    Err(e) => stored.malformed.push((field, e.to_string())),
                }
            }
        }
        Ok(stored)
    }

    /// [`ManagedKeys::read`], the wrapping key checked, and every record not seen before
    /// unwrapped (or refused) into `cache`.
    async fn load(&self, cache: &mut Cache) -> Result<(Vec<KeyRecord>, HashMap<String, i64>)> {
        let Stored {
            records,
            retired,
            check,
            malformed,
        } = self.read().await?;
        cache.refused.extend(malformed);
        self.check_wrapping_key(cache, check).await?;
        for r in &records {
            if cache.usable.contains_key(&r.kid) || cache.refused.contains_key(&r.kid) {
                continue;
            }
            match self.wrapper.unwrap(r, &*self.provider).await {
                Ok(signer) => {
                    let verifier = self.provider.verifying_key(&r.jwk, r.alg)?;
                    cache
                        .usable
                        .insert(r.kid.clone(), Usable { signer, verifier });
                }
                // A KMS that cannot be reached now may answer later: not a refusal.
                Err(e) if e.is_unavailability() || matches!(e, Error::CircuitOpen { .. }) => {
                    return Err(e);
                }
                Err(e) => {
                    cache.refused.insert(r.kid.clone(), e.to_string());
                }
            }
        }
        Ok((records, retired))
    }

    #[cfg_attr(
        not(feature = "aws"),
        allow(
            clippy::infallible_destructuring_match,
            reason = "without `aws` the key-encryption key is the only wrapper"
        )
    )]
    async fn check_wrapping_key(&self, cache: &mut Cache, check: Option<String>) -> Result<()> {
        let kek = match &self.wrapper {
            Wrapper::Kek(kek) => kek,
            // KMS checks its own key: a blob of another key does not decrypt.
            #[cfg(feature = "aws")]
            Wrapper::Kms { .. } => return Ok(()),
        };
        if cache.check_verified {
            return match check {
                Some(c) if !kek.verifies(&c) => Err(Error::WrongKeyEncryptionKey),
                _ => Ok(()),
            };
        }
        let check = match check {
            Some(c) => c,
            None => {
                let mine = kek.check_value()?;
                if self.store.insert_new(CHECK_FIELD, &mine).await? {
                    mine
                } else {
                    self.store
                        .load()
                        .await?
                        .into_iter()
                        .find(|(f, _)| f == CHECK_FIELD)
                        .map(|(_, v)| v)
                        .unwrap_or_default()
                }
            }
        };
        if !kek.verifies(&check) {
            return Err(Error::WrongKeyEncryptionKey);
        }
        cache.check_verified = true;
        Ok(())
    }

    /// The plan over the records this instance can use (refused ones count as absent, so a
    /// fleet whose signing record was tampered with creates a new key).
    fn usable_plan(
        &self,
        cache: &Cache,
        records: &[KeyRecord],
        retired: &HashMap<String, i64>,
        now: i64,
    ) -> Plan {
        let usable: Vec<KeyRecord> = records
            .iter()
            .filter(|r| cache.usable.contains_key(&r.kid))
            .cloned()
            .collect();
        plan(&usable, retired, &self.timing, now)
    }

    async fn create(
        &self,
        cache: &Cache,
        records: &[KeyRecord],
        retired: &HashMap<String, i64>,
        now: i64,
        activates_at: Option<i64>,
    ) -> Result<Option<(KeyRecord, Usable)>> {
        let p = self.usable_plan(cache, records, retired, now);
        let Some(activates_at) = activates_at.or(p.next_key.map(|(_, at)| at)) else {
            return Ok(None);
        };
        let generation = records
            .iter()
            .map(|r| r.generation)
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        let (wrapped, signer) = self.wrapper.new_key(self.alg, &*self.provider).await?;
        let record = KeyRecord::new(
            generation,
            signer.public_jwk(),
            self.alg,
            wrapped,
            now,
            activates_at,
        );
        if !self
            .store
            .insert_new(&generation_field(generation), &record.to_json())
            .await?
        {
            // Another instance claimed this generation first: its key is the next one.
            return Ok(None);
        }
        let verifier = self.provider.verifying_key(&record.jwk, record.alg)?;
        Ok(Some((record, Usable { signer, verifier })))
    }

    async fn prune(
        &self,
        records: &[KeyRecord],
        retired: &HashMap<String, i64>,
        now: i64,
    ) -> Result<usize> {
        let p = plan(records, retired, &self.timing, now);
        let newest = records.iter().map(|r| r.generation).max().unwrap_or(0);
        let retain = i64::try_from(self.timing.retain()).unwrap_or(i64::MAX);
        let mut fields = Vec::new();
        for k in &p.keys {
            // The newest record stays: it carries the generation counter.
            if k.generation == newest {
                continue;
            }
            let gone = match k.state {
                ManagedState::Expired => true,
                // A retired record is kept as long as its tokens could have lived, so that
                // every instance learns that it is retired.
                ManagedState::Retired => k
                    .retires_at
                    .is_some_and(|at| at.saturating_add(retain) <= now),
                _ => false,
            };
            if gone {
                fields.push(generation_field(k.generation));
                if retired.contains_key(&k.kid) {
                    fields.push(retired_field(&k.kid));
                }
            }
        }
        if !fields.is_empty() {
            self.store.remove(&fields).await?;
        }
        Ok(fields.len())
    }

    fn install(
        &self,
        cache: &Cache,
        records: Vec<KeyRecord>,
        retired: HashMap<String, i64>,
        now: i64,
    ) -> Vec<Transition> {
        let p = self.usable_plan(cache, &records, &retired, now);
        let signer = p
            .signing
            .and_then(|g| p.keys.iter().find(|k| k.generation == g))
            .and_then(|k| cache.usable.get(&k.kid))
            .map(|u| Arc::clone(&u.signer));
        let published_plans: Vec<_> = p.published().collect();
        let published = published_plans
            .iter()
            .filter_map(|k| records.iter().find(|r| r.kid == k.kid))
            .map(|r| r.jwk.clone())
            .collect();
        let verifiers = published_plans
            .iter()
            .filter_map(|k| {
                cache
                    .usable
                    .get(&k.kid)
                    .map(|u| (k.kid.clone(), Arc::clone(&u.verifier)))
            })
            .collect();
        let mut guard = self.view.write().unwrap_or_else(PoisonError::into_inner);
        let before: HashMap<&str, ManagedState> = guard
            .plan
            .keys
            .iter()
            .map(|k| (k.kid.as_str(), k.state))
            .collect();
        let transitions: Vec<Transition> = p
            .keys
            .iter()
            .filter_map(|k| {
                let from = before.get(k.kid.as_str()).copied();
                (from != Some(k.state)).then(|| Transition {
                    kid: k.kid.clone(),
                    from,
                    to: k.state,
                })
            })
            .collect();
        let gone: HashSet<&str> = p.keys.iter().map(|k| k.kid.as_str()).collect();
        let mut transitions = transitions;
        transitions.extend(
            before
                .iter()
                .filter(|(kid, _)| !gone.contains(*kid))
                .map(|(kid, from)| Transition {
                    kid: (*kid).to_owned(),
                    from: Some(*from),
                    to: ManagedState::Expired,
                })
                .filter(|t| t.from != Some(ManagedState::Expired)),
        );
        *guard = Arc::new(View {
            records,
            retired,
            plan: p,
            signer,
            published,
            verifiers,
        });
        transitions
    }
}

/// Verifies tokens of the published managed keys only: a retired or expired key's tokens are
/// refused.
impl KeyResolver for ManagedKeys {
    fn resolve(&self, kid: &str) -> token_jwt::Result<Arc<dyn JwsVerifier>> {
        self.snapshot()
            .verifiers
            .get(kid)
            .cloned()
            .ok_or(token_jwt::Error::UnknownKeyId)
    }
}
