//! The backend conformance suite, written once and run against every [`FamilyStore`] /
//! [`RevocationList`] implementation: the in-memory store here, Redis standalone and Redis
//! Cluster in `token-store-redis`.
//!
//! A backend plugs in through a [`Harness`]: it hands out fresh, empty backends and says how
//! to spawn tasks and sleep on its runtime (this crate depends on no runtime); a backend says
//! how to make it forget expired families ([`Backend::with_forget`]). Each check is a
//! public `async fn` taking the harness; [`run_all`] runs every one. A failed check panics with
//! a message, like any test assertion. [`model`] holds the model-based driver used by the
//! property tests, and a strategy of arbitrary [`decide`](crate::decide) inputs for
//! differential tests of a backend's own implementation of the decision (a Lua script).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::time::Duration;
//! # use token_refresh::MemoryStore;
//! use token_refresh::conformance::{Backend, BoxFuture, Harness, TaskFuture};
//!
//! struct Tokio;
//! impl Harness for Tokio {
//!     fn backend(&self) -> BoxFuture<'_, Backend> {
//!         Box::pin(async { Backend::new(Arc::new(MemoryStore::new())) })
//!     }
//!     fn spawn(&self, task: TaskFuture) -> TaskFuture {
//!         let handle = tokio::spawn(task);
//!         Box::pin(async move { handle.await.expect("task panicked") })
//!     }
//!     fn sleep(&self, d: Duration) -> TaskFuture {
//!         Box::pin(tokio::time::sleep(d))
//!     }
//! }
//! # async fn run() { token_refresh::conformance::run_all(&Tokio).await; }
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::missing_panics_doc,
    reason = "test-support code: a failed check panics like any assertion"
)]

pub mod model;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::{
    Error, Family, FamilyId, FamilyStore, GrantDetails, Pepper, RefreshOutcome, RefreshToken,
    RevocationEvent, RevocationList, RevocationReason, RevocationSubscription, RevokeOutcome,
    RevokeRequest, RotateOutcome, RotateRequest, Rotator, RotatorConfig, StoreFuture, TokenHash,
};

/// A boxed `Send` future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A spawned task, or the handle that waits for it.
pub type TaskFuture = BoxFuture<'static, ()>;

/// The start of time in the suite: 2023-11-14 (any realistic epoch second would do).
pub const T0: i64 = 1_700_000_000;

/// What the suite needs from the backend under test and its runtime.
pub trait Harness: Send + Sync {
    /// A fresh backend with no families and no revocations (a new store, a flushed database
    /// or a fresh key prefix).
    fn backend(&self) -> BoxFuture<'_, Backend>;

    /// Starts `task` in parallel with the caller (for example `tokio::spawn`) and returns a
    /// future that completes when the task has. Must propagate a panic of the task.
    fn spawn(&self, task: TaskFuture) -> TaskFuture;

    /// Sleeps on the backend's runtime (waiting for asynchronous revocation events).
    fn sleep(&self, duration: Duration) -> TaskFuture;

    /// How long to wait for a revocation event before failing (default 5 s).
    fn event_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    /// How many rounds the concurrency checks run (default 20).
    fn concurrency_rounds(&self) -> usize {
        20
    }
}

/// How a harness makes a backend forget expired families: see [`Backend::with_forget`].
pub type ForgetFn = Arc<dyn Fn(Vec<FamilyId>, i64) -> TaskFuture + Send + Sync>;

/// A backend under test: its family store and its revocation list (usually the same object).
#[derive(Clone)]
pub struct Backend {
    /// The family store.
    pub store: Arc<dyn FamilyStore>,
    /// The revocation list fed by that store.
    pub revocations: Arc<dyn RevocationList>,
    forget: Option<ForgetFn>,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("store", &self.store)
            .field("revocations", &self.revocations)
            .field("forgets", &self.forget.is_some())
            .finish()
    }
}

impl Backend {
    /// A backend whose store and revocation list are one object.
    pub fn new<B: FamilyStore + RevocationList + 'static>(backend: Arc<B>) -> Self {
        Backend {
            store: backend.clone(),
            revocations: backend,
            forget: None,
        }
    }

    /// Says how to make the backend forget families that have expired, as a store may do at
    /// any time after their expiry: `forget(ids, now)` drops the records of `ids`, all
    /// expired at `now` (a memory store sweeps at `now` with
    /// [`MemoryStore::purge_expired`](crate::MemoryStore::purge_expired); a Redis harness
    /// deletes the families' keys, as their TTL would). It must leave everything else alone:
    /// the subject index and the revocation list. The checks of what follows a family's
    /// record ([`revoke_expired_family_lists_tombstone`]) need it.
    #[must_use]
    pub fn with_forget(
        mut self,
        forget: impl Fn(Vec<FamilyId>, i64) -> TaskFuture + Send + Sync + 'static,
    ) -> Self {
        self.forget = Some(Arc::new(forget));
        self
    }

    /// Makes the backend forget `ids` (expired at `now`) and checks that it did.
    async fn forget_expired(&self, ids: &[FamilyId], now: i64) {
        let forget = self.forget.as_ref().expect(
            "this check needs a backend that can forget expired families: Backend::with_forget",
        );
        forget(ids.to_vec(), now).await;
        for id in ids {
            assert!(
                self.store.get(id).await.unwrap().is_none(),
                "{id:?} is still stored after the harness made the backend forget it"
            );
        }
    }
}

/// The pepper the suite uses.
pub fn test_pepper() -> Pepper {
    Pepper::new(*b"conformance-suite-pepper-32bytes").unwrap()
}

/// The client every family of the suite is granted to.
const CLIENT: &str = "client-1";
/// Another client, presenting tokens of `CLIENT`'s families.
const OTHER_CLIENT: &str = "client-2";

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Grace off, short lifetimes that the checks move past.
fn config() -> RotatorConfig {
    RotatorConfig::builder()
        .family_lifetime(Duration::from_secs(10_000))
        .idle_ttl(Duration::from_secs(1_000))
        .max_access_token_lifetime(Duration::from_secs(300))
        .build()
        .unwrap()
}

fn grace_config(window: u64, uses: u32) -> RotatorConfig {
    RotatorConfig::builder()
        .family_lifetime(Duration::from_secs(10_000))
        .idle_ttl(Duration::from_secs(1_000))
        .max_access_token_lifetime(Duration::from_secs(300))
        .grace_window(Duration::from_secs(window))
        .grace_max_uses(uses)
        .build()
        .unwrap()
}

fn rotator(b: &Backend, config: RotatorConfig) -> Rotator {
    Rotator::new(b.store.clone(), test_pepper(), config)
}

async fn issue(r: &Rotator, subject: &str, jkt: Option<&str>) -> (RefreshToken, Family) {
    r.issue(subject, CLIENT, &scopes(&["read", "write"]), jkt, T0)
        .await
        .expect("issue")
}

async fn refresh_ok(
    r: &Rotator,
    token: &RefreshToken,
    jkt: Option<&str>,
    now: i64,
) -> RefreshOutcome {
    match r
        .refresh(token.as_str(), CLIENT, jkt, None, None, now)
        .await
    {
        Ok(out) => out,
        Err(e) => panic!("refresh expected to succeed, got {e:?}"),
    }
}

/// [`refresh_err`]`(r, token, jkt, now)` is an error matching `pattern` (shown when it is not).
macro_rules! assert_refused {
    ($r:expr, $token:expr, $jkt:expr, $now:expr, $pattern:pat) => {
        match refresh_err($r, $token, $jkt, $now).await {
            $pattern => {}
            other => panic!("{other:?} is not {}", stringify!($pattern)),
        }
    };
}

async fn refresh_err(r: &Rotator, token: &RefreshToken, jkt: Option<&str>, now: i64) -> Error {
    match r
        .refresh(token.as_str(), CLIENT, jkt, None, None, now)
        .await
    {
        Ok(out) => panic!("refresh expected to fail, got {out:?}"),
        Err(e) => e,
    }
}

/// Collects events until every family in `wanted` has at least one (failing after the
/// harness's timeout), then whatever else arrives within a short quiet period.
async fn collect_events(
    h: &dyn Harness,
    sub: &mut RevocationSubscription,
    wanted: &[FamilyId],
) -> Vec<RevocationEvent> {
    let step = Duration::from_millis(5);
    let mut waited = Duration::ZERO;
    let mut out: Vec<RevocationEvent> = Vec::new();
    loop {
        while let Some(e) = sub.try_recv().expect("subscription") {
            out.push(e);
        }
        if wanted
            .iter()
            .all(|id| out.iter().any(|e| e.family_id == *id))
        {
            break;
        }
        assert!(
            waited < h.event_timeout(),
            "missing revocation events within {:?}",
            h.event_timeout()
        );
        h.sleep(step).await;
        waited += step;
    }
    h.sleep(Duration::from_millis(100)).await;
    while let Some(e) = sub.try_recv().expect("subscription") {
        out.push(e);
    }
    out
}

