//! DPoP proof validation: the full path (parse, every check, key, signature, in-memory
//! replay cache) next to the raw signature check of the same proof with the same provider,
//! and the `dpop-verifier` crate on the same proofs.
//!
//! Each full validation gets a proof with a unique `jti` (built ahead of the measured loop by
//! `iter_batched`), so the replay cache really inserts every time. After criterion's runs, an
//! interleaved measurement prints the ratio table of the README. Run with
//! `cargo bench -p token-dpop --all-features`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    reason = "benchmark code: a failure aborts the run, dpop-verifier reads the system clock \
              (so the proofs carry the real time), and the ratio table is printed"
)]

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use criterion::{BatchSize, Criterion, criterion_group};
use dpop_verifier::{DpopError, DpopVerifier, ReplayContext, ReplayStore};
use token_dpop::token_jwt::{CryptoProvider, all_providers};
use token_dpop::{
    Algorithm, MemoryReplayCache, PrivateKey, ProofBuilder, Request, Validator, ValidatorConfig,
};

const URI: &str = "https://resource.example.org/protectedresource";
const ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";

/// Polls a future that never waits (both replay stores here answer at once).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory replay store never waits"),
    }
}

/// dpop-verifier's replay store, in memory (its trait is an `async_trait`; this is the
/// expanded form, so the bench needs no proc-macro).
struct SetStore(std::collections::HashSet<[u8; 32]>);

impl ReplayStore for SetStore {
    fn insert_once<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        jti_hash: [u8; 32],
        _ctx: ReplayContext<'life1>,
    ) -> Pin<Box<dyn Future<Output = Result<bool, DpopError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let inserted = self.0.insert(jti_hash);
        Box::pin(std::future::ready(Ok(inserted)))
    }
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let now = now();
    let request = Request::new("GET", URI);
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let key = PrivateKey::generate(alg).unwrap();
        let mut group = c.benchmark_group(format!("dpop/{alg}"));
        for provider in all_providers() {
            let name = provider.name();
            let builder = ProofBuilder::new(&key, &*provider).unwrap();
            let jkt = builder.jkt();
            let bound = request
                .with_access_token(ACCESS_TOKEN)
                .with_expected_jkt(&jkt);

            // the raw primitive: a prepared key checking the proof's signature
            let proof = builder
                .proof("GET", URI, Some(ACCESS_TOKEN), None, now)
                .unwrap();
            let (input, sig) = proof.rsplit_once('.').unwrap();
            let sig = token_dpop::token_jwt::base64url::decode(sig).unwrap();
            let verifier = provider.verifying_key(builder.public_jwk(), alg).unwrap();
            group.bench_function(format!("raw verify/{name}"), |b| {
                b.iter(|| {
                    verifier
                        .verify(black_box(input.as_bytes()), black_box(&sig))
                        .unwrap();
                });
            });

            // the full validation, a fresh jti every time
            let validator = Validator::new(
                ValidatorConfig::new(provider.clone()),
                Arc::new(MemoryReplayCache::new()),
            );
            let mut counter = 0u64;
            group.bench_function(format!("full validation/{name}"), |b| {
                b.iter_batched(
                    || {
                        counter += 1;
                        let jti = format!("{name}-{counter}");
                        builder
                            .proof_with_jti("GET", URI, Some(ACCESS_TOKEN), None, &jti, now)
                            .unwrap()
                    },
                    |proof| validator.validate_sync(&[&proof], &bound, now).unwrap(),
                    BatchSize::SmallInput,
                );
            });

            // the same with the key cache off: the key is prepared every time, as for a client
            // seen for the first time
            let validator = Validator::new(
                ValidatorConfig::builder(provider.clone())
                    .key_cache_capacity(0)
                    .build(),
                Arc::new(MemoryReplayCache::new()),
            );
            group.bench_function(format!("full validation, uncached key/{name}"), |b| {
                b.iter_batched(
                    || {
                        counter += 1;
                        let jti = format!("{name}-{counter}");
                        builder
                            .proof_with_jti("GET", URI, Some(ACCESS_TOKEN), None, &jti, now)
                            .unwrap()
                    },
                    |proof| validator.validate_sync(&[&proof], &bound, now).unwrap(),
                    BatchSize::SmallInput,
                );
            });
        }

        // dpop-verifier 4.4 on the same kind of proof (its own pure-Rust crypto)
        let provider: Arc<dyn CryptoProvider> =
            Arc::new(token_dpop::token_jwt::RustCryptoProvider::new());
        let builder = ProofBuilder::new(&key, &*provider).unwrap();
        let peer = DpopVerifier::new().with_max_age_seconds(3600);
        let mut store = SetStore(std::collections::HashSet::new());
        let mut counter = 0u64;
        group.bench_function("full validation/dpop-verifier 4.4", |b| {
            b.iter_batched(
                || {
                    counter += 1;
                    let jti = format!("peer-{counter}");
                    builder
                        .proof_with_jti("GET", URI, Some(ACCESS_TOKEN), None, &jti, now)
                        .unwrap()
                },
                |proof| {
                    ready(peer.verify(&mut store, &proof, URI, "GET", Some(ACCESS_TOKEN))).unwrap()
                },
                BatchSize::SmallInput,
            );
        });
        group.finish();
    }
}

