//! bench-core: the framework-neutral runner of llama3-bench — everything that must be identical
//! for every framework, so that they differ only inside `forward`.
//!
//! - [`text`]: tokenizers (Hugging Face `tokenizer.json`, a GGUF's embedded BPE) and chat
//!   templates (a checkpoint's own Jinja template, Llama 3's header format).
//! - [`run`]: sampling, the generation loop, the benchmark loop, perplexity.
//! - [`serve`]: continuous batching of many requests on one model (the server's scheduler).
//! - [`metrics`]: statistics, the machine's description, reports, and comparisons between runs.
//!
//! Frameworks implement bench-backend's [`Backend`] / [`LanguageModel`]; where models come from
//! is bench-hub's. This crate depends on no framework.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod error;
pub mod metrics;
pub mod run;
pub mod serve;
pub mod text;

pub use bench_backend::{Backend, DType, DeviceInfo, LanguageModel, LoadSpec, Logits, ModelInfo, WeightSource};
pub use error::{Error, Result};
