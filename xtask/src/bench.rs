//! `cargo xtask bench [--quick] [--skip-criterion] [--skip-kms] [--skip-traces]`: the
//! performance report.
//!
//! One run measures everything against the raw primitives of the same machine at the same
//! moment, and writes `target/bench/report.md` and `report.json`:
//!
//! 1. the criterion benches of token-jwt and token-dpop (they time their raw aws-lc-rs and
//!    RustCrypto primitives in the same groups);
//! 2. the raw primitives the server is compared with (`token-loadgen primitives`: ES256 and
//!    Ed25519 with aws-lc-rs, one Redis `PING` round trip, and the CPU of one store round trip
//!    through token-store-redis);
//! 3. every `token-loadgen` scenario against a release build of the server with a real
//!    `redis-server`, 64 requests in flight over 4 HTTP/2 connections, with the server's CPU
//!    time per request and peak RSS read from `/proc`, and the gRPC health `Check` (a no-op)
//!    as the framework's ceiling; each scenario's floor ([`crate::floor`]) and, for those
//!    above their target, a `perf` profile of where the rest goes; `generate` with OpenTelemetry
//!    trace export on, to a local OTLP sink, interleaved with it off; then one open-loop run
//!    at a fixed rate;
//! 4. signing through the local KMS emulator (moto), by a KMS key and by a KMS-wrapped key.
//!
//! Every figure is reported as measured and as a ratio to its primitive, and checked against
//! the targets of the performance issue. Nothing here is a timed test: a missed target is a
//! finding in the report, not a failure of the command.
#![allow(
    clippy::indexing_slicing,
    reason = "indexing a serde_json::Value by key yields Null when the key is missing: it never panics"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use token_testkit::{RedisServer, Venv};
use xshell::{Shell, cmd};

use crate::services::{
    CONCURRENCY, CONNECTIONS, Durations, Process, Server, errors, free_port, json_of, load,
};
use crate::{heading, reject_unknown, root_shell, target_dir};

/// The scenarios of `token-loadgen`, in report order; `health` is the ceiling.
const SCENARIOS: &[&str] = &[
    "health",
    // The health `Check` of token.v1.TokenService: one store read; less `health`, the floor's
    // store round trip.
    "ready",
    "generate",
    "generate-dpop",
    "refresh",
    "refresh-dpop",
    "validate-dpop",
    "introspect",
    "mixed",
];

/// CPU microseconds per request of node-oidc-provider 9.13 (in-memory store, ES256 JWT access
/// tokens) measured on this kind of machine, per matching scenario (from the issue).
const PEER_CPU_US: &[(&str, f64)] = &[
    ("generate", 360.0),
    ("generate-dpop", 1060.0),
    ("refresh", 617.0),
    ("refresh-dpop", 1230.0),
];

