//! See `apiserver::fuzzing::join_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| apiserver::fuzzing::join_request(data));
