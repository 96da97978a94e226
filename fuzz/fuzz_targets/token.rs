#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| onstage_fuzz::fuzz_token(data));