async fn is_revoked(b: &Backend, id: FamilyId, now: i64) -> bool {
    b.revocations
        .is_revoked(&id, now)
        .await
        .expect("is_revoked")
}

/// Runs every check, in order.
pub async fn run_all(h: &dyn Harness) {
    issue_and_rotate(h).await;
    reuse_revokes_family(h).await;
    forged_token_leaves_family_usable(h).await;
    refused_before_store_lookup(h).await;
    unknown_family(h).await;
    create_never_overwrites(h).await;
    grace_off_previous_is_reuse(h).await;
    grace_returns_same_successor(h).await;
    grace_use_limit(h).await;
    grace_outside_window_is_reuse(h).await;
    grace_older_token_is_reuse(h).await;
    grace_requires_same_dpop_key(h).await;
    grace_disabled_later_is_reuse(h).await;
    dpop_binding(h).await;
    down_scoping(h).await;
    grant_is_kept(h).await;
    client_binding(h).await;
    narrowing_only(h).await;
    absolute_expiry_never_extended(h).await;
    idle_expiry_renewed(h).await;
    bounded_history(h).await;
    revoke_by_token(h).await;
    revoke_by_family(h).await;
    revoke_by_subject(h).await;
    revocation_list_ttl(h).await;
    revocation_events(h).await;
    revoke_expired_family_lists_tombstone(h).await;
    concurrent_rotations(h, h.concurrency_rounds()).await;
    concurrent_grace_retries(h, h.concurrency_rounds()).await;
}

// ---- rotation ---------------------------------------------------------------------------

/// Issue, then rotate: a new token of the same family, generation 1, and the store keeps only
/// hashes.
pub async fn issue_and_rotate(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let (t0, f0) = issue(&r, "alice", None).await;
    assert_eq!(t0.family_id(), f0.id);
    assert_eq!(f0.generation, 0);
    assert_eq!(f0.absolute_expires_at, T0 + 10_000);
    assert_eq!(f0.idle_expires_at, T0 + 1_000);
    let stored = b.store.get(&f0.id).await.unwrap().expect("stored");
    assert_eq!(stored, f0);
    assert!(
        !serde_json::to_string(&stored)
            .unwrap()
            .contains(t0.as_str())
    );

    let out = refresh_ok(&r, &t0, None, T0 + 10).await;
    assert!(!out.is_grace_retry);
    assert_eq!(out.token.family_id(), f0.id);
    assert_ne!(out.token, t0);
    assert_eq!(out.family.generation, 1);
    assert_eq!(out.family.rotated_at, Some(T0 + 10));
    assert_eq!(out.scopes, scopes(&["read", "write"]));
    assert_eq!(b.store.get(&f0.id).await.unwrap().unwrap(), out.family);

    // A chain of rotations.
    let mut token = out.token;
    for i in 2..=5u64 {
        let out = refresh_ok(&r, &token, None, T0 + 10 * i64::try_from(i).unwrap()).await;
        assert_eq!(out.family.generation, i);
        token = out.token;
    }
    assert!(!is_revoked(&b, f0.id, T0 + 60).await);
}

/// Presenting a rotated token revokes the whole family: the current token fails too, the
/// family is listed, and the reason is recorded.
pub async fn reuse_revokes_family(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let (t0, f) = issue(&r, "alice", None).await;
    let t1 = refresh_ok(&r, &t0, None, T0 + 1).await.token;
    let t2 = refresh_ok(&r, &t1, None, T0 + 2).await.token;

    assert_refused!(&r, &t0, None, T0 + 3, Error::ReuseDetected);
    assert_refused!(&r, &t2, None, T0 + 4, Error::Revoked);
    assert_refused!(&r, &t1, None, T0 + 4, Error::Revoked);
    let stored = b.store.get(&f.id).await.unwrap().unwrap();
    let rev = stored.revoked.expect("revoked");
    assert_eq!(rev.reason, RevocationReason::ReuseDetected);
    assert_eq!(rev.at, T0 + 3);
    assert!(stored.grace.is_none());
    assert!(is_revoked(&b, f.id, T0 + 4).await);
}

/// A well-formed token naming a real family but matching none of its hashes is refused and
/// does not revoke the family; the real token keeps working.
pub async fn forged_token_leaves_family_usable(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let (t0, f) = issue(&r, "alice", None).await;
    let t1 = refresh_ok(&r, &t0, None, T0 + 1).await.token;
    for _ in 0..3 {
        let forged = RefreshToken::generate(f.id).unwrap();
        assert_refused!(&r, &forged, None, T0 + 2, Error::ForgedToken);
        assert_eq!(
            r.revoke_token(forged.as_str(), CLIENT, T0 + 2)
                .await
                .unwrap(),
            RevokeOutcome::Forged
        );
    }
    let stored = b.store.get(&f.id).await.unwrap().unwrap();
    assert!(stored.revoked.is_none());
    assert_eq!(stored.generation, 1);
    assert!(!is_revoked(&b, f.id, T0 + 2).await);
    refresh_ok(&r, &t1, None, T0 + 3).await;
}

/// Counts calls, to show malformed tokens never reach the store.
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn FamilyStore>,
    calls: AtomicUsize,
}

impl FamilyStore for CountingStore {
    fn create<'a>(&'a self, family: &'a Family) -> StoreFuture<'a, ()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.create(family)
    }
    fn get<'a>(&'a self, id: &'a FamilyId) -> StoreFuture<'a, Option<Family>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.get(id)
    }
    fn rotate<'a>(&'a self, req: &'a RotateRequest) -> StoreFuture<'a, RotateOutcome> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.rotate(req)
    }
    fn revoke_family<'a>(
        &'a self,
        id: &'a FamilyId,
        hash: Option<&'a TokenHash>,
        req: &'a RevokeRequest,
    ) -> StoreFuture<'a, RevokeOutcome> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.revoke_family(id, hash, req)
    }
    fn families_of<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Vec<FamilyId>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.families_of(subject)
    }
}

/// Oversized, malformed and bad-checksum tokens are refused, each with its own error, without
/// a store call.
pub async fn refused_before_store_lookup(h: &dyn Harness) {
    let b = h.backend().await;
    let counting = Arc::new(CountingStore {
        inner: b.store.clone(),
        calls: AtomicUsize::new(0),
    });
    let r = Rotator::new(counting.clone(), test_pepper(), config());
    let (t0, _) = issue(&r, "alice", None).await;
    let before = counting.calls.load(Ordering::SeqCst);
    let good = t0.as_str();
    let mut typo: Vec<u8> = good.as_bytes().to_vec();
    typo[40] = if typo[40] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    type Expect = fn(&Error) -> bool;
    let cases: Vec<(String, Expect)> = vec![
        ("x".repeat(10_000), |e| {
            matches!(e, Error::TokenTooLarge { .. })
        }),
        (String::new(), |e| matches!(e, Error::MalformedToken(_))),
        (good.replacen("rt1_", "rt9_", 1), |e| {
            matches!(e, Error::MalformedToken(_))
        }),
        (good[..good.len() - 1].to_owned(), |e| {
            matches!(e, Error::MalformedToken(_))
        }),
        (format!("{good}A"), |e| {
            matches!(e, Error::MalformedToken(_))
        }),
        (typo, |e| matches!(e, Error::TokenChecksum)),
    ];
    for (text, expected) in cases {
        let e = r
            .refresh(&text, CLIENT, None, None, None, T0 + 1)
            .await
            .unwrap_err();
        assert!(expected(&e), "{e:?}");
        assert!(e.is_format_error());
        assert_eq!(e.oauth_error().as_str(), "invalid_grant");
        let e = r.revoke_token(&text, CLIENT, T0 + 1).await.unwrap_err();
        assert!(expected(&e), "{e:?}");
    }
    // A client id no family can have been granted to, and an audience no family can have,
    // are refused before the lookup too.
    for client in [String::new(), "c".repeat(crate::MAX_ID_BYTES + 1)] {
        let e = r
            .refresh(good, &client, None, None, None, T0 + 1)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::ClientMismatch), "{e:?}");
        assert_eq!(e.oauth_error().as_str(), "invalid_grant");
    }
    let long = vec!["a".repeat(crate::MAX_ID_BYTES + 1)];
    let many: Vec<String> = (0..=crate::MAX_AUDIENCES)
        .map(|i| format!("https://{i}.example"))
        .collect();
    for audience in [long, many] {
        let e = r
            .refresh(good, CLIENT, None, None, Some(&audience), T0 + 1)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::AudienceExceeded), "{e:?}");
        assert_eq!(e.oauth_error().as_str(), "invalid_target");
    }
    assert_eq!(counting.calls.load(Ordering::SeqCst), before);
    refresh_ok(&r, &t0, None, T0 + 2).await;
}

