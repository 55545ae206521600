//! The table for people: the original project's columns, extended.

use bench_core::metrics::comparison::Comparison;
use bench_load::report::ServeComparison;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table as Grid};

pub struct Table;

pub(crate) const HEADER: [&str; 9] = [
    "Framework",
    "Avg Latency (ms)",
    "Avg Throughput (tok/s)",
    "Peak Memory (GB)",
    "First Token (ms)",
    "Prefill (tok/s)",
    "p50 / p99 (ms)",
    "Model (GB)",
    "Bandwidth (GB/s)",
];

/// The second table: start-up and where the peak memory goes.
pub(crate) const STARTUP_HEADER: [&str; 7] =
    ["Framework", "Load (s)", "Cold First Token (ms)", "Weights (GB)", "KV Cache (GB)", "KV Used (GB)", "Rest of Peak (GB)"];

pub(crate) fn startup_header(quantized: bool) -> Vec<&'static str> {
    let mut h = STARTUP_HEADER.to_vec();
    if quantized {
        h.insert(1, QUANT_HEADER[0]);
    }
    h
}

pub(crate) fn startup_cells(r: &super::Row, quantized: bool) -> Vec<String> {
    let mut c = vec![
        r.framework.clone(),
        format!("{:.2}", r.load_s),
        r.cold_first_token_ms.map(|ms| format!("{ms:.0}")).unwrap_or_else(|| "-".into()),
        format!("{:.3}", r.memory.weights_gb),
        format!("{:.3}", r.memory.kv_cache_gb),
        format!("{:.3}", r.memory.kv_cache_used_gb),
        format!("{:.3}", r.memory.rest_gb),
    ];
    if quantized {
        c.insert(1, r.quantize.clone());
    }
    c
}

/// The note under the start-up table, saying how each column is measured.
pub(crate) const STARTUP_NOTE: &str = "Load = files to ready; Cold First Token = process start to the first token of the first, unwarmed request; \
     KV Cache = allocated for the whole context, KV Used = the part this run wrote; Rest = peak - weights - KV used (floored at 0).";

pub(crate) const QUANT_HEADER: [&str; 3] = ["Quant", "KL vs f32 (nats)", "Top-1 vs f32"];

pub(crate) fn header(quantized: bool) -> Vec<&'static str> {
    let mut h = HEADER.to_vec();
    if quantized {
        h.splice(1..1, QUANT_HEADER[..1].iter().copied());
        h.extend(&QUANT_HEADER[1..]);
    }
    h
}

pub(crate) fn row_cells(r: &super::Row, quantized: bool) -> Vec<String> {
    let mut c = cells(r);
    if quantized {
        c.insert(1, r.quantize.clone());
        match r.quality {
            Some((kl, top1)) => c.extend([format!("{kl:.4}"), format!("{:.1}%", top1 * 100.0)]),
            None => c.extend(["-".to_string(), "-".to_string()]),
        }
    }
    c
}

pub(crate) fn cells(r: &super::Row) -> Vec<String> {
    vec![
        format!("{}{}", r.framework, if r.synthetic { " [synthetic]" } else { "" }),
        format!("{:.2} ± {:.2}", r.avg_latency_ms, r.latency_ci_ms),
        format!("{:.2} ± {:.2}", r.avg_throughput, r.throughput_ci),
        format!("{:.3}", r.peak_memory_gb),
        format!("{:.1}", r.first_token_ms),
        format!("{:.1}", r.prefill_tps),
        format!("{:.2} / {:.2}", r.p50_ms, r.p99_ms),
        format!("{:.3}", r.model_memory_gb),
        format!("{:.2}", r.bandwidth_gbs),
    ]
}

impl super::Format for Table {
    fn render(&self, c: &Comparison) -> String {
        let mut out = super::setup_lines(c).join("\n");
        out.push_str("\n\n");
        if !c.results.is_empty() {
            let mut t = Grid::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            let q = super::quantized(c);
            t.set_header(header(q));
            for r in super::rows(c) {
                t.add_row(row_cells(&r, q));
            }
            out.push_str(&t.to_string());
            out.push_str("\n± = 95% confidence interval of the mean. Bandwidth = weight bytes read per token x tok/s");
            if let Some(b) = c.machine.memory_bandwidth_gbs {
                out.push_str(&format!(" (machine copy bandwidth {b:.1} GB/s)"));
            }
            out.push_str(".\n\n");
            let mut t = Grid::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(startup_header(q));
            for r in super::rows(c) {
                t.add_row(startup_cells(&r, q));
            }
            out.push_str(&t.to_string());
            out.push('\n');
            out.push_str(STARTUP_NOTE);
            out.push_str("\n\n");
        }
        for line in super::summary_lines(c) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    fn render_serve(&self, c: &ServeComparison) -> String {
        let mut out = super::serve::setup_lines(c).join("\n");
        out.push('\n');
        for level in &c.levels {
            out.push_str(&format!("\nConcurrency {} (requests in flight at most)\n", level.concurrency));
            let mut t = Grid::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(super::serve::HEADER.to_vec());
            for r in &level.results {
                t.add_row(super::serve::cells(r));
            }
            out.push_str(&t.to_string());
            out.push('\n');
        }
        out.push('\n');
        for line in super::serve::summary_lines(c) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}
