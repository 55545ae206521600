//! A comparison of frameworks: their results, the ratios between them with a verdict on whether
//! each difference is larger than the noise, the frameworks that could not run, and the greedy
//! tokens cross-check. This is the data every report format renders.

use serde::{Deserialize, Serialize};

use crate::metrics::machine::MachineInfo;
use crate::metrics::stats::Summary;
use crate::run::bench::BenchmarkResult;
use crate::{Error, Result};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    pub model: String,
    pub dtype: String,
    pub quantize: Option<String>,
    pub iterations: usize,
    pub warmup: usize,
    pub gen_tokens: usize,
    pub threads: usize,
    pub device: String,
}

/// A framework that could not run, why, and what to do about it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unavailable {
    pub framework: String,
    pub reason: String,
    pub fix: String,
    /// What kind of failure it was (absent in reports written before it existed: `failed`).
    #[serde(default)]
    pub kind: UnavailableKind,
}

/// Why a framework could not run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnavailableKind {
    /// Its binary is not built here: nothing else of it can run either.
    NotBuilt,
    /// It ran and failed (or could not be started, or was killed).
    #[default]
    Failed,
}

/// `better` beats `worse` on `metric` by `ratio` (>= 1), both at quantization level `quantize`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ratio {
    #[serde(default = "none")]
    pub quantize: String,
    pub metric: String,
    pub better: String,
    pub worse: String,
    pub ratio: f64,
    /// Whether the two 95% confidence intervals do not overlap; `None` where there is no noise
    /// estimate (a single measurement, e.g. peak memory).
    pub beyond_noise: Option<bool>,
}

impl Ratio {
    /// The original project's phrasing: "native is 1.6x faster in throughput".
    pub fn sentence(&self) -> String {
        let (b, r, w) = (&self.better, self.ratio, &self.worse);
        let core = match self.metric.as_str() {
            "throughput" => format!("{b} is {r:.2}x faster in throughput than {w}"),
            "latency" => format!("{b} has {r:.2}x lower per-token latency than {w}"),
            "memory" => format!("{b} uses {r:.2}x less memory than {w}"),
            "first_token" => format!("{b} is {r:.2}x faster to the first token than {w}"),
            "prefill" => format!("{b} is {r:.2}x faster in prefill than {w}"),
            other => format!("{b} is {r:.2}x better in {other} than {w}"),
        };
        let noise = match self.beyond_noise {
            Some(true) => " (beyond noise)",
            Some(false) => " (within noise: not a real difference)",
            None => " (single measurement)",
        };
        let level = if self.quantize == "none" { String::new() } else { format!("[{}] ", self.quantize) };
        format!("{level}{core}{noise}")
    }
}

fn none() -> String {
    "none".into()
}

/// What a quantization costs in quality: the quantized run's predictions on the benchmark prompt
/// against the same framework's f32 run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quality {
    pub framework: String,
    pub quantize: String,
    /// Mean over prompt positions of KL(f32 || quantized), nats.
    pub kl_divergence: f64,
    /// Fraction of prompt positions whose top-1 token equals the f32 run's.
    pub top1_agreement: f64,
    pub positions: usize,
}

