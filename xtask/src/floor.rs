//! The floor of each load scenario (what a request cannot avoid, from primitives measured in
//! the same run) and, where the server spends more than its target, a `perf` profile of where
//! the rest goes. Part of `cargo xtask bench`.
//!
//! A request's floor is the sum of:
//! - the framework's own cost: the server CPU of the no-op gRPC health `Check` at the same
//!   concurrency;
//! - the raw cryptography it needs: aws-lc-rs ES256 signatures and verifications;
//! - the store round trips the design needs at minimum, each at what one round trip costs the
//!   server in a request: the `ready` scenario (the gRPC health `Check` of
//!   `token.v1.TokenService`, whose only work is one read through the server's own store client)
//!   less the no-op `Check`, at the same concurrency. Without a `ready` run the unit is a `PING`
//!   timed alone through token-store-redis (64 in flight, where the client writes many commands
//!   per system call: cheaper than any request's round trip); every floor also carries its ratio
//!   at that unit, the one earlier reports used.
#![allow(
    clippy::indexing_slicing,
    reason = "indexing a serde_json::Value by key yields Null when the key is missing: it never panics"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

/// What one request of a scenario cannot avoid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Needs {
    /// ES256 signatures (the access token).
    pub(crate) signs: f64,
    /// ES256 verifications (a DPoP proof, an access token).
    pub(crate) verifies: f64,
    /// Store round trips.
    pub(crate) round_trips: f64,
    /// Why, in a line of the report.
    pub(crate) why: &'static str,
}

const fn needs(signs: f64, verifies: f64, round_trips: f64, why: &'static str) -> Needs {
    Needs {
        signs,
        verifies,
        round_trips,
        why,
    }
}

/// Every timed scenario's needs and its target ratio (CPU per request ÷ floor), from the
/// performance issue. `mixed` is 1 generate : 10 refresh : 50 validate-dpop, weighted.
pub(crate) fn scenario_needs(scenario: &str) -> Option<(Needs, Option<f64>)> {
    let generate = needs(1.0, 0.0, 1.0, "1 sign; write the new family");
    let refresh = needs(1.0, 0.0, 1.0, "1 sign; rotate (one atomic script)");
    let validate = needs(
        0.0,
        2.0,
        2.0,
        "verify proof and access token; replay-cache insert, revocation check",
    );
    Some(match scenario {
        "generate" => (generate, Some(1.3)),
        "refresh" => (refresh, Some(1.3)),
        "generate-dpop" => (
            needs(
                1.0,
                1.0,
                2.0,
                "1 sign, verify proof; replay-cache insert, write the family",
            ),
            Some(1.4),
        ),
        "refresh-dpop" => (
            needs(
                1.0,
                1.0,
                2.0,
                "1 sign, verify proof; replay-cache insert, rotate",
            ),
            Some(1.4),
        ),
        "validate-dpop" => (validate, Some(1.4)),
        "introspect" => (
            needs(0.0, 1.0, 1.0, "verify the access token; revocation check"),
            Some(1.4),
        ),
        "mixed" => {
            let w = |f: fn(&Needs) -> f64| {
                (f(&generate) + 10.0 * f(&refresh) + 50.0 * f(&validate)) / 61.0
            };
            (
                needs(
                    w(|n| n.signs),
                    w(|n| n.verifies),
                    w(|n| n.round_trips),
                    "1 generate : 10 refresh : 50 validate-dpop",
                ),
                None,
            )
        }
        _ => return None,
    })
}

