#![no_main]

libfuzzer_sys::fuzz_target!(init: onstage_fuzz::init(), |data: &[u8]| onstage_fuzz::fuzz_token(data));
