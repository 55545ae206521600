//! Serving metrics from a run's records, defined as vLLM's `benchmarks/serve.py` defines them
//! (client side, streaming, one token per chunk); [`DEFINITIONS`] says so in every report.
//!
//! A request counts as completed when it streamed to its end without an error **and** generated
//! exactly the asked number of tokens with `finish_reason == "length"` (the server's `usage`);
//! anything else is failed, with the reason, so a server that stops early cannot look fast.

use std::collections::BTreeMap;

use bench_core::metrics::stats::Summary;
use serde::{Deserialize, Serialize};

use crate::client::RequestRecord;
use crate::load::Run;

/// How each metric is computed (printed with the report).
pub const DEFINITIONS: &[(&str, &str)] = &[
    ("TTFT", "time to first token: from just before the request is sent to the first SSE chunk that carries a token"),
    ("TPOT", "time per output token, per request: (E2EL - TTFT) / (output tokens - 1), requests with more than one token"),
    ("ITL", "inter-token latency: every gap between consecutive token chunks, pooled over all requests"),
    ("E2EL", "end-to-end latency: from the send to the last chunk that carries a token"),
    ("request throughput", "completed requests / duration (first send to last completion, warm-ups excluded)"),
    ("output throughput", "output tokens of completed requests (the server's usage) / duration"),
    ("total throughput", "(input + output tokens) of completed requests / duration"),
    ("goodput", "completed requests meeting every --slo bound / duration"),
    ("percentiles", "linear interpolation between order statistics (numpy's default), as vLLM"),
];

/// Service-level bounds for goodput, in milliseconds (`--slo ttft=MS,tpot=MS,e2el=MS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

impl std::str::FromStr for Slo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut slo = Slo::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected NAME=MS (ttft, tpot or e2el), e.g. ttft=500,tpot=50"))?;
            let ms: f64 =
                value.trim().parse().ok().filter(|v: &f64| *v > 0.0).ok_or_else(|| format!("{part:?}: the bound must be a positive number of milliseconds"))?;
            match key.trim() {
                "ttft" => slo.ttft_ms = Some(ms),
                "tpot" => slo.tpot_ms = Some(ms),
                "e2el" => slo.e2el_ms = Some(ms),
                other => return Err(format!("{other:?} is not an SLO metric: use ttft, tpot or e2el")),
            }
        }
        Ok(slo)
    }
}

impl Slo {
    pub fn is_set(&self) -> bool {
        self.ttft_ms.is_some() || self.tpot_ms.is_some() || self.e2el_ms.is_some()
    }
}

/// One server's figures at one load level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServingMetrics {
    pub requests: usize,
    pub completed: usize,
    pub failed: usize,
    /// Each distinct failure and how many requests it hit.
    pub errors: BTreeMap<String, usize>,
    pub duration_s: f64,
    pub input_tokens: usize,
    pub output_tokens: usize,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    /// `None` without `--slo`.
    pub goodput: Option<f64>,
    pub ttft_ms: Summary,
    pub tpot_ms: Summary,
    pub itl_ms: Summary,
    pub e2el_ms: Summary,
}

/// Why a record does not count as completed (`None`: it does).
pub fn failure(r: &RequestRecord, output_len: usize) -> Option<String> {
    if let Some(e) = &r.error {
        return Some(e.clone());
    }
    let Some(usage) = r.usage else { return Some("no usage in the stream (stream_options.include_usage ignored?)".into()) };
    if r.finish_reason.as_deref() != Some("length") || usage.completion_tokens != output_len {
        return Some(format!(
            "finished by {:?} after {} tokens, not by length after {output_len} (ignore_eos not honoured?)",
            r.finish_reason.as_deref().unwrap_or("nothing"),
            usage.completion_tokens
        ));
    }
    // Servers that stream token ids (this project's) must have streamed every counted token.
    if !r.token_ids.is_empty() && r.token_ids.len() != usage.completion_tokens {
        return Some(format!("streamed {} token ids but usage counts {}", r.token_ids.len(), usage.completion_tokens));
    }
    None
}

