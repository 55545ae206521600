//! Checks made after the options are resolved and before a byte of weights is read: the model's
//! configuration (through bench-core's readers, which validate it), its vocabulary against the
//! tokenizer's, and whether the load fits in the memory available (`bench_backend::memory`).

use anyhow::{bail, Result};
use bench_backend::arch::Architecture;
use bench_backend::backend::{Backend, DType, LoadSpec, Quantize, WeightSource};
use bench_backend::config::{self, ModelConfig};
use bench_backend::gguf::GgufFile;
use bench_backend::memory::{self, Stored, GB};
use bench_backend::WeightFormat;
use bench_hub::registry::Registry;

use crate::resolve::Resolved;

/// The model's configuration, how its weights are stored, and the file to name in errors.
fn describe(backend: &dyn Backend, spec: &LoadSpec) -> Result<(ModelConfig, Stored, String)> {
    backend.check_source(spec)?;
    Ok(match &spec.source {
        WeightSource::Synthetic { arch, .. } => (ModelConfig::synthetic(arch.clone())?, Stored::Float(DType::F32), "synthetic weights".into()),
        WeightSource::Files(weights) => match weights {
            WeightFormat::Gguf(path) => {
                let gguf = GgufFile::open(path)?;
                let cfg = ModelConfig::from_gguf(&gguf)?;
                let stored = if backend.keeps_gguf_blocks() {
                    let file_bytes = gguf.tensors.iter().filter_map(|t| t.byte_len()).fold(0u64, u64::saturating_add);
                    Stored::AsInFile { file_bytes, embedding_f32: true }
                } else {
                    Stored::Float(DType::F32)
                };
                (cfg, stored, path.display().to_string())
            }
            WeightFormat::Safetensors { shards, config } => {
                let cfg = ModelConfig::from_safetensors(config, shards)?;
                let file_bytes = shards.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).fold(0u64, u64::saturating_add);
                (cfg, Stored::AsInFile { file_bytes, embedding_f32: false }, config.display().to_string())
            }
        },
    })
}

/// The model's vocabulary must cover the tokenizer's.
pub fn check_vocab(backend: &dyn Backend, resolved: &Resolved) -> Result<()> {
    let (cfg, _, origin) = describe(backend, &resolved.spec)?;
    config::check_tokenizer_vocab(&cfg.arch, &origin, resolved.tokenizer.vocab_size(), resolved.tokenizer.description())?;
    Ok(())
}

/// Refuses a load that cannot fit in the memory available, naming both figures and what would
/// fit (`--ignore-memory-check` skips this). `label` names the model.
pub fn check_memory(backend: &dyn Backend, spec: &LoadSpec, label: &str) -> Result<()> {
    let (cfg, stored, _) = describe(backend, spec)?;
    if spec.device != bench_backend::Device::Cpu {
        // Free device memory is the framework's to report; host memory is not the limit there.
        tracing::debug!("memory check skipped on {}", spec.device);
        return Ok(());
    }
    let Some(available) = memory::available() else { return Ok(()) };
    let float = spec.float_dtype()?;
    // Every KV-cache slot (the server's --parallel) may fill to the full length.
    let cache_len = spec.cache_len(cfg.arch.context_length) * spec.slots.max(1);
    let need = memory::estimate_load(&cfg.arch, stored, float, spec.quantize, cache_len);
    if need.total() <= available.bytes {
        return Ok(());
    }
    let held = match (float, spec.quantize) {
        (Some(_), Some(Quantize::Int8)) => "int8 layer matrices".to_string(),
        (Some(_), Some(Quantize::Nf4)) => "nf4 layer matrices".to_string(),
        (Some(dt), _) => dt.as_str().to_string(),
        (None, _) => match stored {
            Stored::Float(dt) => dt.as_str().to_string(),
            Stored::AsInFile { .. } => "as stored in the file".to_string(),
        },
    };
    let fits = |arch: &Architecture, stored: Stored, float: Option<DType>, q: Option<Quantize>| {
        let e = memory::estimate_load(arch, stored, float, q, cache_len);
        (e.total() <= available.bytes).then_some(e.total())
    };
    let mut options = Vec::new();
    let base = spec.dtype.unwrap_or(DType::F32);
    if spec.quantize.is_none() && !matches!(float, Some(DType::BF16 | DType::F16)) {
        if let Some(b) = fits(&cfg.arch, stored, Some(DType::BF16), None) {
            options.push(format!("--dtype bf16 ({:.1} GB)", b as f64 / GB));
        }
    }
    for (flag, q) in [("int8", Quantize::Int8), ("nf4", Quantize::Nf4)] {
        if spec.quantize != Some(q) {
            if let Some(b) = fits(&cfg.arch, stored, Some(base), Some(q)) {
                options.push(format!("--quantize {flag} ({:.1} GB)", b as f64 / GB));
            }
        }
    }
    if let Ok(registry) = Registry::load() {
        let mut sizes: Vec<(u64, String)> = registry
            .models
            .values()
            .filter_map(|m| Some((m.architecture.parameters(), m.size.clone()?, &m.architecture)))
            .filter(|(p, _, _)| *p < cfg.arch.parameters())
            .filter_map(|(p, size, arch)| {
                let b = fits(arch, Stored::Float(DType::F32), float.or(Some(DType::F32)), spec.quantize)?;
                Some((p, format!("--size {size} ({:.1} GB)", b as f64 / GB)))
            })
            .collect();
        sizes.sort();
        options.extend(sizes.into_iter().rev().map(|(_, s)| s));
    }
    let what_fits =
        if options.is_empty() { "nothing smaller in the registry fits either".to_string() } else { format!("what would fit: {}", options.join(", ")) };
    bail!(
        "not enough memory for {} on {}: it needs {:.1} GB ({:.1} GB of weights, {held}, + {:.1} GB KV cache for {cache_len} positions) \
         but {:.1} GB is available ({}); {what_fits}; or pass --ignore-memory-check to load anyway",
        label,
        backend.name(),
        need.total() as f64 / GB,
        need.weights as f64 / GB,
        need.kv_cache as f64 / GB,
        available.bytes as f64 / GB,
        available.source
    )
}
