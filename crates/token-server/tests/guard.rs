//! token-guard's example resource server (`crates/token-guard/examples/resource_server.rs`,
//! compiled into this test) against two `token-service` binaries sharing a Redis, a signing key
//! and a pepper, over real sockets:
//!
//! - a DPoP-bound token from instance A with a fresh proof → 200; a replayed proof, a proof for
//!   another method or URI, without or with a wrong `ath`, by another key → 401 with the
//!   challenge naming the check; the bound token as a Bearer token → 401;
//! - with nonces required: 401 `use_dpop_nonce` with a `DPoP-Nonce`, then 200 with it;
//! - `RevokeToken` on instance B → the example, watching A's `WatchRevocations`, refuses the
//!   access token within one second.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed expectation should panic"
)]

mod common;

#[allow(
    dead_code,
    reason = "the example's `main` and environment reading, which this test does not call"
)]
#[path = "../../token-guard/examples/resource_server.rs"]
mod example;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use token_dpop::ProofBuilder;
use token_proto::revoke_token_request::Target;
use token_testkit::RedisServer;
use token_testkit::port::free_port;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use common::{
    CALLER, Calls as _, ISSUER, KEK, PEPPER, binary_command, caller_digest, connect_when_up, dpop,
    generate, http_get, now, proof_builder, revocation, signing_key_file,
};

const AUDIENCE: &str = "https://api.example";
/// The URL clients reach the example at (its `EXTERNAL_URL`), which proofs name.
const ITEMS: &str = "https://api.example/items";

/// A `token-service` process on Redis, with the shared key and pepper.
struct Instance {
    child: tokio::process::Child,
    port: u16,
    admin: u16,
}

async fn instance(redis: &str, key: &std::path::Path) -> Instance {
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let child = binary_command(port, admin)
        .env("REDIS_URL", redis)
        .env("REFRESH_TOKEN_PEPPER", PEPPER)
        .env("KEY_ENCRYPTION_KEY", KEK)
        .env("SIGNING_KEY_FILE", key)
        .env("ISSUER", ISSUER)
        .env("CALLER_TOKEN_SHA256", caller_digest(CALLER))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Instance { child, port, admin }
}

/// The example serving on 127.0.0.1 with `settings`; its address.
async fn resource_server(settings: example::Settings) -> SocketAddr {
    let app = example::app(&settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn settings(a: &Instance) -> example::Settings {
    example::Settings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks_url: format!("http://127.0.0.1:{}/.well-known/jwks.json", a.admin),
        external_url: "https://api.example".into(),
        revocations: None,
        nonce_key: None,
    }
}

/// An HTTP/1.1 answer: status, headers (names lowercase), body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `DPoP` challenge.
    fn dpop_challenge(&self) -> &str {
        self.all("www-authenticate")
            .into_iter()
            .find(|c| c.starts_with("DPoP"))
            .unwrap_or_else(|| panic!("no DPoP challenge: {self:?}"))
    }
}

/// `method path` at `addr` with these header lines.
async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// `GET /items` with `DPoP <token>` and `proof`.
async fn get_items(addr: SocketAddr, token: &str, proof: &str) -> Reply {
    let authorization = format!("DPoP {token}");
    send(
        addr,
        "GET",
        "/items",
        &[("Authorization", &authorization), ("DPoP", proof)],
    )
    .await
}

fn fresh(client: &ProofBuilder, method: &str, uri: &str, ath: Option<&str>) -> String {
    client.proof(method, uri, ath, None, now()).unwrap()
}

