//! One-shot generation (`--prompt`): the answer streamed to stdout, or a JSON record.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use bench_backend::backend::{Backend, LanguageModel};
use bench_core::metrics::report;
use bench_core::run::generate::{generate, Generation};
use bench_core::run::sampling::Sampler;
use bench_core::text::tokenizer::Tokenizer;

use crate::synthetic_file::SyntheticFile;
use crate::{resolve, Cli};

/// Generates one answer, streaming it to stdout unless JSON was asked for.
pub(crate) fn answer(cli: &Cli, model: &mut dyn LanguageModel, tokenizer: &Tokenizer, ids: &[u32], sampler: &mut Sampler) -> Result<Generation> {
    let stream = !cli.output.json;
    let mut stdout = std::io::stdout().lock();
    let out = generate(model, tokenizer, ids, sampler, cli.sampling.max_tokens, |piece| {
        if stream {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
    })?;
    if stream {
        let _ = writeln!(stdout);
    }
    drop(stdout);
    if cli.output.timing {
        eprintln!(
            "timing: prefill {} tokens {:.1} ms ({:.1} tok/s), first token {:.1} ms",
            out.prompt_ids.len(),
            out.prefill_s * 1e3,
            out.prefill_tokens_per_s(),
            out.first_token_s * 1e3
        );
        for (i, t) in out.token_times_s.iter().enumerate() {
            eprintln!("timing: token {:4}: {:.2} ms", i + 2, t * 1e3);
        }
        eprintln!("timing: decode {:.2} tok/s over {} tokens", out.decode_tokens_per_s(), out.token_times_s.len());
    }
    Ok(out)
}

#[derive(Serialize)]
struct GenerationJson<'a> {
    framework: &'a str,
    model: &'a str,
    synthetic: bool,
    prompt_ids: &'a [u32],
    generated_ids: &'a [u32],
    text: &'a str,
    stop_reason: bench_core::run::generate::StopReason,
    load_time_s: f64,
    prefill_s: f64,
    first_token_s: f64,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
    token_times_ms: Vec<f64>,
}

pub(crate) fn print_generation_json(cli: &Cli, backend: &dyn Backend, r: &resolve::Resolved, out: &Generation, load_time_s: f64) -> Result<()> {
    let j = GenerationJson {
        framework: backend.name(),
        model: &r.label,
        synthetic: r.spec.is_synthetic() || SyntheticFile::marked(&r.spec),
        prompt_ids: &out.prompt_ids,
        generated_ids: &out.generated_ids,
        text: &out.text,
        stop_reason: out.stop_reason,
        load_time_s,
        prefill_s: out.prefill_s,
        first_token_s: out.first_token_s,
        prefill_tokens_per_s: out.prefill_tokens_per_s(),
        decode_tokens_per_s: out.decode_tokens_per_s(),
        token_times_ms: out.token_times_s.iter().map(|t| t * 1e3).collect(),
    };
    let text = serde_json::to_string_pretty(&j)?;
    println!("{text}");
    if let Some(path) = &cli.output.output {
        report::write_atomic(path, text.as_bytes())?;
    }
    Ok(())
}