/// A well-formed token of a family that was never created: refused, and revoking by it lists
/// nothing. Revoking the family by id lists a tombstone (a store cannot tell a family never
/// created from one forgotten after its expiry, whose access tokens may still be alive).
pub async fn unknown_family(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let stray = RefreshToken::generate(FamilyId::generate().unwrap()).unwrap();
    assert_refused!(&r, &stray, None, T0, Error::UnknownFamily);
    assert_eq!(
        r.revoke_token(stray.as_str(), CLIENT, T0).await.unwrap(),
        RevokeOutcome::NotFound
    );
    assert!(!listed(&b, stray.family_id(), T0).await);
    assert_eq!(
        r.revoke_family(&stray.family_id(), T0).await.unwrap(),
        RevokeOutcome::Tombstoned(RevocationEvent {
            family_id: stray.family_id(),
            reason: RevocationReason::FamilyRevoked,
            revoked_at: T0,
            listed_until: T0 + 300,
        })
    );
    assert!(b.store.get(&stray.family_id()).await.unwrap().is_none());
    assert!(listed(&b, stray.family_id(), T0).await);
    assert!(!listed(&b, stray.family_id(), T0 + 300).await);
}

/// Creating a family whose id exists fails and leaves the existing one alone.
pub async fn create_never_overwrites(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let (t0, f) = issue(&r, "alice", None).await;
    let mut clash = f.clone();
    clash.subject = "mallory".into();
    clash.current_hash = TokenHash::from_bytes([0; 32]);
    assert!(matches!(
        b.store.create(&clash).await,
        Err(Error::FamilyExists)
    ));
    assert_eq!(b.store.get(&f.id).await.unwrap().unwrap(), f);
    refresh_ok(&r, &t0, None, T0 + 1).await;
}

// ---- grace --------------------------------------------------------------------------------

/// With grace off (the default), the immediately previous token is plain reuse.
pub async fn grace_off_previous_is_reuse(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let (t0, f) = issue(&r, "alice", None).await;
    let out = refresh_ok(&r, &t0, None, T0 + 1).await;
    assert!(out.family.grace.is_none());
    assert_refused!(&r, &t0, None, T0 + 1, Error::ReuseDetected);
    assert!(is_revoked(&b, f.id, T0 + 1).await);
}

/// Within the window, the previous token gets the *same* successor back; the family does not
/// rotate again and the successor keeps working; the store holds only a sealed successor.
pub async fn grace_returns_same_successor(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, grace_config(30, 2));
    let (t0, f) = issue(&r, "alice", None).await;
    let first = refresh_ok(&r, &t0, None, T0 + 100).await;
    let g = first.family.grace.as_ref().expect("grace state");
    assert_eq!(g.uses, 0);
    assert_eq!(g.rotated_at, T0 + 100);
    let json = serde_json::to_string(&first.family).unwrap();
    assert!(!json.contains(first.token.as_str()));
    assert!(!json.contains(&first.token.as_str()[27..70]));

    let retry = refresh_ok(&r, &t0, None, T0 + 110).await;
    assert!(retry.is_grace_retry);
    assert_eq!(retry.token, first.token);
    assert_eq!(retry.family.generation, 1);
    assert_eq!(retry.family.grace.as_ref().unwrap().uses, 1);
    assert_eq!(retry.family.idle_expires_at, first.family.idle_expires_at);
    assert_eq!(b.store.get(&f.id).await.unwrap().unwrap(), retry.family);

    let next = refresh_ok(&r, &first.token, None, T0 + 120).await;
    assert!(!next.is_grace_retry);
    assert_eq!(next.family.generation, 2);
    assert!(!is_revoked(&b, f.id, T0 + 120).await);
}

/// At most `grace_max_uses` retries; the next one is reuse.
pub async fn grace_use_limit(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, grace_config(30, 2));
    let (t0, f) = issue(&r, "alice", None).await;
    let first = refresh_ok(&r, &t0, None, T0 + 1).await;
    for _ in 0..2 {
        assert_eq!(refresh_ok(&r, &t0, None, T0 + 2).await.token, first.token);
    }
    assert_refused!(&r, &t0, None, T0 + 3, Error::ReuseDetected);
    assert_refused!(&r, &first.token, None, T0 + 3, Error::Revoked);
    let stored = b.store.get(&f.id).await.unwrap().unwrap();
    assert!(
        stored.grace.is_none(),
        "nothing sealed outlives a revocation"
    );
}

/// The window is half-open: `rotated_at + window` is already outside, and is reuse.
pub async fn grace_outside_window_is_reuse(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, grace_config(30, 5));
    let (t0, _) = issue(&r, "alice", None).await;
    let first = refresh_ok(&r, &t0, None, T0 + 100).await;
    assert_eq!(refresh_ok(&r, &t0, None, T0 + 129).await.token, first.token);
    assert_refused!(&r, &t0, None, T0 + 130, Error::ReuseDetected);
}

/// Only the immediately previous token gets grace: an older one (or the previous one once its
/// successor has been used) is reuse, even within the window.
pub async fn grace_older_token_is_reuse(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, grace_config(30, 5));
    let (t0, _) = issue(&r, "alice", None).await;
    let t1 = refresh_ok(&r, &t0, None, T0 + 1).await.token;
    let t2 = refresh_ok(&r, &t1, None, T0 + 2).await.token;
    // t1 is now the previous token: it gets t2 back.
    assert_eq!(refresh_ok(&r, &t1, None, T0 + 3).await.token, t2);
    // t0 is older: reuse.
    assert_refused!(&r, &t0, None, T0 + 4, Error::ReuseDetected);

    let (u0, _) = issue(&r, "bob", None).await;
    let u1 = refresh_ok(&r, &u0, None, T0 + 1).await.token;
    refresh_ok(&r, &u1, None, T0 + 2).await;
    // u0's successor was used: u0 is no longer the previous token.
    assert_refused!(&r, &u0, None, T0 + 3, Error::ReuseDetected);
}

/// On a DPoP-bound family a grace retry needs the same key; another key or none is refused
/// without revoking and without using up a retry.
pub async fn grace_requires_same_dpop_key(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, grace_config(30, 1));
    let (t0, f) = issue(&r, "alice", Some("jkt-A")).await;
    let first = refresh_ok(&r, &t0, Some("jkt-A"), T0 + 1).await;
    assert_refused!(&r, &t0, Some("jkt-B"), T0 + 2, Error::DpopKeyMismatch);
    assert_refused!(&r, &t0, None, T0 + 2, Error::DpopProofRequired);
    assert!(!is_revoked(&b, f.id, T0 + 2).await);
    let retry = refresh_ok(&r, &t0, Some("jkt-A"), T0 + 3).await;
    assert!(retry.is_grace_retry);
    assert_eq!(retry.token, first.token);
}

/// The grace policy in force at the retry applies: a rotation made with grace on, retried
/// after grace was turned off, is reuse.
pub async fn grace_disabled_later_is_reuse(h: &dyn Harness) {
    let b = h.backend().await;
    let with = rotator(&b, grace_config(30, 1));
    let without = rotator(&b, config());
    let (t0, _) = issue(&with, "alice", None).await;
    refresh_ok(&with, &t0, None, T0 + 1).await;
    assert_refused!(&without, &t0, None, T0 + 2, Error::ReuseDetected);
}

// ---- binding and scopes -------------------------------------------------------------------

