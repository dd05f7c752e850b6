//! What a run measured, as JSON (for `cargo xtask bench`) and as one readable line.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::Options;

/// Latency percentiles in microseconds, from the HDR histogram of the measured window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// The server process's resources over the measured window (with `--server-pid`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerUsage {
    /// CPU seconds (user + system, all threads) spent in the window.
    pub cpu_seconds: f64,
    /// CPU microseconds per answered request.
    pub cpu_us_per_request: f64,
    /// Peak resident set size of the process so far, KiB.
    pub peak_rss_kib: u64,
}

/// Memory at one moment of the run (with `--server-pid`, every `--sample-every`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the measured window started.
    pub seconds: f64,
    /// The server's resident set size, KiB.
    pub server_rss_kib: u64,
    /// Redis's `used_memory` (with `--redis-url`), bytes.
    pub redis_used_memory_bytes: Option<u64>,
}

/// The result of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Virtual clients (the most requests in flight).
    pub concurrency: usize,
    /// HTTP/2 connections.
    pub connections: usize,
    /// Open loop: the requested rate per second; closed loop: none.
    pub rate: Option<f64>,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Requests answered correctly in the window.
    pub ok: u64,
    /// Failed requests by gRPC status (and `oauth-error`) or wrong answer.
    pub errors: BTreeMap<String, u64>,
    /// Answered requests per second (correct or not).
    pub throughput: f64,
    /// Latency from when each request was due (open loop) or sent (closed loop).
    pub latency: Latency,
    /// The server's CPU and memory.
    pub server: Option<ServerUsage>,
    /// Memory over time.
    pub timeline: Vec<Sample>,
}

impl Report {
    pub(crate) fn new(
        options: &Options,
        latency: &Histogram<u64>,
        ok: u64,
        errors: BTreeMap<String, u64>,
        cpu: Option<(f64, u64)>,
        timeline: Vec<Sample>,
    ) -> Self {
        let seconds = options.duration.as_secs_f64();
        let answered = ok + errors.values().sum::<u64>();
        Report {
            scenario: options.scenario.name().to_owned(),
            concurrency: options.concurrency,
            connections: options.connections,
            rate: options.rate,
            seconds,
            ok,
            errors,
            throughput: answered as f64 / seconds.max(f64::MIN_POSITIVE),
            latency: Latency {
                p50_us: latency.value_at_quantile(0.50),
                p90_us: latency.value_at_quantile(0.90),
                p99_us: latency.value_at_quantile(0.99),
                p999_us: latency.value_at_quantile(0.999),
                max_us: latency.max(),
            },
            server: cpu.map(|(cpu_seconds, peak_rss_kib)| ServerUsage {
                cpu_seconds,
                cpu_us_per_request: cpu_seconds * 1e6 / (answered.max(1) as f64),
                peak_rss_kib,
            }),
            timeline,
        }
    }

    /// Requests that failed.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency;
        write!(
            f,
            "{:<14} {:>9.0} req/s  p50 {:>6} µs  p90 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs  \
             max {:>7} µs  ok {}  errors {}",
            self.scenario,
            self.throughput,
            l.p50_us,
            l.p90_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
            self.ok,
            self.error_count()
        )?;
        if let Some(s) = &self.server {
            write!(
                f,
                "  server {:.1} µs CPU/req, peak RSS {:.1} MiB",
                s.cpu_us_per_request,
                s.peak_rss_kib as f64 / 1024.0
            )?;
        }
        for (kind, n) in &self.errors {
            write!(f, "\n    {n} × {kind}")?;
        }
        Ok(())
    }
}
