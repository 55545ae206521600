//! libFuzzer entry point for the `config` target (see `readers_fuzz::config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readers_fuzz::config(data));
