//! `--serve`: the OpenAI-compatible server (bench-serve) over bench-core's continuous-batching
//! scheduler, for whichever framework this binary runs. The HTTP side starts first (so
//! `/health` says 503 while the weights load); the model then loads and runs on this thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use bench_backend::backend::Backend;
use bench_core::serve::{Scheduler, SchedulerConfig};
use bench_core::text::chat::ChatTemplate;
use bench_serve::{Ready, ServeOptions, Server};

use crate::resolve::Resolved;
use crate::synthetic_file::SyntheticFile;
use crate::Cli;

/// Prompt tokens of one sequence run per step: long prompts are prefilled in chunks of this
/// size, interleaved with the other sequences' decode tokens.
const PREFILL_CHUNK: usize = 512;

pub fn run(backend: &dyn Backend, cli: &Cli, resolved: Resolved) -> Result<()> {
    let parallel = cli.serve.parallel;
    if parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if cli.serve.max_queue == 0 {
        bail!("--max-queue must be at least 1");
    }
    let options =
        ServeOptions { host: cli.serve.host.clone(), port: cli.serve.port, model_id: resolved.label.clone(), max_body_bytes: cli.serve.max_body_bytes };
    let server = Server::start(options).with_context(|| "starting the HTTP server (pick another --port, or 0 for a free one)")?;
    let url = format!("http://{}/", server.local_addr());
    eprintln!("{}: listening on {url}; loading {} ...", backend.name(), resolved.label);

    let load_start = Instant::now();
    let model = backend.load(&resolved.spec).with_context(|| format!("loading {} on {}", resolved.label, backend.name()))?;
    let mut model = SyntheticFile::wrap(model, &resolved.spec);
    let info = model.info();
    if model.slots() < parallel {
        bail!(
            "--parallel {parallel}: the {} framework loaded this model with {} KV-cache slot(s); it cannot decode {parallel} sequences together yet, use --parallel {}",
            backend.name(),
            model.slots(),
            model.slots()
        );
    }
    let tokenizer = Arc::new(resolved.tokenizer);
    let template = ChatTemplate::for_tokenizer(&tokenizer);
    let config = SchedulerConfig { slots: parallel, max_queue: cli.serve.max_queue, prefill_chunk: PREFILL_CHUNK };
    let (mut scheduler, submitter) = Scheduler::new(model.as_mut(), &tokenizer, config);
    server.set_ready(Ready { submitter, tokenizer: tokenizer.clone(), template, context: info.max_seq_len, framework: backend.name().to_string() });
    let synthetic = if info.synthetic { " [SYNTHETIC WEIGHTS: output is meaningless]" } else { "" };
    eprintln!(
        "{}: ready: serving {} at {url} (OpenAI API at {url}v1, {parallel} parallel sequences of up to {} tokens, {}, kernels {}, loaded in {:.2} s){synthetic}",
        backend.name(),
        resolved.label,
        info.max_seq_len,
        info.weights,
        info.kernels,
        load_start.elapsed().as_secs_f64()
    );
    scheduler.run();
    drop(scheduler);
    server.wait(Duration::from_secs(10)).context("the HTTP server failed")?;
    eprintln!("{}: server stopped", backend.name());
    Ok(())
}
