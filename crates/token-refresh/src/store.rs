//! The backend traits: [`FamilyStore`] (family state) and [`RevocationList`] (revoked family
//! ids, with events).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::decide::{RevokeOutcome, RevokeRequest, RotateOutcome, RotateRequest};
use crate::error::Result;
use crate::events::RevocationSubscription;
use crate::family::{Family, RevocationEvent};
use crate::token::{FamilyId, TokenHash};

/// The future returned by backend methods: boxed and `Send`, so the traits stay object safe and
/// work on a multi-threaded runtime.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Where families live. Shared by every instance of the service, so every state change is one
/// atomic operation.
///
/// # Contract
///
/// - [`FamilyStore::rotate`] and [`FamilyStore::revoke_family`] read the family, apply
///   [`decide`](crate::decide) / [`decide_revoke`](crate::decide_revoke) and write the new state
///   back **as one atomic step** (a lock, a Lua script): of N concurrent rotations of one token
///   exactly one gets [`RotateOutcome::Rotated`]. When the outcome revokes the family, the same
///   atomic step puts it on the revocation list for `revocation_ttl` seconds, and the event is
///   then published to [`RevocationList::subscribe`]rs.
/// - A store may forget a family once it has expired (`now >= Family::expires_at()`); it must
///   keep it, revoked or not, until then. A forgotten family answers as one never created:
///   `NotFound` to a rotation and to a revocation by token, and a tombstone
///   ([`RevokeOutcome::Tombstoned`], see [`decide_revoke_absent`](crate::decide_revoke_absent))
///   to an operator's revocation, since access tokens minted from it may outlive its record.
/// - The subject index keeps a family's id at least until its absolute expiry, after the
///   family itself is forgotten, so that [`FamilyStore::revoke_subject`] reaches the access
///   tokens of forgotten families too (an access token never outlives its family's absolute
///   expiry).
/// - Every error is reported (`Err(Error::Store{..})`), never swallowed: the caller fails closed
///   and issues nothing. An `Err` from `rotate` may mean the write happened or not; the token
///   presented is then either still current or rotated, and in neither case was a successor
///   handed out.
/// - Inputs derived from the presented token (family id, hash) are attacker-controlled: a store
///   must not panic on any of them.
/// - Nothing grows without bound: expired families, subject index entries and revocation-list
///   entries are dropped eventually.
pub trait FamilyStore: Send + Sync + fmt::Debug {
    /// Persists a new family and indexes it under its subject, before returning `Ok`.
    ///
    /// # Errors
    /// [`Error::FamilyExists`](crate::Error::FamilyExists) when the id is taken (never
    /// overwritten); [`Error::Store`](crate::Error::Store) on a backend failure.
    fn create<'a>(&'a self, family: &'a Family) -> StoreFuture<'a, ()>;

    /// The stored family, if any (whatever its state: revoked and expired families are returned
    /// until the store forgets them).
    ///
    /// # Errors
    /// [`Error::Store`](crate::Error::Store) on a backend failure.
    fn get<'a>(&'a self, family_id: &'a FamilyId) -> StoreFuture<'a, Option<Family>>;

    /// Atomically: read the family named by `req.family_id` (`NotFound` when absent), apply
    /// [`decide`](crate::decide), write back [`RotateOutcome::new_state`], and for
    /// [`RotateOutcome::Reuse`] list the family for `req.revocation_ttl` seconds and publish the
    /// event.
    ///
    /// # Errors
    /// [`Error::Store`](crate::Error::Store) on a backend failure.
    fn rotate<'a>(&'a self, req: &'a RotateRequest) -> StoreFuture<'a, RotateOutcome>;

