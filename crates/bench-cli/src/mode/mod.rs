//! What a per-framework binary does once the model is loaded: one module per mode.

pub mod benchmark;
pub mod chat;
pub mod generate;
pub mod perplexity;
pub mod serve;
