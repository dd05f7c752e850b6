//! Against real `redis-server` processes started by the fixtures (`token_testkit`):
//! the token-refresh conformance suite on a standalone server and on a 3-master Cluster,
//! round trips per rotation, TTLs on every key, the DPoP replay cache, and faults (server
//! killed and restarted, server stalled past the timeout, pub/sub connection cut, garbage in
//! Redis).

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use token_dpop::{ReplayCache, ReplayError, ReplayKey};
use token_refresh::conformance::{self, Backend, Harness, T0};
use token_refresh::{
    Error, Family, FamilyId, FamilyStore, Pepper, RefreshOutcome, RevocationList, RevocationReason,
    RevokeOutcome, RevokeRequest, Rotator, RotatorConfig,
};
use token_store_redis::{ReconnectPolicy, RedisConfig, RedisConfigBuilder, RedisStore};
use token_testkit::{RedisCluster, RedisSentinel, RedisServer, Reply, TokioHarness};

// ---- harness ---------------------------------------------------------------------------

fn fresh_prefix() -> String {
    format!("t{}:", FamilyId::generate().unwrap())
}

fn config(url: &str, prefix: &str) -> RedisConfigBuilder {
    RedisConfig::builder(url)
        .key_prefix(prefix)
        .pool_size(2)
        .reconnect(ReconnectPolicy::constant(Duration::from_millis(100)))
}

async fn connect(builder: RedisConfigBuilder) -> RedisStore {
    RedisStore::connect(builder.build().unwrap()).await.unwrap()
}

/// The conformance suite's harness on the Redis at `url`: each backend is a new connection
/// with a fresh key prefix; 30 concurrency rounds. It forgets expired families by deleting
/// their documents, as their TTL would.
fn harness(url: String, resp3: bool) -> impl Harness {
    TokioHarness::new(move || {
        let prefix = fresh_prefix();
        let builder = config(&url, &prefix).resp3(resp3);
        let url = url.clone();
        async move {
            Backend::new(Arc::new(connect(builder).await)).with_forget(move |ids, _| {
                Box::pin(delete_families(url.clone(), prefix.clone(), ids))
            })
        }
    })
    .with_concurrency_rounds(30)
}

/// Deletes the documents of the families `ids` under `prefix` (on any deployment: fred routes
/// each `DEL`), leaving their subject index and revocation-list entries alone.
async fn delete_families(url: String, prefix: String, ids: Vec<FamilyId>) {
    use fred::interfaces::{ClientLike, KeysInterface};
    let client =
        fred::types::Builder::from_config(fred::types::config::Config::from_url(&url).unwrap())
            .build()
            .unwrap();
    client.init().await.unwrap();
    for id in ids {
        let deleted: i64 = client.del(format!("{prefix}f:{{{id}}}")).await.unwrap();
        assert_eq!(deleted, 1, "no document for {id:?}");
    }
    client.quit().await.unwrap();
}

fn start_server() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| panic!("{e}"))
}

fn start_cluster() -> RedisCluster {
    RedisCluster::start().unwrap_or_else(|e| panic!("{e}"))
}

fn rotator(store: &RedisStore) -> Rotator {
    let config = RotatorConfig::builder()
        .family_lifetime(Duration::from_secs(10_000))
        .idle_ttl(Duration::from_secs(1_000))
        .max_access_token_lifetime(Duration::from_secs(300))
        .build()
        .unwrap();
    Rotator::new(Arc::new(store.clone()), conformance::test_pepper(), config)
}

/// A standalone server, a store on it under a fresh key prefix, and a [`rotator`] over the
/// store.
struct OnServer {
    server: RedisServer,
    prefix: String,
    store: RedisStore,
    r: Rotator,
}

impl OnServer {
    async fn start() -> Self {
        OnServer::with(|config| config).await
    }

    /// With the store's configuration changed by `edit`.
    async fn with(edit: impl FnOnce(RedisConfigBuilder) -> RedisConfigBuilder) -> Self {
        let server = start_server();
        let prefix = fresh_prefix();
        let store = connect(edit(config(&server.url(), &prefix))).await;
        let r = rotator(&store);
        OnServer {
            server,
            prefix,
            store,
            r,
        }
    }
}

