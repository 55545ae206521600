//! bench-core: everything in llama3-bench that must be identical for every framework.
//!
//! Backends (`backend-native` on candle, `backend-torch` on libtorch) implement the small
//! [`Backend`] / [`LanguageModel`] traits and nothing else; tokenization, chat templates,
//! sampling, model files, the benchmark loop, metrics and reports all live here so that every
//! framework is driven by exactly the same code and differs only inside `forward`.
//!
//! This crate depends on neither candle nor tch (see `DESIGN.md`).

pub mod backend;
pub mod bench;
pub mod cache;
pub mod chat;
pub mod comparison;
pub mod config;
pub mod download;
pub mod error;
pub mod files;
pub mod generate;
pub mod gguf;
pub mod machine;
pub mod memory;
pub mod perplexity;
pub mod quant;
pub mod registry;
pub mod report;
pub mod safetensors;
pub mod sampling;
pub mod stats;
pub mod synthetic;
pub mod tokenizer;

pub use backend::{Backend, DType, DeviceInfo, LanguageModel, LoadSpec, Logits, ModelInfo, WeightSource};
pub use error::{Error, Result};
