//! The shape of a LLaMA-architecture model ([`Architecture`]) and the one list of limits every
//! hyper-parameter is held to, whether it comes from the registry (`models.toml`), a GGUF file's
//! metadata or a Hugging Face `config.json`. The parameter count follows Meta's reference model
//! (`llama/model.py`): per layer q, k, v, o, gate, up, down and two RMSNorm weights.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A LLaMA-architecture shape. Also what backends build a model from (see [`crate::config`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub layers: usize,
    pub dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    pub rope_theta: f32,
    pub norm_eps: f64,
    pub tied_embeddings: bool,
    pub context_length: usize,
    pub rope_scaling: Option<RopeScaling>,
}

/// Llama 3.1's RoPE frequency scaling ("rope_type": "llama3").
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_context_length: usize,
}

impl Architecture {
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads.max(1)
    }

    /// Parameter count (embedding counted once when tied).
    pub fn parameters(&self) -> u64 {
        let (d, f, v) = (self.dim as u64, self.ffn_dim as u64, self.vocab_size as u64);
        let kv = (self.kv_heads * self.head_dim()) as u64;
        let per_layer = d * d * 2 + d * kv * 2 + 3 * d * f + 2 * d;
        let head = if self.tied_embeddings { 0 } else { v * d };
        v * d + head + per_layer * self.layers as u64 + d
    }

    /// Checks the shape is one a LLaMA forward pass can run, naming fields as the registry does.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|p| Error::InvalidInput(format!("model architecture: {}", p.describe(ArchField::registry_name))))
    }

    /// Every hyper-parameter in its accepted range: the one list of limits that GGUF metadata,
    /// `config.json` and the registry are all held to (callers name the fields their own way).
    pub fn check(&self) -> std::result::Result<(), ArchProblem> {
        use ArchField::*;
        let int = |field, value: usize, max: usize| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(ArchProblem { field, value: value.to_string(), accepted: format!("an integer from 1 to {max}") })
            }
        };
        int(Layers, self.layers, MAX_LAYERS)?;
        int(Dim, self.dim, MAX_DIM)?;
        int(Heads, self.heads, MAX_HEADS)?;
        int(KvHeads, self.kv_heads, MAX_HEADS)?;
        int(FfnDim, self.ffn_dim, MAX_FFN_DIM)?;
        int(VocabSize, self.vocab_size, MAX_VOCAB)?;
        int(ContextLength, self.context_length, MAX_CONTEXT)?;
        if !self.dim.is_multiple_of(self.heads) || !(self.dim / self.heads).is_multiple_of(2) {
            return Err(ArchProblem {
                field: Heads,
                value: self.heads.to_string(),
                accepted: format!("a divisor of the hidden size {} leaving an even head size (RoPE rotates pairs)", self.dim),
            });
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(ArchProblem { field: KvHeads, value: self.kv_heads.to_string(), accepted: format!("a divisor of the {} attention heads", self.heads) });
        }
        // Below 1 the RoPE frequencies exceed 1 radian per position and overflow f32 for tiny
        // values; real models use 10000 to 1000000.
        if !(self.rope_theta.is_finite() && self.rope_theta >= 1.0) {
            return Err(ArchProblem { field: RopeTheta, value: self.rope_theta.to_string(), accepted: "a finite number >= 1".into() });
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return Err(ArchProblem { field: NormEps, value: self.norm_eps.to_string(), accepted: "a finite number > 0 and < 1".into() });
        }
        if let Some(s) = &self.rope_scaling {
            let positive = |v: f32| v.is_finite() && v > 0.0;
            if !(s.factor.is_finite()
                && s.factor >= 1.0
                && positive(s.low_freq_factor)
                && positive(s.high_freq_factor)
                && s.high_freq_factor > s.low_freq_factor
                && (1..=MAX_CONTEXT).contains(&s.original_context_length))
            {
                return Err(ArchProblem {
                    field: RopeScaling,
                    value: format!("{s:?}"),
                    accepted: format!(
                        "factor >= 1, finite frequency factors > 0 with high_freq_factor > low_freq_factor, and an original context from 1 to {MAX_CONTEXT}"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Upper limits of the hyper-parameters: far above any LLaMA (405B: 126 layers, 16384 wide,
/// 53248 FFN, 128256 tokens, 131072 context), low enough that shapes and byte counts cannot
/// overflow.
pub const MAX_LAYERS: usize = 1024;
pub const MAX_DIM: usize = 1 << 20;
pub const MAX_HEADS: usize = 4096;
pub const MAX_FFN_DIM: usize = 1 << 22;
pub const MAX_VOCAB: usize = 1 << 24;
pub const MAX_CONTEXT: usize = 1 << 24;

/// A hyper-parameter of [`Architecture`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchField {
    Layers,
    Dim,
    Heads,
    KvHeads,
    FfnDim,
    VocabSize,
    ContextLength,
    RopeTheta,
    NormEps,
    RopeScaling,
}

impl ArchField {
    /// The field's name in `models.toml`.
    pub fn registry_name(self) -> String {
        match self {
            ArchField::Layers => "layers",
            ArchField::Dim => "dim",
            ArchField::Heads => "heads",
            ArchField::KvHeads => "kv_heads",
            ArchField::FfnDim => "ffn_dim",
            ArchField::VocabSize => "vocab_size",
            ArchField::ContextLength => "context_length",
            ArchField::RopeTheta => "rope_theta",
            ArchField::NormEps => "norm_eps",
            ArchField::RopeScaling => "rope_scaling",
        }
        .into()
    }

    /// The field's key in a Hugging Face `config.json`.
    pub fn hf_name(self) -> String {
        match self {
            ArchField::Layers => "num_hidden_layers",
            ArchField::Dim => "hidden_size",
            ArchField::Heads => "num_attention_heads",
            ArchField::KvHeads => "num_key_value_heads",
            ArchField::FfnDim => "intermediate_size",
            ArchField::VocabSize => "vocab_size",
            ArchField::ContextLength => "max_position_embeddings",
            ArchField::RopeTheta => "rope_theta",
            ArchField::NormEps => "rms_norm_eps",
            ArchField::RopeScaling => "rope_scaling",
        }
        .into()
    }

    /// The field's GGUF metadata key for architecture `arch` (e.g. `llama.rope.freq_base`).
    pub fn gguf_name(self, arch: &str) -> String {
        let key = match self {
            ArchField::Layers => "block_count",
            ArchField::Dim => "embedding_length",
            ArchField::Heads => "attention.head_count",
            ArchField::KvHeads => "attention.head_count_kv",
            ArchField::FfnDim => "feed_forward_length",
            ArchField::VocabSize => {
                let embedding = crate::gguf::TOKEN_EMBEDDING;
                return format!("{arch}.vocab_size (or the rows of {embedding})");
            }
            ArchField::ContextLength => "context_length",
            ArchField::RopeTheta => "rope.freq_base",
            ArchField::NormEps => "attention.layer_norm_rms_epsilon",
            ArchField::RopeScaling => "rope.scaling",
        };
        format!("{arch}.{key}")
    }
}

/// A hyper-parameter outside its accepted range.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchProblem {
    pub field: ArchField,
    pub value: String,
    pub accepted: String,
}

impl ArchProblem {
    /// "`name` is `value` (accepted: `range`)", with the field named by `name`.
    pub fn describe(&self, name: impl Fn(ArchField) -> String) -> String {
        format!("{} is {} (accepted: {})", name(self.field), self.value, self.accepted)
    }
}
