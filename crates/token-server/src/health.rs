//! Readiness, asked two ways: the admin port's `/readyz` ([`crate::admin`]) and the gRPC health
//! service's `Check` of `token.v1.TokenService` ([`GrpcHealth`]). Both run [`readiness`]: one
//! store round trip (a read of a family that cannot exist) and a look at the active signing key.
//!
//! The gRPC health service answers the empty service name (the process is up, the framework
//! answers: a liveness probe) from its static status, and `token.v1.TokenService` by asking
//! the store, so a Kubernetes `grpc` readiness probe naming the service sees what `/readyz`
//! sees:
//!
//! ```yaml
//! readinessProbe:
//!   grpc: { port: 50051, service: token.v1.TokenService }
//! livenessProbe:
//!   grpc: { port: 50051 }
//! ```
//!
//! `Watch` streams the static status (serving from start to shutdown): a store outage shows in
//! `Check`, which probes call, not as a stream event.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthService;

use crate::state::AppState;

/// What readiness found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// A store round trip succeeded.
    pub store: bool,
    /// When the store failed: the Redis eviction policy that makes it refuse work, if that is
    /// why.
    pub eviction_policy: Option<String>,
    /// The active signing key exists.
    pub signer: bool,
}

impl Readiness {
    /// Whether the server can mint and rotate tokens.
    pub fn ready(&self) -> bool {
        self.store && self.signer
    }
}

/// Checks the store (one round trip: a read of a family that cannot exist) and the signer.
pub async fn readiness(state: &AppState) -> Readiness {
    let store = match token_refresh::FamilyId::generate() {
        Ok(id) => state.rotator.family(&id).await.is_ok(),
        Err(_) => false,
    };
    // A Redis that may evict keys fails every operation: say why, and the fix.
    let eviction_policy = match &state.redis {
        Some(redis) if !store => redis.eviction_policy(),
        _ => None,
    };
    // The active key exists; for a KMS key, whether its breaker lets calls through shows in the
    // signer error metrics rather than in a Sign call per probe (KMS quota).
    let signer = state.keys.active().is_ok();
    Readiness {
        store,
        eviction_policy,
        signer,
    }
}

/// The gRPC health service: tonic-health's for the empty name and `Watch`, [`readiness`] for
/// `Check` of `token.v1.TokenService`.
pub struct GrpcHealth {
    inner: HealthService,
    state: Arc<AppState>,
}

impl GrpcHealth {
    /// The service over `reporter`'s static statuses and `state`'s store and keys.
    pub fn new(reporter: tonic_health::server::HealthReporter, state: Arc<AppState>) -> Self {
        Self {
            inner: HealthService::from_health_reporter(reporter),
            state,
        }
    }
}

impl std::fmt::Debug for GrpcHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcHealth").finish_non_exhaustive()
    }
}

/// The service name whose `Check` asks the store.
pub const READINESS_SERVICE: &str = token_proto::token_service_server::SERVICE_NAME;

#[tonic::async_trait]
impl Health for GrpcHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if request.get_ref().service != READINESS_SERVICE {
            return self.inner.check(request).await;
        }
        let status = if readiness(&self.state).await.ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        Ok(Response::new(HealthCheckResponse {
            status: status.into(),
        }))
    }

    type WatchStream = <HealthService as Health>::WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.inner.watch(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_the_token_service() {
        assert_eq!(READINESS_SERVICE, "token.v1.TokenService");
    }

    #[test]
    fn ready_needs_both_store_and_signer() {
        let r = |store, signer| Readiness {
            store,
            eviction_policy: None,
            signer,
        };
        assert!(r(true, true).ready());
        assert!(!r(false, true).ready());
        assert!(!r(true, false).ready());
    }
}
