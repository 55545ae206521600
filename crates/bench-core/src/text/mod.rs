//! Text in and out: tokenizers and chat templates.

pub mod chat;
pub mod model_files;
pub mod tokenizer;
