//! The in-memory backend: the embedded default, and the reference the conformance suite is
//! checked against.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::decide::{
    RevokeOutcome, RevokeRequest, RotateOutcome, RotateRequest, decide, decide_revoke,
    decide_revoke_absent,
};
use crate::error::{Error, Result};
use crate::events::{DEFAULT_EVENT_CAPACITY, RevocationBroadcaster, RevocationSubscription};
use crate::family::{Family, RevocationEvent};
use crate::store::{FamilyStore, RevocationList, StoreFuture};
use crate::token::{FamilyId, TokenHash};

const SHARDS: usize = 16;
/// A shard sweeps its expired entries every this many writes (amortised O(1) per write).
const PURGE_EVERY: u32 = 256;
/// How long the subject index keeps a family's id past the family's absolute expiry, in
/// seconds. No access token outlives that expiry, but verifiers still accept one a little past
/// its `exp` (token-jwt's default leeway is 30 s) and clocks disagree; two minutes covers both.
const INDEX_MARGIN: i64 = 120;

/// What an outcome writes, given the revocation TTL: the family state to store and the
/// revocation-list entry to write.
type Effect<O> = fn(&O, i64) -> (Option<&Family>, Option<RevocationEvent>);

/// One shard: the families whose id falls here and their revocation-list entries, under one
/// lock (like one Redis Cluster hash slot holds a family and its list entry).
#[derive(Default)]
struct Shard {
    families: HashMap<FamilyId, Family>,
    revoked: HashMap<FamilyId, RevocationEvent>,
    writes: u32,
}

impl Shard {
    /// Drops expired families and lapsed list entries; returns how many families were dropped.
    fn purge(&mut self, now: i64) -> usize {
        let before = self.families.len();
        self.families.retain(|_, f| now < f.expires_at());
        self.revoked.retain(|_, e| e.is_listed(now));
        before.saturating_sub(self.families.len())
    }

    /// Counts a write and sweeps every [`PURGE_EVERY`] writes; returns how many families a
    /// sweep dropped, when one ran.
    fn note_write(&mut self, now: i64) -> Option<usize> {
        self.writes = self.writes.wrapping_add(1);
        self.writes
            .is_multiple_of(PURGE_EVERY)
            .then(|| self.purge(now))
    }
}

/// The subject index: each subject's family ids, every one kept until its family's absolute
/// expiry plus [`INDEX_MARGIN`], whether the family is still stored or already forgotten. A
/// family idle past its idle TTL is forgotten while an access token minted at its last
/// refresh may live on; revoking the subject must still list it (a tombstone).
#[derive(Default)]
struct SubjectIndex {
    /// Subject → family id → when the entry lapses.
    by_subject: HashMap<String, HashMap<FamilyId, i64>>,
    /// The same entries in the order they lapse, so each is dropped in O(log n).
    by_expiry: BTreeMap<(i64, FamilyId), String>,
}

impl SubjectIndex {
    fn insert(&mut self, subject: &str, id: FamilyId, until: i64) {
        let ids = self.by_subject.entry(subject.to_owned()).or_default();
        if let Some(previous) = ids.insert(id, until) {
            self.by_expiry.remove(&(previous, id));
        }
        self.by_expiry.insert((until, id), subject.to_owned());
    }

    /// Drops the entries lapsed at `now`.
    fn sweep(&mut self, now: i64) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, id), subject) = entry.remove_entry();
            if let Some(ids) = self.by_subject.get_mut(&subject) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_subject.remove(&subject);
                }
            }
        }
    }

    fn ids(&self, subject: &str) -> Vec<FamilyId> {
        self.by_subject
            .get(subject)
            .map(|ids| ids.keys().copied().collect())
            .unwrap_or_default()
    }
}

