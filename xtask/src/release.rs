//! `cargo xtask release [--dry-run] VERSION`: releases the library crates of the workspace.
//!
//! VERSION must be semver and above `[workspace.package] version`, and no tag `vVERSION` may
//! exist. The release is rehearsed in a copy of the repository: a `git worktree` of HEAD at
//! `<target>/release-dry-run/worktree`, plus this checkout's uncommitted changes, removed
//! afterwards. There the version is set in `[workspace.package]` and in the `version` of every
//! project crate of `[workspace.dependencies]`, the `## [Unreleased]` section of CHANGELOG.md
//! becomes `## [VERSION] - YYYY-MM-DD` under a fresh empty one, `cargo package` packages the
//! library crates (its verify step builds each from its packaged sources alone, the unpublished
//! ones found through cargo's local-registry overlay) and the files of every `.crate` are
//! listed, and `cargo semver-checks` compares each crate with the previous release tag. The
//! copy builds in `<target>/release-dry-run/target`, kept between runs so reruns are warm; its
//! `package` directory, what cargo unpacked of these crates at VERSION on an earlier run, and
//! their builds, are removed first (see [`forget_unpacked`] and [`forget_built`]): cargo reuses
//! all of them as they are.
//!
//! With `--dry-run` this checkout is never modified. Without it, the checkout must be clean;
//! after the rehearsal passes, the same edits are made here, committed and tagged `vVERSION`.
//! Nothing is pushed or published.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail, ensure};
use semver::Version;
use xshell::{Shell, cmd};

use crate::manifest::{quoted_value, table_lines};
use crate::{ensure_cargo_tool, heading, repo_root, root_shell, target_dir};

const CHANGELOG: &str = "CHANGELOG.md";
const UNRELEASED: &str = "## [Unreleased]";

/// What to release and how.
struct Plan {
    version: Version,
    dry_run: bool,
    /// Refuse an empty `## [Unreleased]` section (the `ci` rehearsal accepts one).
    require_changes: bool,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut dry_run = false;
    let mut version = None;
    for arg in args {
        match arg.as_str() {
            "--dry-run" => dry_run = true,
            other if other.starts_with('-') => {
                bail!("unknown option `{other}` for `cargo xtask release`")
            }
            other => {
                if version.replace(other).is_some() {
                    bail!("`cargo xtask release` takes one VERSION");
                }
            }
        }
    }
    let text = version.context("usage: cargo xtask release [--dry-run] VERSION")?;
    let version = Version::parse(text.strip_prefix('v').unwrap_or(text))
        .with_context(|| format!("VERSION `{text}` is not a semver version (like 0.2.0)"))?;
    release(&Plan {
        version,
        dry_run,
        require_changes: true,
    })
}

/// `release --dry-run` of the next patch version, as `cargo xtask ci` runs it: the tooling and
/// the packaging are checked even when nothing is listed as unreleased yet.
pub(crate) fn rehearse_next_patch() -> Result<()> {
    let current = workspace_version(&read(&repo_root().join("Cargo.toml"))?)?;
    release(&Plan {
        version: Version::new(current.major, current.minor, current.patch + 1),
        dry_run: true,
        require_changes: false,
    })
}

