#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kestrel_fuzz::store::run(data));
