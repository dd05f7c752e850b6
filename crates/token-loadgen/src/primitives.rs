//! The raw primitives every figure of the service is compared with, measured in the same run
//! on the same machine: an ES256 and an Ed25519 signature and verification with aws-lc-rs (the
//! provider the server uses), one Redis `PING` round trip, and the CPU a process spends on one
//! store round trip through the server's own Redis client.

use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};

use token_store_redis::{RedisConfig, RedisStore};

use crate::procfs::ProcSample;
use crate::{Error, redis};

/// Median costs in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Primitives {
    /// One ES256 signature.
    pub es256_sign_us: f64,
    /// One ES256 verification.
    pub es256_verify_us: f64,
    /// One Ed25519 signature.
    pub ed25519_sign_us: f64,
    /// One Ed25519 verification.
    pub ed25519_verify_us: f64,
    /// One Redis `PING` round trip on loopback (with `redis_url`): wall time, one connection.
    pub redis_round_trip_us: Option<f64>,
    /// CPU time (user + system, all threads) this process spends per store round trip through
    /// token-store-redis, the server's client (fred, its default pool of 4 connections), 64
    /// `PING`s in flight on a 2-worker Tokio runtime, as the server runs them (with
    /// `redis_url`). The unit of the store's share of a request's floor.
    #[serde(default)]
    pub store_round_trip_cpu_us: Option<f64>,
}

/// A signing input the size of a typical access token's header and claims.
const MESSAGE: &[u8] = &[b'e'; 420];

/// Median per-call time of `f` over batches filling about `budget`.
fn median_us(budget: Duration, mut f: impl FnMut() -> Result<(), Error>) -> Result<f64, Error> {
    const BATCH: u32 = 64;
    let mut batches = Vec::new();
    let until = Instant::now() + budget;
    while Instant::now() < until || batches.len() < 5 {
        let start = Instant::now();
        for _ in 0..BATCH {
            f()?;
        }
        batches.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH));
    }
    batches.sort_by(f64::total_cmp);
    Ok(batches.get(batches.len() / 2).copied().unwrap_or(f64::NAN))
}

fn crypto(e: impl std::fmt::Display) -> Error {
    Error::Setup(format!("aws-lc-rs: {e}"))
}

/// Measures the primitives, about `budget` each.
///
/// # Errors
/// [`Error::Setup`] if a key cannot be made, [`Error::Redis`] if Redis cannot be reached.
pub async fn measure(budget: Duration, redis_url: Option<&str>) -> Result<Primitives, Error> {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(crypto)?;
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(crypto)?;
    let ec_sig = ec.sign(&rng, MESSAGE).map_err(crypto)?;
    let ec_pub = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, ec.public_key().as_ref());
    let ed = Ed25519KeyPair::generate().map_err(crypto)?;
    let ed_sig = ed.sign(MESSAGE);
    let ed_pub = UnparsedPublicKey::new(&ED25519, ed.public_key().as_ref());

    let es256_sign_us = median_us(budget, || ec.sign(&rng, MESSAGE).map(drop).map_err(crypto))?;
    let es256_verify_us = median_us(budget, || {
        ec_pub.verify(MESSAGE, ec_sig.as_ref()).map_err(crypto)
    })?;
    let ed25519_sign_us = median_us(budget, || {
        std::hint::black_box(ed.sign(MESSAGE));
        Ok(())
    })?;
    let ed25519_verify_us = median_us(budget, || {
        ed_pub.verify(MESSAGE, ed_sig.as_ref()).map_err(crypto)
    })?;
    let (redis_round_trip_us, store_round_trip_cpu_us) = match redis_url {
        Some(url) => (
            Some(redis_ping_us(url, budget).await?),
            Some(store_round_trip_cpu_us(url, budget.max(Duration::from_secs(1))).await?),
        ),
        None => (None, None),
    };
    Ok(Primitives {
        es256_sign_us,
        es256_verify_us,
        ed25519_sign_us,
        ed25519_verify_us,
        redis_round_trip_us,
        store_round_trip_cpu_us,
    })
}

/// The median `PING` round trip, µs, on one connection (blocking, so no runtime's wake-ups
/// are in the figure), over about `budget` and at least 100 pings.
async fn redis_ping_us(url: &str, budget: Duration) -> Result<f64, Error> {
    let url = url.to_owned();
    redis::blocking(move || {
        let mut conn = redis::connect(&url)?;
        let mut samples = Vec::new();
        let until = Instant::now() + budget;
        while Instant::now() < until || samples.len() < 100 {
            let start = Instant::now();
            conn.ping().map_err(redis::error)?;
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
        samples.sort_by(f64::total_cmp);
        Ok(samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN))
    })
    .await
}

/// In-flight `PING`s while measuring the store's CPU per round trip: the load scenarios' 64.
const STORE_IN_FLIGHT: usize = 64;

/// This process's CPU time per `RedisStore::ping`, µs, with [`STORE_IN_FLIGHT`] in flight for
/// about `budget` on a runtime of its own with two workers (the server's, on this machine).
/// `/proc` counts CPU in 10 ms ticks: a second or more of pings keeps that under 1%.
async fn store_round_trip_cpu_us(url: &str, budget: Duration) -> Result<f64, Error> {
    let url = url.to_owned();
    redis::blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Setup(format!("a Tokio runtime: {e}")))?;
        runtime.block_on(async move {
            let store_error = |e: token_store_redis::Error| Error::Redis(e.to_string());
            let config = RedisConfig::builder(url).build().map_err(store_error)?;
            let store = RedisStore::connect(config).await.map_err(store_error)?;
            for _ in 0..200 {
                store.ping().await.map_err(store_error)?;
            }
            let before = ProcSample::read(std::process::id())?.cpu_seconds;
            let until = Instant::now() + budget;
            let tasks: Vec<_> = (0..STORE_IN_FLIGHT)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let mut pings = 0_u64;
                        while Instant::now() < until {
                            store.ping().await?;
                            pings += 1;
                        }
                        Ok::<u64, token_store_redis::Error>(pings)
                    })
                })
                .collect();
            let mut pings = 0_u64;
            for task in tasks {
                pings += task
                    .await
                    .map_err(|e| Error::Redis(format!("a ping task failed: {e}")))?
                    .map_err(store_error)?;
            }
            let after = ProcSample::read(std::process::id())?.cpu_seconds;
            store.close().await;
            if pings == 0 {
                return Err(Error::Redis("no PING completed".into()));
            }
            #[allow(
                clippy::cast_precision_loss,
                reason = "a count of pings, far below 2^52"
            )]
            Ok((after - before) * 1e6 / pings as f64)
        })
    })
    .await
}