pub(crate) fn run(args: &[String]) -> Result<()> {
    reject_unknown(
        args,
        &["--quick", "--skip-criterion", "--skip-kms", "--skip-traces"],
        "bench",
    )?;
    let quick = args.iter().any(|a| a == "--quick");
    let durations = if quick {
        Durations::new(1, 4)
    } else {
        Durations::new(3, 15)
    };
    let started = Instant::now();
    let sh = root_shell()?;
    let out = target_dir()?.join("bench");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    heading("cargo build --release (server and load generator)");
    cmd!(sh, "cargo build --release -p token-server -p token-loadgen")
        .run()
        .context("release build failed")?;
    let bin = target_dir()?.join("release");

    let criterion = if args.iter().any(|a| a == "--skip-criterion") {
        BTreeMap::new()
    } else {
        heading("criterion: token-jwt and token-dpop");
        criterion(&sh, quick)?
    };

    heading("redis-server and the raw primitives");
    let redis = RedisServer::start()?;
    let loadgen = bin.join("token-loadgen");
    let primitives = json_of(
        Command::new(&loadgen)
            .args(["primitives", "--redis-url", &redis.url()])
            .args(["--seconds", if quick { "0.5" } else { "2" }]),
    )?;
    println!("{primitives}");

    heading("load scenarios against the release server (Redis store)");
    let redis_url = redis.url();
    let server = Server::start(&bin, &out, &[("REDIS_URL", &redis_url)], "redis")?;
    let mut scenarios = BTreeMap::new();
    for scenario in SCENARIOS {
        let report = load(&loadgen, &server, &redis, scenario, &durations, &[])?;
        scenarios.insert((*scenario).to_owned(), report);
    }
    let floors = crate::floor::floors(&scenarios, &primitives);
    let mut profiles = serde_json::Map::new();
    let missed = crate::floor::missed(&floors);
    if !missed.is_empty() {
        heading("perf profiles of the scenarios above their floor target");
    }
    // `perf` records as long as a rerun lasts (warm-up included: the same work).
    let seconds = format!(
        "{}",
        durations.warmup.parse::<f64>().unwrap_or(1.0)
            + durations.measure.parse::<f64>().unwrap_or(4.0)
    );
    for scenario in &missed {
        let data = out.join(format!("perf-{scenario}.data"));
        match crate::floor::profile(server.pid()?, &data, &seconds, || {
            load(&loadgen, &server, &redis, scenario, &durations, &[])
        }) {
            Ok(shares) => {
                profiles.insert(scenario.clone(), json!(shares));
            }
            Err(e) => {
                println!("no profile of {scenario}: {e:#}");
                profiles.insert(
                    scenario.clone(),
                    json!([[format!("no profile: {e:#}"), 0.0]]),
                );
            }
        }
    }
    let refresh_rate = scenarios
        .get("refresh")
        .and_then(|r| r["throughput"].as_f64())
        .unwrap_or(1000.0);
    let open_rate = format!("{:.0}", (refresh_rate * 0.6).max(100.0));
    println!("open loop: refresh due at {open_rate}/s (60% of the closed-loop rate)");
    let open_loop = load(
        &loadgen,
        &server,
        &redis,
        "refresh",
        &durations,
        &["--rate", &open_rate],
    )?;
    let traces = if args.iter().any(|a| a == "--skip-traces") {
        Value::Null
    } else {
        heading("trace export: generate with OTLP export on and off, interleaved");
        trace_export(&bin, &out, &redis, &server, &durations).context("the trace-export runs")?
    };
    // token-loadgen reads the server's VmHWM with each run; the largest is the peak.
    let peak_rss_kib = scenarios
        .values()
        .chain([&open_loop])
        .filter_map(|r| r["server"]["peak_rss_kib"].as_u64())
        .max();
    drop(server);

    // The same generate scenario against the embedded in-memory store: what the request
    // costs without its store round trip, so the report can say what that round trip costs
    // the server in place (beside the floor's unit, a `PING` measured on its own).
    heading("generate against the in-memory store (the store round trip's cost in place)");
    let in_memory = {
        let server = Server::start(&bin, &out, &[], "memory")?;
        load(&loadgen, &server, &redis, "generate", &durations, &[])?
    };

    let kms = if args.iter().any(|a| a == "--skip-kms") {
        Value::Null
    } else {
        heading("KMS signing against the local emulator (moto)");
        kms(&bin, &out, &redis, &durations).context("the KMS runs")?
    };

    let report = json!({
        "quick": quick,
        "criterion_median_ns": criterion,
        "primitives": primitives,
        "scenarios": scenarios,
        "floors": floors,
        "profiles": profiles,
        "open_loop": open_loop,
        "in_memory_generate": in_memory,
        "trace_export": traces,
        "server_peak_rss_kib": peak_rss_kib,
        "kms": kms,
        "machine": machine(),
        "seconds_taken": started.elapsed().as_secs(),
    });
    let json_path = out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md = markdown(&report);
    let md_path = out.join("report.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    println!("\n{md}");
    println!(
        "bench: wrote {} and {} in {} s",
        md_path.display(),
        json_path.display(),
        started.elapsed().as_secs()
    );
    Ok(())
}

/// Runs the criterion benches and returns every benchmark's median in nanoseconds by id.
fn criterion(sh: &Shell, quick: bool) -> Result<BTreeMap<String, f64>> {
    let extra: &[&str] = if quick {
        &["--warm-up-time", "0.5", "--measurement-time", "1"]
    } else {
        &[]
    };
    for (package, bench) in [("token-jwt", "jwt"), ("token-dpop", "dpop")] {
        cmd!(
            sh,
            "cargo bench -p {package} --all-features --bench {bench} -- --noplot {extra...}"
        )
        .run()
        .with_context(|| format!("cargo bench -p {package} failed"))?;
    }
    let mut medians = BTreeMap::new();
    let root = target_dir()?.join("criterion");
    for group in ["jwt_ES256", "jwt_EdDSA", "dpop_ES256", "dpop_EdDSA"] {
        let Ok(entries) = std::fs::read_dir(root.join(group)) else {
            continue;
        };
        for entry in entries.flatten() {
            let new = entry.path().join("new");
            let (Ok(meta), Ok(est)) = (
                read_json(&new.join("benchmark.json")),
                read_json(&new.join("estimates.json")),
            ) else {
                continue;
            };
            if let (Some(id), Some(median)) = (
                meta["full_id"].as_str(),
                est["median"]["point_estimate"].as_f64(),
            ) {
                medians.insert(id.to_owned(), median);
            }
        }
    }
    Ok(medians)
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The KMS runs: a KMS-held P-256 key (every signature is a KMS call) and a KMS-wrapped key
/// (unwrapped once at start, then signed locally).
fn kms(bin: &Path, out: &Path, redis: &RedisServer, durations: &Durations) -> Result<Value> {
    let venv = Venv::ready_at(&target_dir()?.join("venv"))
        .context("the moto emulator's Python environment (or pass --skip-kms)")?;
    let python = venv.python();
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let _moto = Process::spawn(
        Command::new(venv.bin("moto_server")).args(["-p", &port.to_string()]),
        &out.join("moto.log"),
        port,
        "moto_server",
    )?;
    let create = |spec: &str, usage: &str| -> Result<String> {
        let script = format!(
            "import boto3\nc = boto3.client('kms', endpoint_url='{url}', region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n\
             print(c.create_key(KeySpec='{spec}', KeyUsage='{usage}')['KeyMetadata']['KeyId'])"
        );
        let output = Command::new(&python).args(["-c", &script]).output()?;
        if !output.status.success() {
            bail!(
                "creating a KMS key: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let aws = [
        ("KMS_ENDPOINT_URL", url.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let loadgen = bin.join("token-loadgen");
    let redis_url = redis.url();

    // Every signature is a call to the emulator: a short run at 16 in flight finds its rate.
    let signing_key = create("ECC_NIST_P256", "SIGN_VERIFY")?;
    let mut env = aws.to_vec();
    env.extend([
        ("REDIS_URL", redis_url.as_str()),
        ("KMS_KEY_ID", signing_key.as_str()),
    ]);
    let server = Server::start(bin, out, &env, "kms")?;
    let kms_signed = load(
        &loadgen,
        &server,
        redis,
        "generate",
        &Durations::new(1, 3),
        &["--concurrency", "16"],
    )?;
    drop(server);

    let wrapping_key = create("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")?;
    let blob = Command::new(bin.join("token-service"))
        .args([
            "keys",
            "wrap",
            "--kms-key-id",
            &wrapping_key,
            "--alg",
            "ES256",
        ])
        .envs(aws.iter().copied())
        .output()?;
    if !blob.status.success() {
        bail!("keys wrap: {}", String::from_utf8_lossy(&blob.stderr));
    }
    let blob_path = out.join("wrapped-key.json");
    std::fs::write(&blob_path, &blob.stdout)?;
    let blob_path = blob_path.to_string_lossy().into_owned();
    let mut env = aws.to_vec();
    env.extend([
        ("REDIS_URL", redis_url.as_str()),
        ("SIGNING_KEY_FILE", blob_path.as_str()),
        // The KMS key that may unwrap it: the server refuses a wrapped key without it.
        ("WRAPPING_KMS_KEY_ID", wrapping_key.as_str()),
    ]);
    let server = Server::start(bin, out, &env, "kms-wrapped")?;
    let wrapped = load(&loadgen, &server, redis, "generate", durations, &[])?;
    Ok(json!({ "kms_signed_generate": kms_signed, "wrapped_key_generate": wrapped }))
}

/// `generate` against the server without trace export (`off`) and a second one exporting to
/// `token-loadgen otlp-sink` at the default sampler, in the order off, on, on, off, each
/// server's CPU per request averaged over its two runs.
fn trace_export(
    bin: &Path,
    out: &Path,
    redis: &RedisServer,
    off: &Server,
    durations: &Durations,
) -> Result<Value> {
    let port = free_port()?;
    let count_file = out.join("otlp-spans.count");
    let _ = std::fs::remove_file(&count_file);
    let _sink = Process::spawn(
        Command::new(bin.join("token-loadgen"))
            .args(["otlp-sink", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--count-file")
            .arg(&count_file),
        &out.join("otlp-sink.log"),
        port,
        "token-loadgen otlp-sink",
    )?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let redis_url = redis.url();
    let on = Server::start(
        bin,
        out,
        &[
            ("REDIS_URL", &redis_url),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ],
        "otlp",
    )?;
    let loadgen = bin.join("token-loadgen");
    let cpu = |r: &Value| r["server"]["cpu_us_per_request"].as_f64();
    let (mut cpu_off, mut cpu_on) = (Vec::new(), Vec::new());
    // Off, on, on, off: a drift over the four runs (the store's indexes grow with every
    // family issued; the machine's speed wanders) weighs on both sides alike, where
    // alternating (off, on, off, on) would charge it to export.
    for export in [false, true, true, false] {
        let (server, into) = if export {
            (&on, &mut cpu_on)
        } else {
            (off, &mut cpu_off)
        };
        into.extend(cpu(&load(
            &loadgen,
            server,
            redis,
            "generate",
            durations,
            &[],
        )?));
    }
    drop(on);
    let spans = std::fs::read_to_string(&count_file)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if spans == 0 {
        bail!(
            "the OTLP sink received no span: the server did not export (its log: {})",
            out.join("server-otlp.log").display()
        );
    }
    let mean = |v: &[f64]| {
        #[allow(clippy::cast_precision_loss, reason = "two values")]
        let n = v.len() as f64;
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / n)
    };
    let (off_mean, on_mean) = (mean(&cpu_off), mean(&cpu_on));
    Ok(json!({
        "sampler": "parentbased_traceidratio, ratio 0.1 (the default)",
        "cpu_us_per_request_off": cpu_off,
        "cpu_us_per_request_on": cpu_on,
        "ratio": on_mean.zip(off_mean).map(|(a, b)| a / b),
        "spans_received": spans,
    }))
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    json!({ "cpu": cpu, "cores": cores })
}

/// The figure at `path` (like `scenarios.generate.throughput`) as a number.
fn num(report: &Value, path: &str) -> Option<f64> {
    path.split('.')
        .try_fold(report, |v, key| v.get(key))
        .and_then(Value::as_f64)
}

/// One target of the performance issue, checked.
struct Check {
    what: String,
    measured: String,
    target: String,
    met: Option<bool>,
}

fn checks(r: &Value) -> Vec<Check> {
    let mut out = Vec::new();
    let mut ratio = |what: &str, a: Option<f64>, b: Option<f64>, max: f64| {
        let value = a.zip(b).map(|(a, b)| a / b);
        out.push(Check {
            what: what.to_owned(),
            measured: value.map_or("n/a".into(), |v| format!("{v:.2}x")),
            target: format!("≤ {max}x"),
            met: value.map(|v| v <= max),
        });
    };
    let crit = |id: &str| num(r, &format!("criterion_median_ns.{id}"));
    for alg in ["ES256", "EdDSA"] {
        ratio(
            &format!("token-jwt {alg} mint ÷ raw sign"),
            crit(&format!("jwt/{alg}/mint/token-jwt/aws-lc-rs")),
            crit(&format!("jwt/{alg}/raw-sign/aws-lc-rs")),
            1.15,
        );
        ratio(
            &format!("token-jwt {alg} verify ÷ raw verify"),
            crit(&format!("jwt/{alg}/verify/token-jwt/aws-lc-rs")),
            crit(&format!("jwt/{alg}/raw-verify/aws-lc-rs")),
            1.1,
        );
    }
    ratio(
        "token-dpop ES256 validation ÷ raw verify",
        crit("dpop/ES256/full validation/aws-lc-rs"),
        crit("dpop/ES256/raw verify/aws-lc-rs"),
        1.3,
    );
    if let Some(floors) = r["floors"].as_object() {
        for (scenario, f) in floors {
            if let Some(target) = f["target"].as_f64() {
                ratio(
                    &format!("server CPU per {scenario} ÷ its floor"),
                    f["cpu_us_per_request"].as_f64(),
                    f["floor_us"].as_f64(),
                    target,
                );
            }
        }
    }
    let sign = num(r, "primitives.es256_sign_us");
    ratio(
        "server CPU per GenerateTokens ÷ raw ES256 sign",
        num(r, "scenarios.generate.server.cpu_us_per_request"),
        sign,
        3.0,
    );
    ratio(
        "server CPU per RefreshTokens ÷ raw ES256 sign",
        num(r, "scenarios.refresh.server.cpu_us_per_request"),
        sign,
        4.0,
    );
    for (scenario, peer) in PEER_CPU_US {
        ratio(
            &format!("server CPU per {scenario} ÷ node-oidc-provider ({peer} µs)"),
            num(
                r,
                &format!("scenarios.{scenario}.server.cpu_us_per_request"),
            ),
            Some(*peer),
            0.2,
        );
    }
    let ceiling = num(r, "scenarios.health.throughput");
    for (scenario, min_rate) in [
        ("generate", 8000.0),
        ("refresh", 8000.0),
        ("validate-dpop", 5000.0),
    ] {
        let rate = num(r, &format!("scenarios.{scenario}.throughput"));
        out.push(Check {
            what: format!("{scenario} throughput"),
            measured: rate.map_or("n/a".into(), |v| format!("{v:.0}/s")),
            target: format!("≥ {min_rate}/s"),
            met: rate.map(|v| v >= min_rate),
        });
        if scenario != "validate-dpop" {
            let share = rate.zip(ceiling).map(|(a, b)| a / b);
            out.push(Check {
                what: format!("{scenario} share of the no-op ceiling"),
                measured: share.map_or("n/a".into(), |v| format!("{:.0}%", v * 100.0)),
                target: "≥ 55%".into(),
                met: share.map(|v| v >= 0.55),
            });
        }
    }
    for scenario in SCENARIOS {
        let p99 = num(r, &format!("scenarios.{scenario}.latency.p99_us"));
        let errs = r["scenarios"].get(*scenario).map(errors);
        out.push(Check {
            what: format!("{scenario}: p99 at {CONCURRENCY} in flight, errors"),
            measured: format!(
                "{} ms, {}",
                p99.map_or("n/a".into(), |v| format!("{:.2}", v / 1000.0)),
                errs.map_or("n/a".into(), |e| e.to_string())
            ),
            target: "< 10 ms, 0".into(),
            met: p99.zip(errs).map(|(p, e)| p < 10_000.0 && e == 0),
        });
    }
    let rss = num(r, "server_peak_rss_kib");
    out.push(Check {
        what: "server peak RSS".into(),
        measured: rss.map_or("n/a".into(), |v| format!("{:.1} MiB", v / 1024.0)),
        target: "< 100 MiB".into(),
        met: rss.map(|v| v < 100.0 * 1024.0),
    });
    if r["trace_export"].is_object() {
        let ratio = num(r, "trace_export.ratio");
        out.push(Check {
            what: "generate CPU per request, trace export on (default sampler) ÷ off".into(),
            measured: ratio.map_or("n/a".into(), |v| format!("{v:.2}x")),
            target: "≤ 1.1x".into(),
            met: ratio.map(|v| v <= 1.1),
        });
    }
    let local = num(r, "scenarios.generate.throughput");
    let wrapped = num(r, "kms.wrapped_key_generate.throughput");
    out.push(Check {
        what: "KMS-wrapped key generate ÷ local key generate".into(),
        measured: wrapped
            .zip(local)
            .map_or("n/a".into(), |(a, b)| format!("{:.0}%", a / b * 100.0)),
        target: "≈ 100% (≥ 90%)".into(),
        met: wrapped.zip(local).map(|(a, b)| a / b >= 0.9),
    });
    out
}

fn markdown(r: &Value) -> String {
    let mut md = String::new();
    let quick = r["quick"].as_bool() == Some(true);
    let _ = writeln!(
        md,
        "# token-service benchmark report{}\n",
        if quick { " (quick)" } else { "" }
    );
    let _ = writeln!(
        md,
        "Machine: {} ({} cores), load generator, Redis and server sharing the cores. \
         Produced by `cargo xtask bench{}` in {} s.\n",
        r["machine"]["cpu"].as_str().unwrap_or("?"),
        r["machine"]["cores"],
        if quick { " --quick" } else { "" },
        r["seconds_taken"]
    );
    let p = &r["primitives"];
    let f = |v: &Value| v.as_f64().map_or("n/a".into(), |x| format!("{x:.1}"));
    let _ = writeln!(
        md,
        "Raw primitives in this run (aws-lc-rs): ES256 sign {} µs, verify {} µs; Ed25519 sign \
         {} µs, verify {} µs; Redis PING round trip {} µs (wall), {} µs of CPU per `PING` \
         through token-store-redis timed alone (64 in flight); {} µs of server CPU per store \
         round trip in a request (the `ready` request less the no-op one).\n",
        f(&p["es256_sign_us"]),
        f(&p["es256_verify_us"]),
        f(&p["ed25519_sign_us"]),
        f(&p["ed25519_verify_us"]),
        f(&p["redis_round_trip_us"]),
        f(&p["store_round_trip_cpu_us"]),
        f(&json!(crate::floor::request_store_unit(&r["floors"]))),
    );
    let _ = writeln!(
        md,
        "## Load scenarios (Redis store, {CONNECTIONS} HTTP/2 connections)\n\n\
         | scenario | req/s | of no-op ceiling | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | server CPU µs/req | ÷ ES256 sign |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let ceiling = num(r, "scenarios.health.throughput");
    let sign = num(r, "primitives.es256_sign_us");
    let ms = |v: &Value| {
        v.as_f64()
            .map_or("n/a".into(), |x| format!("{:.2}", x / 1000.0))
    };
    let mut rows: Vec<(String, &Value)> = SCENARIOS
        .iter()
        .filter_map(|s| r["scenarios"].get(*s).map(|v| ((*s).to_owned(), v)))
        .collect();
    rows.push(("refresh, open loop".into(), &r["open_loop"]));
    if let Some(kms) = r["kms"].as_object() {
        for (name, v) in kms {
            rows.push((name.replace('_', " "), v));
        }
    }
    for (name, s) in rows {
        let rate = s["throughput"].as_f64();
        let cpu = s["server"]["cpu_us_per_request"].as_f64();
        let label = match s["rate"].as_f64() {
            Some(due) => format!("{name} (due at {due:.0}/s)"),
            None => format!("{name} ({} in flight)", s["concurrency"]),
        };
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            rate.map_or("n/a".into(), |v| format!("{v:.0}")),
            rate.zip(ceiling)
                .map_or("n/a".into(), |(a, b)| format!("{:.0}%", a / b * 100.0)),
            ms(&s["latency"]["p50_us"]),
            ms(&s["latency"]["p90_us"]),
            ms(&s["latency"]["p99_us"]),
            ms(&s["latency"]["p999_us"]),
            errors(s),
            cpu.map_or("n/a".into(), |v| format!("{v:.1}")),
            cpu.zip(sign)
                .map_or("n/a".into(), |(a, b)| format!("{:.1}x", a / b)),
        );
    }
    crate::floor::markdown(&mut md, r);
    let _ = writeln!(
        md,
        "\n## Targets\n\n| check | measured | target | met |\n|---|---:|---:|:---:|"
    );
    for c in checks(r) {
        let met = match c.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        let _ = writeln!(md, "| {} | {} | {} | {met} |", c.what, c.measured, c.target);
    }
    if let Some(crit) = r["criterion_median_ns"]
        .as_object()
        .filter(|c| !c.is_empty())
    {
        let _ = writeln!(
            md,
            "\n## Criterion medians\n\n| benchmark | median µs |\n|---|---:|"
        );
        for (id, ns) in crit {
            let _ = writeln!(
                md,
                "| {id} | {:.2} |",
                ns.as_f64().unwrap_or(f64::NAN) / 1000.0
            );
        }
    }
    if let Some(t) = r["trace_export"].as_object() {
        let list = |v: Option<&Value>| {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_f64)
                        .map(|x| format!("{x:.1}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        let _ = writeln!(
            md,
            "\n## Trace export\n\n`generate` with OTLP/gRPC export to a local sink (`token-loadgen \
             otlp-sink`), sampler {}, interleaved with the same scenario on the server without \
             export (off, on, on, off): server CPU per request off {} µs, on {} µs; ratio {}; {} spans received.",
            t.get("sampler").and_then(Value::as_str).unwrap_or("?"),
            list(t.get("cpu_us_per_request_off")),
            list(t.get("cpu_us_per_request_on")),
            t.get("ratio")
                .and_then(Value::as_f64)
                .map_or("n/a".into(), |x| format!("{x:.2}x")),
            t.get("spans_received").and_then(Value::as_u64).unwrap_or(0),
        );
    }
    if r["kms"].is_object() {
        let _ = writeln!(
            md,
            "\nThe KMS-key run is bounded by the emulator (moto answers a few hundred signing \
             calls a second here); in production it is bounded by the account's KMS quota \
             (ECC_NIST_P256 signing: 300 requests/s per account and region by default). The \
             wrapped key is unwrapped once at start and signs locally."
        );
    }
    md
}