/// `token` refreshed by its client `app` at `now`, with no DPoP key and nothing narrowed.
async fn refresh(r: &Rotator, token: &str, now: i64) -> Result<RefreshOutcome, Error> {
    r.refresh(token, "app", None, None, None, now).await
}

/// The `#[tokio::test]`s `$standalone` and `$cluster`: the async fn `$check`, given the URL, on
/// a new standalone server and on a new Cluster.
macro_rules! standalone_and_cluster {
    ($standalone:ident, $cluster:ident, $check:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $standalone() {
            let server = start_server();
            $check(server.url()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $cluster() {
            let cluster = start_cluster();
            $check(cluster.url()).await;
        }
    };
}

// ---- the conformance suite --------------------------------------------------------------

/// Every check of `token_refresh::conformance` (including 64 concurrent rotations of one token
/// over 30 rounds, and 64 concurrent grace retries) on a standalone server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_standalone() {
    let server = start_server();
    conformance::run_all(&harness(server.url(), true)).await;
}

/// The suite once more over RESP2 (`resp3(false)`, for servers older than 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_standalone_resp2() {
    let server = start_server();
    conformance::run_all(&harness(server.url(), false)).await;
}

/// And through Sentinel (`redis-sentinel://...?sentinelServiceName=mymaster`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_sentinel() {
    let sentinel = RedisSentinel::start().unwrap_or_else(|e| panic!("{e}"));
    conformance::run_all(&harness(sentinel.url(), true)).await;
    let store = connect(config(&sentinel.url(), "s:")).await;
    assert_eq!(store.deployment(), token_store_redis::Deployment::Sentinel);
}

/// The same suite on a 3-master Redis Cluster: every script runs on one slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_cluster() {
    let cluster = start_cluster();
    conformance::run_all(&harness(cluster.url(), true)).await;
}

// ---- round trips and key hygiene --------------------------------------------------------

/// Calls per command name, from `INFO commandstats`.
fn command_calls(server: &RedisServer) -> std::collections::HashMap<String, i64> {
    let text = server
        .command(&["INFO", "commandstats"])
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// A rotation is exactly one Redis command (one `EVALSHA`), reuse detection included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_trip_per_rotation() {
    let OnServer { server, r, .. } = OnServer::start().await;
    let (first, _) = r.issue("alice", "app", &[], None, T0).await.unwrap();
    // Warm up (scripts are loaded at connect; nothing else is sent lazily).
    let mut token = refresh(&r, first.as_str(), T0 + 1).await.unwrap().token;

    const N: i64 = 50;
    let before = command_calls(&server);
    for i in 0..N {
        token = refresh(&r, token.as_str(), T0 + 2 + i).await.unwrap().token;
    }
    // Reuse: detect, revoke, list and publish, still one command.
    assert!(matches!(
        refresh(&r, first.as_str(), T0 + 100).await,
        Err(Error::ReuseDetected)
    ));
    let after = command_calls(&server);
    let mut delta: Vec<(String, i64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, d)| *d != 0)
        // The subscriber connection may resubscribe at any time (after a reconnect); it is
        // not part of a rotation.
        .filter(|(k, _)| k != "subscribe")
        .collect();
    delta.sort();
    // The client sent one EVALSHA per refresh and nothing else (besides this test's INFO);
    // the GETs, SETs and the PUBLISH are the scripts' own `redis.call`s.
    let expected: Vec<(String, i64)> = vec![
        ("evalsha".into(), N + 1),
        ("get".into(), N + 1),
        ("info".into(), 1),
        ("publish".into(), 1),
        ("set".into(), N + 2),
    ];
    assert_eq!(delta, expected);
}

