//! Replay protection: the [`ReplayCache`] trait and the bounded in-memory
//! [`MemoryReplayCache`].
//!
//! A proof is identified by its key's thumbprint and its `jti`, hashed into a fixed-size
//! [`ReplayKey`], and remembered until the end of the proof's acceptance window, so memory per
//! entry is bounded whatever the `jti` length. The validator only inserts after the signature
//! has been checked, so forged proofs cannot fill a cache.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

/// The identity of one proof in a replay cache: SHA-256 of `jkt || 0x00 || jti`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey([u8; 32]);

impl ReplayKey {
    /// The key of the proof with this thumbprint and `jti`.
    pub fn new(jkt: &str, jti: &str) -> Self {
        let mut h = Sha256::new();
        h.update(jkt.as_bytes());
        h.update([0u8]);
        h.update(jti.as_bytes());
        ReplayKey(h.finalize().into())
    }

    /// The 32 bytes (for a backend's own key format).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex of the 32 bytes (for text-keyed backends such as Redis).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey({})", self.to_hex())
    }
}

/// Why a replay cache could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The cache holds as many live entries as it may and refuses new ones (it never forgets
    /// a live entry to make room).
    #[error("the replay cache is full")]
    Full,
    /// The backend could not be reached or failed.
    #[error("the replay cache is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// The future returned by [`ReplayCache::insert_if_absent`]: `Ok(true)` when the key was
/// absent (first use) and is now recorded, `Ok(false)` when it is a replay.
pub type ReplayFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, ReplayError>> + Send + 'a>>;

/// A store of recently seen proofs.
///
/// # Contract
/// - [`insert_if_absent`](ReplayCache::insert_if_absent) is atomic: of any number of
///   concurrent calls with the same key (on any instance sharing the store), at most one
///   answers `Ok(true)` while the entry lives.
/// - An entry lives until `expires_at` (Unix seconds, exclusive); an expired entry counts as
///   absent.
/// - A bounded store that is full answers [`ReplayError::Full`] rather than evicting a live
///   entry: forgetting one would let that proof be replayed.
/// - Keys are hashes of attacker-chosen values: a store must not let them degrade its
///   performance (use a keyed hasher).
///
/// Object safe and async-capable: a networked store (Redis) returns a future doing I/O, the
/// in-memory one a ready future. The future is `Send`, so any multi-threaded runtime can
/// drive it.
pub trait ReplayCache: Send + Sync + fmt::Debug {
    /// Records `key` until `expires_at` unless a live entry exists. `now` is the caller's
    /// clock (Unix seconds), so `expires_at - now` is the time to live.
    fn insert_if_absent<'a>(
        &'a self,
        key: &'a ReplayKey,
        expires_at: i64,
        now: i64,
    ) -> ReplayFuture<'a>;

    /// The same operation as [`insert_if_absent`](ReplayCache::insert_if_absent), answered
    /// on this thread without waiting on I/O, for caches that can (the in-memory one): used
    /// by [`Validator::validate_sync`](crate::Validator::validate_sync). `None` (the default)
    /// means the cache has no synchronous path; the key is then not recorded.
    fn insert_if_absent_sync(
        &self,
        key: &ReplayKey,
        expires_at: i64,
        now: i64,
    ) -> Option<Result<bool, ReplayError>> {
        let _ = (key, expires_at, now);
        None
    }

    /// A short name for logs and metrics.
    fn name(&self) -> &'static str {
        "replay-cache"
    }
}

/// `Arc<T>` and `Box<T>` are the cache they point to.
macro_rules! forward_replay_cache {
    ($($pointer:ident),+) => {$(
        impl<T: ReplayCache + ?Sized> ReplayCache for $pointer<T> {
            fn insert_if_absent<'a>(
                &'a self,
                key: &'a ReplayKey,
                expires_at: i64,
                now: i64,
            ) -> ReplayFuture<'a> {
                (**self).insert_if_absent(key, expires_at, now)
            }
            fn insert_if_absent_sync(
                &self,
                key: &ReplayKey,
                expires_at: i64,
                now: i64,
            ) -> Option<Result<bool, ReplayError>> {
                (**self).insert_if_absent_sync(key, expires_at, now)
            }
            fn name(&self) -> &'static str {
                (**self).name()
            }
        }
    )+};
}

