//! Layer bytes (tar, gzip or zstd) unpacked into a sandbox that must not be written outside of;
//! see `image::fuzzing::layer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| image::fuzzing::layer(data));
