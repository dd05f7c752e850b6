//! Line-based reading and editing of the `Cargo.toml` layouts this repository writes (the root
//! manifest's `[workspace.package]` and `[workspace.dependencies]`, `fuzz/Cargo.toml`'s
//! `[[bin]]` tables, with their `required-features`), for `release.rs` and `fuzz.rs`.
//!
//! A full TOML parser would be one more dependency for a few well-known lines; instead, every
//! edit checks that it found what it expected, and `cargo package` reads the result.

use std::ops::Range;

/// The lines of `manifest` that belong to the table headed `header` (like `"[[bin]]"` or
/// `"[workspace.package]"`), with their line numbers; every table of that name when repeated.
pub(crate) fn table_lines<'a>(
    manifest: &'a str,
    header: &'a str,
) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    let mut inside = false;
    manifest.lines().enumerate().filter(move |(_, line)| {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            inside = trimmed == header;
            return false;
        }
        inside
    })
}

/// The byte range of the quoted value of `key` in `line`, for `key = "value"` as a line of its
/// own or inside an inline table (`name = { path = "..", version = "0.1.0" }`).
pub(crate) fn quoted_value(line: &str, key: &str) -> Option<Range<usize>> {
    let mut from = 0;
    while let Some(found) = line.get(from..)?.find(key) {
        let start = from + found;
        let before = line.get(..start)?.trim_end();
        let starts_key = before.is_empty() || before.ends_with('{') || before.ends_with(',');
        let rest = line.get(start + key.len()..)?;
        let value = rest
            .trim_start()
            .strip_prefix('=')
            .map(str::trim_start)
            .and_then(|v| v.strip_prefix('"'));
        if let (true, Some(value)) = (starts_key, value) {
            let open = line.len() - value.len();
            let close = open + value.find('"')?;
            return Some(open..close);
        }
        from = start + key.len();
    }
    None
}

/// A `[[bin]]` table of a Cargo.toml: its `name` and `required-features`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bin {
    pub(crate) name: String,
    /// The features cargo needs turned on to build this binary (`required-features = [..]`,
    /// written on one line).
    pub(crate) required_features: Vec<String>,
}

/// The `[[bin]]` tables of a Cargo.toml that have a `name`, in order.
pub(crate) fn bins(manifest: &str) -> Vec<Bin> {
    let mut bins: Vec<Bin> = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            inside = trimmed == "[[bin]]";
            if inside {
                bins.push(Bin {
                    name: String::new(),
                    required_features: Vec::new(),
                });
            }
            continue;
        }
        let Some(bin) = bins.last_mut().filter(|_| inside) else {
            continue;
        };
        if let Some(name) = quoted_value(line, "name").and_then(|range| line.get(range)) {
            bin.name = name.to_owned();
        } else if let Some(list) = trimmed
            .strip_prefix("required-features")
            .and_then(|rest| rest.trim_start().strip_prefix('='))
        {
            bin.required_features = list
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .map(|feature| feature.trim().trim_matches('"'))
                .filter(|feature| !feature.is_empty())
                .map(str::to_owned)
                .collect();
        }
    }
    bins.retain(|bin| !bin.name.is_empty());
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bins_and_their_required_features() {
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
required-features = ["server", "extra"]

[dependencies]
name = "not a bin"
"#;
        let bin = |name: &str, features: &[&str]| Bin {
            name: name.to_owned(),
            required_features: features.iter().map(|f| (*f).to_owned()).collect(),
        };
        assert_eq!(
            bins(manifest),
            [
                bin("jws_parse", &[]),
                bin("dpop_proof", &["server", "extra"])
            ]
        );
    }

    #[test]
    fn finds_quoted_values_of_keys_only() {
        let line = r#"token-jwt = { path = "crates/token-jwt", version = "0.1.0" }"#;
        let range = quoted_value(line, "version").unwrap();
        assert_eq!(&line[range], "0.1.0");
        assert_eq!(
            &line[quoted_value(line, "path").unwrap()],
            "crates/token-jwt"
        );
        let own_line = r#"version = "1.2.3""#;
        assert_eq!(
            &own_line[quoted_value(own_line, "version").unwrap()],
            "1.2.3"
        );
        // A key's name inside another value or key is not the key.
        assert!(quoted_value(r#"rust-version = "1.88""#, "version").is_none());
        assert!(quoted_value(r#"x = { path = "version = \"" }"#, "version").is_none());
        assert!(quoted_value("version.workspace = true", "version").is_none());
    }

    #[test]
    fn table_lines_stop_at_the_next_table() {
        let manifest = "[a]\nx = 1\n[b]\ny = 2\n[a]\nz = 3\n";
        let lines: Vec<_> = table_lines(manifest, "[a]").collect();
        assert_eq!(lines, [(1, "x = 1"), (5, "z = 3")]);
    }
}