fn release(plan: &Plan) -> Result<()> {
    let start = Instant::now();
    let root = repo_root();
    let sh = root_shell()?;
    let manifest = read(&root.join("Cargo.toml"))?;
    let current = workspace_version(&manifest)?;
    let version = &plan.version;
    ensure!(
        *version > current,
        "{version} is not above the workspace version {current}"
    );
    let tags = release_tags(&sh)?;
    ensure!(!tags.contains(version), "the tag v{version} exists already");
    let previous = tags.iter().filter(|tag| *tag < version).max().cloned();
    let crates = project_crates(&manifest)?;
    if !plan.dry_run {
        let status = cmd!(sh, "git status --porcelain").read()?;
        ensure!(
            status.is_empty(),
            "the working tree is not clean; commit or stash first (or use --dry-run):\n{status}"
        );
    }
    let untouched = Snapshot::take(&root)?;
    let date = today_utc();
    let mode = if plan.dry_run { "dry run" } else { "release" };
    heading(&format!("{mode}: {current} -> {version} ({date})"));

    let work = target_dir()?.join("release-dry-run");
    let copy = Worktree::create(&root, &work.join("worktree"))?;
    let overlaid = copy.overlay_changes(&sh, &root)?;
    println!(
        "copy: HEAD plus {overlaid} uncommitted file(s) at {}",
        copy.path.display()
    );
    let edits = Edits {
        version,
        previous: previous.as_ref(),
        date: &date,
        require_changes: plan.require_changes,
    };
    let bumped = edits.apply(&copy.path)?;
    println!(
        "edited: [workspace.package] version and {bumped} crate version(s) in \
         [workspace.dependencies]; {CHANGELOG}: [Unreleased] -> [{version}] - {date}"
    );

    let csh = Shell::new().context("cannot create a shell")?;
    csh.change_dir(&copy.path);
    csh.set_var("CARGO_TARGET_DIR", work.join("target"));

    heading("cargo package (each crate built from its packaged sources)");
    // Cargo left the `.crate` files of an earlier run of this version in place (and put them
    // in the overlay registry again) instead of writing them anew: start from nothing.
    let package_dir = work.join("target/package");
    if package_dir.exists() {
        std::fs::remove_dir_all(&package_dir)
            .with_context(|| format!("cannot remove {}", package_dir.display()))?;
    }
    let stale = forget_unpacked(&crates, version)? + forget_built(&work.join("target"), &crates)?;
    if stale > 0 {
        println!(
            "removed {stale} copy(ies) or build(s) of these crates at {version} left by an earlier run"
        );
    }
    let packages: Vec<String> = crates
        .iter()
        .flat_map(|c| ["-p".into(), c.name.clone()])
        .collect();
    cmd!(csh, "cargo package --allow-dirty {packages...}")
        .run()
        .context("cargo package failed")?;
    let listed = list_crates(&csh, &work.join("target/package"), &crates, version)?;

    heading("cargo semver-checks");
    let checks = semver_checks(&csh, &sh, &crates, previous.as_ref())?;
    drop(copy);

    if !plan.dry_run {
        heading("applying the release to this checkout");
        edits.apply(&root)?;
        commit_and_tag(&sh, &root, version)?;
    }

    heading("summary");
    println!("{mode} {current} -> {version}, dated {date}");
    for (krate, (size, files)) in crates.iter().zip(&listed) {
        println!(
            "  {:<32} {:>6.1} KiB, {files:>3} files",
            format!("{}-{version}.crate", krate.name),
            *size as f64 / 1024.0
        );
    }
    for (krate, check) in crates.iter().zip(&checks) {
        println!("  {:<32} semver: {}", krate.name, check.describe());
    }
    let elapsed = start.elapsed().as_secs();
    println!("took {}m{:02}s", elapsed / 60, elapsed % 60);
    if plan.dry_run {
        untouched.verify(&root)?;
        println!(
            "dry run: this checkout was not modified ({})",
            EDITED.join(", ")
        );
    } else {
        let list = crates.iter().map(|c| c.name.as_str()).collect::<Vec<_>>();
        println!(
            "committed and tagged v{version}; to publish:\n  git push && git push origin v{version}\n  \
             cargo publish -p {}",
            list.join(" -p ")
        );
    }
    if checks
        .iter()
        .any(|check| matches!(check, SemverCheck::Failed(_)))
    {
        bail!("cargo semver-checks found breaking changes for a {version} release");
    }
    Ok(())
}