/// Every key the store writes has a TTL, and the family's keys share a hash tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_expires() {
    let OnServer {
        server,
        prefix,
        store,
        r,
    } = OnServer::start().await;
    let (t0, f) = r.issue("alice", "app", &[], None, T0).await.unwrap();
    refresh(&r, t0.as_str(), T0 + 1).await.unwrap();
    // Reuse: the family is revoked and listed.
    assert!(matches!(
        refresh(&r, t0.as_str(), T0 + 2).await,
        Err(Error::ReuseDetected)
    ));
    let (_, g) = r.issue("bob", "app", &[], None, T0).await.unwrap();
    r.revoke_subject("bob", T0 + 3).await.unwrap();
    assert!(
        store
            .insert_if_absent(&ReplayKey::new("jkt", "jti"), T0 + 60, T0)
            .await
            .unwrap()
    );

    let Reply::Array(Some(keys)) = server.command(&["KEYS", &format!("{prefix}*")]).unwrap() else {
        panic!("KEYS")
    };
    let keys: Vec<String> = keys.iter().map(|k| k.text().unwrap()).collect();
    for expected in [
        format!("{prefix}f:{{{}}}", f.id),
        format!("{prefix}r:{{{}}}", f.id),
        format!("{prefix}f:{{{}}}", g.id),
        format!("{prefix}r:{{{}}}", g.id),
        format!("{prefix}s:alice"),
        format!("{prefix}s:bob"),
    ] {
        assert!(keys.contains(&expected), "{expected} not in {keys:?}");
    }
    assert_eq!(keys.len(), 7, "{keys:?}");
    for key in &keys {
        let ttl = server.command(&["PTTL", key]).unwrap().int().unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
    // Revocation entries live for the access-token lifetime (300 s) plus the margin (60 s).
    let ttl = server
        .command(&["PTTL", &format!("{prefix}r:{{{}}}", f.id)])
        .unwrap()
        .int()
        .unwrap();
    assert!((350_000..=360_000).contains(&ttl), "{ttl}");
    // The replay entry lives expires_at - now (60 s) plus the margin (60 s), like the family
    // keys: an instance whose clock is behind still finds it while it accepts the proof.
    let replay = keys.iter().find(|k| k.contains(":dpop:")).unwrap();
    let ttl = server.command(&["PTTL", replay]).unwrap().int().unwrap();
    assert!((115_000..=120_000).contains(&ttl), "{ttl}");
}

// ---- DPoP replay cache ------------------------------------------------------------------

async fn replay_checks(url: String) {
    // No TTL margin: the expiry below is watched in real time.
    let store = Arc::new(connect(config(&url, &fresh_prefix()).ttl_margin(Duration::ZERO)).await);
    let key = ReplayKey::new("thumbprint", "jti-1");
    assert!(store.insert_if_absent(&key, T0 + 60, T0).await.unwrap());
    assert!(!store.insert_if_absent(&key, T0 + 60, T0 + 1).await.unwrap());
    assert!(
        store
            .insert_if_absent(&ReplayKey::new("thumbprint", "jti-2"), T0 + 60, T0)
            .await
            .unwrap()
    );
    assert_eq!(store.name(), "redis");

    // 64 concurrent copies of one proof, many rounds: exactly one first use each time.
    for round in 0..10 {
        let key = ReplayKey::new("thumbprint", &format!("race-{round}"));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.insert_if_absent(&key, T0 + 60, T0).await.unwrap()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "round {round}");
    }

    // Entries expire after `expires_at - now` seconds.
    let short = ReplayKey::new("thumbprint", "short");
    assert!(store.insert_if_absent(&short, T0 + 1, T0).await.unwrap());
    assert!(!store.insert_if_absent(&short, T0 + 1, T0).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(
        store
            .insert_if_absent(&short, T0 + 2, T0 + 1)
            .await
            .unwrap()
    );
}

standalone_and_cluster!(replay_cache_standalone, replay_cache_cluster, replay_checks);