impl Quality {
    /// From two `positions x vocab` logit matrices (row-major).
    pub fn measure(framework: &str, quantize: &str, reference: &[f32], quantized: &[f32], vocab: usize) -> Result<Self> {
        if vocab == 0 || reference.len() != quantized.len() || !reference.len().is_multiple_of(vocab) {
            return Err(Error::InvalidInput(format!("logit dumps differ in size ({} vs {} values, vocabulary {vocab})", reference.len(), quantized.len())));
        }
        let positions = reference.len() / vocab;
        let (mut kl, mut agree) = (0.0, 0usize);
        for (r, q) in reference.chunks(vocab).zip(quantized.chunks(vocab)) {
            kl += crate::run::sampling::kl_divergence(r, q);
            agree += usize::from(crate::run::sampling::argmax(r) == crate::run::sampling::argmax(q));
        }
        Ok(Self {
            framework: framework.into(),
            quantize: quantize.into(),
            kl_divergence: kl / positions as f64,
            top1_agreement: agree as f64 / positions as f64,
            positions,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Divergence {
    pub position: usize,
    /// (framework, token, its margin over the runner-up)
    pub tokens: Vec<(String, u32, f32)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CrossCheck {
    #[serde(default = "none")]
    pub quantize: String,
    pub frameworks: Vec<String>,
    pub compared_tokens: usize,
    pub agree: bool,
    pub divergence: Option<Divergence>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    pub schema_version: u32,
    pub machine: MachineInfo,
    pub settings: Settings,
    pub results: Vec<BenchmarkResult>,
    pub unavailable: Vec<Unavailable>,
    pub ratios: Vec<Ratio>,
    /// One per quantization level with two or more frameworks.
    pub cross_checks: Vec<CrossCheck>,
    #[serde(default)]
    pub quality: Vec<Quality>,
}

fn ratio(metric: &str, a: (&str, f64, Option<&Summary>), b: (&str, f64, Option<&Summary>), higher_is_better: bool) -> Option<Ratio> {
    let (a_name, a_v, a_s) = a;
    let (b_name, b_v, b_s) = b;
    if !(a_v > 0.0 && b_v > 0.0 && a_v.is_finite() && b_v.is_finite()) {
        return None;
    }
    let a_wins = if higher_is_better { a_v >= b_v } else { a_v <= b_v };
    let (better, worse, r) = if a_wins { (a_name, b_name, a_v.max(b_v) / a_v.min(b_v)) } else { (b_name, a_name, a_v.max(b_v) / a_v.min(b_v)) };
    let beyond_noise = match (a_s, b_s) {
        (Some(x), Some(y)) if x.n > 1 && y.n > 1 => Some(x.differs_from(y)),
        _ => None,
    };
    Some(Ratio { quantize: none(), metric: metric.into(), better: better.into(), worse: worse.into(), ratio: r, beyond_noise })
}

/// Ratios between every pair of results at the same quantization level.
pub fn ratios(results: &[BenchmarkResult]) -> Vec<Ratio> {
    let mut out: Vec<Ratio> = Vec::new();
    for (i, a) in results.iter().enumerate() {
        for b in results[i + 1..].iter().filter(|b| b.level() == a.level()) {
            let first = out.len();
            let (an, bn) = (a.framework.as_str(), b.framework.as_str());
            out.extend(ratio(
                "throughput",
                (an, a.tokens_per_second.mean, Some(&a.tokens_per_second)),
                (bn, b.tokens_per_second.mean, Some(&b.tokens_per_second)),
                true,
            ));
            out.extend(ratio(
                "latency",
                (an, a.token_latency_ms.mean, Some(&a.token_latency_ms)),
                (bn, b.token_latency_ms.mean, Some(&b.token_latency_ms)),
                false,
            ));
            out.extend(ratio(
                "first_token",
                (an, a.first_token_latency_ms.mean, Some(&a.first_token_latency_ms)),
                (bn, b.first_token_latency_ms.mean, Some(&b.first_token_latency_ms)),
                false,
            ));
            out.extend(ratio(
                "prefill",
                (an, a.prefill_tokens_per_second, Some(&a.prefill_tokens_per_second_stats)),
                (bn, b.prefill_tokens_per_second, Some(&b.prefill_tokens_per_second_stats)),
                true,
            ));
            out.extend(ratio("memory", (an, a.peak_memory_gb, None), (bn, b.peak_memory_gb, None), false));
            for r in &mut out[first..] {
                r.quantize = a.level().to_string();
            }
        }
    }
    out
}

/// Compares the frameworks' greedy tokens; reports the first position where they differ.
pub fn cross_check(results: &[BenchmarkResult]) -> Option<CrossCheck> {
    if results.len() < 2 {
        return None;
    }
    let n = results.iter().map(|r| r.greedy_tokens.len()).min().unwrap_or(0);
    let divergence = (0..n).find(|&i| results.iter().any(|r| r.greedy_tokens[i] != results[0].greedy_tokens[i])).map(|position| Divergence {
        position,
        tokens: results.iter().map(|r| (r.framework.clone(), r.greedy_tokens[position], r.greedy_margins.get(position).copied().unwrap_or(f32::NAN))).collect(),
    });
    Some(CrossCheck {
        quantize: results[0].level().to_string(),
        frameworks: results.iter().map(|r| r.framework.clone()).collect(),
        compared_tokens: n,
        agree: divergence.is_none(),
        divergence,
    })
}

/// The quantization levels present, in order of first appearance.
pub fn levels(results: &[BenchmarkResult]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in results {
        if !out.iter().any(|l| l == r.level()) {
            out.push(r.level().to_string());
        }
    }
    out
}

impl Comparison {
    pub fn new(machine: MachineInfo, settings: Settings, results: Vec<BenchmarkResult>, unavailable: Vec<Unavailable>, quality: Vec<Quality>) -> Self {
        let ratios = ratios(&results);
        let cross_checks =
            levels(&results).iter().filter_map(|l| cross_check(&results.iter().filter(|r| r.level() == l).cloned().collect::<Vec<_>>())).collect();
        Self { schema_version: SCHEMA_VERSION, machine, settings, results, unavailable, ratios, cross_checks, quality }
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::InvalidInput(format!("not a comparison JSON: {e}")))?;
        let version = v.get("schema_version").and_then(|s| s.as_u64()).unwrap_or(0);
        if version != SCHEMA_VERSION as u64 {
            return Err(Error::InvalidInput(format!("comparison schema version {version}; this build reads version {SCHEMA_VERSION}")));
        }
        serde_json::from_value(v).map_err(|e| Error::InvalidInput(format!("not a comparison JSON: {e}")))
    }
}

/// A metric that got worse than a saved baseline by more than the noise.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Regression {
    pub framework: String,
    pub metric: String,
    pub baseline: f64,
    pub current: f64,
    pub change_percent: f64,
}

/// Throughput and latency of each framework present in both, flagged when worse beyond noise
/// (non-overlapping 95% intervals) and by more than `min_percent`: the intervals are within one
/// run, and separate runs on a shared machine drift by a few percent.
pub fn regressions(baseline: &Comparison, current: &Comparison, min_percent: f64) -> Vec<Regression> {
    let mut out = Vec::new();
    for cur in &current.results {
        let Some(base) = baseline.results.iter().find(|b| b.framework == cur.framework && b.level() == cur.level()) else { continue };
        let checks: [(&str, &Summary, &Summary, bool); 2] = [
            ("throughput (tok/s)", &base.tokens_per_second, &cur.tokens_per_second, true),
            ("token latency (ms)", &base.token_latency_ms, &cur.token_latency_ms, false),
        ];
        for (metric, b, c, higher_is_better) in checks {
            let worse = if higher_is_better { c.mean < b.mean } else { c.mean > b.mean };
            let change = ((c.mean - b.mean) / b.mean * 100.0).abs();
            if worse && c.differs_from(b) && change > min_percent {
                out.push(Regression {
                    framework: if cur.level() == "none" { cur.framework.clone() } else { format!("{} [{}]", cur.framework, cur.level()) },
                    metric: metric.into(),
                    baseline: b.mean,
                    current: c.mean,
                    change_percent: (c.mean - b.mean) / b.mean * 100.0,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_phrasing_and_noise() {
        let fast = Summary::of(&[20.0, 20.2, 19.8, 20.1]);
        let slow = Summary::of(&[10.0, 10.1, 9.9, 10.0]);
        let r = ratio("throughput", ("native", fast.mean, Some(&fast)), ("torch", slow.mean, Some(&slow)), true).unwrap();
        assert_eq!(r.better, "native");
        assert!((r.ratio - 2.0).abs() < 0.02);
        assert_eq!(r.sentence(), "native is 2.00x faster in throughput than torch (beyond noise)");
        let close = Summary::of(&[19.9, 20.3, 19.7, 20.2]);
        let r = ratio("throughput", ("native", fast.mean, Some(&fast)), ("torch", close.mean, Some(&close)), true).unwrap();
        assert_eq!(r.beyond_noise, Some(false));
        let m = ratio("memory", ("native", 1.0, None), ("torch", 0.5, None), false).unwrap();
        let q = Quality::measure("native", "int8", &[0.0, 3f32.ln(), 5.0, 1.0], &[1.0, 1.0, 5.0, 1.0], 2).unwrap();
        assert!((q.kl_divergence - 0.130_812_035 / 2.0).abs() < 1e-6 && q.top1_agreement == 0.5 && q.positions == 2, "{q:?}");
        assert_eq!(m.sentence(), "torch uses 2.00x less memory than native (single measurement)");
    }
}
