//! The error type of bench-backend: what reading model files and running a framework can go
//! wrong with. Every variant says what went wrong and, where there is one, what the user can do
//! about it: binaries print these messages as they are. bench-hub and bench-core wrap it in their
//! own error types (`#[from]`), keeping it as the source.

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

    /// Model files that are missing, malformed or of a kind this project does not read.
    #[error("{0}")]
    ModelFiles(String),

    #[error("not implemented yet: {0}")]
    NotImplemented(String),

    #[error("invalid GGUF file {path}: {message}")]
    Gguf { path: PathBuf, message: String },

    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A framework refused or failed, in its own words.
    #[error("{0}")]
    Backend(String),

    /// A framework's own error, kept as the source (`what` names the step or the framework).
    #[error("{what}: {source}")]
    Framework {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { context, path: path.into(), source }
    }
    pub fn gguf(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Gguf { path: path.into(), message: message.into() }
    }
    /// A framework's error with what was being done, the error kept as the source.
    pub fn framework(what: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Framework { what: what.into(), source: Box::new(source) }
    }
}
