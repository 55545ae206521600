//! compare's command line: clap structs and the option enums only it has.

use std::path::PathBuf;

use bench_backend::backend::{Device, Kernels};
use bench_core::run::request::Framework;
use bench_hub::files::ModelType;
use bench_hub::registry::Size;
use clap::{Args, Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Compare LLaMA 3 inference frameworks side by side, each in its own process",
    long_about = "Compare LLaMA 3 inference frameworks side by side, each in its own process.\n\n\
    Exit status: 0 every framework ran; 2 some framework was unavailable (the others are reported); \
    3 a regression beyond noise against --baseline; 1 an error, or no framework ran."
)]
pub struct Cli {
    /// Frameworks to compare (default: native, torch, and llamacpp when it is built)
    #[arg(long, num_args = 1.., value_enum)]
    pub framework: Vec<Framework>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub bench: BenchArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Model")]
pub struct ModelArgs {
    /// Registry model (default: the registry's default, smollm2-135m)
    #[arg(long, conflicts_with_all = ["size", "model_path"])]
    pub model: Option<String>,
    /// Llama 3 size from the registry
    #[arg(long, value_enum, conflicts_with = "model_path")]
    pub size: Option<Size>,
    /// A model file or folder (.gguf, or safetensors with config.json)
    #[arg(long)]
    pub model_path: Option<PathBuf>,
    /// Expected model type; detected from the files, a mismatch is an error
    #[arg(long, value_enum)]
    pub model_type: Option<ModelType>,
    /// Seeded random weights of the registry model's shape (labelled synthetic)
    #[arg(long)]
    pub synthetic: bool,
    /// Let each framework download the registry model (and tokenizer) if missing
    #[arg(long)]
    pub download: bool,
    /// Weight and compute dtype, the same for every framework; `native` runs each file's own
    /// storage (GGUF blocks stay quantized where the framework has kernels for them; torch
    /// dequantizes, and its weights column says so)
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DTypeArg,
    /// Load-time quantization, the same for every framework; `all` sweeps none, float16, int8 and
    /// nf4. Quantized runs also report KL divergence and top-1 agreement against the same
    /// framework's f32 run on the benchmark prompt
    #[arg(long, value_enum)]
    pub quantize: Option<QuantizeArg>,
    /// Split each framework's model over N devices in its process: contiguous layer ranges on
    /// cuda:0..cuda:N-1 (needs --device cuda); each result lists its shards' weight bytes
    #[arg(long, default_value_t = 1)]
    pub shard: usize,
    /// Let every framework load even when the model looks larger than the memory available
    #[arg(long)]
    pub ignore_memory_check: bool,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Benchmark")]
pub struct BenchArgs {
    /// Measured iterations per framework
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,
    /// Warm-up iterations, discarded
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Tokens generated per iteration (EOS ignored)
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Threads for every framework (default: all logical cores)
    #[arg(long)]
    pub threads: Option<usize>,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: Device,
    /// CPU kernels: tuned = native's SIMD kernels, picked for the CPU at run time, and torch's
    /// int8 / NF4 products of a few tokens on the codes; stock = each framework's own ops as
    /// shipped (candle's, libtorch's). llama.cpp ignores it. Every result says which ran
    #[arg(long, value_enum, default_value_t = Kernels::Tuned)]
    pub kernels: Kernels,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Also write the report (in --format) to this file, atomically
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// A saved `--format json` comparison: flag throughput/latency regressions beyond noise
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// With --baseline: smallest change (percent) that counts as a regression, on top of being
    /// beyond the noise (separate runs on a shared machine drift by a few percent)
    #[arg(long, default_value_t = 5.0)]
    pub regression_threshold: f64,
    /// Write an SVG plot: per-token latency over the generation, and throughput bars
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Skip measuring the machine's memory bandwidth
    #[arg(long)]
    pub no_bandwidth: bool,
}

/// `compare --serve`: the same traffic against every framework's OpenAI-compatible server (and any
/// server given by `--url`), serving metrics side by side.
#[derive(Debug, Args)]
#[command(next_help_heading = "Serving load (--serve)")]
pub struct ServeArgs {
    /// Measure under load: start each framework's `--serve` in turn (same model, dtype, threads,
    /// --parallel), send it the same requests, stop it; report vLLM-defined serving metrics
    #[arg(long)]
    pub serve: bool,
    /// Also load an OpenAI-compatible server already running (repeatable), e.g.
    /// http://127.0.0.1:8080; with no --framework, only the URLs are measured
    #[arg(long, value_name = "URL", requires = "serve")]
    pub url: Vec<String>,
    /// A name for each --url in the report, in order (default: the URL)
    #[arg(long, value_name = "NAME", requires = "url")]
    pub label: Vec<String>,
    /// Sequences each started server decodes together (its --parallel)
    #[arg(long, default_value_t = 4, requires = "serve")]
    pub parallel: usize,
    /// Requests in flight at most; several values sweep them in one run (one table each)
    #[arg(long, num_args = 1.., default_values_t = [1usize, 4], requires = "serve")]
    pub concurrency: Vec<usize>,
    /// Poisson arrivals at this many requests per second (still capped by --concurrency);
    /// default: all requests at once
    #[arg(long, requires = "serve")]
    pub request_rate: Option<f64>,
    /// Measured requests per level
    #[arg(long, default_value_t = 16, requires = "serve")]
    pub num_prompts: usize,
    /// Prompt length in the model's tokens (random prompts, varied by --seed, no shared prefix)
    #[arg(long, default_value_t = 128, requires = "serve", conflicts_with = "dataset")]
    pub input_len: usize,
    /// Tokens generated per request; sent with ignore_eos, and checked against finish_reason
    /// and the server's usage
    #[arg(long, default_value_t = 64, requires = "serve")]
    pub output_len: usize,
    /// A JSONL file of prompts (one {"prompt": "..."} per line) instead of random ones
    #[arg(long, value_name = "FILE.jsonl", requires = "serve")]
    pub dataset: Option<PathBuf>,
    /// Warm-up requests per server before the first level, not counted
    #[arg(long, default_value_t = 2, requires = "serve")]
    pub warmup_requests: usize,
    /// Seeds the random prompts and the Poisson arrivals
    #[arg(long, default_value_t = 0, requires = "serve")]
    pub seed: u64,
    /// Service-level bounds for goodput, in ms: ttft=MS,tpot=MS,e2el=MS (any of them)
    #[arg(long, requires = "serve")]
    pub slo: Option<bench_load::metrics::Slo>,
    /// Seconds a started server may take to become ready
    #[arg(long, default_value_t = 600, requires = "serve")]
    pub ready_timeout: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DTypeArg {
    Native,
    F32,
    F16,
    Bf16,
}
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum QuantizeArg {
    Int8,
    Nf4,
    Float16,
    All,
}
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
    Markdown,
}

pub fn name_of<T: ValueEnum>(v: T) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}
