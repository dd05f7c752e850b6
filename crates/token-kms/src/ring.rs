//! The key ring and its rotation schedule.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use token_jwt::{Algorithm, AsyncJwsSigner, CryptoProvider, Jwk, JwsVerifier, KeyResolver};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// When keys change state. All durations are in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Schedule {
    /// The longest time a verifier may cache the JWK Set (the `Cache-Control: max-age` the
    /// JWKS endpoint sends must not exceed it). A pending key is published at least this long
    /// before it signs.
    pub jwks_cache_ttl: u64,
    /// The longest lifetime of an access token. A retired key stays published at least this
    /// long (plus [`Schedule::leeway`]) after it stops signing.
    pub access_token_max_ttl: u64,
    /// How long a key signs before the next one takes over.
    pub rotation_period: u64,
    /// Clock skew verifiers tolerate on `exp`, added to how long retired keys stay published.
    pub leeway: u64,
}

impl Default for Schedule {
    /// JWKS cached for at most 10 minutes, access tokens of at most 1 hour, a new key every
    /// 30 days, 60 seconds of leeway.
    fn default() -> Self {
        Schedule {
            jwks_cache_ttl: 600,
            access_token_max_ttl: 3600,
            rotation_period: 30 * 24 * 3600,
            leeway: 60,
        }
    }
}

impl Schedule {
    /// A schedule with these durations (in seconds) and 60 seconds of leeway.
    ///
    /// # Errors
    /// [`Error::InvalidSchedule`] when `rotation_period` is zero or shorter than
    /// `jwks_cache_ttl` (the next key could never be published long enough before it signs).
    pub fn new(
        jwks_cache_ttl: u64,
        access_token_max_ttl: u64,
        rotation_period: u64,
    ) -> Result<Self> {
        let s = Schedule {
            jwks_cache_ttl,
            access_token_max_ttl,
            rotation_period,
            leeway: 60,
        };
        s.validate()?;
        Ok(s)
    }

    /// Sets the leeway in seconds.
    #[must_use]
    pub fn with_leeway(mut self, leeway: u64) -> Self {
        self.leeway = leeway;
        self
    }

    /// Checks the rules [`Schedule::new`] checks.
    ///
    /// # Errors
    /// [`Error::InvalidSchedule`].
    pub fn validate(&self) -> Result<()> {
        if self.rotation_period == 0 {
            return Err(Error::InvalidSchedule("rotation_period must be positive"));
        }
        if self.rotation_period < self.jwks_cache_ttl {
            return Err(Error::InvalidSchedule(
                "rotation_period must be at least jwks_cache_ttl",
            ));
        }
        Ok(())
    }

    fn secs(v: u64) -> i64 {
        i64::try_from(v).unwrap_or(i64::MAX)
    }

    /// How long a pending key is published before it may sign.
    fn publish_lead(&self) -> i64 {
        Self::secs(self.jwks_cache_ttl)
    }

    /// How long a retired key stays published.
    fn retire_for(&self) -> i64 {
        Self::secs(self.access_token_max_ttl).saturating_add(Self::secs(self.leeway))
    }

    fn rotation(&self) -> i64 {
        Self::secs(self.rotation_period)
    }
}

/// The state of a key in the ring. A removed key is simply no longer in the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyState {
    /// Published, not signing yet.
    Pending,
    /// Signing and published.
    Active,
    /// Published, no longer signing.
    Retiring,
}

/// A description of one key of the ring (no key material).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The `kid`.
    pub kid: String,
    /// The JWS algorithm.
    pub alg: Algorithm,
    /// The state.
    pub state: KeyState,
    /// When the key was first published.
    pub published_at: i64,
    /// When the key started signing.
    pub activated_at: Option<i64>,
    /// When the key stopped signing.
    pub retired_at: Option<i64>,
}

