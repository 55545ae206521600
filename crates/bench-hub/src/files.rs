//! Model-file discovery and model-type detection.
//!
//! A path (file or folder) becomes a [`ModelFiles`]: the weights' format (GGUF, or Hugging Face
//! safetensors, single or sharded, with `config.json`) and where the tokenizer is. The model type
//! (`llama` / `gpt`) is read from the files (GGUF `general.architecture`, `config.json`
//! `model_type`) and only falls back to the original project's file-name rule when the files do
//! not say.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use bench_backend::gguf::GgufFile;
pub use bench_backend::WeightFormat;

use crate::hf_config::ChatConfig;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    /// A LLaMA-architecture model
    Llama,
    /// A GPT-architecture model (recognised, not run)
    Gpt,
}

impl std::fmt::Display for ModelType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelType::Llama => "llama",
            ModelType::Gpt => "gpt",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerLocation {
    /// Embedded in the GGUF file.
    Gguf(PathBuf),
    /// A Hugging Face `tokenizer.json`.
    Json(PathBuf),
    /// Not with the weights: the caller supplies one (e.g. the registry's Llama 3 tokenizer).
    Missing,
}

/// A model's files: weights, tokenizer, and a Hugging Face checkpoint's chat settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The weight files.
    pub weights: WeightFormat,
    /// Where the tokenizer is.
    pub tokenizer: TokenizerLocation,
    /// `tokenizer_config.json` / `generation_config.json` of a Hugging Face checkpoint, if any.
    pub chat_config: Option<ChatConfig>,
}

const HINT: &str = "pass a .gguf file, or a folder with *.safetensors and config.json (or use --model NAME)";

/// Finds the model files at `path`.
pub fn discover(path: &Path) -> Result<ModelFiles> {
    if !path.exists() {
        return Err(Error::ModelFiles(format!("model path {} does not exist: {HINT}", path.display())));
    }
    if path.is_dir() {
        return discover_dir(path);
    }
    let name = path.file_name().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    if name.ends_with(".gguf") {
        return Ok(gguf_files(path));
    }
    if name.ends_with(".index.json") {
        return sharded(path, dir);
    }
    if name.ends_with(".safetensors") {
        return single_safetensors(path.to_path_buf(), dir);
    }
    if name.ends_with(".pth") || name.ends_with(".pt") || name.ends_with(".bin") || name.ends_with(".ckpt") {
        return Err(Error::ModelFiles(format!(
            "{} is a pickle checkpoint; loading pickles can run arbitrary code and is not supported. \
             Convert it to safetensors (or GGUF) first",
            path.display()
        )));
    }
    Err(Error::ModelFiles(format!("{} is not a model file: {HINT}", path.display())))
}

fn gguf_files(path: &Path) -> ModelFiles {
    let dir = path.parent().unwrap_or(Path::new("."));
    let json = dir.join("tokenizer.json");
    // The embedded vocabulary is used unless the GGUF lacks one; a missing one is found on load.
    let tokenizer = if json.is_file() && !gguf_has_tokenizer(path) { TokenizerLocation::Json(json) } else { TokenizerLocation::Gguf(path.to_path_buf()) };
    ModelFiles { weights: WeightFormat::Gguf(path.to_path_buf()), tokenizer, chat_config: None }
}

fn gguf_has_tokenizer(path: &Path) -> bool {
    GgufFile::open(path).map(|g| g.get("tokenizer.ggml.tokens").is_some()).unwrap_or(true)
}

