//! `cargo deny check`, online or against an offline RustSec advisory-db snapshot.
//!
//! cargo-deny reads its advisory databases from `<db-path>/<name>-<hash of the URL>`, where
//! `db-path` comes from `deny.toml`, and it wants each database to be a git repository (it asks
//! git for the time of `HEAD` to judge staleness). `deny.toml` sets
//! `db-path = "${TOKEN_SERVICE_DENY_DB_PATH:-target/advisory-dbs}"` (cargo-deny expands
//! variables in `db-path`, and resolves a relative path against the working directory, not
//! against `deny.toml`), and this module sets that variable to `<target dir>/advisory-dbs`.
//!
//! When `TOKEN_SERVICE_ADVISORY_DB` names a snapshot (plain data files, no git history), as it
//! does in CI, which has no network but the package registries, the snapshot is copied to
//! `<target dir>/advisory-dbs/advisory-db-3157b0e258782691`, committed there as a one-commit
//! repository, `cargo fetch` downloads every crate the graph names (for all platforms), and
//! `cargo deny --offline check` reads both. Otherwise cargo-deny fetches the database itself.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use xshell::{Shell, cmd};

use crate::{ensure_cargo_tool, target_dir};

/// A directory holding a RustSec advisory-db snapshot (data files only), for offline runs.
const SNAPSHOT_ENV: &str = "TOKEN_SERVICE_ADVISORY_DB";
/// Read by `deny.toml`'s `db-path`.
const DB_PATH_ENV: &str = "TOKEN_SERVICE_DENY_DB_PATH";
/// cargo-deny's directory for its default database, `https://github.com/RustSec/advisory-db`:
/// the URL's last path segment and the XXH64 (seed `0xca80de71`) of the lowercased URL, as
/// cargo-deny 0.20's `url_to_db_path` names it.
const DEFAULT_DB_DIR: &str = "advisory-db-3157b0e258782691";
/// Written into the copy's `.git`: marks it as ours and records which snapshot it holds.
const MARKER: &str = "xtask-snapshot";
/// cargo-deny's minor version; `deny.toml` is written for 0.20's schema.
const CARGO_DENY_VERSION: &str = "0.20";

/// Runs `cargo deny check` (installing cargo-deny if needed), offline when a snapshot is given.
pub(crate) fn check(sh: &Shell) -> Result<()> {
    ensure_cargo_tool(sh, "deny", Some(CARGO_DENY_VERSION))?;
    let dbs = target_dir()?.join("advisory-dbs");
    let db = dbs.join(DEFAULT_DB_DIR);
    match std::env::var_os(SNAPSHOT_ENV).filter(|value| !value.is_empty()) {
        Some(snapshot) => {
            prepare_snapshot(sh, Path::new(&snapshot), &db)?;
            // cargo-deny's `--offline` also makes its `cargo metadata` offline, which then needs
            // every crate of every target platform downloaded; only the advisory database has
            // to come from the snapshot, crates.io is reachable.
            cmd!(sh, "cargo fetch").run()?;
            cmd!(sh, "cargo deny --offline check")
                .env(DB_PATH_ENV, &dbs)
                .run()?;
        }
        None => {
            // A snapshot copy has no remote, so cargo-deny could not fetch into it.
            if db.join(".git").join(MARKER).exists() {
                sh.remove_path(&db)?;
            }
            println!(
                "advisory database: fetched by cargo-deny into {}",
                dbs.display()
            );
            cmd!(sh, "cargo deny check").env(DB_PATH_ENV, &dbs).run()?;
        }
    }
    Ok(())
}

/// Makes `db` a git repository holding a copy of the snapshot at `source`, unless it already
/// holds the same snapshot (same `SNAPSHOT.txt`).
fn prepare_snapshot(sh: &Shell, source: &Path, db: &Path) -> Result<()> {
    if !source.is_dir() {
        bail!("{SNAPSHOT_ENV}={} is not a directory", source.display());
    }
    let stamp = std::fs::read_to_string(source.join("SNAPSHOT.txt")).ok();
    println!("advisory database: offline snapshot {}", source.display());
    if let Some(line) = stamp.as_deref().and_then(|text| text.lines().next()) {
        println!("  {line}");
    }

    let marker = db.join(".git").join(MARKER);
    if stamp.is_some() && std::fs::read_to_string(&marker).ok() == stamp {
        mark_fresh(db)?;
        println!("  reusing the copy in {}", db.display());
        return Ok(());
    }

    // Build next to the destination, then rename, so an interrupted run leaves no half copy.
    let tmp = db.with_extension("tmp");
    if tmp.exists() {
        sh.remove_path(&tmp)?;
    }
    copy_dir(source, &tmp)
        .with_context(|| format!("cannot copy {} to {}", source.display(), tmp.display()))?;
    let git_quiet = |args: &[&str]| {
        sh.cmd("git")
            .arg("-C")
            .arg(&tmp)
            .args(["-c", "user.name=xtask", "-c", "user.email=xtask@localhost"])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .quiet()
            .run()
    };
    git_quiet(&["init", "--quiet", "--initial-branch=main"])?;
    git_quiet(&["add", "--all"])?;
    git_quiet(&[
        "commit",
        "--quiet",
        "--no-verify",
        "-m",
        "advisory-db snapshot",
    ])?;
    std::fs::write(tmp.join(".git").join(MARKER), stamp.unwrap_or_default())?;
    if db.exists() {
        sh.remove_path(db)?;
    }
    std::fs::rename(&tmp, db)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), db.display()))?;
    println!("  copied into {}", db.display());
    Ok(())
}

/// cargo-deny rejects a database older than `maximum-db-staleness` (90 days), measured as the
/// later of the `HEAD` commit's time and `.git/HEAD`'s modification time. The copy's age says
/// nothing about the snapshot's (its date is printed above; refreshing it is a change to the
/// shared snapshot), so a reused copy counts as fetched now, like a fresh copy does.
fn mark_fresh(db: &Path) -> Result<()> {
    #[expect(
        clippy::disallowed_methods,
        reason = "xtask is a tool, not library code: the real clock is what it needs here"
    )]
    let now = std::time::SystemTime::now();
    let head = db.join(".git").join("HEAD");
    std::fs::File::options()
        .write(true)
        .open(&head)
        .and_then(|file| file.set_modified(now))
        .with_context(|| format!("cannot update the modification time of {}", head.display()))
}

/// Copies the directory tree `from` to `to`, leaving out any `.git` directory.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            if entry.file_name() != ".git" {
                copy_dir(&src, &dst)?;
            }
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}
