//! The backend conformance suite (`token_refresh::conformance`) against the in-memory store,
//! one test per check so failures are named. `token-store-redis` runs the same suite against
//! Redis standalone and Cluster.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::sync::Arc;
use std::time::Duration;

use token_refresh::MemoryStore;
use token_refresh::conformance::{self, Backend, Harness};
use token_testkit::TokioHarness;

/// A fresh memory store per check, 50 concurrency rounds; it forgets expired families with a
/// sweep.
fn memory() -> impl Harness {
    TokioHarness::new(|| async {
        let store = Arc::new(MemoryStore::new());
        let sweeper = Arc::clone(&store);
        Backend::new(store).with_forget(move |_, now| {
            sweeper.purge_expired(now).unwrap();
            Box::pin(async {})
        })
    })
    .with_concurrency_rounds(50)
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            conformance::$name(&memory()).await;
        }
    )*};
}

checks!(
    issue_and_rotate,
    reuse_revokes_family,
    forged_token_leaves_family_usable,
    refused_before_store_lookup,
    unknown_family,
    create_never_overwrites,
    grace_off_previous_is_reuse,
    grace_returns_same_successor,
    grace_use_limit,
    grace_outside_window_is_reuse,
    grace_older_token_is_reuse,
    grace_requires_same_dpop_key,
    grace_disabled_later_is_reuse,
    dpop_binding,
    down_scoping,
    grant_is_kept,
    client_binding,
    narrowing_only,
    absolute_expiry_never_extended,
    idle_expiry_renewed,
    bounded_history,
    revoke_by_token,
    revoke_by_family,
    revoke_by_subject,
    revocation_list_ttl,
    revocation_events,
    revoke_expired_family_lists_tombstone,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations() {
    let h = memory();
    conformance::concurrent_rotations(&h, h.concurrency_rounds()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grace_retries() {
    let h = memory();
    conformance::concurrent_grace_retries(&h, h.concurrency_rounds()).await;
}

/// `run_all` is what other backends call; make sure it runs end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all() {
    conformance::run_all(&memory()).await;
}

/// The memory store's own bounds: lazy and explicit purging, the family limit, and the
/// subject index keeping forgotten families until two minutes past their absolute expiry.
#[tokio::test]
async fn memory_store_is_bounded() {
    use token_refresh::{FamilyStore, Pepper, RevocationList, Rotator, RotatorConfig};
    let store = Arc::new(MemoryStore::new().with_max_families(100));
    let config = RotatorConfig::builder()
        .family_lifetime(Duration::from_secs(100))
        .idle_ttl(Duration::from_secs(50))
        .max_access_token_lifetime(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = Rotator::new(store.clone(), Pepper::generate().unwrap(), config);
    let t0 = conformance::T0;
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(r.issue("u", "c", &[], None, t0).await.unwrap().1.id);
    }
    assert_eq!(store.len(), 100);
    let full = r.issue("u", "c", &[], None, t0).await.unwrap_err();
    assert_eq!(full.oauth_error().as_str(), "temporarily_unavailable");
    r.revoke_family(&ids[0], t0).await.unwrap();

    // Once they expire, creating sweeps them and makes room.
    let (_, fresh) = r.issue("u", "c", &[], None, t0 + 50).await.unwrap();
    assert_eq!(store.len(), 1);
    assert!(store.get(&ids[1]).await.unwrap().is_none());
    // The subject index still names the forgotten families (their access tokens may live
    // until t0 + 100).
    let mut named = r.families_of("u").await.unwrap();
    named.sort();
    let mut expected = ids.clone();
    expected.push(fresh.id);
    expected.sort();
    assert_eq!(named, expected);
    assert!(!store.is_revoked(&ids[0], t0 + 10).await.unwrap());
    assert!(store.revoked(t0 + 10).await.unwrap().is_empty());

    // Writes sweep lazily too (a shard every 256 writes): families expired by the writers'
    // clock go without an explicit purge.
    let store = Arc::new(MemoryStore::new());
    let r = Rotator::new(
        store.clone(),
        Pepper::generate().unwrap(),
        r.config().clone(),
    );
    for _ in 0..1000 {
        r.issue("old", "c", &[], None, t0).await.unwrap();
    }
    for _ in 0..5000 {
        r.issue("new", "c", &[], None, t0 + 60).await.unwrap();
    }
    assert_eq!(store.len(), 5000);
    assert_eq!(r.families_of("old").await.unwrap().len(), 1000);
    assert_eq!(store.purge_expired(t0 + 110).unwrap(), 5000);
    assert!(store.is_empty());
    // Revoking a subject whose families are all forgotten lists each (tombstones, counted 0);
    // the entries lapse after the access-token lifetime like any other.
    assert_eq!(r.revoke_subject("old", t0 + 110).await.unwrap(), 0);
    assert_eq!(store.revoked(t0 + 110).await.unwrap().len(), 1000);
    store.purge_expired(t0 + 120).unwrap();
    assert!(store.revoked(t0 + 110).await.unwrap().is_empty());
    // Index entries go two minutes after the absolute expiry (old: t0 + 100, new: t0 + 160),
    // by an explicit purge or by the sweep of the next creation.
    store.purge_expired(t0 + 219).unwrap();
    assert_eq!(r.families_of("old").await.unwrap().len(), 1000);
    store.purge_expired(t0 + 220).unwrap();
    assert!(r.families_of("old").await.unwrap().is_empty());
    assert_eq!(r.families_of("new").await.unwrap().len(), 5000);
    r.issue("other", "c", &[], None, t0 + 280).await.unwrap();
    assert!(r.families_of("new").await.unwrap().is_empty());
}

/// `issue_with` keeps what it is given (audiences deduplicated, a zero lifetime as none) and
/// refuses, before any store write, audiences and claims a family must not keep.
#[tokio::test]
async fn issue_with_checks_the_grant() {
    use token_refresh::{
        FamilyStore, GrantDetails, MAX_AUDIENCES, MAX_CLAIMS_BYTES, MAX_ID_BYTES, Pepper, Rotator,
        RotatorConfig,
    };
    let store = Arc::new(MemoryStore::new());
    let r = Rotator::new(
        store.clone(),
        Pepper::generate().unwrap(),
        RotatorConfig::default(),
    );
    let t0 = conformance::T0;
    let details = GrantDetails {
        audience: vec!["https://a".into(), "https://b".into(), "https://a".into()],
        claims_json: Some(r#"{"tenant":"t-1","n":1.50}"#.into()),
        access_ttl: Some(60),
    };
    let (_, f) = r
        .issue_with("u", "c", &[], None, &details, t0)
        .await
        .unwrap();
    assert_eq!(
        f.audience,
        vec!["https://a".to_owned(), "https://b".to_owned()]
    );
    assert_eq!(
        f.claims_json.as_deref(),
        Some(r#"{"tenant":"t-1","n":1.50}"#)
    );
    assert_eq!(f.access_ttl, Some(60));
    assert_eq!(store.get(&f.id).await.unwrap().unwrap(), f);
    let zero = GrantDetails {
        access_ttl: Some(0),
        ..GrantDetails::default()
    };
    let (_, f) = r.issue_with("u", "c", &[], None, &zero, t0).await.unwrap();
    assert_eq!(f.access_ttl, None);
    // `issue` is `issue_with` without details.
    let (_, f) = r.issue("u", "c", &[], None, t0).await.unwrap();
    assert!(f.audience.is_empty() && f.claims_json.is_none() && f.access_ttl.is_none());

    let stored = store.len();
    let bad = [
        GrantDetails {
            audience: vec![String::new()],
            ..GrantDetails::default()
        },
        GrantDetails {
            audience: vec!["https://a\n".into()],
            ..GrantDetails::default()
        },
        GrantDetails {
            audience: vec!["a".repeat(MAX_ID_BYTES + 1)],
            ..GrantDetails::default()
        },
        GrantDetails {
            audience: (0..=MAX_AUDIENCES)
                .map(|i| format!("https://{i}"))
                .collect(),
            ..GrantDetails::default()
        },
        GrantDetails {
            claims_json: Some("[]".into()),
            ..GrantDetails::default()
        },
        GrantDetails {
            claims_json: Some("\"text\"".into()),
            ..GrantDetails::default()
        },
        GrantDetails {
            claims_json: Some("{\"a\":".into()),
            ..GrantDetails::default()
        },
        GrantDetails {
            claims_json: Some(format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_CLAIMS_BYTES))),
            ..GrantDetails::default()
        },
    ];
    for details in &bad {
        let e = r
            .issue_with("u", "c", &[], None, details, t0)
            .await
            .unwrap_err();
        assert_eq!(
            e.oauth_error().as_str(),
            "invalid_request",
            "{details:?}: {e:?}"
        );
    }
    assert_eq!(store.len(), stored, "nothing was stored");
}
