//! See `trust::fuzzing::signature`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trust::fuzzing::signature(data));
