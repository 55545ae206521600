//! Report formats, one module each behind one trait: a table for people, JSON (the data,
//! schema-versioned), CSV, and Markdown.

mod csv;
mod json;
mod markdown;
mod serve;
mod table;

use bench_core::metrics::comparison::Comparison;
use bench_load::report::ServeComparison;

pub use csv::Csv;
pub use json::Json;
pub use markdown::Markdown;
pub use table::Table;

pub trait Format {
    /// A single-stream comparison (`compare`).
    fn render(&self, comparison: &Comparison) -> String;
    /// A serving comparison (`compare --serve`).
    fn render_serve(&self, comparison: &ServeComparison) -> String;
}

/// The numbers every row shows, in display units, shared by the table, CSV and Markdown formats.
pub(crate) struct Row {
    pub framework: String,
    pub quantize: String,
    /// (KL vs f32 in nats, top-1 agreement) for quantized runs.
    pub quality: Option<(f64, f64)>,
    pub avg_latency_ms: f64,
    pub avg_throughput: f64,
    pub throughput_ci: f64,
    pub peak_memory_gb: f64,
    pub model_memory_gb: f64,
    pub first_token_ms: f64,
    pub prefill_tps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub latency_ci_ms: f64,
    pub bandwidth_gbs: f64,
    pub weights: String,
    pub synthetic: bool,
    /// Files to ready, seconds.
    pub load_s: f64,
    /// Process start to the first token of the first request, ms (`None`: not measured).
    pub cold_first_token_ms: Option<f64>,
    pub memory: bench_core::run::bench::MemoryBreakdown,
}

pub(crate) fn rows(c: &Comparison) -> Vec<Row> {
    c.results
        .iter()
        .map(|r| Row {
            framework: r.framework.clone(),
            quantize: r.level().to_string(),
            quality: c.quality.iter().find(|q| q.framework == r.framework && q.quantize == r.level()).map(|q| (q.kl_divergence, q.top1_agreement)),
            avg_latency_ms: r.token_latency_ms.mean,
            avg_throughput: r.tokens_per_second.mean,
            throughput_ci: r.tokens_per_second.ci95,
            peak_memory_gb: r.peak_memory_gb,
            model_memory_gb: r.model_memory_gb,
            first_token_ms: r.first_token_latency_ms.mean,
            prefill_tps: r.prefill_tokens_per_second,
            p50_ms: r.token_latency_ms.p50,
            p99_ms: r.token_latency_ms.p99,
            latency_ci_ms: r.token_latency_ms.ci95,
            bandwidth_gbs: r.achieved_bandwidth_gbs,
            weights: r.model.weights.clone(),
            synthetic: r.synthetic,
            load_s: r.load_time_s,
            cold_first_token_ms: r.cold_first_token_s.map(|s| s * 1e3),
            memory: r.memory.clone(),
        })
        .collect()
}

/// Whether any run is quantized (then the table shows the level and the quality columns).
pub(crate) fn quantized(c: &Comparison) -> bool {
    c.results.iter().any(|r| r.quantize.is_some())
}

/// The line every report carries when a run or server had synthetic weights.
pub(crate) const SYNTHETIC_NOTE: &str = "SYNTHETIC WEIGHTS: random values of the model's shape; speed and memory are real, outputs are not";

/// The lines under the table: speedups, the cross-check, what could not run.
pub(crate) fn summary_lines(c: &Comparison) -> Vec<String> {
    let mut lines: Vec<String> = c.ratios.iter().map(|r| r.sentence()).collect();
    for x in &c.cross_checks {
        let level = if x.quantize == "none" { String::new() } else { format!("[{}] ", x.quantize) };
        lines.push(match &x.divergence {
            None => format!("{level}correctness: greedy tokens agree across {} for all {} generated tokens", x.frameworks.join(", "), x.compared_tokens),
            Some(d) => format!(
                "{level}correctness: greedy tokens DIVERGE at generated position {}: {} (logit margin = top-1 minus runner-up; a small margin is a near-tie)",
                d.position,
                d.tokens.iter().map(|(f, t, m)| format!("{f} chose {t} (margin {m:.3})")).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    for u in &c.unavailable {
        lines.push(format!("{} unavailable: {}. Fix: {}", u.framework, u.reason, u.fix));
    }
    if !c.quality.is_empty() {
        lines.push("quality: KL = mean KL divergence (nats) of each quantized run's next-token distribution from the same framework's f32 run, over every benchmark-prompt position; top-1 = share of positions with the same top token".into());
    }
    if c.results.iter().any(|r| r.synthetic) {
        lines.push(SYNTHETIC_NOTE.into());
    }
    lines
}

/// What each framework ran with, and where.
pub(crate) fn setup_lines(c: &Comparison) -> Vec<String> {
    let m = &c.machine;
    let s = &c.settings;
    let mut lines = vec![
        format!(
            "machine: {} ({} logical cores, {:.1} GB RAM, {}), measured copy bandwidth {}",
            m.cpu,
            m.logical_cores,
            m.memory_gb,
            m.os,
            m.memory_bandwidth_gbs.map(|b| format!("{b:.1} GB/s")).unwrap_or_else(|| "not measured".into())
        ),
        format!(
            "run: model {}, dtype {}{}, {} threads, device {}, {} iterations + {} warm-up, {} generated tokens (EOS ignored), greedy",
            s.model,
            s.dtype,
            s.quantize.as_deref().map(|q| format!(", quantize {q}")).unwrap_or_default(),
            s.threads,
            s.device,
            s.iterations,
            s.warmup,
            s.gen_tokens
        ),
    ];
    for r in &c.results {
        let level = if r.level() == "none" { String::new() } else { format!(" [{}]", r.level()) };
        lines.push(format!(
            "{}{level}: {} | weights {} | compute {} | kernels {} | {} prompt tokens | {} threads",
            r.framework, r.device.framework_version, r.model.weights, r.model.compute_dtype, r.model.kernels, r.prompt_tokens, r.device.threads
        ));
    }
    lines
}
