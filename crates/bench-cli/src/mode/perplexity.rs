//! `--perplexity FILE`: the model's perplexity on a text.

use std::time::Instant;

use anyhow::{Context, Result};

use bench_backend::backend::{Backend, LanguageModel};
use bench_core::metrics::report;
use bench_core::run::perplexity::PerplexityReport;

use crate::{resolve, Cli};

pub(crate) fn run_perplexity(
    backend: &dyn Backend,
    cli: &Cli,
    model: &mut dyn LanguageModel,
    resolved: &resolve::Resolved,
    path: &std::path::Path,
) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the perplexity text {}", path.display()))?;
    let mut tokens = resolved.tokenizer.encode(&text, resolved.tokenizer.adds_bos())?;
    if let Some(n) = cli.evaluation.perplexity_tokens {
        tokens.truncate(n.max(2));
    }
    let window = model.info().max_seq_len;
    eprintln!("perplexity: {} tokens of {} in windows of {window}", tokens.len(), path.display());
    let start = Instant::now();
    let p = bench_core::run::perplexity::perplexity(model, &tokens, window, |done, total| eprintln!("  window {done}/{total}"))?;
    let info = model.info();
    let j = PerplexityReport {
        framework: backend.name().to_string(),
        model: resolved.label.clone(),
        weights: info.weights.clone(),
        weight_bytes: info.weight_bytes,
        quantize: resolve::load_spec_options(cli).1,
        text: path.display().to_string(),
        result: p.clone(),
        seconds: start.elapsed().as_secs_f64(),
    };
    if cli.output.json {
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        println!(
            "perplexity {:.4} over {} tokens ({} windows of up to {}), {} [{}]",
            p.perplexity,
            p.tokens_scored,
            p.windows,
            p.window_len,
            backend.name(),
            info.weights
        );
    }
    if let Some(out) = &cli.output.output {
        report::write_atomic(out, serde_json::to_string_pretty(&j)?.as_bytes())?;
    }
    Ok(())
}
