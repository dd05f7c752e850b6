//! The guard through an axum application called in-process, with access tokens and proofs
//! minted here (token-jwt's `AccessTokenBuilder`, token-dpop's `ProofBuilder`) and the issuer's
//! JWK Set served by a local axum server: every answer of RFC 6750 and RFC 9449 section 7, route
//! scopes, nonces, the external URL behind proxies, the metadata, revocations (the list, and the
//! watcher against a local `WatchRevocations` server), and the Redis replay cache.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use http::{Request, StatusCode};
use token_dpop::token_jwt::{
    AccessTokenBuilder, Algorithm, CryptoProvider, JwsEncoder, JwsSigner, PrivateKey,
    RustCryptoProvider,
};
use token_dpop::{NonceIssuer, NonceKey, ProofBuilder};
use token_guard::{
    Authenticated, Authorized, Guard, GuardBuilder, ManualClock, ProxyHeaders, RejectionKind,
    RevocationWatcher, RevokedSids, StalePolicy,
};
use token_jwks::JwksPublisher;
use token_proto::token_service_server::{TokenService, TokenServiceServer};
use token_proto::{RevocationEvent, WatchRevocationsRequest};
use tower_service::Service as _;

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://as.example";
const AUDIENCE: &str = "https://api.example";
const ITEMS: &str = "https://api.example/items";
/// Every challenge's `algs` with the default proof algorithms.
const ALGS: &str = r#"algs="ES256 ES384 EdDSA RS256 PS256""#;

// ---- the issuer: keys, a JWKS server, tokens ------------------------------------------------------

struct Issuer {
    signer: Arc<dyn JwsSigner>,
    publisher: Arc<JwksPublisher>,
    hits: Arc<AtomicUsize>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn signer() -> Arc<dyn JwsSigner> {
    RustCryptoProvider::new()
        .signer(&PrivateKey::generate(Algorithm::ES256).unwrap())
        .unwrap()
}

async fn jwks(State((publisher, hits)): State<(Arc<JwksPublisher>, Arc<AtomicUsize>)>) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    let r = publisher.current().respond(None);
    let mut response = Response::builder().status(r.status);
    for (name, value) in r.headers {
        response = response.header(name, value);
    }
    let body = r.body.map(|b| b.to_vec()).unwrap_or_default();
    response.body(Body::from(body)).unwrap()
}

impl Issuer {
    /// An issuer whose JWK Set (one ES256 key) is served on 127.0.0.1.
    async fn start() -> Issuer {
        let signer = signer();
        let publisher = Arc::new(JwksPublisher::new(300));
        publisher.update(1, &[signer.public_jwk().clone()]).unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .with_state((Arc::clone(&publisher), Arc::clone(&hits)));
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Issuer {
            signer,
            publisher,
            hits,
            addr,
            task,
        }
    }

    fn jwks_url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// A guard builder for this issuer's tokens at [`NOW`] (a manual clock).
    fn guard(&self) -> GuardBuilder {
        Guard::builder(ISSUER, AUDIENCE)
            .jwks_url(self.jwks_url())
            .external_url("https://api.example")
            .clock(Arc::new(ManualClock::new(NOW)))
    }

    /// A token for `sub`, bound to `client`'s key when given, with `scopes` and a `sid`.
    fn token(&self, client: Option<&ProofBuilder>, scopes: &[&str], sid: &str) -> String {
        token_by(&self.signer, client, scopes, sid)
    }
}

fn token_by(
    signer: &Arc<dyn JwsSigner>,
    client: Option<&ProofBuilder>,
    scopes: &[&str],
    sid: &str,
) -> String {
    let mut claims = AccessTokenBuilder::new(ISSUER, 300)
        .subject("user-42")
        .audience([AUDIENCE])
        .scopes(scopes.iter().copied())
        .session_id(sid)
        .claim("tenant", "t1")
        .unwrap();
    if let Some(client) = client {
        claims = claims.dpop_jkt(client.jkt());
    }
    let claims = claims.build(NOW).unwrap();
    JwsEncoder::for_signer(signer.as_ref(), "at+jwt")
        .encode(&claims, signer.as_ref())
        .unwrap()
}

fn client() -> ProofBuilder {
    ProofBuilder::new(
        &PrivateKey::generate(Algorithm::ES256).unwrap(),
        &RustCryptoProvider::new(),
    )
    .unwrap()
}

// ---- the application -------------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct MyClaims {
    sub: String,
    tenant: String,
}

