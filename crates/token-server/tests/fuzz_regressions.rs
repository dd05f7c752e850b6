//! Inputs the `cargo fuzz` targets of `fuzz/` once failed on, kept as regression tests
//! (`cargo xtask fuzz` prints these steps for every new failing input). Each input is also a
//! seed of its target's corpus in `fuzz/corpus/`.

/// `RUST_LOG` holding a span directive with multi-byte characters: tracing-subscriber's parser
/// sliced it inside a character and panicked; the configuration now refuses non-ASCII filters.
#[test]
fn fuzz_config_parse_e0a5a825() {
    token_server::fuzzing::parse_config(include_bytes!("data/fuzz/config_parse-e0a5a825"));
}
