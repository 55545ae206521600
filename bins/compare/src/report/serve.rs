//! The pieces of a serving report every format shares: the columns of a level's table, the
//! setup lines above it and the lines under it (speedups, correctness under load, failures,
//! what could not run, the metric definitions).

use bench_load::report::{ServeComparison, ServerResult};

pub(crate) const HEADER: [&str; 10] = [
    "Server",
    "Completed",
    "Req/s",
    "Output tok/s",
    "Total tok/s",
    "TTFT mean / p50 / p99 (ms)",
    "TPOT mean / p99 (ms)",
    "ITL p50 / p99 (ms)",
    "E2EL mean / p99 (ms)",
    "Goodput (req/s)",
];

pub(crate) fn cells(r: &ServerResult) -> Vec<String> {
    let m = &r.metrics;
    vec![
        r.label.clone(),
        format!("{}/{}", m.completed, m.requests),
        format!("{:.3}", m.request_throughput),
        format!("{:.2}", m.output_throughput),
        format!("{:.2}", m.total_token_throughput),
        format!("{:.1} / {:.1} / {:.1}", m.ttft_ms.mean, m.ttft_ms.p50, m.ttft_ms.p99),
        format!("{:.2} / {:.2}", m.tpot_ms.mean, m.tpot_ms.p99),
        format!("{:.2} / {:.2}", m.itl_ms.p50, m.itl_ms.p99),
        format!("{:.0} / {:.0}", m.e2el_ms.mean, m.e2el_ms.p99),
        m.goodput.map(|g| format!("{g:.3}")).unwrap_or_else(|| "-".into()),
    ]
}

/// The machine, the load, and each server.
pub(crate) fn setup_lines(c: &ServeComparison) -> Vec<String> {
    let m = &c.machine;
    let s = &c.settings;
    let mut lines = vec![
        format!("machine: {} ({} logical cores, {:.1} GB RAM, {})", m.cpu, m.logical_cores, m.memory_gb, m.os),
        format!(
            "load: model {}, dtype {}, {} prompts per level ({}{}), {} output tokens each (ignore_eos), temperature 0, arrivals {}, {} warm-up requests per server; servers started here: --parallel {}, {} threads",
            s.model,
            s.dtype,
            s.num_prompts,
            s.dataset,
            s.input_len.map(|n| format!(", {n} input tokens")).unwrap_or_default(),
            s.output_len,
            s.arrivals,
            s.warmup_requests,
            s.parallel,
            s.threads
        ),
    ];
    for srv in &c.servers {
        let ready = srv.ready_s.map(|r| format!(", ready {r:.2} s after start")).unwrap_or_default();
        let synthetic = if srv.synthetic { " [SYNTHETIC WEIGHTS]" } else { "" };
        lines.push(format!("{}: {} model {:?}{ready}{synthetic}", srv.label, srv.url, srv.model));
    }
    lines
}

/// Under the tables: speedups, correctness, failures, unavailable servers, definitions.
pub(crate) fn summary_lines(c: &ServeComparison) -> Vec<String> {
    let mut lines: Vec<String> = c.ratios.iter().map(|r| r.sentence()).collect();
    for a in &c.agreements {
        let against = if a.against == "alone" { "the same requests alone (concurrency 1)".to_string() } else { a.against.clone() };
        lines.push(format!(
            "correctness at concurrency {}: {} vs {against}: {}/{} requests token-identical, common prefix min {} / mean {:.1} tokens",
            a.concurrency, a.label, a.identical, a.requests, a.min_common_prefix, a.mean_common_prefix
        ));
    }
    let (completed, requests) = c.levels.iter().flat_map(|l| &l.results).fold((0, 0), |(c, n), r| (c + r.metrics.completed, n + r.metrics.requests));
    lines.push(format!(
        "completion check: {completed} of {requests} measured requests (every level and server) ended with finish_reason \"length\" after exactly {} tokens, the server's usage agreeing{}",
        c.settings.output_len,
        if completed == requests { "" } else { "; the others are listed as FAILED below" }
    ));
    for level in &c.levels {
        for r in &level.results {
            for (why, n) in &r.metrics.errors {
                lines.push(format!("FAILED at concurrency {}: {} x{n}: {why}", level.concurrency, r.label));
            }
        }
    }
    for u in &c.unavailable {
        lines.push(format!("{} unavailable: {}. Fix: {}", u.framework, u.reason, u.fix));
    }
    if c.servers.iter().any(|s| s.synthetic) {
        lines.push(super::SYNTHETIC_NOTE.into());
    }
    lines.push("metrics (vLLM's definitions, measured on the client):".into());
    for (name, def) in &c.definitions {
        lines.push(format!("  {name}: {def}"));
    }
    lines
}