/// The floor of every scenario in `scenarios` (`token-loadgen` reports by name) from the
/// run's `primitives`: per scenario its CPU per request, the floor's components, the ratio
/// and the target.
pub(crate) fn floors(scenarios: &BTreeMap<String, Value>, primitives: &Value) -> Value {
    let cpu_of = |name: &str| {
        scenarios
            .get(name)
            .and_then(|h| h["server"]["cpu_us_per_request"].as_f64())
    };
    let noop = cpu_of("health");
    let sign = primitives["es256_sign_us"].as_f64();
    let verify = primitives["es256_verify_us"].as_f64();
    let ping_unit = primitives["store_round_trip_cpu_us"].as_f64();
    let (round_trip, unit) = store_unit(cpu_of("ready"), noop, ping_unit);
    let mut out = serde_json::Map::new();
    for (name, report) in scenarios {
        let Some((n, target)) = scenario_needs(name) else {
            continue;
        };
        let cpu = report["server"]["cpu_us_per_request"].as_f64();
        let crypto = sign.zip(verify).map(|(s, v)| n.signs * s + n.verifies * v);
        let store = round_trip.map(|r| n.round_trips * r);
        let floor = noop.zip(crypto).zip(store).map(|((a, b), c)| a + b + c);
        let ratio = cpu.zip(floor).map(|(c, f)| c / f);
        let floor_at_ping_unit = noop
            .zip(crypto)
            .zip(ping_unit)
            .map(|((a, b), r)| a + b + n.round_trips * r);
        let ratio_at_ping_unit = cpu.zip(floor_at_ping_unit).map(|(c, f)| c / f);
        out.insert(
            name.clone(),
            json!({
                "cpu_us_per_request": cpu,
                "floor_us": floor,
                "ratio": ratio,
                "target": target,
                "met": ratio.zip(target).map(|(r, t)| r <= t),
                "ratio_at_ping_unit": ratio_at_ping_unit,
                "components": {
                    "noop_request_us": noop,
                    "crypto_us": crypto,
                    "store_us": store,
                    "store_round_trip_us": round_trip,
                    "store_unit": unit,
                    "es256_signs": n.signs,
                    "es256_verifies": n.verifies,
                    "store_round_trips": n.round_trips,
                    "why": n.why,
                },
            }),
        );
    }
    Value::Object(out)
}

/// The floor's CPU per store round trip, and how it was measured: the `ready` request (one
/// store read) less the no-op request when both ran and the difference is positive, otherwise
/// the `PING` timed alone.
fn store_unit(
    ready: Option<f64>,
    noop: Option<f64>,
    ping: Option<f64>,
) -> (Option<f64>, &'static str) {
    match ready.zip(noop).map(|(r, n)| r - n) {
        Some(unit) if unit > 0.0 => (Some(unit), STORE_UNIT_REQUEST),
        _ => (ping, STORE_UNIT_PING),
    }
}

/// The names of the two store units in `report.json`.
pub(crate) const STORE_UNIT_REQUEST: &str = "ready request less no-op request";
pub(crate) const STORE_UNIT_PING: &str = "PING alone, 64 in flight";

/// Scenarios whose ratio misses its target, in `floors`.
pub(crate) fn missed(floors: &Value) -> Vec<String> {
    floors
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, f)| f["met"] == json!(false))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Where the server's CPU goes, by the symbol each `perf` sample landed in, grouped into these
/// buckets (the first matching pattern wins; symbols are demangled Rust paths, C functions of
/// aws-lc and libc, or kernel functions marked `[k]`).
const BUCKETS: &[(&str, &[&str])] = &[
    ("kernel (syscalls, loopback TCP, scheduling)", &["[k]"]),
    (
        "cryptography (aws-lc-rs)",
        &[
            "aws_lc",
            "ecp_nistz256",
            "p256",
            "ec_GFp",
            "bn_",
            "sha256",
            "sha512",
            "ed25519",
            "x25519",
            "fiat_",
            "ecdsa",
            "ECDSA",
            "EC_",
            "BN_",
            "SHA",
            "HMAC",
            "CRYPTO_",
        ],
    ),
    (
        "allocator (mimalloc)",
        // Not a bare `free`: it would claim h2's `free_stream` and the like.
        &["mi_", "mimalloc", "malloc", "realloc"],
    ),
    (
        "memcpy, memset (libc)",
        &["memcpy", "memmove", "memset", "memcmp"],
    ),
    (
        "Redis client (fred, RESP)",
        &["fred::", "redis_protocol", "<fred"],
    ),
    (
        "HTTP/2, gRPC (h2, hyper, tonic, tower, prost)",
        &[
            "h2::", "<h2", "hyper", "tonic", "tower", "prost", "http::", "<http", "bytes::",
            "<bytes",
        ],
    ),
    (
        "async runtime (tokio)",
        &["tokio", "parking_lot", "crossbeam", "std::sys", "futures_"],
    ),
    (
        "JSON, base64 (serde_json, base64)",
        &["serde_json", "serde::", "<serde", "base64", "ryu", "itoa"],
    ),
    (
        "tracing and metrics",
        &["tracing", "metrics", "quanta", "sketches", "<metrics"],
    ),
    (
        "token-service's own code",
        &[
            "token_server",
            "token_jwt",
            "token_dpop",
            "token_refresh",
            "token_store_redis",
            "token_kms",
            "token_jwks",
        ],
    ),
];

/// The bucket of one `perf report` symbol.
fn bucket(symbol: &str) -> &'static str {
    BUCKETS
        .iter()
        .find(|(_, patterns)| patterns.iter().any(|p| symbol.contains(p)))
        .map_or("other (std, core, unresolved)", |(name, _)| name)
}