/// What a [`KeyRing::tick`] did and what the ring needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TickReport {
    /// Whether any key changed state (the version went up).
    pub changed: bool,
    /// No pending key exists and one should be added now so that it is published long enough
    /// before the next rotation is due. Call [`KeyRing::add_pending`].
    pub needs_pending_key: bool,
    /// The next time at which a `tick` would change something (a pending key becoming ready
    /// for a due rotation, a rotation, a retired key leaving), if known.
    pub next_change_at: Option<i64>,
}

#[derive(Clone)]
struct Entry {
    signer: Arc<dyn AsyncJwsSigner>,
    verifier: Arc<dyn JwsVerifier>,
    jwk: Jwk,
    state: KeyState,
    published_at: i64,
    activated_at: Option<i64>,
    retired_at: Option<i64>,
}

impl Entry {
    fn kid(&self) -> &str {
        self.signer.key_id()
    }

    fn info(&self) -> KeyInfo {
        KeyInfo {
            kid: self.kid().to_owned(),
            alg: self.signer.algorithm(),
            state: self.state,
            published_at: self.published_at,
            activated_at: self.activated_at,
            retired_at: self.retired_at,
        }
    }
}

/// An immutable view of the ring; replaced as a whole on every change.
struct Snapshot {
    version: u64,
    /// In publication order (oldest first).
    entries: Vec<Entry>,
    active: Option<Arc<dyn AsyncJwsSigner>>,
    verifiers: HashMap<String, Arc<dyn JwsVerifier>>,
}

impl Snapshot {
    fn build(version: u64, mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|a, b| {
            a.published_at
                .cmp(&b.published_at)
                .then_with(|| a.kid().cmp(b.kid()))
        });
        let active = entries
            .iter()
            .find(|e| e.state == KeyState::Active)
            .map(|e| Arc::clone(&e.signer));
        let verifiers = entries
            .iter()
            .map(|e| (e.kid().to_owned(), Arc::clone(&e.verifier)))
            .collect();
        Snapshot {
            version,
            entries,
            active,
            verifiers,
        }
    }
}

