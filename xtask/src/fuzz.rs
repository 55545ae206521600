//! `cargo xtask fuzz TARGET [--seconds N]`: builds the libFuzzer binary of a `readers-fuzz` target
//! on the stable toolchain (the SanitizerCoverage instrumentation cargo-fuzz asks for, through
//! stable `-C` flags; no nightly, no cargo-fuzz) and runs it for N seconds on the committed seed
//! corpus plus, for GGUF, the real SmolLM2 header from the cache. New inputs the fuzzer finds go
//! to `target/fuzz/corpus/TARGET`; a crash is saved under `target/fuzz/artifacts/TARGET/`.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The flags cargo-fuzz passes for libFuzzer on Linux (minus AddressSanitizer, which needs
/// nightly; the readers are safe Rust over a bounds-checked slice), plus overflow checks so that
/// unchecked arithmetic on file-supplied numbers is a crash.
const RUSTFLAGS: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

pub const TARGETS: [&str; 3] = ["gguf", "safetensors", "config"];

pub fn run(root: &Path, target: &str, seconds: u64) -> Result<()> {
    if !TARGETS.contains(&target) {
        bail!("unknown fuzz target '{target}' (accepted: {})", TARGETS.join(", "));
    }
    let target_dir = root.join("target/fuzz");
    let bin = format!("fuzz_{target}");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .env("RUSTFLAGS", RUSTFLAGS)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "--release", "-p", "readers-fuzz", "--features", "libfuzzer", "--bin", &bin, "--target", TRIPLE])
        .status()?;
    if !status.success() {
        bail!("building the fuzz target failed ({status}); libFuzzer needs a C++ compiler (g++ or clang++)");
    }
    let corpus = target_dir.join("corpus").join(target);
    let artifacts = target_dir.join("artifacts").join(target);
    let seeds = target_dir.join("seeds").join(target);
    for d in [&corpus, &artifacts, &seeds] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    if target == "gguf" {
        match readers_fuzz_seed() {
            Some(header) => std::fs::write(seeds.join("smollm2-135m-header.gguf"), header)?,
            None => eprintln!("note: SmolLM2 is not in the cache (`cargo xtask download smollm2-135m`); fuzzing from the tiny seeds only"),
        }
    }
    let status = Command::new(target_dir.join(TRIPLE).join("release").join(&bin))
        .arg(&corpus)
        .arg(root.join("fuzz/corpus").join(target))
        .arg(&seeds)
        .arg(format!("-max_total_time={seconds}"))
        .args(["-timeout=10", "-rss_limit_mb=2048", "-malloc_limit_mb=2048", "-print_final_stats=1"])
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .status()?;
    if !status.success() {
        bail!("the fuzzer found a crash, hang or excessive allocation ({status}); the input is in {}", artifacts.display());
    }
    Ok(())
}

/// The first 2 MiB of the cached SmolLM2 GGUF: its header, metadata and tensor table.
fn readers_fuzz_seed() -> Option<Vec<u8>> {
    use std::io::Read;
    let registry = bench_hub::registry::Registry::load().ok()?;
    let paths = bench_hub::cache::Cache::from_env().resolve(&registry, "smollm2-135m").ok()??;
    let gguf = paths.iter().find(|p| p.extension().is_some_and(|e| e == "gguf"))?;
    let mut bytes = Vec::new();
    std::fs::File::open(gguf).ok()?.take(2 << 20).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}
