//! The processes `cargo xtask bench` and `cargo xtask soak` run: a throwaway `redis-server`
//! (token-testkit's fixture), the release `token-service` binary, and `token-loadgen` runs
//! against them. Each process is killed when its handle is dropped, so an error never leaves
//! one behind.
#![allow(
    clippy::indexing_slicing,
    reason = "indexing a serde_json::Value by key yields Null when the key is missing: it never panics"
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::Value;
use token_testkit::RedisServer;
use xshell::{Shell, cmd};

/// Requests in flight during the closed-loop runs (the p99 condition).
pub(crate) const CONCURRENCY: &str = "64";
/// HTTP/2 connections they are spread over.
pub(crate) const CONNECTIONS: &str = "4";
/// The caller token the server is configured with (its SHA-256 is passed to the server).
const CALLER: &str = "bench-caller-token";
/// The refresh-token pepper of the benchmark server (a benchmark, not a secret).
const PEPPER: &str = "62656e63682d70657070657262656e63682d70657070657262656e63682d7065";
/// The key-encryption key of the benchmark server's managed keys (a benchmark, not a secret).
const KEY_ENCRYPTION_KEY: &str = "62656e63682d6b656b62656e63682d6b656b62656e63682d6b656b62656e6368";

/// How long each load run warms up and measures, in seconds (as `token-loadgen` takes them).
#[derive(Clone, Debug)]
pub(crate) struct Durations {
    pub(crate) warmup: String,
    pub(crate) measure: String,
}

impl Durations {
    pub(crate) fn new(warmup: impl ToString, measure: impl ToString) -> Self {
        Durations {
            warmup: warmup.to_string(),
            measure: measure.to_string(),
        }
    }
}

/// Runs a command that prints one JSON document.
pub(crate) fn json_of(command: &mut Command) -> Result<Value> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .with_context(|| format!("{command:?} did not print a JSON report: {stdout}"))
}

/// One `token-loadgen run` against `server` (64 in flight over 4 connections unless `extra`
/// says otherwise: later options override earlier ones).
pub(crate) fn load(
    loadgen: &Path,
    server: &Server,
    redis: &RedisServer,
    scenario: &str,
    durations: &Durations,
    extra: &[&str],
) -> Result<Value> {
    let report = json_of(
        Command::new(loadgen)
            .args(["run", "--json", "--scenario", scenario])
            .args(["--target", &server.target()])
            .args(["--concurrency", CONCURRENCY, "--connections", CONNECTIONS])
            .args([
                "--warmup",
                &durations.warmup,
                "--duration",
                &durations.measure,
            ])
            .args(["--server-pid", &server.pid()?.to_string()])
            .args(["--redis-url", &redis.url(), "--sample-every", "5"])
            .args(extra)
            .env("CALLER_TOKEN", CALLER),
    )?;
    println!("{}", summary(scenario, &report));
    Ok(report)
}

fn summary(scenario: &str, r: &Value) -> String {
    format!(
        "{scenario:<14} {:>8.0} req/s  p50 {:>6} µs  p99 {:>6} µs  errors {}  server {:.1} µs CPU/req",
        r["throughput"].as_f64().unwrap_or(0.0),
        r["latency"]["p50_us"],
        r["latency"]["p99_us"],
        errors(r),
        r["server"]["cpu_us_per_request"]
            .as_f64()
            .unwrap_or(f64::NAN),
    )
}

/// Failed requests of a `token-loadgen` report.
pub(crate) fn errors(r: &Value) -> u64 {
    r["errors"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// A free loopback port (token-testkit's picker).
pub(crate) fn free_port() -> Result<u16> {
    Ok(token_testkit::port::free_port()?)
}

/// How long a started service may take to listen.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A child process with its output in a log file, killed when dropped (token-testkit's).
pub(crate) struct Process(token_testkit::Process);

impl Process {
    /// Starts `command` with its output in `log` and waits until it listens on `port`.
    pub(crate) fn spawn(command: &mut Command, log: &Path, port: u16, what: &str) -> Result<Self> {
        let mut process = token_testkit::Process::spawn(command, log, "")
            .with_context(|| format!("starting {what}"))?;
        process
            .wait_listening(port, START_LIMIT)
            .with_context(|| format!("{what} did not come up; its log: {}", log.display()))?;
        Ok(Process(process))
    }
}

/// The release `token-service` binary.
pub(crate) struct Server {
    port: u16,
    process: Process,
}

impl Server {
    /// Starts `<bin>/token-service` with the benchmark's caller and pepper and `env`; its log
    /// goes to `<out>/server-<name>.log`.
    pub(crate) fn start(bin: &Path, out: &Path, env: &[(&str, &str)], name: &str) -> Result<Self> {
        let (port, admin) = (free_port()?, free_port()?);
        let mut command = Command::new(bin.join("token-service"));
        command
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("ADMIN_PORT", admin.to_string())
            .env("ISSUER", "https://bench.token-service.example")
            .env("CALLER_TOKEN_SHA256", sha256_hex(CALLER)?)
            .env("REFRESH_TOKEN_PEPPER", PEPPER)
            .env("KEY_ENCRYPTION_KEY", KEY_ENCRYPTION_KEY)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied());
        let process = Process::spawn(
            &mut command,
            &out.join(format!("server-{name}.log")),
            port,
            "token-service",
        )?;
        Ok(Server { port, process })
    }

    pub(crate) fn target(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn pid(&self) -> Result<u32> {
        self.process.0.id().context("token-service is not running")
    }
}

/// `sha256sum` of a string, hex (the form `CALLER_TOKEN_SHA256` takes).
fn sha256_hex(s: &str) -> Result<String> {
    let sh = Shell::new()?;
    let out = cmd!(sh, "sha256sum").stdin(s).read()?;
    out.split_whitespace()
        .next()
        .map(str::to_owned)
        .context("sha256sum printed nothing")
}
