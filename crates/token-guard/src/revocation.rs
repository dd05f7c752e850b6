//! Refusing the access tokens of revoked grants before they expire.
//!
//! Access tokens from token-service carry the grant's family id as `sid`. When a grant is
//! revoked, the service lists the `sid` until every token of the grant has expired
//! (`listed_until`). A guard with a [`RevocationCheck`] refuses tokens whose `sid` is listed
//! (401 `invalid_token`, "access token revoked"). [`RevokedSids`] is the in-memory list;
//! the `RevocationWatcher` (feature `watch`) keeps one filled from the service's
//! `WatchRevocations` stream.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Answers, per request, whether the token's grant is revoked.
///
/// Called on every request that passed verification: implementations answer from memory and
/// must not block. `sid` is a claim of a verified token, but treat it as untrusted text (it
/// came from whoever the issuer let choose it): compare it, never build paths or queries from
/// it.
pub trait RevocationCheck: Send + Sync + fmt::Debug {
    /// Whether tokens of the grant `sid` must be refused at `now` (Unix seconds).
    fn is_revoked(&self, sid: &str, now: i64) -> bool;

    /// Whether the list can be relied on right now. `false` makes the guard answer every
    /// request `503 Service Unavailable` before verifying anything (a fail-closed policy while
    /// the source of revocations is unreachable). Defaults to `true`.
    fn available(&self) -> bool {
        true
    }
}

impl<T: RevocationCheck + ?Sized> RevocationCheck for Arc<T> {
    fn is_revoked(&self, sid: &str, now: i64) -> bool {
        (**self).is_revoked(sid, now)
    }

    fn available(&self) -> bool {
        (**self).available()
    }
}

/// How often at most [`RevokedSids::insert`] sweeps out entries past their `listed_until`, in
/// seconds.
const PURGE_INTERVAL: i64 = 60;

/// A list of revoked `sid`s, each kept until its `listed_until` (Unix seconds). Shared behind
/// `Arc`; reads take a read lock for one hash lookup.
#[derive(Default)]
pub struct RevokedSids {
    listed: RwLock<HashMap<String, i64>>,
    purged_at: AtomicI64,
}

impl fmt::Debug for RevokedSids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevokedSids")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl RevokedSids {
    /// An empty list.
    pub fn new() -> Self {
        RevokedSids::default()
    }

    /// Lists `sid` until `listed_until` (a later time wins when it is listed already). Entries
    /// past their time are swept out at most once a minute, on an insert at `now`.
    pub fn insert(&self, sid: impl Into<String>, listed_until: i64, now: i64) {
        let sid = sid.into();
        let mut listed = self.listed.write().unwrap_or_else(PoisonError::into_inner);
        let until = listed.entry(sid).or_insert(listed_until);
        *until = (*until).max(listed_until);
        let last = self.purged_at.load(Ordering::Relaxed);
        if now >= last.saturating_add(PURGE_INTERVAL) {
            self.purged_at.store(now, Ordering::Relaxed);
            listed.retain(|_, until| *until > now);
        }
    }

    /// Whether `sid` is listed at `now`.
    pub fn is_listed(&self, sid: &str, now: i64) -> bool {
        self.listed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sid)
            .is_some_and(|until| *until > now)
    }

    /// Drops the entries past their time at `now`.
    pub fn purge(&self, now: i64) {
        self.purged_at.store(now, Ordering::Relaxed);
        self.listed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, until| *until > now);
    }

    /// How many `sid`s are held (expired ones not yet swept out included).
    pub fn len(&self) -> usize {
        self.listed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RevocationCheck for RevokedSids {
    fn is_revoked(&self, sid: &str, now: i64) -> bool {
        self.is_listed(sid, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sid_is_listed_until_its_time_and_the_later_time_wins() {
        let list = RevokedSids::new();
        list.insert("a", 1_000, 900);
        list.insert("a", 950, 900);
        assert!(list.is_revoked("a", 999));
        assert!(!list.is_revoked("a", 1_000));
        assert!(!list.is_revoked("b", 0));
        assert!(list.available());
    }

    #[test]
    fn expired_entries_are_swept_out_on_a_later_insert() {
        let list = RevokedSids::new();
        list.insert("a", 100, 0);
        list.insert("b", 10_000, 30);
        assert_eq!(list.len(), 2, "no sweep within a minute of the last");
        list.insert("c", 10_000, 200);
        assert_eq!(list.len(), 2, "a is gone");
        assert!(!list.is_listed("a", 50), "swept for good");
        list.purge(20_000);
        assert!(list.is_empty());
    }
}
