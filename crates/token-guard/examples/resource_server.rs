//! A resource server protected by token-guard: `GET /items` for tokens with the scope `read`,
//! `POST /items` for tokens with `read` and `write`, DPoP-bound or Bearer, the RFC 9728
//! metadata at `/.well-known/oauth-protected-resource`, and tokens of revoked grants refused
//! as soon as token-service streams the revocation.
//!
//! ```text
//! ISSUER=https://issuer.example AUDIENCE=https://api.example \
//! JWKS_URL=http://localhost:9090/.well-known/jwks.json EXTERNAL_URL=http://localhost:8080 \
//! TOKEN_SERVICE_URL=http://localhost:50052 CALLER_TOKEN=<a caller token with WatchRevocations> \
//! cargo run -p token-guard --example resource_server --features axum,watch
//! ```
//!
//! `LISTEN` (default `127.0.0.1:8080`) is the address to listen on. Optional:
//! `TOKEN_SERVICE_URL` with `CALLER_TOKEN` turns on the revocation watcher, and
//! `DPOP_NONCE_KEY` (32 bytes in hex) requires a server nonce in every proof.
//! `crates/token-server/tests/guard.rs` runs this server against the `token-service` binary.

use std::error::Error;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use token_guard::{Authenticated, Guard, NonceIssuer, NonceKey, RevocationWatcher};

/// What the server needs to know.
pub(crate) struct Settings {
    /// The token issuer (`iss`).
    pub(crate) issuer: String,
    /// This resource's audience (`aud`).
    pub(crate) audience: String,
    /// The issuer's JWK Set.
    pub(crate) jwks_url: String,
    /// The URL clients reach this server at (proofs name it in `htu`).
    pub(crate) external_url: String,
    /// token-service's gRPC URL and a caller token with the right `WatchRevocations`.
    pub(crate) revocations: Option<(String, String)>,
    /// The key of the server nonces, when nonces are required.
    pub(crate) nonce_key: Option<[u8; 32]>,
}

/// The claims the handlers read: the registered `sub` and `scope`, typed.
#[derive(serde::Deserialize)]
struct ItemClaims {
    sub: String,
    scope: String,
}

async fn list(Authenticated { claims, scheme, .. }: Authenticated<ItemClaims>) -> String {
    format!("items of {} ({scheme}, scope {})", claims.sub, claims.scope)
}

async fn create(Authenticated { claims, .. }: Authenticated<ItemClaims>) -> String {
    format!("item created for {}", claims.sub)
}

/// The application. The guard and its use are the lines between the two blank lines.
pub(crate) fn app(settings: &Settings) -> Result<Router, Box<dyn Error>> {
    let mut guard = Guard::builder(&settings.issuer, &settings.audience)
        .jwks_url(&settings.jwks_url)
        .external_url(&settings.external_url)
        .require_scope("read");
    if let Some(key) = &settings.nonce_key {
        guard = guard.require_nonce(Arc::new(NonceIssuer::new(NonceKey::from_bytes(key))));
    }
    if let Some((url, caller_token)) = &settings.revocations {
        guard = guard.revocations(Arc::new(
            RevocationWatcher::builder(url, caller_token).spawn()?,
        ));
    }
    let guard = guard.build()?;

    Ok(Router::new()
        .route("/items", get(list))
        .route(
            "/items",
            post(create).route_layer(guard.layer().require_scope("write")),
        )
        .route_layer(guard.layer())
        .merge(guard.metadata().router()))
}

impl Settings {
    /// The settings from the environment (see the file's docs).
    pub(crate) fn from_env() -> Result<Self, Box<dyn Error>> {
        let var = |name: &str| std::env::var(name).map_err(|_| format!("set {name}"));
        let revocations = match (
            std::env::var("TOKEN_SERVICE_URL"),
            std::env::var("CALLER_TOKEN"),
        ) {
            (Ok(url), Ok(token)) => Some((url, token)),
            _ => None,
        };
        let nonce_key = match std::env::var("DPOP_NONCE_KEY") {
            Ok(hex) => Some(parse_key(&hex).ok_or("DPOP_NONCE_KEY must be 32 bytes in hex")?),
            Err(_) => None,
        };
        Ok(Settings {
            issuer: var("ISSUER")?,
            audience: var("AUDIENCE")?,
            jwks_url: var("JWKS_URL")?,
            external_url: var("EXTERNAL_URL")?,
            revocations,
            nonce_key,
        })
    }
}

/// 64 hex digits as 32 bytes.
fn parse_key(hex: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    let digits = hex.trim().as_bytes();
    if digits.len() != 64 {
        return None;
    }
    for (byte, pair) in key.iter_mut().zip(digits.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(key)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let settings = Settings::from_env()?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app(&settings)?).await?;
    Ok(())
}
