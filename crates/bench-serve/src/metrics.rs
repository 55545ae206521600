//! `GET /metrics` in Prometheus' text exposition format (version 0.0.4): request counts by
//! endpoint and status, prompt and generated tokens, time-to-first-token and inter-token latency
//! histograms (cumulative `le` buckets, `_sum`, `_count`), queue length and running sequences.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bench_core::serve::ServeStats;

/// Bucket bounds in seconds, from a fast decode step to a long prefill.
const BOUNDS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative), the last one past every bound.
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, seconds: f64) {
        let i = BOUNDS.iter().position(|&b| seconds <= b).unwrap_or(BOUNDS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = BOUNDS.get(i).map(|b| b.to_string()).unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Everything `/metrics` shows besides the scheduler's own counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Finished requests by (endpoint, HTTP status).
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Time from the request's arrival to its first token.
    pub ttft: Histogram,
    /// Time between consecutive tokens of one request.
    pub itl: Histogram,
}

impl Metrics {
    /// Counts one answered request.
    pub fn count(&self, endpoint: &'static str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((endpoint, status)).or_default() += 1;
        }
    }

    /// The exposition text.
    pub fn render(&self, stats: Option<&ServeStats>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP llama3_bench_requests_total Requests answered, by endpoint and HTTP status.\n# TYPE llama3_bench_requests_total counter");
        if let Ok(m) = self.requests.lock() {
            for ((endpoint, status), n) in m.iter() {
                let _ = writeln!(out, "llama3_bench_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
            }
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (prompt, generated, steps, queued, active) = match stats {
            Some(s) => (load(&s.prompt_tokens), load(&s.generated_tokens), load(&s.steps), s.queued.load(Ordering::Relaxed), s.active.load(Ordering::Relaxed)),
            None => (0, 0, 0, 0, 0),
        };
        for (name, help, kind, v) in [
            ("llama3_bench_prompt_tokens_total", "Prompt tokens run through the model.", "counter", prompt),
            ("llama3_bench_generated_tokens_total", "Tokens generated.", "counter", generated),
            ("llama3_bench_forward_steps_total", "Batched forward steps run.", "counter", steps),
            ("llama3_bench_queue_length", "Requests waiting for a sequence slot.", "gauge", queued as u64),
            ("llama3_bench_running_sequences", "Sequences holding a slot.", "gauge", active as u64),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        self.ttft.render(&mut out, "llama3_bench_time_to_first_token_seconds", "Time from a request's arrival to its first token.");
        self.itl.render(&mut out, "llama3_bench_inter_token_latency_seconds", "Time between consecutive tokens of a request.");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        for s in [0.0005, 0.003, 0.003, 100.0] {
            h.observe(s);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "test");
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"30\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count 4\n"), "{out}");
        assert!(out.contains("x_sum 100.0065"), "{out}");
    }
}