/// What one store round trip costs the server in place: generate against Redis less generate
/// against the in-memory store, both measured in this run; `None` without both figures.
pub(crate) fn store_round_trip_in_place(r: &Value) -> Option<f64> {
    let redis = r["scenarios"]["generate"]["server"]["cpu_us_per_request"].as_f64()?;
    let memory = r["in_memory_generate"]["server"]["cpu_us_per_request"].as_f64()?;
    Some(redis - memory)
}

/// The paragraph comparing the floor's store units with the round trip's cost in `generate`.
fn in_place(md: &mut String, r: &Value) {
    let (Some(in_place), Some(memory), Some(ping)) = (
        store_round_trip_in_place(r),
        r["in_memory_generate"]["server"]["cpu_us_per_request"].as_f64(),
        r["primitives"]["store_round_trip_cpu_us"].as_f64(),
    ) else {
        return;
    };
    let request = request_store_unit(&r["floors"]);
    let _ = write!(
        md,
        "\nThe store round trip in place: generate against the embedded in-memory store costs \
         {memory:.1} µs of server CPU per request, so its one Redis round trip (its family \
         serialized, the command, the reply parsed) costs the server {in_place:.1} µs where it \
         runs"
    );
    if let Some(unit) = request {
        let _ = write!(
            md,
            ", {:.1}x the floor's unit of {unit:.1} µs (the `ready` request less the no-op one)",
            in_place / unit
        );
    }
    let _ = writeln!(
        md,
        ", and {:.1}x a `PING` timed alone with 64 in flight ({ping:.1} µs: the client then \
         writes many commands per system call, where a request's command is written alone and \
         its reply wakes the request's task).",
        in_place / ping,
    );
}

/// The store unit the floors used (every floor has the same): µs per round trip, and how it
/// was measured.
fn store_unit_of(floors: &Value) -> (Option<f64>, Option<&str>) {
    let components = floors
        .as_object()
        .and_then(|m| m.values().next())
        .map(|fl| &fl["components"]);
    (
        components.and_then(|c| c["store_round_trip_us"].as_f64()),
        components.and_then(|c| c["store_unit"].as_str()),
    )
}

/// The floors' store unit when it is one round trip in a request (`ready` less the no-op).
pub(crate) fn request_store_unit(floors: &Value) -> Option<f64> {
    match store_unit_of(floors) {
        (unit, Some(STORE_UNIT_REQUEST)) => unit,
        _ => None,
    }
}

/// Records the server (`pid`) with `perf` while `load` runs, and returns the share of its
/// samples per bucket, largest first. `perf` runs as long as the load (`seconds`).
pub(crate) fn profile(
    pid: u32,
    data: &Path,
    seconds: &str,
    load: impl FnOnce() -> Result<Value>,
) -> Result<Vec<(String, f64)>> {
    let mut record = Command::new("perf")
        .args(["record", "-F", "1999", "-p", &pid.to_string(), "-o"])
        .arg(data)
        .args(["--", "sleep", seconds])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting `perf record` (Debian package linux-perf)")?;
    let loaded = load();
    let status = record.wait().context("waiting for `perf record`")?;
    loaded?;
    if !status.success() {
        bail!("`perf record` failed ({status}); is perf_event_paranoid too strict?");
    }
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "-q",
            "--sort",
            "sym",
            "-i",
        ])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .context("running `perf report`")?;
    if !report.status.success() {
        bail!("`perf report` failed");
    }
    Ok(shares(&String::from_utf8_lossy(&report.stdout)))
}

