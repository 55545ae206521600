//! The error type of bench-core: tokenizers, chat templates, the generation and benchmark loops
//! and reports. Errors from bench-hub (where models come from) and bench-backend (model files and
//! the frameworks) pass through, kept as the source.

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

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    ChatTemplate(String),

    #[error("not implemented yet: {0}")]
    NotImplemented(String),

    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The registry, the cache or a download.
    #[error(transparent)]
    Hub(#[from] bench_hub::Error),

    /// A model file or a framework.
    #[error(transparent)]
    Backend(#[from] bench_backend::Error),
}

impl Error {
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { context, path: path.into(), source }
    }
}