/// A bound family refuses refreshes without its key (`invalid_grant`) and is not revoked by
/// them; an unbound family accepts any key and stays unbound.
pub async fn dpop_binding(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let (t0, f) = issue(&r, "alice", Some("jkt-A")).await;
    assert_eq!(f.dpop_jkt.as_deref(), Some("jkt-A"));
    let e = refresh_err(&r, &t0, None, T0 + 1).await;
    assert!(matches!(e, Error::DpopProofRequired));
    assert_eq!(e.oauth_error().as_str(), "invalid_grant");
    let e = refresh_err(&r, &t0, Some("jkt-B"), T0 + 1).await;
    assert!(matches!(e, Error::DpopKeyMismatch));
    assert_eq!(e.oauth_error().as_str(), "invalid_grant");
    let stored = b.store.get(&f.id).await.unwrap().unwrap();
    assert_eq!(stored, f, "refused refreshes leave the family untouched");
    let t1 = refresh_ok(&r, &t0, Some("jkt-A"), T0 + 2).await;
    assert_eq!(t1.family.dpop_jkt.as_deref(), Some("jkt-A"));
    // A rotated token presented without the key: refused as a DPoP failure, not reuse.
    assert_refused!(&r, &t0, Some("jkt-B"), T0 + 3, Error::DpopKeyMismatch);
    assert!(!is_revoked(&b, f.id, T0 + 3).await);
    // With the key, the same rotated token is reuse.
    assert_refused!(&r, &t0, Some("jkt-A"), T0 + 4, Error::ReuseDetected);

    let (u0, _) = issue(&r, "bob", None).await;
    let out = refresh_ok(&r, &u0, Some("jkt-C"), T0 + 1).await;
    assert_eq!(out.family.dpop_jkt, None);
    refresh_ok(&r, &out.token, None, T0 + 2).await;
}

/// A refresh may ask for a subset of the family's scopes, never more; asking for more is
/// `invalid_scope` and does not consume the token. The family keeps all its scopes.
pub async fn down_scoping(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let (t0, f) = issue(&r, "alice", None).await;
    let more = scopes(&["read", "admin"]);
    let e = r
        .refresh(t0.as_str(), CLIENT, None, Some(&more), None, T0 + 1)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ScopeExceeded));
    assert_eq!(e.oauth_error().as_str(), "invalid_scope");
    assert_eq!(b.store.get(&f.id).await.unwrap().unwrap(), f);

    let read = scopes(&["read", "read"]);
    let out = r
        .refresh(t0.as_str(), CLIENT, None, Some(&read), None, T0 + 2)
        .await
        .unwrap();
    assert_eq!(out.scopes, scopes(&["read"]));
    assert_eq!(out.family.scopes, scopes(&["read", "write"]));
    // The next refresh may ask for everything again.
    let out = refresh_ok(&r, &out.token, None, T0 + 3).await;
    assert_eq!(out.scopes, scopes(&["read", "write"]));
    let bad = scopes(&["not a scope"]);
    assert!(matches!(
        r.refresh(out.token.as_str(), CLIENT, None, Some(&bad), None, T0 + 4)
            .await
            .unwrap_err(),
        Error::ScopeExceeded
    ));
}

// ---- the whole grant, client binding, narrowing ------------------------------------------

/// The audiences of the families of [`grant_is_kept`], [`client_binding`] and
/// [`narrowing_only`].
const AUDIENCE: [&str; 2] = ["https://api.example", "https://b.example"];
/// Their custom claims: JSON text that a store decoding it would rewrite (a number beyond a
/// double's precision, an empty array and an empty object, a `/`, a non-ASCII character, an
/// escaped NUL), so it must be kept as text.
const CLAIMS: &str = r#"{"n":12345678901234567890,"e":[],"o":{},"p":"a/b","u":"é\u0000"}"#;
/// Their access-token lifetime.
const ACCESS_TTL: u32 = 120;

fn grant() -> GrantDetails {
    GrantDetails {
        audience: scopes(&AUDIENCE),
        claims_json: Some(CLAIMS.to_owned()),
        access_ttl: Some(ACCESS_TTL),
    }
}

/// Issues a family of `CLIENT` with scopes `read write` and the whole [`grant`].
async fn issue_grant(r: &Rotator, subject: &str, jkt: Option<&str>) -> (RefreshToken, Family) {
    r.issue_with(
        subject,
        CLIENT,
        &scopes(&["read", "write"]),
        jkt,
        &grant(),
        T0,
    )
    .await
    .expect("issue_with")
}

/// `f` carries the whole grant of [`issue_grant`], byte for byte.
fn assert_grant(what: &str, f: &Family) {
    assert_eq!(f.client_id, CLIENT, "{what}: client");
    assert_eq!(f.scopes, scopes(&["read", "write"]), "{what}: scopes");
    assert_eq!(f.audience, scopes(&AUDIENCE), "{what}: audience");
    assert_eq!(
        f.claims_json.as_deref().map(str::as_bytes),
        Some(CLAIMS.as_bytes()),
        "{what}: claims"
    );
    assert_eq!(
        f.access_ttl,
        Some(ACCESS_TTL),
        "{what}: access-token lifetime"
    );
}

/// The stored family, checked with [`assert_grant`].
async fn stored_grant(b: &Backend, what: &str, id: FamilyId) -> Family {
    let stored = b
        .store
        .get(&id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: family not stored"));
    assert_grant(&format!("{what} (stored)"), &stored);
    stored
}

/// The family keeps its whole grant (audiences, custom claims as the exact text given, the
/// access-token lifetime) through rotation, grace retries, narrowing refreshes, reuse and
/// every kind of revocation; a family issued without them reads back without them.
pub async fn grant_is_kept(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, grace_config(30, 3));
    let (t0, f) = issue_grant(&r, "alice", None).await;
    assert_grant("issue", &f);
    assert_eq!(stored_grant(&b, "issue", f.id).await, f);

    let first = refresh_ok(&r, &t0, None, T0 + 1).await;
    assert_eq!(first.scopes, scopes(&["read", "write"]));
    assert_grant("rotation", &first.family);
    assert_eq!(stored_grant(&b, "rotation", f.id).await, first.family);

    let retry = refresh_ok(&r, &t0, None, T0 + 2).await;
    assert!(retry.is_grace_retry);
    assert_eq!(retry.token, first.token);
    assert_grant("grace retry", &retry.family);
    assert_eq!(stored_grant(&b, "grace retry", f.id).await, retry.family);

    // Narrowing is for the one token: the family keeps all of it.
    let read = scopes(&["read"]);
    let one_audience = scopes(&["https://b.example"]);
    let narrow_retry = r
        .refresh(
            t0.as_str(),
            CLIENT,
            None,
            Some(&read),
            Some(&one_audience),
            T0 + 3,
        )
        .await
        .unwrap();
    assert!(narrow_retry.is_grace_retry);
    assert_eq!(narrow_retry.token, first.token);
    assert_eq!(narrow_retry.scopes, read);
    assert_grant("narrowing grace retry", &narrow_retry.family);
    assert_eq!(
        stored_grant(&b, "narrowing grace retry", f.id).await,
        narrow_retry.family
    );

    let narrow = r
        .refresh(
            first.token.as_str(),
            CLIENT,
            None,
            Some(&read),
            Some(&one_audience),
            T0 + 4,
        )
        .await
        .unwrap();
    assert!(!narrow.is_grace_retry);
    assert_eq!(narrow.family.generation, 2);
    assert_eq!(narrow.scopes, read);
    assert_grant("narrowing rotation", &narrow.family);
    assert_eq!(
        stored_grant(&b, "narrowing rotation", f.id).await,
        narrow.family
    );

    // The next refresh gets the whole grant again.
    let whole = refresh_ok(&r, &narrow.token, None, T0 + 5).await;
    assert_eq!(whole.scopes, scopes(&["read", "write"]));
    assert_grant("rotation after narrowing", &whole.family);

    let out = r
        .revoke_token(whole.token.as_str(), CLIENT, T0 + 6)
        .await
        .unwrap();
    let RevokeOutcome::Revoked(revoked) = out else {
        panic!("{out:?}")
    };
    assert_grant("revocation by token", &revoked);
    assert_eq!(stored_grant(&b, "revocation by token", f.id).await, revoked);

    // Reuse, revocation by family id and by subject keep it too.
    let (u0, u) = issue_grant(&r, "bob", Some("jkt-A")).await;
    let u1 = refresh_ok(&r, &u0, Some("jkt-A"), T0 + 1).await;
    refresh_ok(&r, &u1.token, Some("jkt-A"), T0 + 2).await;
    assert_refused!(&r, &u0, Some("jkt-A"), T0 + 3, Error::ReuseDetected);
    let stored = stored_grant(&b, "reuse", u.id).await;
    assert_eq!(stored.dpop_jkt.as_deref(), Some("jkt-A"));
    assert!(stored.revoked.is_some());
    let (_, v) = issue_grant(&r, "carol", None).await;
    let out = r.revoke_family(&v.id, T0 + 1).await.unwrap();
    let RevokeOutcome::Revoked(revoked) = out else {
        panic!("{out:?}")
    };
    assert_grant("revocation by family", &revoked);
    stored_grant(&b, "revocation by family", v.id).await;
    let (_, w) = issue_grant(&r, "dave", None).await;
    assert_eq!(r.revoke_subject("dave", T0 + 1).await.unwrap(), 1);
    stored_grant(&b, "revocation by subject", w.id).await;

    // Without details: no audience, no claims, no lifetime, before and after a rotation.
    let (x0, x) = issue(&r, "erin", None).await;
    let out = refresh_ok(&r, &x0, None, T0 + 1).await;
    for (what, f) in [
        ("issue", x.clone()),
        ("rotation", out.family),
        ("stored", b.store.get(&x.id).await.unwrap().unwrap()),
    ] {
        assert!(f.audience.is_empty(), "{what}: {f:?}");
        assert_eq!(f.claims_json, None, "{what}");
        assert_eq!(f.access_ttl, None, "{what}");
    }
}