/// The key ring: which key signs, which keys are published, and when that changes.
///
/// A key moves through three states and then leaves the ring:
///
/// ```text
///  add_pending        tick: published ≥ jwks_cache_ttl        tick: retired ≥ access_token_max_ttl
///  ──────────► Pending ─────── and rotation due ──────► Active ──► Retiring ─────── + leeway ──────► (removed)
///              published,                              signing,    published,
///              not signing                             published   not signing
/// ```
///
/// - A new key is published at least one JWKS cache lifetime before it signs, so every verifier
///   that caches the JWK Set for at most that long knows the key before it sees a token.
/// - An old key stays published at least one access-token lifetime (plus leeway) after it last
///   signed, so every token it signed verifies until it expires.
///
/// Time is always a parameter (`now`, seconds since the Unix epoch): the ring never reads a
/// clock, so a test moves time by passing a larger number.
///
/// Reads ([`KeyRing::active`], [`KeyRing::published`], [`KeyResolver::resolve`]) take a
/// reference-counted snapshot under a read lock held only for the clone, never across an
/// `.await`. Changes build a new snapshot and swap it in.
///
/// Works with any [`AsyncJwsSigner`]: local keys (every `token_jwt::JwsSigner`), KMS-wrapped
/// keys and KMS signers, mixed freely.
pub struct KeyRing {
    schedule: Schedule,
    provider: Arc<dyn CryptoProvider>,
    current: RwLock<Arc<Snapshot>>,
    /// Serializes changes (read-modify-swap), so concurrent changes are not lost.
    writer: Mutex<()>,
    notify: watch::Sender<u64>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snap = self.snapshot();
        f.debug_struct("KeyRing")
            .field("schedule", &self.schedule)
            .field("version", &snap.version)
            .field(
                "keys",
                &snap.entries.iter().map(Entry::info).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// An empty ring. `provider` builds the verifiers of published keys (for
    /// [`KeyResolver`]).
    ///
    /// # Errors
    /// [`Error::InvalidSchedule`] when the schedule does not validate.
    pub fn new(schedule: Schedule, provider: Arc<dyn CryptoProvider>) -> Result<Self> {
        schedule.validate()?;
        Ok(KeyRing {
            schedule,
            provider,
            current: RwLock::new(Arc::new(Snapshot::build(0, Vec::new()))),
            writer: Mutex::new(()),
            notify: watch::channel(0).0,
        })
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs a change under the writer lock; `f` returns whether it changed anything.
    fn change<T>(&self, f: impl FnOnce(&mut Vec<Entry>) -> Result<(bool, T)>) -> Result<T> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let snap = self.snapshot();
        let mut entries = snap.entries.clone();
        let (changed, out) = f(&mut entries)?;
        if changed {
            let version = snap.version.wrapping_add(1);
            let next = Arc::new(Snapshot::build(version, entries));
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
            self.notify.send_replace(version);
        }
        Ok(out)
    }

    fn entry(&self, signer: Arc<dyn AsyncJwsSigner>, state: KeyState, now: i64) -> Result<Entry> {
        let alg = signer.algorithm();
        let jwk = signer
            .public_jwk()
            .clone()
            .with_kid(signer.key_id())
            .with_alg(alg);
        let verifier = self.provider.verifying_key(&jwk, alg)?;
        Ok(Entry {
            signer,
            verifier,
            jwk,
            state,
            published_at: now,
            activated_at: (state == KeyState::Active).then_some(now),
            retired_at: (state == KeyState::Retiring).then_some(now),
        })
    }

    fn insert(entries: &mut Vec<Entry>, entry: Entry) -> Result<()> {
        if entries.iter().any(|e| e.kid() == entry.kid()) {
            return Err(Error::DuplicateKeyId(entry.kid().to_owned()));
        }
        entries.push(entry);
        Ok(())
    }

    /// Publishes a new key that will start signing at a later [`KeyRing::tick`], once it has
    /// been published for `jwks_cache_ttl` and the rotation is due.
    ///
    /// # Errors
    /// [`Error::DuplicateKeyId`], or a [`Error::Jwt`] when the provider cannot build a verifier
    /// for the key.
    pub fn add_pending(&self, signer: Arc<dyn AsyncJwsSigner>, now: i64) -> Result<()> {
        let entry = self.entry(signer, KeyState::Pending, now)?;
        self.change(|entries| Self::insert(entries, entry).map(|()| (true, ())))
    }

    /// Publishes a key that no longer signs, for `access_token_max_ttl` + `leeway` from `now`:
    /// after a restart, the previous key whose tokens may still be in use.
    ///
    /// # Errors
    /// As [`KeyRing::add_pending`].
    pub fn add_retiring(&self, signer: Arc<dyn AsyncJwsSigner>, now: i64) -> Result<()> {
        let entry = self.entry(signer, KeyState::Retiring, now)?;
        self.change(|entries| Self::insert(entries, entry).map(|()| (true, ())))
    }

    /// Makes `signer` the active key at once; the previously active key (if any) retires.
    ///
    /// This is how the first key is installed at start-up. Later, it is the emergency path
    /// (the active key is suspected compromised): it skips the pre-publication period, so
    /// verifiers holding a JWK Set cached before `now` do not know the new key until they
    /// refetch. Verifiers that refetch on an unknown `kid` (like `token-jwks`'s fetcher)
    /// recover at once; others after at most `jwks_cache_ttl`. Prefer [`KeyRing::add_pending`]
    /// and [`KeyRing::tick`] for planned rotations. If `signer` is already pending, it is
    /// promoted.
    ///
    /// # Errors
    /// As [`KeyRing::add_pending`] (a `kid` that is already active or retiring is a
    /// [`Error::DuplicateKeyId`]).
    pub fn rotate_now(&self, signer: Arc<dyn AsyncJwsSigner>, now: i64) -> Result<()> {
        let entry = self.entry(signer, KeyState::Active, now)?;
        self.change(|entries| {
            let kid = entry.kid().to_owned();
            match entries.iter().position(|e| e.kid() == kid) {
                Some(i) => match entries.get_mut(i) {
                    Some(e) if e.state == KeyState::Pending => {
                        e.state = KeyState::Active;
                        e.activated_at = Some(now);
                    }
                    _ => return Err(Error::DuplicateKeyId(kid)),
                },
                None => entries.push(entry),
            }
            for e in entries.iter_mut() {
                if e.state == KeyState::Active && e.kid() != kid {
                    e.state = KeyState::Retiring;
                    e.retired_at = Some(now);
                }
            }
            Ok((true, ()))
        })
    }

    /// Removes a key at once, whatever its state (a compromised key). If it was the active
    /// key, the next [`KeyRing::tick`] promotes the oldest pending key even if it has not been
    /// published for a full `jwks_cache_ttl` yet; until then there is no active key.
    ///
    /// # Errors
    /// [`Error::UnknownKeyId`].
    pub fn remove(&self, kid: &str) -> Result<()> {
        self.change(|entries| {
            let before = entries.len();
            entries.retain(|e| e.kid() != kid);
            if entries.len() == before {
                return Err(Error::UnknownKeyId(kid.to_owned()));
            }
            Ok((true, ()))
        })
    }

    /// Advances the states to time `now`:
    ///
    /// 1. retiring keys retired for at least `access_token_max_ttl` + `leeway` are removed;
    /// 2. with no active key, the oldest pending key becomes active (even if not published
    ///    long enough: signing must go on);
    /// 3. when the active key has signed for `rotation_period`, the oldest pending key that has
    ///    been published for at least `jwks_cache_ttl` becomes active and the old key retires.
    ///    A due rotation waits, with the old key still signing, until such a key exists.
    ///
    /// Call it periodically (every few seconds to minutes: nothing happens between the times
    /// in [`TickReport::next_change_at`]). It never fails; adding the next key when
    /// [`TickReport::needs_pending_key`] says so is the caller's job.
    pub fn tick(&self, now: i64) -> TickReport {
        let s = self.schedule;
        let result = self.change(|entries| {
            let mut changed = false;
            let before = entries.len();
            entries.retain(|e| {
                !(e.state == KeyState::Retiring
                    && e.retired_at
                        .is_some_and(|at| at.saturating_add(s.retire_for()) <= now))
            });
            changed |= entries.len() != before;

            let oldest_pending = |entries: &Vec<Entry>, ready_only: bool| {
                entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.state == KeyState::Pending)
                    .filter(|(_, e)| {
                        !ready_only || e.published_at.saturating_add(s.publish_lead()) <= now
                    })
                    .min_by_key(|(_, e)| e.published_at)
                    .map(|(i, _)| i)
            };
            let active = entries.iter().position(|e| e.state == KeyState::Active);
            let promote = match active {
                None => oldest_pending(entries, false),
                Some(a) => {
                    let due = entries
                        .get(a)
                        .and_then(|e| e.activated_at)
                        .is_some_and(|at| at.saturating_add(s.rotation()) <= now);
                    if due {
                        oldest_pending(entries, true)
                    } else {
                        None
                    }
                }
            };
            if let Some(p) = promote {
                if let Some(old) = active.and_then(|a| entries.get_mut(a)) {
                    old.state = KeyState::Retiring;
                    old.retired_at = Some(now);
                }
                if let Some(new) = entries.get_mut(p) {
                    new.state = KeyState::Active;
                    new.activated_at = Some(now);
                }
                changed = true;
            }
            let report = TickReport {
                changed,
                ..Self::report(&s, entries, now)
            };
            Ok((changed, report))
        });
        // The closure never fails.
        result.unwrap_or_default()
    }

