//! No secret reaches a log line or a metric: the `token-service` binary runs with every log
//! target at TRACE (JSON output) while a client drives every RPC through its success and error
//! paths; then its output and its `/metrics` page are searched for every refresh token, access
//! token, DPoP proof, the caller token and the signing key's private material.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed expectation should panic"
)]

use std::time::Duration;

use token_dpop::ProofBuilder;
use token_jwt::{Algorithm, PrivateKey, RustCryptoProvider};
use token_proto::{
    DPoPProof, GenerateTokensRequest, GetJwksRequest, IntrospectTokenRequest, RefreshTokensRequest,
    RevokeTokenRequest, ValidateDPoPRequest, revoke_token_request::Target,
};
use token_server::auth::CallerAuth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Request;

mod common;
use common::{binary_command, connect_when_up, sigterm};
use token_testkit::port::free_port;

const CALLER: &str = "secret-caller-token-4f1c9a";
const URI: &str = "https://as.example/token";

fn authed<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {CALLER}").parse().unwrap());
    r
}

#[tokio::test]
async fn no_token_proof_or_key_material_in_logs_or_metrics() {
    let key = PrivateKey::generate(Algorithm::ES256).unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    let key_file =
        std::env::temp_dir().join(format!("token-server-secrets-{}.pem", std::process::id()));
    std::fs::write(&key_file, pem.as_bytes()).unwrap();
    let digest: String = CallerAuth::digest(CALLER)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let mut child = binary_command(port, admin)
        .env("CALLER_TOKEN_SHA256", &digest)
        .env("DEFAULT_AUDIENCE", "https://api.example")
        .env("SIGNING_KEY_FILE", &key_file)
        .env("RUST_LOG", "trace")
        .env("LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes from the start: TRACE output would fill a pipe and block the server.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s).await;
        s
    });
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut client = connect_when_up(port, "server up").await;
    let now = token_server::clock::now();
    let proof_key = ProofBuilder::new(
        &PrivateKey::generate(Algorithm::EdDSA).unwrap(),
        &RustCryptoProvider::new(),
    )
    .unwrap();
    let mut secrets: Vec<String> = vec![CALLER.to_owned()];

    // Every RPC, success and failure.
    let _ = client.get_jwks(GetJwksRequest {}).await.unwrap();
    let proof = proof_key.proof("POST", URI, None, None, now).unwrap();
    secrets.push(proof.clone());
    let bound = client
        .generate_tokens(authed(GenerateTokensRequest {
            subject: "alice".into(),
            client_id: "web".into(),
            audience: vec!["https://api.example".into()],
            dpop: Some(DPoPProof {
                proof,
                http_method: "POST".into(),
                http_uri: URI.into(),
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    secrets.push(bound.access_token.clone());
    secrets.push(bound.refresh_token.clone());
    let bearer = client
        .generate_tokens(authed(GenerateTokensRequest {
            subject: "bob".into(),
            client_id: "web".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    secrets.push(bearer.access_token.clone());
    secrets.push(bearer.refresh_token.clone());
    let rotated = client
        .refresh_tokens(authed(RefreshTokensRequest {
            client_id: "web".into(),
            refresh_token: bearer.refresh_token.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    secrets.push(rotated.access_token.clone());
    secrets.push(rotated.refresh_token.clone());
    // Reuse (revokes), a DPoP-bound refresh without a proof, a malformed refresh token.
    let _ = client
        .refresh_tokens(authed(RefreshTokensRequest {
            client_id: "web".into(),
            refresh_token: bearer.refresh_token.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let _ = client
        .refresh_tokens(authed(RefreshTokensRequest {
            client_id: "web".into(),
            refresh_token: bound.refresh_token.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let _ = client
        .refresh_tokens(authed(RefreshTokensRequest {
            client_id: "web".into(),
            refresh_token: format!("{}x", bound.refresh_token),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let validate_proof = proof_key
        .proof(
            "GET",
            "https://api.example/x",
            Some(&bound.access_token),
            None,
            now,
        )
        .unwrap();
    secrets.push(validate_proof.clone());
    let request = ValidateDPoPRequest {
        proof: validate_proof,
        http_method: "GET".into(),
        http_uri: "https://api.example/x".into(),
        access_token: bound.access_token.clone(),
        ..Default::default()
    };
    assert!(
        client
            .validate_d_po_p(authed(request.clone()))
            .await
            .unwrap()
            .into_inner()
            .valid
    );
    assert!(
        !client
            .validate_d_po_p(authed(request))
            .await
            .unwrap()
            .into_inner()
            .valid
    );
    let _ = client
        .introspect_token(authed(IntrospectTokenRequest {
            token: bound.access_token.clone(),
        }))
        .await
        .unwrap();
    let _ = client
        .introspect_token(authed(IntrospectTokenRequest {
            token: "garbage".into(),
        }))
        .await
        .unwrap();
    let _ = client
        .revoke_token(authed(RevokeTokenRequest {
            client_id: "web".into(),
            target: Some(Target::RefreshToken(bound.refresh_token.clone())),
            reason: "t".into(),
        }))
        .await
        .unwrap();
    // An unauthenticated call and a wrong caller token.
    let _ = client
        .generate_tokens(GenerateTokensRequest::default())
        .await
        .unwrap_err();
    let mut wrong = Request::new(GenerateTokensRequest::default());
    wrong.metadata_mut().insert(
        "authorization",
        "Bearer wrong-caller-token-77".parse().unwrap(),
    );
    secrets.push("wrong-caller-token-77".to_owned());
    let _ = client.generate_tokens(wrong).await.unwrap_err();

    // The metrics page.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", admin))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut metrics = String::new();
    s.read_to_string(&mut metrics).await.unwrap();
    assert!(
        metrics.contains("token_service_rotations_total"),
        "metrics were recorded"
    );

    // Stop the server and collect everything it wrote.
    sigterm(&child);
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the server exits within 20 s of SIGTERM")
        .unwrap();
    let out = out_task.await.unwrap() + &err_task.await.unwrap();
    // The capture works: the server's own events are there.
    assert!(out.contains("token-service listening") && out.contains("revoked"));
    assert!(
        out.lines().count() > 50,
        "TRACE logging produced output ({} lines)",
        out.lines().count()
    );

    // Key material: the PEM body and the private scalar.
    let d = &pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    secrets.push(d[..32].to_owned());
    let jwk_d = {
        use p256::pkcs8::DecodePrivateKey;
        let sk = p256::SecretKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
        token_jwt::base64url::encode(sk.to_bytes())
    };
    secrets.push(jwk_d);

    for secret in &secrets {
        // Any 24-character window of a secret would be a leak; check a few.
        for window in [
            &secret[..secret.len().min(24)],
            &secret[secret.len().saturating_sub(24)..],
        ] {
            assert!(
                !out.contains(window),
                "a secret appears in the logs: {}…",
                &window[..8]
            );
            assert!(
                !metrics.contains(window),
                "a secret appears in the metrics: {}…",
                &window[..8]
            );
        }
    }
    let _ = std::fs::remove_file(key_file);
}