/// Whether `id` is on the revocation list at `now`, by lookup or by enumeration.
async fn listed(b: &Backend, id: FamilyId, now: i64) -> bool {
    let enumerated = b
        .revocations
        .revoked(now)
        .await
        .expect("revoked")
        .iter()
        .any(|e| e.family_id == id);
    let looked_up = is_revoked(b, id, now).await;
    assert_eq!(enumerated, looked_up, "lookup and enumeration disagree");
    looked_up
}

/// A refresh of `token` by [`OTHER_CLIENT`], expected to fail.
async fn other_client_err(r: &Rotator, token: &RefreshToken, now: i64) -> Error {
    match r
        .refresh(token.as_str(), OTHER_CLIENT, None, None, None, now)
        .await
    {
        Ok(out) => panic!("a refresh by another client succeeded: {out:?}"),
        Err(e) => e,
    }
}

/// A family answers its own client only. Another client presenting its current token, or a
/// rotated one (no reuse detection), or trying to revoke it by token, is refused
/// (`invalid_grant`, [`RevokeOutcome::ClientMismatch`]) and changes nothing: no rotation, no
/// revocation, no listing, no event, no grace retry used up; the rightful client carries on.
/// Forged, revoked and expired tokens are refused as such first; the client is checked
/// before the DPoP key and the requested scopes and audiences.
pub async fn client_binding(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let mut sub = b.revocations.subscribe();
    let (t0, f) = issue_grant(&r, "alice", None).await;

    // The current token, presented by another client.
    let e = other_client_err(&r, &t0, T0 + 1).await;
    assert!(matches!(e, Error::ClientMismatch), "{e:?}");
    assert_eq!(e.oauth_error().as_str(), "invalid_grant");
    assert!(!e.is_format_error());
    // Even asking for scopes and audiences the family does not have: the client comes first.
    let e = r
        .refresh(
            t0.as_str(),
            OTHER_CLIENT,
            None,
            Some(&scopes(&["admin"])),
            Some(&scopes(&["https://evil.example"])),
            T0 + 1,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ClientMismatch), "{e:?}");
    assert_eq!(
        b.store.get(&f.id).await.unwrap().unwrap(),
        f,
        "a refused refresh leaves the family untouched"
    );
    assert!(!listed(&b, f.id, T0 + 1).await);

    // The rightful client rotates; the rotated and the current token, presented by another
    // client: refused, not reuse.
    let t1 = refresh_ok(&r, &t0, None, T0 + 2).await;
    for (what, token) in [("rotated", &t0), ("current", &t1.token)] {
        let e = other_client_err(&r, token, T0 + 3).await;
        assert!(matches!(e, Error::ClientMismatch), "{what}: {e:?}");
    }
    assert_eq!(b.store.get(&f.id).await.unwrap().unwrap(), t1.family);
    assert!(!listed(&b, f.id, T0 + 3).await);

    // Revocation by token, by another client: refused for every token of the family.
    for (what, token) in [("rotated", &t0), ("current", &t1.token)] {
        assert_eq!(
            r.revoke_token(token.as_str(), OTHER_CLIENT, T0 + 4)
                .await
                .unwrap(),
            RevokeOutcome::ClientMismatch,
            "{what}"
        );
    }
    let stored = b.store.get(&f.id).await.unwrap().unwrap();
    assert_eq!(stored, t1.family);
    assert!(stored.revoked.is_none());
    assert!(!listed(&b, f.id, T0 + 4).await);

    // Its own client carries on.
    let t2 = refresh_ok(&r, &t1.token, None, T0 + 5).await;
    assert_eq!(t2.family.generation, 2);
    assert_grant("rotation after refusals", &t2.family);
    assert_eq!(b.store.get(&f.id).await.unwrap().unwrap(), t2.family);

    // A forged token is forged whoever presents it.
    let forged = RefreshToken::generate(f.id).unwrap();
    assert!(matches!(
        other_client_err(&r, &forged, T0 + 6).await,
        Error::ForgedToken
    ));
    assert_eq!(
        r.revoke_token(forged.as_str(), OTHER_CLIENT, T0 + 6)
            .await
            .unwrap(),
        RevokeOutcome::Forged
    );

    // Reuse by its own client revokes as usual; then another client sees a revoked family,
    // and still cannot revoke by token.
    assert_refused!(&r, &t0, None, T0 + 7, Error::ReuseDetected);
    assert!(matches!(
        other_client_err(&r, &t2.token, T0 + 8).await,
        Error::Revoked
    ));
    assert_eq!(
        r.revoke_token(t2.token.as_str(), OTHER_CLIENT, T0 + 8)
            .await
            .unwrap(),
        RevokeOutcome::ClientMismatch
    );
    assert_eq!(
        r.revoke_token(t2.token.as_str(), CLIENT, T0 + 8)
            .await
            .unwrap(),
        RevokeOutcome::AlreadyRevoked
    );
    let stored = b.store.get(&f.id).await.unwrap().unwrap();
    assert_eq!(
        stored.revoked.map(|rev| (rev.reason, rev.at)),
        Some((RevocationReason::ReuseDetected, T0 + 7))
    );

    // On a DPoP-bound family the client is checked before the key.
    let (d0, d) = issue_grant(&r, "bob", Some("jkt-A")).await;
    for jkt in [Some("jkt-A"), Some("jkt-B"), None] {
        let e = r
            .refresh(d0.as_str(), OTHER_CLIENT, jkt, None, None, T0 + 1)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::ClientMismatch), "{jkt:?}: {e:?}");
    }
    assert_eq!(b.store.get(&d.id).await.unwrap().unwrap(), d);
    refresh_ok(&r, &d0, Some("jkt-A"), T0 + 2).await;

    // With grace on, the previous token presented by another client is no retry: the
    // retry is not used up, and its own client gets it.
    let g = rotator(&b, grace_config(30, 1));
    let (g0, gf) = issue_grant(&g, "carol", None).await;
    let g1 = refresh_ok(&g, &g0, None, T0 + 1).await;
    let e = g
        .refresh(g0.as_str(), OTHER_CLIENT, None, None, None, T0 + 2)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ClientMismatch), "{e:?}");
    assert_eq!(b.store.get(&gf.id).await.unwrap().unwrap(), g1.family);
    let retry = refresh_ok(&g, &g0, None, T0 + 3).await;
    assert!(retry.is_grace_retry);
    assert_eq!(retry.token, g1.token);

    // An expired family is expired (or gone) whoever asks.
    let e = other_client_err(&r, &g1.token, T0 + 10_000).await;
    assert!(expired_or_gone(&e), "{e:?}");

    // Only the reuse published an event.
    let events = collect_events(h, &mut sub, &[f.id]).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].family_id, f.id);
    assert_eq!(events[0].reason, RevocationReason::ReuseDetected);
}

/// A refresh by [`CLIENT`] asking for `requested_scopes` and `requested_audience`.
async fn narrowed(
    r: &Rotator,
    token: &RefreshToken,
    requested_scopes: Option<&[String]>,
    requested_audience: Option<&[String]>,
    now: i64,
) -> crate::Result<RefreshOutcome> {
    r.refresh(
        token.as_str(),
        CLIENT,
        None,
        requested_scopes,
        requested_audience,
        now,
    )
    .await
}

