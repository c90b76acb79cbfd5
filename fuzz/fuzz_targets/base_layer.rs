//! libFuzzer entry point: see `kiln_fuzz::base_layer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_fuzz::base_layer(data));