impl ServingMetrics {
    pub fn of(run: &Run, output_len: usize, slo: &Slo) -> Self {
        let mut m = ServingMetrics { requests: run.records.len(), duration_s: run.duration_s, ..Default::default() };
        let (mut ttft, mut tpot, mut itl, mut e2el) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut good = 0;
        for r in &run.records {
            if let Some(why) = failure(r, output_len) {
                m.failed += 1;
                *m.errors.entry(why).or_default() += 1;
                continue;
            }
            m.completed += 1;
            let usage = r.usage.unwrap_or_default();
            m.input_tokens += usage.prompt_tokens;
            m.output_tokens += usage.completion_tokens;
            let (t, e) = (r.ttft_s.unwrap_or(0.0) * 1e3, r.e2el_s.unwrap_or(0.0) * 1e3);
            ttft.push(t);
            e2el.push(e);
            let per_token = (usage.completion_tokens > 1).then(|| (e - t) / (usage.completion_tokens - 1) as f64);
            tpot.extend(per_token);
            itl.extend(r.token_times_s.windows(2).map(|w| (w[1] - w[0]) * 1e3));
            let meets =
                slo.ttft_ms.is_none_or(|b| t <= b) && slo.e2el_ms.is_none_or(|b| e <= b) && slo.tpot_ms.is_none_or(|b| per_token.is_none_or(|p| p <= b));
            good += usize::from(meets);
        }
        let per_s = |x: f64| if run.duration_s > 0.0 { x / run.duration_s } else { 0.0 };
        m.request_throughput = per_s(m.completed as f64);
        m.output_throughput = per_s(m.output_tokens as f64);
        m.total_token_throughput = per_s((m.input_tokens + m.output_tokens) as f64);
        m.goodput = slo.is_set().then(|| per_s(good as f64));
        m.ttft_ms = Summary::of(&ttft);
        m.tpot_ms = Summary::of(&tpot);
        m.itl_ms = Summary::of(&itl);
        m.e2el_ms = Summary::of(&e2el);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Usage;

    fn record(index: usize, ttft: f64, times: &[f64], tokens: usize, finish: &str) -> RequestRecord {
        RequestRecord {
            index,
            ttft_s: Some(ttft),
            token_times_s: times.to_vec(),
            e2el_s: times.last().copied(),
            finish_reason: Some(finish.into()),
            usage: Some(Usage { prompt_tokens: 10, completion_tokens: tokens }),
            ..Default::default()
        }
    }

    /// Worked by hand from vLLM's formulas: two requests of 3 tokens in 2 s.
    #[test]
    fn metrics_follow_the_definitions() {
        let run = Run { records: vec![record(0, 0.1, &[0.1, 0.3, 0.5], 3, "length"), record(1, 0.2, &[0.2, 0.3, 0.6], 3, "length")], duration_s: 2.0 };
        let m = ServingMetrics::of(&run, 3, &Slo { ttft_ms: Some(150.0), ..Default::default() });
        assert_eq!((m.completed, m.failed, m.input_tokens, m.output_tokens), (2, 0, 20, 6));
        assert!((m.request_throughput - 1.0).abs() < 1e-12 && (m.output_throughput - 3.0).abs() < 1e-12 && (m.total_token_throughput - 13.0).abs() < 1e-12);
        // TPOT: (500 - 100) / 2 = 200 and (600 - 200) / 2 = 200 ms.
        assert!((m.tpot_ms.mean - 200.0).abs() < 1e-9);
        // ITL pooled: 200, 200, 100, 300 ms.
        assert_eq!(m.itl_ms.n, 4);
        assert!((m.itl_ms.mean - 200.0).abs() < 1e-9 && (m.itl_ms.max - 300.0).abs() < 1e-9);
        assert!((m.ttft_ms.mean - 150.0).abs() < 1e-9 && (m.e2el_ms.mean - 550.0).abs() < 1e-9);
        // Only the first meets TTFT <= 150 ms (the second's is 200).
        assert_eq!(m.goodput, Some(0.5));
    }

    #[test]
    fn a_request_that_stops_early_or_fails_is_not_completed() {
        let short = record(0, 0.1, &[0.1, 0.2], 2, "stop");
        let broken = RequestRecord { index: 1, error: Some("HTTP 500: boom".into()), ..Default::default() };
        let m = ServingMetrics::of(&Run { records: vec![short, broken], duration_s: 1.0 }, 3, &Slo::default());
        assert_eq!((m.completed, m.failed, m.output_tokens), (0, 2, 0));
        assert!(m.errors.keys().any(|k| k.contains("finished by \"stop\" after 2 tokens")), "{:?}", m.errors);
        assert!(m.errors.contains_key("HTTP 500: boom"));
        assert_eq!(m.goodput, None);
    }

    #[test]
    fn slo_parses_and_names_mistakes() {
        let s: Slo = "ttft=500, tpot=50".parse().unwrap();
        assert_eq!((s.ttft_ms, s.tpot_ms, s.e2el_ms), (Some(500.0), Some(50.0), None));
        assert!("latency=5".parse::<Slo>().unwrap_err().contains("not an SLO metric"));
        assert!("ttft=-1".parse::<Slo>().unwrap_err().contains("positive"));
        assert!("ttft".parse::<Slo>().unwrap_err().contains("NAME=MS"));
    }
}
