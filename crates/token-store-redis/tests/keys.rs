//! token-kms's `KeyStore` on real `redis-server` processes started by the fixtures
//! (`token_testkit`), standalone and a 3-master Cluster: `insert_new` is exclusive across
//! connections, writes read back, every write moves the change counter of another connection
//! (and a cut pub/sub connection moves it once resubscribed), and two `ManagedKeys` instances
//! on two connections agree on one key that exactly one of them created.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use token_jwt::{Algorithm, RustCryptoProvider};
use token_kms::managed::{KeyEncryptionKey, KeyStore, ManagedKeys, Timing, Wrapper};
use token_store_redis::{ReconnectPolicy, RedisConfig, RedisConfigBuilder, RedisStore};
use token_testkit::{RedisCluster, RedisServer, Reply};
use tokio::sync::watch;

// ---- harness ---------------------------------------------------------------------------

/// A key prefix no other test uses.
fn fresh_prefix() -> String {
    let n = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("k{n:016x}:")
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

/// Two stores (two sets of connections, two subscribers) on the Redis at `url`, with the same
/// fresh key prefix: two instances of a fleet.
async fn two_instances(url: &str) -> (RedisStore, RedisStore) {
    let prefix = fresh_prefix();
    (
        connect(config(url, &prefix)).await,
        connect(config(url, &prefix)).await,
    )
}

fn start_server() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| panic!("{e}"))
}

fn start_cluster() -> RedisCluster {
    RedisCluster::start().unwrap_or_else(|e| panic!("{e}"))
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

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
        .collect()
}

/// Waits (at most 2 s) until `rx` sees a value it has not seen.
async fn moves_within_2s(rx: &mut watch::Receiver<u64>, what: &str) {
    tokio::time::timeout(Duration::from_secs(2), rx.changed())
        .await
        .unwrap_or_else(|_| panic!("{what}: the change counter did not move within 2 s"))
        .unwrap();
}

// ---- insert_new -------------------------------------------------------------------------

/// Two instances insert the same field at the same time, over many rounds: exactly one
/// succeeds each time, and the stored value is the winner's.
async fn insert_new_is_exclusive(url: String) {
    let (a, b) = two_instances(&url).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    for round in 0..50 {
        let field = format!("gen:{round}");
        let ta = tokio::spawn({
            let (a, field) = (a.clone(), field.clone());
            async move { a.insert_new(&field, "from a").await.unwrap() }
        });
        let tb = tokio::spawn({
            let (b, field) = (b.clone(), field.clone());
            async move { b.insert_new(&field, "from b").await.unwrap() }
        });
        let (won_a, won_b) = (ta.await.unwrap(), tb.await.unwrap());
        assert!(won_a != won_b, "round {round}: a {won_a}, b {won_b}");
        let winner = if won_a { "from a" } else { "from b" };
        let stored = b.load().await.unwrap();
        assert!(
            stored.contains(&(field.clone(), winner.to_owned())),
            "round {round}: {stored:?}"
        );
        // Once set, the field stays: neither instance sets it again.
        assert!(!a.insert_new(&field, "again").await.unwrap());
        assert!(!b.insert_new(&field, "again").await.unwrap());
    }
    assert_eq!(a.load().await.unwrap().len(), 50);
}

standalone_and_cluster!(
    insert_new_is_exclusive_standalone,
    insert_new_is_exclusive_cluster,
    insert_new_is_exclusive
);

// ---- round trip -------------------------------------------------------------------------

