//! The model registry (`models.toml`): model shapes and where their files come from.
//!
//! The repository's `models.toml` is compiled into every binary, so they work from any
//! directory; `LLAMA3_BENCH_REGISTRY=FILE` points at another one. Parsing is serde-typed, so a
//! malformed entry fails with the TOML line and column and the field that is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The registry shipped with the repository.
pub const BUILTIN_REGISTRY: &str = include_str!("../../../models.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    #[serde(default)]
    pub models: BTreeMap<String, ModelEntry>,
    #[serde(default)]
    pub assets: BTreeMap<String, AssetEntry>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub description: String,
    /// The original CLI's `--size` value (1B, 8B, 70B, 405B).
    pub size: Option<String>,
    pub architecture: Architecture,
    pub source: Source,
    /// Asset holding the tokenizer when the weights do not carry one.
    pub tokenizer: Option<String>,
    #[serde(default)]
    pub tokenizer_in_weights: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AssetEntry {
    pub description: String,
    pub source: Source,
}

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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    Pypi {
        package: String,
        version: String,
        archive: ArchiveKind,
        files: Vec<FileSpec>,
    },
    Huggingface {
        repo: String,
        #[serde(default = "default_revision")]
        revision: String,
        #[serde(default)]
        files: Vec<FileSpec>,
        /// A `model.safetensors.index.json`: it and every shard it names are fetched.
        index: Option<String>,
    },
}

fn default_revision() -> String {
    "main".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    Wheel,
    Sdist,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

impl FileSpec {
    /// The file name the cache stores it under.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
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
        if self.dim % self.heads != 0 || (self.dim / self.heads) % 2 != 0 {
            return Err(ArchProblem {
                field: Heads,
                value: self.heads.to_string(),
                accepted: format!("a divisor of the hidden size {} leaving an even head size (RoPE rotates pairs)", self.dim),
            });
        }
        if self.heads % self.kv_heads != 0 {
            return Err(ArchProblem {
                field: KvHeads,
                value: self.kv_heads.to_string(),
                accepted: format!("a divisor of the {} attention heads", self.heads),
            });
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
            if !(s.factor.is_finite() && s.factor >= 1.0
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
            ArchField::VocabSize => "vocab_size (or the rows of token_embd.weight)",
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

impl Registry {
    /// The registry from `LLAMA3_BENCH_REGISTRY` if set, else the built-in one.
    pub fn load() -> Result<Self> {
        match std::env::var_os("LLAMA3_BENCH_REGISTRY") {
            Some(path) => Self::from_file(Path::new(&path)),
            None => Self::parse(BUILTIN_REGISTRY, Path::new("models.toml (built in)")),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading the model registry", path, e))?;
        Self::parse(&text, path)
    }

    /// Parses registry text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let registry: Registry = toml::from_str(text)
            .map_err(|e| Error::Registry { path: origin.to_path_buf(), message: e.to_string() })?;
        for (name, model) in &registry.models {
            model.architecture.validate().map_err(|e| Error::Registry {
                path: origin.to_path_buf(),
                message: format!("[models.{name}]: {e}"),
            })?;
            if let Some(tok) = &model.tokenizer {
                if !registry.assets.contains_key(tok) {
                    return Err(Error::Registry {
                        path: origin.to_path_buf(),
                        message: format!("[models.{name}] names tokenizer '{tok}', which is not an [assets.*] entry"),
                    });
                }
            }
        }
        Ok(registry)
    }

    pub fn model(&self, name: &str) -> Result<&ModelEntry> {
        self.models.get(name).ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            known: self.models.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// The model for the original CLI's `--size` (case-insensitive: 1B, 8B, 70B, 405B).
    pub fn model_for_size(&self, size: &str) -> Result<(&str, &ModelEntry)> {
        self.models
            .iter()
            .find(|(_, m)| m.size.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(size)))
            .map(|(n, m)| (n.as_str(), m))
            .ok_or_else(|| {
                let sizes: Vec<_> = self.models.values().filter_map(|m| m.size.clone()).collect();
                Error::InvalidInput(format!("unknown --size '{size}'; known sizes: {}", sizes.join(", ")))
            })
    }

    /// A model or an asset by name.
    pub fn source(&self, name: &str) -> Result<&Source> {
        if let Some(m) = self.models.get(name) {
            return Ok(&m.source);
        }
        if let Some(a) = self.assets.get(name) {
            return Ok(&a.source);
        }
        let mut known: Vec<_> = self.models.keys().cloned().collect();
        known.extend(self.assets.keys().cloned());
        Err(Error::UnknownModel { name: name.to_string(), known: known.join(", ") })
    }
}

/// Where this registry file lives when built from the repository (for messages).
pub fn builtin_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_parses_and_has_every_model() {
        let r = Registry::load().unwrap();
        for name in ["smollm2-135m", "llama3-1b", "llama3-8b", "llama3-70b", "llama3-405b"] {
            r.model(name).unwrap();
        }
        assert_eq!(r.model_for_size("1b").unwrap().0, "llama3-1b");
        assert_eq!(r.model_for_size("405B").unwrap().0, "llama3-405b");
        // Llama 3.2 1B has 1.236 B parameters (tied embedding), Llama 3.1 8B-shape 8.03 B.
        let p1 = r.model("llama3-1b").unwrap().architecture.parameters();
        assert!((1_235_000_000..1_236_500_000).contains(&p1), "{p1}");
        let p8 = r.model("llama3-8b").unwrap().architecture.parameters();
        assert!((8_030_000_000..8_031_000_000).contains(&p8), "{p8}");
        // SmolLM2-135M: 134.5 M parameters.
        let ps = r.model("smollm2-135m").unwrap().architecture.parameters();
        assert!((134_000_000..135_000_000).contains(&ps), "{ps}");
    }

    #[test]
    fn malformed_entry_names_the_line_and_field() {
        let text = "[models.x]\ndescription = \"x\"\n[models.x.architecture]\nlayers = 2\n[models.x.source]\nkind = \"pypi\"\n";
        let err = Registry::parse(text, Path::new("bad.toml")).unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("line"), "{err}");
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn unknown_model_lists_the_known_ones() {
        let r = Registry::load().unwrap();
        let err = r.model("llama9").unwrap_err().to_string();
        assert!(err.contains("smollm2-135m") && err.contains("--model-path"), "{err}");
    }
}
