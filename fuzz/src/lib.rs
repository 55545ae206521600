//! What each fuzz target does with one input, shared by the libFuzzer binaries
//! (`fuzz_targets/`, run with `cargo xtask fuzz TARGET`) and the corpus replay test
//! (`tests/replay.rs`, part of `cargo test`). A target returns normally whether the input is
//! accepted or rejected; a panic, an abort, a hang or an out-of-memory is the bug being hunted.

use std::path::Path;

use bench_backend::config::ModelConfig;
use bench_backend::gguf::GgufFile;

/// The fuzz targets, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Gguf,
    Safetensors,
    Config,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Gguf, Target::Safetensors, Target::Config];

    pub fn name(self) -> &'static str {
        match self {
            Target::Gguf => "gguf",
            Target::Safetensors => "safetensors",
            Target::Config => "config",
        }
    }

    pub fn run(self, data: &[u8]) {
        match self {
            Target::Gguf => gguf(data),
            Target::Safetensors => safetensors(data),
            Target::Config => config(data),
        }
    }
}

/// The GGUF reader, then everything read from an accepted file: the LLaMA config (with its tensor
/// table check), every tensor's bytes, the tokenizer, the type summary.
pub fn gguf(data: &[u8]) {
    let Ok(file) = GgufFile::from_bytes("fuzz.gguf", data.to_vec()) else { return };
    for t in &file.tensors {
        if let Ok(bytes) = file.tensor_bytes(t) {
            assert_eq!(Some(bytes.len() as u64), t.byte_len(), "tensor {} bytes", t.name);
        }
        let _ = t.shape();
    }
    let _ = file.type_summary();
    if let Ok(cfg) = ModelConfig::from_gguf(&file) {
        // Accepted configs must be usable: RoPE tables of a few positions, finite.
        let (cos, sin) = cfg.rope_tables(4);
        assert!(cos.iter().chain(&sin).all(|v| v.is_finite()), "non-finite RoPE table from an accepted config");
    }
    // The tokenizer builds from the metadata only when the file has one; bound its size so the
    // fuzzer spends its time on the reader rather than in the tokenizers crate.
    if file.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).is_some_and(|a| a.len() <= 4096) {
        let _ = bench_core::text::tokenizer::Tokenizer::from_gguf(&file);
    }
}

/// The safetensors header reader: accepted tensors must lie inside the input.
pub fn safetensors(data: &[u8]) {
    let Ok(tensors) = bench_backend::safetensors::read_header(data, Path::new("fuzz.safetensors")) else { return };
    for t in tensors {
        let bytes = data.get(t.start as usize..t.end as usize).expect("accepted tensor lies inside the file");
        let elements: usize = t.shape.iter().product();
        assert_eq!(bytes.len() as u64, elements as u64 * t.dtype.size_in_bytes(), "tensor {}", t.name);
    }
}

/// `config.json` parsing and range checks: an accepted config gives finite RoPE tables.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = ModelConfig::from_hf_config_text(text, Path::new("fuzz/config.json")) {
        let (cos, sin) = cfg.rope_tables(4);
        assert!(cos.iter().chain(&sin).all(|v| v.is_finite()), "non-finite RoPE table from an accepted config");
        let _ = cfg.arch.parameters();
    }
}

/// The committed seed corpus of a target (`fuzz/corpus/NAME`: tiny hand-made files and inputs the
/// fuzzer kept), plus, for GGUF, the header of the real SmolLM2 file when it is in the cache
/// (`cargo xtask download smollm2-135m`).
pub fn seeds(target: Target) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target.name());
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).ok()?)))
        .collect();
    out.sort();
    if target == Target::Gguf {
        if let Some(header) = smollm2_header() {
            out.push(("smollm2-135m header".into(), header));
        }
    }
    out
}

/// Bytes of the real SmolLM2 GGUF kept as a seed: its header, metadata (tokenizer included) and
/// tensor table, which end before this offset.
pub const SMOLLM2_HEADER_BYTES: usize = 2 << 20;

/// The first [`SMOLLM2_HEADER_BYTES`] of the cached SmolLM2-135M GGUF, if it is in the cache.
pub fn smollm2_header() -> Option<Vec<u8>> {
    let registry = bench_hub::registry::Registry::load().ok()?;
    let paths = bench_hub::cache::Cache::from_env().resolve(&registry, "smollm2-135m").ok()??;
    let gguf = paths.iter().find(|p| p.extension().is_some_and(|e| e == "gguf"))?;
    let mut bytes = Vec::with_capacity(SMOLLM2_HEADER_BYTES);
    use std::io::Read;
    std::fs::File::open(gguf).ok()?.take(SMOLLM2_HEADER_BYTES as u64).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}