    fn report(s: &Schedule, entries: &[Entry], now: i64) -> TickReport {
        let active_since = entries
            .iter()
            .find(|e| e.state == KeyState::Active)
            .and_then(|e| e.activated_at);
        let has_pending = entries.iter().any(|e| e.state == KeyState::Pending);
        let rotation_due_at = active_since.map(|at| at.saturating_add(s.rotation()));
        let needs_pending_key = !has_pending
            && rotation_due_at.is_none_or(|due| now >= due.saturating_sub(s.publish_lead()));
        let mut next: Vec<i64> = entries
            .iter()
            .filter_map(|e| match e.state {
                KeyState::Retiring => e.retired_at.map(|at| at.saturating_add(s.retire_for())),
                KeyState::Pending => rotation_due_at
                    .map(|due| due.max(e.published_at.saturating_add(s.publish_lead()))),
                KeyState::Active => None,
            })
            .collect();
        next.extend(rotation_due_at);
        TickReport {
            changed: false,
            needs_pending_key,
            next_change_at: next.into_iter().filter(|t| *t > now).min(),
        }
    }

    /// The key that signs now.
    ///
    /// # Errors
    /// [`Error::NoActiveKey`].
    pub fn active(&self) -> Result<Arc<dyn AsyncJwsSigner>> {
        self.snapshot().active.clone().ok_or(Error::NoActiveKey)
    }

