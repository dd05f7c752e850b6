//! `xtask`: this repository's automation, written in Rust.
//!
//! This is the [cargo-xtask](https://github.com/matklad/cargo-xtask) pattern: a small binary in
//! the workspace, run through the `cargo xtask` alias in `.cargo/config.toml`, instead of shell
//! scripts or a `Makefile`. It needs nothing but cargo to run, and works the same on every
//! machine. Subcommands:
//!
//! - `cargo xtask ci [--skip-deny]`: the one command CI runs (`.ci/run`) and developers run
//!   before pushing: prerequisites, fmt, clippy, tests, generated-code freshness, cargo-deny, a
//!   short fuzz run of every target, a one-minute soak and a release dry run of the next
//!   patch version (`ci.rs`).
//! - `cargo xtask bench [--quick]`: criterion benches, raw primitives and every load scenario
//!   against a release server with Redis, into `target/bench/report.{md,json}` (`bench.rs`).
//! - `cargo xtask soak [--minutes N] [--rate R]`: the mixed load for N minutes; fails on any
//!   error or on memory growth after the warm-up (`soak.rs`).
//! - `cargo xtask fuzz [--time SECONDS] [--no-keep] [TARGET...]`: runs the `cargo fuzz` targets
//!   in `fuzz/`, SECONDS each, then minimizes the committed corpora in `fuzz/corpus/` (not with
//!   `--no-keep`); a crash fails it, with the steps to a regression test (`fuzz.rs`).
//! - `cargo xtask release [--dry-run] VERSION`: bumps the version, dates CHANGELOG.md, packages
//!   the library crates and runs cargo-semver-checks, in a temporary worktree; without
//!   `--dry-run` it then commits and tags the release here (`release.rs`).
//! - `cargo xtask codegen [--check]`: regenerates the committed protobuf code (`codegen.rs`).
//! - `cargo xtask deny`: only the `cargo deny check` step of `ci` (`deny.rs`).
//!
//! `manifest.rs` holds the line-based Cargo.toml reading that `fuzz` and `release` share;
//! `services.rs` the processes (`redis-server`, the server, `token-loadgen`) that `bench` and
//! `soak` run.
#![allow(
    clippy::print_stdout,
    reason = "xtask is a command-line tool: printing progress is its job"
)]

mod bench;
mod ci;
mod codegen;
mod deny;
mod floor;
mod fuzz;
mod manifest;
mod modgraph;
mod release;
mod services;
mod soak;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use xshell::Shell;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  ci [--skip-deny]                 the full check CI runs: prerequisites, fmt, clippy, tests,
                                   codegen --check, cargo deny (skipped with --skip-deny),
                                   every fuzz target for 30s on a scratch corpus, a 1-minute
                                   soak, and release --dry-run of the next patch version
  bench [--quick] [--skip-criterion] [--skip-kms] [--skip-traces]
                                   the performance report: criterion benches, raw primitives,
                                   every token-loadgen scenario against a release server with
                                   Redis, KMS signing via moto; writes target/bench/report.md
                                   and report.json (--quick: short runs, under 3 minutes warm)
  soak [--minutes N] [--rate R]    the mixed load (R requests/s due, default 3000) for N
                                   minutes (default 10) on a release server with Redis; fails
                                   on any error or on RSS / Redis memory growth after warm-up;
                                   writes target/soak/report.md and report.json
  fuzz [--time SECONDS] [--no-keep] [TARGET...]
                                   run the cargo-fuzz targets of fuzz/ (all by default),
                                   SECONDS each (default 60), in fuzz/corpus/<target>/, then
                                   minimize those corpora (cargo fuzz cmin, capped at 256 KiB);
                                   --no-keep: fuzz a scratch copy, leave fuzz/corpus/ alone;
                                   fails on any crash artifact and says how to make it a
                                   regression test
  release [--dry-run] VERSION      bump the workspace to VERSION, date CHANGELOG.md's
                                   Unreleased section, cargo package the library crates (list
                                   their files) and cargo semver-checks them against the last
                                   v* tag, all in a temporary git worktree; without --dry-run,
                                   then make the same edits here, commit and tag vVERSION
                                   (refused on a dirty tree; nothing is pushed or published)
  codegen [--check]                regenerate the committed protobuf code; with --check,
                                   fail if it is stale instead of writing it
  deny                             only the cargo-deny step of ci (offline when
                                   TOKEN_SERVICE_ADVISORY_DB names an advisory-db snapshot)
  help                             print this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    };
    let result = match command.as_str() {
        "ci" => ci::run(rest),
        "fuzz" => fuzz::run(rest),
        "release" => release::run(rest),
        "codegen" => codegen::run(rest),
        "bench" => bench::run(rest),
        "soak" => soak::run(rest),
        "deny" => reject_unknown(rest, &[], "deny").and_then(|()| deny::check(&root_shell()?)),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("error: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root: the parent of this crate's directory, which `cargo run` passes in
/// `CARGO_MANIFEST_DIR` (the build-time value is the fallback for a binary run directly).
fn repo_root() -> PathBuf {
    let xtask_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    xtask_dir
        .parent()
        .map_or_else(|| xtask_dir.clone(), Path::to_path_buf)
}

/// A shell whose working directory is the repository root.
fn root_shell() -> Result<Shell> {
    let sh = Shell::new().context("cannot create a shell")?;
    sh.change_dir(repo_root());
    Ok(sh)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set (relative to where xtask was started,
/// as cargo reads it), otherwise `<repo>/target`. Always absolute.
fn target_dir() -> Result<PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => {
            let cwd = std::env::current_dir().context("cannot read the working directory")?;
            Ok(cwd.join(dir))
        }
        None => Ok(repo_root().join("target")),
    }
}

/// Prints a step heading.
fn heading(title: &str) {
    println!("\n==> {title}");
}

/// Whether an executable named `name` is on `PATH`.
fn on_path(name: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        let candidate = dir.join(name);
        std::fs::metadata(&candidate).is_ok_and(|meta| {
            use std::os::unix::fs::PermissionsExt as _;
            meta.is_file() && meta.permissions().mode() & 0o111 != 0
        })
    })
}

/// Installs the cargo subcommand `cargo-<name>` with `cargo install --locked` unless
/// `cargo <name> --version` already works and, when `minor` (like `"0.20"`) is given, reports
/// that minor version.
fn ensure_cargo_tool(sh: &Shell, name: &str, minor: Option<&str>) -> Result<()> {
    let installed = sh
        .cmd("cargo")
        .args([name, "--version"])
        .quiet()
        .ignore_stderr()
        .read()
        .ok();
    let wanted = |version: &str| {
        minor.is_none_or(|minor| {
            version
                .split_whitespace()
                .any(|w| w.starts_with(&format!("{minor}.")))
        })
    };
    if installed.as_deref().is_some_and(wanted) {
        return Ok(());
    }
    let package = format!("cargo-{name}");
    println!("{package} is missing or of another version: installing it (takes a few minutes)");
    let mut install = sh.cmd("cargo").args(["install", "--locked", &package]);
    if let Some(minor) = minor {
        install = install.args(["--version", &format!("^{minor}")]);
    }
    install
        .run()
        .with_context(|| format!("`cargo install --locked {package}` failed"))
}

/// Fails with a clear message when an option is not one of `known`.
fn reject_unknown(args: &[String], known: &[&str], command: &str) -> Result<()> {
    if let Some(arg) = args.iter().find(|arg| !known.contains(&arg.as_str())) {
        bail!("unknown argument `{arg}` for `cargo xtask {command}` (see `cargo xtask help`)");
    }
    Ok(())
}
