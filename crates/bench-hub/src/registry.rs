//! The model registry (`models.toml`): model shapes and where their files come from.
//!
//! The repository's `models.toml` is compiled into every binary, so they work from any
//! directory; `LLAMA3_BENCH_REGISTRY=FILE` points at another one. Parsing is serde-typed, so a
//! malformed entry fails with the TOML line and column and the field that is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use bench_backend::arch::Architecture;

use crate::{Error, Result};

/// The registry model every CLI runs when none is named.
pub const DEFAULT_MODEL: &str = "smollm2-135m";

/// A Llama 3 size of the original CLI's `--size` (each is a registry model with that `size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Size {
    #[cfg_attr(feature = "clap", value(name = "1B", alias = "1b"))]
    B1,
    #[cfg_attr(feature = "clap", value(name = "8B", alias = "8b"))]
    B8,
    #[cfg_attr(feature = "clap", value(name = "70B", alias = "70b"))]
    B70,
    #[cfg_attr(feature = "clap", value(name = "405B", alias = "405b"))]
    B405,
}

impl Size {
    /// Every size, smallest first.
    pub const ALL: [Size; 4] = [Size::B1, Size::B8, Size::B70, Size::B405];

    /// The `--size` spelling ("1B").
    pub fn as_str(self) -> &'static str {
        match self {
            Size::B1 => "1B",
            Size::B8 => "8B",
            Size::B70 => "70B",
            Size::B405 => "405B",
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Size {
    type Err = Error;
    fn from_str(s: &str) -> Result<Size> {
        Size::ALL
            .into_iter()
            .find(|z| z.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::InvalidInput(format!("unknown --size '{s}'; known sizes: {}", Size::ALL.map(Size::as_str).join(", "))))
    }
}

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
        let registry: Registry = toml::from_str(text).map_err(|e| Error::Registry { path: origin.to_path_buf(), message: e.to_string() })?;
        for (name, model) in &registry.models {
            model.architecture.validate().map_err(|e| Error::Registry { path: origin.to_path_buf(), message: format!("[models.{name}]: {e}") })?;
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
        self.models.get(name).ok_or_else(|| Error::UnknownModel { name: name.to_string(), known: self.models.keys().cloned().collect::<Vec<_>>().join(", ") })
    }

    /// The model for the original CLI's `--size`.
    pub fn model_for_size(&self, size: Size) -> Result<(&str, &ModelEntry)> {
        self.models.iter().find(|(_, m)| m.size.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(size.as_str()))).map(|(n, m)| (n.as_str(), m)).ok_or_else(
            || {
                let sizes: Vec<_> = self.models.values().filter_map(|m| m.size.clone()).collect();
                Error::InvalidInput(format!("the registry has no model of --size {size}; its sizes: {}", sizes.join(", ")))
            },
        )
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
        assert_eq!(r.model_for_size("1b".parse().unwrap()).unwrap().0, "llama3-1b");
        assert_eq!(r.model_for_size(Size::B405).unwrap().0, "llama3-405b");
        // Every size the CLIs accept is in the registry.
        for s in Size::ALL {
            assert!(r.model_for_size(s).is_ok(), "{s}");
        }
        assert!("3B".parse::<Size>().unwrap_err().to_string().contains("1B, 8B, 70B, 405B"));
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
