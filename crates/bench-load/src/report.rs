//! The serving comparison every report format renders: per load level, one row per server, the
//! speedups with their noise verdicts, and the correctness check under load (greedy tokens
//! across servers, and against the same request at concurrency 1).

use bench_core::metrics::comparison::Unavailable;
use bench_core::metrics::machine::MachineInfo;
use serde::{Deserialize, Serialize};

use crate::client::RequestRecord;
use crate::load::Run;
use crate::metrics::{ServingMetrics, DEFINITIONS};

pub const SCHEMA_VERSION: u32 = 1;

/// A server under load: one of this project's frameworks started by compare, or a URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub label: String,
    /// The framework compare started (`None` for `--url`).
    pub framework: Option<String>,
    pub url: String,
    pub model: String,
    /// Seconds from process start to `/health` answering 200 (frameworks compare started).
    pub ready_s: Option<f64>,
    /// The server said its weights are synthetic (random values of the model's shape): speed is
    /// real, outputs are not. Unknown (false) for `--url` servers.
    #[serde(default)]
    pub synthetic: bool,
}

/// What every server got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServeSettings {
    pub model: String,
    pub dtype: String,
    /// `random` (input length in tokens) or the JSONL file.
    pub dataset: String,
    pub input_len: Option<usize>,
    pub output_len: usize,
    pub num_prompts: usize,
    pub warmup_requests: usize,
    pub seed: u64,
    /// `--parallel` of the servers compare started, and their threads.
    pub parallel: usize,
    pub threads: usize,
    /// `all at once` or `poisson R req/s`.
    pub arrivals: String,
}

/// One server at one level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerResult {
    pub label: String,
    pub metrics: ServingMetrics,
    pub run: Run,
}

/// One load level: requests in flight at most, and every server's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub concurrency: usize,
    pub results: Vec<ServerResult>,
}

/// How far one server's greedy answers agree with a reference's (another server at the same
/// level, or the same server with each request alone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub concurrency: usize,
    pub label: String,
    /// `alone` or the other server's label.
    pub against: String,
    pub requests: usize,
    /// Requests whose tokens are all the same.
    pub identical: usize,
    /// Leading tokens that agree, the least over requests and the mean.
    pub min_common_prefix: usize,
    pub mean_common_prefix: f64,
}

/// `better` beats `worse` on output throughput at a level by `ratio`; `beyond_noise` when their
/// per-request TPOT 95% intervals do not overlap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServeRatio {
    pub concurrency: usize,
    pub label: String,
    pub against: String,
    /// Output throughput of `label` / that of `against`.
    pub output_throughput_ratio: f64,
    pub beyond_noise: bool,
}

impl ServeRatio {
    pub fn sentence(&self) -> String {
        let verdict = if self.beyond_noise { "beyond noise (per-request TPOT 95% intervals apart)" } else { "within noise (TPOT intervals overlap)" };
        format!("concurrency {}: {} output throughput {:.2}x {}, {verdict}", self.concurrency, self.label, self.output_throughput_ratio, self.against)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServeComparison {
    pub schema_version: u32,
    pub machine: MachineInfo,
    pub settings: ServeSettings,
    pub servers: Vec<ServerInfo>,
    pub levels: Vec<Level>,
    pub ratios: Vec<ServeRatio>,
    pub agreements: Vec<Agreement>,
    pub unavailable: Vec<Unavailable>,
    /// (metric, definition), as in [`DEFINITIONS`].
    pub definitions: Vec<(String, String)>,
}

/// Leading tokens two answers share: by ids where both servers sent them, else by token texts.
pub fn common_prefix(a: &RequestRecord, b: &RequestRecord) -> usize {
    if !a.token_ids.is_empty() && !b.token_ids.is_empty() {
        return a.token_ids.iter().zip(&b.token_ids).take_while(|(x, y)| x == y).count();
    }
    a.pieces.iter().zip(&b.pieces).take_while(|(x, y)| x == y).count()
}

fn agreement(concurrency: usize, label: &str, against: &str, run: &Run, reference: &Run) -> Agreement {
    let pairs: Vec<(&RequestRecord, &RequestRecord)> =
        run.records.iter().filter(|r| r.ok()).filter_map(|r| reference.records.iter().find(|x| x.index == r.index && x.ok()).map(|x| (r, x))).collect();
    let prefixes: Vec<usize> = pairs.iter().map(|(a, b)| common_prefix(a, b)).collect();
    let identical = pairs.iter().zip(&prefixes).filter(|((a, b), &p)| p == a.token_times_s.len() && p == b.token_times_s.len()).count();
    Agreement {
        concurrency,
        label: label.into(),
        against: against.into(),
        requests: pairs.len(),
        identical,
        min_common_prefix: prefixes.iter().copied().min().unwrap_or(0),
        mean_common_prefix: if prefixes.is_empty() { 0.0 } else { prefixes.iter().sum::<usize>() as f64 / prefixes.len() as f64 },
    }
}

/// The reference server of the speedup lines: `llamacpp` where it ran (the reference row), else
/// the first.
fn reference_label(levels: &[Level]) -> Option<String> {
    let labels: Vec<&str> = levels.iter().flat_map(|l| l.results.iter().map(|r| r.label.as_str())).collect();
    labels.iter().find(|l| **l == "llamacpp").or(labels.first()).map(|s| s.to_string())
}

impl ServeComparison {
    /// Assembles the comparison and computes its speedups and agreements.
    pub fn new(machine: MachineInfo, settings: ServeSettings, servers: Vec<ServerInfo>, levels: Vec<Level>, unavailable: Vec<Unavailable>) -> Self {
        let mut ratios = Vec::new();
        let mut agreements = Vec::new();
        let reference = reference_label(&levels);
        for level in &levels {
            let c = level.concurrency;
            if let Some(base) = reference.as_deref().and_then(|r| level.results.iter().find(|x| x.label == r)) {
                for other in level.results.iter().filter(|x| x.label != base.label) {
                    if base.metrics.output_throughput > 0.0 {
                        ratios.push(ServeRatio {
                            concurrency: c,
                            label: other.label.clone(),
                            against: base.label.clone(),
                            output_throughput_ratio: other.metrics.output_throughput / base.metrics.output_throughput,
                            beyond_noise: other.metrics.tpot_ms.differs_from(&base.metrics.tpot_ms),
                        });
                    }
                }
            }
            // Across servers: every server against the first at this level.
            if let Some((first, rest)) = level.results.split_first() {
                for r in rest {
                    agreements.push(agreement(c, &r.label, &first.label, &r.run, &first.run));
                }
            }
            // Against each request alone: the same server at concurrency 1.
            if c > 1 {
                for r in &level.results {
                    let alone = levels.iter().find(|l| l.concurrency == 1).and_then(|l| l.results.iter().find(|x| x.label == r.label));
                    if let Some(alone) = alone {
                        agreements.push(agreement(c, &r.label, "alone", &r.run, &alone.run));
                    }
                }
            }
        }
        ServeComparison {
            schema_version: SCHEMA_VERSION,
            machine,
            settings,
            servers,
            levels,
            ratios,
            agreements,
            unavailable,
            definitions: DEFINITIONS.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        }
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}
