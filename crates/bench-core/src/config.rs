//! The model configuration a backend builds from: the [`Architecture`] read from a GGUF's
//! `llama.*` metadata or a Hugging Face `config.json`, plus how its RoPE is laid out, and the
//! RoPE inverse frequencies (with Llama 3's frequency scaling) computed once here so that every
//! framework uses the very same numbers.
//!
//! RoPE scaling follows Meta's reference `apply_scaling` (llama-models, Llama 3.1).

use std::path::Path;

use serde::Deserialize;

use crate::gguf::GgufFile;
use crate::registry::{Architecture, RopeScaling};
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

    /// Reads the LLaMA hyper-parameters of a GGUF file.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let arch_name = gguf.architecture().unwrap_or("llama");
        let key = |k: &str| format!("{arch_name}.{k}");
        let need = |k: &str| {
            gguf.get_u64(&key(k)).map(|v| v as usize).ok_or_else(|| Error::gguf(&gguf.path, format!("missing metadata {}", key(k))))
        };
        let heads = need("attention.head_count")?;
        let embd = gguf.tensor("token_embd.weight").ok_or_else(|| Error::gguf(&gguf.path, "missing tensor token_embd.weight"))?;
        let vocab_size = gguf.get_u64(&key("vocab_size")).map(|v| v as usize).unwrap_or(embd.dims.get(1).copied().unwrap_or(0) as usize);
        let rope_freq_factors = match gguf.tensor("rope_freqs.weight") {
            Some(t) if t.ggml_type == crate::gguf::GgmlType::F32 => {
                let bytes = gguf.tensor_bytes(t)?;
                Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
            }
            _ => None,
        };
        let arch = Architecture {
            layers: need("block_count")?,
            dim: need("embedding_length")?,
            heads,
            kv_heads: gguf.get_u64(&key("attention.head_count_kv")).map(|v| v as usize).unwrap_or(heads),
            ffn_dim: need("feed_forward_length")?,
            vocab_size,
            rope_theta: gguf.get_f64(&key("rope.freq_base")).unwrap_or(10_000.0) as f32,
            norm_eps: gguf.get_f64(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
            tied_embeddings: gguf.tensor("output.weight").is_none(),
            context_length: gguf.get_u64(&key("context_length")).map(|v| v as usize).unwrap_or(4096),
            rope_scaling: None,
        };
        arch.validate()?;
        Ok(Self { arch, rope_layout: RopeLayout::Interleaved, rope_freq_factors })
    }

    /// Reads a Hugging Face `config.json` of a LLaMA model.
    pub fn from_hf_config(path: &Path) -> Result<Self> {
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
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading config.json", path, e))?;
        let c: HfConfig = serde_json::from_str(&text)
            .map_err(|e| Error::ModelFiles(format!("{} is not a LLaMA config.json: {e}", path.display())))?;
        let rope_scaling = match c.rope_scaling {
            Some(s) if s.rope_type.as_deref().unwrap_or("llama3") == "llama3" => Some(RopeScaling {
                factor: s.factor.unwrap_or(8.0),
                low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                original_context_length: s.original_max_position_embeddings.unwrap_or(8192),
            }),
            Some(s) => {
                return Err(Error::NotImplemented(format!("rope_scaling type '{}'", s.rope_type.unwrap_or_default())))
            }
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
        arch.validate()?;
        Ok(Self { arch, rope_layout: RopeLayout::HalfSplit, rope_freq_factors: None })
    }

    /// A registry shape for synthetic weights (laid out like GGUF files).
    pub fn synthetic(arch: Architecture) -> Result<Self> {
        arch.validate()?;
        Ok(Self { arch, rope_layout: RopeLayout::Interleaved, rope_freq_factors: None })
    }
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
    use crate::registry::Registry;

    #[test]
    fn llama3_rope_scaling_matches_reference_values() {
        // Reference: Meta's apply_scaling for Llama 3.2 1B (theta 500000, factor 32, head dim 64).
        // High frequencies are kept, low ones divided by 32, the band between is interpolated.
        let r = Registry::load().unwrap();
        let cfg = ModelConfig::synthetic(r.model("llama3-1b").unwrap().architecture.clone()).unwrap();
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
