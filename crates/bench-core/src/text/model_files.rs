//! From a model as the command lines name it (registry name, size, path, synthetic shape) to its
//! files and tokenizer, without loading weights: the one place the frameworks' CLIs and
//! `compare --serve`'s load generator (which needs the model's tokenizer to build prompts of a
//! given length) resolve them.

use std::path::{Path, PathBuf};

use bench_hub::cache::Cache;
use bench_hub::download;
use bench_hub::files::{self, ModelFiles, TokenizerLocation};
use bench_hub::registry::{Registry, DEFAULT_MODEL};

use crate::run::request::ModelChoice;
use crate::text::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The registry entry of the Llama 3 tokenizer, used where a model's files carry none.
pub const LLAMA3_TOKENIZER: &str = "llama3-tokenizer";

/// A registry entry's files: fetched when `download`, else required in the cache (an error
/// naming the fix when missing).
pub fn ensure(registry: &Registry, cache: &Cache, name: &str, download_missing: bool) -> Result<Vec<PathBuf>> {
    if download_missing {
        Ok(download::fetch(registry, cache, name)?.paths().to_vec())
    } else {
        Ok(cache.require(registry, name)?)
    }
}

/// The first model file of a registry entry's paths: the GGUF, or the folder of config.json.
pub fn model_root(paths: &[PathBuf]) -> Result<PathBuf> {
    if let Some(g) = paths.iter().find(|p| p.extension().is_some_and(|e| e == "gguf")) {
        return Ok(g.clone());
    }
    if let Some(c) = paths.iter().find(|p| p.file_name().is_some_and(|f| f == "config.json")) {
        return Ok(c.parent().unwrap_or(Path::new(".")).to_path_buf());
    }
    paths.first().cloned().ok_or_else(|| Error::Tokenizer("the registry entry has no files".into()))
}

/// The registry name a choice stands for (`None` for a path).
pub fn registry_name(registry: &Registry, choice: &ModelChoice) -> Result<Option<String>> {
    Ok(match choice {
        ModelChoice::Default => Some(DEFAULT_MODEL.to_string()),
        ModelChoice::Registry(name) => Some(name.clone()),
        ModelChoice::Size(size) => Some(registry.model_for_size(*size)?.0.to_string()),
        ModelChoice::Path(_) => None,
    })
}

/// The model's tokenizer; the registry's Llama 3 tokenizer when its files carry none.
pub fn tokenizer_for(files: &ModelFiles, registry: &Registry, cache: &Cache, download_missing: bool) -> Result<Tokenizer> {
    let fallback = match files.tokenizer {
        TokenizerLocation::Missing => Some(ensure(registry, cache, LLAMA3_TOKENIZER, download_missing)?[0].clone()),
        _ => None,
    };
    Tokenizer::for_model(files, fallback.as_deref())
}

/// The tokenizer of a synthetic model of registry entry `name`: Llama 3 shapes use the Llama 3
/// tokenizer, others their own files' tokenizer.
pub fn synthetic_tokenizer(registry: &Registry, cache: &Cache, name: &str, download_missing: bool) -> Result<Tokenizer> {
    if registry.model(name)?.architecture.vocab_size == 128_256 {
        let paths = ensure(registry, cache, LLAMA3_TOKENIZER, download_missing)?;
        return Tokenizer::from_json_file(&paths[0]);
    }
    let paths = ensure(registry, cache, name, download_missing)?;
    tokenizer_for(&files::discover(&model_root(&paths)?)?, registry, cache, download_missing)
}

/// The tokenizer the frameworks use for `choice` (a synthetic model's as [`synthetic_tokenizer`]).
pub fn tokenizer_for_choice(choice: &ModelChoice, synthetic: bool, download_missing: bool) -> Result<Tokenizer> {
    let registry = Registry::load()?;
    let cache = Cache::from_env();
    let name = match choice {
        ModelChoice::Path(path) => return tokenizer_for(&files::discover(path)?, &registry, &cache, download_missing),
        _ => registry_name(&registry, choice)?.unwrap_or_default(),
    };
    if synthetic {
        return synthetic_tokenizer(&registry, &cache, &name, download_missing);
    }
    let paths = ensure(&registry, &cache, &name, download_missing)?;
    tokenizer_for(&files::discover(&model_root(&paths)?)?, &registry, &cache, download_missing)
}
