//! The token-service gRPC server: configuration, caller authentication, the
//! `token.v1.TokenService` implementation, the admin HTTP port, metrics and logging.
//!
//! The server is thin: it parses configuration ([`config`]), wires the library crates together
//! ([`state`]), maps their errors to gRPC statuses ([`status`]) and exposes operations
//! endpoints ([`admin`]). Token logic lives in `token-jwt`, `token-dpop` and `token-refresh`;
//! the generated messages and the `TokenService` trait it implements live in `token-proto`,
//! whose descriptor set it serves through gRPC reflection (`grpc.reflection.v1` and
//! `v1alpha`).
//!
//! [`start`] runs a server in the current tokio runtime and returns its bound addresses, which
//! is how the binary runs and how the end-to-end tests run it.

pub mod admin;
pub mod auth;
pub mod callers;
pub mod clock;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod revocation_watch;
pub mod service;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use token_proto::token_service_server::TokenServiceServer;
use tokio::sync::watch;

use crate::auth::{CallerAuth, CallerAuthLayer};
use crate::config::Config;
pub use crate::error::StartError;
use crate::service::TokenServiceImpl;
use crate::state::AppState;

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// The bound admin HTTP address.
    pub admin_addr: SocketAddr,
    /// The caller token generated at start-up, when no caller credential was configured.
    pub generated_caller_token: Option<String>,
    shutdown: watch::Sender<bool>,
    grpc: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    admin: tokio::task::JoinHandle<std::io::Result<()>>,
    grace: Duration,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish (up to `SHUTDOWN_GRACE_SECONDS`), and
    /// returns when both ports are closed.
    ///
    /// # Errors
    /// When a server task failed or did not drain in time.
    pub async fn shutdown(self) -> Result<(), StartError> {
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(self.grace, async {
            let grpc = self.grpc.await;
            let admin = self.admin.await;
            (grpc, admin)
        })
        .await;
        let Ok((grpc, admin)) = drained else {
            return Err(StartError::DrainTimeout);
        };
        grpc.map_err(StartError::Task)?.map_err(StartError::Serve)?;
        admin
            .map_err(StartError::Task)?
            .map_err(StartError::Admin)?;
        Ok(())
    }
}

/// tonic's server TLS builds its rustls configuration from the process-wide default provider.
/// rustls picks one by itself only when exactly one provider is compiled in; a binary that also
/// links ring (through reqwest, say, in an embedder's build or a feature-unified workspace test
/// build) has none, and tonic would panic. The server's TLS is aws-lc-rs, like the rest of the
/// project: installed here unless the process already chose a provider.
fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err only when another thread installed one in between: that one stands.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// Builds the state, binds both ports and serves until [`RunningServer::shutdown`].
///
/// # Errors
/// A [`StartError`] naming the variable at fault, or a bind failure.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let metrics = crate::metrics::install_recorder().map_err(StartError::Metrics)?;

    let mut digests = config.caller_token_digests.clone();
    let mtls = config
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca_file.is_some());
    let generated_caller_token = if digests.is_empty() && config.callers.is_none() && !mtls {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::getrandom(bytes.as_mut_slice()).map_err(StartError::Random)?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        digests.push(CallerAuth::digest(&token));
        // Logged once, on purpose: without it nobody could call the service started with no
        // configuration. Configure CALLER_TOKEN_SHA256 or mutual TLS in production.
        tracing::warn!(
            caller_token = %token,
            "no caller credentials configured (CALLER_TOKEN_SHA256, TLS_CLIENT_CA_FILE): generated a caller \
             token for this process; send it as `authorization: Bearer <token>`"
        );
        Some(token)
    } else {
        None
    };

    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let max_request_bytes = config.max_request_bytes;
    let auth = Arc::new(CallerAuth::with_callers(
        digests,
        config.callers.clone(),
        config.max_concurrent_per_caller,
    ));
    let tls = config.tls.clone();
    let grpc_listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.grpc_addr,
            source,
        })?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.admin_addr,
            source,
        })?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.grpc_addr,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.admin_addr,
            source,
        })?;

    let state = Arc::new(AppState::build(config).await?);
    let (shutdown, mut rx) = watch::channel(false);
    let service = TokenServiceServer::new(TokenServiceImpl::new(state.clone(), rx.clone()))
        .max_decoding_message_size(max_request_bytes);
    // `Check` of the empty name answers from the static status (liveness); `Check` of
    // `token.v1.TokenService` asks the store and the signer (readiness, as `/readyz`).
    let health_reporter = tonic_health::server::HealthReporter::new();
    health_reporter
        .set_serving::<TokenServiceServer<TokenServiceImpl>>()
        .await;
    let health = tonic_health::pb::health_server::HealthServer::new(
        crate::health::GrpcHealth::new(health_reporter, state.clone()),
    );
    // Both reflection versions: current tools ask for v1, older clients only know v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(token_proto::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().map_err(StartError::Reflection)?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(StartError::Reflection)?;

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        install_tls_provider();
        let read = |var: &'static str, path: &std::path::Path| {
            std::fs::read(path).map_err(|source| StartError::ReadFile {
                var,
                path: path.to_owned(),
                source,
            })
        };
        let identity = tonic::transport::Identity::from_pem(
            read("TLS_CERT_FILE", &tls.cert_file)?,
            read("TLS_KEY_FILE", &tls.key_file)?,
        );
        let mut tls_config = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &tls.client_ca_file {
            tls_config = tls_config.client_ca_root(tonic::transport::Certificate::from_pem(read(
                "TLS_CLIENT_CA_FILE",
                ca,
            )?));
        }
        builder = builder.tls_config(tls_config).map_err(StartError::Tls)?;
    }
    let router = builder
        .layer(CallerAuthLayer::new(auth))
        .add_service(service)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let mut grpc_rx = rx.clone();
    let grpc = tokio::spawn(router.serve_with_incoming_shutdown(
        futures_util::StreamExt::map(
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            |accepted| accepted.map(crate::transport::CoalescingIo::new),
        ),
        async move {
            let _ = grpc_rx.wait_for(|stop| *stop).await;
        },
    ));
    tokio::spawn(state.keys.clone().run(rx.clone()));
    let admin_router = crate::admin::router(state, metrics);
    let admin = tokio::spawn(async move {
        axum::serve(admin_listener, admin_router)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!(%grpc_addr, %admin_addr, "token-service listening");
    Ok(RunningServer {
        grpc_addr,
        admin_addr,
        generated_caller_token,
        shutdown,
        grpc,
        admin,
        grace,
    })
}
