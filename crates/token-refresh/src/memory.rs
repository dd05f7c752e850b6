//! The in-memory backend: the embedded default, and the reference the conformance suite is
//! checked against.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::decide::{
    RevokeOutcome, RevokeRequest, RotateOutcome, RotateRequest, decide, decide_revoke,
};
use crate::error::{Error, Result};
use crate::events::{DEFAULT_EVENT_CAPACITY, RevocationBroadcaster, RevocationSubscription};
use crate::family::{Family, RevocationEvent};
use crate::store::{FamilyStore, RevocationList, StoreFuture};
use crate::token::{FamilyId, TokenHash};

const SHARDS: usize = 16;
/// A shard sweeps its expired entries every this many writes (amortised O(1) per write).
const PURGE_EVERY: u32 = 256;

/// One shard: the families whose id falls here and their revocation-list entries, under one
/// lock (like one Redis Cluster hash slot holds a family and its list entry).
#[derive(Default)]
struct Shard {
    families: HashMap<FamilyId, Family>,
    revoked: HashMap<FamilyId, RevocationEvent>,
    writes: u32,
}

impl Shard {
    /// Drops expired families and lapsed list entries; returns the (subject, id) pairs of the
    /// families dropped, for the subject index.
    fn purge(&mut self, now: i64) -> Vec<(String, FamilyId)> {
        let mut gone = Vec::new();
        self.families.retain(|id, f| {
            let keep = now < f.expires_at();
            if !keep {
                gone.push((std::mem::take(&mut f.subject), *id));
            }
            keep
        });
        self.revoked.retain(|_, e| e.is_listed(now));
        gone
    }

    /// Counts a write and sweeps every [`PURGE_EVERY`] writes.
    fn note_write(&mut self, now: i64) -> Vec<(String, FamilyId)> {
        self.writes = self.writes.wrapping_add(1);
        if self.writes.is_multiple_of(PURGE_EVERY) {
            self.purge(now)
        } else {
            Vec::new()
        }
    }
}

/// In-memory [`FamilyStore`] and [`RevocationList`].
///
/// Families are spread over 16 mutex-guarded shards by id; each rotation or revocation runs
/// [`decide`] / [`decide_revoke`] under its shard's lock, which makes it atomic. The subject
/// index is a separate structure (as it is a separate key on Redis), so revoking a subject walks
/// it family by family.
///
/// Bounded: expired families and lapsed revocation entries are swept lazily (a shard every 256
/// writes, with the writer's `now`) and by [`MemoryStore::purge_expired`]; an optional
/// [`MemoryStore::with_max_families`] limit refuses new families beyond it.
///
/// State lives in this process only: instances do not share it, and it is lost on restart.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    subjects: Mutex<HashMap<String, HashSet<FamilyId>>>,
    events: RevocationBroadcaster,
    families: AtomicUsize,
    max_families: usize,
}

impl MemoryStore {
    /// An empty store without a family limit.
    pub fn new() -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            subjects: Mutex::new(HashMap::new()),
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

    /// Drops every family expired at `now` and every revocation entry lapsed at `now`; returns
    /// how many families were dropped.
    ///
    /// # Errors
    /// [`Error::Store`] when a lock is poisoned.
    pub fn purge_expired(&self, now: i64) -> Result<usize> {
        let mut dropped = 0usize;
        for shard in self.shards.iter() {
            let gone = lock(shard)?.purge(now);
            dropped = dropped.saturating_add(gone.len());
            self.forget(gone)?;
        }
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

    /// Removes dropped families from the subject index (called without a shard lock held).
    fn forget(&self, gone: Vec<(String, FamilyId)>) -> Result<()> {
        if gone.is_empty() {
            return Ok(());
        }
        self.families.fetch_sub(gone.len(), Ordering::Relaxed);
        let mut subjects = lock(&self.subjects)?;
        for (subject, id) in gone {
            if let Some(set) = subjects.get_mut(&subject) {
                set.remove(&id);
                if set.is_empty() {
                    subjects.remove(&subject);
                }
            }
        }
        Ok(())
    }

    fn create_sync(&self, family: &Family) -> Result<()> {
        if self.families.load(Ordering::Relaxed) >= self.max_families {
            self.purge_expired(family.created_at)?;
            if self.families.load(Ordering::Relaxed) >= self.max_families {
                return Err(Error::store("memory store is full"));
            }
        }
        let gone = {
            let mut shard = self.shard(&family.id)?;
            if shard.families.contains_key(&family.id) {
                return Err(Error::FamilyExists);
            }
            shard.families.insert(family.id, family.clone());
            self.families.fetch_add(1, Ordering::Relaxed);
            shard.note_write(family.created_at)
        };
        lock(&self.subjects)?
            .entry(family.subject.clone())
            .or_default()
            .insert(family.id);
        self.forget(gone)
    }

    fn rotate_sync(&self, req: &RotateRequest) -> Result<RotateOutcome> {
        self.write_decided(
            &req.family_id,
            req.now,
            req.revocation_ttl,
            RotateOutcome::NotFound,
            |family| decide(family, req),
            |outcome| {
                let revoked = match outcome {
                    RotateOutcome::Reuse(revoked) => Some(revoked),
                    _ => None,
                };
                (outcome.new_state(), revoked)
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
            RevokeOutcome::NotFound,
            |family| decide_revoke(family, presented_hash, req),
            |outcome| match outcome {
                RevokeOutcome::Revoked(next) => (Some(next), Some(next)),
                _ => (None, None),
            },
        )
    }

    /// The shared body of rotate and revoke. Under the shard lock: `decide` on the family
    /// (`not_found` when there is none); `effect` names the state to store and the family whose
    /// revocation to record (only when there is a state to store); the write is noted. Then,
    /// outside the lock, the revocation event is published and evicted families are forgotten.
    fn write_decided<O>(
        &self,
        family_id: &FamilyId,
        now: i64,
        revocation_ttl: i64,
        not_found: O,
        decide: impl FnOnce(&Family) -> O,
        effect: fn(&O) -> (Option<&Family>, Option<&Family>),
    ) -> Result<O> {
        let (outcome, event, gone) = {
            let mut shard = self.shard(family_id)?;
            let Some(family) = shard.families.get(family_id) else {
                return Ok(not_found);
            };
            let outcome = decide(family);
            let mut event = None;
            if let (Some(next), revoked) = effect(&outcome) {
                if let Some(revoked) = revoked {
                    event = revoked.revocation_event(revocation_ttl);
                    if let Some(e) = event {
                        shard.revoked.insert(e.family_id, e);
                    }
                }
                shard.families.insert(next.id, next.clone());
            }
            let gone = shard.note_write(now);
            (outcome, event, gone)
        };
        if let Some(e) = event {
            self.events.publish(e);
        }
        self.forget(gone)?;
        Ok(outcome)
    }

    fn families_of_sync(&self, subject: &str) -> Result<Vec<FamilyId>> {
        let ids: Vec<FamilyId> = lock(&self.subjects)?
            .get(subject)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        let mut present = Vec::with_capacity(ids.len());
        for id in ids {
            if self.shard(&id)?.families.contains_key(&id) {
                present.push(id);
            }
        }
        Ok(present)
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
