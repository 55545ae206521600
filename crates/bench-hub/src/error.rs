//! The error type of bench-hub: the registry, the cache directory, downloads and model discovery.
//! Errors of bench-backend's file readers pass through as [`Error::Backend`], kept as the source.
//! Every variant says what went wrong and what the user can do about it.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("model registry {path}: {message}")]
    Registry { path: PathBuf, message: String },

    #[error("unknown model '{name}'. Known models: {known}. Use --model NAME or --model-path PATH")]
    UnknownModel { name: String, known: String },

    /// Model files that are missing or not what a model folder should hold.
    #[error("{0}")]
    ModelFiles(String),

    /// The exact wording of the original project's check.
    #[error("Model type mismatch: expected '{expected}' but detected '{detected}'")]
    ModelTypeMismatch { expected: String, detected: String },

    #[error("not implemented yet: {0}")]
    NotImplemented(String),

    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("download failed: {0}")]
    Download(String),

    #[error("{what} is unreachable ({reason}). {hint}")]
    Unreachable { what: String, reason: String, hint: String },

    #[error("checksum mismatch for {path}: expected {expected}, got {actual}. The file was not kept; run the download again")]
    Checksum { path: PathBuf, expected: String, actual: String },

    /// A model file bench-backend's readers refused.
    #[error(transparent)]
    Backend(#[from] bench_backend::Error),
}

impl Error {
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { context, path: path.into(), source }
    }
}