/// In-memory [`FamilyStore`] and [`RevocationList`].
///
/// Families are spread over 16 mutex-guarded shards by id; each rotation or revocation runs
/// [`decide`] / [`decide_revoke`] (or [`decide_revoke_absent`] for a family it does not
/// keep) under its shard's lock, which makes it atomic. The subject index is a separate
/// structure (as it is a separate key on Redis), so revoking a subject walks it family by
/// family; it keeps a family's id until two minutes past the family's absolute expiry, after
/// the family itself is forgotten, so revoking the subject lists a tombstone for it.
///
/// Bounded: expired families and lapsed revocation entries are swept lazily (a shard every 256
/// writes, with the writer's `now`) and by [`MemoryStore::purge_expired`], subject index
/// entries once they lapse (on every creation and sweep); an optional
/// [`MemoryStore::with_max_families`] limit refuses new families beyond it.
///
/// State lives in this process only: instances do not share it, and it is lost on restart.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    subjects: Mutex<SubjectIndex>,
    events: RevocationBroadcaster,
    families: AtomicUsize,
    max_families: usize,
}

impl MemoryStore {
    /// An empty store without a family limit.
    pub fn new() -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            subjects: Mutex::new(SubjectIndex::default()),
            events: RevocationBroadcaster::new(DEFAULT_EVENT_CAPACITY),
            families: AtomicUsize::new(0),
            max_families: usize::MAX,
        }
    }

    /// Refuses to create families beyond `max` kept ones (after sweeping expired ones). The
    /// count is checked without a global lock, so concurrent creations may overshoot it by a
    /// few.
    #[must_use]
    pub fn with_max_families(mut self, max: usize) -> Self {
        self.max_families = max;
        self
    }

    /// How many families are kept (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.families.load(Ordering::Relaxed)
    }

    /// Whether no family is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every family expired at `now`, every revocation entry lapsed at `now` and every
    /// subject index entry lapsed at `now`; returns how many families were dropped.
    ///
    /// # Errors
    /// [`Error::Store`] when a lock is poisoned.
    pub fn purge_expired(&self, now: i64) -> Result<usize> {
        let mut dropped = 0usize;
        for shard in self.shards.iter() {
            dropped = dropped.saturating_add(lock(shard)?.purge(now));
        }
        self.forget(dropped, now)?;
        Ok(dropped)
    }

    fn shard(&self, id: &FamilyId) -> Result<MutexGuard<'_, Shard>> {
        let index = usize::from(id.as_bytes()[0]) % SHARDS;
        let shard = self
            .shards
            .get(index)
            .ok_or_else(|| Error::store("memory store shard out of range"))?;
        lock(shard)
    }

    /// After a sweep that dropped `gone` families at `now` (called without a shard lock
    /// held): counts them out and drops the lapsed subject index entries. The index keeps the
    /// ids of the families just dropped until their own entries lapse.
    fn forget(&self, gone: usize, now: i64) -> Result<()> {
        self.families.fetch_sub(gone, Ordering::Relaxed);
        lock(&self.subjects)?.sweep(now);
        Ok(())
    }

    fn create_sync(&self, family: &Family) -> Result<()> {
        if self.families.load(Ordering::Relaxed) >= self.max_families {
            self.purge_expired(family.created_at)?;
            if self.families.load(Ordering::Relaxed) >= self.max_families {
                return Err(Error::store("memory store is full"));
            }
        }
        let swept = {
            let mut shard = self.shard(&family.id)?;
            if shard.families.contains_key(&family.id) {
                return Err(Error::FamilyExists);
            }
            shard.families.insert(family.id, family.clone());
            self.families.fetch_add(1, Ordering::Relaxed);
            shard.note_write(family.created_at)
        };
        {
            let mut index = lock(&self.subjects)?;
            index.sweep(family.created_at);
            index.insert(
                &family.subject,
                family.id,
                family.absolute_expires_at.saturating_add(INDEX_MARGIN),
            );
        }
        if let Some(gone) = swept {
            self.families.fetch_sub(gone, Ordering::Relaxed);
        }
        Ok(())
    }

    fn rotate_sync(&self, req: &RotateRequest) -> Result<RotateOutcome> {
        self.write_decided(
            &req.family_id,
            req.now,
            req.revocation_ttl,
            |family| decide(family, req),
            |_| RotateOutcome::NotFound,
            |outcome, ttl| {
                let listed = match outcome {
                    RotateOutcome::Reuse(revoked) => revoked.revocation_event(ttl),
                    _ => None,
                };
                (outcome.new_state(), listed)
            },
        )
    }

    fn revoke_sync(
        &self,
        family_id: &FamilyId,
        presented_hash: Option<&TokenHash>,
        req: &RevokeRequest,
    ) -> Result<RevokeOutcome> {
        self.write_decided(
            family_id,
            req.now,
            req.revocation_ttl,
            |family| decide_revoke(family, presented_hash, req),
            |listed| decide_revoke_absent(family_id, presented_hash, listed, req),
            |outcome, ttl| match outcome {
                RevokeOutcome::Revoked(next) => (Some(next), next.revocation_event(ttl)),
                RevokeOutcome::Tombstoned(entry) => (None, Some(*entry)),
                _ => (None, None),
            },
        )
    }

    /// The shared body of rotate and revoke. Under the shard lock: `decide` on the family, or
    /// `absent` on its revocation-list entry when there is no family; `effect` names the state
    /// to store and the revocation-list entry to write (listed for `revocation_ttl`); the write
    /// is noted. Then, outside the lock, the entry is published and, after a sweep, the
    /// dropped families are forgotten.
    fn write_decided<O>(
        &self,
        family_id: &FamilyId,
        now: i64,
        revocation_ttl: i64,
        decide: impl FnOnce(&Family) -> O,
        absent: impl FnOnce(Option<&RevocationEvent>) -> O,
        effect: Effect<O>,
    ) -> Result<O> {
        let (outcome, event, swept) = {
            let mut shard = self.shard(family_id)?;
            let outcome = match shard.families.get(family_id) {
                Some(family) => decide(family),
                None => absent(shard.revoked.get(family_id)),
            };
            let (state, event) = effect(&outcome, revocation_ttl);
            if let Some(e) = event {
                shard.revoked.insert(e.family_id, e);
            }
            if let Some(next) = state {
                shard.families.insert(next.id, next.clone());
            }
            let swept = shard.note_write(now);
            (outcome, event, swept)
        };
        if let Some(e) = event {
            self.events.publish(e);
        }
        if let Some(gone) = swept {
            self.forget(gone, now)?;
        }
        Ok(outcome)
    }

    fn families_of_sync(&self, subject: &str) -> Result<Vec<FamilyId>> {
        Ok(lock(&self.subjects)?.ids(subject))
    }

    fn is_revoked_sync(&self, family_id: &FamilyId, now: i64) -> Result<bool> {
        Ok(self
            .shard(family_id)?
            .revoked
            .get(family_id)
            .is_some_and(|e| e.is_listed(now)))
    }

    fn revoked_sync(&self, now: i64) -> Result<Vec<RevocationEvent>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(lock(shard)?.revoked.values().filter(|e| e.is_listed(now)));
        }
        Ok(out)
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    // A poisoned lock means a panic mid-update: fail closed rather than trust the state.
    m.lock()
        .map_err(|_| Error::store("memory store lock poisoned"))
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("families", &self.len())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl FamilyStore for MemoryStore {
    fn create<'a>(&'a self, family: &'a Family) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.create_sync(family)))
    }

    fn get<'a>(&'a self, family_id: &'a FamilyId) -> StoreFuture<'a, Option<Family>> {
        let result = self
            .shard(family_id)
            .map(|s| s.families.get(family_id).cloned());
        Box::pin(std::future::ready(result))
    }

    fn rotate<'a>(&'a self, req: &'a RotateRequest) -> StoreFuture<'a, RotateOutcome> {
        Box::pin(std::future::ready(self.rotate_sync(req)))
    }

    fn revoke_family<'a>(
        &'a self,
        family_id: &'a FamilyId,
        presented_hash: Option<&'a TokenHash>,
        req: &'a RevokeRequest,
    ) -> StoreFuture<'a, RevokeOutcome> {
        Box::pin(std::future::ready(self.revoke_sync(
            family_id,
            presented_hash,
            req,
        )))
    }

    fn families_of<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Vec<FamilyId>> {
        Box::pin(std::future::ready(self.families_of_sync(subject)))
    }
}

impl RevocationList for MemoryStore {
    fn is_revoked<'a>(&'a self, family_id: &'a FamilyId, now: i64) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(self.is_revoked_sync(family_id, now)))
    }

    fn revoked<'a>(&'a self, now: i64) -> StoreFuture<'a, Vec<RevocationEvent>> {
        Box::pin(std::future::ready(self.revoked_sync(now)))
    }

    fn subscribe(&self) -> RevocationSubscription {
        self.events.subscribe()
    }
}