/// A refresh may narrow scopes and audiences, never widen them: a wider scope request is
/// `invalid_scope`, a wider audience request `invalid_target` (scopes are checked first),
/// for the current token and for a grace retry alike; neither consumes the token, uses up
/// a retry or changes the family. A family granted no audience refuses any.
pub async fn narrowing_only(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, grace_config(30, 1));
    let (t0, f) = issue_grant(&r, "alice", None).await;
    let wider_scopes = scopes(&["read", "admin"]);
    let wider_audience = scopes(&["https://api.example", "https://evil.example"]);
    let read = scopes(&["read"]);
    let api = scopes(&["https://api.example"]);
    type Expect = fn(&Error) -> bool;
    type Refusal<'a> = (Option<&'a [String]>, Option<&'a [String]>, Expect, &'a str);
    let refusals: [Refusal<'_>; 4] = [
        (
            Some(&wider_scopes),
            None,
            |e| matches!(e, Error::ScopeExceeded),
            "invalid_scope",
        ),
        (
            None,
            Some(&wider_audience),
            |e| matches!(e, Error::AudienceExceeded),
            "invalid_target",
        ),
        (
            Some(&wider_scopes),
            Some(&wider_audience),
            |e| matches!(e, Error::ScopeExceeded),
            "invalid_scope",
        ),
        (
            Some(&read),
            Some(&wider_audience),
            |e| matches!(e, Error::AudienceExceeded),
            "invalid_target",
        ),
    ];
    for (s, a, expected, code) in &refusals {
        let e = narrowed(&r, &t0, *s, *a, T0 + 1).await.unwrap_err();
        assert!(expected(&e), "{s:?} {a:?}: {e:?}");
        assert_eq!(e.oauth_error().as_str(), *code);
        assert_eq!(b.store.get(&f.id).await.unwrap().unwrap(), f);
    }
    assert!(!is_revoked(&b, f.id, T0 + 1).await);

    // The current token still works, for a subset (duplicates are fine).
    let twice = scopes(&["write", "write"]);
    let api_twice = scopes(&["https://api.example", "https://api.example"]);
    let out = narrowed(&r, &t0, Some(&twice), Some(&api_twice), T0 + 2)
        .await
        .unwrap();
    assert!(!out.is_grace_retry);
    assert_eq!(out.scopes, scopes(&["write"]));
    assert_grant("narrowing rotation", &out.family);

    // A grace retry is refused the same way, without using up the retry.
    for (s, a, expected, _) in &refusals {
        let e = narrowed(&r, &t0, *s, *a, T0 + 3).await.unwrap_err();
        assert!(expected(&e), "grace retry {s:?} {a:?}: {e:?}");
        assert_eq!(b.store.get(&f.id).await.unwrap().unwrap(), out.family);
    }
    let retry = narrowed(&r, &t0, Some(&read), Some(&api), T0 + 4)
        .await
        .unwrap();
    assert!(retry.is_grace_retry);
    assert_eq!(retry.token, out.token);
    assert_eq!(retry.scopes, read);

    // And the current token goes on rotating.
    let next = refresh_ok(&r, &out.token, None, T0 + 5).await;
    assert_eq!(next.family.generation, 2);
    assert!(!is_revoked(&b, f.id, T0 + 5).await);

    // A family granted no audience (as stored before audiences were kept) has none to
    // narrow to.
    let (u0, u) = issue(&r, "bob", None).await;
    let e = narrowed(&r, &u0, None, Some(&api), T0 + 1)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AudienceExceeded), "{e:?}");
    assert_eq!(b.store.get(&u.id).await.unwrap().unwrap(), u);
    refresh_ok(&r, &u0, None, T0 + 2).await;
}

// ---- expiry -------------------------------------------------------------------------------

fn expired_or_gone(e: &Error) -> bool {
    matches!(e, Error::Expired | Error::UnknownFamily)
}

/// Rotation renews the idle expiry but never moves the absolute expiry.
pub async fn absolute_expiry_never_extended(h: &dyn Harness) {
    let b = h.backend().await;
    let cfg = RotatorConfig::builder()
        .family_lifetime(Duration::from_secs(100))
        .idle_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let r = rotator(&b, cfg);
    let (t0, f) = issue(&r, "alice", None).await;
    assert_eq!(f.idle_expires_at, T0 + 60);
    let a = refresh_ok(&r, &t0, None, T0 + 50).await;
    assert_eq!(
        a.family.idle_expires_at,
        T0 + 100,
        "capped at the absolute expiry"
    );
    assert_eq!(a.family.absolute_expires_at, T0 + 100);
    let c = refresh_ok(&r, &a.token, None, T0 + 99).await;
    assert_eq!(c.family.absolute_expires_at, T0 + 100);
    let e = refresh_err(&r, &c.token, None, T0 + 100).await;
    assert!(expired_or_gone(&e), "{e:?}");
    assert_eq!(e.oauth_error().as_str(), "invalid_grant");
}

/// Each rotation renews the idle expiry; a family left alone for the idle TTL expires.
pub async fn idle_expiry_renewed(h: &dyn Harness) {
    let b = h.backend().await;
    let cfg = RotatorConfig::builder()
        .family_lifetime(Duration::from_secs(10_000))
        .idle_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let r = rotator(&b, cfg);
    let (mut token, _) = issue(&r, "alice", None).await;
    for step in 1..=5 {
        let now = T0 + 59 * step;
        let out = refresh_ok(&r, &token, None, now).await;
        assert_eq!(out.family.idle_expires_at, now + 60);
        token = out.token;
    }
    let e = refresh_err(&r, &token, None, T0 + 59 * 5 + 60).await;
    assert!(expired_or_gone(&e), "{e:?}");
}

/// Only the last [`MAX_ROTATED_HASHES`](crate::MAX_ROTATED_HASHES) rotated tokens are
/// remembered: an older one is refused as forged and leaves the family usable; a remembered
/// one is reuse.
pub async fn bounded_history(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let (t0, f) = issue(&r, "alice", None).await;
    let mut tokens = vec![t0];
    let n = crate::MAX_ROTATED_HASHES + 3;
    for i in 0..n {
        let out = refresh_ok(
            &r,
            tokens.last().unwrap(),
            None,
            T0 + 1 + i64::try_from(i).unwrap(),
        )
        .await;
        tokens.push(out.token);
    }
    let stored = b.store.get(&f.id).await.unwrap().unwrap();
    assert_eq!(stored.rotated.len(), crate::MAX_ROTATED_HASHES);
    let now = T0 + 500;
    for old in &tokens[..3] {
        assert_refused!(&r, old, None, now, Error::ForgedToken);
    }
    assert!(!is_revoked(&b, f.id, now).await);
    assert_refused!(&r, &tokens[3], None, now, Error::ReuseDetected);
}

// ---- revocation ---------------------------------------------------------------------------

/// Revocation by refresh token: the current or any remembered token revokes the family; the
/// family is listed and the reason recorded.
pub async fn revoke_by_token(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let (t0, f) = issue(&r, "alice", None).await;
    let t1 = refresh_ok(&r, &t0, None, T0 + 1).await.token;
    let out = r.revoke_token(t1.as_str(), CLIENT, T0 + 2).await.unwrap();
    let RevokeOutcome::Revoked(revoked) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        revoked.revoked.unwrap().reason,
        RevocationReason::TokenRevoked
    );
    assert_refused!(&r, &t1, None, T0 + 3, Error::Revoked);
    assert_eq!(
        r.revoke_token(t1.as_str(), CLIENT, T0 + 3).await.unwrap(),
        RevokeOutcome::AlreadyRevoked
    );
    assert!(is_revoked(&b, f.id, T0 + 3).await);

    // A rotated token proves possession too.
    let (u0, g) = issue(&r, "bob", None).await;
    let u1 = refresh_ok(&r, &u0, None, T0 + 1).await.token;
    assert!(matches!(
        r.revoke_token(u0.as_str(), CLIENT, T0 + 2).await.unwrap(),
        RevokeOutcome::Revoked(_)
    ));
    assert_refused!(&r, &u1, None, T0 + 3, Error::Revoked);
    assert!(is_revoked(&b, g.id, T0 + 3).await);
}

/// Revocation by family id.
pub async fn revoke_by_family(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let (t0, f) = issue(&r, "alice", None).await;
    let (o0, other) = issue(&r, "alice", None).await;
    let out = r.revoke_family(&f.id, T0 + 5).await.unwrap();
    let RevokeOutcome::Revoked(state) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        state.revoked.unwrap().reason,
        RevocationReason::FamilyRevoked
    );
    assert_eq!(
        r.revoke_family(&f.id, T0 + 6).await.unwrap(),
        RevokeOutcome::AlreadyRevoked
    );
    assert_refused!(&r, &t0, None, T0 + 6, Error::Revoked);
    assert!(is_revoked(&b, f.id, T0 + 6).await);
    assert!(!is_revoked(&b, other.id, T0 + 6).await);
    refresh_ok(&r, &o0, None, T0 + 6).await;
}