/// Removes what cargo unpacked or cached of the project's crates at `version` on an earlier run.
///
/// The verify step of `cargo package` resolves the unpublished crates through a local-registry
/// overlay, and cargo unpacks each into `$CARGO_HOME/registry/src/<registry>/NAME-VERSION`
/// once: an unpacked copy left by an earlier rehearsal of the same version is reused as it is,
/// so a crate would be verified against its dependencies' *old* sources (a CI run failed so:
/// `missing key_id` after that method became a default one). Returns how many were removed.
fn forget_unpacked(crates: &[Crate], version: &Version) -> Result<usize> {
    let home = match std::env::var_os("CARGO_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".cargo"),
            None => return Ok(0),
        },
    };
    let mut removed = 0;
    for (kind, suffix) in [("src", ""), ("cache", ".crate")] {
        let Ok(registries) = std::fs::read_dir(home.join("registry").join(kind)) else {
            continue;
        };
        for registry in registries {
            let registry = registry
                .context("cannot list cargo's registry directory")?
                .path();
            for krate in crates {
                let path = registry.join(format!("{}-{version}{suffix}", krate.name));
                let outcome = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else if path.is_file() {
                    std::fs::remove_file(&path)
                } else {
                    continue;
                };
                outcome.with_context(|| format!("cannot remove {}", path.display()))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Removes the build fingerprints of the project's crates from the rehearsal's target
/// directory, so each is compiled again from the sources packaged now.
///
/// cargo takes a registry crate's sources as immutable: once `NAME VERSION` from the overlay
/// registry has been compiled, a later run reuses the artifacts without looking at the sources.
/// A rehearsal of the same version after a change would then verify a crate against its
/// dependencies' *old* builds (a CI run failed so: `RevokeOutcome::Tombstoned` not found,
/// though the packaged token-refresh had it). The dependencies from crates.io keep their
/// builds, so reruns stay warm. Returns how many were removed.
fn forget_built(target: &Path, crates: &[Crate]) -> Result<usize> {
    let mut removed = 0;
    let Ok(profiles) = std::fs::read_dir(target) else {
        return Ok(0);
    };
    for profile in profiles {
        let fingerprints = profile
            .context("cannot list the rehearsal's target directory")?
            .path()
            .join(".fingerprint");
        let Ok(entries) = std::fs::read_dir(&fingerprints) else {
            continue;
        };
        for entry in entries {
            let path = entry.context("cannot list cargo's fingerprints")?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // `NAME-HASH`: the crate's name, a dash, 16 hex digits.
            let ours = name.rsplit_once('-').is_some_and(|(krate, hash)| {
                hash.len() == 16
                    && hash.bytes().all(|b| b.is_ascii_hexdigit())
                    && crates.iter().any(|c| c.name == krate)
            });
            if ours {
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// The files the release edits write (the lock files are then refreshed by cargo).
const EDITED: [&str; 2] = ["Cargo.toml", CHANGELOG];

/// The contents of the [`EDITED`] files, to show that a dry run left them alone.
struct Snapshot(Vec<Option<Vec<u8>>>);

impl Snapshot {
    fn take(root: &Path) -> Result<Self> {
        Ok(Snapshot(
            EDITED
                .iter()
                .map(|f| std::fs::read(root.join(f)).ok())
                .collect(),
        ))
    }

    fn verify(&self, root: &Path) -> Result<()> {
        let now = Snapshot::take(root)?;
        for ((file, before), after) in EDITED.iter().zip(&self.0).zip(&now.0) {
            ensure!(before == after, "{file} changed during the dry run");
        }
        Ok(())
    }
}

/// A project crate: its name and its directory (from `[workspace.dependencies]`).
struct Crate {
    name: String,
    path: String,
}

/// The outcome of `cargo semver-checks` for one crate.
enum SemverCheck {
    Passed(Version),
    Failed(Version),
    Skipped(String),
}

impl SemverCheck {
    fn describe(&self) -> String {
        match self {
            SemverCheck::Passed(base) => format!("no breaking change since v{base}"),
            SemverCheck::Failed(base) => format!("BREAKING changes since v{base}"),
            SemverCheck::Skipped(why) => format!("skipped ({why})"),
        }
    }
}

/// The edits a release makes, applied to the copy and (without `--dry-run`) to the checkout.
struct Edits<'a> {
    version: &'a Version,
    previous: Option<&'a Version>,
    date: &'a str,
    require_changes: bool,
}

impl Edits<'_> {
    /// Edits `Cargo.toml` and `CHANGELOG.md` under `dir`; returns how many crate versions of
    /// `[workspace.dependencies]` were set.
    fn apply(&self, dir: &Path) -> Result<usize> {
        let manifest_path = dir.join("Cargo.toml");
        let manifest = read(&manifest_path)?;
        let (bumped, count) = bump_manifest(&manifest, self.version)?;
        write(&manifest_path, &bumped)?;
        let changelog_path = dir.join(CHANGELOG);
        let changelog = read(&changelog_path)?;
        let dated = date_changelog(&changelog, self, repository(&manifest).as_deref())
            .context(CHANGELOG)?;
        write(&changelog_path, &dated)?;
        Ok(count)
    }
}

/// A `git worktree` of HEAD, removed (with its registration in `.git`) when dropped.
struct Worktree {
    sh: Shell,
    path: PathBuf,
}

impl Worktree {
    fn create(root: &Path, path: &Path) -> Result<Self> {
        let sh = Shell::new().context("cannot create a shell")?;
        sh.change_dir(root);
        // Left over by an interrupted run.
        if path.exists() {
            let _ = cmd!(sh, "git worktree remove --force {path}")
                .quiet()
                .ignore_stderr()
                .run();
            if path.exists() {
                std::fs::remove_dir_all(path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        cmd!(sh, "git worktree prune").run()?;
        cmd!(sh, "git worktree add --detach --quiet {path} HEAD")
            .run()
            .context("cannot create the worktree")?;
        Ok(Worktree {
            sh,
            path: path.to_path_buf(),
        })
    }

    /// Brings this checkout's uncommitted changes (staged or not, untracked files that are not
    /// ignored, deletions) into the copy; returns how many paths differed from HEAD.
    fn overlay_changes(&self, sh: &Shell, root: &Path) -> Result<usize> {
        let changed = cmd!(sh, "git diff --name-only -z HEAD").read()?;
        let untracked = cmd!(sh, "git ls-files --others --exclude-standard -z").read()?;
        let mut count = 0;
        for rel in changed.split('\0').chain(untracked.split('\0')) {
            if rel.is_empty() {
                continue;
            }
            let (from, to) = (root.join(rel), self.path.join(rel));
            if from.is_file() {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(&from, &to)
                    .with_context(|| format!("cannot copy {rel} into the worktree"))?;
            } else if to.is_file() {
                std::fs::remove_file(&to)?;
            }
            count += 1;
        }
        Ok(count)
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        let path = &self.path;
        let removed = cmd!(self.sh, "git worktree remove --force {path}")
            .quiet()
            .run();
        if removed.is_err() {
            eprintln!(
                "warning: could not remove the worktree {}: run `git worktree remove --force` on it",
                path.display()
            );
        }
    }
}

/// Lists the files of each packaged `.crate`; returns each one's size and file count.
fn list_crates(
    sh: &Shell,
    package_dir: &Path,
    crates: &[Crate],
    version: &Version,
) -> Result<Vec<(u64, usize)>> {
    let mut listed = Vec::new();
    for krate in crates {
        let stem = format!("{}-{version}", krate.name);
        let file = package_dir.join(format!("{stem}.crate"));
        let size = std::fs::metadata(&file)
            .with_context(|| format!("cargo package wrote no {}", file.display()))?
            .len();
        let files = cmd!(sh, "tar -tzf {file}").quiet().read()?;
        let files: Vec<&str> = files
            .lines()
            .map(|f| f.strip_prefix(&format!("{stem}/")).unwrap_or(f))
            .collect();
        println!(
            "\n{stem}.crate ({:.1} KiB, {} files):",
            size as f64 / 1024.0,
            files.len()
        );
        for f in &files {
            println!("    {f}");
        }
        listed.push((size, files.len()));
    }
    Ok(listed)
}

/// Runs `cargo semver-checks` for every crate that the previous release tag holds (installing
/// the tool when there is such a crate and the tool is missing).
fn semver_checks(
    csh: &Shell,
    sh: &Shell,
    crates: &[Crate],
    previous: Option<&Version>,
) -> Result<Vec<SemverCheck>> {
    let mut checks = Vec::new();
    let mut tool_ready = false;
    for krate in crates {
        let name = &krate.name;
        let Some(base) = previous else {
            println!("{name}: no earlier release (no v* tag): semver check skipped");
            checks.push(SemverCheck::Skipped("no earlier release".into()));
            continue;
        };
        let tag = format!("v{base}");
        let manifest = format!("{tag}:{}/Cargo.toml", krate.path);
        let released = cmd!(sh, "git cat-file -e {manifest}")
            .quiet()
            .ignore_stderr()
            .run();
        if released.is_err() {
            println!("{name}: not in {tag} (a new crate): semver check skipped");
            checks.push(SemverCheck::Skipped(format!("not in {tag}")));
            continue;
        }
        if !tool_ready {
            ensure_cargo_tool(sh, "semver-checks", None)?;
            tool_ready = true;
        }
        println!("{name}: checking against {tag}");
        let result = cmd!(
            csh,
            "cargo semver-checks check-release --package {name} --baseline-rev {tag}"
        )
        .run();
        checks.push(match result {
            Ok(()) => SemverCheck::Passed(base.clone()),
            Err(_) => SemverCheck::Failed(base.clone()),
        });
    }
    Ok(checks)
}

/// Refreshes the lock files for the new versions, then commits the release and tags it.
fn commit_and_tag(sh: &Shell, root: &Path, version: &Version) -> Result<()> {
    cmd!(sh, "cargo update --workspace").run()?;
    let fuzz_lock = "fuzz/Cargo.lock";
    let mut files = vec!["Cargo.toml", "Cargo.lock", CHANGELOG];
    if root.join(fuzz_lock).exists() {
        // The fuzz crate depends on the project crates by path: its lock names their versions.
        cmd!(
            sh,
            "cargo update --workspace --manifest-path fuzz/Cargo.toml"
        )
        .run()?;
        files.push(fuzz_lock);
    }
    let message = format!("release v{version}");
    let tag = format!("v{version}");
    cmd!(sh, "git add -- {files...}").run()?;
    cmd!(sh, "git commit --quiet -m {message}").run()?;
    cmd!(sh, "git tag -a {tag} -m {message}").run()?;
    Ok(())
}

/// The `vX.Y.Z` tags of the repository, as versions.
fn release_tags(sh: &Shell) -> Result<Vec<Version>> {
    let tags = cmd!(sh, "git tag --list v*").read()?;
    Ok(tags
        .lines()
        .filter_map(|tag| Version::parse(tag.trim().strip_prefix('v')?).ok())
        .collect())
}

/// `[workspace.package] version`.
fn workspace_version(manifest: &str) -> Result<Version> {
    let (_, line) = version_line(manifest)?;
    let text = quoted_value(line, "version")
        .and_then(|range| line.get(range))
        .context("no version in [workspace.package]")?;
    Version::parse(text).with_context(|| format!("[workspace.package] version `{text}`"))
}

/// The `version = "..."` line of `[workspace.package]`, with its line number.
fn version_line(manifest: &str) -> Result<(usize, &str)> {
    table_lines(manifest, "[workspace.package]")
        .find(|(_, line)| {
            line.trim_start().starts_with("version") && quoted_value(line, "version").is_some()
        })
        .context("Cargo.toml: no `version = \"...\"` in [workspace.package]")
}

/// `[workspace.package] repository`, for the changelog's links.
fn repository(manifest: &str) -> Option<String> {
    table_lines(manifest, "[workspace.package]").find_map(|(_, line)| {
        let range = quoted_value(line, "repository")?;
        line.get(range)
            .map(|url| url.trim_end_matches('/').to_owned())
    })
}

/// The project crates: the entries of `[workspace.dependencies]` with a `path` under `crates/`
/// and a `version` (what other crates, and crates.io, see of them).
fn project_crates(manifest: &str) -> Result<Vec<Crate>> {
    let crates: Vec<Crate> = table_lines(manifest, "[workspace.dependencies]")
        .filter_map(|(_, line)| project_crate(line))
        .collect();
    ensure!(
        !crates.is_empty(),
        "Cargo.toml: no project crate (path under crates/ with a version) in [workspace.dependencies]"
    );
    Ok(crates)
}

fn project_crate(line: &str) -> Option<Crate> {
    let path = line.get(quoted_value(line, "path")?)?;
    quoted_value(line, "version")?;
    let name = line.split('=').next()?.trim();
    path.starts_with("crates/").then(|| Crate {
        name: name.to_owned(),
        path: path.to_owned(),
    })
}

/// Sets `[workspace.package] version` and the version of every project crate in
/// `[workspace.dependencies]`; returns the new text and how many crate versions were set.
fn bump_manifest(manifest: &str, version: &Version) -> Result<(String, usize)> {
    let mut lines: Vec<String> = manifest.lines().map(str::to_owned).collect();
    let (package_line, _) = version_line(manifest)?;
    let mut targets = vec![package_line];
    targets.extend(
        table_lines(manifest, "[workspace.dependencies]")
            .filter(|(_, line)| project_crate(line).is_some())
            .map(|(n, _)| n),
    );
    let new = version.to_string();
    for &n in &targets {
        let line = lines.get_mut(n).context("line out of range")?;
        let range = quoted_value(line, "version").context("version vanished")?;
        line.replace_range(range, &new);
    }
    let mut text = lines.join("\n");
    if manifest.ends_with('\n') {
        text.push('\n');
    }
    Ok((text, targets.len() - 1))
}

/// Moves the `## [Unreleased]` section to `## [VERSION] - DATE` under a fresh empty one, and
/// updates the link definitions at the bottom (`[Unreleased]: .../compare/vVERSION...HEAD`).
fn date_changelog(text: &str, edits: &Edits<'_>, repo: Option<&str>) -> Result<String> {
    let Edits {
        version,
        previous,
        date,
        require_changes,
    } = edits;
    let lines: Vec<&str> = text.lines().collect();
    let heading_at = lines
        .iter()
        .position(|line| line.trim_end() == UNRELEASED)
        .with_context(|| format!("no `{UNRELEASED}` heading"))?;
    let released = format!("## [{version}]");
    ensure!(
        !lines.iter().any(|line| line.starts_with(&released)),
        "`{released}` exists already"
    );
    let after = lines.get(heading_at + 1..).unwrap_or_default();
    let body_len = after
        .iter()
        .position(|line| line.starts_with("## ") || is_link_definition(line))
        .unwrap_or(after.len());
    let (body, rest) = after.split_at(body_len);
    let first = body.iter().position(|l| !l.trim().is_empty());
    let last = body.iter().rposition(|l| !l.trim().is_empty());
    let body = match (first, last) {
        (Some(first), Some(last)) => body.get(first..=last).unwrap_or_default(),
        _ if *require_changes => bail!("the `{UNRELEASED}` section is empty: nothing to release"),
        _ => &[],
    };

    let mut out: Vec<String> = lines
        .get(..heading_at)
        .unwrap_or_default()
        .iter()
        .map(|l| (*l).to_owned())
        .collect();
    out.extend([
        UNRELEASED.to_owned(),
        String::new(),
        format!("{released} - {date}"),
    ]);
    if !body.is_empty() {
        out.push(String::new());
        out.extend(body.iter().map(|l| (*l).to_owned()));
    }
    if !rest.is_empty() {
        out.push(String::new());
    }
    for line in rest {
        match repo.filter(|_| line.starts_with("[Unreleased]:")) {
            Some(repo) => {
                out.push(format!("[Unreleased]: {repo}/compare/v{version}...HEAD"));
                out.push(match previous {
                    Some(prev) => format!("[{version}]: {repo}/compare/v{prev}...v{version}"),
                    None => format!("[{version}]: {repo}/releases/tag/v{version}"),
                });
            }
            None => out.push((*line).to_owned()),
        }
    }
    Ok(out.join("\n") + "\n")
}

/// `[label]: url`, a Markdown link reference definition.
fn is_link_definition(line: &str) -> bool {
    line.starts_with('[') && line.contains("]: ")
}

/// Today's date in UTC, `YYYY-MM-DD`.
#[allow(
    clippy::disallowed_methods,
    reason = "xtask is not library code: a release is dated with the real clock"
)]
fn today_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    civil_date(secs / 86_400)
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> String {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod forget_tests {
    use super::*;

    #[test]
    fn only_the_project_crates_builds_are_forgotten() {
        let target = tempfile::tempdir().unwrap();
        let fingerprints = target.path().join("debug/.fingerprint");
        for dir in [
            "token-refresh-0123456789abcdef",
            "token-refresh-fedcba9876543210",
            "token-refresh-extra-0123456789abcdef",
            "serde-0123456789abcdef",
        ] {
            std::fs::create_dir_all(fingerprints.join(dir)).unwrap();
        }
        let crates = [Crate {
            name: "token-refresh".into(),
            path: "crates/token-refresh".into(),
        }];
        assert_eq!(forget_built(target.path(), &crates).unwrap(), 2);
        let mut left: Vec<String> = std::fs::read_dir(&fingerprints)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "serde-0123456789abcdef",
                "token-refresh-extra-0123456789abcdef"
            ]
        );
        assert_eq!(
            forget_built(&target.path().join("none"), &crates).unwrap(),
            0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"[workspace]
members = ["crates/*"]

[workspace.package]
version = "0.1.0"
rust-version = "1.88"
repository = "https://example.com/org/repo"

[workspace.dependencies]
# project crates
token-jwt = { path = "crates/token-jwt", version = "0.1.0" }
token-dpop = { path = "crates/token-dpop", version = "0.1.0" }
serde = { version = "1.0.228", features = ["derive"] }
"#;

    fn edits<'a>(version: &'a Version, previous: Option<&'a Version>) -> Edits<'a> {
        Edits {
            version,
            previous,
            date: "2025-01-31",
            require_changes: true,
        }
    }

    #[test]
    fn reads_the_manifest() {
        assert_eq!(workspace_version(MANIFEST).unwrap(), Version::new(0, 1, 0));
        let names: Vec<_> = project_crates(MANIFEST)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["token-jwt", "token-dpop"]);
        assert_eq!(
            repository(MANIFEST).unwrap(),
            "https://example.com/org/repo"
        );
    }

    #[test]
    fn bumps_the_workspace_and_the_project_crates_only() {
        let (text, count) = bump_manifest(MANIFEST, &Version::new(0, 2, 0)).unwrap();
        assert_eq!(count, 2);
        assert_eq!(workspace_version(&text).unwrap(), Version::new(0, 2, 0));
        assert!(text.contains(r#"token-jwt = { path = "crates/token-jwt", version = "0.2.0" }"#));
        assert!(text.contains(r#"token-dpop = { path = "crates/token-dpop", version = "0.2.0" }"#));
        assert!(text.contains(r#"serde = { version = "1.0.228""#));
        assert!(text.contains(r#"rust-version = "1.88""#));
        assert_eq!(text.lines().count(), MANIFEST.lines().count());
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn dates_the_unreleased_section() {
        let changelog = "# Changelog\n\nIntro.\n\n## [Unreleased]\n\n### Added\n\n- A thing.\n\n\
                         [Unreleased]: https://example.com/org/repo/commits/HEAD\n";
        let v = Version::new(0, 1, 0);
        let out = date_changelog(
            changelog,
            &edits(&v, None),
            Some("https://example.com/org/repo"),
        )
        .unwrap();
        assert_eq!(
            out,
            "# Changelog\n\nIntro.\n\n## [Unreleased]\n\n## [0.1.0] - 2025-01-31\n\n### Added\n\n\
             - A thing.\n\n\
             [Unreleased]: https://example.com/org/repo/compare/v0.1.0...HEAD\n\
             [0.1.0]: https://example.com/org/repo/releases/tag/v0.1.0\n"
        );
        // The next release links to the comparison with the previous tag and keeps the older
        // sections below.
        let next = out.replace("## [Unreleased]\n", "## [Unreleased]\n\n- Fixed a bug.\n");
        let v2 = Version::new(0, 1, 1);
        let out = date_changelog(
            &next,
            &edits(&v2, Some(&v)),
            Some("https://example.com/org/repo"),
        )
        .unwrap();
        assert!(out.contains(
            "## [Unreleased]\n\n## [0.1.1] - 2025-01-31\n\n- Fixed a bug.\n\n## [0.1.0] - 2025-01-31\n"
        ));
        assert!(out.contains("[0.1.1]: https://example.com/org/repo/compare/v0.1.0...v0.1.1\n"));
        assert!(out.contains("[0.1.0]: https://example.com/org/repo/releases/tag/v0.1.0\n"));
    }

    #[test]
    fn refuses_an_empty_or_missing_section_or_a_repeated_version() {
        let v = Version::new(0, 1, 0);
        let empty = "# Changelog\n\n## [Unreleased]\n\n## [0.0.9] - 2024-01-01\n\n- Old.\n";
        assert!(date_changelog(empty, &edits(&v, None), None).is_err());
        let rehearsal = Edits {
            require_changes: false,
            ..edits(&v, None)
        };
        let out = date_changelog(empty, &rehearsal, None).unwrap();
        assert!(out.contains("## [Unreleased]\n\n## [0.1.0] - 2025-01-31\n\n## [0.0.9]"));
        assert!(date_changelog("# Changelog\n", &edits(&v, None), None).is_err());
        let again = "## [Unreleased]\n\n- New.\n\n## [0.1.0] - 2024-01-01\n";
        assert!(date_changelog(again, &edits(&v, None), None).is_err());
    }

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(19_723), "2024-01-01");
        assert_eq!(civil_date(20_088), "2024-12-31");
    }
}
