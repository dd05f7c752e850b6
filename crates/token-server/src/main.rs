//! The `token-service` binary: reads the configuration from the environment, starts the server,
//! and on SIGTERM or Ctrl-C stops accepting and drains in-flight requests before exiting 0.
//! Subcommands (`token-service --help`): `config check` validates the environment exactly as
//! start-up does and prints the configuration in force, secrets redacted; `config table`
//! prints the Markdown table of every variable (the README's); `keys wrap` creates a
//! KMS-wrapped signing key.
#![allow(
    clippy::print_stdout,
    reason = "a command-line program prints its results"
)]

use std::process::ExitCode;

use token_server::config::{Config, LogFormat};

/// The allocator of the binary only (libraries embedding the crates keep their own).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        return command(&args).await;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            let _ = token_server::telemetry::init(LogFormat::Pretty, "info", None);
            tracing::error!("invalid configuration: {e}");
            eprintln!("token-service: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let tracing = match token_server::telemetry::init(
        config.log_format,
        &config.log_filter,
        config.otlp.as_ref(),
    ) {
        Ok(t) => t,
        Err(e) => {
            let _ = token_server::telemetry::init(LogFormat::Pretty, "info", None);
            tracing::error!("invalid OpenTelemetry configuration: {e}");
            eprintln!("token-service: invalid configuration: OTEL_EXPORTER_OTLP_ENDPOINT: {e}");
            return ExitCode::from(2);
        }
    };
    let server = match token_server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("token-service: cannot start: {e}");
            if let Some(t) = tracing {
                t.shutdown().await;
            }
            return ExitCode::from(2);
        }
    };
    wait_for_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    let code = match server.shutdown().await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("shutdown: {e}");
            ExitCode::FAILURE
        }
    };
    // After the drain: the last requests' spans are exported too.
    if let Some(t) = tracing {
        t.shutdown().await;
    }
    code
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

const USAGE: &str = "\
usage: token-service                     run the server (configuration from the environment)
       token-service config check        validate the environment as start-up does and print
                                         the configuration in force (secrets redacted);
                                         exit 2 naming the variable on an error
       token-service config table        print every variable as a Markdown table
       token-service config env          print every variable at its default, commented out,
                                         as an environment file (the repository's .env.example)
       token-service keys wrap --kms-key-id ID [--alg ES256|EdDSA]
                                         generate a signing key, encrypt it with the KMS key ID,
                                         print the wrapped blob (JSON) for SIGNING_KEY_FILE
       token-service keys list           the fleet's managed keys in its store: kid, algorithm,
                                         state, dates, how each is wrapped
       token-service keys rotate         create the next managed key now (it still signs only
                                         after JWKS_MAX_AGE plus the margin)
       token-service keys public KID     print that managed key's public JWK (for
                                         PUBLISHED_KEY_FILES of a fleet being migrated)
       token-service keys retire KID     emergency: KID leaves every JWK Set and its tokens are
                                         refused within the sync interval; a retired signing
                                         key is replaced at once
       token-service help                this text
";

/// Reads the configuration for a subcommand, or says why not (exit code 2).
fn config_or_exit() -> Result<Config, ExitCode> {
    Config::from_env().map_err(|e| {
        eprintln!("token-service: invalid configuration: {e}");
        ExitCode::from(2)
    })
}

/// The subcommands.
async fn command(args: &[String]) -> ExitCode {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (kms_key_id, alg) = match strs.as_slice() {
        ["config", "table"] => {
            print!("{}", token_server::config::markdown_table());
            return ExitCode::SUCCESS;
        }
        ["config", "env"] => {
            print!("{}", token_server::config::env_example());
            return ExitCode::SUCCESS;
        }
        ["config", "check"] => {
            let config = match config_or_exit() {
                Ok(c) => c,
                Err(code) => return code,
            };
            let effective = config.effective();
            let width = effective
                .iter()
                .map(|(name, _)| name.len())
                .max()
                .unwrap_or(0);
            for (name, value) in effective {
                println!("{name:<width$}  {value}");
            }
            println!("\nconfiguration OK");
            return ExitCode::SUCCESS;
        }
        ["keys", "wrap", "--kms-key-id", id] => (*id, token_jwt::Algorithm::ES256),
        ["keys", "wrap", "--kms-key-id", id, "--alg", alg]
        | ["keys", "wrap", "--alg", alg, "--kms-key-id", id] => match *alg {
            "ES256" => (*id, token_jwt::Algorithm::ES256),
            "EdDSA" => (*id, token_jwt::Algorithm::EdDSA),
            other => {
                eprintln!("token-service: --alg must be ES256 or EdDSA, not {other:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        ["keys", op @ ("list" | "rotate")] => return keys_command(op, None).await,
        ["keys", "retire", kid] => return keys_command("retire", Some(kid)).await,
        ["keys", "public", kid] => return keys_command("public", Some(kid)).await,
        ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match config_or_exit() {
        Ok(c) => c,
        Err(code) => return code,
    };
    token_server::telemetry::init_for_command(&config.log_filter);
    match token_server::keys::wrap_command(&config, kms_key_id, alg).await {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("token-service: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `keys list`, `keys rotate`, `keys retire KID`: the fleet's managed keys, through its store.
async fn keys_command(op: &str, kid: Option<&str>) -> ExitCode {
    let config = match config_or_exit() {
        Ok(c) => c,
        Err(code) => return code,
    };
    token_server::telemetry::init_for_command(&config.log_filter);
    match token_server::keys::operator_command(&config, op, kid).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("token-service: {e}");
            ExitCode::FAILURE
        }
    }
}
