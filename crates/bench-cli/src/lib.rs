//! The command line shared by every per-framework binary (`native-only`, `torch-only`): chat,
//! one-shot generation and benchmark, driven by bench-core's loops. A binary is one line:
//! `bench_cli::main(&MyBackend)`.

pub mod args;
pub mod preflight;
pub mod resolve;

mod line_input;
mod mode;
mod synthetic_file;
mod tracing_setup;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;

use bench_backend::backend::Backend;
use bench_core::run::sampling::{Sampler, SamplingConfig};
use bench_core::text::chat::{encode_chat, ChatTemplate, Message, Role};

pub use args::Cli;
pub use line_input::{read_line_capped, InputLine, MAX_LINE_BYTES};
use synthetic_file::SyntheticFile;

/// The default benchmark prompt: a fixed public-domain English paragraph (the opening of
/// Melville's "Moby-Dick"), so every framework prefills the same tokens.
pub const BENCH_PROMPT: &str = "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money \
in my purse, and nothing particular to interest me on shore, I thought I would sail about a little and see the watery \
part of the world. It is a way I have of driving off the spleen and regulating the circulation. Whenever I find myself \
growing grim about the mouth; whenever it is a damp, drizzly November in my soul; whenever I find myself involuntarily \
pausing before coffin warehouses, and bringing up the rear of every funeral I meet; then, I account it high time to get \
to sea as soon as I can.";

/// Parses the command line and runs; errors are printed as `error: ...` with exit status 1.
pub fn main(backend: &dyn Backend) -> ExitCode {
    let cli = Cli::parse();
    match run(backend, &cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn run(backend: &dyn Backend, cli: &Cli) -> Result<()> {
    if let Some(fw) = &cli.benchmark.framework {
        if fw.as_str() != backend.name() {
            bail!("--framework {fw}: this binary runs the '{}' framework only; use `compare --framework {fw}` to pick frameworks", backend.name());
        }
    }
    let sampling = SamplingConfig { temperature: cli.sampling.temperature, top_k: cli.sampling.top_k, top_p: cli.sampling.top_p, seed: cli.sampling.seed };
    sampling.validate()?;
    if cli.runtime.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    if cli.sampling.max_tokens == 0 {
        bail!("--max-tokens must be at least 1");
    }
    let _profile = tracing_setup::init_tracing(cli)?;

    let memory_check = |spec: &bench_backend::backend::LoadSpec, label: &str| {
        if cli.model.ignore_memory_check {
            Ok(())
        } else {
            preflight::check_memory(backend, spec, label)
        }
    };
    let resolved = resolve::resolve_checked(cli, &memory_check)?;
    tracing::debug!(tokenizer = resolved.tokenizer.description(), "resolved {}", resolved.label);
    preflight::check_vocab(backend, &resolved)?;
    if cli.serve.serve {
        return mode::serve::run(backend, cli, resolved);
    }
    let load_start = Instant::now();
    let model = backend.load(&resolved.spec).with_context(|| format!("loading {} on {}", resolved.label, backend.name()))?;
    let mut model = SyntheticFile::wrap(model, &resolved.spec);
    let load_time_s = load_start.elapsed().as_secs_f64();
    let info = model.info();
    let synthetic_note = if info.synthetic { " [SYNTHETIC WEIGHTS: random values, output is meaningless]" } else { "" };
    eprintln!(
        "{}: loaded {} ({}, {:.1} M parameters, {:.3} GB weights, kernels {}) in {:.2} s{synthetic_note}",
        backend.name(),
        resolved.label,
        info.weights,
        info.parameters as f64 / 1e6,
        info.weight_bytes as f64 / 1e9,
        info.kernels,
        load_time_s
    );

    if cli.benchmark.benchmark {
        return mode::benchmark::run_benchmark(backend, cli, model.as_mut(), &resolved, load_time_s);
    }
    if let Some(path) = &cli.evaluation.perplexity {
        return mode::perplexity::run_perplexity(backend, cli, model.as_mut(), &resolved, path);
    }
    let template = ChatTemplate::for_tokenizer(&resolved.tokenizer);
    if let Some(prompt) = &cli.sampling.prompt {
        let messages = vec![Message::new(Role::User, prompt.clone())];
        let ids = encode_chat(&resolved.tokenizer, &template, &messages)?;
        let mut sampler = Sampler::new(sampling);
        let out = mode::generate::answer(cli, model.as_mut(), &resolved.tokenizer, &ids, &mut sampler)?;
        if cli.output.json {
            mode::generate::print_generation_json(cli, backend, &resolved, &out, load_time_s)?;
        }
        return Ok(());
    }
    mode::chat::chat(cli, model.as_mut(), &resolved.tokenizer, &template, sampling)
}
