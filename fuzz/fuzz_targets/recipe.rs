//! libFuzzer entry point: see `kiln_fuzz::recipe`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_fuzz::recipe(data));
