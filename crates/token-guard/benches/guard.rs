//! The guard's cost per request through its tower layer, next to the raw signature checks it
//! cannot avoid, measured in the same run with the same provider (aws-lc-rs):
//!
//! - a DPoP request (ES256 access token bound to an ES256 key, a fresh proof with `ath` every
//!   time, in-memory replay cache) against two raw ES256 verifications (the token's and the
//!   proof's signatures with prepared keys);
//! - a Bearer request (the same token unbound) against one raw verification.
//!
//! The request is built ahead of the measured loop (`iter_batched`), so the figures are the
//! guard's: header checks, token parse and verify, claims, proof validation, replay insert,
//! extensions, and the call of a trivial inner service. After criterion's runs, an interleaved
//! measurement prints the table of the README. Run with
//! `cargo bench -p token-guard --features aws-lc-rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    reason = "benchmark code: a failure aborts the run, and the ratio table is printed"
)]

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group};
use token_dpop::ProofBuilder;
use token_dpop::token_jwt::{
    AccessTokenBuilder, Algorithm, AwsLcProvider, CryptoProvider, JwkSet, JwsEncoder, JwsVerifier,
    KeySet, PrivateKey,
};
use token_guard::{Guard, GuardService, ManualClock};
use tower_layer::Layer as _;
use tower_service::Service as _;

const NOW: i64 = 1_700_000_000;
const URI: &str = "https://api.example/items";

/// The protected handler: answers at once.
#[derive(Clone)]
struct Handler;

impl tower_service::Service<http::Request<()>> for Handler {
    type Response = http::Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<http::Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        ready(Ok(http::Response::new(())))
    }
}

/// Polls a future that never waits (in-memory keys and replay cache).
fn now_or_never<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the guard waited with in-memory keys and replay cache"),
    }
}

struct Setup {
    service: RefCell<GuardService<Handler>>,
    client: ProofBuilder,
    bound: String,
    unbound: String,
    /// The token's signing input and signature, and the issuer's prepared key.
    token_raw: (String, Vec<u8>, Arc<dyn JwsVerifier>),
    /// A proof's signing input and signature, and the client's prepared key.
    proof_raw: (String, Vec<u8>, Arc<dyn JwsVerifier>),
}

fn split(jws: &str) -> (String, Vec<u8>) {
    let (input, sig) = jws.rsplit_once('.').unwrap();
    (
        input.to_owned(),
        token_dpop::token_jwt::base64url::decode(sig).unwrap(),
    )
}

fn setup() -> Setup {
    let provider = Arc::new(AwsLcProvider::new());
    let issuer = provider
        .signer(&PrivateKey::generate(Algorithm::ES256).unwrap())
        .unwrap();
    let client =
        ProofBuilder::new(&PrivateKey::generate(Algorithm::ES256).unwrap(), &*provider).unwrap();
    let token = |bound: bool| {
        let mut claims = AccessTokenBuilder::new("https://as.example", 300)
            .subject("user-42")
            .audience(["https://api.example"])
            .scopes(["read"])
            .session_id("family-1");
        if bound {
            claims = claims.dpop_jkt(client.jkt());
        }
        let claims = claims.build(NOW).unwrap();
        JwsEncoder::for_signer(&*issuer, "at+jwt")
            .encode(&claims, &*issuer)
            .unwrap()
    };
    let (bound, unbound) = (token(true), token(false));
    let keys =
        KeySet::from_jwks(&JwkSet::new(vec![issuer.public_jwk().clone()]), &*provider).unwrap();
    let guard = Guard::builder("https://as.example", "https://api.example")
        .keys(Arc::new(keys))
        .external_url("https://api.example")
        .crypto_provider(provider.clone())
        .dpop_algorithms([Algorithm::ES256])
        .require_scope("read")
        .clock(Arc::new(ManualClock::new(NOW)))
        .build()
        .unwrap();
    let service = guard.layer().layer(Handler);

    let (input, sig) = split(&bound);
    let token_key = provider
        .verifying_key(issuer.public_jwk(), Algorithm::ES256)
        .unwrap();
    let proof = client.proof("GET", URI, Some(&bound), None, NOW).unwrap();
    let (p_input, p_sig) = split(&proof);
    let proof_key = provider
        .verifying_key(client.public_jwk(), Algorithm::ES256)
        .unwrap();
    Setup {
        service: RefCell::new(service),
        client,
        token_raw: (input, sig, token_key),
        proof_raw: (p_input, p_sig, proof_key),
        bound,
        unbound,
    }
}