/// `GET /items` (the guard's scopes), `POST /items` (and `write`), `GET /typed` (claims into a
/// type they do not fit), the metadata; `GET /open` is outside the guard but uses the
/// extractor.
fn items_app(guard: &Guard) -> Router {
    #[derive(serde::Deserialize)]
    struct Strict {
        #[allow(dead_code, reason = "only its absence matters")]
        missing: String,
    }
    Router::new()
        .route(
            "/items",
            get(|a: Authenticated<MyClaims>| async move {
                format!("{} {} {}", a.claims.sub, a.claims.tenant, a.scheme)
            }),
        )
        .route(
            "/items",
            post(|Extension(a): Extension<Authorized>| async move { a.claims.sub.unwrap_or_default() })
                .route_layer(guard.layer().require_scope("write")),
        )
        .route(
            "/typed",
            get(|_: Authenticated<Strict>| async { "unreachable" }),
        )
        .route_layer(guard.layer())
        .route("/open", get(|_: Authenticated<MyClaims>| async { "unreachable" }))
        .merge(guard.metadata().router())
}

/// A request for `uri` (a path) with these `Authorization` and `DPoP` values.
fn request(method: &str, uri: &str, authorization: &[&str], dpop: &[&[u8]]) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(uri);
    for a in authorization {
        r = r.header("authorization", *a);
    }
    for d in dpop {
        r = r.header("dpop", http::HeaderValue::from_bytes(d).unwrap());
    }
    r.body(Body::empty()).unwrap()
}

/// What the application answered: status, challenges, `DPoP-Nonce`, body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    challenges: Vec<String>,
    nonce: Option<String>,
    body: String,
}

async fn call(app: &mut Router, request: Request<Body>) -> Answer {
    let response = app.call(request).await.unwrap();
    let headers = response.headers().clone();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        challenges: headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect(),
        nonce: headers
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// A DPoP request for `GET /items` with `token` and a fresh proof by `client` for `method` and
/// `uri`, with `ath` for `ath_token`.
fn dpop_request(
    token: &str,
    client: &ProofBuilder,
    method: &str,
    uri: &str,
    ath_token: Option<&str>,
) -> Request<Body> {
    let proof = client.proof(method, uri, ath_token, None, NOW).unwrap();
    request(
        "GET",
        "/items",
        &[&format!("DPoP {token}")],
        &[proof.as_bytes()],
    )
}

fn bearer_challenge(error: &str, description: &str) -> String {
    format!(r#"Bearer error="{error}", error_description="{description}""#)
}

fn dpop_challenge(error: &str, description: &str) -> String {
    format!(r#"DPoP {ALGS}, error="{error}", error_description="{description}""#)
}

// ---- tests ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_bound_token_with_a_fresh_proof_reaches_the_handler_with_its_claims() {
    let issuer = Issuer::start().await;
    let guard = issuer.guard().require_scope("read").build().unwrap();
    let mut app = items_app(&guard);
    let client = client();
    let token = issuer.token(Some(&client), &["read"], "family-1");

    let a = call(
        &mut app,
        dpop_request(&token, &client, "GET", ITEMS, Some(&token)),
    )
    .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "user-42 t1 DPoP"),
        "{a:?}"
    );
    assert!(a.nonce.is_none(), "no nonces required, none sent");
    assert!(a.challenges.is_empty());
    // The query is not part of `htu`; another fresh proof passes too.
    let proof = client.proof("GET", ITEMS, Some(&token), None, NOW).unwrap();
    let r = request(
        "GET",
        "/items?page=2",
        &[&format!("DPoP {token}")],
        &[proof.as_bytes()],
    );
    assert_eq!(call(&mut app, r).await.status, StatusCode::OK);
    // An unbound token as a Bearer token.
    let bearer = issuer.token(None, &["read"], "family-2");
    let a = call(
        &mut app,
        request("GET", "/items", &[&format!("Bearer {bearer}")], &[]),
    )
    .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "user-42 t1 Bearer")
    );
}

/// One refused request and what it must be answered with.
struct Refusal {
    what: &'static str,
    request: Request<Body>,
    status: StatusCode,
    challenges: Vec<String>,
}

