//! See `trust::fuzzing::osv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trust::fuzzing::osv(data));