    /// The published keys (pending, active and retiring), oldest first, each with `kid`,
    /// `alg` and `use: sig`: the content of the JWK Set.
    pub fn published(&self) -> Vec<Jwk> {
        self.published_with_version().1
    }

    /// [`KeyRing::published`] together with the [`KeyRing::version`] it belongs to, read from
    /// one snapshot.
    pub fn published_with_version(&self) -> (u64, Vec<Jwk>) {
        let snap = self.snapshot();
        (
            snap.version,
            snap.entries.iter().map(|e| e.jwk.clone()).collect(),
        )
    }

    /// Every key with its state and times.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.snapshot().entries.iter().map(Entry::info).collect()
    }

    /// A counter that goes up on every change of the ring (any key added, promoted, retired or
    /// removed). Re-render a JWK Set only when it differs from the last rendered one.
    pub fn version(&self) -> u64 {
        self.snapshot().version
    }

    /// A handle that waits for changes.
    pub fn subscribe(&self) -> KeyRingWatch {
        KeyRingWatch {
            rx: self.notify.subscribe(),
        }
    }
}

/// A verifier for tokens signed by this ring: every published key (pending, active, retiring).
impl KeyResolver for KeyRing {
    fn resolve(&self, kid: &str) -> token_jwt::Result<Arc<dyn JwsVerifier>> {
        self.snapshot()
            .verifiers
            .get(kid)
            .cloned()
            .ok_or(token_jwt::Error::UnknownKeyId)
    }
}

/// Waits for [`KeyRing`] changes (see [`KeyRing::subscribe`]).
#[derive(Debug, Clone)]
pub struct KeyRingWatch {
    rx: watch::Receiver<u64>,
}

impl KeyRingWatch {
    /// Waits until the ring's version differs from the last one seen through this handle and
    /// returns the new version; `None` once the ring is dropped.
    pub async fn changed(&mut self) -> Option<u64> {
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }

    /// The latest version, marking it seen.
    pub fn version(&mut self) -> u64 {
        *self.rx.borrow_and_update()
    }
}

#[cfg(test)]
mod tests {
    //! Rotation sequences with a moving clock: at every step, which key signs and which keys
    //! are published; tokens signed before a rotation verify until they expire.

    use token_jwt::{AccessTokenBuilder, JwsEncoder, Policy, PrivateKey, RustCryptoProvider};

    use super::*;

    const T0: i64 = 1_700_000_000;

    /// JWKS cached 5 min, tokens live 15 min, rotation every hour, 30 s leeway.
    fn schedule() -> Schedule {
        Schedule::new(300, 900, 3600).unwrap().with_leeway(30)
    }

    fn ring() -> KeyRing {
        KeyRing::new(schedule(), Arc::new(RustCryptoProvider::new())).unwrap()
    }

