//! The alerting rules (`deploy/prometheus/alerts.yaml`) and the Grafana dashboard
//! (`deploy/grafana/token-service.json`) are valid and query metrics that exist:
//!
//! - `promtool check rules` and `promtool test rules` (the unit tests of
//!   `deploy/prometheus/alerts.test.yaml`) pass, and every PromQL expression of the dashboard
//!   parses (checked by promtool as recording rules). promtool comes from the Debian package
//!   `prometheus` (`.ci/run` installs it); without it these tests fail, they never skip.
//! - every metric an alert or a panel queries is exported by an in-process server once a few
//!   RPCs have run, except the few listed in [`EXPORTED_ELSEWHERE`], which only other
//!   processes (resource servers) or failure paths this test cannot reach export; each of those
//!   must appear in the source of the crate that exports it, so the list cannot rot.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use token_proto::WatchRevocationsRequest;
use token_proto::revoke_token_request::Target;

use common::{
    Calls as _, authed, authed_as, caller_digest, dpop, generate, harness, http_get, proof_builder,
    refresh_as, revocation, temp_file, validate_get,
};

/// The alerting rules, from the repository root.
const ALERTS: &str = "deploy/prometheus/alerts.yaml";
/// Their promtool unit tests.
const ALERT_TESTS: &str = "deploy/prometheus/alerts.test.yaml";
/// The Grafana dashboard.
const DASHBOARD: &str = "deploy/grafana/token-service.json";

/// What a metric is, as far as the names in queries go: a histogram is queried as
/// `<name>_bucket`, `<name>_sum` and `<name>_count`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric the alerts or the dashboard query that the in-process server of this test does not
/// export: `crate_src` is the source directory of the crate that does.
struct Elsewhere {
    name: &'static str,
    kind: Kind,
    crate_src: &'static str,
}

/// The metrics queried that this test's server cannot show, each with who exports it.
const EXPORTED_ELSEWHERE: &[Elsewhere] = &[
    // token-server, only when a store operation fails (Redis unreachable or refusing writes);
    // the in-memory store of this test never fails. Exercised by tests/faults.rs.
    Elsewhere {
        name: "token_service_store_errors_total",
        kind: Kind::Counter,
        crate_src: "crates/token-server/src",
    },
    // token-server, only when the signer fails (KMS unreachable, its breaker open); a local
    // key does not fail. Exercised by tests/e2e.rs with the KMS emulator stopped.
    Elsewhere {
        name: "token_service_sign_errors_total",
        kind: Kind::Counter,
        crate_src: "crates/token-server/src",
    },
    // token-server, only when the managed keys (store) or a KMS alias cannot be read.
    Elsewhere {
        name: "token_service_key_sync_errors_total",
        kind: Kind::Counter,
        crate_src: "crates/token-server/src",
    },
    // token-kms's KmsSigner, in a server with KMS_KEY_ID, when a KMS Sign fails (`reason`,
    // e.g. `circuit_open`).
    Elsewhere {
        name: "token_kms_sign_errors_total",
        kind: Kind::Counter,
        crate_src: "crates/token-kms/src",
    },
    // token-kms's KmsSigner, in a server with KMS_KEY_ID: each KMS Sign call's latency.
    Elsewhere {
        name: "token_kms_sign_seconds",
        kind: Kind::Histogram,
        crate_src: "crates/token-kms/src",
    },
    // token-guard's RevocationWatcher (feature `watch`), in each resource server: whether its
    // WatchRevocations stream is up.
    Elsewhere {
        name: "token_guard_revocations_connected",
        kind: Kind::Gauge,
        crate_src: "crates/token-guard/src",
    },
    // token-guard's RevocationWatcher, in each resource server: 1 while the stream has been
    // down longer than the staleness limit.
    Elsewhere {
        name: "token_guard_revocations_stale",
        kind: Kind::Gauge,
        crate_src: "crates/token-guard/src",
    },
    // token-guard's RevocationWatcher, in each resource server: sids listed as revoked.
    Elsewhere {
        name: "token_guard_revocations_listed",
        kind: Kind::Gauge,
        crate_src: "crates/token-guard/src",
    },
    // token-guard's RevocationWatcher, in each resource server: revocation events received.
    Elsewhere {
        name: "token_guard_revocation_events_total",
        kind: Kind::Counter,
        crate_src: "crates/token-guard/src",
    },
    // token-guard's RevocationWatcher, in each resource server: reconnection attempts.
    Elsewhere {
        name: "token_guard_revocation_reconnects_total",
        kind: Kind::Counter,
        crate_src: "crates/token-guard/src",
    },
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs `promtool` with `args` in the repository root; it must succeed.
fn promtool(args: &[&str]) -> Output {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `promtool` ({e}): install the Debian package `prometheus` \
                 (apt-get install prometheus; .ci/run installs it), which provides promtool"
            )
        });
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    out
}

