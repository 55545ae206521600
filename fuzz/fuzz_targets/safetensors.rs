//! libFuzzer entry point for the `safetensors` target (see `readers_fuzz::safetensors`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readers_fuzz::safetensors(data));
