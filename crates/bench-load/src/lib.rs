//! The load generator behind `compare --serve`: the same traffic against any OpenAI-compatible
//! server (this project's `--serve` on every framework, or one given by URL), measured on the
//! client side as vLLM's `benchmarks/serve.py` measures it (the definitions are in
//! [`metrics::DEFINITIONS`] and in every report).
//!
//! - [`dataset`]: prompts of a fixed length in the model's tokens, varied by a seed (no two share
//!   a first token), or a JSONL file of prompts.
//! - [`client`]: one streaming `/v1/completions` request, timestamped at every token chunk.
//! - [`load`]: arrivals (all at once under a cap on requests in flight, or Poisson at a rate),
//!   warm-up requests, a progress bar on stderr.
//! - [`metrics`]: TTFT, TPOT, ITL, end-to-end latency, throughputs and goodput from the records.
//! - [`report`]: the serialisable comparison (levels x servers) the report formats render.

pub mod client;
pub mod dataset;
pub mod load;
pub mod metrics;
pub mod report;

/// What can go wrong before any request is sent (a request's own failure is part of its record).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] bench_core::Error),
    #[error("{path}: {message}")]
    Dataset { path: String, message: String },
    #[error("{0}")]
    InvalidInput(String),
}

pub type Result<T> = std::result::Result<T, Error>;