/// The `expr` of every rule of a Prometheus rule file: a one-line value, or a block scalar
/// (`|`, `>`, with chomping indicators) made of the lines indented deeper than the key.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        i += 1;
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let mut block = Vec::new();
            while i < lines.len() {
                let next = lines[i];
                let deeper = next.len() - next.trim_start().len() > indent;
                if !next.trim().is_empty() && !deeper {
                    break;
                }
                block.push(next.trim());
                i += 1;
            }
            out.push(block.join("\n").trim().to_owned());
        } else {
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            out.push(unquoted.to_owned());
        }
    }
    out
}

/// Every PromQL expression of the dashboard: each `expr`, and the `label_values(...)` query of
/// each query variable.
fn dashboard_exprs(dashboard: &Value) -> (Vec<String>, Vec<String>) {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        ("templating", _) => {}
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(dashboard, &mut exprs);
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .expect("a query variable's query")
                .to_owned()
        })
        .collect();
    (exprs, variables)
}

/// The metric names a PromQL expression mentions: identifiers (`[a-zA-Z_:][a-zA-Z0-9_:]*`,
/// outside strings and comments) that start with `token_`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                // A string (a label value, a regular expression): skipped, escapes too.
                while let Some(s) = chars.next() {
                    if s == '\\' && c != '`' {
                        chars.next();
                    } else if s == c {
                        break;
                    }
                }
            }
            '#' => {
                for s in chars.by_ref() {
                    if s == '\n' {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let mut ident = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' || n == ':' {
                        ident.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if ident.starts_with("token_") {
                    names.insert(ident);
                }
            }
            c if c.is_ascii_digit() => {
                // A number or a duration (`5m`, `1e3`): its letters are no identifier.
                while chars
                    .peek()
                    .is_some_and(|n| n.is_ascii_alphanumeric() || *n == '.')
                {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    names
}

/// The names and kinds of what a Prometheus text exposition holds (`# TYPE` lines, and the
/// names of the samples).
fn exposition(body: &str) -> BTreeMap<String, Option<Kind>> {
    let mut out = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let kind = match kind {
                "counter" => Some(Kind::Counter),
                "gauge" => Some(Kind::Gauge),
                "histogram" => Some(Kind::Histogram),
                _ => None,
            };
            out.insert(name.to_owned(), kind);
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            out.entry(name.to_owned()).or_insert(None);
        }
    }
    out
}

/// Whether `name`, as a query writes it, is one of `known` (name to kind): itself, or the
/// `_bucket`/`_sum`/`_count` series of a histogram.
fn is_known(name: &str, known: &dyn Fn(&str) -> Option<Option<Kind>>) -> bool {
    if known(name).is_some() {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| known(base) == Some(Some(Kind::Histogram)))
    })
}

fn elsewhere(name: &str) -> Option<Option<Kind>> {
    EXPORTED_ELSEWHERE
        .iter()
        .find(|e| e.name == name)
        .map(|e| Some(e.kind))
}

/// Every metric name the alerts and the dashboard query, with where each is queried.
fn queried_metrics() -> BTreeMap<String, BTreeSet<&'static str>> {
    let mut names: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    let alerts = rule_exprs(&read(ALERTS));
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let (panels, variables) = dashboard_exprs(&dashboard);
    for (exprs, what) in [
        (alerts, ALERTS),
        (panels, DASHBOARD),
        (variables, DASHBOARD),
    ] {
        for expr in exprs {
            for name in metric_names(&expr) {
                names.entry(name).or_default().insert(what);
            }
        }
    }
    names
}