    fn key(alg: Algorithm) -> Arc<dyn AsyncJwsSigner> {
        let provider = RustCryptoProvider::new();
        // `Arc<dyn JwsSigner>` is itself a `JwsSigner`, hence an `AsyncJwsSigner`.
        Arc::new(
            provider
                .signer(&PrivateKey::generate(alg).unwrap())
                .unwrap(),
        )
    }

    fn kid(k: &Arc<dyn AsyncJwsSigner>) -> String {
        k.key_id().to_owned()
    }

    fn published_kids(ring: &KeyRing) -> Vec<String> {
        ring.published()
            .into_iter()
            .map(|j| j.kid.unwrap())
            .collect()
    }

    fn states(ring: &KeyRing) -> Vec<(String, KeyState)> {
        ring.keys().into_iter().map(|k| (k.kid, k.state)).collect()
    }

    async fn token(ring: &KeyRing, now: i64) -> String {
        let signer = ring.active().unwrap();
        let claims = AccessTokenBuilder::new("https://issuer.example", 900)
            .subject("user")
            .build(now)
            .unwrap();
        JwsEncoder::for_signer(&*signer, "at+jwt")
            .encode_async(&claims, &*signer)
            .await
            .unwrap()
    }

    fn verify(ring: &KeyRing, token: &str, now: i64) -> token_jwt::Result<()> {
        Policy::builder()
            .leeway(30)
            .build()
            .verify(token, ring, now)
            .map(|_| ())
    }

    #[test]
    fn schedule_rules() {
        assert!(Schedule::new(300, 900, 0).is_err());
        assert!(Schedule::new(300, 900, 299).is_err());
        assert!(Schedule::new(300, 900, 300).is_ok());
        Schedule::default().validate().unwrap();
    }

    #[tokio::test]
    async fn planned_rotation_step_by_step() {
        let ring = ring();
        assert!(matches!(ring.active(), Err(Error::NoActiveKey)));
        assert_eq!(ring.version(), 0);
        assert!(ring.tick(T0).needs_pending_key);

        // Start-up: the first key signs at once.
        let a = key(Algorithm::ES256);
        ring.rotate_now(Arc::clone(&a), T0).unwrap();
        assert_eq!(kid(&ring.active().unwrap()), kid(&a));
        assert_eq!(published_kids(&ring), vec![kid(&a)]);
        let v1 = ring.version();
        assert_eq!(v1, 1);

        // Nothing to do until one JWKS cache lifetime before the rotation is due.
        let r = ring.tick(T0 + 100);
        assert!(!r.changed && !r.needs_pending_key);
        assert_eq!(r.next_change_at, Some(T0 + 3600));
        assert_eq!(
            ring.version(),
            v1,
            "a tick without change keeps the version"
        );
        let r = ring.tick(T0 + 3600 - 300);
        assert!(r.needs_pending_key, "the next key must be published now");

        // The next key is published, not signing.
        let b = key(Algorithm::ES256);
        ring.add_pending(Arc::clone(&b), T0 + 3300).unwrap();
        assert_eq!(published_kids(&ring), vec![kid(&a), kid(&b)]);
        assert_eq!(kid(&ring.active().unwrap()), kid(&a));
        let r = ring.tick(T0 + 3599);
        assert!(!r.changed && !r.needs_pending_key);
        assert_eq!(kid(&ring.active().unwrap()), kid(&a));

        // A token signed by A just before the rotation.
        let token_a = token(&ring, T0 + 3599).await;

        // Rotation due and B published for a full cache lifetime: B signs, A retires.
        let r = ring.tick(T0 + 3600);
        assert!(r.changed);
        assert_eq!(kid(&ring.active().unwrap()), kid(&b));
        assert_eq!(
            states(&ring),
            vec![(kid(&a), KeyState::Retiring), (kid(&b), KeyState::Active)]
        );
        assert_eq!(published_kids(&ring), vec![kid(&a), kid(&b)]);
        // A stays published for the token lifetime + leeway: 900 + 30 s after it retired.
        assert_eq!(r.next_change_at, Some(T0 + 3600 + 930));
        let token_b = token(&ring, T0 + 3600).await;

        // A's token verifies until it expires (iat + 900, + 30 s leeway) ...
        verify(&ring, &token_a, T0 + 3599 + 900 + 29).unwrap();
        assert!(matches!(
            verify(&ring, &token_a, T0 + 3599 + 900 + 30),
            Err(token_jwt::Error::Expired)
        ));
        // ... and A is still published then.
        ring.tick(T0 + 3600 + 929);
        assert_eq!(published_kids(&ring), vec![kid(&a), kid(&b)]);

        // Then A leaves; B's tokens still verify, A's kid is unknown.
        let r = ring.tick(T0 + 3600 + 930);
        assert!(r.changed);
        assert_eq!(published_kids(&ring), vec![kid(&b)]);
        verify(&ring, &token_b, T0 + 3600 + 929).unwrap();
        let token_b2 = token(&ring, T0 + 3600 + 930).await;
        verify(&ring, &token_b2, T0 + 3600 + 930).unwrap();
        assert!(matches!(
            verify(&ring, &token_a, T0 + 3600 + 930),
            Err(token_jwt::Error::UnknownKeyId)
        ));
        assert!(ring.version() > v1);
    }