forward_replay_cache!(Arc, Box);

/// Default total capacity of a [`MemoryReplayCache`], in entries (about 90 MB when full:
/// 40 bytes per entry plus hash-table overhead).
pub const DEFAULT_CAPACITY: usize = 1_000_000;
const SHARDS: usize = 16;

struct Shard {
    entries: HashMap<[u8; 32], i64>,
    /// No entry expires before this time, so a purge before it would find nothing.
    earliest_expiry: i64,
}

/// A bounded, expiring, sharded in-memory [`ReplayCache`] for one process.
///
/// Sixteen shards, each a mutex over a hash map (SipHash with a random key) holding at most
/// `capacity / 16` entries. The shard of an entry is chosen by a keyed hash too (SipHash
/// under a per-cache random key), not by bits of the entry: the `jti` is the client's
/// choice, and a client who could aim every proof at one shard could fill it and make every
/// other client's proof landing there fail. When a shard is full, its expired entries are purged (at most
/// once per second of clock time, so a flood cannot make every insert scan the shard); if it
/// is still full the insert is refused with [`ReplayError::Full`].
pub struct MemoryReplayCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    /// The keyed hash that picks an entry's shard.
    shard_of: RandomState,
}

impl fmt::Debug for MemoryReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayCache")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl Default for MemoryReplayCache {
    fn default() -> Self {
        MemoryReplayCache::new()
    }
}

impl MemoryReplayCache {
    /// A cache of [`DEFAULT_CAPACITY`] entries.
    pub fn new() -> Self {
        MemoryReplayCache::with_capacity(DEFAULT_CAPACITY)
    }

    /// A cache of about `capacity` entries in total (rounded up to a multiple of 16).
    pub fn with_capacity(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        MemoryReplayCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: HashMap::new(),
                        earliest_expiry: i64::MAX,
                    })
                })
                .collect(),
            per_shard,
            shard_of: RandomState::new(),
        }
    }

    /// The total capacity in entries.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// The number of entries held, live or not yet purged.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired entry.
    pub fn purge_expired(&self, now: i64) {
        for shard in &self.shards {
            purge(
                &mut shard.lock().unwrap_or_else(PoisonError::into_inner),
                now,
            );
        }
    }

    /// The shard of `key`, under this cache's secret hash key.
    fn shard_index(&self, key: &ReplayKey) -> usize {
        let hash = self.shard_of.hash_one(key.0);
        usize::try_from(hash % SHARDS as u64).unwrap_or(0)
    }

    /// The synchronous operation behind [`ReplayCache::insert_if_absent`].
    ///
    /// # Errors
    /// [`ReplayError::Full`].
    pub fn insert(&self, key: &ReplayKey, expires_at: i64, now: i64) -> Result<bool, ReplayError> {
        let index = self.shard_index(key);
        let Some(shard) = self.shards.get(index) else {
            return Err(ReplayError::Full);
        };
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = shard.entries.get_mut(&key.0) {
            if *existing > now {
                return Ok(false);
            }
            *existing = expires_at;
            shard.earliest_expiry = shard.earliest_expiry.min(expires_at);
            return Ok(true);
        }
        if shard.entries.len() >= self.per_shard {
            if now >= shard.earliest_expiry {
                purge(&mut shard, now);
            }
            if shard.entries.len() >= self.per_shard {
                return Err(ReplayError::Full);
            }
        }
        shard.entries.insert(key.0, expires_at);
        shard.earliest_expiry = shard.earliest_expiry.min(expires_at);
        Ok(true)
    }
}

fn purge(shard: &mut Shard, now: i64) {
    shard.entries.retain(|_, exp| *exp > now);
    // Everything left expires after `now`; at most one purge per second of clock time.
    shard.earliest_expiry = shard
        .entries
        .values()
        .copied()
        .min()
        .unwrap_or(i64::MAX)
        .max(now.saturating_add(1));
}