/// The text of every `.rs` file under `dir`.
fn source_text(dir: &Path) -> String {
    let mut text = String::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                text.push_str(&std::fs::read_to_string(&path).unwrap());
                text.push('\n');
            }
        }
    }
    text
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let out = promtool(&["check", "rules", ALERTS]);
    let alerts = read(ALERTS);
    let rules = alerts
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("- alert:") || l.trim_start().starts_with("- record:")
        })
        .count();
    assert!(rules >= 10, "{ALERTS}: {rules} rules, expected at least 10");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("SUCCESS: {rules} rules found")),
        "promtool found another number of rules than the {rules} of {ALERTS}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The expressions this test reads are the ones promtool checked, one per rule.
    assert_eq!(
        rule_exprs(&alerts).len(),
        rules,
        "{ALERTS}: an expr per rule"
    );

    // Every alert has a `for`, a severity, a summary, a description and a runbook, and a unit
    // test that names it (the tests' cases, firing and not, are promtool's to check).
    let tests = read(ALERT_TESTS);
    let blocks: Vec<&str> = alerts.split("- alert:").skip(1).collect();
    for block in &blocks {
        let name = block.split_whitespace().next().unwrap();
        for key in [
            "for:",
            "severity:",
            "summary:",
            "description:",
            "runbook_url: https://github.com/token-service/token-service/blob/HEAD/README.md#",
        ] {
            assert!(block.contains(key), "alert {name} has no `{key}`");
        }
        let cases: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|case| case.contains(&format!("alertname: {name}\n")))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_labels:")),
            "{ALERT_TESTS}: alert {name} has no case where it fires"
        );
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "{ALERT_TESTS}: alert {name} has no case where it does not fire"
        );
    }
    // The runbook anchors are sections of the README.
    let readme = read("README.md");
    for anchor in alerts
        .split("README.md#")
        .skip(1)
        .map(|rest| rest.split_whitespace().next().unwrap())
        .collect::<BTreeSet<_>>()
    {
        let found = readme.lines().any(|l| {
            l.starts_with('#') && {
                let title = l.trim_start_matches('#').trim().to_lowercase();
                let slug: String = title
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect();
                slug == anchor
            }
        });
        assert!(
            found,
            "{ALERTS}: runbook anchor #{anchor} is no README heading"
        );
    }

    promtool(&["test", "rules", ALERT_TESTS]);
}

#[test]
fn the_dashboard_is_well_formed_and_its_queries_parse() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    assert!(
        dashboard["schemaVersion"].as_u64().unwrap() >= 39,
        "schemaVersion"
    );
    assert_eq!(dashboard["uid"], "token-service");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a `datasource` variable of type prometheus"
    );
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "panel id of {title} repeated"
        );
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: datasource"
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{title}: expr"
            );
        }
    }
    // RED per RPC from the request histogram, by its labels `rpc` and `code`.
    let (exprs, _) = dashboard_exprs(&dashboard);
    for want in [
        "sum by (rpc, code) (rate(token_service_request_seconds_count",
        "histogram_quantile(0.5, sum by (le, rpc) (rate(token_service_request_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, rpc) (rate(token_service_request_seconds_bucket",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(want)),
            "no panel queries `{want}`"
        );
    }

    // Every expression parses: promtool checks them as recording rules, Grafana's variables
    // replaced by values of their kind.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let promql = expr
            .replace("$__rate_interval", "5m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        assert!(!promql.contains('$'), "an unknown variable in {expr}");
        rules.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: {}\n",
            serde_json::to_string(&promql).unwrap()
        ));
    }
    let file = temp_file(rules.as_bytes());
    promtool(&["check", "rules", &file.path().to_string_lossy()]);
}

#[test]
fn the_metrics_exported_elsewhere_are_in_their_crates_and_queried() {
    let queried = queried_metrics();
    let mut sources = BTreeMap::new();
    for e in EXPORTED_ELSEWHERE {
        let text = sources
            .entry(e.crate_src)
            .or_insert_with(|| source_text(&root().join(e.crate_src)));
        assert!(
            text.contains(&format!("\"{}\"", e.name)),
            "{} is listed as exported by {}, whose source does not name it: update \
             EXPORTED_ELSEWHERE, the alerts and the dashboard",
            e.name,
            e.crate_src
        );
        let used = queried.keys().any(|q| {
            q == e.name
                || (e.kind == Kind::Histogram
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| q.strip_suffix(s) == Some(e.name)))
        });
        assert!(
            used,
            "{} is in EXPORTED_ELSEWHERE but no alert or panel queries it: remove it",
            e.name
        );
    }
}