    #[tokio::test]
    async fn a_due_rotation_waits_for_a_key_published_long_enough() {
        let ring = ring();
        let a = key(Algorithm::ES256);
        ring.rotate_now(Arc::clone(&a), T0).unwrap();
        // Rotation is due at T0 + 3600, but the next key only arrives then.
        let b = key(Algorithm::ES384);
        ring.add_pending(Arc::clone(&b), T0 + 3600).unwrap();
        let r = ring.tick(T0 + 3600);
        assert!(!r.changed);
        assert_eq!(r.next_change_at, Some(T0 + 3900));
        assert_eq!(kid(&ring.active().unwrap()), kid(&a));
        // Verifiers that fetched the JWKS just before B was published may cache it for 300 s:
        // A signs until then.
        ring.tick(T0 + 3899);
        assert_eq!(kid(&ring.active().unwrap()), kid(&a));
        assert!(ring.tick(T0 + 3900).changed);
        assert_eq!(kid(&ring.active().unwrap()), kid(&b));
        assert_eq!(ring.active().unwrap().algorithm(), Algorithm::ES384);
    }

    #[tokio::test]
    async fn several_rotations_and_the_published_set_at_every_step() {
        let ring = ring();
        let keys: Vec<_> = (0..4).map(|_| key(Algorithm::ES256)).collect();
        ring.rotate_now(Arc::clone(&keys[0]), T0).unwrap();
        let mut tokens = Vec::new();
        // Every hour: publish the next key 5 minutes early, rotate on the hour.
        for (i, next) in keys.iter().enumerate().skip(1) {
            let hour = T0 + 3600 * i64::try_from(i).unwrap();
            let report = ring.tick(hour - 300);
            assert!(report.needs_pending_key, "step {i}");
            ring.add_pending(Arc::clone(next), hour - 300).unwrap();
            tokens.push((token(&ring, hour - 1).await, hour - 1));
            assert!(ring.tick(hour).changed, "step {i}");
            assert_eq!(kid(&ring.active().unwrap()), kid(next), "step {i}");
            // Published: the previous key (retiring, tokens up to 15 min old) and the new one.
            // Keys older than that are gone.
            assert_eq!(
                published_kids(&ring),
                vec![kid(&keys[i - 1]), kid(next)],
                "step {i}"
            );
            // Every token minted so far verifies until its expiry.
            let now = hour + 10;
            for (t, iat) in &tokens {
                if now < iat + 900 {
                    verify(&ring, t, now).unwrap();
                }
            }
            // Retirement ends within the hour.
            ring.tick(hour + 930);
            assert_eq!(published_kids(&ring), vec![kid(next)], "step {i}");
        }
    }

