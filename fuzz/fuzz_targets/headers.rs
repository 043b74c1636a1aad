#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| modelbus::fuzz_targets::headers(data));
