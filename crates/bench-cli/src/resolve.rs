//! From command-line options to weights and a tokenizer: registry names, paths, synthetic shapes.

use anyhow::{bail, Result};
use bench_backend::backend::{DType, Kernels, LoadSpec, Quantize, WeightSource};
use bench_core::text::model_files::{self, ensure, model_root};
use bench_core::text::tokenizer::Tokenizer;
use bench_hub::cache::Cache;
use bench_hub::files::{self, ModelType};
use bench_hub::registry::Registry;

use crate::args::Cli;

pub use bench_hub::registry::DEFAULT_MODEL;

pub struct Resolved {
    pub spec: LoadSpec,
    pub tokenizer: Tokenizer,
    /// Registry name, or the file name for --model-path.
    pub label: String,
}

pub fn registry_model_name(cli: &Cli, registry: &Registry) -> Result<String> {
    Ok(match (&cli.model.model, cli.model.size) {
        (Some(name), _) => name.clone(),
        (None, Some(size)) => registry.model_for_size(size)?.0.to_string(),
        (None, None) => DEFAULT_MODEL.to_string(),
    })
}

pub fn load_spec_options(cli: &Cli) -> (Option<DType>, Option<Quantize>) {
    (cli.model.dtype, cli.model.quantize)
}

/// The model's tokenizer; the registry's Llama 3 tokenizer when its files carry none.
/// `--model-type`, typed.
pub fn expected_model_type(cli: &Cli) -> Option<ModelType> {
    cli.model.model_type
}

/// `--kernels`, typed.
pub fn kernels(cli: &Cli) -> Kernels {
    cli.runtime.kernels
}

pub fn resolve(cli: &Cli) -> Result<Resolved> {
    resolve_checked(cli, &|_, _| Ok(()))
}

/// [`resolve`], running `check` on the load spec and label as soon as they are known, before the
/// tokenizer is read (the memory check answers within a second this way).
pub fn resolve_checked(cli: &Cli, check: &dyn Fn(&LoadSpec, &str) -> Result<()>) -> Result<Resolved> {
    let registry = Registry::load()?;
    let cache = Cache::from_env();
    let (dtype, quantize) = load_spec_options(cli);
    if cli.model.shard == 0 {
        bail!("--shard must be at least 1");
    }
    let expected = expected_model_type(cli);
    let spec = |source| LoadSpec {
        source,
        dtype,
        quantize,
        device: cli.runtime.device,
        max_seq_len: Some(cli.model.max_seq_len),
        threads: cli.runtime.threads,
        kernels: kernels(cli),
        shard: cli.model.shard,
        slots: if cli.serve.serve { cli.serve.parallel.max(1) } else { 1 },
    };

    if cli.model.synthetic {
        if cli.model.model_path.is_some() {
            bail!("--synthetic makes random weights of a registry shape; use --model NAME or --size, not --model-path");
        }
        let name = registry_model_name(cli, &registry)?;
        let entry = registry.model(&name)?;
        if expected == Some(ModelType::Gpt) {
            bail!(bench_hub::Error::ModelTypeMismatch { expected: "gpt".into(), detected: "llama".into() });
        }
        let arch = entry.architecture.clone();
        let label = format!("{name} (synthetic)");
        let load_spec = spec(WeightSource::Synthetic { arch: arch.clone(), seed: cli.sampling.seed });
        check(&load_spec, &label)?;
        // A synthetic model still needs real token ids.
        let tokenizer = model_files::synthetic_tokenizer(&registry, &cache, &name, cli.model.download)?;
        return Ok(Resolved { spec: load_spec, tokenizer, label });
    }

    let (files, label) = match &cli.model.model_path {
        Some(path) => (files::discover(path)?, path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()),
        None => {
            let name = registry_model_name(cli, &registry)?;
            registry.model(&name)?;
            let paths = ensure(&registry, &cache, &name, cli.model.download)?;
            (files::discover(&model_root(&paths)?)?, name)
        }
    };
    files::check_model_type(&files, expected)?;
    let load_spec = spec(WeightSource::Files(files.weights.clone()));
    check(&load_spec, &label)?;
    let tokenizer = model_files::tokenizer_for(&files, &registry, &cache, cli.model.download)?;
    Ok(Resolved { spec: load_spec, tokenizer, label })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use bench_backend::backend::Device;
    use bench_core::run::request::{BenchRequest, ModelChoice};
    use clap::Parser;

    use super::*;

    /// What `compare` sends is read back by this command line as the same typed values.
    #[test]
    fn a_bench_request_parses_back_into_the_same_values() {
        let base = BenchRequest {
            model: ModelChoice::Default,
            model_type: None,
            synthetic: false,
            download: false,
            ignore_memory_check: false,
            dtype: None,
            quantize: None,
            iterations: 3,
            warmup: 0,
            gen_tokens: 7,
            threads: 2,
            device: Device::Cpu,
            kernels: Kernels::Tuned,
            shard: 1,
            dump_logits: None,
        };
        let requests = [
            base.clone(),
            BenchRequest {
                model: ModelChoice::Path(PathBuf::from("/models/m.gguf")),
                model_type: Some(ModelType::Llama),
                download: true,
                ignore_memory_check: true,
                dtype: Some(DType::BF16),
                device: Device::Cuda(1),
                kernels: Kernels::Stock,
                shard: 2,
                dump_logits: Some(PathBuf::from("/tmp/d.f32")),
                ..base.clone()
            },
            BenchRequest { model: ModelChoice::Registry("llama3-8b".into()), synthetic: true, quantize: Some(Quantize::Nf4), ..base.clone() },
            BenchRequest {
                model: ModelChoice::Size(bench_hub::registry::Size::B1),
                model_type: Some(ModelType::Gpt),
                quantize: Some(Quantize::Float16),
                ..base
            },
        ];
        for r in requests {
            let mut argv = vec!["x".to_string(), "--benchmark".into(), "--json".into()];
            argv.extend(r.to_args());
            let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            assert_eq!(load_spec_options(&cli), (r.dtype, r.quantize), "{argv:?}");
            assert_eq!(expected_model_type(&cli), r.model_type, "{argv:?}");
            assert_eq!(kernels(&cli), r.kernels, "{argv:?}");
            assert_eq!(cli.model.shard, r.shard, "{argv:?}");
            assert_eq!(cli.runtime.device, r.device, "{argv:?}");
            assert_eq!(cli.runtime.threads, Some(r.threads), "{argv:?}");
            assert_eq!((cli.benchmark.iterations, cli.benchmark.warmup, cli.benchmark.gen_tokens), (r.iterations, r.warmup, r.gen_tokens));
            assert_eq!(cli.benchmark.dump_logits, r.dump_logits, "{argv:?}");
            assert_eq!((cli.model.synthetic, cli.model.download, cli.model.ignore_memory_check), (r.synthetic, r.download, r.ignore_memory_check));
            let model = match (&cli.model.model, cli.model.size, &cli.model.model_path) {
                (Some(name), None, None) => ModelChoice::Registry(name.clone()),
                (None, Some(size), None) => ModelChoice::Size(size),
                (None, None, Some(path)) => ModelChoice::Path(path.clone()),
                _ => ModelChoice::Default,
            };
            assert_eq!(model, r.model, "{argv:?}");
        }
    }
}
