//! `token-loadgen`: the command line of the load generator (see the library's documentation).
#![allow(
    clippy::print_stdout,
    reason = "a command-line tool: printing the report is its job"
)]

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use token_loadgen::{Options, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "token-loadgen",
    version,
    about = "Load generator for the token-service gRPC API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive one scenario against a running server and report throughput and latency.
    ///
    /// An option given twice takes its last value (scripts append overrides).
    #[command(args_override_self = true)]
    Run(RunArgs),
    /// Time the raw primitives (ES256 and Ed25519 with aws-lc-rs, a Redis round trip).
    Primitives {
        /// A Redis server to time PING against (`redis://host:port`).
        #[arg(long)]
        redis_url: Option<String>,
        /// Seconds per primitive.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// Receive OpenTelemetry traces (OTLP/gRPC) and count their spans, until killed: the
    /// collector of the benchmark's trace-export run.
    OtlpSink {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:4317")]
        listen: std::net::SocketAddr,
        /// A file holding the number of spans received so far, rewritten after each export.
        #[arg(long)]
        count_file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The server's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    target: String,
    /// One of: health, ready, generate, generate-dpop, refresh, refresh-dpop, validate-dpop,
    /// introspect, mixed.
    #[arg(long, default_value = "generate")]
    scenario: String,
    /// The caller token; default: the CALLER_TOKEN environment variable.
    #[arg(long, env = "CALLER_TOKEN", hide_env_values = true)]
    caller_token: Option<String>,
    /// Virtual clients (requests in flight).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Open loop at this many requests per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured warm-up seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Verify every issued access token against the JWKS.
    #[arg(long)]
    verify: bool,
    /// The server's process id, to report its CPU per request and peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Redis's URL, to report its memory over time.
    #[arg(long)]
    redis_url: Option<String>,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 10.0)]
    sample_every: f64,
    /// Start a new refresh-token family after this many seconds (a client signing in again
    /// before its grant ends; default: one family per virtual client for the whole run).
    #[arg(long)]
    family_seconds: Option<f64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn seconds(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{what}: not a duration: {s}"))
}

impl RunArgs {
    fn options(self) -> Result<Options, String> {
        Ok(Options {
            scenario: self
                .scenario
                .parse::<Scenario>()
                .map_err(|e| e.to_string())?,
            caller_token: self.caller_token,
            concurrency: self.concurrency,
            connections: self.connections,
            rate: self.rate,
            duration: seconds(self.duration, "duration")?,
            warmup: seconds(self.warmup, "warmup")?,
            verify: self.verify,
            server_pid: self.server_pid,
            redis_url: self.redis_url,
            sample_every: seconds(self.sample_every, "sample-every")?,
            family_lifetime: self
                .family_seconds
                .map(|s| seconds(s, "family-seconds"))
                .transpose()?,
            ..Options::new(self.target)
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("token-loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome: Result<bool, String> = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                let json = args.json;
                let options = args.options()?;
                let report = token_loadgen::run(&options)
                    .await
                    .map_err(|e| e.to_string())?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&report).map_err(|e| e.to_string())?
                    );
                } else {
                    println!("{report}");
                }
                Ok(report.error_count() == 0)
            }
            Command::Primitives {
                redis_url,
                seconds: s,
            } => {
                let budget = seconds(s, "seconds")?;
                let p = token_loadgen::primitives::measure(budget, redis_url.as_deref())
                    .await
                    .map_err(|e| e.to_string())?;
                println!("{}", serde_json::to_string(&p).map_err(|e| e.to_string())?);
                Ok(true)
            }
            Command::OtlpSink { listen, count_file } => {
                token_loadgen::otlp_sink::serve(listen, count_file)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(true)
            }
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        // The run finished but some requests failed: the report says which.
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("token-loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
