//! `--benchmark`: bench-core's benchmark loop on the benchmark prompt, printed or as JSON.

use std::time::Instant;

use anyhow::Result;

use bench_backend::backend::{Backend, LanguageModel};
use bench_core::metrics::report;
use bench_core::run::bench::{self, BenchConfig, BenchmarkResult, RunContext};

use crate::{resolve, Cli, BENCH_PROMPT};

pub(crate) fn run_benchmark(backend: &dyn Backend, cli: &Cli, model: &mut dyn LanguageModel, resolved: &resolve::Resolved, load_time_s: f64) -> Result<()> {
    let text = cli.benchmark.bench_prompt.as_deref().unwrap_or(BENCH_PROMPT);
    let t = Instant::now();
    let prompt_tokens = resolved.tokenizer.encode(text, resolved.tokenizer.adds_bos())?;
    let tokenize_time_s = t.elapsed().as_secs_f64();
    let config = BenchConfig { prompt_tokens, gen_tokens: cli.benchmark.gen_tokens, iterations: cli.benchmark.iterations, warmup: cli.benchmark.warmup };
    eprintln!(
        "benchmark: {} prompt tokens, {} generated tokens, {} iterations + {} warm-up",
        config.prompt_tokens.len(),
        config.gen_tokens,
        config.iterations,
        config.warmup
    );
    let total = config.iterations + config.warmup;
    let mut cold_first_token_s = None;
    let (samples, greedy) = bench::run_detailed(model, &config, |i, s, warm| {
        if i == 0 {
            // The process's age now, less this iteration, plus its first token: process start to
            // the first token of the first request this process served.
            cold_first_token_s = bench_backend::memory::process_age_s().map(|age| (age - s.total_s + s.first_token_s).max(s.first_token_s));
        }
        eprintln!(
            "  iteration {}/{}{}: prefill {:.1} ms, decode {:.2} tok/s",
            i + 1,
            total,
            if warm { " (warm-up)" } else { "" },
            s.prefill_s * 1e3,
            s.decode_tokens_per_s()
        );
        if cli.output.timing {
            let times: Vec<String> = s.token_times_s.iter().map(|t| format!("{:.2}", t * 1e3)).collect();
            eprintln!("    token times (ms): {}", times.join(" "));
        }
    })?;
    let info = model.info();
    let ctx = RunContext {
        framework: backend.name().to_string(),
        model_size: resolved.label.clone(),
        device: backend.device_info(cli.runtime.device),
        model: info,
        load_time_s,
        cold_first_token_s,
        tokenize_time_s,
        warmup: config.warmup,
        quantize: resolve::load_spec_options(cli).1,
    };
    if let Some(path) = &cli.benchmark.dump_logits {
        // Untimed, after the measurements: every prompt position's logits, for quality checks.
        model.reset();
        let rows = model.forward_all(&config.prompt_tokens, 0)?;
        let bytes: Vec<u8> = rows.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
        report::write_atomic(path, &bytes)?;
    }
    let result = BenchmarkResult::from_samples(ctx, config.prompt_tokens.len(), samples, greedy);
    let json = result.to_json();
    if cli.output.json {
        println!("{json}");
    } else {
        println!("{}", report::single_run_table(&result));
    }
    if let Some(path) = &cli.output.output {
        report::write_atomic(path, json.as_bytes())?;
    }
    Ok(())
}
