//! The admin HTTP port: `/metrics` (Prometheus), `/.well-known/jwks.json` (with `ETag` and
//! `Cache-Control`), `/healthz` (the process is alive) and `/readyz` (the store and the signer
//! can be used: [`crate::health::readiness`], which the gRPC health service's `Check` of
//! `token.v1.TokenService` also runs).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

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
    let doc = admin.state.keys.jwks();
    let r = doc.respond(
        headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok()),
    );
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, r.body.map(|b| b.to_vec()).unwrap_or_default()).into_response();
    for (name, value) in r.headers {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::try_from(name),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(n, v);
        }
    }
    response
}

async fn ready(State(admin): State<Admin>) -> Response {
    let r = crate::health::readiness(&admin.state).await;
    let body = format!(
        "store: {}\nsigner: {}\n",
        store_status(r.store, r.eviction_policy.as_deref()),
        ok(r.signer)
    );
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

fn ok(b: bool) -> &'static str {
    if b { "ok" } else { "unavailable" }
}

/// The store's readiness line, naming the Redis eviction policy that makes it refuse work.
fn store_status(store_ok: bool, eviction_policy: Option<&str>) -> String {
    match (store_ok, eviction_policy) {
        (true, _) => ok(true).to_owned(),
        (false, Some(policy)) => {
            format!("Redis maxmemory-policy is {policy}; set noeviction")
        }
        (false, None) => ok(false).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evicting_redis_is_named_with_the_fix() {
        assert_eq!(store_status(true, None), "ok");
        assert_eq!(store_status(false, None), "unavailable");
        assert_eq!(
            store_status(false, Some("allkeys-lru")),
            "Redis maxmemory-policy is allkeys-lru; set noeviction"
        );
    }
}
