//! Helpers shared by the integration tests: an in-process server with a client
//! ([`harness`]), authenticated requests and the RPCs as one call each ([`Calls`]), what a
//! refusal answers, the admin port's HTTP, temporary files, and the server processes the
//! binary tests start. Generic fixtures (ports, Redis, the KMS emulator) come from
//! `token_testkit`.

#![allow(dead_code, reason = "each test binary uses a subset of these helpers")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tempfile::NamedTempFile;
use token_dpop::ProofBuilder;
use token_jwt::{Algorithm, PrivateKey};
use token_proto::revoke_token_request::Target;
use token_proto::token_service_client::TokenServiceClient;
use token_proto::{
    DPoPProof, GenerateTokensRequest, GetJwksRequest, IntrospectTokenRequest,
    IntrospectTokenResponse, RefreshTokensRequest, RevokeTokenRequest, RevokeTokenResponse,
    TokenResponse, ValidateDPoPRequest, ValidateDPoPResponse,
};
use token_server::auth::CallerAuth;
use token_server::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// The caller token every in-process server accepts (see [`config`]).
pub(crate) const CALLER: &str = "e2e-caller-token";
/// The `ISSUER` of every in-process server.
pub(crate) const ISSUER: &str = "https://issuer.e2e.example";
/// The token endpoint the DPoP proofs are made for.
pub(crate) const URI: &str = "https://as.example/token";
/// `KEY_ENCRYPTION_KEY` of the servers on Redis (required there with managed keys).
pub(crate) const KEK: &str = "4b454b2d6f662d7468652d746573742d666c6565742d33322d62797465732121";
/// `REFRESH_TOKEN_PEPPER` of the servers on Redis (required there: 32 bytes in hex).
pub(crate) const PEPPER: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

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

/// The variables of a server on the Redis at `url` (`REDIS_URL` and [`PEPPER`]), with `extra`
/// on top.
pub(crate) fn on_redis<'a>(url: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![
        ("REDIS_URL", url),
        ("REFRESH_TOKEN_PEPPER", PEPPER),
        ("KEY_ENCRYPTION_KEY", KEK),
    ];
    vars.extend_from_slice(extra);
    vars
}

/// A server running in this process and a client connected to it.
pub(crate) struct Harness {
    pub(crate) server: token_server::RunningServer,
    pub(crate) client: TokenServiceClient<Channel>,
}

impl Harness {
    /// `GenerateTokens` as the authenticated caller; the test fails on an error status.
    pub(crate) async fn generate_ok(&mut self, req: GenerateTokensRequest) -> TokenResponse {
        self.client.generate(req).await.unwrap()
    }

    /// A new connection to the server, for the services beside the token service (health,
    /// reflection).
    pub(crate) async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.server.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
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
    authed_as(CALLER, msg)
}

/// `msg` with `token` as the caller's bearer token.
pub(crate) fn authed_as<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// The RPCs of the service as one call each: the request as the authenticated caller
/// ([`authed`]; GetJWKS is public), answered by the response's message or the status.
pub(crate) trait Calls {
    /// GenerateTokens.
    async fn generate(&mut self, req: GenerateTokensRequest) -> Result<TokenResponse, Status>;
    /// RefreshTokens.
    async fn refresh(&mut self, req: RefreshTokensRequest) -> Result<TokenResponse, Status>;
    /// ValidateDPoP.
    async fn validate(&mut self, req: ValidateDPoPRequest) -> Result<ValidateDPoPResponse, Status>;
    /// IntrospectToken of `token`.
    async fn introspect(&mut self, token: &str) -> Result<IntrospectTokenResponse, Status>;
    /// RevokeToken.
    async fn revoke(&mut self, req: RevokeTokenRequest) -> Result<RevokeTokenResponse, Status>;
    /// GetJWKS, without credentials: the JWKS document.
    async fn jwks(&mut self) -> Result<String, Status>;
}

impl Calls for TokenServiceClient<Channel> {
    async fn generate(&mut self, req: GenerateTokensRequest) -> Result<TokenResponse, Status> {
        message(self.generate_tokens(authed(req))).await
    }

    async fn refresh(&mut self, req: RefreshTokensRequest) -> Result<TokenResponse, Status> {
        message(self.refresh_tokens(authed(req))).await
    }

    async fn validate(&mut self, req: ValidateDPoPRequest) -> Result<ValidateDPoPResponse, Status> {
        message(self.validate_d_po_p(authed(req))).await
    }

    async fn introspect(&mut self, token: &str) -> Result<IntrospectTokenResponse, Status> {
        let req = IntrospectTokenRequest {
            token: token.into(),
        };
        message(self.introspect_token(authed(req))).await
    }

    async fn revoke(&mut self, req: RevokeTokenRequest) -> Result<RevokeTokenResponse, Status> {
        message(self.revoke_token(authed(req))).await
    }

    async fn jwks(&mut self) -> Result<String, Status> {
        let document = message(self.get_jwks(GetJwksRequest {})).await?;
        Ok(document.jwks_json)
    }
}

/// The message of `call`'s answer, or its status.
async fn message<T>(call: impl Future<Output = Result<Response<T>, Status>>) -> Result<T, Status> {
    call.await.map(Response::into_inner)
}

