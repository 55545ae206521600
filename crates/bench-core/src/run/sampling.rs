//! Next-token sampling, shared by every framework: greedy at temperature 0, else temperature,
//! top-k and top-p (nucleus) on a seeded RNG, so a given seed reproduces the same tokens.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingConfig {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub seed: u64,
}

impl SamplingConfig {
    /// Checks every setting is one a sampler can use: temperature 0 (greedy) or positive and
    /// finite, top-p in (0, 1]. The message names the command-line option.
    pub fn validate(&self) -> Result<()> {
        if self.temperature < 0.0 || !self.temperature.is_finite() {
            return Err(Error::InvalidInput(format!("--temperature must be 0 (greedy) or positive, got {}", self.temperature)));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::InvalidInput(format!("--top-p must be in (0, 1], got {p}")));
            }
        }
        Ok(())
    }

    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: None, top_p: None, seed: 0 }
    }
}

pub struct Sampler {
    config: SamplingConfig,
    rng: StdRng,
}

impl Sampler {
    pub fn new(config: SamplingConfig) -> Self {
        Self { rng: StdRng::seed_from_u64(config.seed), config }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let c = self.config;
        if c.temperature <= 0.0 || c.top_k == Some(1) {
            return argmax(logits);
        }
        // Candidates ordered by logit, best first; top-k trims before sorting the rest.
        let mut idx: Vec<u32> = (0..logits.len() as u32).filter(|&i| !logits[i as usize].is_nan()).collect();
        if idx.is_empty() {
            return 0;
        }
        let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
        if let Some(k) = c.top_k.filter(|&k| k > 0 && k < idx.len()) {
            idx.select_nth_unstable_by(k - 1, by_logit);
            idx.truncate(k);
        }
        idx.sort_unstable_by(by_logit);
        let max = logits[idx[0] as usize];
        let mut probs: Vec<f32> = idx.iter().map(|&i| ((logits[i as usize] - max) / c.temperature).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if let Some(p) = c.top_p.filter(|&p| p > 0.0 && p < 1.0) {
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (i, &q) in probs.iter().enumerate() {
                cum += q;
                if cum >= p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, &q) in probs.iter().enumerate() {
            if r < q {
                return idx[i];
            }
            r -= q;
        }
        idx.last().copied().unwrap_or(0)
    }
}

/// Index of the largest logit (the first one on ties; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

/// The best logit's index and its margin over the runner-up (one pass, as cheap as argmax).
pub fn argmax_with_margin(logits: &[f32]) -> (u32, f32) {
    let (mut best, mut best_v, mut second_v) = (0usize, f32::NEG_INFINITY, f32::NEG_INFINITY);
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            second_v = best_v;
            best = i;
            best_v = v;
        } else if v > second_v {
            second_v = v;
        }
    }
    (best as u32, best_v - second_v)
}

/// The `k` highest logits' indices, best first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_unstable_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
    idx.truncate(k);
    idx
}

/// log-softmax in f64, for KL divergences and perplexity.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = logits.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|&v| v as f64 - lse).collect()
}

/// KL(p || q) in nats between the softmax distributions of two logit vectors (`p` the reference).
pub fn kl_divergence(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    let (lp, lq) = (log_softmax(p_logits), log_softmax(q_logits));
    lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum::<f64>().max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(SamplingConfig::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, 2.0, f32::NAN]), 1);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_respects_top_k() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let cfg = SamplingConfig { temperature: 1.0, top_k: Some(5), top_p: None, seed: 42 };
        let a: Vec<u32> = {
            let mut s = Sampler::new(cfg);
            (0..50).map(|_| s.sample(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(cfg);
            (0..50).map(|_| s.sample(&logits)).collect()
        };
        assert_eq!(a, b);
        let allowed = top_k(&logits, 5);
        assert!(a.iter().all(|t| allowed.contains(t)));
        assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 1, "sampling should vary");
    }

    #[test]
    fn top_p_keeps_the_nucleus_only() {
        // Probabilities ~ [0.64, 0.24, 0.09, 0.03]: top_p 0.8 keeps the first two.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut s = Sampler::new(SamplingConfig { temperature: 1.0, top_k: None, top_p: Some(0.8), seed: 1 });
        let seen: std::collections::HashSet<u32> = (0..400).map(|_| s.sample(&logits)).collect();
        assert_eq!(seen, [0u32, 1].into_iter().collect());
    }

    #[test]
    fn margin_is_best_minus_second() {
        assert_eq!(argmax_with_margin(&[1.0, 4.0, 2.5, 3.0]), (1, 1.0));
        assert_eq!(argmax_with_margin(&[5.0, 1.0]), (0, 4.0));
    }

    #[test]
    fn kl_of_hand_computed_distributions() {
        // p = softmax([0, ln 3]) = (0.25, 0.75), q = (0.5, 0.5):
        // KL = 0.25 ln(0.5) + 0.75 ln(1.5) = 0.1308120...
        let kl = kl_divergence(&[0.0, 3f32.ln()], &[1.0, 1.0]);
        assert!((kl - 0.130_812_035).abs() < 1e-6, "{kl}");
        assert_eq!(kl_divergence(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn log_softmax_normalises() {
        let l = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f64 = l.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert!((l[2] - (-0.40760596444437)).abs() < 1e-9);
    }
}