fn discover_dir(dir: &Path) -> Result<ModelFiles> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return sharded(&index, dir);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("reading model folder", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let with_ext = |ext: &str| -> Vec<PathBuf> { entries.iter().filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))).cloned().collect() };
    let safetensors = with_ext("safetensors");
    if safetensors.len() == 1 {
        return single_safetensors(safetensors[0].clone(), dir);
    }
    if safetensors.len() > 1 {
        return Err(Error::ModelFiles(format!(
            "{} holds {} .safetensors files but no model.safetensors.index.json to say how they fit together",
            dir.display(),
            safetensors.len()
        )));
    }
    let ggufs = with_ext("gguf");
    match ggufs.len() {
        1 => Ok(gguf_files(&ggufs[0])),
        0 => Err(Error::ModelFiles(format!("folder {} contains no model file (.gguf or .safetensors): {HINT}", dir.display()))),
        _ => Err(Error::ModelFiles(format!(
            "folder {} holds several GGUF files ({}); pass the one you want with --model-path",
            dir.display(),
            ggufs.iter().filter_map(|p| p.file_name()).map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn tokenizer_in(dir: &Path) -> TokenizerLocation {
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        TokenizerLocation::Json(json)
    } else {
        TokenizerLocation::Missing
    }
}

fn require_config(dir: &Path) -> Result<PathBuf> {
    let config = dir.join("config.json");
    if config.is_file() {
        Ok(config)
    } else {
        Err(Error::ModelFiles(format!("{} has safetensors weights but no config.json; put the model's config.json next to them", dir.display())))
    }
}

fn single_safetensors(file: PathBuf, dir: &Path) -> Result<ModelFiles> {
    let config = require_config(dir)?;
    Ok(ModelFiles { weights: WeightFormat::Safetensors { shards: vec![file], config }, tokenizer: tokenizer_in(dir), chat_config: ChatConfig::read(dir)? })
}

fn sharded(index: &Path, dir: &Path) -> Result<ModelFiles> {
    let config = require_config(dir)?;
    let shards: Vec<PathBuf> = safetensors_index_shards(index)?.into_iter().map(|s| dir.join(s)).collect();
    if let Some(missing) = shards.iter().find(|p| !p.is_file()) {
        return Err(Error::ModelFiles(format!("{} names shard {} which is missing; download every shard", index.display(), missing.display())));
    }
    Ok(ModelFiles { weights: WeightFormat::Safetensors { shards, config }, tokenizer: tokenizer_in(dir), chat_config: ChatConfig::read(dir)? })
}

/// The shard file names of a `model.safetensors.index.json`, sorted, each once.
pub fn safetensors_index_shards(index: &Path) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| Error::io("reading safetensors index", index, e))?;
    let idx: Index = serde_json::from_str(&text).map_err(|e| Error::ModelFiles(format!("{} is not a safetensors index: {e}", index.display())))?;
    let mut shards: Vec<String> = idx.weight_map.into_values().collect();
    shards.sort();
    shards.dedup();
    if shards.iter().any(|s| s.contains("..") || s.starts_with('/')) {
        return Err(Error::ModelFiles(format!("{} names a shard outside its folder", index.display())));
    }
    Ok(shards)
}

/// The model type the files declare, or the original's file-name rule when they declare none.
pub fn detect_model_type(files: &ModelFiles) -> Result<ModelType> {
    match &files.weights {
        WeightFormat::Gguf(path) => {
            let gguf = GgufFile::open(path)?;
            match gguf.architecture() {
                Some(a) => model_type_of_architecture(a, path),
                None => Ok(model_type_from_name(path)),
            }
        }
        WeightFormat::Safetensors { config, .. } => {
            let text = std::fs::read_to_string(config).map_err(|e| Error::io("reading config.json", config, e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::ModelFiles(format!("{} is not valid JSON: {e}", config.display())))?;
            match v.get("model_type").and_then(|m| m.as_str()) {
                Some(t) => model_type_of_architecture(t, config),
                None => Ok(model_type_from_name(config.parent().unwrap_or(config))),
            }
        }
    }
}

fn model_type_of_architecture(arch: &str, path: &Path) -> Result<ModelType> {
    match arch.to_ascii_lowercase().as_str() {
        "llama" => Ok(ModelType::Llama),
        "gpt2" | "gpt" | "gptj" | "gpt_neox" | "gptneox" | "gpt_bigcode" => Ok(ModelType::Gpt),
        other => Err(Error::ModelFiles(format!("{}: unsupported architecture '{other}'; llama3-bench runs LLaMA-architecture models (llama)", path.display()))),
    }
}

/// The original project's rule: a file name mentioning "gpt" is a GPT model, anything else LLaMA.
pub fn model_type_from_name(path: &Path) -> ModelType {
    let name = path.file_name().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
    if name.contains("gpt") {
        ModelType::Gpt
    } else {
        ModelType::Llama
    }
}

/// Detects the model type and checks it against the user's `--model-type`. GPT models are
/// recognised but not runnable yet.
pub fn check_model_type(files: &ModelFiles, expected: Option<ModelType>) -> Result<ModelType> {
    let detected = detect_model_type(files)?;
    if let Some(expected) = expected {
        if expected != detected {
            return Err(Error::ModelTypeMismatch { expected: expected.to_string(), detected: detected.to_string() });
        }
    }
    if detected == ModelType::Gpt {
        return Err(Error::NotImplemented("GPT models are detected but not implemented yet; llama3-bench runs LLaMA-architecture models".into()));
    }
    Ok(detected)
}
