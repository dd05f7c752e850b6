//! End-to-end tests through a real tonic client against the server on ephemeral ports, with the
//! in-memory store: every RPC's success path and error statuses, DPoP-bound generate, refresh
//! and validate, verification against the published JWKS, reuse detection, introspection of a
//! revoked family, caller authentication, the admin HTTP port, gRPC health and reflection (v1
//! and v1alpha), and the `token-service` binary started as a process (`cargo run` with no
//! configuration; bad configuration).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::time::Duration;

use token_dpop::ProofBuilder;
use token_jwt::{Algorithm, JwkSet, KeySet, Policy, PrivateKey, all_providers};
use token_proto::token_service_client::TokenServiceClient;
use token_proto::{
    GenerateTokensRequest, IntrospectTokenRequest, RefreshTokensRequest, RevokeTokenRequest,
    TokenResponse, ValidateDPoPRequest, revoke_token_request::Target,
};
use token_testkit::RedisServer;
use token_testkit::moto::{self, Moto};
use token_testkit::port::free_port;

mod common;
use common::{
    CALLER, Calls, Harness, ISSUER, binary, binary_command, caller_digest, certificates, config,
    connect_when_up, dpop, dpop_with_nonce, generate, harness, http_get, now, oauth_error,
    on_redis, post, proof_builder, refresh_as, refusal, revocation, signing_key_file, sigterm,
    temp_file, validate_get,
};
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;

async fn verifier(client: &mut TokenServiceClient<Channel>) -> KeySet {
    // GetJWKS is public: no credentials.
    let jwks = client.jwks().await.unwrap();
    let set = JwkSet::from_json(jwks.as_bytes()).unwrap();
    KeySet::from_jwks(&set, &all_providers()[0]).unwrap()
}

