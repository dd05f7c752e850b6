//! The admin HTTP port: `/metrics` (Prometheus), `/.well-known/jwks.json` (with `ETag` and
//! `Cache-Control`), `/healthz` (the process is alive) and `/readyz` (the store and the signer
//! can be used).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use sha2::{Digest, Sha256};

use crate::state::AppState;

#[derive(Clone)]
struct Admin {
    state: Arc<AppState>,
    metrics: PrometheusHandle,
}

/// The admin router.
pub fn router(state: Arc<AppState>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Admin { state, metrics })
}

async fn render_metrics(State(admin): State<Admin>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        admin.metrics.render(),
    )
}

async fn jwks(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    let body = admin.state.keys.jwks_json();
    let etag = format!(
        "\"{}\"",
        token_jwt::base64url::encode(Sha256::digest(body.as_bytes()))
    );
    let cache = format!("public, max-age={}", 300);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/jwk-set+json")], body).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cache) {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    response
}

async fn ready(State(admin): State<Admin>) -> Response {
    // A read of a family that cannot exist: exercises the store round trip.
    let probe = token_refresh::FamilyId::generate();
    let store_ok = match probe {
        Ok(id) => admin.state.rotator.family(&id).await.is_ok(),
        Err(_) => false,
    };
    let signer = admin.state.keys.active();
    let signer_ok = signer.sign_async(b"readiness").await.is_ok();
    let body = format!("store: {}\nsigner: {}\n", ok(store_ok), ok(signer_ok));
    let status = if store_ok && signer_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

fn ok(b: bool) -> &'static str {
    if b { "ok" } else { "unavailable" }
}
