//! The benchmark runner and its result, per the methodology in the README ("What the numbers
//! mean").
//!
//! One iteration = reset the KV cache, prefill the prompt, then decode `gen_tokens` tokens
//! greedily with EOS ignored (so every framework generates the same number of tokens). Warm-up
//! iterations run first and are discarded. Timing:
//! - prefill time: the prompt's forward pass;
//! - first-token latency (TTFT): prefill + sampling the first token;
//! - per-token latency: time between consecutive generated tokens (forward + sampling), decode only;
//! - throughput: decoded tokens / decode time, per iteration; "peak" is the best iteration;
//! - prefill throughput: prompt tokens / prefill time.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::metrics::stats::Summary;
use crate::run::sampling::argmax_with_margin;
use crate::{Error, Result};
use bench_backend::backend::{DeviceInfo, LanguageModel, ModelInfo, Quantize};
use bench_backend::memory;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub prompt_tokens: Vec<u32>,
    /// Tokens generated per iteration, including the first.
    pub gen_tokens: usize,
    pub iterations: usize,
    pub warmup: usize,
}

/// The raw timings of one iteration (seconds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IterationSample {
    pub prefill_s: f64,
    pub first_token_s: f64,
    /// Time of each generated token after the first.
    pub token_times_s: Vec<f64>,
    pub total_s: f64,
}

impl IterationSample {
    pub fn decode_s(&self) -> f64 {
        self.token_times_s.iter().sum()
    }
    pub fn decode_tokens_per_s(&self) -> f64 {
        let t = self.decode_s();
        if t > 0.0 {
            self.token_times_s.len() as f64 / t
        } else {
            0.0
        }
    }
}

/// Runs the benchmark; `on_iteration(index, sample, warmup)` is called after each iteration.
/// Returns the measured samples and the greedy tokens of the first measured iteration.
pub fn run(
    model: &mut dyn LanguageModel,
    config: &BenchConfig,
    on_iteration: impl FnMut(usize, &IterationSample, bool),
) -> Result<(Vec<IterationSample>, Vec<u32>)> {
    let (samples, greedy) = run_detailed(model, config, on_iteration)?;
    Ok((samples, greedy.tokens))
}

/// The greedy tokens of one iteration, with each one's logit margin over the runner-up (how
/// close the choice was: a divergence between frameworks at a tiny margin is a near-tie).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GreedyTrace {
    pub tokens: Vec<u32>,
    pub margins: Vec<f32>,
}

/// [`run`], also returning the first measured iteration's logit margins.
pub fn run_detailed(
    model: &mut dyn LanguageModel,
    config: &BenchConfig,
    mut on_iteration: impl FnMut(usize, &IterationSample, bool),
) -> Result<(Vec<IterationSample>, GreedyTrace)> {
    if config.prompt_tokens.is_empty() {
        return Err(Error::InvalidInput("the benchmark prompt is empty".into()));
    }
    if config.gen_tokens == 0 || config.iterations == 0 {
        return Err(Error::InvalidInput("--iterations and the number of generated tokens must be at least 1".into()));
    }
    let needed = config.prompt_tokens.len() + config.gen_tokens;
    let capacity = model.info().max_seq_len;
    if needed > capacity {
        return Err(Error::InvalidInput(format!(
            "prompt ({} tokens) + generation ({} tokens) = {needed} exceeds the context of {capacity} tokens",
            config.prompt_tokens.len(),
            config.gen_tokens
        )));
    }
    let mut samples = Vec::with_capacity(config.iterations);
    let mut greedy = GreedyTrace::default();
    for i in 0..config.warmup + config.iterations {
        let warm = i < config.warmup;
        let (sample, tokens) = one_iteration(model, config)?;
        on_iteration(i, &sample, warm);
        if !warm {
            if samples.is_empty() {
                greedy = tokens;
            }
            samples.push(sample);
        }
    }
    Ok((samples, greedy))
}

