//! libFuzzer entry point for the `gguf` target (see `readers_fuzz::gguf`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readers_fuzz::gguf(data));
