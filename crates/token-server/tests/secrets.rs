//! No secret reaches a log line or a metric: the `token-service` binary runs with every log
//! target at TRACE (JSON output) while a client drives every RPC through its success and error
//! paths; then its output and its `/metrics` page are searched for every refresh token, access
//! token, DPoP proof, the caller token and the signing key's private material.

use std::time::Duration;

use token_dpop::ProofBuilder;
use token_jwt::{Algorithm, PrivateKey, RustCryptoProvider};
use token_proto::{
    GenerateTokensRequest, GetJwksRequest, IntrospectTokenRequest, revoke_token_request::Target,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tonic::Request;

mod common;
use common::{
    authed_as, binary_command, caller_digest, connect_when_up, dpop, http_get, refresh_as,
    revocation, sigterm, temp_file, validate_get,
};
use token_testkit::port::free_port;

/// The caller token of this test: a secret the logs must not show, longer than the windows
/// searched for below.
const CALLER: &str = "secret-caller-token-4f1c9a";

fn authed<T>(msg: T) -> Request<T> {
    authed_as(CALLER, msg)
}

/// Reads `pipe` to its end in a task: what it carried, as far as it was text.
fn drain(mut pipe: impl AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s).await;
        s
    })
}

#[tokio::test]
async fn no_token_proof_or_key_material_in_logs_or_metrics() {
    let key = PrivateKey::generate(Algorithm::ES256).unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    let key_file = temp_file(pem.as_bytes());
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let mut child = binary_command(port, admin)
        .env("CALLER_TOKEN_SHA256", caller_digest(CALLER))
        .env("DEFAULT_AUDIENCE", "https://api.example")
        .env("SIGNING_KEY_FILE", key_file.path())
        .env("RUST_LOG", "trace")
        .env("LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes from the start: TRACE output would fill a pipe and block the server.
    let out_task = drain(child.stdout.take().unwrap());
    let err_task = drain(child.stderr.take().unwrap());
    let mut client = connect_when_up(port, "server up").await;
    let proof_key = ProofBuilder::new(
        &PrivateKey::generate(Algorithm::EdDSA).unwrap(),
        &RustCryptoProvider::new(),
    )
    .unwrap();
    let mut secrets: Vec<String> = vec![CALLER.to_owned()];

    // Every RPC, success and failure.
    let _ = client.get_jwks(GetJwksRequest {}).await.unwrap();
    let proof = dpop(&proof_key, None);
    secrets.push(proof.proof.clone());
    let bound = client
        .generate_tokens(authed(GenerateTokensRequest {
            subject: "alice".into(),
            client_id: "web".into(),
            audience: vec!["https://api.example".into()],
            dpop: Some(proof),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    secrets.extend([bound.access_token.clone(), bound.refresh_token.clone()]);
    let bearer = client
        .generate_tokens(authed(GenerateTokensRequest {
            subject: "bob".into(),
            client_id: "web".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    secrets.extend([bearer.access_token.clone(), bearer.refresh_token.clone()]);
    let rotated = client
        .refresh_tokens(authed(refresh_as(&bearer.refresh_token, "web")))
        .await
        .unwrap()
        .into_inner();
    secrets.extend([rotated.access_token, rotated.refresh_token]);
    // Reuse (revokes), a DPoP-bound refresh without a proof, a malformed refresh token.
    for token in [
        bearer.refresh_token.clone(),
        bound.refresh_token.clone(),
        format!("{}x", bound.refresh_token),
    ] {
        let req = refresh_as(&token, "web");
        client.refresh_tokens(authed(req)).await.unwrap_err();
    }
    let request = validate_get(
        &proof_key,
        "https://api.example/x",
        &bound.access_token,
        None,
    );
    secrets.push(request.proof.clone());
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
    for token in [bound.access_token.clone(), "garbage".into()] {
        let req = IntrospectTokenRequest { token };
        client.introspect_token(authed(req)).await.unwrap();
    }
    let target = Target::RefreshToken(bound.refresh_token.clone());
    let req = revocation("web", target, "t");
    client.revoke_token(authed(req)).await.unwrap();
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
    let metrics = http_get(("127.0.0.1", admin), "/metrics", "").await;
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
}
