//! Fuzz target: `token_server::fuzzing::parse_config` (the server's environment configuration
//! parser, fed `NAME=VALUE` lines mostly naming real variables) must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| token_server::fuzzing::parse_config(data));
