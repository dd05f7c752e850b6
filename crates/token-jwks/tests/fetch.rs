//! The JWKS fetcher against a real HTTP server started in the test (axum on 127.0.0.1),
//! serving documents from `JwksPublisher`: caching by `max-age`, the unknown-`kid` refetch rate
//! limit under a flood, stale serving while the server is down, size limits, and conditional
//! requests. Time is a `ManualClock`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use token_jwks::{
    Error, FetcherConfig, HttpSource, JwksFetcher, JwksPublisher, JwksSource, ManualClock,
};
use token_jwt::{
    AccessTokenBuilder, Algorithm, CryptoProvider, JwsEncoder, JwsSigner, KeyResolver, Policy,
    PrivateKey, RustCryptoProvider,
};

// ---- a JWKS server -----------------------------------------------------------------------------

struct Served {
    publisher: JwksPublisher,
    hits: AtomicUsize,
    /// When not 200, answer this status instead of the document.
    status: AtomicU16,
    /// When set, answer this body instead of the document.
    raw_body: Mutex<Option<Vec<u8>>>,
}

async fn jwks(State(s): State<Arc<Served>>, headers: HeaderMap) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let status = s.status.load(Ordering::SeqCst);
    if status != 200 {
        return StatusCode::from_u16(status).unwrap().into_response();
    }
    if let Some(body) = s.raw_body.lock().unwrap().clone() {
        return body.into_response();
    }
    let doc = s.publisher.current();
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let r = doc.respond(inm);
    let mut response = Response::builder().status(r.status);
    for (name, value) in r.headers {
        response = response.header(name, value);
    }
    let body = r.body.map(|b| b.to_vec()).unwrap_or_default();
    response.body(axum::body::Body::from(body)).unwrap()
}

struct Server {
    served: Arc<Served>,
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    async fn start(max_age: u64) -> Server {
        let served = Arc::new(Served {
            publisher: JwksPublisher::new(max_age),
            hits: AtomicUsize::new(0),
            status: AtomicU16::new(200),
            raw_body: Mutex::new(None),
        });
        let mut server = Server {
            served,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            task: None,
            shutdown: None,
        };
        server.listen().await;
        server
    }

