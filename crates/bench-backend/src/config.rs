//! The model configuration a backend builds from: the [`Architecture`] read from a GGUF's
//! `llama.*` metadata or a Hugging Face `config.json`, plus how its RoPE is laid out, and the
//! RoPE inverse frequencies (with Llama 3's frequency scaling) computed once here so that every
//! framework uses the very same numbers.
//!
//! RoPE scaling follows Meta's reference `apply_scaling` (llama-models, Llama 3.1).

use std::path::Path;

use serde::Deserialize;

use crate::arch::{ArchField, Architecture, RopeScaling};
use crate::gguf::GgufFile;
use crate::schema::{self, NameScheme, TensorId, TensorRole};
use crate::{Error, Result};

/// How rotary pairs are laid out in the q/k projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Pairs are adjacent (x0,x1),(x2,x3)...: GGUF files, whose converter permutes q/k rows.
    Interleaved,
    /// Pairs are (x_i, x_{i+d/2}): Hugging Face checkpoints ("rotate_half").
    HalfSplit,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: Architecture,
    pub rope_layout: RopeLayout,
    /// Per-frequency divisors shipped in a GGUF (`rope_freqs.weight`, Llama 3.1+); they replace
    /// the computed scaling when present.
    pub rope_freq_factors: Option<Vec<f32>>,
}

impl ModelConfig {
    pub fn head_dim(&self) -> usize {
        self.arch.head_dim()
    }

    /// RoPE inverse frequencies, `head_dim / 2` of them.
    pub fn inv_freqs(&self) -> Vec<f32> {
        let d = self.head_dim();
        let base: Vec<f64> = (0..d / 2).map(|i| 1.0 / (self.arch.rope_theta as f64).powf(2.0 * i as f64 / d as f64)).collect();
        if let Some(factors) = &self.rope_freq_factors {
            return base.iter().zip(factors).map(|(f, k)| (f / *k as f64) as f32).collect();
        }
        match self.arch.rope_scaling {
            None => base.iter().map(|&f| f as f32).collect(),
            Some(s) => base.iter().map(|&f| llama3_scale(f, s) as f32).collect(),
        }
    }