    /// Atomically: read the family and apply [`decide_revoke`](crate::decide_revoke), and for
    /// [`RevokeOutcome::Revoked`] write the revoked state back, list the family for
    /// `req.revocation_ttl` seconds and publish the event. When there is no family, apply
    /// [`decide_revoke_absent`](crate::decide_revoke_absent) to its revocation-list entry
    /// instead, and for [`RevokeOutcome::Tombstoned`] write that entry (for
    /// `req.revocation_ttl` seconds) and publish it. `presented_hash` is the proof for a
    /// revocation by token.
    ///
    /// # Errors
    /// [`Error::Store`](crate::Error::Store) on a backend failure.
    fn revoke_family<'a>(
        &'a self,
        family_id: &'a FamilyId,
        presented_hash: Option<&'a TokenHash>,
        req: &'a RevokeRequest,
    ) -> StoreFuture<'a, RevokeOutcome>;

    /// The ids in the subject's index: every family created for `subject` that the store
    /// still keeps (revoked ones included), and families already forgotten until at least
    /// their absolute expiry, in no particular order.
    ///
    /// # Errors
    /// [`Error::Store`](crate::Error::Store) on a backend failure.
    fn families_of<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Vec<FamilyId>>;

    /// Revokes every family of `subject` ("sign out everywhere"); returns how many were revoked
    /// by this call. Every id the subject index names is covered: a family the store has
    /// forgotten gets a tombstone ([`RevokeOutcome::Tombstoned`]: listed, counted 0).
    ///
    /// Each family is revoked atomically on its own (no cross-family transaction, so this works
    /// on a Redis Cluster); a family created concurrently with this call may survive it. The
    /// default walks [`FamilyStore::families_of`] and calls [`FamilyStore::revoke_family`] for
    /// each id.
    ///
    /// # Errors
    /// [`Error::Store`](crate::Error::Store) on a backend failure; families revoked before the
    /// failure stay revoked.
    fn revoke_subject<'a>(
        &'a self,
        subject: &'a str,
        req: &'a RevokeRequest,
    ) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let mut count = 0usize;
            for id in self.families_of(subject).await? {
                if let RevokeOutcome::Revoked(_) = self.revoke_family(&id, None, req).await? {
                    count = count.saturating_add(1);
                }
            }
            Ok(count)
        })
    }
}

/// The list of revoked family ids, consulted by access-token verifiers (`sid`), with events.
///
/// # Contract
///
/// - An entry is added by the [`FamilyStore`] operation that revokes the family (or lists a
///   tombstone for a forgotten one), atomically with the revocation, and stays listed until its `listed_until` (the revocation time plus the
///   longest access-token lifetime); then it lapses.
/// - [`RevocationList::subscribe`] delivers, at least once, every revocation made after it was
///   called, by any instance sharing the backend; a backend that loses its event connection
///   re-reads the list on reconnect and delivers what it missed.
/// - `family_id` may come from an unverified token: no panic on any value.
pub trait RevocationList: Send + Sync + fmt::Debug {
    /// Whether `family_id` is listed at `now`.
    ///
    /// # Errors
    /// [`Error::Store`](crate::Error::Store) on a backend failure (a verifier should then fail
    /// closed).
    fn is_revoked<'a>(&'a self, family_id: &'a FamilyId, now: i64) -> StoreFuture<'a, bool>;

    /// Every entry listed at `now` (to rebuild a local cache after a lag or a restart).
    ///
    /// # Errors
    /// [`Error::Store`](crate::Error::Store) on a backend failure.
    fn revoked<'a>(&'a self, now: i64) -> StoreFuture<'a, Vec<RevocationEvent>>;

    /// A subscription to revocations made from now on.
    fn subscribe(&self) -> RevocationSubscription;
}

impl<T: FamilyStore + ?Sized> FamilyStore for Arc<T> {
    fn create<'a>(&'a self, family: &'a Family) -> StoreFuture<'a, ()> {
        (**self).create(family)
    }
    fn get<'a>(&'a self, family_id: &'a FamilyId) -> StoreFuture<'a, Option<Family>> {
        (**self).get(family_id)
    }
    fn rotate<'a>(&'a self, req: &'a RotateRequest) -> StoreFuture<'a, RotateOutcome> {
        (**self).rotate(req)
    }
    fn revoke_family<'a>(
        &'a self,
        family_id: &'a FamilyId,
        presented_hash: Option<&'a TokenHash>,
        req: &'a RevokeRequest,
    ) -> StoreFuture<'a, RevokeOutcome> {
        (**self).revoke_family(family_id, presented_hash, req)
    }
    fn families_of<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Vec<FamilyId>> {
        (**self).families_of(subject)
    }
    fn revoke_subject<'a>(
        &'a self,
        subject: &'a str,
        req: &'a RevokeRequest,
    ) -> StoreFuture<'a, usize> {
        (**self).revoke_subject(subject, req)
    }
}

impl<T: RevocationList + ?Sized> RevocationList for Arc<T> {
    fn is_revoked<'a>(&'a self, family_id: &'a FamilyId, now: i64) -> StoreFuture<'a, bool> {
        (**self).is_revoked(family_id, now)
    }
    fn revoked<'a>(&'a self, now: i64) -> StoreFuture<'a, Vec<RevocationEvent>> {
        (**self).revoked(now)
    }
    fn subscribe(&self) -> RevocationSubscription {
        (**self).subscribe()
    }
}