/// A replay entry outlives the proof's acceptance by the configured TTL margin, also for a
/// proof already past it (never a write that expires at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_entries_get_the_ttl_margin() {
    let OnServer {
        server,
        prefix,
        store,
        ..
    } = OnServer::with(|config| config.ttl_margin(Duration::from_secs(7))).await;
    let pttl = |jti: &str| {
        let key = format!("{prefix}dpop:{}", ReplayKey::new("jkt", jti).to_hex());
        server.command(&["PTTL", &key]).unwrap().int().unwrap()
    };
    let live = ReplayKey::new("jkt", "live");
    assert!(store.insert_if_absent(&live, T0 + 60, T0).await.unwrap());
    let ttl = pttl("live");
    assert!((66_000..=67_000).contains(&ttl), "{ttl}");
    let late = ReplayKey::new("jkt", "late");
    assert!(store.insert_if_absent(&late, T0 - 5, T0).await.unwrap());
    let ttl = pttl("late");
    assert!((6_000..=7_000).contains(&ttl), "{ttl}");
}

// ---- faults -----------------------------------------------------------------------------

fn is_store_error(e: &Error) -> bool {
    matches!(e, Error::Store { .. }) && e.oauth_error().as_str() == "temporarily_unavailable"
}

/// Runs every kind of operation; each must fail closed with a store error within `limit`.
async fn all_fail_closed(
    store: &RedisStore,
    r: &Rotator,
    token: &str,
    id: FamilyId,
    limit: Duration,
) {
    macro_rules! fails {
        ($what:expr, $op:expr) => {{
            let started = Instant::now();
            let result = $op.await;
            let took = started.elapsed();
            match result {
                Err(e) => assert!(is_store_error(&e), "{}: {e:?}", $what),
                Ok(v) => panic!("{} succeeded while Redis is unavailable: {v:?}", $what),
            }
            assert!(took <= limit, "{} took {took:?}", $what);
        }};
    }
    let req = RevokeRequest {
        reason: RevocationReason::FamilyRevoked,
        client_id: None,
        now: T0 + 5,
        revocation_ttl: 300,
    };
    fails!("issue", r.issue("carol", "app", &[], None, T0 + 5));
    fails!("refresh", refresh(r, token, T0 + 5));
    fails!("revoke_token", r.revoke_token(token, "app", T0 + 5));
    fails!("revoke_family", store.revoke_family(&id, None, &req));
    fails!("revoke_subject", r.revoke_subject("alice", T0 + 5));
    fails!("families_of", store.families_of("alice"));
    fails!("get", store.get(&id));
    fails!("is_revoked", store.is_revoked(&id, T0 + 5));
    fails!("revoked", store.revoked(T0 + 5));
    let started = Instant::now();
    match store
        .insert_if_absent(&ReplayKey::new("k", "j"), T0 + 60, T0)
        .await
    {
        Err(ReplayError::Unavailable(_)) => {}
        other => panic!("replay cache while Redis is unavailable: {other:?}"),
    }
    assert!(started.elapsed() <= limit);
}

