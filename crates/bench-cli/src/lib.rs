//! The command line shared by every per-framework binary (`native-only`, `torch-only`): chat,
//! one-shot generation and benchmark, driven by bench-core's loops. A binary is one line:
//! `bench_cli::main(&MyBackend)`.

pub mod args;
pub mod preflight;
pub mod resolve;
mod serve;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;

use bench_backend::backend::{Backend, LanguageModel};
use bench_core::metrics::report;
use bench_core::run::bench::{self, BenchConfig, BenchmarkResult, RunContext};
use bench_core::run::generate::{generate, Generation};
use bench_core::run::perplexity::PerplexityReport;
use bench_core::run::sampling::{Sampler, SamplingConfig};
use bench_core::text::chat::{encode_chat, encode_chat_within, ChatTemplate, Message, Role};
use bench_core::text::tokenizer::Tokenizer;

pub use args::Cli;

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

/// Keeps the Chrome trace writer alive; on drop the trace is flushed and moved into place.
struct Profile {
    guard: Option<tracing_chrome::FlushGuard>,
    tmp: PathBuf,
    target: PathBuf,
}

impl Drop for Profile {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Err(e) = std::fs::rename(&self.tmp, &self.target) {
            eprintln!("error: could not write the profile {}: {e}", self.target.display());
        } else {
            eprintln!("profile written to {} (open it in Perfetto)", self.target.display());
        }
    }
}

fn init_tracing(cli: &Cli) -> Result<Option<Profile>> {
    use tracing_subscriber::prelude::*;
    let level = if cli.output.debug { "debug" } else { "warn" };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()));
    let mut profile = None;
    let chrome = match &cli.output.profile {
        Some(path) => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            if !dir.is_dir() {
                bail!("cannot write the profile {}: folder {} does not exist", path.display(), dir.display());
            }
            let tmp = dir.join(format!(".{}.partial", path.file_name().map(|s| s.to_string_lossy()).unwrap_or_default()));
            let (layer, guard) = tracing_chrome::ChromeLayerBuilder::new().file(&tmp).include_args(true).build();
            profile = Some(Profile { guard: Some(guard), tmp, target: path.clone() });
            Some(layer.with_filter(tracing_subscriber::filter::LevelFilter::TRACE))
        }
        None => None,
    };
    tracing_subscriber::registry().with(fmt).with(chrome).try_init().ok();
    Ok(profile)
}

