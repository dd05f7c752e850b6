//! Helpers shared by the integration tests: an in-process server with a client
//! ([`harness`]), authenticated requests, and the server processes the binary tests start.
//! Generic fixtures (ports, Redis, the KMS emulator) come from `token_testkit`.

#![allow(dead_code, reason = "each test binary uses a subset of these helpers")]

use std::collections::HashMap;
use std::time::Duration;

use token_dpop::ProofBuilder;
use token_jwt::{Algorithm, PrivateKey};
use token_proto::token_service_client::TokenServiceClient;
use token_proto::{DPoPProof, GenerateTokensRequest, TokenResponse};
use token_server::auth::CallerAuth;
use token_server::config::Config;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The caller token every in-process server accepts (see [`config`]).
pub(crate) const CALLER: &str = "e2e-caller-token";
/// The `ISSUER` of every in-process server.
pub(crate) const ISSUER: &str = "https://issuer.e2e.example";
/// The token endpoint the DPoP proofs are made for.
pub(crate) const URI: &str = "https://as.example/token";

/// The hex SHA-256 of a caller token, as `CALLER_TOKEN_SHA256` takes it.
pub(crate) fn caller_digest(token: &str) -> String {
    CallerAuth::digest(token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A configuration on ephemeral ports accepting [`CALLER`], with `extra` variables on top.
pub(crate) fn config(extra: &[(&str, &str)]) -> Config {
    let digest = caller_digest(CALLER);
    let mut vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("ADMIN_PORT", "0"),
        ("ISSUER", ISSUER),
        ("DEFAULT_AUDIENCE", "https://api.example"),
        ("CALLER_TOKEN_SHA256", digest.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    Config::from_vars(&vars).unwrap()
}

/// A server running in this process and a client connected to it.
pub(crate) struct Harness {
    pub(crate) server: token_server::RunningServer,
    pub(crate) client: TokenServiceClient<Channel>,
}

impl Harness {
    /// `GenerateTokens` as the authenticated caller; the test fails on an error status.
    pub(crate) async fn generate_ok(&mut self, req: GenerateTokensRequest) -> TokenResponse {
        self.client
            .generate_tokens(authed(req))
            .await
            .unwrap()
            .into_inner()
    }
}

/// Starts a server with [`config`]`(extra)` and connects a client.
pub(crate) async fn harness(extra: &[(&str, &str)]) -> Harness {
    let server = token_server::start(config(extra)).await.unwrap();
    let client = TokenServiceClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .unwrap();
    Harness { server, client }
}

/// `msg` with the [`CALLER`] bearer token.
pub(crate) fn authed<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {CALLER}").parse().unwrap());
    r
}

/// The `oauth-error` metadata of a status (empty when there is none).
pub(crate) fn oauth_error(s: &Status) -> &str {
    s.metadata()
        .get("oauth-error")
        .map_or("", |v| v.to_str().unwrap())
}

pub(crate) fn now() -> i64 {
    token_server::clock::now()
}

/// A GenerateTokens request for `subject` by client `web` for the audience
/// `https://api.example` with scopes `read write`.
pub(crate) fn generate(subject: &str) -> GenerateTokensRequest {
    GenerateTokensRequest {
        subject: subject.into(),
        client_id: "web".into(),
        audience: vec!["https://api.example".into()],
        scopes: vec!["read".into(), "write".into()],
        ..Default::default()
    }
}

/// A fresh proof by `builder` for `POST` [`URI`].
pub(crate) fn dpop(builder: &ProofBuilder, access_token: Option<&str>) -> DPoPProof {
    DPoPProof {
        proof: builder
            .proof("POST", URI, access_token, None, now())
            .unwrap(),
        http_method: "POST".into(),
        http_uri: URI.into(),
    }
}

/// A proof builder over a new ES256 key.
pub(crate) fn proof_builder() -> ProofBuilder {
    let key = PrivateKey::generate(Algorithm::ES256).unwrap();
    ProofBuilder::new(&key, &token_jwt::RustCryptoProvider::new()).unwrap()
}

/// A client for a server process starting on `port` (polls for up to 10 s).
pub(crate) async fn connect_when_up(port: u16, what: &str) -> TokenServiceClient<Channel> {
    for _ in 0..200 {
        if let Ok(c) = TokenServiceClient::connect(format!("http://127.0.0.1:{port}")).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: nothing listening on port {port} after 10 s");
}

/// The `token-service` binary with a clean environment (`PATH` only), killed when dropped:
/// add arguments and variables, then spawn or run it.
pub(crate) fn binary() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_token-service"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .kill_on_drop(true);
    cmd
}

/// [`binary`], to listen on 127.0.0.1:`port` (admin HTTP on `admin`).
pub(crate) fn binary_command(port: u16, admin: u16) -> tokio::process::Command {
    let mut cmd = binary();
    cmd.env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("ADMIN_PORT", admin.to_string());
    cmd
}

/// Sends SIGTERM to the server process `child` (asserting it is still running).
pub(crate) fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the server process is running");
    token_testkit::process::terminate(pid).unwrap();
}

/// A new ES256 key as a PKCS#8 PEM file in the temporary directory, for `SIGNING_KEY_FILE`
/// (instances of one deployment share the signing key). The caller removes it.
pub(crate) fn signing_key_file(tag: &str) -> std::path::PathBuf {
    let file = std::env::temp_dir().join(format!("token-server-{tag}-{}.pem", std::process::id()));
    let pem = PrivateKey::generate(Algorithm::ES256)
        .unwrap()
        .to_pkcs8_pem()
        .unwrap();
    std::fs::write(&file, pem.as_bytes()).unwrap();
    file
}
