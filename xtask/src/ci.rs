//! `cargo xtask ci [--skip-deny]`: every check CI runs, in order, stopping at the first failure.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use xshell::{Shell, cmd};

use crate::{codegen, deny, heading, on_path, reject_unknown, repo_root, root_shell, target_dir};

/// Python packages the KMS tests drive (a local AWS KMS emulator, and JWT checks from a second
/// implementation). Pinned so every CI run tests against the same emulator.
const PYTHON_PACKAGES: &[&str] = &["moto[server]==5.2.5", "PyJWT[crypto]==2.15.1"];

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

    if root.join("crates/token-kms").is_dir() {
        needed_any = true;
        let venv = target_dir()?.join("venv");
        let python = venv.join("bin/python");
        if !python.exists() {
            cmd!(sh, "python3 -m venv {venv}")
                .run()
                .context("cannot create the Python venv (is python3 with venv installed?)")?;
        }
        // A no-op when the pinned versions are already installed, so reruns stay fast.
        cmd!(
            sh,
            "{python} -m pip install --quiet --disable-pip-version-check {PYTHON_PACKAGES...}"
        )
        .run()
        .context("cannot install the Python test packages into the venv")?;
        println!("Python venv ready: {}", venv.display());
        sh.set_var("TOKEN_SERVICE_VENV", &venv);
    }

    if !needed_any {
        println!("nothing needed yet");
    }
    Ok(())
}