    async fn listen(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/jwks.json", axum::routing::get(jwks))
            .with_state(Arc::clone(&self.served));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.shutdown = Some(tx);
        self.task = Some(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        }));
    }

    /// Stops listening and closes every connection (idle keep-alive ones included).
    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("the server stops")
                .unwrap();
        }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    fn hits(&self) -> usize {
        self.served.hits.load(Ordering::SeqCst)
    }

    fn publish(&self, version: u64, signers: &[&Arc<dyn JwsSigner>]) {
        let keys: Vec<_> = signers.iter().map(|s| s.public_jwk().clone()).collect();
        assert!(self.served.publisher.update(version, &keys).unwrap());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---- helpers -----------------------------------------------------------------------------------

const NOW: i64 = 1_700_000_000;

fn key() -> Arc<dyn JwsSigner> {
    RustCryptoProvider::new()
        .signer(&PrivateKey::generate(Algorithm::ES256).unwrap())
        .unwrap()
}

fn token(signer: &Arc<dyn JwsSigner>) -> String {
    let claims = AccessTokenBuilder::new("https://issuer.example", 900)
        .subject("user")
        .build(NOW)
        .unwrap();
    JwsEncoder::for_signer(signer.as_ref(), "at+jwt")
        .encode(&claims, signer.as_ref())
        .unwrap()
}

fn fetcher(server: &Server, clock: &Arc<ManualClock>, config: FetcherConfig) -> Arc<JwksFetcher> {
    let source = HttpSource::new(&server.url())
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    Arc::new(JwksFetcher::new(
        Arc::new(source),
        Arc::new(RustCryptoProvider::new()),
        Arc::clone(clock) as _,
        config,
    ))
}

fn config() -> FetcherConfig {
    FetcherConfig::builder()
        .ttl_bounds(Duration::from_secs(60), Duration::from_secs(3600))
        .refetch_interval(Duration::from_secs(30))
        .max_stale(Duration::from_secs(300))
        .build()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ---- tests -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_by_max_age_and_refetches_after_expiry() {
    let server = Server::start(120).await;
    let a = key();
    server.publish(1, &[&a]);
    let clock = Arc::new(ManualClock::new());
    let f = fetcher(&server, &clock, config());
    let policy = Policy::default();
    let t = token(&a);

    // Empty cache: the synchronous path cannot fetch.
    assert!(matches!(
        f.resolve(a.key_id()),
        Err(token_jwt::Error::UnknownKeyId)
    ));
    policy.verify_async(&t, f.as_ref(), NOW).await.unwrap();
    assert_eq!(server.hits(), 1);

    // Within max-age (120 s): from the cache, sync and async alike.
    let mut at = 0;
    for step in [1, 30, 60, 119] {
        clock.advance(secs(step - at));
        at = step;
        policy.verify_async(&t, f.as_ref(), NOW).await.unwrap();
        policy.verify(&t, f.as_ref(), NOW).unwrap();
    }
    assert_eq!(server.hits(), 1);
    assert!(f.status().fresh);

    // Expired: the next async resolution refetches once.
    clock.advance(secs(2));
    assert!(!f.status().fresh);
    policy.verify_async(&t, f.as_ref(), NOW).await.unwrap();
    policy.verify_async(&t, f.as_ref(), NOW).await.unwrap();
    assert_eq!(server.hits(), 2);
    assert!(f.status().fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_is_clamped_to_the_configured_bounds() {
    // max-age=5 is below min_ttl (60 s): cached for 60 s.
    let server = Server::start(5).await;
    let a = key();
    server.publish(1, &[&a]);
    let clock = Arc::new(ManualClock::new());
    let f = fetcher(&server, &clock, config());
    f.refresh().await.unwrap();
    clock.advance(secs(59));
    f.resolve_async(a.key_id()).await.unwrap();
    assert_eq!(server.hits(), 1);
    clock.advance(secs(1));
    f.resolve_async(a.key_id()).await.unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_flood_fetches_at_most_once_per_interval() {
    let server = Server::start(3600).await;
    let a = key();
    server.publish(1, &[&a]);
    let clock = Arc::new(ManualClock::new());
    let f = fetcher(&server, &clock, config());
    f.refresh().await.unwrap();
    assert_eq!(server.hits(), 1);

    async fn flood(f: &Arc<JwksFetcher>, n: usize) {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let f = Arc::clone(f);
            tasks.spawn(async move {
                let kid = format!("attacker-{i}");
                assert!(matches!(
                    f.resolve_async(&kid).await,
                    Err(token_jwt::Error::UnknownKeyId)
                ));
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    }

    // The last attempt (the priming fetch) was just now: no refetch at all.
    flood(&f, 300).await;
    assert_eq!(server.hits(), 1);

    // 30 s later: 300 concurrent misses share a single fetch.
    clock.advance(secs(30));
    flood(&f, 300).await;
    assert_eq!(server.hits(), 2);

    // Within the next interval: nothing more, however many misses.
    clock.advance(secs(29));
    flood(&f, 300).await;
    assert_eq!(server.hits(), 2);
    // The known key keeps resolving from the cache throughout.
    f.resolve_async(a.key_id()).await.unwrap();

    // A real rotation: the new kid resolves as soon as the rate limit allows a refetch.
    let b = key();
    server.publish(2, &[&a, &b]);
    assert!(f.resolve_async(b.key_id()).await.is_err(), "rate-limited");
    clock.advance(secs(1));
    Policy::default()
        .verify_async(&token(&b), f.as_ref(), NOW)
        .await
        .unwrap();
    assert_eq!(server.hits(), 3);
    assert_eq!(f.status().keys, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_keys_are_served_for_a_bounded_time_while_the_source_is_down() {
    let mut server = Server::start(60).await;
    let a = key();
    server.publish(1, &[&a]);
    let t = token(&a);
    let clock = Arc::new(ManualClock::new());
    let f = fetcher(&server, &clock, config());
    let policy = Policy::default();
    f.refresh().await.unwrap();

    // The server answers 503: stale keys are served, the error is recorded.
    server.served.status.store(503, Ordering::SeqCst);
    clock.advance(secs(61));
    policy.verify_async(&t, f.as_ref(), NOW).await.unwrap();
    let status = f.status();
    assert!(!status.fresh && status.usable);
    assert_eq!(status.failures, 1);
    assert!(status.last_error.unwrap().contains("503"));

    // The server is gone (connection refused): still served, one attempt per interval.
    server.stop().await;
    let hits = server.hits();
    clock.advance(secs(30));
    policy.verify_async(&t, f.as_ref(), NOW).await.unwrap();
    policy.verify_async(&t, f.as_ref(), NOW).await.unwrap();
    let status = f.status();
    assert_eq!(status.attempts, 3);
    assert_eq!(status.failures, 2);
    assert!(
        status
            .last_error
            .unwrap()
            .contains("fetching the JWKS failed")
    );
    assert_eq!(server.hits(), hits);

    // max_stale (300 s) after expiry (60 s): no keys any more, sync or async.
    clock.advance(secs(60 + 300 - 1 - 91));
    assert!(f.status().usable);
    clock.advance(secs(1));
    assert!(!f.status().usable);
    assert!(matches!(
        policy.verify(&t, f.as_ref(), NOW),
        Err(token_jwt::Error::UnknownKeyId)
    ));
    assert!(matches!(
        policy.verify_async(&t, f.as_ref(), NOW).await,
        Err(token_jwt::Error::UnknownKeyId)
    ));

    // The server returns (same port): the next allowed attempt restores the keys.
    server.served.status.store(200, Ordering::SeqCst);
    server.listen().await;
    clock.advance(secs(30));
    policy.verify_async(&t, f.as_ref(), NOW).await.unwrap();
    assert!(f.status().fresh);
    assert_eq!(f.status().last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_invalid_responses_are_refused_and_the_old_keys_kept() {
    let server = Server::start(60).await;
    let a = key();
    server.publish(1, &[&a]);
    let clock = Arc::new(ManualClock::new());
    let f = fetcher(&server, &clock, config());
    f.refresh().await.unwrap();

    // Larger than token_jwt::MAX_JWKS_BYTES (Content-Length known).
    let mut huge = b"{\"keys\":[".to_vec();
    huge.resize(token_jwt::MAX_JWKS_BYTES + 1, b' ');
    *server.served.raw_body.lock().unwrap() = Some(huge);
    clock.advance(secs(30));
    assert!(
        matches!(f.refresh().await, Err(Error::TooLarge { limit }) if limit == token_jwt::MAX_JWKS_BYTES)
    );

    // Not a JWK Set (a private key inside).
    *server.served.raw_body.lock().unwrap() =
        Some(br#"{"keys":[{"kty":"EC","crv":"P-256","x":"","y":"","d":"AAAA"}]}"#.to_vec());
    clock.advance(secs(30));
    assert!(matches!(f.refresh().await, Err(Error::InvalidJwks(_))));

    // The keys from before are still used.
    f.resolve_async(a.key_id()).await.unwrap();
    assert_eq!(f.status().keys, 1);
}

/// A body streamed without `Content-Length` is cut off at the limit while being read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_refused_while_reading() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf).await.unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = vec![b' '; 1024];
        // 64 KiB in 1 KiB chunks, never announcing the total.
        for _ in 0..64 {
            let head = format!("{:x}\r\n", chunk.len());
            if conn.write_all(head.as_bytes()).await.is_err()
                || conn.write_all(&chunk).await.is_err()
                || conn.write_all(b"\r\n").await.is_err()
            {
                return;
            }
        }
        let _ = conn.write_all(b"0\r\n\r\n").await;
    });
    let source = HttpSource::new(&format!("http://{addr}/jwks.json"))
        .unwrap()
        .with_max_bytes(10_000);
    assert!(matches!(
        source.fetch().await,
        Err(Error::TooLarge { limit: 10_000 })
    ));
    task.abort();
}

/// The publisher's conditional responses over HTTP: `304` for a matching `If-None-Match`,
/// `200` with the new body and `ETag` after a key-ring change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests_over_http() {
    use http_body_util::{BodyExt as _, Empty};
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let server = Server::start(300).await;
    let a = key();
    server.publish(1, &[&a]);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let get = |etag: Option<String>| {
        let mut req = http::Request::get(server.url());
        if let Some(e) = etag {
            req = req.header(header::IF_NONE_MATCH, e);
        }
        client.request(req.body(Empty::new()).unwrap())
    };

    let first = get(None).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()[header::CACHE_CONTROL],
        "public, max-age=300"
    );
    assert_eq!(
        first.headers()[header::CONTENT_TYPE],
        "application/jwk-set+json"
    );
    let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
    let body = first.into_body().collect().await.unwrap().to_bytes();
    let set = token_jwt::JwkSet::from_json(&body).unwrap();
    assert!(set.get(a.key_id()).is_some());

    let again = get(Some(etag.clone())).await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()[header::ETAG], etag.as_str());
    assert!(
        again
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );

    server.publish(2, &[&a, &key()]);
    let changed = get(Some(etag.clone())).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()[header::ETAG], etag.as_str());
}