/// Revocation of every family of a subject; other subjects are unaffected; `families_of`
/// lists a subject's families.
pub async fn revoke_by_subject(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let mut alice = Vec::new();
    for _ in 0..3 {
        alice.push(issue(&r, "alice", None).await);
    }
    let (bob_token, bob) = issue(&r, "bob", None).await;
    let mut listed = r.families_of("alice").await.unwrap();
    listed.sort();
    let mut expected: Vec<FamilyId> = alice.iter().map(|(_, f)| f.id).collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(r.families_of("bob").await.unwrap(), vec![bob.id]);
    assert!(r.families_of("nobody").await.unwrap().is_empty());

    // One of alice's families is already revoked: not counted again.
    r.revoke_family(&alice[0].1.id, T0 + 1).await.unwrap();
    assert_eq!(r.revoke_subject("alice", T0 + 2).await.unwrap(), 2);
    for (token, f) in &alice {
        assert_refused!(&r, token, None, T0 + 3, Error::Revoked);
        assert!(is_revoked(&b, f.id, T0 + 3).await);
    }
    let stored = b.store.get(&alice[1].1.id).await.unwrap().unwrap();
    assert_eq!(
        stored.revoked.unwrap().reason,
        RevocationReason::SubjectRevoked
    );
    assert_eq!(r.revoke_subject("alice", T0 + 4).await.unwrap(), 0);
    assert_eq!(r.revoke_subject("nobody", T0 + 4).await.unwrap(), 0);
    assert!(!is_revoked(&b, bob.id, T0 + 4).await);
    refresh_ok(&r, &bob_token, None, T0 + 5).await;
}

/// A revoked family stays listed for the longest access-token lifetime, then lapses; the
/// listing is enumerable.
pub async fn revocation_list_ttl(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config()); // access tokens live at most 300 s
    let (_, f) = issue(&r, "alice", None).await;
    r.revoke_family(&f.id, T0 + 10).await.unwrap();
    assert!(is_revoked(&b, f.id, T0 + 10).await);
    assert!(is_revoked(&b, f.id, T0 + 309).await);
    assert!(!is_revoked(&b, f.id, T0 + 310).await);
    let listed = b.revocations.revoked(T0 + 11).await.unwrap();
    let entry = listed.iter().find(|e| e.family_id == f.id).expect("listed");
    assert_eq!(entry.revoked_at, T0 + 10);
    assert_eq!(entry.listed_until, T0 + 310);
    assert_eq!(entry.reason, RevocationReason::FamilyRevoked);
    assert!(
        !b.revocations
            .revoked(T0 + 310)
            .await
            .unwrap()
            .iter()
            .any(|e| e.family_id == f.id)
    );
}

/// A subscriber receives an event for every kind of revocation, once.
pub async fn revocation_events(h: &dyn Harness) {
    let b = h.backend().await;
    let r = rotator(&b, config());
    let mut sub = b.revocations.subscribe();
    let (t0, by_reuse) = issue(&r, "alice", None).await;
    let (t_tok, by_token) = issue(&r, "alice", None).await;
    let (_, by_family) = issue(&r, "alice", None).await;
    let (_, by_subject) = issue(&r, "bob", None).await;

    refresh_ok(&r, &t0, None, T0 + 1).await;
    refresh_err(&r, &t0, None, T0 + 2).await;
    r.revoke_token(t_tok.as_str(), CLIENT, T0 + 3)
        .await
        .unwrap();
    r.revoke_family(&by_family.id, T0 + 4).await.unwrap();
    r.revoke_subject("bob", T0 + 5).await.unwrap();

    let cases = [
        (by_reuse.id, RevocationReason::ReuseDetected, T0 + 2),
        (by_token.id, RevocationReason::TokenRevoked, T0 + 3),
        (by_family.id, RevocationReason::FamilyRevoked, T0 + 4),
        (by_subject.id, RevocationReason::SubjectRevoked, T0 + 5),
    ];
    let ids: Vec<FamilyId> = cases.iter().map(|c| c.0).collect();
    let events = collect_events(h, &mut sub, &ids).await;
    for (id, reason, at) in cases {
        let mine: Vec<&RevocationEvent> = events.iter().filter(|e| e.family_id == id).collect();
        assert_eq!(mine.len(), 1, "events for {id:?}: {mine:?}");
        assert_eq!(mine[0].reason, reason);
        assert_eq!(mine[0].revoked_at, at);
        assert_eq!(mine[0].listed_until, at + 300);
    }
    // Repeated revocations publish nothing new.
    r.revoke_family(&by_family.id, T0 + 6).await.unwrap();
    r.revoke_subject("bob", T0 + 6).await.unwrap();
    refresh_err(&r, &t0, None, T0 + 6).await;
    let again = collect_events(h, &mut sub, &[]).await;
    assert!(again.is_empty(), "events repeated: {again:?}");
}

/// The entry listed for `id` at `now`, found by enumeration (and listed by lookup too).
async fn entry(b: &Backend, id: FamilyId, now: i64) -> RevocationEvent {
    assert!(
        is_revoked(b, id, now).await,
        "{id:?} is not listed at {now}"
    );
    *b.revocations
        .revoked(now)
        .await
        .expect("revoked")
        .iter()
        .find(|e| e.family_id == id)
        .unwrap_or_else(|| panic!("{id:?} is listed but not enumerated"))
}

/// A family's record may be gone while its access tokens are still alive: with a 60 s idle
/// TTL and 900 s access tokens, a family left alone expires (and the store may forget it) a
/// minute after its last refresh, while the access token minted then lives 14 minutes more.
/// Revoking such a family by id, or with its subject (whose index still names it), lists its
/// id all the same: a tombstone ([`RevokeOutcome::Tombstoned`], counted 0), the same entry
/// and event as a revocation, listed for the access-token lifetime from now. Revoking it again
/// while listed changes nothing; once the entry lapsed, it is listed anew. A revocation by
/// token of a forgotten family lists nothing ([`RevokeOutcome::NotFound`]), before and after
/// a tombstone: a token proves nothing without its family.
pub async fn revoke_expired_family_lists_tombstone(h: &dyn Harness) {
    let b = h.backend().await;
    let cfg = RotatorConfig::builder()
        .family_lifetime(Duration::from_secs(10_000))
        .idle_ttl(Duration::from_secs(60))
        .max_access_token_lifetime(Duration::from_secs(900))
        .build()
        .unwrap();
    let r = rotator(&b, cfg);
    let mut sub = b.revocations.subscribe();
    let (by_id_token, by_id) = issue(&r, "alice", None).await;
    let (by_token_token, by_token) = issue(&r, "carol", None).await;
    let (_, idle) = issue(&r, "bob", None).await;
    let (live_token, live) = issue(&r, "bob", None).await;
    // Bob's second family is refreshed (an access token would be minted now); the others
    // expire at T0 + 60 and are forgotten.
    refresh_ok(&r, &live_token, None, T0 + 50).await;
    let forgotten = [by_id.id, by_token.id, idle.id];
    b.forget_expired(&forgotten, T0 + 100).await;

    // By token: nothing to prove the right to revoke with, nothing listed.
    assert_eq!(
        r.revoke_token(by_token_token.as_str(), CLIENT, T0 + 100)
            .await
            .unwrap(),
        RevokeOutcome::NotFound
    );
    assert!(!listed(&b, by_token.id, T0 + 100).await);

    // By family id: a tombstone, listed for the access-token lifetime from now.
    let tombstone = RevocationEvent {
        family_id: by_id.id,
        reason: RevocationReason::FamilyRevoked,
        revoked_at: T0 + 100,
        listed_until: T0 + 1000,
    };
    assert_eq!(
        r.revoke_family(&by_id.id, T0 + 100).await.unwrap(),
        RevokeOutcome::Tombstoned(tombstone)
    );
    assert_eq!(entry(&b, by_id.id, T0 + 100).await, tombstone);
    assert!(listed(&b, by_id.id, T0 + 999).await);
    assert!(!listed(&b, by_id.id, T0 + 1000).await);
    assert!(b.store.get(&by_id.id).await.unwrap().is_none());
    // Again while listed: already covered, the entry unchanged.
    assert_eq!(
        r.revoke_family(&by_id.id, T0 + 101).await.unwrap(),
        RevokeOutcome::AlreadyRevoked
    );
    assert_eq!(entry(&b, by_id.id, T0 + 101).await, tombstone);
    // A token of the tombstoned family still proves nothing, and is still refused.
    assert_eq!(
        r.revoke_token(by_id_token.as_str(), CLIENT, T0 + 102)
            .await
            .unwrap(),
        RevokeOutcome::NotFound
    );
    assert_eq!(entry(&b, by_id.id, T0 + 102).await, tombstone);
    assert_refused!(&r, &by_id_token, None, T0 + 102, Error::UnknownFamily);

    // By subject: the index still names the forgotten family; it is listed, the live one
    // revoked, and only the live one counted.
    let mut bobs = r.families_of("bob").await.unwrap();
    bobs.sort();
    let mut expected = vec![idle.id, live.id];
    expected.sort();
    assert_eq!(bobs, expected, "the subject index forgot a family");
    assert_eq!(r.revoke_subject("bob", T0 + 103).await.unwrap(), 1);
    for id in [idle.id, live.id] {
        assert_eq!(
            entry(&b, id, T0 + 103).await,
            RevocationEvent {
                family_id: id,
                reason: RevocationReason::SubjectRevoked,
                revoked_at: T0 + 103,
                listed_until: T0 + 1003,
            }
        );
    }
    let stored = b.store.get(&live.id).await.unwrap().unwrap();
    assert_eq!(
        stored.revoked.map(|rev| (rev.reason, rev.at)),
        Some((RevocationReason::SubjectRevoked, T0 + 103))
    );
    assert_eq!(r.revoke_subject("bob", T0 + 104).await.unwrap(), 0);
    assert!(!listed(&b, by_token.id, T0 + 104).await);

    // One event per listing, as for any revocation.
    let events = collect_events(h, &mut sub, &[by_id.id, idle.id, live.id]).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.contains(&tombstone), "{events:?}");
    for id in [idle.id, live.id] {
        let e = events.iter().find(|e| e.family_id == id).unwrap();
        assert_eq!(
            (e.reason, e.revoked_at, e.listed_until),
            (RevocationReason::SubjectRevoked, T0 + 103, T0 + 1003)
        );
    }

    // Once the tombstone lapsed, revoking again lists the family anew.
    let again = RevocationEvent {
        revoked_at: T0 + 1000,
        listed_until: T0 + 1900,
        ..tombstone
    };
    assert_eq!(
        r.revoke_family(&by_id.id, T0 + 1000).await.unwrap(),
        RevokeOutcome::Tombstoned(again)
    );
    assert_eq!(entry(&b, by_id.id, T0 + 1000).await, again);
    assert_eq!(
        r.revoke_token(by_id_token.as_str(), CLIENT, T0 + 1001)
            .await
            .unwrap(),
        RevokeOutcome::NotFound
    );
    let events = collect_events(h, &mut sub, &[by_id.id]).await;
    assert_eq!(events, vec![again]);
}

