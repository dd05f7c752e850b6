//! Property tests against real Redis (standalone and a 3-master Cluster, started by the
//! fixtures): the token-refresh model-based test (random issue / rotate / reuse / grace retry
//! / forge / revoke / clock-advance sequences, checked against a reference model at every
//! step), and the Lua scripts against `decide` / `decide_revoke` / `decide_revoke_absent` on
//! arbitrary states.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use token_refresh::conformance::{Backend, Harness, model};
use token_refresh::{
    FamilyId, FamilyStore, RevocationList, RevokeOutcome, RotateOutcome, decide, decide_revoke,
    decide_revoke_absent,
};
use token_store_redis::{ReconnectPolicy, RedisConfig, RedisStore};
use token_testkit::{RedisCluster, RedisServer, TokioHarness};

fn fresh_prefix() -> String {
    format!("p{}:", FamilyId::generate().unwrap())
}

async fn connect(url: &str, prefix: &str) -> RedisStore {
    let config = RedisConfig::builder(url)
        .key_prefix(prefix)
        .pool_size(2)
        .reconnect(ReconnectPolicy::constant(Duration::from_millis(100)))
        .build()
        .unwrap();
    RedisStore::connect(config).await.unwrap()
}

/// The model-based driver's harness on the Redis at `url`: each backend is a new connection
/// with a fresh key prefix.
fn harness(url: String) -> impl Harness {
    TokioHarness::new(move || {
        let url = url.clone();
        async move { Backend::new(Arc::new(connect(&url, &fresh_prefix()).await)) }
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        // Failing seeds go to `tests/property_tests.proptest-regressions`, as with `proptest!`.
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..Config::default()
    })
}

fn start_server() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| panic!("{e}"))
}

fn start_cluster() -> RedisCluster {
    RedisCluster::start().unwrap_or_else(|e| panic!("{e}"))
}

// ---- model-based ------------------------------------------------------------------------

