//! `xtask`: this repository's automation, written in Rust.
//!
//! This is the [cargo-xtask](https://github.com/matklad/cargo-xtask) pattern: a small binary in
//! the workspace, run through the `cargo xtask` alias in `.cargo/config.toml`, instead of shell
//! scripts or a `Makefile`. It needs nothing but cargo to run, and works the same on every
//! machine. Subcommands:
//!
//! - `cargo xtask ci [--skip-deny]`: the one command CI runs (`.ci/run`) and developers run
//!   before pushing: prerequisites, fmt, clippy, tests, generated-code freshness, cargo-deny.
//! - `cargo xtask fuzz [--time SECONDS] [TARGET...]`: runs the `cargo fuzz` targets in `fuzz/`.
//! - `cargo xtask codegen [--check]`: regenerates the committed protobuf code (a stub for now).
//! - `cargo xtask deny`: only the `cargo deny check` step of `ci`.
#![allow(
    clippy::print_stdout,
    reason = "xtask is a command-line tool: printing progress is its job"
)]

mod ci;
mod codegen;
mod deny;
mod fuzz;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use xshell::Shell;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  ci [--skip-deny]                 the full check CI runs: prerequisites, fmt, clippy, tests,
                                   codegen --check, cargo deny (skipped with --skip-deny)
  fuzz [--time SECONDS] [TARGET...]
                                   run the cargo-fuzz targets of fuzz/ (all by default),
                                   SECONDS each (default 60)
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
        "codegen" => codegen::run(rest),
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
