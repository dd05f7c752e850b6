//! `cargo xtask ci [--skip-deny]`: every check CI runs, in order, stopping at the first failure.
//!
//! Nothing it runs leaves the git tree dirty: the fuzz step works on scratch copies of the
//! corpora (`fuzz --no-keep`) and the release dry run in a temporary worktree.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use token_testkit::Venv;
use xshell::{Shell, cmd};

use crate::{
    codegen, deny, fuzz, heading, on_path, reject_unknown, release, repo_root, root_shell, soak,
    target_dir,
};

/// Seconds each fuzz target runs in CI: a smoke test that every target builds, starts from its
/// corpus and survives a short run; the long runs are `cargo xtask fuzz --time 600`.
const FUZZ_SECONDS: u64 = 30;

/// The soak's short form in CI: a minute of the mixed load after its warm-up, at a rate this
/// 2-core machine sustains beside the load generator; the long run is `cargo xtask soak`.
const SOAK_MINUTES: f64 = 1.0;
const SOAK_RATE: u32 = 2000;

pub(crate) fn run(args: &[String]) -> Result<()> {
    reject_unknown(args, &["--skip-deny"], "ci")?;
    let skip_deny = args.iter().any(|arg| arg == "--skip-deny");
    let start = Instant::now();
    let result = steps(skip_deny);
    let elapsed = start.elapsed().as_secs();
    let took = format!("{}m{:02}s", elapsed / 60, elapsed % 60);
    match &result {
        Ok(()) => println!("\nci: all steps passed in {took}"),
        Err(_) => println!("\nci: FAILED after {took}"),
    }
    result
}

fn steps(skip_deny: bool) -> Result<()> {
    let sh = root_shell()?;

    heading("prerequisites");
    prerequisites(&sh).context("prerequisites")?;

    heading("cargo fmt --check");
    cmd!(sh, "cargo fmt --all -- --check")
        .run()
        .context("formatting differs from rustfmt: run `cargo fmt --all`")?;

    heading("codegen --check");
    if codegen::any_proto() {
        codegen::codegen(true)?;
    } else {
        println!("skipped: no proto/*.proto");
    }

    heading("module cycles");
    crate::modgraph::check(&repo_root())
        .context("a module imports another that imports it back")?;

    heading("cargo clippy");
    cmd!(
        sh,
        "cargo clippy --workspace --all-targets --all-features -- -D warnings"
    )
    .run()
    .context("clippy found problems")?;

    heading("cargo test");
    cmd!(sh, "cargo test --workspace --all-features")
        .run()
        .context("tests failed")?;

    heading("cargo deny");
    if skip_deny {
        println!("skipped (--skip-deny)");
    } else if !repo_root().join("deny.toml").exists() {
        println!("skipped: no deny.toml");
    } else {
        deny::check(&sh).context("cargo deny check failed")?;
    }

    heading(&format!(
        "cargo xtask fuzz --time {FUZZ_SECONDS} --no-keep (every target)"
    ));
    fuzz::fuzz(FUZZ_SECONDS, false, &[]).context("fuzzing failed")?;

    heading(&format!(
        "cargo xtask soak --minutes {SOAK_MINUTES} (mixed load on a release build with Redis)"
    ));
    soak::soak(SOAK_MINUTES, SOAK_RATE).context("the soak failed")?;

    heading("cargo xtask release --dry-run (the next patch version)");
    release::rehearse_next_patch().context("the release dry run failed")?;
    Ok(())
}

/// Tools that some crates' tests need; each check turns on by itself once its crate exists.
fn prerequisites(sh: &Shell) -> Result<()> {
    let root = repo_root();
    let mut needed_any = false;

    if root.join("crates/token-store-redis").is_dir() {
        needed_any = true;
        for tool in ["redis-server", "redis-cli"] {
            if !on_path(tool) {
                bail!("`{tool}` is not on PATH: install it: apt-get install redis-server");
            }
        }
        println!("redis-server and redis-cli found");
    }

    if root.join("deploy/systemd").is_dir() {
        needed_any = true;
        // deploy/check.py verifies the systemd unit with it.
        if !on_path("systemd-analyze") {
            bail!("`systemd-analyze` is not on PATH: install it: apt-get install systemd");
        }
        println!("systemd-analyze found");
    }

    if root.join("deploy/prometheus").is_dir() {
        needed_any = true;
        // tests/observability.rs checks and unit-tests the alerting rules and the dashboard's
        // queries with it.
        if !on_path("promtool") {
            bail!("`promtool` is not on PATH: install it: apt-get install prometheus");
        }
        println!("promtool found");
    }

    if root.join("crates/token-kms").is_dir() {
        needed_any = true;
        // The same environment the tests' moto fixture creates when it is missing: the pinned
        // packages of crates/token-testkit/requirements.txt, installed once.
        let venv = Venv::ready_at(&target_dir()?.join("venv"))?;
        println!("Python venv ready: {}", venv.dir().display());
        sh.set_var(token_testkit::venv::VENV_VAR, venv.dir());
    }

    if !needed_any {
        println!("nothing needed yet");
    }
    Ok(())
}