    /// (cos, sin) tables, `max_seq_len x head_dim/2`, row-major.
    pub fn rope_tables(&self, max_seq_len: usize) -> (Vec<f32>, Vec<f32>) {
        let inv = self.inv_freqs();
        let mut cos = Vec::with_capacity(max_seq_len * inv.len());
        let mut sin = Vec::with_capacity(max_seq_len * inv.len());
        for p in 0..max_seq_len {
            for &f in &inv {
                let a = p as f64 * f as f64;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        (cos, sin)
    }

    /// Reads the LLaMA hyper-parameters of a GGUF file and checks them, and the tensor table,
    /// against their accepted ranges: every error names the metadata key or tensor, the file and
    /// what is accepted.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let arch_name = gguf.architecture().unwrap_or("llama");
        let key = |k: &str| format!("{arch_name}.{k}");
        let bad = |m: String| Error::gguf(&gguf.path, m);
        let int = |k: &str| -> Result<Option<usize>> {
            match gguf.get(&key(k)) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| bad(format!("{} is {v:?} (accepted: a non-negative integer)", key(k)))),
            }
        };
        let need = |k: &str| int(k)?.ok_or_else(|| bad(format!("missing metadata {}", key(k))));
        let float = |k: &str, default: f64| -> Result<f64> {
            match gguf.get(&key(k)) {
                None => Ok(default),
                Some(v) => v.as_f64().ok_or_else(|| bad(format!("{} is {v:?} (accepted: a number)", key(k)))),
            }
        };
        let heads = need("attention.head_count")?;
        let embd_name = TensorId::global(TensorRole::TokenEmbedding).gguf_name();
        let embd = gguf.tensor(&embd_name).ok_or_else(|| bad(format!("missing tensor {embd_name}")))?;
        let embd_rows = embd.dims.get(1).and_then(|&d| usize::try_from(d).ok()).unwrap_or(0);
        let vocab_size = int("vocab_size")?.unwrap_or(embd_rows);
        let arch = Architecture {
            layers: need("block_count")?,
            dim: need("embedding_length")?,
            heads,
            kv_heads: int("attention.head_count_kv")?.unwrap_or(heads),
            ffn_dim: need("feed_forward_length")?,
            vocab_size,
            rope_theta: float("rope.freq_base", 10_000.0)? as f32,
            norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5)?,
            tied_embeddings: gguf.tensor(&TensorId::global(TensorRole::Output).gguf_name()).is_none(),
            context_length: int("context_length")?.unwrap_or(4096),
            rope_scaling: None,
        };
        arch.check().map_err(|p| bad(p.describe(|f| f.gguf_name(arch_name))))?;
        check_tensor_shapes(&arch, &gguf.path, NameScheme::Gguf, |name| {
            gguf.tensor(name).map(|t| t.dims.iter().rev().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect())
        })?;
        let rope_freq_factors = match gguf.tensor(schema::GGUF_ROPE_FREQS) {
            Some(t) if t.ggml_type == crate::gguf::GgmlType::F32 => {
                let bytes = gguf.tensor_bytes(t)?;
                let factors: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                Some(factors)
            }
            _ => None,
        };
        let cfg = Self { arch, rope_layout: RopeLayout::Interleaved, rope_freq_factors };
        if let Some(factors) = &cfg.rope_freq_factors {
            let half = cfg.head_dim() / 2;
            if factors.len() != half || !factors.iter().all(|f| f.is_finite() && *f > 0.0) || !cfg.inv_freqs().iter().all(|f| f.is_finite()) {
                return Err(bad(format!(
                    "tensor {} holds {} values (accepted: {half} finite values > 0, one per rotary frequency, that keep the frequencies finite)",
                    schema::GGUF_ROPE_FREQS,
                    factors.len()
                )));
            }
        }
        Ok(cfg)
    }

    /// Reads a Hugging Face `config.json` of a LLaMA model and checks every field against its
    /// accepted range (the error names the field, the file and the range).
    pub fn from_hf_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading config.json", path, e))?;
        Self::from_hf_config_text(&text, path)
    }

    /// [`Self::from_hf_config`] on the file's text; `path` names it in errors.
    pub fn from_hf_config_text(text: &str, path: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct HfRopeScaling {
            factor: Option<f32>,
            low_freq_factor: Option<f32>,
            high_freq_factor: Option<f32>,
            original_max_position_embeddings: Option<usize>,
            rope_type: Option<String>,
        }
        #[derive(Deserialize)]
        struct HfConfig {
            hidden_size: usize,
            intermediate_size: usize,
            num_attention_heads: usize,
            num_hidden_layers: usize,
            num_key_value_heads: Option<usize>,
            vocab_size: usize,
            rms_norm_eps: Option<f64>,
            rope_theta: Option<f32>,
            tie_word_embeddings: Option<bool>,
            max_position_embeddings: Option<usize>,
            rope_scaling: Option<HfRopeScaling>,
        }
        let c: HfConfig = serde_json::from_str(text).map_err(|e| Error::ModelFiles(format!("{} is not a LLaMA config.json: {e}", path.display())))?;
        let rope_scaling = match c.rope_scaling {
            Some(s) if s.rope_type.as_deref().unwrap_or("llama3") == "llama3" => Some(RopeScaling {
                factor: s.factor.unwrap_or(8.0),
                low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                original_context_length: s.original_max_position_embeddings.unwrap_or(8192),
            }),
            Some(s) => return Err(Error::NotImplemented(format!("rope_scaling type '{}'", s.rope_type.unwrap_or_default()))),
            None => None,
        };
        let arch = Architecture {
            layers: c.num_hidden_layers,
            dim: c.hidden_size,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
            ffn_dim: c.intermediate_size,
            vocab_size: c.vocab_size,
            rope_theta: c.rope_theta.unwrap_or(10_000.0),
            norm_eps: c.rms_norm_eps.unwrap_or(1e-5),
            tied_embeddings: c.tie_word_embeddings.unwrap_or(false),
            context_length: c.max_position_embeddings.unwrap_or(4096),
            rope_scaling,
        };
        arch.check().map_err(|p| Error::ModelFiles(format!("{}: {}", path.display(), p.describe(ArchField::hf_name))))?;
        Ok(Self { arch, rope_layout: RopeLayout::HalfSplit, rope_freq_factors: None })
    }

    /// [`Self::from_hf_config`], plus every shard's safetensors header checked: offsets inside the
    /// file, element counts and byte sizes computed with checked arithmetic, float dtypes, and
    /// the model's tensors present with the shapes the config implies. Nothing is allocated from
    /// the header's numbers before they pass.
    pub fn from_safetensors(config: &Path, shards: &[std::path::PathBuf]) -> Result<Self> {
        let cfg = Self::from_hf_config(config)?;
        let mut shapes = std::collections::BTreeMap::new();
        for shard in shards {
            for t in crate::safetensors::map_shard(shard)?.1 {
                shapes.insert(t.name.clone(), t);
            }
        }
        let origin = shards.first().map(|p| p.as_path()).unwrap_or(config);
        check_tensor_shapes(&cfg.arch, origin, NameScheme::HuggingFace, |name| shapes.get(name).map(|t| t.shape.clone()))?;
        for id in schema::tensors(&cfg.arch) {
            if let Some(t) = shapes.get(&id.hf_name()) {
                if t.dtype.float().is_none() {
                    return Err(Error::ModelFiles(format!("{}: tensor {} has dtype {} (accepted: F32, F16, BF16)", origin.display(), t.name, t.dtype.name())));
                }
            }
        }
        Ok(cfg)
    }

    /// A registry shape for synthetic weights (laid out like GGUF files).
    pub fn synthetic(arch: Architecture) -> Result<Self> {
        arch.validate()?;
        Ok(Self { arch, rope_layout: RopeLayout::Interleaved, rope_freq_factors: None })
    }
}

