//! The error type of bench-core. Every variant says what went wrong and, where there is one,
//! what the user can do about it: binaries print these messages as they are.

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

    #[error("{0}")]
    ModelFiles(String),

    /// The exact wording of the original project's check.
    #[error("Model type mismatch: expected '{expected}' but detected '{detected}'")]
    ModelTypeMismatch { expected: String, detected: String },

    #[error("not implemented yet: {0}")]
    NotImplemented(String),

    #[error("invalid GGUF file {path}: {message}")]
    Gguf { path: PathBuf, message: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    ChatTemplate(String),

    #[error("download failed: {0}")]
    Download(String),

    #[error("{what} is unreachable ({reason}). {hint}")]
    Unreachable { what: String, reason: String, hint: String },

    #[error("checksum mismatch for {path}: expected {expected}, got {actual}. The file was not kept; run the download again")]
    Checksum { path: PathBuf, expected: String, actual: String },

    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("{0}")]
    Backend(String),
}

impl Error {
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { context, path: path.into(), source }
    }
    pub fn gguf(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Gguf { path: path.into(), message: message.into() }
    }
}