/// The server is killed mid-run: every operation fails closed (a store error, within about
/// the command timeout), none succeeds; the server comes back on the same port: the same
/// store recovers without being recreated, and its subscriber resubscribes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_then_restarted() {
    let timeout = Duration::from_millis(500);
    let OnServer {
        mut server,
        store,
        r,
        ..
    } = OnServer::with(|config| config.command_timeout(timeout)).await;
    let mut sub = store.subscribe();
    let (t0, f) = r.issue("alice", "app", &[], None, T0).await.unwrap();
    let t1 = refresh(&r, t0.as_str(), T0 + 1).await.unwrap().token;

    // Operations in flight when the server dies fail too.
    let inflight = {
        let r = Arc::new(rotator(&store));
        let mut tasks = Vec::new();
        for i in 0..32 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                r.issue("dave", "app", &[], None, T0 + i).await.map(|_| ())
            }));
        }
        tasks
    };
    server.stop();
    for t in inflight {
        // Either it completed before the kill or it failed closed; nothing else.
        if let Err(e) = t.await.unwrap() {
            assert!(is_store_error(&e), "{e:?}");
        }
    }
    for _ in 0..2 {
        let limit = timeout * 3 + Duration::from_millis(500);
        all_fail_closed(&store, &r, t1.as_str(), f.id, limit).await;
    }

    server.restart().unwrap();
    // The same store reconnects by itself (data is gone: the fixture keeps none).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (u0, g) = loop {
        match r.issue("erin", "app", &[], None, T0 + 10).await {
            Ok(v) => break v,
            Err(e) => {
                assert!(is_store_error(&e), "{e:?}");
                assert!(Instant::now() < deadline, "no recovery: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let u1 = refresh(&r, u0.as_str(), T0 + 11).await.unwrap().token;
    assert!(matches!(
        refresh(&r, u0.as_str(), T0 + 12).await,
        Err(Error::ReuseDetected)
    ));
    assert!(matches!(
        refresh(&r, u1.as_str(), T0 + 13).await,
        Err(Error::Revoked)
    ));
    assert!(store.is_revoked(&g.id, T0 + 13).await.unwrap());
    // The subscriber is back too: the reuse reached it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sub.try_recv() {
            Ok(Some(e)) if e.family_id == g.id => break,
            Ok(_) => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(Instant::now() < deadline, "no event after restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.subscriber_resyncs() >= 1);
}

/// A server that stops answering (paused) makes operations fail with a store error after
/// the command timeout; they work again once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_server_times_out() {
    let timeout = Duration::from_millis(300);
    let OnServer {
        server, store, r, ..
    } = OnServer::with(|config| config.command_timeout(timeout)).await;
    let (t0, f) = r.issue("alice", "app", &[], None, T0).await.unwrap();
    let t1 = refresh(&r, t0.as_str(), T0 + 1).await.unwrap().token;
    let pause = Duration::from_secs(6);
    let paused_at = Instant::now();
    assert_eq!(
        server
            .command(&["CLIENT", "PAUSE", &pause.as_millis().to_string(), "ALL"])
            .unwrap(),
        Reply::Simple("OK".into())
    );
    let limit = timeout * 3 + Duration::from_millis(300);
    all_fail_closed(&store, &r, t1.as_str(), f.id, limit).await;
    assert!(
        paused_at.elapsed() < pause,
        "the checks outlasted the pause"
    );
    tokio::time::sleep(pause.saturating_sub(paused_at.elapsed()) + Duration::from_millis(100))
        .await;
    // The token presented during the stall may or may not have rotated (the contract of an
    // error); a fresh family works normally.
    let (u0, _) = r.issue("alice", "app", &[], None, T0 + 2).await.unwrap();
    refresh(&r, u0.as_str(), T0 + 3).await.unwrap();
}

/// The pub/sub connection is cut and a revocation is made (by another instance) while it is
/// down: the subscriber reconnects, resubscribes, re-reads the list, and delivers it.
async fn pubsub_cut(url: String, kill: impl Fn() -> i64) {
    let prefix = fresh_prefix();
    // Slow reconnects, so the revocation below surely happens while the subscriber is down.
    let listener = connect(
        config(&url, &prefix).reconnect(ReconnectPolicy::constant(Duration::from_millis(700))),
    )
    .await;
    let other = connect(config(&url, &prefix)).await;
    let r = rotator(&other);
    let mut sub = listener.subscribe();
    let (_, before) = r.issue("alice", "app", &[], None, T0).await.unwrap();
    let (_, during) = r.issue("alice", "app", &[], None, T0).await.unwrap();
    let (_, after) = r.issue("alice", "app", &[], None, T0).await.unwrap();

    // Connected: the event comes by pub/sub.
    r.revoke_family(&before.id, T0 + 1).await.unwrap();
    wait_for_event(&mut sub, before.id).await;
    let resyncs = listener.subscriber_resyncs();

    assert!(kill() >= 1, "no pub/sub connection was cut");
    r.revoke_family(&during.id, T0 + 2).await.unwrap();
    wait_for_event(&mut sub, during.id).await;
    assert!(
        listener.subscriber_resyncs() > resyncs,
        "delivered without a re-read"
    );
    // And the subscription itself is live again.
    r.revoke_family(&after.id, T0 + 3).await.unwrap();
    wait_for_event(&mut sub, after.id).await;
}

async fn wait_for_event(sub: &mut token_refresh::RevocationSubscription, id: FamilyId) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sub.try_recv() {
            Ok(Some(e)) if e.family_id == id => return,
            Ok(Some(_)) => {}
            Ok(None) => {
                assert!(Instant::now() < deadline, "event for {id:?} never arrived");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_cut_standalone() {
    let server = start_server();
    pubsub_cut(server.url(), || server.kill_pubsub_clients().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_cut_cluster() {
    let cluster = start_cluster();
    pubsub_cut(cluster.url(), || cluster.kill_pubsub_clients().unwrap()).await;
}

/// `connect` returns only once the server has confirmed the subscription: a revocation made
/// by another instance right afterwards always reaches the new store (the client library
/// resolves `SUBSCRIBE` before Redis has processed it; the store waits for a probe message).
async fn events_right_after_connect(url: String) {
    let prefix = fresh_prefix();
    let other = connect(config(&url, &prefix)).await;
    let r = rotator(&other);
    for round in 0..20 {
        let (_, f) = r.issue("alice", "app", &[], None, T0).await.unwrap();
        let fresh = connect(config(&url, &prefix)).await;
        let mut sub = fresh.subscribe();
        r.revoke_family(&f.id, T0 + 1).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap_or_else(|_| panic!("round {round}: no event"))
            .unwrap();
        assert_eq!(event.family_id, f.id);
        // Delivered once, even if a (cluster) reconnect notification made it re-read the list.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(sub.try_recv().unwrap().is_none(), "round {round}: repeated");
        fresh.close().await;
    }
}

standalone_and_cluster!(
    events_right_after_connect_standalone,
    events_right_after_connect_cluster,
    events_right_after_connect
);

/// Garbage where a family or a revocation entry should be: operations fail closed (a store
/// error), never an `Ok` made up from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unexpected_data_fails_closed() {
    let OnServer {
        server,
        prefix,
        store,
        r,
    } = OnServer::start().await;
    let (t0, f) = r.issue("alice", "app", &[], None, T0).await.unwrap();
    let family_key = format!("{prefix}f:{{{}}}", f.id);
    for garbage in ["not json", "{}", "[1,2,3]", r#"{"id":"x"}"#] {
        server.command(&["SET", &family_key, garbage]).unwrap();
        let e = refresh(&r, t0.as_str(), T0 + 1).await.unwrap_err();
        assert!(is_store_error(&e), "{garbage}: {e:?}");
        let e = store.get(&f.id).await.unwrap_err();
        assert!(is_store_error(&e), "{garbage}: {e:?}");
        let e = r.revoke_family(&f.id, T0 + 1).await.unwrap_err();
        assert!(is_store_error(&e), "{garbage}: {e:?}");
    }
    // A family document of another family.
    let (_, g) = r.issue("alice", "app", &[], None, T0).await.unwrap();
    let other = server
        .command(&["GET", &format!("{prefix}f:{{{}}}", g.id)])
        .unwrap()
        .text()
        .unwrap();
    server.command(&["SET", &family_key, &other]).unwrap();
    assert!(is_store_error(&store.get(&f.id).await.unwrap_err()));

    let rev_key = format!("{prefix}r:{{{}}}", f.id);
    server
        .command(&["SET", &rev_key, "garbage", "EX", "100"])
        .unwrap();
    assert!(is_store_error(
        &store.is_revoked(&f.id, T0).await.unwrap_err()
    ));
    assert!(is_store_error(&store.revoked(T0).await.unwrap_err()));
    server
        .command(&["ZADD", &format!("{prefix}s:alice"), "1", "not-an-id"])
        .unwrap();
    assert!(is_store_error(
        &store.families_of("alice").await.unwrap_err()
    ));
}

/// A token that names a real family but matches none of its hashes changes nothing (the
/// conformance suite checks it through the `Rotator`; this checks the stored bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_token_leaves_family_untouched() {
    let OnServer {
        server,
        prefix,
        store,
        r,
    } = OnServer::start().await;
    let (t0, f) = r.issue("alice", "app", &[], None, T0).await.unwrap();
    let t1 = refresh(&r, t0.as_str(), T0 + 1).await.unwrap().token;
    let key = format!("{prefix}f:{{{}}}", f.id);
    let stored = server.command(&["GET", &key]).unwrap();
    let pepper = Pepper::new(*b"another-pepper-another-pepper-32").unwrap();
    for _ in 0..5 {
        let forged = token_refresh::RefreshToken::generate(f.id).unwrap();
        assert!(matches!(
            refresh(&r, forged.as_str(), T0 + 2).await,
            Err(Error::ForgedToken)
        ));
        assert_eq!(
            r.revoke_token(forged.as_str(), "app", T0 + 2)
                .await
                .unwrap(),
            RevokeOutcome::Forged
        );
        // The real token under the wrong pepper is forged too.
        let wrong = Rotator::new(Arc::new(store.clone()), pepper.clone(), r.config().clone());
        assert!(matches!(
            refresh(&wrong, t1.as_str(), T0 + 2).await,
            Err(Error::ForgedToken)
        ));
    }
    assert_eq!(server.command(&["GET", &key]).unwrap(), stored);
    assert!(!store.is_revoked(&f.id, T0 + 2).await.unwrap());
    refresh(&r, t1.as_str(), T0 + 3).await.unwrap();
}

/// Writes `template` as the stored document of family `f` (keys under `prefix`), with
/// `{id}`, `{created}`, `{absolute}`, `{idle}` and `{hash}` replaced by `f`'s values: the family
/// as an older version wrote it. Returns its key and the document.
fn store_old_format(
    server: &RedisServer,
    prefix: &str,
    f: &Family,
    template: &str,
) -> (String, String) {
    let document = template
        .replace("{id}", &f.id.to_string())
        .replace("{created}", &f.created_at.to_string())
        .replace("{absolute}", &f.absolute_expires_at.to_string())
        .replace("{idle}", &f.idle_expires_at.to_string())
        .replace("{hash}", &f.current_hash.to_base64url());
    let key = format!("{prefix}f:{{{}}}", f.id);
    server.command(&["SET", &key, &document]).unwrap();
    (key, document)
}

/// A family document of the previous format (no `audience`, `claims_json` or `access_ttl`
/// keys), as `create` wrote it and as the old rotation script rewrote it (`cjson`: `{}` for an
/// empty list, `/` escaped, its own key order): it reads back with the defaults (no audience,
/// no claims, no lifetime), refreshes, stays bound to its client, and the scripts write it
/// back without inventing those keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_format_family_still_refreshes() {
    let OnServer {
        server,
        prefix,
        store,
        r,
    } = OnServer::start().await;
    let get_raw = |key: &str| server.command(&["GET", key]).unwrap().text().unwrap();

    // As `create` wrote it.
    let scopes = ["read".to_owned(), "write".to_owned()];
    let (t0, f) = r.issue("alice", "app", &scopes, None, T0).await.unwrap();
    let (key, old) = store_old_format(
        &server,
        &prefix,
        &f,
        concat!(
            r#"{"id":"{id}","subject":"alice","client_id":"app","scopes":["read","write"],"#,
            r#""dpop_jkt":null,"created_at":{created},"absolute_expires_at":{absolute},"#,
            r#""idle_expires_at":{idle},"generation":0,"current_hash":"{hash}","rotated":[],"#,
            r#""rotated_at":null,"grace":null,"revoked":null}"#
        ),
    );
    let read = store.get(&f.id).await.unwrap().unwrap();
    assert_eq!(read, f);
    assert!(read.audience.is_empty() && read.claims_json.is_none() && read.access_ttl.is_none());

    // Another client is refused; its own client refreshes, narrowing scopes as before.
    assert!(matches!(
        r.refresh(t0.as_str(), "other", None, None, None, T0 + 1)
            .await,
        Err(Error::ClientMismatch)
    ));
    assert_eq!(get_raw(&key), old, "a refusal rewrites nothing");
    let read_only = ["read".to_owned()];
    let out = r
        .refresh(t0.as_str(), "app", None, Some(&read_only), None, T0 + 1)
        .await
        .unwrap();
    assert_eq!(out.scopes, read_only);
    assert_eq!(out.family.generation, 1);
    assert_eq!(out.family.scopes, scopes);
    assert!(out.family.audience.is_empty());
    assert_eq!(
        (out.family.claims_json.as_deref(), out.family.access_ttl),
        (None, None)
    );
    assert_eq!(store.get(&f.id).await.unwrap().unwrap(), out.family);
    let rewritten = get_raw(&key);
    for field in ["audience", "claims_json", "access_ttl"] {
        assert!(!rewritten.contains(field), "{field} invented: {rewritten}");
    }
    let t2 = refresh(&r, out.token.as_str(), T0 + 2).await.unwrap();
    assert_eq!(t2.scopes, scopes);

    // As the old rotation script rewrote one (empty lists as `{}`, `/` escaped), then its
    // revocation by token.
    let (u0, g) = r.issue("team/bob", "app", &[], None, T0).await.unwrap();
    let (key, _) = store_old_format(
        &server,
        &prefix,
        &g,
        concat!(
            r#"{"rotated":{},"grace":null,"client_id":"app","generation":0,"#,
            r#""idle_expires_at":{idle},"subject":"team\/bob","revoked":null,"scopes":{},"#,
            r#""current_hash":"{hash}","id":"{id}","created_at":{created},"#,
            r#""absolute_expires_at":{absolute},"rotated_at":null,"dpop_jkt":null}"#
        ),
    );
    assert_eq!(store.get(&g.id).await.unwrap().unwrap(), g);
    let u1 = refresh(&r, u0.as_str(), T0 + 1).await.unwrap();
    assert!(u1.family.scopes.is_empty() && u1.family.audience.is_empty());
    assert_eq!(
        r.revoke_token(u1.token.as_str(), "other", T0 + 2)
            .await
            .unwrap(),
        RevokeOutcome::ClientMismatch
    );
    let RevokeOutcome::Revoked(revoked) = r
        .revoke_token(u1.token.as_str(), "app", T0 + 2)
        .await
        .unwrap()
    else {
        panic!("the old family is revoked by its client")
    };
    assert_eq!(
        revoked.revoked.map(|rev| rev.reason),
        Some(RevocationReason::TokenRevoked)
    );
    let stored = store.get(&g.id).await.unwrap().unwrap();
    assert_eq!(stored, revoked);
    assert!(
        stored.audience.is_empty() && stored.claims_json.is_none() && stored.access_ttl.is_none()
    );
    let rewritten = get_raw(&key);
    for field in ["audience", "claims_json", "access_ttl"] {
        assert!(!rewritten.contains(field), "{field} invented: {rewritten}");
    }
}

/// Connection failures are reported at connect time, and never show the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_hide_the_password() {
    let server = start_server();
    // Nothing listens on the port of a stopped server (kept reserved while it exists).
    let mut stopped = start_server();
    stopped.stop();
    let closed = stopped.port();
    let started = Instant::now();
    let e = RedisStore::connect(
        RedisConfig::builder(format!("redis://:hunter2-secret@127.0.0.1:{closed}"))
            .reconnect(ReconnectPolicy::never())
            .build()
            .unwrap(),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(6));
    let shown = format!("{e} {e:?} {:?}", std::error::Error::source(&e));
    assert!(!shown.contains("hunter2-secret"), "{shown}");

    // Wrong credentials: refused at connect time, password not shown.
    let e = RedisStore::connect(
        RedisConfig::builder(format!(
            "redis://user:hunter2-secret@127.0.0.1:{}",
            server.port()
        ))
        .build()
        .unwrap(),
    )
    .await
    .unwrap_err();
    let shown = format!("{e} {e:?} {:?}", std::error::Error::source(&e));
    assert!(!shown.contains("hunter2-secret"), "{shown}");

    let store = connect(config(&server.url(), "x:")).await;
    assert!(store.is_connected());
    assert!(!format!("{store:?}").contains("hunter2"));
    store.close().await;
}
