//! The command-line options of the per-framework binaries, grouped by concern.

use std::path::PathBuf;

use bench_hub::registry::Size;
use clap::{Args, Parser};

#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub benchmark: BenchmarkArgs,
    #[command(flatten)]
    pub evaluation: EvaluationArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Model")]
pub struct ModelArgs {
    /// Registry model to run (see `cargo xtask list`). Default: smollm2-135m
    #[arg(long, conflicts_with_all = ["size", "model_path"])]
    pub model: Option<String>,

    /// Llama 3 size from the registry, as in the original CLI
    #[arg(long, value_enum, conflicts_with = "model_path")]
    pub size: Option<Size>,

    /// A model file or folder: .gguf, or *.safetensors with config.json (sharded or not)
    #[arg(long)]
    pub model_path: Option<PathBuf>,

    /// Expected model type; it is detected from the files and a mismatch is an error
    #[arg(long, value_enum)]
    pub model_type: Option<bench_hub::files::ModelType>,

    /// Download the registry model (and its tokenizer) if it is not in the cache
    #[arg(long)]
    pub download: bool,

    /// Seeded random weights with the registry model's shape, for speed work (labelled synthetic)
    #[arg(long)]
    pub synthetic: bool,

    /// Convert all weights to this dtype. Default: keep the file's own (GGUF blocks stay quantized;
    /// f32 for synthetic weights)
    #[arg(long, value_enum)]
    pub dtype: Option<bench_backend::backend::DType>,

    /// Quantize the weights at load time. float16: every weight and the compute in f16.
    /// int8 (symmetric, one scale per output row) and nf4 (4-bit NormalFloat, blocks of 64) apply
    /// to the layers' matrices; the embedding, output head and norms stay in --dtype (f32)
    #[arg(long, value_enum)]
    pub quantize: Option<bench_backend::backend::Quantize>,

    /// Split the layers into N contiguous ranges on cuda:0..cuda:N-1, in one process (needs
    /// --device cuda and N GPUs); the result lists each shard's device and weight bytes
    #[arg(long, default_value_t = 1)]
    pub shard: usize,

    /// Longest sequence (prompt + generation) the KV cache holds; capped at the model's context
    #[arg(long, default_value_t = 4096)]
    pub max_seq_len: usize,

    /// Load even when the weights and KV cache look larger than the memory available
    /// (MemAvailable, cgroup limit); by default such a load is refused before it starts
    #[arg(long)]
    pub ignore_memory_check: bool,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Sampling")]
pub struct SamplingArgs {
    /// One-shot generation of this prompt (with the model's chat template) instead of a chat
    #[arg(long)]
    pub prompt: Option<String>,

    /// Most tokens to generate per answer
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,

    /// Sampling temperature; 0 = greedy
    #[arg(long, default_value_t = 0.85)]
    pub temperature: f32,

    /// Sample among the k most likely tokens only
    #[arg(long)]
    pub top_k: Option<usize>,

    /// Nucleus sampling: the smallest set of tokens whose probability reaches p
    #[arg(long)]
    pub top_p: Option<f32>,

    /// Random seed (sampling and synthetic weights)
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Benchmark")]
pub struct BenchmarkArgs {
    /// Measure instead of chatting: prefill + greedy decode, repeated
    #[arg(long)]
    pub benchmark: bool,

    /// Framework to benchmark (the per-framework binaries run their own only)
    #[arg(long, value_enum)]
    pub framework: Option<bench_core::run::request::Framework>,

    /// Measured iterations
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,

    /// Warm-up iterations, run first and discarded
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,

    /// Tokens generated per iteration (end-of-sequence is ignored so every run generates as many)
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,

    /// Benchmark prompt text (default: a fixed English paragraph)
    #[arg(long)]
    pub bench_prompt: Option<String>,

    /// After the benchmark, write the logits of every prompt position (f32, little-endian,
    /// positions x vocabulary) to this file; `compare` uses them to measure quantization quality
    #[arg(long, value_name = "FILE", hide = true)]
    pub dump_logits: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Evaluation")]
pub struct EvaluationArgs {
    /// Perplexity over a text file, in windows of --max-seq-len tokens (KV cache per window)
    #[arg(long, value_name = "FILE")]
    pub perplexity: Option<PathBuf>,

    /// Score at most this many tokens of the text (default: all)
    #[arg(long)]
    pub perplexity_tokens: Option<usize>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Machine-readable JSON on stdout (logs stay on stderr)
    #[arg(long)]
    pub json: bool,

    /// Also write the JSON result to this file (atomically)
    #[arg(long)]
    pub output: Option<PathBuf>,

    /// Print the time of every generated token
    #[arg(long)]
    pub timing: bool,

    /// Write a Chrome trace (open it in Perfetto) with spans for prefill, each layer's attention
    /// and MLP, and sampling
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,

    /// Verbose logs on stderr
    #[arg(long)]
    pub debug: bool,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Runtime")]
pub struct RuntimeArgs {
    /// CPU threads for the framework's kernels (default: all cores)
    #[arg(long)]
    pub threads: Option<usize>,

    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: bench_backend::Device,

    /// CPU kernels: tuned = native's SIMD kernels, picked for the CPU at run time, and torch's
    /// int8 / NF4 products of a few tokens on the codes; stock = each framework's own ops as
    /// shipped (candle's, libtorch's). llama.cpp ignores it. Every result says which ran
    #[arg(long, value_enum, default_value_t = bench_backend::backend::Kernels::Tuned)]
    pub kernels: bench_backend::backend::Kernels,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Server")]
pub struct ServeArgs {
    /// Serve the model over HTTP (OpenAI-compatible: /v1/chat/completions, /v1/completions,
    /// /v1/models, /health, /metrics, and a chat page at /) instead of chatting
    #[arg(long, conflicts_with_all = ["benchmark", "prompt", "perplexity"])]
    pub serve: bool,

    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1", requires = "serve")]
    pub host: String,

    /// Port to listen on (0: a free port, printed when ready)
    #[arg(long, default_value_t = 8080, requires = "serve")]
    pub port: u16,

    /// Sequences decoded together (continuous batching), each with its own KV cache of
    /// --max-seq-len positions
    #[arg(long, default_value_t = 4, requires = "serve")]
    pub parallel: usize,

    /// Requests allowed to wait beyond those the free sequences take; more get 429 with Retry-After
    #[arg(long, default_value_t = 256, requires = "serve")]
    pub max_queue: usize,

    /// Largest request body, in bytes; a larger one gets 413
    #[arg(long, default_value_t = 4 << 20, requires = "serve")]
    pub max_body_bytes: usize,
}
