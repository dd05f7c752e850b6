//! Your first token, from Rust: the flow of the README's "Your first token" section against a
//! running `token-service`, with the client of `token-proto` and the proofs of `token-dpop`.
//!
//! 1. `GenerateTokens` with a DPoP proof: an access token and a refresh token, both bound to
//!    this client's key (`cnf.jkt`);
//! 2. `RefreshTokens` with a fresh proof by the same key: the refresh token is rotated;
//! 3. `GetJWKS`: the public keys a resource server verifies access tokens with;
//! 4. `ValidateDPoP`: what a resource server asks for a request `GET
//!    https://api.example/orders` carrying the access token and a proof for it.
//!
//! ```text
//! cargo run                      # in one terminal; copy the caller_token it prints
//! CALLER_TOKEN=<that token> cargo run -p token-server --example first_token
//! ```
//!
//! `TOKEN_SERVICE_ADDR` (default `localhost:50052`) names the server. The test
//! `crates/token-server/tests/first_token.rs` runs this file against the binary.

#![allow(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "an example: it prints each step, and its proofs take their `iat` from the clock"
)]

use std::error::Error;

use token_dpop::ProofBuilder;
use token_jwt::{Algorithm, PrivateKey, RustCryptoProvider};
use token_proto::token_service_client::TokenServiceClient;
use token_proto::{
    DPoPProof, GenerateTokensRequest, GetJwksRequest, RefreshTokensRequest, ValidateDPoPRequest,
};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::Channel;

/// The token endpoint the proofs of steps 1 and 2 are made for (the URL your front end serves
/// the token requests on; the service checks the proof's `htu` against it).
const TOKEN_ENDPOINT: &str = "https://auth.example/token";
/// The resource request of step 4.
const RESOURCE: &str = "https://api.example/orders";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let addr = std::env::var("TOKEN_SERVICE_ADDR").unwrap_or_else(|_| "localhost:50052".into());
    let caller = std::env::var("CALLER_TOKEN")
        .map_err(|_| "set CALLER_TOKEN to the caller_token that `cargo run` printed")?;
    let outcome = first_token(&addr, &caller).await?;
    let problems: Vec<&str> = [
        (
            "the tokens are not DPoP-bound",
            outcome.token_type == "DPoP",
        ),
        ("the refresh token was not rotated", outcome.rotated),
        ("the JWK Set is empty", outcome.keys > 0),
        ("ValidateDPoP refused the request", outcome.valid),
        (
            "ValidateDPoP reported another key",
            outcome.jkt.0 == outcome.jkt.1,
        ),
    ]
    .into_iter()
    .filter_map(|(problem, ok)| (!ok).then_some(problem))
    .collect();
    if !problems.is_empty() {
        return Err(format!("first token: {}", problems.join("; ")).into());
    }
    println!("done: a DPoP-bound token, refreshed, and accepted for its key");
    Ok(())
}

/// What the flow saw, for the test to check.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// `DPoP` for the bound tokens.
    pub(crate) token_type: String,
    /// Whether the refresh returned a new refresh token.
    pub(crate) rotated: bool,
    /// How many keys the JWK Set holds.
    pub(crate) keys: usize,
    /// Whether `ValidateDPoP` accepted the resource request.
    pub(crate) valid: bool,
    /// The thumbprint `ValidateDPoP` reported, and this client's own.
    pub(crate) jkt: (String, String),
}

/// Runs the four steps against the service at `addr` (`host:port`) as the caller whose bearer
/// token is `caller`.
pub(crate) async fn first_token(addr: &str, caller: &str) -> Result<Outcome, Box<dyn Error>> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = TokenServiceClient::with_interceptor(channel, CallerToken::new(caller)?);

    // This client's DPoP key: its proofs show the service and resource servers that whoever
    // presents the tokens holds it.
    let key = PrivateKey::generate(Algorithm::ES256)?;
    let proofs = ProofBuilder::new(&key, &RustCryptoProvider::new())?;
    let proof = |method: &str, uri: &str, access_token: Option<&str>| {
        proofs.proof(method, uri, access_token, None, now())
    };
    // A proof for a request to the token endpoint (steps 1 and 2), as the service receives it.
    let token_request_proof = || -> Result<DPoPProof, token_dpop::Error> {
        Ok(DPoPProof {
            proof: proof("POST", TOKEN_ENDPOINT, None)?,
            http_method: "POST".into(),
            http_uri: TOKEN_ENDPOINT.into(),
        })
    };

    // 1. GenerateTokens
    let issued = client
        .generate_tokens(GenerateTokensRequest {
            subject: "alice".into(),
            client_id: "web".into(),
            audience: vec!["https://api.example".into()],
            scopes: vec!["read".into(), "write".into()],
            dpop: Some(token_request_proof()?),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!(
        "1. GenerateTokens: a {} token for {} s, family {}",
        issued.token_type, issued.expires_in, issued.family_id
    );

    // 2. RefreshTokens
    let refreshed = client
        .refresh_tokens(RefreshTokensRequest {
            client_id: "web".into(),
            refresh_token: issued.refresh_token.clone(),
            dpop: Some(token_request_proof()?),
            ..Default::default()
        })
        .await?
        .into_inner();
    let rotated = refreshed.refresh_token != issued.refresh_token;
    println!(
        "2. RefreshTokens: rotated: {rotated}, scopes {:?}",
        refreshed.scopes
    );

    // 3. GetJWKS
    let jwks = client.get_jwks(GetJwksRequest {}).await?.into_inner();
    let document: serde_json::Value = serde_json::from_str(&jwks.jwks_json)?;
    let keys = document
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    println!("3. GetJWKS: {keys} key(s)");

    // 4. ValidateDPoP, as a resource server would for `GET /orders` with the new access token
    let validated = client
        .validate_d_po_p(ValidateDPoPRequest {
            proof: proof("GET", RESOURCE, Some(&refreshed.access_token))?,
            http_method: "GET".into(),
            http_uri: RESOURCE.into(),
            access_token: refreshed.access_token.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!(
        "4. ValidateDPoP: valid: {}, jkt {} {}",
        validated.valid, validated.jkt, validated.error_description
    );

    Ok(Outcome {
        token_type: issued.token_type,
        rotated,
        keys,
        valid: validated.valid,
        jkt: (validated.jkt, proofs.jkt()),
    })
}

/// Adds `authorization: Bearer <caller token>` to every call.
#[derive(Clone)]
struct CallerToken(MetadataValue<tonic::metadata::Ascii>);

impl CallerToken {
    fn new(token: &str) -> Result<Self, Box<dyn Error>> {
        Ok(CallerToken(format!("Bearer {token}").parse()?))
    }
}

impl Interceptor for CallerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// Seconds since the Unix epoch, the proofs' `iat`.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
