//! See `trust::fuzzing::inventory`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trust::fuzzing::inventory(data));