impl ReplayCache for MemoryReplayCache {
    fn insert_if_absent<'a>(
        &'a self,
        key: &'a ReplayKey,
        expires_at: i64,
        now: i64,
    ) -> ReplayFuture<'a> {
        Box::pin(std::future::ready(self.insert(key, expires_at, now)))
    }

    fn insert_if_absent_sync(
        &self,
        key: &ReplayKey,
        expires_at: i64,
        now: i64,
    ) -> Option<Result<bool, ReplayError>> {
        Some(self.insert(key, expires_at, now))
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_cannot_choose_the_shard() {
        // Proofs ground so that their keys all start with the same byte (a client picks its
        // `jti`s freely) spread over the shards: one entry per shard here, so with the shard
        // taken from that byte every insert after the first would be refused.
        let cache = MemoryReplayCache::with_capacity(SHARDS);
        let mut accepted = 0;
        let mut tried = 0;
        for n in 0u32.. {
            let key = ReplayKey::new("jkt", &format!("jti-{n}"));
            if key.as_bytes()[0] != 0 {
                continue;
            }
            tried += 1;
            if cache.insert(&key, 100, 0).is_ok() {
                accepted += 1;
            }
            if tried == 64 {
                break;
            }
        }
        // 64 keys over 16 shards leave fewer than 4 shards used with probability < 2^-80.
        assert!(accepted >= 4, "{accepted} of {tried} accepted");
    }

    const T: i64 = 1_700_000_000;

    #[test]
    fn first_use_then_replay_then_expiry() {
        let c = MemoryReplayCache::with_capacity(64);
        let k = ReplayKey::new("jkt", "jti");
        assert!(c.insert(&k, T + 60, T).unwrap());
        assert!(!c.insert(&k, T + 60, T + 59).unwrap());
        // expired: a new use is accepted again
        assert!(c.insert(&k, T + 120, T + 60).unwrap());
        assert!(!c.insert(&k, T + 120, T + 61).unwrap());
    }

    #[test]
    fn keys_separate_jkt_and_jti() {
        assert_ne!(ReplayKey::new("ab", "c"), ReplayKey::new("a", "bc"));
        assert_ne!(ReplayKey::new("k1", "j"), ReplayKey::new("k2", "j"));
        assert_eq!(ReplayKey::new("k", "j"), ReplayKey::new("k", "j"));
        assert_eq!(ReplayKey::new("k", "j").to_hex().len(), 64);
    }

    #[test]
    fn flood_is_refused_not_forgotten() {
        let c = MemoryReplayCache::with_capacity(160);
        let mut accepted = Vec::new();
        let mut refused = 0;
        for i in 0..10_000 {
            let k = ReplayKey::new("jkt", &i.to_string());
            match c.insert(&k, T + 60, T) {
                Ok(true) => accepted.push(k),
                Ok(false) => unreachable!(),
                Err(ReplayError::Full) => refused += 1,
                Err(e) => panic!("{e}"),
            }
            assert!(c.len() <= c.capacity());
        }
        assert_eq!(accepted.len(), 160);
        assert_eq!(refused, 10_000 - 160);
        // every accepted proof is still remembered
        for k in &accepted {
            assert!(!c.insert(k, T + 60, T + 1).unwrap());
        }
        // once they expire, room is made again
        let k = ReplayKey::new("jkt", "later");
        assert!(c.insert(&k, T + 200, T + 60).unwrap());
        c.purge_expired(T + 60);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn purge_is_rate_limited_but_complete() {
        let c = MemoryReplayCache::with_capacity(16);
        // Two keys of one shard (under this cache's hash key); the shard holds one entry.
        let first = ReplayKey::new("x", "0");
        let mut in_shard = vec![first];
        let mut i = 1u32;
        while in_shard.len() < 2 {
            let k = ReplayKey::new("x", &i.to_string());
            if c.shard_index(&k) == c.shard_index(&first) {
                in_shard.push(k);
            }
            i += 1;
        }
        assert!(c.insert(&in_shard[0], T + 10, T).unwrap());
        assert!(matches!(
            c.insert(&in_shard[1], T + 10, T),
            Err(ReplayError::Full)
        ));
        assert!(matches!(
            c.insert(&in_shard[1], T + 10, T + 9),
            Err(ReplayError::Full)
        ));
        assert!(c.insert(&in_shard[1], T + 20, T + 10).unwrap());
    }

    #[test]
    fn concurrent_inserts_of_one_key() {
        let c = Arc::new(MemoryReplayCache::with_capacity(1024));
        let k = ReplayKey::new("jkt", "same");
        let handles: Vec<_> = (0..64)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || c.insert(&k, T + 60, T).unwrap())
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count();
        assert_eq!(wins, 1);
    }
}
