//! `cargo xtask soak [--minutes N] [--rate R]`: the mixed load for a long time against a release
//! server with a real `redis-server`; fails unless there were zero errors and both the server's
//! RSS and Redis's memory stayed flat after the warm-up. Writes `target/soak/report.md` and
//! `report.json` with both over time.
//!
//! The server runs with short lifetimes (refresh tokens idle 20 s, families 60 s, DPoP proofs
//! 15 s) and the clients sign in again every 45 s, so the steady state, where as many families,
//! subject-index entries and replay entries expire as are created, is reached soon after the
//! warm-up. With production lifetimes Redis plateaus the same way, at creation rate ×
//! lifetime (a family's subject-index entry lives as long as the family's absolute lifetime),
//! only later.
#![allow(
    clippy::indexing_slicing,
    reason = "indexing a serde_json::Value by key yields Null when the key is missing: it never panics"
)]

use std::fmt::Write as _;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use token_testkit::RedisServer;
use xshell::cmd;

use crate::services::{Durations, Server, errors, load};
use crate::{heading, root_shell, target_dir};

/// Unmeasured seconds before memory is expected to be flat (longer than the family lifetime).
const WARMUP_SECONDS: u64 = 90;
/// Growth allowed between the first and the last sample after the warm-up.
const ALLOWED_GROWTH: f64 = 0.10;
/// Growth of a few MiB is noise at this size (allocator arenas, a connection buffer).
const ALLOWED_SLACK_BYTES: f64 = 4.0 * 1024.0 * 1024.0;

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut minutes: f64 = 10.0;
    let mut rate: u32 = 3000;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = |name: &str| {
            rest.next()
                .with_context(|| format!("{name} needs a value"))
                .cloned()
        };
        match arg.as_str() {
            "--minutes" => minutes = value("--minutes")?.parse().context("--minutes")?,
            "--rate" => rate = value("--rate")?.parse().context("--rate")?,
            other => bail!("unknown argument `{other}` for `cargo xtask soak`"),
        }
    }
    if !(minutes > 0.0 && minutes.is_finite()) {
        bail!("--minutes must be positive");
    }
    soak(minutes, rate)
}

/// Runs the soak; also called by `cargo xtask ci` with one minute.
pub(crate) fn soak(minutes: f64, rate: u32) -> Result<()> {
    let sh = root_shell()?;
    let out = target_dir()?.join("soak");
    std::fs::create_dir_all(&out)?;
    heading("cargo build --release (server and load generator)");
    cmd!(sh, "cargo build --release -p token-server -p token-loadgen")
        .run()
        .context("release build failed")?;
    let bin = target_dir()?.join("release");

    heading(&format!(
        "soak: mixed load, {rate} requests/s due (open loop), {minutes} min after {WARMUP_SECONDS} s of warm-up"
    ));
    let redis = RedisServer::start()?;
    let redis_url = redis.url();
    let server = Server::start(
        &bin,
        &out,
        &[
            ("REDIS_URL", redis_url.as_str()),
            ("REFRESH_TOKEN_TTL", "20"),
            ("REFRESH_FAMILY_LIFETIME", "60"),
            ("DPOP_MAX_AGE", "15"),
        ],
        "soak",
    )?;
    let every = if minutes <= 2.0 { "5" } else { "15" };
    let rate_arg = rate.to_string();
    let report = load(
        &bin.join("token-loadgen"),
        &server,
        &redis,
        "mixed",
        &Durations::new(WARMUP_SECONDS, minutes * 60.0),
        &[
            "--rate",
            &rate_arg,
            "--sample-every",
            every,
            // Clients sign in again before the 60 s family lifetime ends.
            "--family-seconds",
            "45",
        ],
    )?;
    drop(server);

    let verdict = verdict(&report);
    let md = markdown(&report, minutes, rate, &verdict);
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(out.join("report.md"), &md)?;
    println!("\n{md}");
    println!("soak: wrote {}", out.join("report.md").display());
    if !verdict.is_empty() {
        bail!("soak failed: {}", verdict.join("; "));
    }
    Ok(())
}

/// What went wrong, if anything.
fn verdict(report: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let errs = errors(report);
    if errs > 0 {
        problems.push(format!("{errs} requests failed: {}", report["errors"]));
    }
    if report["ok"].as_u64().unwrap_or(0) == 0 {
        problems.push("no request succeeded".into());
    }
    let timeline = report["timeline"].as_array().cloned().unwrap_or_default();
    for (key, scale, what) in [
        ("server_rss_kib", 1024.0, "server RSS"),
        ("redis_used_memory_bytes", 1.0, "Redis used_memory"),
    ] {
        let values: Vec<f64> = timeline
            .iter()
            .filter_map(|s| s[key].as_f64())
            .map(|v| v * scale)
            .collect();
        match (values.first(), values.last()) {
            (Some(first), Some(last)) if values.len() >= 2 => {
                let limit = first * (1.0 + ALLOWED_GROWTH) + ALLOWED_SLACK_BYTES;
                if *last > limit {
                    problems.push(format!(
                        "{what} grew from {:.1} MiB to {:.1} MiB (limit {:.1} MiB)",
                        first / 1048576.0,
                        last / 1048576.0,
                        limit / 1048576.0
                    ));
                }
            }
            _ => problems.push(format!("fewer than two {what} samples")),
        }
    }
    problems
}

fn markdown(report: &Value, minutes: f64, rate: u32, verdict: &[String]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Soak: {minutes} min of the mixed load at {rate} requests/s (open loop)\n\n\
         Answered {} requests, {} errors, {:.0} req/s; latency p50 {:.2} ms, p99 {:.2} ms, \
         p99.9 {:.2} ms, max {:.2} ms. Server CPU {:.1} µs per request, peak RSS {:.1} MiB.\n\n\
         Verdict: {}\n",
        report["ok"].as_u64().unwrap_or(0) + errors(report),
        errors(report),
        report["throughput"].as_f64().unwrap_or(0.0),
        report["latency"]["p50_us"].as_f64().unwrap_or(0.0) / 1000.0,
        report["latency"]["p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
        report["latency"]["p999_us"].as_f64().unwrap_or(0.0) / 1000.0,
        report["latency"]["max_us"].as_f64().unwrap_or(0.0) / 1000.0,
        report["server"]["cpu_us_per_request"]
            .as_f64()
            .unwrap_or(f64::NAN),
        report["server"]["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
        if verdict.is_empty() {
            "passed: zero errors, memory flat after the warm-up".to_owned()
        } else {
            format!("FAILED: {}", verdict.join("; "))
        }
    );
    let _ = writeln!(
        md,
        "| seconds after warm-up | server RSS MiB | Redis used_memory MiB |\n|---:|---:|---:|"
    );
    for s in report["timeline"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {:.0} | {:.1} | {:.2} |",
            s["seconds"].as_f64().unwrap_or(0.0),
            s["server_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            s["redis_used_memory_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
        );
    }
    md
}