fn one_iteration(model: &mut dyn LanguageModel, config: &BenchConfig) -> Result<(IterationSample, GreedyTrace)> {
    model.reset();
    let n = config.prompt_tokens.len();
    let start = Instant::now();
    let logits = model.forward(&config.prompt_tokens, 0)?;
    let prefill_s = start.elapsed().as_secs_f64();
    let (mut token, margin) = argmax_with_margin(&logits);
    let first_token_s = start.elapsed().as_secs_f64();
    let mut trace = GreedyTrace { tokens: vec![token], margins: vec![margin] };
    let mut token_times_s = Vec::with_capacity(config.gen_tokens.saturating_sub(1));
    let mut last = Instant::now();
    for step in 1..config.gen_tokens {
        let logits = model.forward(&[token], n + step - 1)?;
        let (next, margin) = argmax_with_margin(&logits);
        token = next;
        let now = Instant::now();
        token_times_s.push((now - last).as_secs_f64());
        last = now;
        trace.tokens.push(token);
        trace.margins.push(margin);
    }
    let total_s = start.elapsed().as_secs_f64();
    Ok((IterationSample { prefill_s, first_token_s, token_times_s, total_s }, trace))
}

/// Everything a benchmark run reports. The first twelve fields are the original project's; times
/// are in seconds, memory in GB (10^9 bytes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchmarkResult {
    pub schema_version: u32,
    pub framework: String,
    pub model_size: String,
    pub iterations: usize,
    /// Wall time of all measured iterations together.
    pub total_time: f64,
    /// Mean first-token latency (prefill + first sample).
    pub first_token_time: f64,
    /// Mean / min / max time between consecutive generated tokens.
    pub avg_token_time: f64,
    pub min_token_time: f64,
    pub max_token_time: f64,
    /// Mean over iterations of decode tokens/s; peak = best iteration.
    pub avg_tokens_per_second: f64,
    pub peak_tokens_per_second: f64,
    /// Peak resident memory of the process (CPU) or device memory (GPU).
    pub peak_memory_gb: f64,
    /// Weights as loaded.
    pub model_memory_gb: f64,

    pub prefill_tokens_per_second: f64,
    /// Per-token decode latency statistics, milliseconds.
    pub token_latency_ms: Summary,
    /// First-token latency statistics, milliseconds.
    pub first_token_latency_ms: Summary,
    /// Per-iteration decode throughput statistics, tokens/s.
    pub tokens_per_second: Summary,
    /// Per-iteration prefill throughput statistics, tokens/s.
    pub prefill_tokens_per_second_stats: Summary,
    /// Weight bytes read per decoded token x mean decode tokens/s, GB/s.
    pub achieved_bandwidth_gbs: f64,

    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub warmup_iterations: usize,
    pub load_time_s: f64,
    /// Process start to the first token of the first, unwarmed iteration (seconds): load,
    /// tokenization and a cold prefill together, what a user of a fresh process waits for.
    /// `None` where the process start time cannot be read (off Linux) or in older results.
    #[serde(default)]
    pub cold_first_token_s: Option<f64>,
    /// Where the peak memory goes.
    #[serde(default)]
    pub memory: MemoryBreakdown,
    pub tokenize_time_s: f64,
    pub synthetic: bool,
    /// Load-time quantization (`int8`, `nf4`, `float16`), `None` for plain weights.
    #[serde(default)]
    pub quantize: Option<Quantize>,
    pub model: ModelInfo,
    pub device: DeviceInfo,
    /// Greedy tokens of the first measured iteration (for cross-framework checks).
    pub greedy_tokens: Vec<u32>,
    /// Each greedy token's logit margin over the runner-up.
    #[serde(default)]
    pub greedy_margins: Vec<f32>,
    pub samples: Vec<IterationSample>,
}