// ---- concurrency --------------------------------------------------------------------------

/// A future that yields to the scheduler once.
fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx: &mut Context<'_>| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Attempt {
    Rotated(String),
    Grace(String),
    Reuse,
    Revoked,
    Other(String),
}

/// Runs 64 refreshes of `token` in parallel (released together) and returns their results.
async fn race(h: &dyn Harness, r: &Arc<Rotator>, token: &RefreshToken, now: i64) -> Vec<Attempt> {
    const N: usize = 64;
    let results = Arc::new(Mutex::new(Vec::with_capacity(N)));
    let ready = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(N);
    for _ in 0..N {
        let (r, token, results) = (r.clone(), token.clone(), results.clone());
        let (ready, go) = (ready.clone(), go.clone());
        handles.push(h.spawn(Box::pin(async move {
            ready.fetch_add(1, Ordering::SeqCst);
            while !go.load(Ordering::SeqCst) {
                yield_now().await;
            }
            let attempt = match r
                .refresh(token.as_str(), CLIENT, None, None, None, now)
                .await
            {
                Ok(out) if out.is_grace_retry => Attempt::Grace(out.token.as_str().to_owned()),
                Ok(out) => Attempt::Rotated(out.token.as_str().to_owned()),
                Err(Error::ReuseDetected) => Attempt::Reuse,
                Err(Error::Revoked) => Attempt::Revoked,
                Err(e) => Attempt::Other(format!("{e:?}")),
            };
            results.lock().unwrap().push(attempt);
        })));
    }
    while ready.load(Ordering::SeqCst) < N {
        h.sleep(Duration::from_millis(1)).await;
    }
    go.store(true, Ordering::SeqCst);
    for handle in handles {
        handle.await;
    }
    let out = std::mem::take(&mut *results.lock().unwrap());
    assert_eq!(out.len(), N);
    out
}

fn count(attempts: &[Attempt], f: impl Fn(&Attempt) -> bool) -> usize {
    attempts.iter().filter(|a| f(a)).count()
}

/// 64 concurrent rotations of one token, `rounds` times (a fresh family each round, after a
/// few sequential rotations): exactly one succeeds; of the 63 others exactly one detects reuse
/// and revokes the family, the rest find it revoked; exactly one revocation event per family.
pub async fn concurrent_rotations(h: &dyn Harness, rounds: usize) {
    let b = h.backend().await;
    let r = Arc::new(rotator(&b, config()));
    let mut sub = b.revocations.subscribe();
    let mut families = Vec::new();
    for round in 0..rounds {
        let (mut token, f) = issue(&r, "racer", None).await;
        for i in 0..(round % 3) {
            token = refresh_ok(&r, &token, None, T0 + i64::try_from(i).unwrap())
                .await
                .token;
        }
        let now = T0 + 10;
        let attempts = race(h, &r, &token, now).await;
        let winners: Vec<&Attempt> = attempts
            .iter()
            .filter(|a| matches!(a, Attempt::Rotated(_)))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {attempts:?}");
        assert_eq!(
            count(&attempts, |a| *a == Attempt::Reuse),
            1,
            "round {round}: {attempts:?}"
        );
        assert_eq!(
            count(&attempts, |a| *a == Attempt::Revoked),
            62,
            "round {round}: {attempts:?}"
        );
        assert!(is_revoked(&b, f.id, now).await);
        // The winner's token is dead too: the family is revoked.
        let Attempt::Rotated(text) = winners[0] else {
            unreachable!()
        };
        let e = r
            .refresh(text, CLIENT, None, None, None, now + 1)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Revoked), "{e:?}");
        let stored = b.store.get(&f.id).await.unwrap().unwrap();
        assert_eq!(
            stored.revoked.unwrap().reason,
            RevocationReason::ReuseDetected
        );
        families.push(f.id);
    }
    let events = collect_events(h, &mut sub, &families).await;
    for id in &families {
        let mine: Vec<&RevocationEvent> = events.iter().filter(|e| e.family_id == *id).collect();
        assert_eq!(mine.len(), 1, "events for {id:?}: {mine:?}");
        assert_eq!(mine[0].reason, RevocationReason::ReuseDetected);
    }
}

/// 64 concurrent refreshes with grace (up to 8 retries): one rotation, exactly 8 grace
/// retries that all return the winner's token, one reuse, 54 revoked; then with 64 allowed
/// retries, one rotation and 63 retries and the family stays usable.
pub async fn concurrent_grace_retries(h: &dyn Harness, rounds: usize) {
    let b = h.backend().await;
    let limited = Arc::new(rotator(&b, grace_config(60, 8)));
    let generous = Arc::new(rotator(&b, grace_config(60, 64)));
    for round in 0..rounds.div_ceil(2) {
        let (token, _) = issue(&limited, "racer", None).await;
        let attempts = race(h, &limited, &token, T0 + 1).await;
        let winner = attempts
            .iter()
            .find_map(|a| match a {
                Attempt::Rotated(t) => Some(t.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("round {round}: no winner: {attempts:?}"));
        assert_eq!(
            count(&attempts, |a| matches!(a, Attempt::Rotated(_))),
            1,
            "{attempts:?}"
        );
        assert_eq!(
            count(&attempts, |a| *a == Attempt::Grace(winner.clone())),
            8,
            "{attempts:?}"
        );
        assert_eq!(
            count(&attempts, |a| *a == Attempt::Reuse),
            1,
            "{attempts:?}"
        );
        assert_eq!(
            count(&attempts, |a| *a == Attempt::Revoked),
            54,
            "{attempts:?}"
        );

        let (token, f) = issue(&generous, "racer", None).await;
        let attempts = race(h, &generous, &token, T0 + 1).await;
        let winner = attempts
            .iter()
            .find_map(|a| match a {
                Attempt::Rotated(t) => Some(t.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("round {round}: no winner: {attempts:?}"));
        assert_eq!(
            count(&attempts, |a| *a == Attempt::Grace(winner.clone())),
            63,
            "{attempts:?}"
        );
        let stored = b.store.get(&f.id).await.unwrap().unwrap();
        assert!(stored.revoked.is_none());
        assert_eq!(stored.generation, 1);
        assert_eq!(stored.grace.unwrap().uses, 63);
        let winner = RefreshToken::parse(&winner).unwrap();
        refresh_ok(&generous, &winner, None, T0 + 2).await;
    }
}

impl fmt::Debug for dyn Harness + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Harness")
    }
}
