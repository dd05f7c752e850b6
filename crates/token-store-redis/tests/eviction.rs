//! A Redis that may evict keys is refused: every key this crate writes has a TTL, so under
//! `maxmemory` with a `volatile-*` or `allkeys-*` policy Redis could drop revocations,
//! rotated-token history or replay entries, and revoked or replayed tokens would work again.
//! Checked at connect (on every primary of a Cluster) and after every reconnect, against real
//! `redis-server` processes whose policy the tests change with `CONFIG SET`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::time::{Duration, Instant};

use token_dpop::{ReplayCache, ReplayKey};
use token_refresh::{FamilyId, FamilyStore};
use token_store_redis::{Error, ReconnectPolicy, RedisConfig, RedisStore};
use token_testkit::{RedisCluster, RedisServer, Reply};

fn config(url: &str) -> RedisConfig {
    RedisConfig::builder(url)
        .key_prefix(format!("ev{}:", FamilyId::generate().unwrap()))
        .pool_size(2)
        .reconnect(ReconnectPolicy::constant(Duration::from_millis(100)))
        .build()
        .unwrap()
}

fn set_policy(server: &RedisServer, policy: &str) {
    let reply = server
        .command(&["CONFIG", "SET", "maxmemory-policy", policy])
        .unwrap();
    assert!(
        matches!(reply, Reply::Simple(ref s) if s == "OK"),
        "{reply:?}"
    );
}

/// The eviction error of a refused connect, or a panic naming what happened instead.
fn eviction_policy_of(result: Result<RedisStore, Error>) -> String {
    match result {
        Err(Error::EvictionPolicy { policy }) => policy,
        Err(other) => panic!("refused, but not for the eviction policy: {other}"),
        Ok(_) => panic!("a Redis that may evict keys was accepted"),
    }
}

#[tokio::test]
async fn a_server_that_may_evict_is_refused_at_connect_with_the_policy_and_the_fix() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    for policy in [
        "allkeys-lru",
        "volatile-ttl",
        "volatile-lfu",
        "allkeys-random",
    ] {
        set_policy(&server, policy);
        let result = RedisStore::connect(config(&server.url())).await;
        let message = result.as_ref().err().map(ToString::to_string);
        assert_eq!(eviction_policy_of(result), policy);
        let message = message.unwrap();
        assert!(
            message.contains(policy) && message.contains("maxmemory-policy noeviction"),
            "{message}"
        );
    }
    set_policy(&server, "noeviction");
    assert!(RedisStore::connect(config(&server.url())).await.is_ok());
}

#[tokio::test]
async fn one_cluster_primary_that_may_evict_is_enough_to_refuse() {
    let cluster = RedisCluster::start().unwrap_or_else(|e| panic!("{e}"));
    assert!(RedisStore::connect(config(&cluster.url())).await.is_ok());
    // The last primary only: every primary is asked, not just the one a command lands on.
    let node = cluster.nodes().last().unwrap();
    set_policy(node, "volatile-lru");
    let result = RedisStore::connect(config(&cluster.url())).await;
    assert_eq!(eviction_policy_of(result), "volatile-lru");
}

#[tokio::test]
async fn a_reconnect_that_finds_an_evicting_policy_fails_every_operation_until_it_is_fixed() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let store = RedisStore::connect(config(&server.url())).await.unwrap();
    let id = FamilyId::generate().unwrap();
    assert!(store.get(&id).await.unwrap().is_none());
    assert_eq!(store.eviction_policy(), None);

    // The policy changes behind the store's back; the next reconnect notices.
    set_policy(&server, "allkeys-lru");
    let refused = wait_until(
        &server,
        |store_result: &Result<(), String>| {
            store_result
                .as_ref()
                .is_err_and(|e| e.contains("maxmemory-policy"))
        },
        &store,
    )
    .await;
    assert!(refused, "operations still work on a Redis that may evict");
    // The reason, for a readiness report.
    assert_eq!(store.eviction_policy().as_deref(), Some("allkeys-lru"));
    // The replay cache fails closed too (a proof is refused, not accepted unchecked).
    let key = ReplayKey::new("jkt", "jti");
    assert!(store.insert_if_absent(&key, 100, 0).await.is_err());

    set_policy(&server, "noeviction");
    let back = wait_until(&server, |r: &Result<(), String>| r.is_ok(), &store).await;
    assert!(
        back,
        "operations do not resume once the policy is noeviction again"
    );
    assert_eq!(store.eviction_policy(), None);
}

/// Kills the store's connections (they reconnect) until `done` holds for a `get`, for 10 s.
async fn wait_until(
    server: &RedisServer,
    done: impl Fn(&Result<(), String>) -> bool,
    store: &RedisStore,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let _ = server.command(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let result = store
            .get(&FamilyId::generate().unwrap())
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "{e} {:?}",
                    std::error::Error::source(&e).map(ToString::to_string)
                )
            });
        if done(&result) {
            return true;
        }
    }
    false
}
