//! Rotations per second on the in-memory store (the Redis figure lives in
//! `token-store-redis`).
//!
//! Run: `cargo bench -p token-refresh --bench rotate`

#![allow(clippy::unwrap_used, reason = "bench code: a failure should panic")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use token_refresh::{FamilyId, MemoryStore, Pepper, RefreshToken, Rotator, RotatorConfig};

const T0: i64 = 1_700_000_000;

fn rotator(grace: bool) -> Rotator {
    let mut config = RotatorConfig::builder();
    if grace {
        config = config.grace_window(Duration::from_secs(10));
    }
    Rotator::new(
        Arc::new(MemoryStore::new()),
        Pepper::generate().unwrap(),
        config.build().unwrap(),
    )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let scopes = vec!["openid".to_owned(), "orders:read".to_owned()];
    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Elements(1));

    for (name, grace) in [("rotate", false), ("rotate_grace_on", true)] {
        let r = rotator(grace);
        let (mut token, _) = rt
            .block_on(r.issue("user-1", "app", &scopes, Some("jkt"), T0))
            .unwrap();
        let mut now = T0;
        group.bench_function(name, |b| {
            b.iter(|| {
                now += 1;
                let out = rt
                    .block_on(r.refresh(token.as_str(), "app", Some("jkt"), None, None, now))
                    .unwrap();
                token = black_box(out.token);
            });
        });
    }

    let r = rotator(false);
    group.bench_function("issue", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(r.issue("user-1", "app", &scopes, None, T0))
                    .unwrap(),
            )
        });
    });

    let token = RefreshToken::generate(FamilyId::generate().unwrap()).unwrap();
    let text = token.as_str().to_owned();
    let pepper = Pepper::generate().unwrap();
    group.bench_function("parse_and_hash", |b| {
        b.iter(|| {
            let t = RefreshToken::parse(black_box(&text)).unwrap();
            black_box(pepper.hash(&t))
        });
    });
    group.finish();

    // Contention: 8 threads rotating their own families on one store.
    let store = Arc::new(MemoryStore::new());
    let pepper = Pepper::generate().unwrap();
    let shared = Rotator::new(store, pepper, RotatorConfig::default());
    let mut group = c.benchmark_group("memory_8_threads");
    group.throughput(Throughput::Elements(8 * 100));
    group.sample_size(20);
    group.bench_function("rotate", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for t in 0..8 {
                    let r = shared.clone();
                    let scopes = &scopes;
                    s.spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .build()
                            .unwrap();
                        rt.block_on(async {
                            let subject = format!("user-{t}");
                            let (mut token, _) =
                                r.issue(&subject, "app", scopes, None, T0).await.unwrap();
                            for i in 0..100 {
                                token = r
                                    .refresh(token.as_str(), "app", None, None, None, T0 + i)
                                    .await
                                    .unwrap()
                                    .token;
                            }
                        });
                    });
                }
            });
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