    #[tokio::test]
    async fn emergency_rotation_and_removal() {
        let ring = ring();
        let a = key(Algorithm::ES256);
        let b = key(Algorithm::ES256);
        let c = key(Algorithm::EdDSA);
        ring.rotate_now(Arc::clone(&a), T0).unwrap();
        let token_a = token(&ring, T0).await;
        // A is compromised: B signs at once, A is removed at once.
        ring.rotate_now(Arc::clone(&b), T0 + 10).unwrap();
        assert_eq!(kid(&ring.active().unwrap()), kid(&b));
        ring.remove(&kid(&a)).unwrap();
        assert_eq!(published_kids(&ring), vec![kid(&b)]);
        assert!(verify(&ring, &token_a, T0 + 20).is_err());
        assert!(matches!(ring.remove(&kid(&a)), Err(Error::UnknownKeyId(_))));
        // B removed too while C is pending: the next tick promotes C even though it was not
        // published for a full cache lifetime (signing must go on).
        ring.add_pending(Arc::clone(&c), T0 + 20).unwrap();
        ring.remove(&kid(&b)).unwrap();
        assert!(matches!(ring.active(), Err(Error::NoActiveKey)));
        assert!(ring.tick(T0 + 21).changed);
        assert_eq!(kid(&ring.active().unwrap()), kid(&c));
        // A pending key can be promoted by rotate_now; a retiring one cannot come back.
        let d = key(Algorithm::ES256);
        ring.add_pending(Arc::clone(&d), T0 + 30).unwrap();
        assert!(matches!(
            ring.add_pending(Arc::clone(&d), T0 + 31),
            Err(Error::DuplicateKeyId(_))
        ));
        ring.rotate_now(Arc::clone(&d), T0 + 40).unwrap();
        assert_eq!(
            states(&ring),
            vec![(kid(&c), KeyState::Retiring), (kid(&d), KeyState::Active)]
        );
        assert!(matches!(
            ring.rotate_now(Arc::clone(&c), T0 + 50),
            Err(Error::DuplicateKeyId(_))
        ));
    }

    #[tokio::test]
    async fn watchers_see_every_change() {
        let ring = Arc::new(ring());
        let mut watch = ring.subscribe();
        assert_eq!(watch.version(), 0);
        ring.rotate_now(key(Algorithm::ES256), T0).unwrap();
        assert_eq!(watch.changed().await, Some(1));
        ring.tick(T0 + 1);
        ring.add_pending(key(Algorithm::ES256), T0 + 2).unwrap();
        assert_eq!(watch.changed().await, Some(2));
        let (version, keys) = ring.published_with_version();
        assert_eq!((version, keys.len()), (2, 2));
        for jwk in keys {
            assert_eq!(jwk.key_use.as_deref(), Some("sig"));
            assert!(jwk.alg.is_some() && jwk.kid.is_some());
        }
        let waiter = tokio::spawn(async move { watch.changed().await });
        ring.tick(T0 + 3600);
        assert_eq!(waiter.await.unwrap(), Some(3));
        assert!(format!("{ring:?}").contains("Active"));
    }

    #[tokio::test]
    async fn concurrent_readers_and_writers() {
        let ring = Arc::new(ring());
        ring.rotate_now(key(Algorithm::ES256), T0).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let ring = Arc::clone(&ring);
            tasks.push(tokio::spawn(async move {
                for i in 0..200 {
                    let t = token(&ring, T0 + i).await;
                    verify(&ring, &t, T0 + i).unwrap();
                }
            }));
        }
        for i in 1..=20i64 {
            ring.add_pending(key(Algorithm::ES256), T0 + i * 3600 - 300)
                .unwrap();
            ring.tick(T0 + i * 3600);
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            ring.keys()
                .iter()
                .filter(|k| k.state == KeyState::Active)
                .count(),
            1
        );
    }
}
