//! See `net::dns::fuzz_query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| net::dns::fuzz_query(data));