fn model_test(url: String, cases: u32) {
    let rt = runtime();
    let h = harness(url);
    runner(cases)
        .run(
            &(model::config_strategy(), model::ops_strategy(60)),
            |(cfg, ops)| {
                rt.block_on(model::run(&h, &cfg, &ops));
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Random operation sequences: the Redis-backed rotator agrees with the model at every step.
#[test]
fn model_agrees_with_redis_standalone() {
    let server = start_server();
    model_test(server.url(), 32);
}

/// The same on a Cluster (families spread over the three masters).
#[test]
fn model_agrees_with_redis_cluster() {
    let cluster = start_cluster();
    model_test(cluster.url(), 16);
}

// ---- Lua scripts against `decide` ---------------------------------------------------------

/// The next event for `id` (events of earlier, failed cases are skipped). The deadline is
/// generous: under a loaded CI machine a Cluster's bus can take seconds to carry a `PUBLISH`
/// to the subscriber's node; a lost event would still fail, naming the subscriber's resyncs.
async fn next_event(
    store: &RedisStore,
    events: &std::sync::Mutex<token_refresh::RevocationSubscription>,
    id: FamilyId,
) -> token_refresh::RevocationEvent {
    let started = std::time::Instant::now();
    loop {
        let next = events.lock().unwrap().try_recv().unwrap();
        match next {
            Some(e) if e.family_id == id => return e,
            Some(_) => {}
            None => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "no event for {id:?} within 20 s (the subscriber resynced {} times; is \
                     the revocation listed: {:?})",
                    store.subscriber_resyncs(),
                    store.is_revoked(&id, 1_000).await,
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// `model::decide_cases` mostly draws revoked, expired or forged cases (a rotation about 1 %
/// of the time, a grace retry almost never); these are the same cases moved towards the
/// interesting part: live families, the bound key, a token the family knows, mostly the
/// family's own client (else another one: a rotated token of another client is no reuse),
/// and audiences narrowed to a subset of the grant or widened beyond it.
fn live_decide_cases()
-> impl Strategy<Value = (token_refresh::Family, token_refresh::RotateRequest)> {
    let grace = (1i64..15, 1u32..4, 0u8..3, any::<bool>());
    let binding = (0u8..4, 0u8..5, (0u8..4, any::<prop::sample::Index>()));
    (model::decide_cases(), 0u8..6, any::<bool>(), binding, grace).prop_map(
        |(
            (mut f, mut req),
            pick,
            keep_revoked,
            (key, client, (audience, cut)),
            (window, uses, at, last_use),
        )| {
            if !keep_revoked {
                f.revoked = None;
            }
            if key > 0 {
                req.presented_jkt = f.dpop_jkt.clone();
            }
            req.client_id = if client > 0 {
                f.client_id.clone()
            } else {
                "another-client".to_owned()
            };
            // A subset of the grant (the empty one too), or one more than the grant.
            let mut subset = f.audience[..cut.index(f.audience.len() + 1)].to_vec();
            req.requested_audience = match audience {
                0 => None,
                1 | 2 => Some(subset),
                _ => {
                    subset.insert(0, "https://not-granted.example".to_owned());
                    Some(subset)
                }
            };
            req.presented_hash = match pick {
                0 | 1 => f.current_hash,
                2 | 3 => f.grace.as_ref().map_or(f.current_hash, |g| g.previous_hash),
                4 => f.rotated.last().copied().unwrap_or(req.presented_hash),
                _ => req.presented_hash,
            };
            if matches!(pick, 2 | 3)
                && let Some(g) = f.grace.as_mut()
            {
                // A retry around the end of the grace window (the boundary itself included)
                // and of the use limit, with grace on.
                req.grace = token_refresh::GracePolicy {
                    window,
                    max_uses: uses,
                };
                req.sealed_successor =
                    Some(token_refresh::SealedSuccessor::from_bytes(vec![9, 9, 9]).unwrap());
                req.now = g.rotated_at
                    + match at {
                        0 => window - 1,
                        1 => window,
                        _ => window / 2,
                    };
                if last_use {
                    g.uses = uses - 1;
                }
                if pick == 3 {
                    req.requested_scopes = None;
                    req.requested_audience = None;
                }
            }
            f.absolute_expires_at = f.absolute_expires_at.max(req.now + 20);
            f.idle_expires_at = f
                .idle_expires_at
                .max(req.now + 10)
                .min(f.absolute_expires_at);
            (f, req)
        },
    )
}

/// Stores the family, runs the rotation script, and compares outcome, stored state, listing
/// and events with `decide`.
fn lua_rotate_test(url: String, cases: u32) {
    let rt = runtime();
    let store = rt.block_on(connect(&url, &fresh_prefix()));
    let events = std::sync::Mutex::new(store.subscribe());
    runner(cases)
        .run(
            &prop_oneof![model::decide_cases(), live_decide_cases()],
            |(mut family, mut req)| {
                // A fresh id per case, so cases do not see each other.
                family.id = FamilyId::generate().unwrap();
                req.family_id = family.id;
                let expected = decide(&family, &req);
                rt.block_on(async {
                    store.create(&family).await.unwrap();
                    let got = store.rotate(&req).await.unwrap();
                    prop_assert_eq!(&got, &expected);
                    let stored = store.get(&family.id).await.unwrap().unwrap();
                    prop_assert_eq!(&stored, expected.new_state().unwrap_or(&family));
                    let reuse = matches!(expected, RotateOutcome::Reuse(_));
                    prop_assert_eq!(store.is_revoked(&family.id, req.now).await.unwrap(), reuse);
                    if reuse {
                        let event = next_event(&store, &events, family.id).await;
                        prop_assert_eq!(event.family_id, family.id);
                        prop_assert_eq!(event.revoked_at, req.now);
                        prop_assert_eq!(event.listed_until, req.now + req.revocation_ttl);
                    }
                    Ok(())
                })
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let stray = events.lock().unwrap().try_recv().unwrap();
    assert!(stray.is_none(), "an event without a reuse: {stray:?}");
}

/// `model::revoke_cases`, with the presented token picked among the family's own (the grace
/// state's previous hash alone in half of them: not also among the rotated ones), and for a
/// presented token mostly the family's own client, sometimes another one or none.
fn live_revoke_cases() -> impl Strategy<
    Value = (
        token_refresh::Family,
        Option<token_refresh::TokenHash>,
        token_refresh::RevokeRequest,
    ),
> {
    (model::revoke_cases(), 0u8..4, any::<bool>(), 0u8..6).prop_map(
        |((mut f, presented, mut req), pick, only_in_grace, client)| {
            if only_in_grace && let Some(g) = &f.grace {
                let previous = g.previous_hash;
                f.rotated.retain(|h| *h != previous);
            }
            let presented = match pick {
                0 => Some(f.current_hash),
                1 => f.grace.as_ref().map(|g| g.previous_hash).or(presented),
                2 => f.rotated.first().copied().or(presented),
                _ => presented,
            };
            if presented.is_some() {
                req.client_id = match client {
                    0 => Some("another-client".to_owned()),
                    1 => None,
                    _ => Some(f.client_id.clone()),
                };
            }
            (f, presented, req)
        },
    )
}

/// Stores the family, runs the revocation script, and compares with `decide_revoke`.
fn lua_revoke_test(url: String, cases: u32) {
    let rt = runtime();
    let store = rt.block_on(connect(&url, &fresh_prefix()));
    let events = std::sync::Mutex::new(store.subscribe());
    runner(cases)
        .run(
            &prop_oneof![model::revoke_cases(), live_revoke_cases()],
            |(mut family, presented, req)| {
                family.id = FamilyId::generate().unwrap();
                let expected = decide_revoke(&family, presented.as_ref(), &req);
                rt.block_on(async {
                    store.create(&family).await.unwrap();
                    let got = store
                        .revoke_family(&family.id, presented.as_ref(), &req)
                        .await
                        .unwrap();
                    prop_assert_eq!(&got, &expected);
                    let stored = store.get(&family.id).await.unwrap().unwrap();
                    let revoked = match &expected {
                        RevokeOutcome::Revoked(next) => {
                            prop_assert_eq!(&stored, next);
                            true
                        }
                        _ => {
                            prop_assert_eq!(&stored, &family);
                            false
                        }
                    };
                    prop_assert_eq!(
                        store.is_revoked(&family.id, req.now).await.unwrap(),
                        revoked
                    );
                    if revoked {
                        let event = next_event(&store, &events, family.id).await;
                        prop_assert_eq!(event.family_id, family.id);
                        prop_assert_eq!(event.reason, req.reason);
                    }
                    Ok(())
                })
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let stray = events.lock().unwrap().try_recv().unwrap();
    assert!(stray.is_none(), "an event without a revocation: {stray:?}");
}

/// Runs the revocation script on a family of which there is no document (with or without a
/// revocation-list entry, written as a revocation would), and compares with
/// `decide_revoke_absent`: the outcome, the entry listed afterwards and the event.
fn lua_revoke_absent_test(url: String, cases: u32) {
    let rt = runtime();
    let store = rt.block_on(connect(&url, &fresh_prefix()));
    let events = std::sync::Mutex::new(store.subscribe());
    runner(cases)
        .run(&model::revoke_absent_cases(), |(presented, listed, req)| {
            let id = FamilyId::generate().unwrap();
            let listed = listed.map(|e| token_refresh::RevocationEvent { family_id: id, ..e });
            let expected = decide_revoke_absent(&id, presented.as_ref(), listed.as_ref(), &req);
            rt.block_on(async {
                if let Some(e) = listed {
                    // An earlier revocation by id, at `e.revoked_at`, listed until
                    // `e.listed_until`; the family document is gone since.
                    let earlier = token_refresh::RevokeRequest {
                        reason: e.reason,
                        client_id: None,
                        now: e.revoked_at,
                        revocation_ttl: e.listed_until - e.revoked_at,
                    };
                    let out = store.revoke_family(&id, None, &earlier).await.unwrap();
                    prop_assert_eq!(out, RevokeOutcome::Tombstoned(e));
                    prop_assert_eq!(next_event(&store, &events, id).await, e);
                }
                let got = store
                    .revoke_family(&id, presented.as_ref(), &req)
                    .await
                    .unwrap();
                prop_assert_eq!(&got, &expected);
                prop_assert!(store.get(&id).await.unwrap().is_none());
                let now_listed = match (&expected, listed) {
                    (RevokeOutcome::Tombstoned(entry), _) => {
                        prop_assert_eq!(next_event(&store, &events, id).await, *entry);
                        Some(*entry)
                    }
                    (_, before) => before,
                };
                let enumerated = store
                    .revoked(req.now)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|e| e.family_id == id);
                prop_assert_eq!(enumerated, now_listed.filter(|e| e.is_listed(req.now)));
                prop_assert_eq!(
                    store.is_revoked(&id, req.now).await.unwrap(),
                    now_listed.is_some_and(|e| e.is_listed(req.now))
                );
                Ok(())
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let stray = events.lock().unwrap().try_recv().unwrap();
    assert!(stray.is_none(), "an event without a listing: {stray:?}");
}

/// The rotation script is `decide`, on arbitrary families and requests.
#[test]
fn lua_rotate_matches_decide_standalone() {
    let server = start_server();
    lua_rotate_test(server.url(), 1024);
}

/// The revocation script is `decide_revoke`, on arbitrary families and requests.
#[test]
fn lua_revoke_matches_decide_revoke_standalone() {
    let server = start_server();
    lua_revoke_test(server.url(), 512);
}

/// Without a family document, the revocation script is `decide_revoke_absent`.
#[test]
fn lua_revoke_of_a_forgotten_family_matches_decide_revoke_absent_standalone() {
    let server = start_server();
    lua_revoke_absent_test(server.url(), 256);
}

/// Both scripts again on a Cluster (fewer cases: the scripts are the same, the routing is
/// what differs).
#[test]
fn lua_scripts_match_decide_cluster() {
    let cluster = start_cluster();
    lua_rotate_test(cluster.url(), 256);
    lua_revoke_test(cluster.url(), 128);
    lua_revoke_absent_test(cluster.url(), 64);
}