fn proof_error(description: &str) -> String {
    format!(
        r#"DPoP algs="ES256 ES384 EdDSA RS256 PS256", error="invalid_dpop_proof", error_description="{description}""#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_resource_server_checks_every_request_and_hears_revocations_at_once() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let key = signing_key_file();
    let a = instance(&redis.url(), key.path()).await;
    let b = instance(&redis.url(), key.path()).await;
    let mut client_a = connect_when_up(a.port, "instance A").await;
    let mut client_b = connect_when_up(b.port, "instance B").await;

    let mut with_watcher = settings(&a);
    with_watcher.revocations = Some((format!("http://127.0.0.1:{}", a.port), CALLER.into()));
    let rs = resource_server(with_watcher).await;

    // A DPoP-bound token pair from instance A for the example's audience.
    let client = proof_builder();
    let mut req = generate("alice");
    req.dpop = Some(dpop(&client, None));
    let tokens = client_a.generate(req).await.unwrap();
    assert_eq!(tokens.token_type, "DPoP");
    let token = tokens.access_token.as_str();

    // A fresh proof: 200, the handler sees the typed claims.
    let ok = get_items(rs, token, &fresh(&client, "GET", ITEMS, Some(token))).await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (200, "items of alice (DPoP, scope read write)"),
        "{ok:?}"
    );
    // POST needs `write` too, which the token has.
    let proof = fresh(&client, "POST", ITEMS, Some(token));
    let authorization = format!("DPoP {token}");
    let created = send(
        rs,
        "POST",
        "/items",
        &[("Authorization", &authorization), ("DPoP", &proof)],
    )
    .await;
    assert_eq!(
        (created.status, created.body.as_str()),
        (200, "item created for alice")
    );

    // Refusals, each with the challenge naming its check.
    let replayed = fresh(&client, "GET", ITEMS, Some(token));
    assert_eq!(get_items(rs, token, &replayed).await.status, 200);
    let other = proof_builder();
    let cases = [
        ("a replayed proof", replayed.clone(), proof_error("DPoP proof replayed")),
        (
            "a proof for POST",
            fresh(&client, "POST", ITEMS, Some(token)),
            proof_error("DPoP proof htm does not match the request method"),
        ),
        (
            "a proof for another URI",
            fresh(&client, "GET", "https://api.example/other", Some(token)),
            proof_error("DPoP proof htu does not match the request URI"),
        ),
        (
            "a proof without ath",
            fresh(&client, "GET", ITEMS, None),
            proof_error("DPoP proof ath missing"),
        ),
        (
            "a proof for another token",
            fresh(&client, "GET", ITEMS, Some("another-token")),
            proof_error("DPoP proof ath does not match the access token"),
        ),
        (
            "a proof by another key",
            fresh(&other, "GET", ITEMS, Some(token)),
            r#"DPoP algs="ES256 ES384 EdDSA RS256 PS256", error="invalid_token", error_description="DPoP key does not match the bound key""#.to_owned(),
        ),
    ];
    for (what, proof, challenge) in cases {
        let r = get_items(rs, token, &proof).await;
        assert_eq!(
            (r.status, r.dpop_challenge()),
            (401, challenge.as_str()),
            "{what}"
        );
    }
    let bearer = format!("Bearer {token}");
    let r = send(rs, "GET", "/items", &[("Authorization", &bearer)]).await;
    assert_eq!(
        (r.status, r.all("www-authenticate")[0]),
        (
            401,
            r#"Bearer error="invalid_token", error_description="key-bound access token presented as a Bearer token""#
        )
    );
    let meta = send(rs, "GET", "/.well-known/oauth-protected-resource", &[]).await;
    assert!(
        meta.status == 200
            && meta
                .body
                .contains(r#""authorization_servers":["https://issuer.e2e.example"]"#),
        "{meta:?}"
    );

    // Nonces required (a second instance of the example): a nonce to retry with, then 200.
    let mut with_nonces = settings(&a);
    with_nonces.nonce_key = Some([7; 32]);
    let rs_nonce = resource_server(with_nonces).await;
    let r = get_items(rs_nonce, token, &fresh(&client, "GET", ITEMS, Some(token))).await;
    assert_eq!(r.status, 401);
    assert!(
        r.dpop_challenge().contains(r#"error="use_dpop_nonce""#),
        "{r:?}"
    );
    let nonce = r.all("dpop-nonce")[0].to_owned();
    let proof = client
        .proof("GET", ITEMS, Some(token), Some(&nonce), now())
        .unwrap();
    let r = get_items(rs_nonce, token, &proof).await;
    assert_eq!(r.status, 200, "{r:?}");

    // The watcher's stream is open at A before the revocation.
    let watching = || async {
        http_get(("127.0.0.1", a.admin), "/metrics", "")
            .await
            .contains("token_service_revocation_watchers 1")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !watching().await {
        assert!(
            Instant::now() < deadline,
            "the example's watcher never connected to A"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Revoked at B: the example, watching A, refuses the token within a second.
    let revoke = revocation(
        "web",
        Target::RefreshToken(tokens.refresh_token.clone()),
        "logout",
    );
    assert_eq!(client_b.revoke(revoke).await.unwrap().families_revoked, 1);
    let revoked_at = Instant::now();
    loop {
        let r = get_items(rs, token, &fresh(&client, "GET", ITEMS, Some(token))).await;
        if r.status == 401 {
            assert_eq!(
                r.dpop_challenge(),
                r#"DPoP algs="ES256 ES384 EdDSA RS256 PS256", error="invalid_token", error_description="access token revoked""#
            );
            break;
        }
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "the example still accepts the token a second after its revocation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    drop((a.child, b.child));
}