/// Sums `perf report --sort sym` lines (`  12.34%  [k] do_syscall_64`) by bucket.
fn shares(report: &str) -> Vec<(String, f64)> {
    let mut by_bucket: BTreeMap<&'static str, f64> = BTreeMap::new();
    for line in report.lines() {
        let line = line.trim();
        let Some((percent, symbol)) = line.split_once('%') else {
            continue;
        };
        let Ok(percent) = percent.trim().parse::<f64>() else {
            continue;
        };
        *by_bucket.entry(bucket(symbol.trim())).or_default() += percent;
    }
    let mut out: Vec<(String, f64)> = by_bucket
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// The report's floor table, and the profile of each scenario that missed its target.
pub(crate) fn markdown(md: &mut String, r: &Value) {
    let Some(floors) = r["floors"].as_object() else {
        return;
    };
    let p = &r["primitives"];
    let f = |v: &Value| v.as_f64().map_or("n/a".into(), |x| format!("{x:.1}"));
    let (unit, unit_name) = store_unit_of(&r["floors"]);
    let _ = writeln!(
        md,
        "\n## Floor per scenario\n\n\
         A request's floor is what it cannot avoid, from this run's primitives: the no-op \
         request's server CPU ({} µs), its raw ES256 signatures ({} µs each) and verifications \
         ({} µs each), and the store round trips the design needs at minimum ({} µs of CPU \
         each: {}). The last column is the ratio at the unit earlier reports used, a `PING` \
         timed alone ({} µs).\n\n\
         | scenario | CPU µs/req | floor µs | no-op | crypto | store | ratio | target | met | ratio, `PING` unit |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
        f(&r["scenarios"]["health"]["server"]["cpu_us_per_request"]),
        f(&p["es256_sign_us"]),
        f(&p["es256_verify_us"]),
        unit.map_or("n/a".into(), |x| format!("{x:.1}")),
        match unit_name {
            Some(STORE_UNIT_REQUEST) => {
                "the `ready` request, a gRPC health `Check` of `token.v1.TokenService` whose only \
                 work is one read through the server's store client, less the no-op request"
            }
            _ => "one `PING` through token-store-redis, timed alone with 64 in flight",
        },
        f(&p["store_round_trip_cpu_us"]),
    );
    for (name, fl) in floors {
        let c = &fl["components"];
        let _ = writeln!(
            md,
            "| {name} ({}) | {} | {} | {} | {} | {} ({} RT) | {} | {} | {} | {} |",
            c["why"].as_str().unwrap_or(""),
            f(&fl["cpu_us_per_request"]),
            f(&fl["floor_us"]),
            f(&c["noop_request_us"]),
            f(&c["crypto_us"]),
            f(&c["store_us"]),
            c["store_round_trips"]
                .as_f64()
                // Whole counts as such ("10", not "10.00"); mixed's weighted mean with two digits.
                .map_or("?".into(), |n| if n.fract() == 0.0 {
                    format!("{n:.0}")
                } else {
                    format!("{n:.2}")
                }),
            fl["ratio"]
                .as_f64()
                .map_or("n/a".into(), |x| format!("{x:.2}x")),
            fl["target"]
                .as_f64()
                .map_or("—".into(), |x| format!("≤ {x}x")),
            match fl["met"].as_bool() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            },
            fl["ratio_at_ping_unit"]
                .as_f64()
                .map_or("n/a".into(), |x| format!("{x:.2}x")),
        );
    }
    in_place(md, r);
    let Some(profiles) = r["profiles"].as_object().filter(|p| !p.is_empty()) else {
        return;
    };
    let _ = writeln!(
        md,
        "\n### Where the rest goes\n\n\
         `perf record` of the server during a second run of each scenario that missed its \
         target; its samples by the function they landed in, grouped (µs = share × CPU per \
         request):\n"
    );
    for (name, buckets) in profiles {
        let cpu = floors
            .get(name)
            .and_then(|fl| fl["cpu_us_per_request"].as_f64());
        let _ = writeln!(
            md,
            "**{name}**\n\n| where | share | µs/req |\n|---|---:|---:|"
        );
        for b in buckets.as_array().into_iter().flatten() {
            let share = b[1].as_f64().unwrap_or(0.0);
            if share < 0.5 {
                continue;
            }
            let _ = writeln!(
                md,
                "| {} | {share:.1}% | {} |",
                b[0].as_str().unwrap_or("?"),
                cpu.map_or("n/a".into(), |c| format!("{:.1}", c * share / 100.0)),
            );
        }
        let _ = writeln!(md);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_lines_are_summed_by_bucket() {
        let report = "\
            30.00%  [k] do_syscall_64\n\
            10.00%  [k] tcp_sendmsg\n\
            20.00%  [.] aws_lc_0_29_0_ecp_nistz256_point_mul\n\
             5.00%  [.] _mi_malloc_generic\n\
             5.00%  [.] h2::proto::streams::streams::Streams<B,P>::recv_data\n\
             2.50%  [.] fred::protocol::connection::Connection::write\n\
             1.00%  [.] 0x00007f12\n\
            garbage line\n";
        let shares = shares(report);
        assert_eq!(
            shares.first(),
            Some(&(
                "kernel (syscalls, loopback TCP, scheduling)".to_owned(),
                40.0
            ))
        );
        let get = |name: &str| {
            shares
                .iter()
                .find(|(b, _)| b.starts_with(name))
                .map(|x| x.1)
        };
        assert_eq!(get("cryptography"), Some(20.0));
        assert_eq!(get("allocator"), Some(5.0));
        assert_eq!(get("HTTP/2"), Some(5.0));
        assert_eq!(get("Redis client"), Some(2.5));
        assert_eq!(get("other"), Some(1.0));
    }

    /// Scenarios with these CPU figures, and primitives of ES256 sign 15, verify 40 and a
    /// `PING` unit of 20 µs.
    fn run(cpu: &[(&str, f64)]) -> (BTreeMap<String, Value>, Value) {
        let scenarios = cpu
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    json!({ "server": { "cpu_us_per_request": v } }),
                )
            })
            .collect();
        let primitives = json!({
            "es256_sign_us": 15.0,
            "es256_verify_us": 40.0,
            "store_round_trip_cpu_us": 20.0,
        });
        (scenarios, primitives)
    }

    #[test]
    fn the_floor_adds_the_noop_the_crypto_and_the_round_trips() {
        let (scenarios, primitives) = run(&[
            ("health", 10.0),
            ("generate", 60.0),
            ("validate-dpop", 200.0),
            ("no-such", 1.0),
        ]);
        let f = floors(&scenarios, &primitives);
        // generate: 10 + 15 + 20 = 45
        assert_eq!(f["generate"]["floor_us"], json!(45.0));
        assert_eq!(f["generate"]["met"], json!(false));
        // validate-dpop: 10 + 2 x 40 + 2 x 20 = 130
        assert_eq!(f["validate-dpop"]["floor_us"], json!(130.0));
        // Without a `ready` run the unit is the PING: both ratios agree.
        assert_eq!(
            f["generate"]["components"]["store_unit"],
            json!(STORE_UNIT_PING)
        );
        assert_eq!(f["generate"]["ratio_at_ping_unit"], f["generate"]["ratio"]);
        assert!(f.get("no-such").is_none() && f.get("health").is_none());
        assert_eq!(
            missed(&f),
            vec!["generate".to_owned(), "validate-dpop".to_owned()]
        );
    }

    #[test]
    fn the_store_unit_is_the_ready_request_less_the_noop() {
        let (scenarios, primitives) = run(&[("health", 10.0), ("ready", 25.0), ("generate", 60.0)]);
        let f = floors(&scenarios, &primitives);
        let g = &f["generate"];
        // 10 + 15 + (25 - 10) = 40; at the PING unit 10 + 15 + 20 = 45.
        assert_eq!(g["floor_us"], json!(40.0));
        assert_eq!(g["ratio"], json!(1.5));
        assert_eq!(g["ratio_at_ping_unit"], json!(60.0 / 45.0));
        assert_eq!(g["components"]["store_round_trip_us"], json!(15.0));
        assert_eq!(g["components"]["store_unit"], json!(STORE_UNIT_REQUEST));
        assert!(f.get("ready").is_none(), "ready has no floor of its own");
        let mut md = String::new();
        markdown(&mut md, &json!({ "floors": f, "primitives": primitives }));
        assert!(
            md.contains("(15.0 µs of CPU each: the `ready` request"),
            "{md}"
        );
        assert!(md.contains("| 1.50x | ≤ 1.3x | **no** | 1.33x |"), "{md}");

        // A `ready` no dearer than the no-op (noise, or a run without it): the PING unit.
        assert_eq!(
            store_unit(Some(9.0), Some(10.0), Some(20.0)),
            (Some(20.0), STORE_UNIT_PING)
        );
        assert_eq!(
            store_unit(None, Some(10.0), Some(20.0)),
            (Some(20.0), STORE_UNIT_PING)
        );
    }

    #[test]
    fn the_round_trip_in_place_is_generate_less_its_in_memory_run() {
        let mut r = json!({
            "scenarios": { "generate": { "server": { "cpu_us_per_request": 90.0 } } },
            "in_memory_generate": { "server": { "cpu_us_per_request": 62.5 } },
            "primitives": { "store_round_trip_cpu_us": 5.5 },
        });
        assert_eq!(store_round_trip_in_place(&r), Some(27.5));
        let mut md = String::new();
        in_place(&mut md, &r);
        assert!(md.contains("costs the server 27.5 µs"), "{md}");
        assert!(
            md.contains("5.0x a `PING` timed alone with 64 in flight (5.5 µs"),
            "{md}"
        );
        // With a request-path unit in the floors, the paragraph compares with it too.
        r["floors"] = json!({ "generate": { "components": {
            "store_unit": STORE_UNIT_REQUEST, "store_round_trip_us": 11.0 } } });
        let mut md = String::new();
        in_place(&mut md, &r);
        assert!(md.contains("2.5x the floor's unit of 11.0 µs"), "{md}");
        // A run without the in-memory figure says nothing rather than a made-up number.
        r["in_memory_generate"] = Value::Null;
        assert_eq!(store_round_trip_in_place(&r), None);
        let mut md = String::new();
        in_place(&mut md, &r);
        assert!(md.is_empty());
    }
}