impl Setup {
    fn dpop_request(&self, n: u64) -> http::Request<()> {
        let proof = self
            .client
            .proof_with_jti("GET", URI, Some(&self.bound), None, &format!("j{n}"), NOW)
            .unwrap();
        http::Request::get("/items")
            .header("authorization", format!("DPoP {}", self.bound))
            .header("dpop", proof)
            .body(())
            .unwrap()
    }

    fn bearer_request(&self) -> http::Request<()> {
        http::Request::get("/items")
            .header("authorization", format!("Bearer {}", self.unbound))
            .body(())
            .unwrap()
    }

    fn call(&self, request: http::Request<()>) {
        let response = now_or_never(self.service.borrow_mut().call(request)).unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
    }

    fn raw_token(&self) {
        let (input, sig, key) = &self.token_raw;
        key.verify(black_box(input.as_bytes()), black_box(sig))
            .unwrap();
    }

    fn raw_proof(&self) {
        let (input, sig, key) = &self.proof_raw;
        key.verify(black_box(input.as_bytes()), black_box(sig))
            .unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("guard/ES256/aws-lc-rs");
    group.bench_function("raw verify (token)", |b| b.iter(|| s.raw_token()));
    group.bench_function("raw verify (proof)", |b| b.iter(|| s.raw_proof()));
    let mut n = 0u64;
    group.bench_function("DPoP request", |b| {
        b.iter_batched(
            || {
                n += 1;
                s.dpop_request(n)
            },
            |request| s.call(request),
            BatchSize::SmallInput,
        );
    });
    let s = setup();
    group.bench_function("Bearer request", |b| {
        b.iter_batched(
            || s.bearer_request(),
            |request| s.call(request),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// The same comparison, interleaved: batches of each operation take turns and the fastest
/// batch of each counts, so load from other processes on a shared machine mostly cancels out.
fn interleaved() {
    const BATCH: usize = 100;
    const ROUNDS: usize = 25;
    let s = setup();
    let per_op = |start: Instant| start.elapsed().as_secs_f64() * 1e6 / BATCH as f64;
    let mut n = 1_000_000_000u64;
    let [mut token, mut proof, mut dpop, mut bearer] = [f64::MAX; 4];
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..BATCH {
            s.raw_token();
        }
        token = token.min(per_op(start));
        let start = Instant::now();
        for _ in 0..BATCH {
            s.raw_proof();
        }
        proof = proof.min(per_op(start));
        let batch: Vec<_> = (0..BATCH)
            .map(|_| {
                n += 1;
                s.dpop_request(n)
            })
            .collect();
        let start = Instant::now();
        for request in batch {
            s.call(request);
        }
        dpop = dpop.min(per_op(start));
        let batch: Vec<_> = (0..BATCH).map(|_| s.bearer_request()).collect();
        let start = Instant::now();
        for request in batch {
            s.call(request);
        }
        bearer = bearer.min(per_op(start));
    }
    println!();
    println!(
        "interleaved minimum of {ROUNDS} batches of {BATCH}, µs per request (ES256, aws-lc-rs):"
    );
    println!("| request | raw verifications | raw µs | guard µs | ratio |");
    println!("|---------|-------------------|-------:|---------:|------:|");
    println!(
        "| DPoP    | token {token:.1} + proof {proof:.1} | {:>6.1} | {dpop:>8.1} | {:>4.2}x |",
        token + proof,
        dpop / (token + proof),
    );
    println!(
        "| Bearer  | token {token:.1}          | {token:>6.1} | {bearer:>8.1} | {:>4.2}x |",
        bearer / token,
    );
}

/// A Bearer request on one axum handler behind the guard and behind `oauth-resource-server`'s
/// `AuthLayer` (which verifies Bearer tokens only), with the same ES256 token and key, and the
/// raw verification beside them; interleaved minimums as above. Both check signature, `iss`,
/// `aud`, `exp` and a required scope against the real clock.
fn vs_oauth_resource_server() {
    use axum::routing::get;
    use oauth_resource_server::axum::AuthLayer;
    use oauth_resource_server::{KeyNaming, OAuthConfig, OAuthValidator, static_token_policy};

    const ISSUER: &str = "https://as.example";
    const AUDIENCE: &str = "https://api.example";
    const BATCH: usize = 100;
    const ROUNDS: usize = 25;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let provider = Arc::new(AwsLcProvider::new());
    let issuer = provider
        .signer(&PrivateKey::generate(Algorithm::ES256).unwrap())
        .unwrap();
    #[allow(
        clippy::disallowed_methods,
        reason = "oauth-resource-server checks `exp` against the real clock"
    )]
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let claims = AccessTokenBuilder::new(ISSUER, 3600)
        .subject("user-42")
        .client_id("web")
        .audience([AUDIENCE])
        .scopes(["read"])
        .build(now)
        .unwrap();
    let token = JwsEncoder::for_signer(&*issuer, "at+jwt")
        .encode(&claims, &*issuer)
        .unwrap();
    let jwks = JwkSet::new(vec![issuer.public_jwk().clone()]);

    let keys = KeySet::from_jwks(&jwks, &*provider).unwrap();
    let guard = Guard::builder(ISSUER, AUDIENCE)
        .keys(Arc::new(keys))
        .external_url(AUDIENCE)
        .crypto_provider(provider.clone())
        .require_scope("read")
        .build()
        .unwrap();
    let ours = axum::Router::new()
        .route("/items", get(|| async { "ok" }))
        .route_layer(guard.layer());

    let resolved = OAuthConfig {
        enabled: true,
        issuer: ISSUER.into(),
        jwks_uri: Some(format!("{ISSUER}/jwks")),
        audience: AUDIENCE.into(),
        resource: AUDIENCE.into(),
        required_scopes: vec!["read".into()],
        ..OAuthConfig::default()
    }
    .resolve(KeyNaming::Dotted("oauth"))
    .unwrap()
    .unwrap();
    let validator = Arc::new(
        OAuthValidator::builder(&resolved)
            .initial_jwks(&jwks.to_json())
            .build()
            .unwrap(),
    );
    let decision = static_token_policy(None, Some(&resolved), false).unwrap();
    let auth = AuthLayer::from_decision(decision, Some(validator)).unwrap();
    let theirs = axum::Router::new()
        .route("/items", get(|| async { "ok" }))
        .route_layer(auth);

    let request = || {
        http::Request::get("/items")
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let serve = |app: &axum::Router| {
        // A Router is always ready: `call` is what `oneshot` would do after `poll_ready`.
        let response = runtime.block_on(app.clone().call(request())).unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
    };
    let (input, sig) = split(&token);
    let key = provider
        .verifying_key(issuer.public_jwk(), Algorithm::ES256)
        .unwrap();
    let per_op = |start: Instant| start.elapsed().as_secs_f64() * 1e6 / BATCH as f64;
    let [mut raw, mut guard_us, mut other_us] = [f64::MAX; 3];
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..BATCH {
            key.verify(black_box(input.as_bytes()), black_box(&sig))
                .unwrap();
        }
        raw = raw.min(per_op(start));
        let start = Instant::now();
        for _ in 0..BATCH {
            serve(&ours);
        }
        guard_us = guard_us.min(per_op(start));
        let start = Instant::now();
        for _ in 0..BATCH {
            serve(&theirs);
        }
        other_us = other_us.min(per_op(start));
    }
    println!();
    println!(
        "Bearer request on one axum handler, interleaved minimum of {ROUNDS} batches of {BATCH} (ES256):"
    );
    println!("| verifier | µs per request | ÷ raw verify |");
    println!("|----------|---------------:|-------------:|");
    println!("| raw verify (aws-lc-rs) | {raw:.1} | 1.00x |");
    println!(
        "| token-guard (aws-lc-rs) | {guard_us:.1} | {:.2}x |",
        guard_us / raw
    );
    println!(
        "| oauth-resource-server 0.4 (jsonwebtoken) | {other_us:.1} | {:.2}x |",
        other_us / raw
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    interleaved();
    vs_oauth_resource_server();
}
