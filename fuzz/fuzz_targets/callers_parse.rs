//! Fuzz target: `token_server::fuzzing::parse_callers` (the `CALLERS_FILE` parser, and the
//! reader of a client certificate's subject alternative names) must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| token_server::fuzzing::parse_callers(data));