/// The peak memory split into weights, the KV cache and the rest (activations, scratch,
/// the runtime itself), in GB.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryBreakdown {
    /// Weights as loaded (`ModelInfo::weight_bytes`).
    pub weights_gb: f64,
    /// KV cache allocated for the whole context (`ModelInfo::kv_cache_bytes`).
    pub kv_cache_gb: f64,
    /// Positions the KV cache holds per sequence (the context the model was loaded with).
    pub kv_cache_positions: usize,
    /// The part of the KV cache this run wrote (prompt + generated positions): what a cache
    /// whose pages are touched only when written adds to the peak.
    #[serde(default)]
    pub kv_cache_used_gb: f64,
    /// Peak minus weights minus the KV cache used, floored at 0 (activations, scratch, the
    /// runtime, and a cache's untouched part where a framework clears it up front).
    pub rest_gb: f64,
}

impl MemoryBreakdown {
    /// `positions_used`: prompt + generated tokens of one sequence.
    pub fn of(model: &ModelInfo, peak_gb: f64, positions_used: usize) -> Self {
        let gb = memory::GB;
        let weights_gb = model.weight_bytes as f64 / gb;
        let kv_cache_gb = model.kv_cache_bytes as f64 / gb;
        let kv_cache_used_gb = kv_cache_gb * positions_used.min(model.max_seq_len) as f64 / model.max_seq_len.max(1) as f64;
        let rest_gb = if peak_gb.is_finite() { (peak_gb - weights_gb - kv_cache_used_gb).max(0.0) } else { f64::NAN };
        Self { weights_gb, kv_cache_gb, kv_cache_positions: model.max_seq_len, kv_cache_used_gb, rest_gb }
    }
}

/// What the runner does not know by itself.
pub struct RunContext {
    pub framework: String,
    pub model_size: String,
    pub model: ModelInfo,
    pub device: DeviceInfo,
    pub load_time_s: f64,
    /// See `BenchmarkResult::cold_first_token_s`.
    pub cold_first_token_s: Option<f64>,
    pub tokenize_time_s: f64,
    pub warmup: usize,
    pub quantize: Option<Quantize>,
}

impl BenchmarkResult {
    /// The quantization level this run belongs to in a comparison ("none" for plain weights).
    pub fn level(&self) -> &str {
        self.quantize.map(Quantize::as_str).unwrap_or("none")
    }

