//! `cargo xtask fuzz [--time SECONDS] [--no-keep] [TARGET...]`: runs the `cargo fuzz` targets
//! of `fuzz/`, each for SECONDS.
//!
//! `fuzz/` is its own crate, outside the workspace, with one `[[bin]]` per target; each target
//! calls a `<crate>::fuzzing` function. A target whose `[[bin]]` has `required-features` (only
//! `config_parse` and `callers_parse`, which need the optional `token-server` dependency:
//! feature `server`) is
//! built with exactly those features, so the others build without the server, Redis or AWS.
//! cargo-fuzz passes nightly-only flags to rustc;
//! `RUSTC_BOOTSTRAP=1` lets the pinned stable toolchain take them, since no nightly toolchain
//! can be installed here.
//!
//! Corpora live in the repository, `fuzz/corpus/<target>/`: hand-written seeds with readable
//! names, and inputs the fuzzer found, named by their SHA-1. After each run the corpus is
//! minimized to the inputs that add edge coverage (`cargo fuzz cmin -- -use_counters=0`; the
//! seeds are kept as they are) and capped at [`CORPUS_CAP_BYTES`], so what is committed stays
//! small. With `--no-keep` (as `cargo xtask
//! ci` runs it) the fuzzer works on a scratch copy under the target directory and the
//! committed corpora are left alone. Any crash, leak, timeout or out-of-memory artifact makes
//! the command fail, with the steps that turn the input into a regression test.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use xshell::{Shell, cmd};

use crate::manifest::{Bin, bins};
use crate::{ensure_cargo_tool, heading, repo_root, root_shell, target_dir};

const DEFAULT_SECONDS: u64 = 60;
/// The most a committed corpus may hold after minimization (the largest found inputs go).
const CORPUS_CAP_BYTES: u64 = 256 * 1024;
/// libFuzzer's artifact prefixes that mean a failure (`slow-unit-` is only a report).
const FAILURES: [&str; 4] = ["crash-", "leak-", "timeout-", "oom-"];

/// What the fuzzer reported for one target, and its corpus afterwards.
struct Report {
    target: String,
    /// The `--features` arguments the target was built with (empty for most).
    features: Vec<String>,
    execs: Option<u64>,
    execs_per_sec: Option<u64>,
    corpus: Option<(usize, u64)>,
    failures: Vec<PathBuf>,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut keep = true;
    let mut wanted = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--time") {
            Some("") => args.next().map(String::as_str),
            Some(rest) if rest.starts_with('=') => rest.get(1..),
            _ if arg == "--no-keep" => {
                keep = false;
                continue;
            }
            _ if arg.starts_with('-') => bail!("unknown option `{arg}` for `cargo xtask fuzz`"),
            _ => {
                wanted.push(arg.clone());
                continue;
            }
        };
        seconds = value
            .and_then(|v| v.parse().ok())
            .filter(|&s| s > 0)
            .context("--time needs a positive number of seconds")?;
    }
    fuzz(seconds, keep, &wanted)
}