/// A proof by `key` without a nonce is refused with a challenge; the nonce it carries.
async fn nonce_for(client: &mut TokenServiceClient<Channel>, key: &ProofBuilder) -> String {
    let mut req = generate("probe");
    req.dpop = Some(dpop(key, None));
    let e = client.generate(req).await.unwrap_err();
    assert_eq!(refusal(&e), (Code::Unauthenticated, "use_dpop_nonce"));
    e.metadata()
        .get("dpop-nonce")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// GenerateTokens for `subject` with a proof by `key` carrying `nonce`: DPoP-bound tokens.
async fn generate_bound(
    h: &mut Harness,
    subject: &str,
    key: &ProofBuilder,
    nonce: &str,
) -> TokenResponse {
    let req = GenerateTokensRequest {
        dpop: Some(dpop_with_nonce(key, nonce)),
        ..generate(subject)
    };
    let tokens = h.generate_ok(req).await;
    assert_eq!(tokens.token_type, "DPoP");
    tokens
}

#[tokio::test]
async fn generate_verify_refresh_reuse_and_introspect() {
    full_flow(&[]).await;
}

#[tokio::test]
async fn generate_verify_refresh_reuse_and_introspect_on_redis() {
    let redis = RedisServer::start().expect("redis-server");
    let url = redis.url();
    full_flow(&on_redis(&url, &[])).await;
}

const NONCE_KEY: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

async fn full_flow(extra: &[(&str, &str)]) {
    let mut h = harness(extra).await;
    let keys = verifier(&mut h.client).await;
    let policy = Policy::builder()
        .issuer(ISSUER)
        .audience("https://api.example")
        .build();

    let first = h.generate_ok(generate("alice")).await;
    assert_eq!(first.token_type, "Bearer");
    assert_eq!(first.expires_in, 900);
    assert!(first.refresh_token.len() > 40);
    let claims = policy
        .verify(&first.access_token, &keys, now())
        .unwrap()
        .into_claims();
    assert_eq!(claims.sub.as_deref(), Some("alice"));
    assert_eq!(claims.client_id.as_deref(), Some("web"));
    assert_eq!(claims.scope.as_deref(), Some("read write"));
    assert_eq!(claims.sid.as_deref(), Some(first.family_id.as_str()));
    assert!(claims.cnf.is_none());

    // Rotate, down-scoped.
    let mut req = RefreshTokensRequest {
        scopes: vec!["read".into()],
        ..refresh_as(&first.refresh_token, "web")
    };
    let second = h.client.refresh(req.clone()).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.family_id, first.family_id);
    assert_eq!(second.scopes, vec!["read".to_owned()]);
    let c2 = policy
        .verify(&second.access_token, &keys, now())
        .unwrap()
        .into_claims();
    assert_eq!(c2.scope.as_deref(), Some("read"));

    // Asking for more than granted.
    req.refresh_token = second.refresh_token.clone();
    req.scopes = vec!["admin".into()];
    let e = h.client.refresh(req.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(oauth_error(&e), "invalid_scope");

    // Introspection: active.
    let intro = h.client.introspect(&second.access_token).await.unwrap();
    assert!(intro.active);
    assert!(intro.claims_json.contains("\"sub\":\"alice\""));

    // Reuse of the first token revokes the family: the current token fails too.
    req.scopes.clear();
    req.refresh_token = first.refresh_token.clone();
    let e = h.client.refresh(req.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(oauth_error(&e), "invalid_grant");
    assert!(!e.message().contains(&first.refresh_token));
    req.refresh_token = second.refresh_token.clone();
    let e = h.client.refresh(req).await.unwrap_err();
    assert_eq!(oauth_error(&e), "invalid_grant");

    // And the family's access tokens are now inactive.
    let intro = h.client.introspect(&second.access_token).await.unwrap();
    assert!(!intro.active);
    assert!(intro.claims_json.is_empty());
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn dpop_bound_generate_refresh_and_validate() {
    let mut h = harness(&[]).await;
    let keys = verifier(&mut h.client).await;
    let client_key = proof_builder();

    let mut req = generate("bob");
    req.dpop = Some(dpop(&client_key, None));
    let tokens = h.generate_ok(req).await;
    assert_eq!(tokens.token_type, "DPoP");
    let claims = Policy::builder()
        .build()
        .verify(&tokens.access_token, &keys, now())
        .unwrap()
        .into_claims();
    assert_eq!(claims.cnf.unwrap().jkt.unwrap(), client_key.jkt());

    // ValidateDPoP with the access token: ath and cnf.jkt checked.
    let orders = "https://api.example/orders?x=1";
    let validate = validate_get(&client_key, orders, &tokens.access_token, None);
    let ok = h.client.validate(validate.clone()).await.unwrap();
    assert!(ok.valid, "{ok:?}");
    assert_eq!(ok.jkt, client_key.jkt());
    // The same proof again is a replay: an answer, not an RPC error.
    let replay = h.client.validate(validate).await.unwrap();
    assert!(!replay.valid);
    assert_eq!(replay.error, "invalid_dpop_proof");

    // A proof by another key for the bound token.
    let other = proof_builder();
    let bad = validate_get(
        &other,
        "https://api.example/orders",
        &tokens.access_token,
        None,
    );
    let r = h.client.validate(bad).await.unwrap();
    assert!(!r.valid);
    assert_eq!(r.error, "invalid_dpop_proof");

    // A garbage access token.
    let garbage = validate_get(&client_key, "https://api.example/x", "not-a-token", None);
    let r = h.client.validate(garbage).await.unwrap();
    assert_eq!(r.error, "invalid_token");

    // Refresh without a proof, or with another key: invalid_grant, family still usable.
    let mut refresh = refresh_as(&tokens.refresh_token, "web");
    let e = h.client.refresh(refresh.clone()).await.unwrap_err();
    assert_eq!(refusal(&e), (Code::Unauthenticated, "invalid_grant"));
    refresh.dpop = Some(dpop(&other, None));
    let e = h.client.refresh(refresh.clone()).await.unwrap_err();
    assert_eq!(oauth_error(&e), "invalid_grant");
    refresh.dpop = Some(dpop(&client_key, None));
    let rotated = h.client.refresh(refresh).await.unwrap();
    assert_eq!(rotated.token_type, "DPoP");

    // A malformed proof on Generate: UNAUTHENTICATED invalid_dpop_proof.
    let mut req = generate("bob");
    req.dpop = Some(post("a.b.c".into()));
    let e = h.client.generate(req).await.unwrap_err();
    assert_eq!(refusal(&e), (Code::Unauthenticated, "invalid_dpop_proof"));
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn nonce_challenge_carries_a_fresh_nonce() {
    let mut h = harness(&[
        ("DPOP_NONCE_REQUIRED", "true"),
        ("DPOP_NONCE_KEY", &"7".repeat(64)),
    ])
    .await;
    let key = proof_builder();
    let nonce = nonce_for(&mut h.client, &key).await;
    generate_bound(&mut h, "carol", &key, &nonce).await;
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn revocation_by_token_family_and_subject() {
    let mut h = harness(&[]).await;
    let a = h.generate_ok(generate("dave")).await;
    let b = h.generate_ok(generate("dave")).await;
    let c = h.generate_ok(generate("dave")).await;
    let other = h.generate_ok(generate("erin")).await;

    // By token, by family, then sign out everywhere: only c is still active by then.
    for (target, reason) in [
        (Target::RefreshToken(a.refresh_token.clone()), "logout"),
        (Target::FamilyId(b.family_id.clone()), "admin"),
        (Target::Subject("dave".into()), "everywhere"),
    ] {
        let r = h.client.revoke(revocation("web", target, reason)).await;
        assert_eq!(r.unwrap().families_revoked, 1, "{reason}");
    }
    for t in [&a, &b, &c] {
        let e = h
            .client
            .refresh(refresh_as(&t.refresh_token, "web"))
            .await
            .unwrap_err();
        assert_eq!(oauth_error(&e), "invalid_grant");
        let intro = h.client.introspect(&t.access_token).await.unwrap();
        assert!(!intro.active);
    }
    // Erin is untouched.
    let intro = h.client.introspect(&other.access_token).await.unwrap();
    assert!(intro.active);
    // Malformed targets.
    let e = h
        .client
        .revoke(RevokeTokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refusal(&e), (Code::InvalidArgument, "invalid_request"));
    let nope = revocation("web", Target::FamilyId("nope".into()), "");
    let e = h.client.revoke(nope).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_requests_are_invalid_argument() {
    let mut h = harness(&[]).await;
    let mut cases: Vec<(GenerateTokensRequest, &str)> = vec![
        (
            GenerateTokensRequest {
                client_id: "c".into(),
                ..Default::default()
            },
            "no subject",
        ),
        (
            GenerateTokensRequest {
                subject: "s".into(),
                ..Default::default()
            },
            "no client",
        ),
        (
            GenerateTokensRequest {
                subject: "a\u{0}b".into(),
                ..generate("s")
            },
            "NUL in subject",
        ),
        (
            GenerateTokensRequest {
                subject: "x".repeat(5000),
                ..generate("s")
            },
            "huge subject",
        ),
    ];
    for (claims, what) in [
        (r#"{"iss":"evil"}"#, "iss override"),
        (r#"{"exp":1}"#, "exp override"),
        (r#"{"cnf":{"jkt":"x"}}"#, "cnf override"),
        (r#"{"sid":"x"}"#, "sid override"),
        ("[1]", "not an object"),
        (r#"{"a":1,"a":2}"#, "duplicate"),
    ] {
        let req = GenerateTokensRequest {
            additional_claims_json: claims.into(),
            ..generate("s")
        };
        cases.push((req, what));
    }
    for (req, what) in cases {
        let e = h.client.generate(req).await.unwrap_err();
        assert_eq!(
            refusal(&e),
            (Code::InvalidArgument, "invalid_request"),
            "{what}"
        );
    }
    // Custom claims that are allowed end up in the token; the TTL is capped by the default.
    let mut req = generate("s");
    req.additional_claims_json = r#"{"tenant":"t1","roles":["a"]}"#.into();
    req.access_token_ttl_seconds = 100_000;
    let ok = h.generate_ok(req).await;
    assert_eq!(ok.expires_in, 900);
    let keys = verifier(&mut h.client).await;
    let claims = Policy::default()
        .verify(&ok.access_token, &keys, now())
        .unwrap()
        .into_claims();
    assert_eq!(claims.custom.get("tenant").unwrap(), "t1");
    assert_eq!(claims.exp.unwrap() - claims.iat.unwrap(), 900);
    let garbage = refresh_as("rt_garbage", "web");
    let e = h.client.refresh(garbage).await.unwrap_err();
    assert_eq!(refusal(&e), (Code::Unauthenticated, "invalid_grant"));
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn callers_without_valid_credentials_are_refused() {
    let mut h = harness(&[]).await;
    let e = h
        .client
        .generate_tokens(Request::new(generate("x")))
        .await
        .unwrap_err();
    assert_eq!(refusal(&e), (Code::Unauthenticated, "invalid_client"));
    let mut wrong = Request::new(generate("x"));
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer not-the-token".parse().unwrap());
    let e = h.client.generate_tokens(wrong).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    for rpc in ["introspect", "validate", "revoke", "refresh"] {
        let e = match rpc {
            "introspect" => h
                .client
                .introspect_token(IntrospectTokenRequest { token: "x".into() })
                .await
                .unwrap_err(),
            "validate" => h
                .client
                .validate_d_po_p(ValidateDPoPRequest::default())
                .await
                .unwrap_err(),
            "revoke" => h
                .client
                .revoke_token(RevokeTokenRequest::default())
                .await
                .unwrap_err(),
            _ => h
                .client
                .refresh_tokens(RefreshTokensRequest::default())
                .await
                .unwrap_err(),
        };
        assert_eq!(e.code(), Code::Unauthenticated, "{rpc}");
    }
    // GetJWKS stays public.
    assert!(h.client.jwks().await.is_ok());
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_endpoints() {
    let mut h = harness(&[]).await;
    h.generate_ok(generate("m")).await;
    let admin = h.server.admin_addr;
    assert!(
        http_get(admin, "/healthz", "")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let ready = http_get(admin, "/readyz", "").await;
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.contains("store: ok"),
        "{ready}"
    );
    let jwks = http_get(admin, "/.well-known/jwks.json", "").await;
    assert!(jwks.starts_with("HTTP/1.1 200"));
    let grpc_jwks = h.client.jwks().await.unwrap();
    assert!(
        jwks.ends_with(&grpc_jwks),
        "the HTTP body is the GetJWKS document"
    );
    assert!(
        jwks.to_ascii_lowercase()
            .contains("cache-control: public, max-age=")
    );
    let etag = jwks
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("etag:")
                .then(|| l[5..].trim().to_owned())
        })
        .unwrap();
    let again = http_get(
        admin,
        "/.well-known/jwks.json",
        &format!("If-None-Match: {etag}\r\n"),
    )
    .await;
    assert!(again.starts_with("HTTP/1.1 304"), "{again}");
    let metrics = http_get(admin, "/metrics", "").await;
    assert!(
        metrics.contains("token_service_tokens_issued_total"),
        "{metrics}"
    );
    assert!(metrics.contains("token_service_request_seconds"));
    h.server.shutdown().await.unwrap();
}

// ---- the binary, as a user runs it --------------------------------------------------------

#[tokio::test]
async fn the_binary_starts_with_no_configuration_and_stops_on_sigterm() {
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let child = binary_command(port, admin)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut client = connect_when_up(port, "the server came up").await;
    let jwks = client.jwks().await.unwrap();
    assert!(jwks.contains("\"kty\":\"EC\""));
    let e = client.generate_tokens(generate("x")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    sigterm(&child);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for (says, what) in [
        ("EPHEMERAL", "loud warning about the ephemeral key"),
        (
            "REDIS_URL is unset",
            "loud warning about the in-memory store",
        ),
        (
            "generated a caller",
            "the generated caller token is announced",
        ),
    ] {
        assert!(log.contains(says), "{what}");
    }
}

#[tokio::test]
async fn bad_configuration_stops_start_up_naming_the_variable() {
    for (var, value) in [
        ("PORT", "not-a-port"),
        ("REDIS_URL", "memcached://localhost:11211"),
        ("ACCESS_TOKEN_TTL", "0"),
        ("REFRESH_TOKEN_TTL", "0"),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_token-service"))
            .env_clear()
            .env(var, value)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}={value}: {err}");
    }
}

#[tokio::test]
async fn an_unusable_signing_key_file_stops_start_up_saying_how_to_make_one() {
    let err = start_up_error_with_key_file(
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    )
    .await;
    assert!(
        err.contains("SIGNING_KEY_FILE") && err.contains("openssl genpkey -algorithm EC"),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrapped_signing_key_is_unwrapped_only_with_the_kms_key_the_operator_names() {
    // The file names a KMS key; without WRAPPING_KMS_KEY_ID it is not trusted to choose.
    let err =
        start_up_error_with_key_file(r#"{"kms_key_id":"alias/attacker","ciphertext":"AAAA"}"#)
            .await;
    assert!(
        err.contains("WRAPPING_KMS_KEY_ID")
            && err.contains("required with a wrapped SIGNING_KEY_FILE"),
        "{err}"
    );
}

/// Starts the binary with a `SIGNING_KEY_FILE` holding `contents`; asserts start-up is refused
/// with exit code 2 and returns what it printed on stderr.
async fn start_up_error_with_key_file(contents: &str) -> String {
    let file = temp_file(contents.as_bytes());
    let out = binary()
        .env("SIGNING_KEY_FILE", file.path())
        .env("PORT", "0")
        .env("ADMIN_PORT", "0")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---- two instances sharing one Redis --------------------------------------------------------

#[tokio::test]
async fn two_instances_share_revocations_nonces_and_replay_state() {
    let redis = RedisServer::start().expect("redis-server");
    let url = redis.url();
    // Instances of one deployment share the signing key (a file here; KMS in production).
    let key_file = signing_key_file();
    let key_path = key_file.path().to_string_lossy().into_owned();
    let shared = on_redis(
        &url,
        &[
            ("SIGNING_KEY_FILE", key_path.as_str()),
            ("DPOP_NONCE_REQUIRED", "true"),
            ("DPOP_NONCE_KEY", NONCE_KEY),
        ],
    );
    let mut a = harness(&shared).await;
    let mut b = harness(&shared).await;

    // A nonce issued by A is accepted by B.
    let key = proof_builder();
    let nonce = nonce_for(&mut a.client, &key).await;
    let tokens = generate_bound(&mut b, "frank", &key, &nonce).await;

    // A proof's jti used at A is a replay at B.
    let api = "https://api.example/r";
    let validate = validate_get(&key, api, &tokens.access_token, Some(&nonce));
    let first = a.client.validate(validate.clone()).await.unwrap();
    assert!(first.valid, "{first:?}");
    let again = b.client.validate(validate).await.unwrap();
    assert!(!again.valid);
    assert_eq!(again.error, "invalid_dpop_proof");

    // A family revoked through A is refused by B at once.
    let family = Target::FamilyId(tokens.family_id.clone());
    let revoked = a.client.revoke(revocation("web", family, "test")).await;
    assert_eq!(revoked.unwrap().families_revoked, 1);
    let intro = b.client.introspect(&tokens.access_token).await.unwrap();
    assert!(!intro.active);
    let mut refresh = refresh_as(&tokens.refresh_token, "web");
    refresh.dpop = Some(dpop_with_nonce(&key, &nonce));
    let e = b.client.refresh(refresh).await.unwrap_err();
    assert_eq!(oauth_error(&e), "invalid_grant");
    a.server.shutdown().await.unwrap();
    b.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn redis_outage_fails_closed_with_unavailable_and_recovers() {
    let mut redis = RedisServer::start().expect("redis-server");
    let url = redis.url();
    let mut h = harness(&on_redis(&url, &[("REDIS_COMMAND_TIMEOUT_MS", "500")])).await;
    let ok = h.generate_ok(generate("gina")).await;
    let serving = ServingStatus::Serving as i32;
    assert_eq!(health_status(&h, READINESS).await, serving);

    redis.stop();
    // Readiness (the service's name) asks the store; liveness (the empty name) does not.
    assert_eq!(
        health_status(&h, READINESS).await,
        ServingStatus::NotServing as i32
    );
    assert_eq!(health_status(&h, "").await, serving);
    let started = std::time::Instant::now();
    let e = h.client.generate(generate("gina")).await.unwrap_err();
    assert_eq!(refusal(&e), (Code::Unavailable, "temporarily_unavailable"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed fast: {:?}",
        started.elapsed()
    );
    let e = h
        .client
        .refresh(refresh_as(&ok.refresh_token, "web"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);

    redis
        .restart()
        .expect("redis-server restarts on the same port");
    let mut recovered = false;
    for _ in 0..50 {
        if h.client.generate(generate("gina")).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "the server recovers without a restart");
    assert_eq!(health_status(&h, READINESS).await, serving);
    h.server.shutdown().await.unwrap();
}

/// The gRPC health service's name for readiness: `Check` of it asks the store and the signer.
const READINESS: &str = token_server::health::READINESS_SERVICE;

/// The status a gRPC health `Check` of `service` answers, without credentials.
async fn health_status(h: &Harness, service: &str) -> i32 {
    tonic_health::pb::health_client::HealthClient::new(h.channel().await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

// ---- mutual TLS and request limits --------------------------------------------------------------

#[tokio::test]
async fn mutual_tls_authenticates_callers_by_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    certificates(dir, &[("client", "extendedKeyUsage=clientAuth")]);
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let server = token_server::start(config(&[
        ("TLS_CERT_FILE", &cert),
        ("TLS_KEY_FILE", &key),
        ("TLS_CLIENT_CA_FILE", &ca),
    ]))
    .await
    .unwrap();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let url = format!("https://localhost:{}", server.grpc_addr.port());
    let tls = tonic::transport::ClientTlsConfig::new()
        .domain_name("localhost")
        .ca_certificate(tonic::transport::Certificate::from_pem(read("ca.pem")));

    // With a client certificate: authenticated without a bearer token.
    let channel = Channel::from_shared(url.clone())
        .unwrap()
        .tls_config(tls.clone().identity(tonic::transport::Identity::from_pem(
            read("client.pem"),
            read("client.key"),
        )))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = TokenServiceClient::new(channel);
    let ok = client
        .generate_tokens(generate("mtls"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.token_type, "Bearer");

    // Without one, the handshake is refused: no RPC gets through.
    let refused = match Channel::from_shared(url)
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
    {
        Err(_) => true,
        Ok(channel) => TokenServiceClient::new(channel).jwks().await.is_err(),
    };
    assert!(refused);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let mut h = harness(&[("MAX_REQUEST_BYTES", "4096")]).await;
    let mut req = generate("big");
    req.additional_claims_json = format!(r#"{{"pad":"{}"}}"#, "x".repeat(8000));
    let e = h.client.generate(req).await.unwrap_err();
    // gRPC's status-code table: a message over the receiver's limit is RESOURCE_EXHAUSTED.
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_service_answers_without_credentials() {
    let h = harness(&[]).await;
    for service in ["", READINESS] {
        assert_eq!(
            health_status(&h, service).await,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    h.server.shutdown().await.unwrap();
}

/// The services a reflection `ListServices` request names, through the generated types of one
/// reflection version (`v1` or `v1alpha`: the same messages in two packages).
macro_rules! services_by_reflection {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new($channel)
            .server_reflection_info(futures_util::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.message().await.unwrap().expect("a response");
        match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => list
                .service
                .into_iter()
                .map(|s| s.name)
                .collect::<Vec<String>>(),
            other => panic!("not a service list: {other:?}"),
        }
    }};
}

#[tokio::test]
async fn both_reflection_versions_list_the_service_without_credentials() {
    let h = harness(&[]).await;
    let channel = h.channel().await;
    let v1 = services_by_reflection!(v1, channel.clone());
    let v1alpha = services_by_reflection!(v1alpha, channel);
    for (version, services) in [("v1", &v1), ("v1alpha", &v1alpha)] {
        assert!(
            services.iter().any(|s| s == "token.v1.TokenService"),
            "reflection {version} lists {services:?}"
        );
    }
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn per_caller_concurrency_is_limited() {
    // Redis paused: the first request waits on its store call (up to the command timeout)
    // while holding the caller's only permit; a second request is refused at once.
    let redis = RedisServer::start().expect("redis-server");
    let url = redis.url();
    let h = harness(&on_redis(
        &url,
        &[
            ("REDIS_COMMAND_TIMEOUT_MS", "3000"),
            ("MAX_CONCURRENT_PER_CALLER", "1"),
        ],
    ))
    .await;
    redis.command(&["CLIENT", "PAUSE", "1500", "ALL"]).unwrap();
    let mut slow_client = h.client.clone();
    let slow = tokio::spawn(async move { slow_client.generate(generate("slow")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fast_client = h.client.clone();
    let started = std::time::Instant::now();
    let e = fast_client.generate(generate("fast")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(started.elapsed() < Duration::from_millis(500));
    // The first one completes once Redis answers again, and the permit is released.
    assert!(slow.await.unwrap().is_ok());
    assert!(fast_client.generate(generate("fast")).await.is_ok());
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let redis = RedisServer::start().expect("redis-server");
    let url = redis.url();
    let h = harness(&on_redis(&url, &[("REDIS_COMMAND_TIMEOUT_MS", "3000")])).await;
    let addr = h.server.grpc_addr;
    redis.command(&["CLIENT", "PAUSE", "1000", "ALL"]).unwrap();
    let mut client = h.client.clone();
    let in_flight = tokio::spawn(async move { client.generate(generate("drain")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.server.shutdown().await.unwrap();
    // The request that was in flight finished normally ...
    assert!(in_flight.await.unwrap().is_ok());
    // ... and the port no longer accepts connections.
    assert!(
        TokenServiceClient::connect(format!("http://{addr}"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_binary_signs_with_a_kms_key_and_fails_closed_when_kms_is_down() {
    let mut moto = Moto::start().unwrap();
    let key_id = moto::create_p256_signing_key(&moto.url()).await.unwrap();
    let (child, mut client) =
        serve_with_kms(&moto.url(), &[("KMS_KEY_ID", &key_id)], "a KMS key").await;
    assert_eq!(issued_algorithm(&mut client).await, Algorithm::ES256);

    // KMS gone: UNAVAILABLE, and no token handed out.
    moto.kill();
    let started = std::time::Instant::now();
    let e = client.generate(generate("kms")).await.unwrap_err();
    assert_eq!(
        refusal(&e),
        (Code::Unavailable, "temporarily_unavailable"),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(child);
}

/// The algorithm of an access token the server at `client` issues, verified against its JWKS.
async fn issued_algorithm(client: &mut TokenServiceClient<Channel>) -> Algorithm {
    let keys = verifier(client).await;
    let tokens = client.generate(generate("kms")).await.unwrap();
    let verified = Policy::default()
        .verify(&tokens.access_token, &keys, now())
        .unwrap();
    verified.algorithm()
}

fn kms_env(cmd: &mut tokio::process::Command, moto_url: &str) {
    cmd.env("KMS_ENDPOINT_URL", moto_url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
}

/// The binary with the emulator's KMS settings and `extra`, and a client for it.
async fn serve_with_kms(
    moto_url: &str,
    extra: &[(&str, &str)],
    what: &str,
) -> (tokio::process::Child, TokenServiceClient<Channel>) {
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let digest = caller_digest(CALLER);
    let mut cmd = binary_command(port, admin);
    kms_env(&mut cmd, moto_url);
    let child = cmd
        .env("CALLER_TOKEN_SHA256", &digest)
        .envs(extra.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = connect_when_up(port, &format!("the server came up with {what}")).await;
    (child, client)
}

#[tokio::test]
async fn keys_wrap_then_serve_with_the_wrapped_key() {
    let moto = Moto::start().unwrap();
    let wrapping = moto::create_wrapping_key(&moto.url()).await.unwrap();
    let mut wrap = binary();
    kms_env(&mut wrap, &moto.url());
    let out = wrap
        .args(["keys", "wrap", "--kms-key-id", &wrapping, "--alg", "EdDSA"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blob = String::from_utf8(out.stdout).unwrap();
    assert!(
        blob.contains("\"ciphertext\"") && blob.contains("\"alg\":\"EdDSA\""),
        "{blob}"
    );
    let blob_file = temp_file(blob.as_bytes());
    let blob_path = blob_file.path().to_string_lossy().into_owned();
    let (_child, mut client) = serve_with_kms(
        &moto.url(),
        &[
            ("SIGNING_KEY_FILE", &blob_path),
            ("WRAPPING_KMS_KEY_ID", &wrapping),
        ],
        "the wrapped key",
    )
    .await;
    assert_eq!(issued_algorithm(&mut client).await, Algorithm::EdDSA);
}

/// The kid in a compact JWS's header.
fn header_kid(token: &str) -> String {
    let header = token_jwt::base64url::decode(token.split('.').next().unwrap()).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&header).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_re_pointed_kms_alias_is_published_at_once_and_signs_after_the_lead() {
    let moto = Moto::start().unwrap();
    let first = moto::create_p256_signing_key(&moto.url()).await.unwrap();
    let second = moto::create_p256_signing_key(&moto.url()).await.unwrap();
    let admin = moto::admin(&moto.url());
    admin
        .create_alias()
        .alias_name("alias/token-signing")
        .target_key_id(&first)
        .send()
        .await
        .unwrap();
    // JWKS_MAX_AGE=1: the alias is re-read every second, and a new key signs 1 + 3 s after it
    // was published.
    let (port, admin_port) = (free_port().unwrap(), free_port().unwrap());
    let mut cmd = binary_command(port, admin_port);
    kms_env(&mut cmd, &moto.url());
    let _child = cmd
        .env("CALLER_TOKEN_SHA256", caller_digest(CALLER))
        .env("KMS_KEY_ID", "alias/token-signing")
        .env("JWKS_MAX_AGE", "1")
        .env("DEFAULT_AUDIENCE", "https://api.example")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut client = connect_when_up(port, "the server on a KMS alias").await;
    let before = client.generate(generate("a")).await.unwrap().access_token;
    let old_kid = header_kid(&before);
    let published = |client: &mut TokenServiceClient<Channel>| {
        let mut client = client.clone();
        async move {
            let set = JwkSet::from_json(client.jwks().await.unwrap().as_bytes()).unwrap();
            set.keys
                .iter()
                .filter_map(|k| k.kid.clone())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(published(&mut client).await, vec![old_kid.clone()]);

    admin
        .update_alias()
        .alias_name("alias/token-signing")
        .target_key_id(&second)
        .send()
        .await
        .unwrap();
    let moved = std::time::Instant::now();
    // Published within the sync interval (plus a KMS round trip)...
    let new_kid = loop {
        assert!(
            moved.elapsed() < Duration::from_secs(5),
            "the new key was not published"
        );
        let kids = published(&mut client).await;
        if let Some(k) = kids.iter().find(|k| **k != old_kid) {
            break k.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let published_at = std::time::Instant::now();
    // ...while the old key still signs until the new one has been published for the lead.
    let during = client.generate(generate("b")).await.unwrap().access_token;
    assert_eq!(
        header_kid(&during),
        old_kid,
        "the switch did not wait for pre-publication"
    );
    let after = loop {
        let t = client.generate(generate("c")).await.unwrap().access_token;
        if header_kid(&t) == new_kid {
            break t;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(15),
            "signing never switched"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        published_at.elapsed() >= Duration::from_secs(3),
        "switched {:?} after publication, before the lead",
        published_at.elapsed()
    );
    // Tokens of both keys verify against the JWK Set, which still has both.
    let keys = verifier(&mut client).await;
    for token in [&before, &during, &after] {
        Policy::default().verify(token, &keys, now()).unwrap();
    }
}

#[tokio::test]
async fn managed_keys_wrapped_by_kms_are_stored_as_ciphertext_only() {
    let moto = Moto::start().unwrap();
    let wrapping = moto::create_wrapping_key(&moto.url()).await.unwrap();
    let redis = token_testkit::RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let (_child, mut client) = serve_with_kms(
        &moto.url(),
        &[
            ("REDIS_URL", &url),
            ("REFRESH_TOKEN_PEPPER", common::PEPPER),
            ("WRAPPING_KMS_KEY_ID", &wrapping),
            ("DEFAULT_AUDIENCE", "https://api.example"),
        ],
        "managed keys wrapped by KMS",
    )
    .await;
    let token = client
        .generate(generate("kms-managed"))
        .await
        .unwrap()
        .access_token;
    let keys = verifier(&mut client).await;
    Policy::default().verify(&token, &keys, now()).unwrap();
    let hash = format!("{}keys", token_store_redis::DEFAULT_KEY_PREFIX);
    let record = redis
        .command(&["HGET", &hash, "gen:00000000000000000001"])
        .unwrap()
        .text()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(v["kid"].as_str().unwrap(), header_kid(&token));
    let blob = v["wrapped"]["kms"].as_str().unwrap();
    assert!(blob.contains("\"ciphertext\""), "{record}");
    assert!(
        !record.contains("\"d\""),
        "a private member in the store: {record}"
    );
}

#[tokio::test]
async fn published_key_files_verify_tokens_of_the_key_being_migrated_from() {
    // The old deployment signs with a key file...
    let old_key = PrivateKey::generate(Algorithm::ES256).unwrap();
    let old_file = temp_file(old_key.to_pkcs8_pem().unwrap().as_bytes());
    let old_path = old_file.path().to_string_lossy().into_owned();
    let mut old = harness(&[("SIGNING_KEY_FILE", &old_path)]).await;
    let token = old.generate_ok(generate("migrating")).await.access_token;
    assert_eq!(header_kid(&token), old_key.key_id());

    // ...the new one manages its own keys and publishes the old public key (PEM, and JWK).
    let pem = token_jwt::Jwk::from_public_key_text(&old_key.public_jwk().to_json())
        .unwrap()
        .to_json();
    let jwk_file = temp_file(pem.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("old.pem"),
        old_key.to_pkcs8_pem().unwrap().as_bytes(),
    )
    .unwrap();
    common::openssl(dir.path(), "pkey -in old.pem -pubout -out old.pub.pem");
    let public_pem = dir.path().join("old.pub.pem");
    for published in [jwk_file.path(), public_pem.as_path()] {
        let path = published.to_string_lossy().into_owned();
        let mut new = harness(&[("PUBLISHED_KEY_FILES", &path)]).await;
        let own = new.generate_ok(generate("new")).await.access_token;
        assert_ne!(header_kid(&own), old_key.key_id(), "a published key signed");
        let set = JwkSet::from_json(new.client.jwks().await.unwrap().as_bytes()).unwrap();
        let kids: Vec<_> = set.keys.iter().filter_map(|k| k.kid.clone()).collect();
        assert!(kids.contains(&old_key.key_id().to_owned()), "{kids:?}");
        assert!(kids.contains(&header_kid(&own)), "{kids:?}");
        let introspected = new.client.introspect(&token).await.unwrap();
        assert!(introspected.active, "the old key's token is refused");
        let keys = verifier(&mut new.client).await;
        Policy::default().verify(&token, &keys, now()).unwrap();
    }
    // A private key is never accepted as a published key.
    let private = temp_file(old_key.to_pkcs8_pem().unwrap().as_bytes());
    let path = private.path().to_string_lossy().into_owned();
    let e = token_server::start(config(&[("PUBLISHED_KEY_FILES", &path)]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("PUBLISHED_KEY_FILES") && e.contains("private"),
        "{e}"
    );
    assert!(!e.contains("PRIVATE KEY-----\n"), "{e}");
}