#[tokio::test]
async fn every_refusal_is_answered_with_its_status_and_challenge() {
    let issuer = Issuer::start().await;
    let guard = issuer.guard().require_scope("read").build().unwrap();
    let mut app = items_app(&guard);
    let client = client();
    let other = self::client();
    let token = issuer.token(Some(&client), &["read"], "family-1");
    let unbound = issuer.token(None, &["read"], "family-2");
    let dpop = format!("DPoP {token}");

    let replayed = client.proof("GET", ITEMS, Some(&token), None, NOW).unwrap();
    let first = request("GET", "/items", &[&dpop], &[replayed.as_bytes()]);
    assert_eq!(call(&mut app, first).await.status, StatusCode::OK);

    let proof_error = |description: &str| {
        vec![
            "Bearer".to_owned(),
            dpop_challenge("invalid_dpop_proof", description),
        ]
    };
    let token_error_dpop = |description: &str| {
        vec![
            "Bearer".to_owned(),
            dpop_challenge("invalid_token", description),
        ]
    };
    let cases = vec![
        Refusal {
            what: "a replayed proof",
            request: request("GET", "/items", &[&dpop], &[replayed.as_bytes()]),
            status: StatusCode::UNAUTHORIZED,
            challenges: proof_error("DPoP proof replayed"),
        },
        Refusal {
            what: "a proof for another method",
            request: dpop_request(&token, &client, "POST", ITEMS, Some(&token)),
            status: StatusCode::UNAUTHORIZED,
            challenges: proof_error("DPoP proof htm does not match the request method"),
        },
        Refusal {
            what: "a proof for another URI",
            request: dpop_request(&token, &client, "GET", "https://api.example/other", Some(&token)),
            status: StatusCode::UNAUTHORIZED,
            challenges: proof_error("DPoP proof htu does not match the request URI"),
        },
        Refusal {
            what: "a proof for the internal URI",
            request: dpop_request(&token, &client, "GET", "http://127.0.0.1:8080/items", Some(&token)),
            status: StatusCode::UNAUTHORIZED,
            challenges: proof_error("DPoP proof htu does not match the request URI"),
        },
        Refusal {
            what: "a proof without ath",
            request: dpop_request(&token, &client, "GET", ITEMS, None),
            status: StatusCode::UNAUTHORIZED,
            challenges: proof_error("DPoP proof ath missing"),
        },
        Refusal {
            what: "a proof whose ath is another token's",
            request: dpop_request(&token, &client, "GET", ITEMS, Some(&unbound)),
            status: StatusCode::UNAUTHORIZED,
            challenges: proof_error("DPoP proof ath does not match the access token"),
        },
        Refusal {
            what: "a proof by another key",
            request: dpop_request(&token, &other, "GET", ITEMS, Some(&token)),
            status: StatusCode::UNAUTHORIZED,
            challenges: token_error_dpop("DPoP key does not match the bound key"),
        },
        Refusal {
            what: "a bound token as a Bearer token",
            request: request("GET", "/items", &[&format!("Bearer {token}")], &[]),
            status: StatusCode::UNAUTHORIZED,
            challenges: vec![
                bearer_challenge("invalid_token", "key-bound access token presented as a Bearer token"),
                format!("DPoP {ALGS}"),
            ],
        },
        Refusal {
            what: "an unbound token under DPoP",
            request: dpop_request(&unbound, &client, "GET", ITEMS, Some(&unbound)),
            status: StatusCode::UNAUTHORIZED,
            challenges: token_error_dpop("access token is not DPoP-bound"),
        },
        Refusal {
            what: "a DPoP token without a proof",
            request: request("GET", "/items", &[&dpop], &[]),
            status: StatusCode::UNAUTHORIZED,
            challenges: proof_error("DPoP proof missing"),
        },
        Refusal {
            what: "two proofs, the second not ASCII",
            request: {
                let proof = client.proof("GET", ITEMS, Some(&token), None, NOW).unwrap();
                request("GET", "/items", &[&dpop], &[proof.as_bytes(), "\u{e9}".as_bytes()])
            },
            status: StatusCode::UNAUTHORIZED,
            challenges: proof_error("more than one DPoP proof"),
        },
        Refusal {
            what: "no credentials",
            request: request("GET", "/items", &[], &[]),
            status: StatusCode::UNAUTHORIZED,
            challenges: vec!["Bearer".to_owned(), format!("DPoP {ALGS}")],
        },
        Refusal {
            what: "two Authorization headers",
            request: request("GET", "/items", &[&dpop, &dpop], &[]),
            status: StatusCode::BAD_REQUEST,
            challenges: vec![
                bearer_challenge("invalid_request", "more than one Authorization header"),
                dpop_challenge("invalid_request", "more than one Authorization header"),
            ],
        },
        Refusal {
            what: "a token of another issuer's key",
            request: {
                let forged = token_by(&signer(), None, &["read"], "f");
                request("GET", "/items", &[&format!("Bearer {forged}")], &[])
            },
            status: StatusCode::UNAUTHORIZED,
            challenges: vec![
                bearer_challenge("invalid_token", "access token signing key unknown"),
                format!("DPoP {ALGS}"),
            ],
        },
        Refusal {
            what: "a token without the guard's scope",
            request: {
                let narrow = issuer.token(None, &["other"], "f");
                request("GET", "/items", &[&format!("Bearer {narrow}")], &[])
            },
            status: StatusCode::FORBIDDEN,
            challenges: vec![
                r#"Bearer error="insufficient_scope", error_description="access token lacks a required scope", scope="read""#.to_owned(),
                format!("DPoP {ALGS}"),
            ],
        },
    ];
    for case in cases {
        let a = call(&mut app, case.request).await;
        assert_eq!(
            (a.status, &a.challenges),
            (case.status, &case.challenges),
            "{}: {a:?}",
            case.what
        );
        assert!(a.nonce.is_none() && a.body.is_empty(), "{}", case.what);
    }
}