/// A caller that may only introspect, to be refused the other RPCs.
const LIMITED: &str = "observability-limited-caller";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_the_dashboard_query_is_exported() {
    let queried = queried_metrics();
    assert!(
        queried.len() >= 20,
        "only {} metric names found in the queries: is the tokenizer broken? {queried:?}",
        queried.len()
    );

    let callers = temp_file(
        format!(
            "[[caller]]\nname = \"limited\"\ntoken_sha256 = \"{}\"\nrpcs = [\"IntrospectToken\"]\n",
            caller_digest(LIMITED)
        )
        .as_bytes(),
    );
    let callers_path = callers.path().to_string_lossy().into_owned();
    // Managed keys rotating every 6 s (published 5 s before they sign): key transitions, a
    // created key and the rotation gauges within seconds.
    let mut h = harness(&[
        ("JWKS_MAX_AGE", "2"),
        ("KEY_ROTATION_PERIOD", "6"),
        ("CALLERS_FILE", callers_path.as_str()),
    ])
    .await;

    // An open revocation stream (the watchers gauge; the events after its initial list).
    let mut stream = h
        .client
        .watch_revocations(authed(WatchRevocationsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    // A DPoP-bound grant, and its access token validated.
    let key = proof_builder();
    let bound = h
        .client
        .generate(token_proto::GenerateTokensRequest {
            dpop: Some(dpop(&key, None)),
            ..generate("observability-bound")
        })
        .await
        .unwrap();
    let validated = h
        .client
        .validate(validate_get(
            &key,
            "https://api.example/orders",
            &bound.access_token,
            None,
        ))
        .await
        .unwrap();
    assert!(validated.valid, "{validated:?}");
    // A refresh, then the old token again: reuse, the family revoked.
    let first = h.client.generate(generate("observability")).await.unwrap();
    let second = h
        .client
        .refresh(refresh_as(&first.refresh_token, "web"))
        .await
        .unwrap();
    let reuse = h
        .client
        .refresh(refresh_as(&first.refresh_token, "web"))
        .await;
    assert_eq!(reuse.unwrap_err().code(), tonic::Code::Unauthenticated);
    // The reuse revoked the family, its newest access token with it.
    let introspected = h.client.introspect(&second.access_token).await.unwrap();
    assert!(!introspected.active, "{introspected:?}");
    let introspected = h.client.introspect(&bound.access_token).await.unwrap();
    assert!(introspected.active, "{introspected:?}");
    // Failing calls: a malformed refresh token, an unknown caller, a caller without the right.
    let malformed = h
        .client
        .refresh(refresh_as("not-a-refresh-token", "web"))
        .await;
    assert!(malformed.is_err());
    let unknown = h
        .client
        .generate_tokens(authed_as("not-a-caller", generate("x")))
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::Unauthenticated);
    let denied = h
        .client
        .generate_tokens(authed_as(LIMITED, generate("x")))
        .await;
    assert_eq!(denied.unwrap_err().code(), tonic::Code::PermissionDenied);
    // A revocation, streamed to the open stream.
    let revoked = h
        .client
        .generate(generate("observability-revoked"))
        .await
        .unwrap();
    h.client
        .revoke(revocation(
            "web",
            Target::FamilyId(revoked.family_id.clone()),
            "test",
        ))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = stream.message().await.unwrap().expect("the stream is open");
            if event.sid == revoked.family_id {
                break;
            }
        }
    })
    .await
    .expect("the revocation on the stream within 10 s");

    // Polled: the key metrics follow the key schedule (a sync every second here).
    let started = Instant::now();
    let missing = loop {
        let response = http_get(h.server.admin_addr, "/metrics", "").await;
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let exported = exposition(body);
        let here = |name: &str| exported.get(name).copied();
        let missing: Vec<String> = queried
            .iter()
            .filter(|(name, _)| !is_known(name, &here) && !is_known(name, &elsewhere))
            .map(|(name, files)| format!("{name} (queried by {files:?})"))
            .collect();
        // An exception the server exports is no exception.
        for e in EXPORTED_ELSEWHERE {
            assert!(
                here(e.name).is_none(),
                "{} is exported by this server: remove it from EXPORTED_ELSEWHERE",
                e.name
            );
        }
        if missing.is_empty() || started.elapsed() > Duration::from_secs(30) {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        missing.is_empty(),
        "metrics queried by the alerts or the dashboard that the server does not export \
         (renamed? a label or suffix wrong? exported only by another process: add it to \
         EXPORTED_ELSEWHERE):\n{}",
        missing.join("\n")
    );
    drop(stream);
    h.server.shutdown().await.unwrap();
}

#[test]
fn the_tokenizer_finds_metric_names_only() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, op) (rate(token_service_store_seconds_bucket{job=~"token_x", op!='token_y'}[5m])))
        / ignoring(op) group_left token_a:recorded # token_comment
        and on (job) (time() - token_b_timestamp_seconds offset 1h) > 31 * 86400 + 1e3"#,
    );
    let want: BTreeSet<String> = [
        "token_service_store_seconds_bucket",
        "token_a:recorded",
        "token_b_timestamp_seconds",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, want);

    let exprs = rule_exprs(
        "rules:\n  - alert: A\n    expr: |\n      sum(token_a)\n        > 1\n    for: 1m\n  - alert: B\n    expr: token_b > 0\n  - alert: C\n    expr: \"token_c\"\n",
    );
    assert_eq!(exprs, ["sum(token_a)\n> 1", "token_b > 0", "token_c"]);

    let exported = exposition(
        "# TYPE token_h histogram\ntoken_h_bucket{le=\"0.1\"} 1\ntoken_h_sum 0.05\ntoken_h_count 1\n# TYPE token_c counter\ntoken_c 2\n",
    );
    let here = |name: &str| exported.get(name).copied();
    assert!(is_known("token_h_bucket", &here));
    assert!(is_known("token_h_count", &here));
    assert!(is_known("token_c", &here));
    assert!(!is_known("token_c_count", &here));
    assert!(!is_known("token_d", &here));
}
