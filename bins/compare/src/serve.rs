//! `compare --serve`: every framework's server (and every `--url`) under the same load, one at a
//! time, then one report. For each server: start it (frameworks), wait for `/health`, send the
//! warm-up requests, then each concurrency level's requests, then stop it.

use std::time::Duration;

use anyhow::{bail, Result};
use bench_core::metrics::comparison::Unavailable;
use bench_core::metrics::machine::MachineInfo;
use bench_core::run::request::{BenchRequest, Framework};
use bench_core::text::model_files;
use bench_load::client::{self, Target};
use bench_load::dataset::{self, Prompt};
use bench_load::load::{self, Arrivals, LoadConfig};
use bench_load::metrics::ServingMetrics;
use bench_load::report::{Level, ServeComparison, ServeSettings, ServerInfo, ServerResult};
use compare::server::Server;

use crate::cli::{name_of, Cli};
use crate::output::Outcome;

/// The options `--serve` needs, checked before anything starts.
pub fn check_options(cli: &Cli) -> Result<()> {
    let s = &cli.serve;
    if s.num_prompts == 0 || s.output_len == 0 || s.input_len == 0 {
        bail!("--num-prompts, --input-len and --output-len must be at least 1");
    }
    if s.parallel == 0 || s.concurrency.contains(&0) {
        bail!("--parallel and every --concurrency must be at least 1");
    }
    if s.request_rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--request-rate must be a positive number of requests per second");
    }
    if s.label.len() > s.url.len() {
        bail!("{} --label for {} --url: give one label per URL, in order", s.label.len(), s.url.len());
    }
    for url in &s.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--url {url}: expected an http:// or https:// base URL such as http://127.0.0.1:8080");
        }
    }
    Ok(())
}

/// The frameworks to start: those asked for; with only `--url`s, none; else the default set.
fn frameworks(cli: &Cli) -> Vec<Framework> {
    if cli.framework.is_empty() && !cli.serve.url.is_empty() {
        return Vec::new();
    }
    crate::plan::frameworks(cli)
}

/// One server through the warm-up and every level; its results in level order.
fn load_server(label: &str, target: &Target, warmup: &[Prompt], prompts: &[Prompt], cli: &Cli) -> Vec<ServerResult> {
    let s = &cli.serve;
    let arrivals = s.request_rate.map(|rate| Arrivals::Poisson { rate }).unwrap_or(Arrivals::AllAtOnce);
    if !warmup.is_empty() {
        let config = LoadConfig { max_in_flight: s.parallel, arrivals: Arrivals::AllAtOnce, output_len: s.output_len, seed: s.seed };
        let run = load::run(target, warmup, &config, None);
        let failed = run.records.iter().filter(|r| !r.ok()).count();
        eprintln!("[{label}] {} warm-up requests ({failed} failed), not counted", warmup.len());
    }
    s.concurrency
        .iter()
        .map(|&c| {
            let config = LoadConfig { max_in_flight: c, arrivals, output_len: s.output_len, seed: s.seed };
            let run = load::run(target, prompts, &config, Some(&format!("[{label}] concurrency {c}")));
            let metrics = ServingMetrics::of(&run, s.output_len, &s.slo.unwrap_or_default());
            eprintln!(
                "[{label}] concurrency {c}: {}/{} completed, {:.1} output tok/s, TTFT p99 {:.0} ms, TPOT mean {:.1} ms",
                metrics.completed, metrics.requests, metrics.output_throughput, metrics.ttft_ms.p99, metrics.tpot_ms.mean
            );
            ServerResult { label: label.to_string(), metrics, run }
        })
        .collect()
}