/// The `oauth-error` metadata of a status (empty when there is none).
pub(crate) fn oauth_error(s: &Status) -> &str {
    s.metadata()
        .get("oauth-error")
        .map_or("", |v| v.to_str().unwrap())
}

/// Status code and `oauth-error` of a refusal.
pub(crate) fn refusal(e: &Status) -> (Code, &str) {
    (e.code(), oauth_error(e))
}

/// Status code, `oauth-error` and message: what a refusal tells the caller.
pub(crate) fn answer(e: &Status) -> (Code, String, String) {
    (e.code(), oauth_error(e).to_owned(), e.message().to_owned())
}

/// The one answer of every refused refresh token.
pub(crate) fn invalid_grant() -> (Code, String, String) {
    (
        Code::Unauthenticated,
        "invalid_grant".to_owned(),
        token_server::status::INVALID_GRANT.to_owned(),
    )
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

/// A RefreshTokens request without a proof, presenting `token` as client `client_id`.
pub(crate) fn refresh_as(token: &str, client_id: &str) -> RefreshTokensRequest {
    RefreshTokensRequest {
        client_id: client_id.into(),
        refresh_token: token.into(),
        ..Default::default()
    }
}

/// A RevokeToken request by client `client_id` for `target`, giving `reason`.
pub(crate) fn revocation(client_id: &str, target: Target, reason: &str) -> RevokeTokenRequest {
    RevokeTokenRequest {
        client_id: client_id.into(),
        target: Some(target),
        reason: reason.into(),
    }
}

/// `aud` of decoded claims, whether the token carries it as a string (one audience) or an
/// array.
pub(crate) fn audiences(claims: &Value) -> Vec<String> {
    match &claims["aud"] {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect(),
        other => panic!("aud is {other}: {claims}"),
    }
}

/// `proof`, presented for `POST` [`URI`].
pub(crate) fn post(proof: String) -> DPoPProof {
    DPoPProof {
        proof,
        http_method: "POST".into(),
        http_uri: URI.into(),
    }
}

/// A fresh proof by `builder` for `POST` [`URI`].
pub(crate) fn dpop(builder: &ProofBuilder, access_token: Option<&str>) -> DPoPProof {
    post(
        builder
            .proof("POST", URI, access_token, None, now())
            .unwrap(),
    )
}

/// A fresh proof by `builder` for `POST` [`URI`] carrying the server's `nonce`.
pub(crate) fn dpop_with_nonce(builder: &ProofBuilder, nonce: &str) -> DPoPProof {
    post(
        builder
            .proof("POST", URI, None, Some(nonce), now())
            .unwrap(),
    )
}

/// A ValidateDPoP request for `GET uri` presenting `access_token`, with a fresh proof by `key`
/// (carrying the server's `nonce` when there is one).
pub(crate) fn validate_get(
    key: &ProofBuilder,
    uri: &str,
    access_token: &str,
    nonce: Option<&str>,
) -> ValidateDPoPRequest {
    ValidateDPoPRequest {
        proof: key
            .proof("GET", uri, Some(access_token), nonce, now())
            .unwrap(),
        http_method: "GET".into(),
        http_uri: uri.into(),
        access_token: access_token.into(),
        ..Default::default()
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

/// What the admin port at `addr` answers `GET path` with `extra` header lines (each ending in
/// CRLF): the whole HTTP response, head and body.
pub(crate) async fn http_get(
    addr: impl tokio::net::ToSocketAddrs,
    path: &str,
    extra: &str,
) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Runs `openssl` in `dir` with the arguments of `command` (separated by spaces); it must
/// succeed.
pub(crate) fn openssl(dir: &Path, command: &str) {
    let args: Vec<&str> = command.split_whitespace().collect();
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(&args)
        .output()
        .expect("the openssl command (Debian package openssl) generates the test certificates");
    assert!(
        out.status.success(),
        "openssl {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// P-256 keys and certificates in `dir`: a CA (`ca.pem`, `ca.key`), a server certificate for
/// `localhost` (`server.pem`, `server.key`) and, for each `(name, extension)` of `clients`, a
/// certificate `name.pem` (key `name.key`) with that X.509 extension, all signed by the CA.
pub(crate) fn certificates(dir: &Path, clients: &[(&str, &str)]) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(
        dir,
        &format!("req -x509 -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem {ec}"),
    );
    let server = ("server", "subjectAltName=DNS:localhost");
    for &(name, ext) in std::iter::once(&server).chain(clients) {
        openssl(
            dir,
            &format!("req -new -subj /CN=test-{name} -keyout {name}.key -out {name}.csr {ec}"),
        );
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &format!(
                "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                 -extfile {name}.ext -out {name}.pem"
            ),
        );
    }
}

/// A new temporary file (unique name, removed when dropped) holding `contents`.
pub(crate) fn temp_file(contents: &[u8]) -> NamedTempFile {
    let mut file = NamedTempFile::new().unwrap();
    file.write_all(contents).unwrap();
    file.flush().unwrap();
    file
}

/// A new ES256 key as a PKCS#8 PEM [`temp_file`], for `SIGNING_KEY_FILE` (instances of one
/// deployment share the signing key).
pub(crate) fn signing_key_file() -> NamedTempFile {
    let pem = PrivateKey::generate(Algorithm::ES256)
        .unwrap()
        .to_pkcs8_pem()
        .unwrap();
    temp_file(pem.as_bytes())
}
