//! One CSV row per framework (units in the column names).

use bench_core::metrics::comparison::Comparison;
use bench_load::report::ServeComparison;

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
             first_token_ms,prefill_tok_s,peak_memory_gb,model_memory_gb,bandwidth_gb_s,kl_vs_f32_nats,top1_vs_f32,weights,synthetic,\
             load_s,cold_first_token_ms,weights_gb,kv_cache_gb,kv_cache_used_gb,rest_of_peak_gb\n",
        );
        for r in super::rows(c) {
            out.push_str(&format!(
                "{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.3},{:.3},{:.4},{:.4},{:.3},{},{},{},{},{:.3},{},{:.4},{:.4},{:.4},{:.4}\n",
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
                r.synthetic,
                r.load_s,
                r.cold_first_token_ms.map(|ms| format!("{ms:.1}")).unwrap_or_default(),
                r.memory.weights_gb,
                r.memory.kv_cache_gb,
                r.memory.kv_cache_used_gb,
                r.memory.rest_gb
            ));
        }
        out
    }

    /// One row per server and level.
    fn render_serve(&self, c: &ServeComparison) -> String {
        let mut out = String::from(
            "concurrency,server,requests,completed,failed,duration_s,input_tokens,output_tokens,request_throughput_req_s,output_throughput_tok_s,\
             total_throughput_tok_s,goodput_req_s,ttft_mean_ms,ttft_p50_ms,ttft_p90_ms,ttft_p99_ms,tpot_mean_ms,tpot_p50_ms,tpot_p90_ms,tpot_p99_ms,\
             itl_mean_ms,itl_p50_ms,itl_p90_ms,itl_p99_ms,e2el_mean_ms,e2el_p50_ms,e2el_p90_ms,e2el_p99_ms\n",
        );
        for level in &c.levels {
            for r in &level.results {
                let m = &r.metrics;
                let mut row = vec![
                    level.concurrency.to_string(),
                    field(&r.label),
                    m.requests.to_string(),
                    m.completed.to_string(),
                    m.failed.to_string(),
                    format!("{:.4}", m.duration_s),
                    m.input_tokens.to_string(),
                    m.output_tokens.to_string(),
                    format!("{:.4}", m.request_throughput),
                    format!("{:.3}", m.output_throughput),
                    format!("{:.3}", m.total_token_throughput),
                    m.goodput.map(|g| format!("{g:.4}")).unwrap_or_default(),
                ];
                for s in [&m.ttft_ms, &m.tpot_ms, &m.itl_ms, &m.e2el_ms] {
                    row.extend([s.mean, s.p50, s.p90, s.p99].iter().map(|x| format!("{x:.3}")));
                }
                out.push_str(&row.join(","));
                out.push('\n');
            }
        }
        out
    }
}
