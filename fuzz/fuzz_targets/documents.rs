//! libFuzzer entry point: see `kiln_fuzz::documents`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_fuzz::documents(data));