/// Runs `wanted` (every target when empty) for `seconds` each; with `keep`, in the committed
/// corpora, which are minimized afterwards.
pub(crate) fn fuzz(seconds: u64, keep: bool, wanted: &[String]) -> Result<()> {
    let root = repo_root();
    let manifest = root.join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "no fuzz crate: {} is missing (create it with `cargo fuzz init`, one [[bin]] per target)",
            manifest.display()
        )
    })?;
    let available = bins(&text);
    if available.is_empty() {
        bail!("{} declares no [[bin]] targets", manifest.display());
    }
    if let Some(unknown) = wanted
        .iter()
        .find(|t| !available.iter().any(|bin| bin.name == **t))
    {
        let names: Vec<&str> = available.iter().map(|bin| bin.name.as_str()).collect();
        bail!("no fuzz target `{unknown}`; targets: {}", names.join(", "));
    }
    let targets: Vec<Bin> = if wanted.is_empty() {
        available
    } else {
        available
            .into_iter()
            .filter(|bin| wanted.contains(&bin.name))
            .collect()
    };

    let sh = root_shell()?;
    ensure_cargo_tool(&sh, "fuzz", None)?;
    sh.set_var("RUSTC_BOOTSTRAP", "1");
    let scratch = target_dir()?.join("fuzz-scratch");
    let mut reports = Vec::new();
    for bin in &targets {
        let target = &bin.name;
        let features = features_args(bin);
        let mode = if keep { "" } else { ", scratch corpus" };
        heading(&format!("fuzz {target} ({seconds}s{mode})"));
        let committed = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&committed)?;
        let corpus = if keep {
            committed
        } else {
            let copy = scratch.join(target);
            if copy.exists() {
                std::fs::remove_dir_all(&copy)?;
            }
            std::fs::create_dir_all(&copy)?;
            for (name, bytes) in read_corpus(&committed)? {
                std::fs::write(copy.join(name), bytes)?;
            }
            copy
        };
        let mut report = run_target(&root, target, &features, &corpus, seconds)?;
        if keep && report.failures.is_empty() {
            minimize(&sh, target, &features, &corpus)?;
        }
        report.corpus = Some(corpus_size(&corpus)?);
        reports.push(report);
    }

    heading("fuzz summary");
    println!("{:<24} {:>12} {:>9}  corpus", "target", "execs", "execs/s");
    let show = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    for r in &reports {
        let corpus = r.corpus.map_or_else(String::new, |(files, bytes)| {
            format!("{files} files, {:.1} KiB", bytes as f64 / 1024.0)
        });
        println!(
            "{:<24} {:>12} {:>9}  {corpus}",
            r.target,
            show(r.execs),
            show(r.execs_per_sec)
        );
    }
    let failed: Vec<&Report> = reports.iter().filter(|r| !r.failures.is_empty()).collect();
    if failed.is_empty() {
        let kept = if keep {
            "corpora minimized in fuzz/corpus/"
        } else {
            "committed corpora untouched"
        };
        println!(
            "\nfuzz: {} target(s) ran {seconds}s each without a failure; {kept}",
            targets.len()
        );
        return Ok(());
    }
    for r in &failed {
        for artifact in &r.failures {
            println!(
                "{}",
                regression_steps(&root, &r.target, &r.features, artifact)
            );
        }
    }
    bail!(
        "fuzzing found failing inputs in: {}",
        failed
            .iter()
            .map(|r| r.target.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Where the instrumented fuzz builds go: beside the workspace's own builds, so a fresh clone
/// with a kept `CARGO_TARGET_DIR` (as in CI) does not rebuild them from scratch.
fn fuzz_target_dir() -> Result<PathBuf> {
    Ok(target_dir()?.join("fuzz"))
}

/// `--features a,b` for a target with `required-features`, nothing for the others.
fn features_args(bin: &Bin) -> Vec<String> {
    if bin.required_features.is_empty() {
        return Vec::new();
    }
    vec!["--features".to_owned(), bin.required_features.join(",")]
}

/// Runs one target on `corpus`, streaming libFuzzer's output and reading its final statistics.
fn run_target(
    root: &Path,
    target: &str,
    features: &[String],
    corpus: &Path,
    seconds: u64,
) -> Result<Report> {
    let artifacts = root.join("fuzz/artifacts").join(target);
    let before = artifact_names(&artifacts);
    let mut child = Command::new("cargo")
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run"])
        .args(features)
        .arg(target)
        .arg(corpus)
        .arg("--target-dir")
        .arg(fuzz_target_dir()?)
        .args([
            "--".to_owned(),
            format!("-max_total_time={seconds}"),
            "-print_final_stats=1".to_owned(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start `cargo fuzz run`")?;
    let mut execs = None;
    let mut execs_per_sec = None;
    if let Some(stderr) = child.stderr.take() {
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line)? > 0 {
            let text = String::from_utf8_lossy(&line);
            eprint!("{text}");
            let stat = |name: &str| {
                text.trim()
                    .strip_prefix(name)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            execs = stat("stat::number_of_executed_units:").or(execs);
            execs_per_sec = stat("stat::average_exec_per_sec:").or(execs_per_sec);
            line.clear();
        }
    }
    let status = child.wait()?;
    let failures: Vec<PathBuf> = artifact_names(&artifacts)
        .difference(&before)
        .filter(|name| FAILURES.iter().any(|prefix| name.starts_with(prefix)))
        .map(|name| artifacts.join(name))
        .collect();
    if !status.success() && failures.is_empty() {
        bail!("`cargo fuzz run {target}` failed ({status}) without leaving an artifact");
    }
    if !before.is_empty() {
        println!(
            "note: fuzz/artifacts/{target}/ holds {} older artifact(s); delete them once fixed",
            before.len()
        );
    }
    Ok(Report {
        target: target.to_owned(),
        features: features.to_vec(),
        execs,
        execs_per_sec,
        corpus: None,
        failures,
    })
}

/// `cargo fuzz cmin` on the corpus, keeping the hand-written seeds under their names, then the
/// largest found inputs removed until the corpus fits [`CORPUS_CAP_BYTES`].
fn minimize(sh: &Shell, target: &str, features: &[String], corpus: &Path) -> Result<()> {
    let (files_before, bytes_before) = corpus_size(corpus)?;
    let seeds: Vec<(String, Vec<u8>)> = read_corpus(corpus)?
        .into_iter()
        .filter(|(name, _)| !is_found_input(name))
        .collect();
    // Edges only (no hit counters): about a third of the files and a tenth of the bytes of a
    // default merge; the fuzzer finds the counter variety again within seconds.
    let fuzz_target = fuzz_target_dir()?;
    let output = cmd!(
        sh,
        "cargo fuzz cmin {features...} --target-dir {fuzz_target} {target} {corpus} -- -use_counters=0"
    )
    .ignore_status()
    .output()?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        bail!("`cargo fuzz cmin {target}` failed");
    }
    for (name, bytes) in read_corpus(corpus)? {
        if is_found_input(&name) && seeds.iter().any(|(_, seed)| *seed == bytes) {
            std::fs::remove_file(corpus.join(&name))?;
        }
    }
    for (name, bytes) in &seeds {
        std::fs::write(corpus.join(name), bytes)?;
    }

    let mut found: Vec<(u64, PathBuf)> = read_corpus(corpus)?
        .into_iter()
        .filter(|(name, _)| is_found_input(name))
        .map(|(name, bytes)| (bytes.len() as u64, corpus.join(name)))
        .collect();
    found.sort();
    let (_, mut total) = corpus_size(corpus)?;
    let mut dropped = 0;
    while total > CORPUS_CAP_BYTES {
        let Some((len, path)) = found.pop() else {
            break;
        };
        std::fs::remove_file(path)?;
        total -= len;
        dropped += 1;
    }
    let (files, bytes) = corpus_size(corpus)?;
    println!(
        "corpus {target}: {files_before} files, {:.1} KiB -> minimized: {files} files, {:.1} KiB{}",
        bytes_before as f64 / 1024.0,
        bytes as f64 / 1024.0,
        if dropped > 0 {
            format!(" (capped: dropped the {dropped} largest)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// An input the fuzzer found (libFuzzer names them by the SHA-1 of their content), as opposed
/// to a hand-written seed.
fn is_found_input(name: &str) -> bool {
    name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The files of a corpus directory, by name.
fn read_corpus(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.push((name, std::fs::read(entry.path())?));
        }
    }
    files.sort();
    Ok(files)
}

/// File count and total bytes of a corpus.
fn corpus_size(dir: &Path) -> Result<(usize, u64)> {
    let files = read_corpus(dir)?;
    Ok((
        files.len(),
        files.iter().map(|(_, bytes)| bytes.len() as u64).sum(),
    ))
}

fn artifact_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// How to turn a failing input of `target` into a regression test of the crate whose
/// `fuzzing` function the target calls (read from `fuzz/fuzz_targets/<target>.rs`).
fn regression_steps(root: &Path, target: &str, features: &[String], artifact: &Path) -> String {
    let source = std::fs::read_to_string(root.join(format!("fuzz/fuzz_targets/{target}.rs")))
        .unwrap_or_default();
    let (krate, function) =
        fuzzing_call(&source).unwrap_or_else(|| ("<crate>".to_owned(), "<function>".to_owned()));
    let crate_dir = format!("crates/{}", krate.replace('_', "-"));
    let file = artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let short: String = file
        .rsplit('-')
        .next()
        .unwrap_or_default()
        .chars()
        .take(8)
        .collect();
    let shown = artifact.strip_prefix(root).unwrap_or(artifact).display();
    // `--features server ` for a target that needs them, so each command builds it.
    let features: String = features.iter().map(|arg| format!("{arg} ")).collect();
    format!(
        "\nfuzz target `{target}` failed on {shown}. To keep it as a regression test:
  1. reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run {features}{target} {shown}
  2. shrink:    RUSTC_BOOTSTRAP=1 cargo fuzz tmin {features}{target} {shown}
     (and look at it with: RUSTC_BOOTSTRAP=1 cargo fuzz fmt {features}{target} <file>)
  3. copy the (shrunk) input to {crate_dir}/tests/data/fuzz/{target}-{short}
     and to fuzz/corpus/{target}/, then add to a test file of {crate_dir}/tests/:
         #[test]
         fn fuzz_{target}_{short}() {{
             {krate}::fuzzing::{function}(include_bytes!(\"data/fuzz/{target}-{short}\"));
         }}
  4. fix the code until that test passes, then delete {shown}"
    )
}

/// The `crate::fuzzing::function` a fuzz target calls.
fn fuzzing_call(source: &str) -> Option<(String, String)> {
    let at = source.find("::fuzzing::")?;
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let before = source.get(..at)?;
    let krate: String = before
        .chars()
        .rev()
        .take_while(|&c| ident(c))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let function: String = source
        .get(at + "::fuzzing::".len()..)?
        .chars()
        .take_while(|&c| ident(c))
        .collect();
    (!krate.is_empty() && !function.is_empty()).then_some((krate, function))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_fuzzing_call_of_a_target() {
        let source = "#![no_main]\n\nlibfuzzer_sys::fuzz_target!(|data: &[u8]| token_jwt::fuzzing::parse_jwk(data));\n";
        assert_eq!(
            fuzzing_call(source),
            Some(("token_jwt".to_owned(), "parse_jwk".to_owned()))
        );
        assert_eq!(fuzzing_call("fn main() {}"), None);
    }

    #[test]
    fn tells_found_inputs_from_seeds() {
        assert!(is_found_input("da39a3ee5e6b4b0d3255bfef95601890afd80709"));
        assert!(!is_found_input("rfc7515_a3"));
        assert!(!is_found_input("every_variable"));
    }

    #[test]
    fn regression_steps_build_a_target_with_its_features() {
        let root = repo_root();
        let artifact = root.join("fuzz/artifacts/config_parse/crash-0123456789abcdef");
        let features = ["--features".to_owned(), "server".to_owned()];
        let text = regression_steps(&root, "config_parse", &features, &artifact);
        for step in ["run", "tmin", "fmt"] {
            assert!(
                text.contains(&format!(
                    "cargo fuzz {step} --features server config_parse "
                )),
                "{text}"
            );
        }
        assert!(
            text.contains("token_server::fuzzing::parse_config"),
            "{text}"
        );
    }

    #[test]
    fn only_the_server_targets_need_the_server() {
        let manifest = std::fs::read_to_string(repo_root().join("fuzz/Cargo.toml")).unwrap();
        let needing: Vec<(String, Vec<String>)> = bins(&manifest)
            .into_iter()
            .filter(|bin| !bin.required_features.is_empty())
            .map(|bin| {
                let args = features_args(&bin);
                (bin.name, args)
            })
            .collect();
        let server = vec!["--features".to_owned(), "server".to_owned()];
        assert_eq!(
            needing,
            [
                ("config_parse".to_owned(), server.clone()),
                ("callers_parse".to_owned(), server)
            ]
        );
    }

    #[test]
    fn regression_steps_name_the_crate_and_function() {
        let root = repo_root();
        let artifact = root.join("fuzz/artifacts/jwk_parse/crash-0123456789abcdef");
        let text = regression_steps(&root, "jwk_parse", &[], &artifact);
        assert!(
            text.contains(
                "token_jwt::fuzzing::parse_jwk(include_bytes!(\"data/fuzz/jwk_parse-01234567\"))"
            ),
            "{text}"
        );
        assert!(
            text.contains("crates/token-jwt/tests/data/fuzz/jwk_parse-01234567"),
            "{text}"
        );
        assert!(
            text.contains(
                "cargo fuzz run jwk_parse fuzz/artifacts/jwk_parse/crash-0123456789abcdef"
            ),
            "{text}"
        );
    }
}
