//! The binary's command line, as an operator types it: `--help` lists the subcommands,
//! `config check` validates the environment as start-up does and prints it with every secret
//! redacted (exit 2 naming the variable on an error), `config table` prints the README's table
//! and `config env` the repository's `.env.example`; a Redis that may evict keys stops start-up
//! with exit code 2, naming `REDIS_URL`, the policy found and the fix.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

mod common;

use common::{binary, caller_digest, temp_file};

/// Runs the binary with `args` and `env`: (exit code, stdout, stderr).
async fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = binary();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[tokio::test]
async fn help_lists_every_subcommand() {
    for flag in ["--help", "-h", "help"] {
        let (code, out, _) = run(&[flag], &[]).await;
        assert_eq!(code, 0);
        for sub in ["config check", "config table", "config env", "keys wrap"] {
            assert!(out.contains(sub), "{flag}: {sub} missing:\n{out}");
        }
    }
    // An unknown subcommand is refused with the usage, exit 2.
    let (code, out, err) = run(&["frobnicate"], &[]).await;
    assert_eq!(code, 2);
    assert!(out.is_empty() && err.contains("config check"), "{err}");
}

#[tokio::test]
async fn config_check_prints_the_configuration_with_secrets_redacted() {
    let pepper = "a1".repeat(32);
    let nonce = "b2".repeat(32);
    let password = "hunter2-redis-password";
    let redis = format!("redis://:{password}@127.0.0.1:6379");
    let digest = caller_digest("cli-caller");
    let callers =
        temp_file(format!("[[caller]]\nname = \"cli\"\ntoken_sha256 = \"{digest}\"\n").as_bytes());
    let callers_path = callers.path().to_string_lossy().into_owned();
    let (code, out, err) = run(
        &["config", "check"],
        &[
            ("REDIS_URL", &redis),
            ("REFRESH_TOKEN_PEPPER", &pepper),
            ("KEY_ENCRYPTION_KEY", &pepper),
            ("DPOP_NONCE_KEY", &nonce),
            ("DPOP_NONCE_REQUIRED", "true"),
            ("DEFAULT_AUDIENCE", "https://api.example"),
            ("CALLERS_FILE", &callers_path),
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("configuration OK\n"), "{out}");
    // Every variable of the table is reported, one line each.
    let table = repo_file(".env.example");
    for name in table
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.split_once('=').map(|(n, _)| n))
    {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} not reported:\n{out}"
        );
    }
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap()
            .to_owned()
    };
    assert!(line("REFRESH_TOKEN_PEPPER").ends_with("(set, redacted)"));
    assert!(line("DPOP_NONCE_KEY").ends_with("(set, redacted)"));
    assert!(line("CALLERS_FILE").ends_with("1 callers: cli"));
    assert!(line("DEFAULT_AUDIENCE").ends_with("https://api.example"));
    for secret in [pepper.as_str(), nonce.as_str(), password, digest.as_str()] {
        assert!(!out.contains(secret) && !err.contains(secret), "leaked");
    }
}

#[tokio::test]
async fn config_check_exits_2_naming_the_variable_and_the_fix() {
    let (code, out, err) = run(
        &["config", "check"],
        &[("REDIS_URL", "redis://127.0.0.1:6379")],
    )
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("REFRESH_TOKEN_PEPPER") && err.contains("openssl rand -hex 32"),
        "{err}"
    );
    let (code, _, err) = run(&["config", "check"], &[("ACCESS_TOKEN_TTL", "ten")]).await;
    assert_eq!(code, 2);
    assert!(err.contains("ACCESS_TOKEN_TTL"), "{err}");
}

#[tokio::test]
async fn a_redis_that_may_evict_is_refused_at_start_up() {
    let redis = token_testkit::RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    redis
        .command(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        .unwrap();
    let url = redis.url();
    let pepper = "c3".repeat(32);
    let mut cmd = binary();
    cmd.env("REDIS_URL", &url)
        .env("REFRESH_TOKEN_PEPPER", &pepper)
        .env("KEY_ENCRYPTION_KEY", &pepper)
        .env("DEFAULT_AUDIENCE", "https://api.example")
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("ADMIN_PORT", "0");
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
        .await
        .expect("start-up is refused at once, not retried forever")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in ["REDIS_URL", "allkeys-lru", "noeviction"] {
        assert!(err.contains(want), "{want} missing: {err}");
    }
}

#[tokio::test]
async fn config_table_and_env_are_the_repositorys() {
    let (code, table, _) = run(&["config", "table"], &[]).await;
    assert_eq!(code, 0);
    assert!(
        repo_file("README.md").contains(&table),
        "the README's configuration table differs from `token-service config table`"
    );
    let (code, env, _) = run(&["config", "env"], &[]).await;
    assert_eq!(code, 0);
    assert_eq!(env, repo_file(".env.example"));
}