/// The same comparison, interleaved: batches of each operation take turns and the fastest
/// batch of each counts, so load from other processes on a shared machine mostly cancels out.
/// Prints the ratio table that the README shows.
fn interleaved() {
    const BATCH: usize = 100;
    const ROUNDS: usize = 25;
    let now = now();
    let request = Request::new("GET", URI);
    let per_op = |start: Instant| start.elapsed().as_secs_f64() * 1e6 / BATCH as f64;
    println!();
    println!("interleaved minimum of {ROUNDS} batches of {BATCH}, µs per proof:");
    println!(
        "| alg   | provider   | raw verify | full validation | ratio | uncached key | ratio | dpop-verifier 4.4 |"
    );
    println!(
        "|-------|------------|-----------:|----------------:|------:|-------------:|------:|------------------:|"
    );
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let key = PrivateKey::generate(alg).unwrap();
        for (i, provider) in all_providers().into_iter().enumerate() {
            let builder = ProofBuilder::new(&key, &*provider).unwrap();
            let jkt = builder.jkt();
            let bound = request
                .with_access_token(ACCESS_TOKEN)
                .with_expected_jkt(&jkt);
            let proofs: Vec<String> = (0..BATCH * ROUNDS * 3)
                .map(|n| {
                    builder
                        .proof_with_jti("GET", URI, Some(ACCESS_TOKEN), None, &format!("i{n}"), now)
                        .unwrap()
                })
                .collect();
            let (input, sig) = proofs.first().unwrap().rsplit_once('.').unwrap();
            let sig = token_dpop::token_jwt::base64url::decode(sig).unwrap();
            let verifier = provider.verifying_key(builder.public_jwk(), alg).unwrap();
            let cached = Validator::new(
                ValidatorConfig::new(provider.clone()),
                Arc::new(MemoryReplayCache::new()),
            );
            let uncached = Validator::new(
                ValidatorConfig::builder(provider.clone())
                    .key_cache_capacity(0)
                    .build(),
                Arc::new(MemoryReplayCache::new()),
            );
            let peer = DpopVerifier::new().with_max_age_seconds(3600);
            let mut store = SetStore(std::collections::HashSet::new());
            let [mut raw, mut full, mut cold, mut other] = [f64::MAX; 4];
            let mut next = proofs.iter();
            for _ in 0..ROUNDS {
                let start = Instant::now();
                for _ in 0..BATCH {
                    verifier
                        .verify(black_box(input.as_bytes()), black_box(&sig))
                        .unwrap();
                }
                raw = raw.min(per_op(start));
                for (validator, best) in [(&cached, &mut full), (&uncached, &mut cold)] {
                    let batch: Vec<&String> = next.by_ref().take(BATCH).collect();
                    let start = Instant::now();
                    for proof in batch {
                        validator.validate_sync(&[proof], &bound, now).unwrap();
                    }
                    *best = best.min(per_op(start));
                }
                let batch: Vec<&String> = next.by_ref().take(BATCH).collect();
                let start = Instant::now();
                for proof in batch {
                    ready(peer.verify(&mut store, proof, URI, "GET", Some(ACCESS_TOKEN))).unwrap();
                }
                other = other.min(per_op(start));
            }
            // dpop-verifier does not use the provider: report it once per algorithm.
            let peer_cell = if i == 0 {
                format!("{other:.1}")
            } else {
                String::new()
            };
            println!(
                "| {:<5} | {:<10} | {raw:>10.1} | {full:>15.1} | {:>4.2}x | {cold:>12.1} | {:>4.2}x | {peer_cell:>17} |",
                alg.as_str(),
                provider.name(),
                full / raw,
                cold / raw,
            );
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    interleaved();
}
