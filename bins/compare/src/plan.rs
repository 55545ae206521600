//! What to run: options checked up front, the request every framework gets, which frameworks and
//! quantization levels.

use crate::cli::*;
use anyhow::{bail, Result};
use bench_backend::backend::{DType, Quantize};
use bench_core::run::request::{BenchRequest, Framework, ModelChoice};
use bench_hub::files::{self, ModelType};

/// The checks that need no framework, made once up front with the original's messages.
pub fn check_options(cli: &Cli) -> Result<()> {
    if cli.bench.iterations == 0 || cli.bench.gen_tokens == 0 {
        bail!("--iterations and --gen-tokens must be at least 1");
    }
    if let Some(path) = &cli.model.model_path {
        files::check_model_type(&files::discover(path)?, cli.model.model_type)?;
    } else if cli.model.model_type == Some(ModelType::Gpt) {
        bail!(bench_hub::Error::ModelTypeMismatch { expected: "gpt".into(), detected: "llama".into() });
    }
    if cli.model.shard == 0 {
        bail!("--shard must be at least 1");
    }
    Ok(())
}

/// The request every framework gets: same model, prompt, tokens, dtype, threads.
pub fn base_request(cli: &Cli) -> BenchRequest {
    let model = match (&cli.model.model, &cli.model.size, &cli.model.model_path) {
        (Some(name), _, _) => ModelChoice::Registry(name.clone()),
        (None, Some(size), _) => ModelChoice::Size(*size),
        (None, None, Some(path)) => ModelChoice::Path(path.clone()),
        (None, None, None) => ModelChoice::Default,
    };
    BenchRequest {
        model,
        model_type: cli.model.model_type,
        synthetic: cli.model.synthetic,
        download: cli.model.download,
        ignore_memory_check: cli.model.ignore_memory_check,
        dtype: match cli.model.dtype {
            DTypeArg::Native => None,
            DTypeArg::F32 => Some(DType::F32),
            DTypeArg::F16 => Some(DType::F16),
            DTypeArg::Bf16 => Some(DType::BF16),
        },
        quantize: None,
        iterations: cli.bench.iterations,
        warmup: cli.bench.warmup,
        gen_tokens: cli.bench.gen_tokens,
        threads: cli.bench.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        device: cli.bench.device,
        kernels: cli.bench.kernels,
        shard: cli.model.shard,
        dump_logits: None,
    }
}

/// The frameworks asked for, or the default set (opt-in ones only when built).
pub fn frameworks(cli: &Cli) -> Vec<Framework> {
    if !cli.framework.is_empty() {
        return cli.framework.clone();
    }
    Framework::ALL.into_iter().filter(|f| !f.is_opt_in() || compare::child::binary_for(*f).is_file()).collect()
}

/// The quantization levels to run: `None` is the plain (unquantized) run.
pub fn levels(cli: &Cli) -> Vec<Option<Quantize>> {
    match cli.model.quantize {
        None => vec![None],
        Some(QuantizeArg::All) => vec![None, Some(Quantize::Float16), Some(Quantize::Int8), Some(Quantize::Nf4)],
        Some(QuantizeArg::Float16) => vec![Some(Quantize::Float16)],
        Some(QuantizeArg::Int8) => vec![Some(Quantize::Int8)],
        Some(QuantizeArg::Nf4) => vec![Some(Quantize::Nf4)],
    }
}
