//! Fuzz target: a managed-key record read from the store (`token_kms::managed::KeyRecord`) must
//! never panic, and a record it accepts must serialize back to one that parses the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(record) = token_kms::managed::KeyRecord::from_json(data) {
        let again = token_kms::managed::KeyRecord::from_json(record.to_json().as_bytes())
            .expect("a record we wrote parses");
        assert_eq!(again, record);
    }
});