/// Runs the load against every server and writes the report; what the run came to.
pub fn run(cli: &Cli, request: &BenchRequest) -> Result<Outcome> {
    check_options(cli)?;
    let s = &cli.serve;
    let tokenizer = model_files::tokenizer_for_choice(&request.model, request.synthetic, request.download)?;
    let (prompts, warmup) = match &s.dataset {
        Some(path) => {
            let all = dataset::jsonl(path, &tokenizer, s.num_prompts + s.warmup_requests)?;
            let (p, w) = all.split_at(s.num_prompts);
            (p.to_vec(), w.to_vec())
        }
        None => (
            dataset::random(&tokenizer, s.num_prompts, s.input_len, s.seed, 0)?,
            dataset::random(&tokenizer, s.warmup_requests, s.input_len, s.seed, s.num_prompts)?,
        ),
    };
    let longest = prompts.iter().chain(&warmup).map(|p| p.input_tokens).max().unwrap_or(0);
    // Room for the prompt (and a BOS), the output and a little slack; the servers' default 4096.
    let max_seq_len = (longest + s.output_len + 8).max(4096);
    let machine = MachineInfo::probe(!cli.output.no_bandwidth);
    let mut servers = Vec::new();
    let mut unavailable = Vec::new();
    let mut per_server: Vec<Vec<ServerResult>> = Vec::new();
    for fw in frameworks(cli) {
        eprintln!("== {fw} server ==");
        let mut server = match Server::start(fw, request, s.parallel, max_seq_len, Duration::from_secs(s.ready_timeout)) {
            Ok(server) => server,
            Err(u) => {
                eprintln!("{fw} unavailable: {}", u.reason);
                unavailable.push(u);
                continue;
            }
        };
        let ready = (|| -> std::result::Result<Target, String> {
            let model = client::served_model(&server.url)?;
            let target = Target { base_url: server.url.clone(), model };
            client::wait_healthy(&target, Duration::from_secs(s.ready_timeout), &mut || server.alive())?;
            Ok(target)
        })();
        let target = match ready {
            Ok(t) => t,
            Err(reason) => {
                unavailable.push(Unavailable { framework: fw.to_string(), reason, fix: "see its log above".into(), kind: Default::default() });
                continue;
            }
        };
        per_server.push(load_server(fw.as_str(), &target, &warmup, &prompts, cli));
        servers.push(ServerInfo {
            label: fw.to_string(),
            framework: Some(fw.to_string()),
            url: target.base_url.clone(),
            model: target.model,
            ready_s: Some(server.ready_s),
            synthetic: server.synthetic,
        });
        match server.stop(Duration::from_secs(60)) {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("warning: the {fw} server exited with {status} after SIGTERM"),
            Err(e) => eprintln!("warning: the {fw} server {e}"),
        }
    }
    for (i, url) in s.url.iter().enumerate() {
        let label = s.label.get(i).cloned().unwrap_or_else(|| url.clone());
        eprintln!("== {label} ({url}) ==");
        let base = url.trim_end_matches('/').trim_end_matches("/v1").to_string();
        let ready = client::served_model(&base).and_then(|model| {
            let target = Target { base_url: base.clone(), model };
            client::wait_healthy(&target, Duration::from_secs(10), &mut || true).or_else(|e| {
                // Not every server has /health (an OpenAI-compatible proxy may not): /v1/models answered.
                eprintln!("[{label}] /health: {e}; going on, /v1/models answered");
                Ok::<(), String>(())
            })?;
            Ok(target)
        });
        match ready {
            Ok(target) => {
                per_server.push(load_server(&label, &target, &warmup, &prompts, cli));
                servers.push(ServerInfo { label, framework: None, url: base, model: target.model, ready_s: None, synthetic: false });
            }
            Err(reason) => unavailable.push(Unavailable {
                framework: label,
                reason,
                fix: "check that the server runs and answers GET /v1/models at that URL".into(),
                kind: Default::default(),
            }),
        }
    }
    let levels: Vec<Level> = s
        .concurrency
        .iter()
        .enumerate()
        .map(|(i, &c)| Level { concurrency: c, results: per_server.iter().filter_map(|results| results.get(i).cloned()).collect() })
        .collect();
    let settings = ServeSettings {
        model: crate::output::model_label(request),
        dtype: name_of(cli.model.dtype),
        dataset: s.dataset.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "random".into()),
        input_len: s.dataset.is_none().then_some(s.input_len),
        output_len: s.output_len,
        num_prompts: s.num_prompts,
        warmup_requests: s.warmup_requests,
        seed: s.seed,
        parallel: s.parallel,
        threads: request.threads,
        arrivals: s.request_rate.map(|r| format!("poisson {r} req/s")).unwrap_or_else(|| "all at once".into()),
    };
    let comparison = ServeComparison::new(machine, settings, servers, levels, unavailable);
    crate::output::write_serve_reports(&cli.output, &comparison)?;
    Ok(Outcome::of_serve(&comparison))
}