pub fn run(backend: &dyn Backend, cli: &Cli) -> Result<()> {
    if let Some(fw) = &cli.benchmark.framework {
        if fw != backend.name() {
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
    let _profile = init_tracing(cli)?;

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
        return serve::run(backend, cli, resolved);
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
        return run_benchmark(backend, cli, model.as_mut(), &resolved, load_time_s);
    }
    if let Some(path) = &cli.evaluation.perplexity {
        return run_perplexity(backend, cli, model.as_mut(), &resolved, path);
    }
    let template = ChatTemplate::for_tokenizer(&resolved.tokenizer);
    if let Some(prompt) = &cli.sampling.prompt {
        let messages = vec![Message::new(Role::User, prompt.clone())];
        let ids = encode_chat(&resolved.tokenizer, &template, &messages)?;
        let mut sampler = Sampler::new(sampling);
        let out = answer(cli, model.as_mut(), &resolved.tokenizer, &ids, &mut sampler)?;
        if cli.output.json {
            print_generation_json(cli, backend, &resolved, &out, load_time_s)?;
        }
        return Ok(());
    }
    chat(cli, model.as_mut(), &resolved.tokenizer, &template, sampling)
}

/// Generates one answer, streaming it to stdout unless JSON was asked for.
fn answer(cli: &Cli, model: &mut dyn LanguageModel, tokenizer: &Tokenizer, ids: &[u32], sampler: &mut Sampler) -> Result<Generation> {
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

/// A model loaded from a GGUF that `cargo xtask synth-gguf` wrote (metadata
/// `llama3_bench.synthetic = true`): reported as synthetic whichever framework loaded it.
pub(crate) struct SyntheticFile(Box<dyn bench_backend::backend::LanguageModel>);

impl SyntheticFile {
    fn marked(spec: &bench_backend::backend::LoadSpec) -> bool {
        match &spec.source {
            bench_backend::backend::WeightSource::Files(weights) => match weights {
                bench_backend::WeightFormat::Gguf(p) => {
                    bench_backend::gguf::GgufFile::open(p).ok().and_then(|g| g.get("llama3_bench.synthetic").and_then(|v| v.as_bool())).unwrap_or(false)
                }
                _ => false,
            },
            _ => false,
        }
    }

    pub(crate) fn wrap(
        model: Box<dyn bench_backend::backend::LanguageModel>,
        spec: &bench_backend::backend::LoadSpec,
    ) -> Box<dyn bench_backend::backend::LanguageModel> {
        if Self::marked(spec) && !model.info().synthetic {
            Box::new(SyntheticFile(model))
        } else {
            model
        }
    }
}

impl bench_backend::backend::LanguageModel for SyntheticFile {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> bench_core::Result<bench_backend::backend::Logits> {
        self.0.forward(tokens, pos)
    }
    fn forward_all(&mut self, tokens: &[u32], pos: usize) -> bench_core::Result<Vec<bench_backend::backend::Logits>> {
        self.0.forward_all(tokens, pos)
    }
    fn reset(&mut self) {
        self.0.reset()
    }
    fn slots(&self) -> usize {
        self.0.slots()
    }
    fn forward_batch(&mut self, seqs: &[bench_backend::SeqStep]) -> bench_core::Result<Vec<bench_backend::backend::Logits>> {
        self.0.forward_batch(seqs)
    }
    fn reset_slot(&mut self, slot: usize) {
        self.0.reset_slot(slot)
    }
    fn info(&self) -> bench_backend::backend::ModelInfo {
        let mut info = self.0.info();
        info.synthetic = true;
        info.weights = format!("synthetic {}", info.weights);
        info
    }
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

fn print_generation_json(cli: &Cli, backend: &dyn Backend, r: &resolve::Resolved, out: &Generation, load_time_s: f64) -> Result<()> {
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

/// Longest chat line read, in bytes: far more than any context holds (a 128k-token context is about
/// 512 KB of text); a longer line is skipped without being kept in memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One line of chat input.
#[derive(Debug, PartialEq, Eq)]
pub enum InputLine {
    Text(String),
    /// Not UTF-8: the first bad byte's offset.
    InvalidUtf8 {
        offset: usize,
    },
    /// Longer than the limit; only its length was kept.
    TooLong {
        bytes: usize,
    },
}

/// Reads one line (without its `\n` / `\r\n`), never holding more than `max_bytes` of it;
/// `None` at end of input.
pub fn read_line_capped(reader: &mut impl BufRead, max_bytes: usize) -> std::io::Result<Option<InputLine>> {
    let mut line = Vec::new();
    let mut total = 0usize;
    let mut too_long = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if total == 0 {
                return Ok(None);
            }
            break;
        }
        let newline = buf.iter().position(|&b| b == b'\n');
        let take = newline.map_or(buf.len(), |i| i + 1);
        if !too_long {
            if line.len() + take > max_bytes + 2 {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(&buf[..take]);
            }
        }
        total += take;
        reader.consume(take);
        if newline.is_some() {
            break;
        }
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if too_long || line.len() > max_bytes {
        return Ok(Some(InputLine::TooLong { bytes: total }));
    }
    Ok(Some(match String::from_utf8(line) {
        Ok(s) => InputLine::Text(s),
        Err(e) => InputLine::InvalidUtf8 { offset: e.utf8_error().valid_up_to() },
    }))
}

/// Interactive Q&A with history; with stdin not a terminal, one question per line. A line that
/// cannot be asked (not UTF-8, too long, longer than the context) gets a one-line error on
/// stderr and the chat goes on; end of input ends it.
fn chat(cli: &Cli, model: &mut dyn LanguageModel, tokenizer: &Tokenizer, template: &ChatTemplate, sampling: SamplingConfig) -> Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let context = model.info().max_seq_len;
    let mut sampler = Sampler::new(sampling);
    let mut history: Vec<Message> = Vec::new();
    if interactive {
        eprintln!("Chat with the model ({} template). /exit or Ctrl-D to quit, /reset to forget the conversation.", template.name());
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line_no = 0usize;
    loop {
        if interactive {
            eprint!("\n> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = read_line_capped(&mut input, MAX_LINE_BYTES).context("reading stdin")? else { break };
        line_no += 1;
        let line = match line {
            InputLine::Text(s) => s,
            InputLine::InvalidUtf8 { offset } => {
                eprintln!("error: input line {line_no} is not valid UTF-8 (bad byte at offset {offset}); it was skipped, ask again");
                continue;
            }
            InputLine::TooLong { bytes } => {
                eprintln!("error: input line {line_no} is {bytes} bytes (accepted: up to {MAX_LINE_BYTES}); it was skipped, ask a shorter question");
                continue;
            }
        };
        let question = line.trim();
        if question.is_empty() {
            continue;
        }
        match question {
            "/exit" | "/quit" => break,
            "/reset" => {
                history.clear();
                continue;
            }
            _ => {}
        }
        history.push(Message::new(Role::User, question));
        let ids = encode_chat_within(tokenizer, template, &mut history, cli.sampling.max_tokens, context)?;
        if ids.len() >= context {
            history.pop();
            eprintln!(
                "error: input line {line_no} is {} tokens with the chat template, but the context holds {context} (accepted: under {context} tokens); ask a shorter question or raise --max-seq-len",
                ids.len()
            );
            continue;
        }
        let out = answer(cli, model, tokenizer, &ids, &mut sampler)?;
        if cli.output.json {
            println!("{}", serde_json::json!({"question": question, "answer": out.text, "generated_ids": out.generated_ids}));
        }
        history.push(Message::new(Role::Assistant, out.text.trim().to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<InputLine> {
        // A tiny buffer makes lines span several fills, as a pipe does.
        let mut r = std::io::BufReader::with_capacity(3, input);
        std::iter::from_fn(|| read_line_capped(&mut r, max).unwrap()).collect()
    }

    #[test]
    fn capped_lines_report_bad_utf8_and_length_and_keep_going() {
        let got = lines(b"hello\r\nbad \xff byte\n0123456789abc\nlast", 10);
        assert_eq!(
            got,
            vec![InputLine::Text("hello".into()), InputLine::InvalidUtf8 { offset: 4 }, InputLine::TooLong { bytes: 14 }, InputLine::Text("last".into()),]
        );
        assert!(lines(b"", 10).is_empty());
        assert_eq!(lines(b"\n", 10), vec![InputLine::Text(String::new())]);
    }
}

fn run_perplexity(backend: &dyn Backend, cli: &Cli, model: &mut dyn LanguageModel, resolved: &resolve::Resolved, path: &std::path::Path) -> Result<()> {
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

fn run_benchmark(backend: &dyn Backend, cli: &Cli, model: &mut dyn LanguageModel, resolved: &resolve::Resolved, load_time_s: f64) -> Result<()> {
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
    let (samples, greedy) = bench::run_detailed(model, &config, |i, s, warm| {
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
