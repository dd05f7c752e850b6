//! Keeps the load generator working: every scenario, closed and open loop, runs for a moment
//! against the server (Redis store, in-process) with `verify` on, and must finish with no
//! failed request and every issued access token verified against the published JWKS. Speed is
//! not asserted here: `cargo xtask bench` measures it.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::collections::HashMap;
use std::time::Duration;

use token_loadgen::{Options, Scenario};
use token_server::auth::CallerAuth;
use token_server::config::Config;
use token_testkit::RedisServer;

const CALLER: &str = "loadgen-test-caller";

async fn server(redis: &RedisServer) -> token_server::RunningServer {
    let digest: String = CallerAuth::digest(CALLER)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("ADMIN_PORT", "0"),
        ("ISSUER", "https://issuer.loadgen.example"),
        ("CALLER_TOKEN_SHA256", digest.as_str()),
        ("REDIS_URL", redis.url().as_str()),
        (
            "REFRESH_TOKEN_PEPPER",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
        (
            "KEY_ENCRYPTION_KEY",
            "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    token_server::start(Config::from_vars(&vars).unwrap())
        .await
        .unwrap()
}

fn options(server: &token_server::RunningServer, scenario: Scenario) -> Options {
    Options {
        scenario,
        caller_token: Some(CALLER.into()),
        concurrency: 8,
        connections: 2,
        duration: Duration::from_millis(700),
        warmup: Duration::from_millis(100),
        verify: true,
        server_pid: Some(std::process::id()),
        sample_every: Duration::from_millis(200),
        ..Options::new(format!("http://{}", server.grpc_addr))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_without_errors_and_every_token_verifies() {
    let redis = RedisServer::start().unwrap();
    let server = server(&redis).await;
    for scenario in Scenario::ALL {
        let report = token_loadgen::run(&options(&server, scenario))
            .await
            .unwrap();
        assert_eq!(report.error_count(), 0, "{report}");
        assert!(report.ok > 0, "{scenario}: nothing was answered: {report}");
        assert_eq!(report.scenario, scenario.name());
        let usage = report.server.as_ref().expect("server usage with a pid");
        assert!(
            usage.peak_rss_kib > 0 && usage.cpu_seconds >= 0.0,
            "{report}"
        );
        assert!(!report.timeline.is_empty(), "{report}");
        assert!(report.latency.p50_us <= report.latency.p99_us);
        assert!(report.latency.p99_us <= report.latency.max_us);
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_keeps_its_schedule_and_counts_failures() {
    let redis = RedisServer::start().unwrap();
    let server = server(&redis).await;
    let report = token_loadgen::run(&Options {
        rate: Some(200.0),
        duration: Duration::from_secs(1),
        redis_url: Some(redis.url()),
        ..options(&server, Scenario::Mixed)
    })
    .await
    .unwrap();
    assert_eq!(report.error_count(), 0, "{report}");
    // 200 requests were due in the measured second; allow for the edges of the window.
    assert!((180..=220).contains(&report.ok), "{report}");
    assert!(
        report
            .timeline
            .iter()
            .all(|s| s.redis_used_memory_bytes.unwrap() > 0)
    );

    // A wrong caller token: every request fails, counted by status, and the run says so.
    let report = token_loadgen::run(&Options {
        caller_token: Some("not-the-caller".into()),
        verify: false,
        ..options(&server, Scenario::Generate)
    })
    .await
    .unwrap();
    assert_eq!(report.ok, 0, "{report}");
    assert!(report.error_count() > 0, "{report}");
    assert!(
        report
            .errors
            .keys()
            .all(|k| k.starts_with("Unauthenticated")),
        "{report}"
    );
    server.shutdown().await.unwrap();
}
