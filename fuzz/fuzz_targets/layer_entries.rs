//! Well-formed layers built from an entry list, with paths made of `..`, `.wh.` and other names
//! the unpacker treats specially; see `image::fuzzing::layer_entries`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| image::fuzzing::layer_entries(data));
