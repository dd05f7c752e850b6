//! Entry points for `cargo fuzz` targets (not a stable API), as the library crates have them:
//! `fuzz/fuzz_targets/config_parse.rs` calls [`parse_config`], which drives
//! [`Config::from_vars`](crate::config::Config::from_vars) in `config.rs`;
//! `fuzz/fuzz_targets/callers_parse.rs` calls [`parse_callers`], which drives the callers
//! file's parser and the client certificate reader in `callers.rs`.

use std::collections::HashMap;

use crate::config::{Config, VARIABLES};

/// Variables the fuzzer never sets: the parser reads the files `CALLER_TOKEN_SHA256_FILE` and
/// `CALLERS_FILE` name, and a fuzzed path (`/dev/zero`, a FIFO) would hang the run instead of
/// testing the parser (the callers file's contents have a target of their own).
const NOT_FUZZED: &[&str] = &["CALLER_TOKEN_SHA256_FILE", "CALLERS_FILE"];

/// Parses arbitrary bytes as a callers file (lossily as UTF-8, as a file read as text would
/// fail on the rest) and as a client certificate's DER; neither may panic.
///
/// # Panics
/// When an accepted file breaks one of the parser's own rules (a caller without a name, two
/// callers of one name), or a refusal repeats a credential of the file.
pub fn parse_callers(data: &[u8]) {
    let _names = crate::callers::certificate_sans(data);
    let text = String::from_utf8_lossy(data);
    match crate::callers::parse(&text) {
        Ok(specs) => {
            let mut names = std::collections::HashSet::new();
            for spec in &specs {
                assert!(!spec.caller.name.is_empty());
                assert!(names.insert(spec.caller.name.clone()), "duplicate name");
            }
        }
        Err(reason) => {
            // No 64-hex-digit run of the file (a digest) comes back in the message.
            for word in text.split(|c: char| !c.is_ascii_hexdigit()) {
                if word.len() == 64 {
                    assert!(!reason.contains(word), "credential echoed: {reason}");
                }
            }
        }
    }
}

/// Decodes arbitrary bytes into variables (see [`variables`]) and parses them as the server's
/// configuration; it must never panic, whatever the variables hold.
///
/// # Panics
/// When the parser accepts a configuration that breaks one of its own rules, or `Debug` of an
/// accepted configuration depends on the refresh-token pepper or the DPoP nonce key.
pub fn parse_config(data: &[u8]) {
    let vars = variables(data);
    let Ok(config) = Config::from_vars(&vars) else {
        return;
    };
    assert!(config.family_lifetime >= config.refresh_token_ttl);
    assert!((1..=10).contains(&config.grace_max_uses));
    if let crate::config::StoreConfig::Redis(redis) = &config.store {
        assert!((1..=64).contains(&redis.pool_size()));
    }
    assert!(config.grpc_addr.port() == 0 || config.grpc_addr.port() != config.admin_addr.port());
    // Secrets never reach `Debug`: another valid key gives the same text. (Looking for the key's
    // text would be wrong: a printed value, like `ISSUER`, may hold the same characters.)
    let debug = format!("{config:?}");
    for secret in ["REFRESH_TOKEN_PEPPER", "DPOP_NONCE_KEY"] {
        let Some(value) = vars.get(secret).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            continue;
        };
        let ab = "ab".repeat(32);
        let other = if value == ab { "cd".repeat(32) } else { ab };
        let mut changed = vars.clone();
        changed.insert(secret.to_owned(), other);
        let again = Config::from_vars(&changed).map(|c| format!("{c:?}"));
        assert_eq!(
            again.ok().as_deref(),
            Some(debug.as_str()),
            "Debug depends on {secret}"
        );
    }
}

/// The variables encoded in `data`, read as lines: a line with `=` is `NAME=VALUE` as written
/// (any name, so unknown and misspelt ones are tried too); any other line picks a real variable
/// by its first byte and the rest of the line is the value, so most lines reach a real check.
/// Bytes that are not UTF-8 become U+FFFD, as in an environment read with `to_string_lossy`.
pub fn variables(data: &[u8]) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in data.split(|&b| b == b'\n') {
        let (name, value) = match line.iter().position(|&b| b == b'=') {
            Some(eq) => {
                let (name, value) = line.split_at(eq);
                (
                    String::from_utf8_lossy(name).into_owned(),
                    value.get(1..).unwrap_or_default(),
                )
            }
            None => {
                let Some((&pick, value)) = line.split_first() else {
                    continue;
                };
                let real = VARIABLES.get(usize::from(pick) % VARIABLES.len());
                let Some(var) = real else {
                    continue;
                };
                (var.name.to_owned(), value)
            }
        };
        if NOT_FUZZED.contains(&name.as_str()) {
            continue;
        }
        let value = String::from_utf8_lossy(value).into_owned();
        vars.insert(name, value);
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_decode_to_variables() {
        let vars = variables(b"PORT=8080\n\x02json\nCALLER_TOKEN_SHA256_FILE=/dev/zero\n\nX=");
        assert_eq!(vars.get("PORT").map(String::as_str), Some("8080"));
        let second = VARIABLES[2].name;
        assert_eq!(vars.get(second).map(String::as_str), Some("json"));
        assert_eq!(vars.get("X").map(String::as_str), Some(""));
        assert!(!vars.contains_key("CALLER_TOKEN_SHA256_FILE"));
        assert_eq!(vars.len(), 3);
    }

    #[test]
    fn never_panics_on_samples() {
        for sample in [
            &b""[..],
            b"PORT=9090",
            b"REDIS_URL=redis://\xff\xfe",
            b"\x00\xff\xff\n\x13+a+a",
            &[b'A'; 10_000],
            // A printed value may hold the key's characters (found by the fuzzer: a false
            // alarm of an earlier, text-based secrecy check).
            format!(
                "DPOP_NONCE_KEY={key}\nISSUER=https://issuer.example/{key}",
                key = "ff".repeat(32)
            )
            .as_bytes(),
        ] {
            parse_config(sample);
        }
    }
}
