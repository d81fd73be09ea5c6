//! See `api::fuzzing::flows`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| api::fuzzing::flows(data));