#[tokio::test]
async fn a_dpop_only_guard_refuses_bearer_tokens_and_challenges_dpop_alone() {
    let issuer = Issuer::start().await;
    let guard = issuer.guard().accept_bearer(false).build().unwrap();
    let mut app = items_app(&guard);
    let bearer = issuer.token(None, &["read"], "f");
    let a = call(
        &mut app,
        request("GET", "/items", &[&format!("Bearer {bearer}")], &[]),
    )
    .await;
    assert_eq!(
        (a.status, a.challenges),
        (StatusCode::UNAUTHORIZED, vec![format!("DPoP {ALGS}")])
    );
    let meta = call(
        &mut app,
        request("GET", "/.well-known/oauth-protected-resource", &[], &[]),
    )
    .await;
    let doc: serde_json::Value = serde_json::from_str(&meta.body).unwrap();
    assert_eq!(doc["dpop_bound_access_tokens_required"], true);
}

#[tokio::test]
async fn a_route_adds_its_scopes_and_its_nested_layer_does_not_spend_the_proof_again() {
    let issuer = Issuer::start().await;
    let guard = issuer.guard().require_scope("read").build().unwrap();
    let mut app = items_app(&guard);
    let client = client();

    let reader = issuer.token(Some(&client), &["read"], "f1");
    let proof = client
        .proof("POST", ITEMS, Some(&reader), None, NOW)
        .unwrap();
    let a = call(
        &mut app,
        request(
            "POST",
            "/items",
            &[&format!("DPoP {reader}")],
            &[proof.as_bytes()],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{a:?}");
    assert_eq!(
        a.challenges,
        [
            "Bearer".to_owned(),
            format!(
                r#"DPoP {ALGS}, error="insufficient_scope", error_description="access token lacks a required scope", scope="read write""#
            )
        ]
    );

    let writer = issuer.token(Some(&client), &["read", "write"], "f2");
    let proof = client
        .proof("POST", ITEMS, Some(&writer), None, NOW)
        .unwrap();
    let a = call(
        &mut app,
        request(
            "POST",
            "/items",
            &[&format!("DPoP {writer}")],
            &[proof.as_bytes()],
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "user-42"),
        "{a:?}"
    );

    // A route layer on its own verifies the request itself.
    let mut alone: Router = Router::new()
        .route("/items", post(|| async { "ok" }))
        .route_layer(guard.layer().require_scope("write"));
    let proof = client
        .proof("POST", ITEMS, Some(&writer), None, NOW)
        .unwrap();
    let a = call(
        &mut alone,
        request(
            "POST",
            "/items",
            &[&format!("DPoP {writer}")],
            &[proof.as_bytes()],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let proof = client
        .proof("POST", ITEMS, Some(&reader), None, NOW)
        .unwrap();
    let a = call(
        &mut alone,
        request(
            "POST",
            "/items",
            &[&format!("DPoP {reader}")],
            &[proof.as_bytes()],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn claims_that_do_not_fit_the_type_are_refused_and_the_extractor_needs_the_layer() {
    let issuer = Issuer::start().await;
    let guard = issuer.guard().build().unwrap();
    let mut app = items_app(&guard);
    let bearer = format!("Bearer {}", issuer.token(None, &["read"], "f"));
    let a = call(&mut app, request("GET", "/typed", &[&bearer], &[])).await;
    assert_eq!(
        (a.status, a.challenges[0].as_str()),
        (
            StatusCode::UNAUTHORIZED,
            r#"Bearer error="invalid_token", error_description="access token claims do not have the expected form""#
        )
    );
    let a = call(&mut app, request("GET", "/open", &[&bearer], &[])).await;
    assert_eq!(
        (a.status, a.challenges.len()),
        (StatusCode::INTERNAL_SERVER_ERROR, 0)
    );
}

#[tokio::test]
async fn a_required_nonce_is_handed_out_then_accepted_and_renewed() {
    let issuer = Issuer::start().await;
    let nonces = Arc::new(NonceIssuer::new(NonceKey::from_bytes(&[9; 32])));
    let guard = issuer.guard().require_nonce(nonces).build().unwrap();
    let mut app = items_app(&guard);
    let client = client();
    let token = issuer.token(Some(&client), &["read"], "f");

    let a = call(
        &mut app,
        dpop_request(&token, &client, "GET", ITEMS, Some(&token)),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.challenges[1],
        dpop_challenge("use_dpop_nonce", "DPoP nonce required")
    );
    let nonce = a.nonce.expect("a nonce to retry with");

    let proof = client
        .proof("GET", ITEMS, Some(&token), Some(&nonce), NOW)
        .unwrap();
    let a = call(
        &mut app,
        request(
            "GET",
            "/items",
            &[&format!("DPoP {token}")],
            &[proof.as_bytes()],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert!(a.nonce.is_some(), "the next nonce comes with the answer");
    // A nonce of another key is refused with a fresh one.
    let proof = client
        .proof("GET", ITEMS, Some(&token), Some("forged-nonce"), NOW)
        .unwrap();
    let a = call(
        &mut app,
        request(
            "GET",
            "/items",
            &[&format!("DPoP {token}")],
            &[proof.as_bytes()],
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.nonce.is_some()),
        (StatusCode::UNAUTHORIZED, true)
    );
}

#[tokio::test]
async fn the_htu_is_the_external_url_unless_trusted_proxy_headers_say_otherwise() {
    let issuer = Issuer::start().await;
    let client = client();
    let token = issuer.token(Some(&client), &["read"], "f");
    let dpop = format!("DPoP {token}");
    let with = |uri: &str, headers: &[(&str, &str)]| {
        let proof = client.proof("GET", uri, Some(&token), None, NOW).unwrap();
        let mut r = request("GET", "/items", &[&dpop], &[proof.as_bytes()]);
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            r.headers_mut().append(name, value.parse().unwrap());
        }
        r
    };

    // A path prefix a proxy strips is part of the external URL.
    let guard = issuer
        .guard()
        .external_url("https://gw.example/api/")
        .build()
        .unwrap();
    let mut app = items_app(&guard);
    assert_eq!(
        call(&mut app, with("https://gw.example/api/items", &[]))
            .await
            .status,
        StatusCode::OK
    );
    // Proxy headers are not trusted unless configured.
    let forwarded = [("forwarded", "proto=https;host=other.example")];
    assert_eq!(
        call(
            &mut app,
            with("https://other.example/api/items", &forwarded)
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    // Trusted: the value the (one) proxy appended, not the client's.
    let guard = issuer
        .guard()
        .trust_proxy_headers(ProxyHeaders::Forwarded, 1)
        .build()
        .unwrap();
    let mut app = items_app(&guard);
    let spoofed = [(
        "forwarded",
        "host=evil.example, proto=http;host=\"other.example:8080\"",
    )];
    assert_eq!(
        call(&mut app, with("http://other.example:8080/items", &spoofed))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&mut app, with("https://evil.example/items", &spoofed))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let guard = issuer
        .guard()
        .trust_proxy_headers(ProxyHeaders::XForwarded, 1)
        .build()
        .unwrap();
    let mut app = items_app(&guard);
    let xf = [
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "other.example"),
    ];
    assert_eq!(
        call(&mut app, with("http://other.example/items", &xf))
            .await
            .status,
        StatusCode::OK
    );

    // A router nested under a prefix: the path the client sent, not the stripped one.
    let guard = issuer.guard().build().unwrap();
    let mut nested: Router = Router::new().nest(
        "/v1",
        Router::new()
            .route("/items", get(|| async { "ok" }))
            .route_layer(guard.layer()),
    );
    let proof = client
        .proof(
            "GET",
            "https://api.example/v1/items",
            Some(&token),
            None,
            NOW,
        )
        .unwrap();
    let r = request("GET", "/v1/items", &[&dpop], &[proof.as_bytes()]);
    assert_eq!(call(&mut nested, r).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_metadata_describes_the_resource_and_challenges_point_to_it() {
    let issuer = Issuer::start().await;
    let guard = issuer
        .guard()
        .external_url("https://api.example/v1")
        .require_scope("read")
        .dpop_algorithms([Algorithm::ES256, Algorithm::EdDSA])
        .advertise_metadata(true)
        .build()
        .unwrap();
    let mut app = items_app(&guard);
    let a = call(
        &mut app,
        request("GET", "/.well-known/oauth-protected-resource/v1", &[], &[]),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({
            "resource": "https://api.example/v1",
            "authorization_servers": ["https://as.example"],
            "scopes_supported": ["read"],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
            "dpop_bound_access_tokens_required": false,
        })
    );
    let a = call(&mut app, request("GET", "/items", &[], &[])).await;
    let url = "https://api.example/.well-known/oauth-protected-resource/v1";
    assert_eq!(
        a.challenges,
        [
            format!(r#"Bearer resource_metadata="{url}""#),
            format!(r#"DPoP algs="ES256 EdDSA", resource_metadata="{url}""#),
        ]
    );
    let meta = guard
        .metadata()
        .jwks_uri("https://api.example/jwks")
        .resource_name("Items");
    assert_eq!(meta.url(), url);
    assert!(
        meta.to_json()
            .contains(r#""jwks_uri":"https://api.example/jwks""#)
    );
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_jwks_again_once_per_interval() {
    let issuer = Issuer::start().await;
    // One fetch attempt per second at most (the default is 30 s).
    let config = token_jwks::FetcherConfig::builder()
        .refetch_interval(Duration::from_secs(1))
        .build();
    let guard = issuer
        .guard()
        .jwks_url_with(issuer.jwks_url(), config)
        .build()
        .unwrap();
    let mut app = items_app(&guard);
    let bearer = format!("Bearer {}", issuer.token(None, &["read"], "f"));
    assert_eq!(
        call(&mut app, request("GET", "/items", &[&bearer], &[]))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(issuer.hits.load(Ordering::SeqCst), 1);
    // The issuer rotates to a new key: the first token with its kid after the interval makes
    // the guard fetch again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let next = signer();
    issuer
        .publisher
        .update(
            2,
            &[
                issuer.signer.public_jwk().clone(),
                next.public_jwk().clone(),
            ],
        )
        .unwrap();
    let rotated = format!("Bearer {}", token_by(&next, None, &["read"], "f"));
    assert_eq!(
        call(&mut app, request("GET", "/items", &[&rotated], &[]))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(issuer.hits.load(Ordering::SeqCst), 2);
    // Forged kids right after do not make it fetch again (one attempt per interval).
    let forged = format!("Bearer {}", token_by(&signer(), None, &["read"], "f"));
    for _ in 0..5 {
        assert_eq!(
            call(&mut app, request("GET", "/items", &[&forged], &[]))
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(issuer.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_listed_sid_is_refused_until_its_listed_until() {
    let issuer = Issuer::start().await;
    let clock = Arc::new(ManualClock::new(NOW));
    let revoked = Arc::new(RevokedSids::new());
    let guard = issuer
        .guard()
        .clock(clock.clone())
        .revocations(revoked.clone())
        .build()
        .unwrap();
    let mut app = items_app(&guard);
    let client = client();
    let token = issuer.token(Some(&client), &["read"], "family-9");
    let bearer = format!("Bearer {}", issuer.token(None, &["read"], "family-9"));
    revoked.insert("family-9", NOW + 60, NOW);

    let a = call(
        &mut app,
        dpop_request(&token, &client, "GET", ITEMS, Some(&token)),
    )
    .await;
    assert_eq!(
        (a.status, a.challenges),
        (
            StatusCode::UNAUTHORIZED,
            vec![
                "Bearer".to_owned(),
                dpop_challenge("invalid_token", "access token revoked")
            ]
        )
    );
    let a = call(&mut app, request("GET", "/items", &[&bearer], &[])).await;
    assert_eq!(
        a.challenges,
        [
            bearer_challenge("invalid_token", "access token revoked"),
            format!("DPoP {ALGS}")
        ]
    );
    let other = format!("Bearer {}", issuer.token(None, &["read"], "family-10"));
    assert_eq!(
        call(&mut app, request("GET", "/items", &[&other], &[]))
            .await
            .status,
        StatusCode::OK
    );
    // Past `listed_until` (the token itself is still valid): served again.
    clock.set(NOW + 61);
    assert_eq!(
        call(&mut app, request("GET", "/items", &[&bearer], &[]))
            .await
            .status,
        StatusCode::OK
    );

    // The same through `Guard::verify`, for other frameworks.
    revoked.insert("family-9", NOW + 600, NOW + 61);
    let (parts, ()) = request("GET", "/items", &[&bearer], &[])
        .map(|_| ())
        .into_parts();
    let rejection = guard.verify(&parts).await.unwrap_err();
    assert_eq!(rejection.kind(), RejectionKind::Revoked);
    assert_eq!(
        rejection.to_response::<String>().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_proof_accepted_by_one_instance_is_a_replay_at_another_sharing_redis() {
    let redis = token_testkit::RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let issuer = Issuer::start().await;
    let mut apps = Vec::new();
    for _ in 0..2 {
        let cache = token_guard::redis::replay_cache(&redis.url())
            .await
            .unwrap();
        apps.push(items_app(
            &issuer.guard().replay_cache(cache).build().unwrap(),
        ));
    }
    let client = client();
    let token = issuer.token(Some(&client), &["read"], "f");
    let proof = client.proof("GET", ITEMS, Some(&token), None, NOW).unwrap();
    let req = || {
        request(
            "GET",
            "/items",
            &[&format!("DPoP {token}")],
            &[proof.as_bytes()],
        )
    };
    assert_eq!(call(&mut apps[0], req()).await.status, StatusCode::OK);
    let a = call(&mut apps[1], req()).await;
    assert_eq!(
        a.challenges[1],
        dpop_challenge("invalid_dpop_proof", "DPoP proof replayed")
    );
}

// ---- the revocation watcher against a local WatchRevocations server ------------------------------

type EventStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<RevocationEvent, tonic::Status>> + Send>>;

/// [`Fake`] as a tonic service.
struct Service(Arc<Fake>);

/// A token service that answers only `WatchRevocations`: each stream sends the scripted events
/// of its turn, then ends with UNAVAILABLE (or stays open for the last turn).
#[derive(Default)]
struct Fake {
    /// The events each successive stream sends.
    turns: Mutex<VecDeque<Vec<RevocationEvent>>>,
    /// The cursor and `authorization` of each call.
    calls: Mutex<Vec<(String, String)>>,
}

fn event(sid: &str, listed_until: i64, cursor: &str) -> RevocationEvent {
    RevocationEvent {
        sid: sid.into(),
        listed_until,
        cursor: cursor.into(),
    }
}

#[tonic::async_trait]
impl TokenService for Service {
    async fn generate_tokens(
        &self,
        _: tonic::Request<token_proto::GenerateTokensRequest>,
    ) -> Result<tonic::Response<token_proto::TokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(""))
    }
    async fn refresh_tokens(
        &self,
        _: tonic::Request<token_proto::RefreshTokensRequest>,
    ) -> Result<tonic::Response<token_proto::TokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(""))
    }
    async fn revoke_token(
        &self,
        _: tonic::Request<token_proto::RevokeTokenRequest>,
    ) -> Result<tonic::Response<token_proto::RevokeTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(""))
    }
    async fn get_jwks(
        &self,
        _: tonic::Request<token_proto::GetJwksRequest>,
    ) -> Result<tonic::Response<token_proto::GetJwksResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(""))
    }
    async fn validate_d_po_p(
        &self,
        _: tonic::Request<token_proto::ValidateDPoPRequest>,
    ) -> Result<tonic::Response<token_proto::ValidateDPoPResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(""))
    }
    async fn introspect_token(
        &self,
        _: tonic::Request<token_proto::IntrospectTokenRequest>,
    ) -> Result<tonic::Response<token_proto::IntrospectTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(""))
    }

    type WatchRevocationsStream = EventStream;

    async fn watch_revocations(
        &self,
        request: tonic::Request<WatchRevocationsRequest>,
    ) -> Result<tonic::Response<EventStream>, tonic::Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        self.0
            .calls
            .lock()
            .unwrap()
            .push((request.into_inner().cursor, authorization.clone()));
        if authorization != "Bearer watcher-token" {
            return Err(tonic::Status::unauthenticated("no"));
        }
        let (events, last) = {
            let mut turns = self.0.turns.lock().unwrap();
            let events = turns.pop_front().unwrap_or_default();
            (events, turns.is_empty())
        };
        let items = events.into_iter().map(Ok);
        let stream = futures_util::stream::iter(items);
        Ok(tonic::Response::new(if last {
            Box::pin(futures_util::StreamExt::chain(
                stream,
                futures_util::stream::pending(),
            ))
        } else {
            Box::pin(futures_util::StreamExt::chain(
                stream,
                futures_util::stream::iter([Err(tonic::Status::unavailable("going away"))]),
            ))
        }))
    }
}

/// Serves `fake` on 127.0.0.1; the URL.
async fn serve(fake: Arc<Fake>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TokenServiceServer::new(Service(fake)))
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (format!("http://{addr}"), task)
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not within 5 s");
}

#[tokio::test]
async fn the_watcher_keeps_the_listed_sids_and_resumes_with_the_last_cursor() {
    let fake = Arc::new(Fake::default());
    fake.turns.lock().unwrap().extend([
        vec![event("s1", NOW + 600, "c1"), event("s2", NOW + 600, "c2")],
        vec![event("s3", NOW + 600, "c3")],
    ]);
    let (url, task) = serve(fake.clone()).await;
    let watcher = RevocationWatcher::builder(&url, "watcher-token")
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .clock(Arc::new(ManualClock::new(NOW)))
        .spawn()
        .unwrap();
    eventually("three sids listed", || watcher.is_listed("s3", NOW)).await;
    assert!(watcher.is_listed("s1", NOW) && watcher.is_listed("s2", NOW));
    assert!(!watcher.is_listed("s1", NOW + 600));
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            (String::new(), "Bearer watcher-token".to_owned()),
            ("c2".to_owned(), "Bearer watcher-token".to_owned()),
        ]
    );
    let status = watcher.status();
    assert!(status.connected && !status.stale, "{status:?}");
    assert_eq!((status.events, status.reconnects), (3, 1));

    // The guard refuses the listed sids.
    let issuer = Issuer::start().await;
    let guard = issuer
        .guard()
        .revocations(Arc::new(watcher))
        .build()
        .unwrap();
    let mut app = items_app(&guard);
    let bearer = format!("Bearer {}", issuer.token(None, &["read"], "s2"));
    let a = call(&mut app, request("GET", "/items", &[&bearer], &[])).await;
    assert_eq!(
        a.challenges[0],
        bearer_challenge("invalid_token", "access token revoked")
    );
    task.abort();
}

#[tokio::test]
async fn a_refused_caller_token_is_reported_and_retried() {
    let fake = Arc::new(Fake::default());
    let (url, task) = serve(fake.clone()).await;
    let watcher = RevocationWatcher::builder(&url, "wrong")
        .backoff(Duration::from_millis(10), Duration::from_millis(20))
        .spawn()
        .unwrap();
    eventually("two attempts", || fake.calls.lock().unwrap().len() >= 2).await;
    let status = watcher.status();
    assert!(!status.connected);
    assert_eq!(status.last_error.as_deref(), Some("Unauthenticated: no"));
    task.abort();
}

#[tokio::test]
async fn a_stream_down_past_the_staleness_limit_follows_the_stated_policy() {
    // Nothing listens there.
    let port = token_testkit::port::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let issuer = Issuer::start().await;
    let bearer = format!("Bearer {}", issuer.token(None, &["read"], "s"));
    let watch = |policy| {
        RevocationWatcher::builder(&url, "watcher-token")
            .staleness(Duration::from_millis(200))
            .stale_policy(policy)
            .backoff(Duration::from_millis(20), Duration::from_millis(50))
            .spawn()
            .unwrap()
    };

    // Fail closed: 503 without a challenge once the limit has passed.
    let closed = watch(StalePolicy::FailClosed);
    let guard = issuer
        .guard()
        .revocations(Arc::new(closed.clone()))
        .build()
        .unwrap();
    let mut app = items_app(&guard);
    assert_eq!(
        call(&mut app, request("GET", "/items", &[&bearer], &[]))
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = call(&mut app, request("GET", "/items", &[&bearer], &[])).await;
    assert_eq!(
        (a.status, a.challenges.len()),
        (StatusCode::SERVICE_UNAVAILABLE, 0)
    );
    assert!(closed.status().stale);

    // The default: keep serving on the last list.
    let open = watch(StalePolicy::ServeLastList);
    let guard = issuer
        .guard()
        .revocations(Arc::new(open.clone()))
        .build()
        .unwrap();
    let mut app = items_app(&guard);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        call(&mut app, request("GET", "/items", &[&bearer], &[]))
            .await
            .status,
        StatusCode::OK
    );
    assert!(open.status().stale);
}

#[test]
fn a_watcher_needs_a_runtime_and_a_valid_endpoint() {
    assert!(matches!(
        RevocationWatcher::builder("http://127.0.0.1:1", "t").spawn(),
        Err(token_guard::Error::NoRuntime)
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    assert!(matches!(
        RevocationWatcher::builder("ftp://x", "t").spawn(),
        Err(token_guard::Error::InvalidEndpoint(_))
    ));
    assert!(matches!(
        RevocationWatcher::builder("http://x:1", "bad\ntoken").spawn(),
        Err(token_guard::Error::InvalidCallerToken)
    ));
}

#[test]
fn a_guard_needs_keys_and_a_valid_external_url() {
    let keys = Arc::new(token_dpop::token_jwt::KeySet::new());
    assert!(matches!(
        Guard::builder(ISSUER, AUDIENCE)
            .external_url("https://a")
            .build(),
        Err(token_guard::Error::MissingKeys)
    ));
    assert!(matches!(
        Guard::builder(ISSUER, AUDIENCE).keys(keys.clone()).build(),
        Err(token_guard::Error::MissingExternalUrl)
    ));
    assert!(matches!(
        Guard::builder(ISSUER, AUDIENCE)
            .keys(keys)
            .external_url("api.example")
            .build(),
        Err(token_guard::Error::InvalidExternalUrl(_))
    ));
    assert!(matches!(
        Guard::builder(ISSUER, AUDIENCE)
            .jwks_url("not a url")
            .external_url("https://a")
            .build(),
        Err(token_guard::Error::Jwks(_))
    ));
}

/// The layer wraps a tonic service too: a compile-time check of the bounds a tonic server
/// puts on its services.
#[allow(dead_code, reason = "compile-time check")]
fn the_layer_wraps_a_tonic_service(guard: &Guard) {
    fn grpc<S>(_: S)
    where
        S: tower_service::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
            > + Clone
            + Send
            + 'static,
        S::Future: Send,
    {
    }
    let server = TokenServiceServer::new(Service(Arc::new(Fake::default())));
    grpc(tower_layer::Layer::layer(&guard.layer(), server));
}
