//! Driving a model: sampling, the generation loop, the benchmark loop, perplexity.

pub mod bench;
pub mod generate;
pub mod perplexity;
pub mod request;
pub mod sampling;