    pub fn from_samples(ctx: RunContext, prompt_tokens: usize, samples: Vec<IterationSample>, greedy: GreedyTrace) -> Self {
        let token_times: Vec<f64> = samples.iter().flat_map(|s| s.token_times_s.iter().copied()).collect();
        let ttft: Vec<f64> = samples.iter().map(|s| s.first_token_s).collect();
        let tps: Vec<f64> = samples.iter().map(IterationSample::decode_tokens_per_s).collect();
        let prefill_tps: Vec<f64> = samples.iter().map(|s| if s.prefill_s > 0.0 { prompt_tokens as f64 / s.prefill_s } else { 0.0 }).collect();
        let token_s = Summary::of(&token_times);
        let tps_s = Summary::of(&tps);
        let gb = memory::GB;
        let peak = memory::peak_rss_bytes().map(|b| b as f64 / gb).unwrap_or(f64::NAN);
        let generated_tokens = samples.first().map(|s| s.token_times_s.len() + 1).unwrap_or(0);
        Self {
            schema_version: SCHEMA_VERSION,
            framework: ctx.framework,
            model_size: ctx.model_size,
            iterations: samples.len(),
            total_time: samples.iter().map(|s| s.total_s).sum(),
            first_token_time: Summary::of(&ttft).mean,
            avg_token_time: token_s.mean,
            min_token_time: token_s.min,
            max_token_time: token_s.max,
            avg_tokens_per_second: tps_s.mean,
            peak_tokens_per_second: tps_s.max,
            peak_memory_gb: peak,
            model_memory_gb: ctx.model.weight_bytes as f64 / gb,
            prefill_tokens_per_second: Summary::of(&prefill_tps).mean,
            token_latency_ms: token_s.scaled(1e3),
            first_token_latency_ms: Summary::of(&ttft).scaled(1e3),
            tokens_per_second: tps_s,
            prefill_tokens_per_second_stats: Summary::of(&prefill_tps),
            achieved_bandwidth_gbs: ctx.model.weight_bytes_per_token as f64 * tps_s.mean / gb,
            prompt_tokens,
            generated_tokens,
            warmup_iterations: ctx.warmup,
            load_time_s: ctx.load_time_s,
            cold_first_token_s: ctx.cold_first_token_s,
            memory: MemoryBreakdown::of(&ctx.model, peak, prompt_tokens + generated_tokens),
            tokenize_time_s: ctx.tokenize_time_s,
            synthetic: ctx.model.synthetic,
            quantize: ctx.quantize,
            model: ctx.model,
            device: ctx.device,
            greedy_tokens: greedy.tokens,
            greedy_margins: greedy.margins,
            samples,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("BenchmarkResult serialises")
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::InvalidInput(format!("not a BenchmarkResult: {e}")))?;
        let version = v.get("schema_version").and_then(|s| s.as_u64()).unwrap_or(0);
        if version != SCHEMA_VERSION as u64 {
            return Err(Error::InvalidInput(format!("BenchmarkResult schema version {version}; this build reads version {SCHEMA_VERSION}")));
        }
        serde_json::from_value(v).map_err(|e| Error::InvalidInput(format!("not a BenchmarkResult: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench_backend::backend::Logits;
    use bench_hub::registry::Registry;

    /// A test double: "next token = (last token + 1) mod vocab", with a fixed sleep per forward
    /// call so that the timings have a known floor.
    struct CountingModel {
        calls: Vec<(usize, usize)>,
        vocab: usize,
        info: ModelInfo,
    }

    impl LanguageModel for CountingModel {
        fn forward(&mut self, tokens: &[u32], pos: usize) -> bench_backend::Result<Logits> {
            self.calls.push((tokens.len(), pos));
            std::thread::sleep(std::time::Duration::from_millis(2));
            let mut l = vec![0.0; self.vocab];
            l[(*tokens.last().unwrap() as usize + 1) % self.vocab] = 1.0;
            Ok(l)
        }
        fn reset(&mut self) {
            self.calls.push((0, 0));
        }
        fn info(&self) -> ModelInfo {
            self.info.clone()
        }
    }

    fn double() -> CountingModel {
        let arch = Registry::load().unwrap().model("smollm2-135m").unwrap().architecture.clone();
        CountingModel {
            calls: vec![],
            vocab: 10,
            info: ModelInfo {
                name: "test double".into(),
                parameters: 1,
                weight_bytes: 2_000_000_000,
                weight_bytes_per_token: 1_000_000_000,
                weights: "none".into(),
                compute_dtype: bench_backend::backend::DType::F32,
                device: "cpu".into(),
                synthetic: true,
                max_seq_len: 64,
                architecture: arch,
                kernels: "test double".into(),
                shards: Vec::new(),
                kv_cache_bytes: 500_000_000,
            },
        }
    }

    #[test]
    fn runner_drives_prefill_then_decode_with_warmup() {
        let mut m = double();
        let cfg = BenchConfig { prompt_tokens: vec![3, 4, 5], gen_tokens: 4, iterations: 3, warmup: 1 };
        let mut seen = vec![];
        let (samples, greedy) = run(&mut m, &cfg, |i, _, w| seen.push((i, w))).unwrap();
        assert_eq!(seen, vec![(0, true), (1, false), (2, false), (3, false)]);
        assert_eq!(samples.len(), 3);
        assert_eq!(greedy, vec![6, 7, 8, 9]);
        // Each iteration: reset, prefill of 3 at 0, then one token at positions 3, 4, 5.
        assert_eq!(&m.calls[..5], &[(0, 0), (3, 0), (1, 3), (1, 4), (1, 5)]);
        for s in &samples {
            assert_eq!(s.token_times_s.len(), 3);
            assert!(s.prefill_s >= 0.002 && s.first_token_s >= s.prefill_s);
            assert!(s.token_times_s.iter().all(|&t| t >= 0.002));
            assert!(s.total_s >= s.first_token_s + s.decode_s() - 1e-9);
        }
    }

    #[test]
    fn result_aggregates_and_round_trips_through_json() {
        let samples = vec![
            IterationSample { prefill_s: 0.5, first_token_s: 0.6, token_times_s: vec![0.1, 0.1], total_s: 0.8 },
            IterationSample { prefill_s: 0.25, first_token_s: 0.3, token_times_s: vec![0.2, 0.2], total_s: 0.7 },
        ];
        let m = double();
        let ctx = RunContext {
            framework: "test".into(),
            model_size: "x".into(),
            model: m.info(),
            device: DeviceInfo { framework: "t".into(), framework_version: "0".into(), device: "cpu".into(), threads: 1, cpu: "c".into() },
            load_time_s: 1.0,
            cold_first_token_s: Some(2.5),
            tokenize_time_s: 0.0,
            warmup: 0,
            quantize: None,
        };
        let trace = GreedyTrace { tokens: vec![1, 2, 3], margins: vec![0.5, 0.25, 1.0] };
        let r = BenchmarkResult::from_samples(ctx, 10, samples, trace);
        assert_eq!(r.iterations, 2);
        assert!((r.total_time - 1.5).abs() < 1e-12);
        assert!((r.first_token_time - 0.45).abs() < 1e-12);
        assert!((r.avg_token_time - 0.15).abs() < 1e-12);
        assert_eq!((r.min_token_time, r.max_token_time), (0.1, 0.2));
        assert!((r.avg_tokens_per_second - 7.5).abs() < 1e-9); // mean of 10 and 5
        assert!((r.peak_tokens_per_second - 10.0).abs() < 1e-9);
        assert!((r.prefill_tokens_per_second - 30.0).abs() < 1e-9); // mean of 20 and 40
        assert!((r.achieved_bandwidth_gbs - 7.5).abs() < 1e-9);
        assert!((r.model_memory_gb - 2.0).abs() < 1e-12);
        assert_eq!(r.generated_tokens, 3);
        // Weights and KV cache from the model's own figures: 10 prompt + 3 generated positions
        // of 64 used. This test process's peak is far below 2 GB, so the rest is floored at 0.
        assert_eq!((r.memory.weights_gb, r.memory.kv_cache_gb, r.memory.kv_cache_positions), (2.0, 0.5, 64));
        assert!((r.memory.kv_cache_used_gb - 0.5 * 13.0 / 64.0).abs() < 1e-12);
        assert_eq!(r.memory.rest_gb, (r.peak_memory_gb - 2.0 - r.memory.kv_cache_used_gb).max(0.0));
        let back = BenchmarkResult::from_json(&r.to_json()).unwrap();
        assert_eq!(back.greedy_tokens, r.greedy_tokens);
        assert_eq!(back.greedy_margins, vec![0.5, 0.25, 1.0]);
        assert_eq!(back.samples, r.samples);
        assert_eq!((back.cold_first_token_s, &back.memory), (Some(2.5), &r.memory));
        let err = BenchmarkResult::from_json(&r.to_json().replacen("\"schema_version\": 1", "\"schema_version\": 99", 1)).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    #[test]
    fn context_overflow_is_an_error() {
        let mut m = double();
        let cfg = BenchConfig { prompt_tokens: vec![1; 60], gen_tokens: 10, iterations: 1, warmup: 0 };
        let err = run(&mut m, &cfg, |_, _, _| {}).unwrap_err().to_string();
        assert!(err.contains("exceeds the context of 64"), "{err}");
    }
}