/// `put`, `insert_new` and `remove` read back through `load` (sorted by field) on both
/// instances; values are kept byte for byte.
async fn round_trip(url: String) {
    let (a, b) = two_instances(&url).await;
    assert!(a.load().await.unwrap().is_empty());

    let record = r#"{"v":1,"kid":"k\u00e9","jwk":{"x":"a/b+c=="},"note":"line\nbreak ∑"}"#;
    assert!(a.insert_new("gen:1", record).await.unwrap());
    a.put("check", "kek-check-value").await.unwrap();
    b.put("retired:abc", "1700000000").await.unwrap();
    let all = pairs(&[
        ("check", "kek-check-value"),
        ("gen:1", record),
        ("retired:abc", "1700000000"),
    ]);
    assert_eq!(a.load().await.unwrap(), all);
    assert_eq!(b.load().await.unwrap(), all);

    // `put` replaces; `insert_new` does not.
    b.put("retired:abc", "1700000001").await.unwrap();
    assert!(!b.insert_new("check", "other").await.unwrap());
    a.put("", "").await.unwrap();
    assert_eq!(
        a.load().await.unwrap(),
        pairs(&[
            ("", ""),
            ("check", "kek-check-value"),
            ("gen:1", record),
            ("retired:abc", "1700000001"),
        ])
    );

    // Absent fields are ignored; no fields is no command at all.
    b.remove(&["gen:1".to_owned(), "absent".to_owned(), String::new()])
        .await
        .unwrap();
    b.remove(&[]).await.unwrap();
    a.remove(&["absent".to_owned()]).await.unwrap();
    let left = pairs(&[("check", "kek-check-value"), ("retired:abc", "1700000001")]);
    assert_eq!(a.load().await.unwrap(), left);
    assert_eq!(b.load().await.unwrap(), left);

    // Many fields at once.
    let fields: Vec<String> = (0..500).map(|i| format!("gen:{i}")).collect();
    for f in &fields {
        assert!(a.insert_new(f, "x").await.unwrap());
    }
    assert_eq!(b.load().await.unwrap().len(), 502);
    b.remove(&fields).await.unwrap();
    assert_eq!(a.load().await.unwrap(), left);

    // Another prefix is another fleet.
    let other = connect(config(&url, &fresh_prefix())).await;
    assert!(other.load().await.unwrap().is_empty());
}

standalone_and_cluster!(round_trip_standalone, round_trip_cluster, round_trip);

/// Something else than a hash where the managed keys should be: every operation fails
/// (`Error::KeyStore`), none answers an empty list or writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_fails_closed() {
    let server = start_server();
    let prefix = fresh_prefix();
    let store = connect(config(&server.url(), &prefix)).await;
    let key = format!("{prefix}keys");
    server.command(&["SET", &key, "not a hash"]).unwrap();
    let is_store_error = |e: token_kms::Error| {
        assert!(matches!(e, token_kms::Error::KeyStore(_)), "{e:?}");
        assert_eq!(e.reason(), "key_store");
    };
    is_store_error(store.load().await.unwrap_err());
    is_store_error(store.insert_new("gen:1", "x").await.unwrap_err());
    is_store_error(store.put("gen:1", "x").await.unwrap_err());
    is_store_error(store.remove(&["gen:1".to_owned()]).await.unwrap_err());
    assert_eq!(
        server.command(&["GET", &key]).unwrap(),
        Reply::Bulk(Some(b"not a hash".to_vec()))
    );
}

// ---- changes ----------------------------------------------------------------------------

/// Every write of one instance moves the other's change counter within 2 s (and its own:
/// it receives its own signal too).
async fn changes_follow_writes(url: String) {
    let (a, b) = two_instances(&url).await;
    let mut theirs = b.changes();
    let mut mine = a.changes();

    assert!(a.insert_new("gen:1", "one").await.unwrap());
    moves_within_2s(&mut theirs, "insert_new").await;
    moves_within_2s(&mut mine, "insert_new (own)").await;

    a.put("gen:1", "one bis").await.unwrap();
    moves_within_2s(&mut theirs, "put").await;

    a.remove(&["gen:1".to_owned()]).await.unwrap();
    moves_within_2s(&mut theirs, "remove").await;

    // And the other way round, on a receiver taken before the write.
    let mut rx = a.changes();
    b.put("retired:x", "5").await.unwrap();
    moves_within_2s(&mut rx, "put by b").await;
    assert_eq!(a.load().await.unwrap(), pairs(&[("retired:x", "5")]));
}

standalone_and_cluster!(
    changes_follow_writes_standalone,
    changes_follow_writes_cluster,
    changes_follow_writes
);

