//! bench-backend: the one crate a llama3-bench framework depends on.
//!
//! A framework (`backend-native` on candle, `backend-torch` on libtorch, `backend-llamacpp` on
//! llama.cpp) implements the small [`Backend`] / [`LanguageModel`] traits and reads its weights
//! through [`source::TensorSource`], which knows the file formats ([`gguf`], [`safetensors`]), the
//! model's hyper-parameters ([`config`], [`arch`]) and the one LLaMA tensor [`schema`], and checks
//! every tensor's shape before a framework sees it. Tokenization, sampling, timing and reports
//! are bench-core's; model downloads and discovery are bench-hub's; neither is needed here.
//!
//! This crate depends on no framework, and on nothing that only the command line needs
//! (tokenizers, chat templates, the hub client).
//!
//! Lints: every public item is documented (`missing_docs`; the modules moved here from bench-core
//! are still exempt, one by one as they get their docs) and every dependency is used
//! (`unused_crate_dependencies`).

#![warn(missing_docs)]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

#[allow(missing_docs)]
pub mod arch;
#[allow(missing_docs)]
pub mod backend;
#[allow(missing_docs)]
pub mod config;
#[allow(missing_docs)]
pub mod error;
pub mod ggml_blocks;
#[allow(missing_docs)]
pub mod gguf;
#[allow(missing_docs)]
pub mod memory;
/// The option enums (dtype, device, quantization, kernels): a leaf module.
pub mod options;
#[allow(missing_docs)]
pub mod quant;
#[allow(missing_docs)]
pub mod safetensors;
pub mod schema;
pub mod source;
pub mod synthetic;

pub use backend::{Backend, DType, Device, DeviceInfo, LanguageModel, LoadSpec, Logits, ModelInfo, SeqStep, WeightFormat, WeightSource};
pub use error::{Error, Result};

/// The cache directory for model files, libtorch, reference tools and temporary files:
/// `$LLAMA3_BENCH_HOME`, else `$XDG_CACHE_HOME/llama3-bench`, else `~/.cache/llama3-bench`. It
/// lives outside the repository so a fresh clone on the same machine reuses what was fetched.
pub fn cache_root() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(home) = std::env::var_os("LLAMA3_BENCH_HOME") {
        PathBuf::from(home)
    } else if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(xdg).join("llama3-bench")
    } else {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        home.join(".cache").join("llama3-bench")
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::arch::Architecture;

    /// A model's architecture from the repository's `models.toml` (the registry itself is
    /// bench-hub's; the shapes are all these tests need).
    pub fn registry_arch(name: &str) -> Architecture {
        let registry: toml::Value = toml::from_str(include_str!("../../../models.toml")).unwrap();
        registry["models"][name]["architecture"].clone().try_into().unwrap()
    }
}
