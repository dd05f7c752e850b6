//! The `token-service` binary: reads the configuration from the environment, starts the server,
//! and on SIGTERM or Ctrl-C stops accepting and drains in-flight requests before exiting 0.

use std::process::ExitCode;

use token_server::config::{Config, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            token_server::telemetry::init(LogFormat::Pretty);
            tracing::error!("invalid configuration: {e}");
            eprintln!("token-service: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    token_server::telemetry::init(config.log_format);
    let server = match token_server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("token-service: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    wait_for_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    match server.shutdown().await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("shutdown: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