/// Every tensor the architecture needs must be in the file with the shape it implies (row-major,
/// outermost first); `scheme` says how the file names them and `shape_of` looks one up by that
/// name. Run before any weight is read, so that a wrong config or tensor table is an error naming
/// the tensor, the file, the shape found and the shape expected, not a failed matrix product.
pub fn check_tensor_shapes(arch: &Architecture, file: &Path, scheme: NameScheme, shape_of: impl Fn(&str) -> Option<Vec<usize>>) -> Result<()> {
    for id in schema::tensors(arch) {
        let name = id.name(scheme);
        match shape_of(&name) {
            None => {
                return Err(Error::ModelFiles(format!(
                    "{}: missing tensor {name} (the config has {} layers; accepted: every tensor of those layers)",
                    file.display(),
                    arch.layers
                )))
            }
            Some(found) => check_shape(arch, file, &name, &id.shape(arch), &found)?,
        }
    }
    Ok(())
}

/// One tensor's shape against the one `arch` implies: the error names the tensor, the file, both
/// shapes and the hyper-parameters they come from.
pub fn check_shape(arch: &Architecture, file: &Path, name: &str, expected: &[usize], found: &[usize]) -> Result<()> {
    if found == expected {
        return Ok(());
    }
    Err(Error::ModelFiles(format!(
        "{}: tensor {name} has shape {found:?}, but the config (dim {}, {} heads / {} KV heads, ffn {}, vocab {}) implies {expected:?}",
        file.display(),
        arch.dim,
        arch.heads,
        arch.kv_heads,
        arch.ffn_dim,
        arch.vocab_size
    )))
}

/// The model's vocabulary must cover every id the tokenizer can produce.
pub fn check_tokenizer_vocab(arch: &Architecture, model_file: &str, tokenizer_vocab: usize, tokenizer: &str) -> Result<()> {
    if tokenizer_vocab > arch.vocab_size {
        return Err(Error::ModelFiles(format!(
            "{model_file}: vocab_size is {} but the tokenizer ({tokenizer}) has {tokenizer_vocab} tokens \
             (accepted: a vocabulary of at least {tokenizer_vocab}); use the tokenizer that ships with the model",
            arch.vocab_size
        )));
    }
    Ok(())
}

fn llama3_scale(freq: f64, s: RopeScaling) -> f64 {
    let orig = s.original_context_length as f64;
    let low_wavelen = orig / s.low_freq_factor as f64;
    let high_wavelen = orig / s.high_freq_factor as f64;
    let wavelen = 2.0 * std::f64::consts::PI / freq;
    if wavelen < high_wavelen {
        freq
    } else if wavelen > low_wavelen {
        freq / s.factor as f64
    } else {
        let smooth = (orig / wavelen - s.low_freq_factor as f64) / (s.high_freq_factor as f64 - s.low_freq_factor as f64);
        (1.0 - smooth) * freq / s.factor as f64 + smooth * freq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::registry_arch;

    #[test]
    fn the_vocabulary_must_cover_the_tokenizer() {
        let arch = &registry_arch("smollm2-135m");
        assert!(check_tokenizer_vocab(arch, "m.gguf", arch.vocab_size, "t").is_ok());
        let err = check_tokenizer_vocab(arch, "m.gguf", 128_256, "tokenizer.json").unwrap_err().to_string();
        assert!(
            err.contains("m.gguf: vocab_size is 49152 but the tokenizer (tokenizer.json) has 128256 tokens (accepted: a vocabulary of at least 128256)"),
            "{err}"
        );
    }

    #[test]
    fn llama3_rope_scaling_matches_reference_values() {
        // Reference: Meta's apply_scaling for Llama 3.2 1B (theta 500000, factor 32, head dim 64).
        // High frequencies are kept, low ones divided by 32, the band between is interpolated.
        let cfg = ModelConfig::synthetic(registry_arch("llama3-1b")).unwrap();
        let inv = cfg.inv_freqs();
        assert_eq!(inv.len(), 32);
        assert_eq!(inv[0], 1.0);
        let base = |i: usize| 1.0 / 500000f64.powf(2.0 * i as f64 / 64.0);
        let close = |a: f32, b: f64| ((a as f64 - b) / b).abs() < 1e-6;
        assert!(close(inv[5], base(5))); // wavelen 2pi*500000^(10/64) ~ 49 < 2048
        assert!(close(inv[31], base(31) / 32.0)); // wavelen ~ 2.2e6 > 8192
                                                  // i = 15: wavelen = 2pi / 500000^(-30/64) ~ 2927, between 2048 and 8192: smooth = 8192/2927 - 1 ~ 1.799/3...
        let f = base(15);
        let wl = 2.0 * std::f64::consts::PI / f;
        let smooth = (8192.0 / wl - 1.0) / 3.0;
        assert!(close(inv[15], (1.0 - smooth) * f / 32.0 + smooth * f));
        assert!(inv[15] as f64 > base(15) / 32.0 && (inv[15] as f64) < base(15));
    }
}
