//! Sending a dataset to a server: arrivals all at once with a cap on requests in flight, or as a
//! Poisson process at a request rate (exponential gaps from a seeded generator, vLLM's
//! `burstiness = 1`), each request on its own thread; a progress bar on stderr.
//!
//! Duration is from the first send to the last completion, as vLLM's; warm-up requests run
//! before it and are not recorded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::client::{self, RequestRecord, Target};
use crate::dataset::Prompt;

/// When requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Every request at once; `max_in_flight` of them at a time.
    AllAtOnce,
    /// A Poisson process of `rate` requests per second (still capped by `max_in_flight`).
    Poisson { rate: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadConfig {
    /// Requests in flight at most (the sweep's concurrency level).
    pub max_in_flight: usize,
    pub arrivals: Arrivals,
    /// Tokens asked of every request (`max_tokens`, with `ignore_eos`).
    pub output_len: usize,
    /// Seeds the arrival gaps.
    pub seed: u64,
}

/// The records of one run, in dataset order, and its duration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub records: Vec<RequestRecord>,
    pub duration_s: f64,
}

/// Per-request read timeout: a request that stalls this long fails instead of hanging the run.
const READ_TIMEOUT: Duration = Duration::from_secs(600);

/// Sends `prompts` as `config` says and waits for every answer; `label` heads the progress bar
/// (`None`: no bar, e.g. warm-ups).
pub fn run(target: &Target, prompts: &[Prompt], config: &LoadConfig, label: Option<&str>) -> Run {
    let n = prompts.len();
    // Send times from the start: all zero, or the running sum of exponential gaps.
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut at = 0.0f64;
    let schedule: Vec<f64> = (0..n)
        .map(|i| match config.arrivals {
            Arrivals::AllAtOnce => 0.0,
            Arrivals::Poisson { rate } => {
                if i > 0 {
                    // Inverse CDF of Exp(rate); 1 - u is in (0, 1].
                    at += -(1.0 - rng.random::<f64>()).ln() / rate;
                }
                at
            }
        })
        .collect();
    let bar = label.map(|l| {
        let b = ProgressBar::new(n as u64);
        b.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} requests {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_prefix(l.to_string());
        b
    });
    let agent = client::agent(READ_TIMEOUT);
    let next = AtomicUsize::new(0);
    let records: Mutex<Vec<RequestRecord>> = Mutex::new(Vec::with_capacity(n));
    let start = Instant::now();
    // `max_in_flight` workers take the prompts in order; each waits for its prompt's send time.
    std::thread::scope(|s| {
        for _ in 0..config.max_in_flight.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let due = Duration::from_secs_f64(schedule[i]);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
                let rec = client::complete(&agent, target, i, &prompts[i].text, config.output_len, start);
                if let Some(b) = &bar {
                    b.inc(1);
                }
                records.lock().unwrap_or_else(|p| p.into_inner()).push(rec);
            });
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut records = records.into_inner().unwrap_or_else(|p| p.into_inner());
    records.sort_by_key(|r| r.index);
    let first_sent = records.iter().map(|r| r.sent_s).fold(f64::INFINITY, f64::min);
    let last_done = records.iter().map(|r| r.sent_s + r.e2el_s.unwrap_or(0.0)).fold(0.0, f64::max);
    let duration_s = if records.is_empty() { 0.0 } else { (last_done - first_sent).max(0.0) };
    Run { records, duration_s }
}