/// The subscriber connection is cut while another instance writes: the signal is lost, but
/// the counter moves once the subscriber has resubscribed, so the owner re-reads.
async fn changes_after_reconnect(url: String, kill: impl Fn() -> i64) {
    let prefix = fresh_prefix();
    // Slow reconnects, so the write below surely happens while the subscriber is down.
    let listener = connect(
        config(&url, &prefix).reconnect(ReconnectPolicy::constant(Duration::from_millis(700))),
    )
    .await;
    let writer = connect(config(&url, &prefix)).await;
    let mut rx = listener.changes();
    let seen = *rx.borrow_and_update();
    let resyncs = listener.subscriber_resyncs();

    assert!(kill() >= 1, "no pub/sub connection was cut");
    writer.put("gen:1", "written while cut").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while listener.subscriber_resyncs() == resyncs {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the subscriber never resubscribed"));
    assert!(
        *rx.borrow_and_update() > seen,
        "no change after resubscribing"
    );
    assert_eq!(
        listener.load().await.unwrap(),
        pairs(&[("gen:1", "written while cut")])
    );

    // And the subscription itself is live again.
    writer.put("gen:2", "after").await.unwrap();
    moves_within_2s(&mut rx, "put after the reconnect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_after_reconnect_standalone() {
    let server = start_server();
    changes_after_reconnect(server.url(), || server.kill_pubsub_clients().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_after_reconnect_cluster() {
    let cluster = start_cluster();
    changes_after_reconnect(cluster.url(), || cluster.kill_pubsub_clients().unwrap()).await;
}

// ---- ManagedKeys ------------------------------------------------------------------------

const KEK_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const NOW: i64 = 1_700_000_000;

fn managed(store: RedisStore) -> ManagedKeys {
    ManagedKeys::new(
        Arc::new(store),
        Wrapper::Kek(KeyEncryptionKey::from_hex(KEK_HEX).unwrap()),
        Arc::new(RustCryptoProvider::new()),
        Algorithm::ES256,
        Timing::new(1, 1, 3, 2).unwrap(),
    )
}

/// Two instances on two connections sync at the same time on an empty store: exactly one
/// creates the key, and both then sign with it and publish the same keys.
async fn managed_keys_pair(url: String) {
    let prefix = fresh_prefix();
    let a = connect(config(&url, &prefix)).await;
    let b = connect(config(&url, &prefix)).await;
    let mut b_changes = b.changes();
    let (a, b) = (managed(a), managed(b));

    let (ra, rb) = tokio::join!(a.sync(NOW), b.sync(NOW));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(
        ra.created.is_some() != rb.created.is_some(),
        "not exactly one created a key: {ra:?} {rb:?}"
    );
    let created = ra.created.clone().or(rb.created.clone()).unwrap();
    assert!(
        ra.refused.is_empty() && rb.refused.is_empty(),
        "{ra:?} {rb:?}"
    );

    let (sa, sb) = (a.signer().unwrap(), b.signer().unwrap());
    assert_eq!(sa.key_id(), sb.key_id());
    assert_eq!(sa.key_id(), created);
    assert_eq!(sa.algorithm(), Algorithm::ES256);
    let published = a.published();
    assert!(!published.is_empty());
    assert_eq!(published, b.published());
    moves_within_2s(&mut b_changes, "the key created").await;

    // A third instance that comes later reads the same key and creates none.
    let c = managed(connect(config(&url, &prefix)).await);
    let rc = c.sync(NOW).await.unwrap();
    assert_eq!(rc.created, None);
    assert_eq!(c.signer().unwrap().key_id(), sa.key_id());
    assert_eq!(c.published(), published);

    // One second later the next key is due (rotation 3 s, published 2 s ahead): the three
    // race for it, exactly one creates it, and all publish both keys.
    let later = NOW + 1;
    let (ra, rb, rc) = tokio::join!(a.sync(later), b.sync(later), c.sync(later));
    let reports = [ra.unwrap(), rb.unwrap(), rc.unwrap()];
    let next: Vec<&String> = reports.iter().filter_map(|r| r.created.as_ref()).collect();
    assert_eq!(next.len(), 1, "{reports:?}");
    let published = a.published();
    assert_eq!(published.len(), 2, "{published:?}");
    assert_eq!(b.published(), published);
    assert_eq!(c.published(), published);
    assert_eq!(b.signer().unwrap().key_id(), sa.key_id());
}

standalone_and_cluster!(
    managed_keys_pair_standalone,
    managed_keys_pair_cluster,
    managed_keys_pair
);
