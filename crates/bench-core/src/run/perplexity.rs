//! Perplexity of a model over a text: the text is tokenized once and cut into windows of the
//! context length; each window starts from an empty KV cache and every position predicts the
//! next token. perplexity = exp(mean negative log-likelihood over all predicted tokens).

use serde::{Deserialize, Serialize};

use crate::run::sampling::log_softmax;
use crate::{Error, Result};
use bench_backend::backend::{LanguageModel, Quantize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Perplexity {
    pub perplexity: f64,
    pub mean_nll: f64,
    /// Tokens predicted (each window's first token is context only).
    pub tokens_scored: usize,
    pub windows: usize,
    pub window_len: usize,
}

/// A perplexity run as the command line reports it (`--perplexity FILE --json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PerplexityReport {
    /// The framework's name.
    pub framework: String,
    /// The model's label (registry name or file name).
    pub model: String,
    /// How the weights were held.
    pub weights: String,
    /// Bytes of weights held.
    pub weight_bytes: u64,
    /// Load-time quantization, if any.
    pub quantize: Option<Quantize>,
    /// The text file scored.
    pub text: String,
    /// The measurement.
    #[serde(flatten)]
    pub result: Perplexity,
    /// Wall time of the scoring.
    pub seconds: f64,
}

/// `on_window(done, total)` reports progress.
pub fn perplexity(model: &mut dyn LanguageModel, tokens: &[u32], window_len: usize, mut on_window: impl FnMut(usize, usize)) -> Result<Perplexity> {
    if tokens.len() < 2 {
        return Err(Error::InvalidInput("perplexity needs a text of at least 2 tokens".into()));
    }
    let window_len = window_len.min(model.info().max_seq_len).max(2);
    let windows: Vec<&[u32]> = tokens.chunks(window_len).filter(|w| w.len() >= 2).collect();
    let (mut nll, mut scored) = (0.0f64, 0usize);
    for (i, w) in windows.iter().enumerate() {
        model.reset();
        let logits = model.forward_all(w, 0)?;
        for (pos, row) in logits.iter().enumerate().take(w.len() - 1) {
            nll -= log_softmax(row)[w[pos + 1] as usize];
            scored += 1;
        }
        on_window(i + 1, windows.len());
    }
    let mean_nll = nll / scored as f64;
    Ok(Perplexity { perplexity: mean_nll.exp(), mean_nll, tokens_scored: scored, windows: windows.len(), window_len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench_backend::backend::{Logits, ModelInfo};
    use bench_hub::registry::Registry;

    /// A test double that gives the true next token probability p and spreads 1-p uniformly.
    struct Oracle {
        text: Vec<u32>,
        vocab: usize,
        p: f64,
        offset: usize,
    }
    impl LanguageModel for Oracle {
        fn forward(&mut self, _: &[u32], _: usize) -> bench_backend::Result<Logits> {
            unreachable!()
        }
        fn forward_all(&mut self, tokens: &[u32], _: usize) -> bench_backend::Result<Vec<Logits>> {
            let rows = (0..tokens.len())
                .map(|i| {
                    let next = self.text.get(self.offset + i + 1).copied().unwrap_or(0) as usize;
                    let other = ((1.0 - self.p) / (self.vocab - 1) as f64).ln() as f32;
                    let mut l = vec![other; self.vocab];
                    l[next] = self.p.ln() as f32;
                    l
                })
                .collect();
            self.offset += tokens.len();
            Ok(rows)
        }
        fn reset(&mut self) {}
        fn info(&self) -> ModelInfo {
            ModelInfo {
                name: "oracle".into(),
                parameters: 0,
                weight_bytes: 0,
                weight_bytes_per_token: 0,
                weights: "".into(),
                compute_dtype: bench_backend::backend::DType::F32,
                device: "cpu".into(),
                synthetic: true,
                max_seq_len: 4,
                architecture: Registry::load().unwrap().model("smollm2-135m").unwrap().architecture.clone(),
                kernels: "oracle".into(),
                shards: Vec::new(),
                kv_cache_bytes: 0,
            }
        }
    }

    #[test]
    fn perplexity_of_a_model_that_gives_the_truth_probability_half_is_two() {
        let text: Vec<u32> = (0..10).map(|i| (i * 3 % 7) as u32).collect();
        let mut m = Oracle { text: text.clone(), vocab: 8, p: 0.5, offset: 0 };
        // Windows of 4 (the context): [0..4], [4..8], [8..10] -> 3 + 3 + 1 predicted tokens.
        let r = perplexity(&mut m, &text, 16, |_, _| {}).unwrap();
        assert_eq!((r.windows, r.window_len, r.tokens_scored), (3, 4, 7));
        assert!((r.perplexity - 2.0).abs() < 1e-5, "{}", r.perplexity);
    }
}
