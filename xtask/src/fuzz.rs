//! `cargo xtask fuzz [--time SECONDS] [TARGET...]`: runs the `cargo fuzz` targets of `fuzz/`.
//!
//! `fuzz/` is its own crate, outside the workspace, with one `[[bin]]` per target. cargo-fuzz
//! passes nightly-only flags to rustc; `RUSTC_BOOTSTRAP=1` lets the pinned stable toolchain take
//! them, since no nightly toolchain can be installed here.

use anyhow::{Context as _, Result, bail};
use xshell::cmd;

use crate::{ensure_cargo_tool, heading, repo_root, root_shell};

const DEFAULT_SECONDS: u64 = 60;

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut wanted = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--time") {
            Some("") => args.next().map(String::as_str),
            Some(rest) if rest.starts_with('=') => rest.get(1..),
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

    let manifest = repo_root().join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "no fuzz crate: {} is missing (create it with `cargo fuzz init`, one [[bin]] per target)",
            manifest.display()
        )
    })?;
    let available = bin_names(&text);
    if available.is_empty() {
        bail!("{} declares no [[bin]] targets", manifest.display());
    }
    if let Some(unknown) = wanted.iter().find(|t| !available.contains(t)) {
        bail!(
            "no fuzz target `{unknown}`; targets: {}",
            available.join(", ")
        );
    }
    let targets = if wanted.is_empty() { available } else { wanted };

    let sh = root_shell()?;
    ensure_cargo_tool(&sh, "fuzz", None)?;
    sh.set_var("RUSTC_BOOTSTRAP", "1");
    let max_time = format!("-max_total_time={seconds}");
    for target in &targets {
        heading(&format!("fuzz {target} ({seconds}s)"));
        let corpus = format!("fuzz/corpus/{target}");
        sh.create_dir(&corpus)?;
        cmd!(sh, "cargo fuzz run {target} {corpus} -- {max_time}")
            .run()
            .with_context(|| {
                format!(
                    "fuzz target `{target}` failed; the crashing input is in fuzz/artifacts/{target}/"
                )
            })?;
    }
    println!(
        "\nfuzz: {} target(s) ran {seconds}s each without a failure",
        targets.len()
    );
    Ok(())
}

/// The `name`s of the `[[bin]]` tables of a Cargo.toml (a line-based reading, enough for the
/// layout `cargo fuzz add` writes).
fn bin_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            let value = line
                .strip_prefix("name")
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix('='))
                .map(|value| value.trim().trim_matches('"'));
            if let Some(name) = value {
                names.push(name.to_owned());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::bin_names;

    #[test]
    fn reads_bin_names() {
        let manifest = r#"
[package]
name = "token-service-fuzz"

[[bin]]
name = "jws_parse"
path = "fuzz_targets/jws_parse.rs"
test = false

[[bin]]
name = "dpop_proof"
path = "fuzz_targets/dpop_proof.rs"
"#;
        assert_eq!(bin_names(manifest), ["jws_parse", "dpop_proof"]);
    }
}
