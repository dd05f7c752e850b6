//! Rotations per second against a local `redis-server` (started by the token-testkit fixtures,
//! standalone and a 3-master Cluster), through the `Rotator`: token parse, HMAC, one
//! `EVALSHA` round trip, successor returned.
//!
//! Run: `cargo bench -p token-store-redis --bench rotate_redis` (needs `redis-server` and
//! `redis-cli` on PATH).

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "bench code: a failure should panic"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use token_refresh::{FamilyId, Pepper, Rotator, RotatorConfig};
use token_store_redis::{RedisConfig, RedisStore};
use token_testkit::{RedisCluster, RedisServer};

const T0: i64 = 1_700_000_000;
/// Rotations in flight at once in the concurrent benchmark (one family each).
const IN_FLIGHT: usize = 64;

fn rotator(rt: &tokio::runtime::Runtime, url: &str) -> Arc<Rotator> {
    let config = RedisConfig::builder(url)
        .key_prefix(format!("bench{}:", FamilyId::generate().unwrap()))
        .build()
        .unwrap();
    let store = rt.block_on(RedisStore::connect(config)).unwrap();
    Arc::new(Rotator::new(
        Arc::new(store),
        Pepper::generate().unwrap(),
        RotatorConfig::builder().build().unwrap(),
    ))
}

fn bench_deployment(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, url: &str) {
    let scopes = vec!["openid".to_owned(), "orders:read".to_owned()];
    let r = rotator(rt, url);
    let mut group = c.benchmark_group(name);
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));

    // One client, one rotation at a time: the latency of a rotation.
    let (mut token, _) = rt
        .block_on(r.issue("user-1", "app", &scopes, Some("jkt"), T0))
        .unwrap();
    let mut now = T0;
    group.bench_function("rotate", |b| {
        b.iter(|| {
            now += 1;
            let out = rt
                .block_on(r.refresh(token.as_str(), "app", Some("jkt"), None, None, now))
                .unwrap();
            token = black_box(out.token);
        });
    });

    group.bench_function("issue", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(r.issue("user-2", "app", &scopes, None, T0))
                    .unwrap(),
            )
        });
    });

    // 64 rotations in flight (64 families, each refreshed in turn): throughput.
    let mut tokens: Vec<String> = (0..IN_FLIGHT)
        .map(|i| {
            let subject = format!("user-{i}");
            let (t, _) = rt
                .block_on(r.issue(&subject, "app", &scopes, None, T0))
                .unwrap();
            t.as_str().to_owned()
        })
        .collect();
    let mut now = T0;
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function("rotate_64_in_flight", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                now += 1;
                let handles: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        let (r, t) = (r.clone(), t.clone());
                        rt.spawn(async move { r.refresh(&t, "app", None, None, None, now).await })
                    })
                    .collect();
                tokens = handles
                    .into_iter()
                    .map(|h| rt.block_on(h).unwrap().unwrap().token.as_str().to_owned())
                    .collect();
            }
            started.elapsed()
        });
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    bench_deployment(c, &rt, "redis_standalone", &server.url());
    drop(server);
    let cluster = RedisCluster::start().unwrap_or_else(|e| panic!("{e}"));
    bench_deployment(c, &rt, "redis_cluster", &cluster.url());
}

criterion_group!(benches, bench);
criterion_main!(benches);
