//! Manifest text (YAML or JSON, any bytes) through parsing, strict decoding, defaults and
//! validation; see `api::fuzzing::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| api::fuzzing::manifest(data));
