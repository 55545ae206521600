//! One CSV row per framework (units in the column names).

use bench_core::metrics::comparison::Comparison;

pub struct Csv;

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl super::Format for Csv {
    fn render(&self, c: &Comparison) -> String {
        let mut out = String::from(
            "framework,quantize,avg_latency_ms,latency_ci95_ms,p50_latency_ms,p99_latency_ms,avg_throughput_tok_s,throughput_ci95_tok_s,\
             first_token_ms,prefill_tok_s,peak_memory_gb,model_memory_gb,bandwidth_gb_s,kl_vs_f32_nats,top1_vs_f32,weights,synthetic\n",
        );
        for r in super::rows(c) {
            out.push_str(&format!(
                "{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.3},{:.3},{:.4},{:.4},{:.3},{},{},{},{}\n",
                field(&r.framework),
                field(&r.quantize),
                r.avg_latency_ms,
                r.latency_ci_ms,
                r.p50_ms,
                r.p99_ms,
                r.avg_throughput,
                r.throughput_ci,
                r.first_token_ms,
                r.prefill_tps,
                r.peak_memory_gb,
                r.model_memory_gb,
                r.bandwidth_gbs,
                r.quality.map(|q| format!("{:.6}", q.0)).unwrap_or_default(),
                r.quality.map(|q| format!("{:.4}", q.1)).unwrap_or_default(),
                field(&r.weights),
                r.synthetic
            ));
        }
        out
    }
}
