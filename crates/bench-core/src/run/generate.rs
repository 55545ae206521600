//! Text generation, shared by every framework: prefill the prompt, then sample one token at a
//! time until a stop token, the token limit or the end of the context, streaming whole UTF-8
//! characters as they complete. Timings are taken here, the same way for every framework.

use std::time::Instant;

use serde::Serialize;

use crate::run::sampling::Sampler;
use crate::text::tokenizer::{TokenStream, Tokenizer};
use crate::{Error, Result};
use bench_backend::backend::LanguageModel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    StopToken,
    MaxTokens,
    ContextFull,
}

#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    pub text: String,
    pub stop_reason: StopReason,
    pub prefill_s: f64,
    /// Prefill + first sampled token.
    pub first_token_s: f64,
    /// Time of each generated token after the first (forward + sampling).
    pub token_times_s: Vec<f64>,
}

impl Generation {
    pub fn decode_tokens_per_s(&self) -> f64 {
        let t: f64 = self.token_times_s.iter().sum();
        if t > 0.0 {
            self.token_times_s.len() as f64 / t
        } else {
            0.0
        }
    }
    pub fn prefill_tokens_per_s(&self) -> f64 {
        if self.prefill_s > 0.0 {
            self.prompt_ids.len() as f64 / self.prefill_s
        } else {
            0.0
        }
    }
}

/// Generates after `prompt_ids` (the model's cache is reset first). `on_text` receives each
/// completed piece of text; the stop token itself is not part of the text.
pub fn generate(
    model: &mut dyn LanguageModel,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    sampler: &mut Sampler,
    max_tokens: usize,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    let context = model.info().max_seq_len;
    if prompt_ids.is_empty() {
        return Err(Error::InvalidInput("the prompt is empty".into()));
    }
    if prompt_ids.len() >= context {
        return Err(Error::InvalidInput(format!(
            "the prompt is {} tokens but the context holds {context}; shorten it or raise --max-seq-len (up to the model's context of {} tokens)",
            prompt_ids.len(),
            model.info().architecture.context_length
        )));
    }
    model.reset();
    let start = Instant::now();
    let logits = {
        let _span = tracing::info_span!("prefill", tokens = prompt_ids.len()).entered();
        model.forward(prompt_ids, 0)?
    };
    let prefill_s = start.elapsed().as_secs_f64();
    let mut token = {
        let _span = tracing::info_span!("sample").entered();
        sampler.sample(&logits)
    };
    let first_token_s = start.elapsed().as_secs_f64();

    let mut stream = TokenStream::new(tokenizer);
    let mut generated = Vec::new();
    let mut text = String::new();
    let mut token_times_s = Vec::new();
    let mut last = Instant::now();
    let stop_reason = loop {
        if tokenizer.is_stop(token) {
            break StopReason::StopToken;
        }
        generated.push(token);
        if let Some(piece) = stream.push(token)? {
            on_text(&piece);
            text.push_str(&piece);
        }
        if generated.len() >= max_tokens {
            break StopReason::MaxTokens;
        }
        let pos = prompt_ids.len() + generated.len() - 1;
        if pos + 1 >= context {
            break StopReason::ContextFull;
        }
        let logits = {
            let _span = tracing::info_span!("decode_token", pos).entered();
            model.forward(&[token], pos)?
        };
        token = {
            let _span = tracing::info_span!("sample").entered();
            sampler.sample(&logits)
        };
        let now = Instant::now();
        token_times_s.push((now - last).as_secs_f64());
        last = now;
    };
    if let Some(piece) = stream.finish()? {
        on_text(&piece);
        text.push_str(&piece);
    }
    Ok(Generation { prompt_ids: prompt_ids.to_vec(), generated_ids: generated, text, stop_reason, prefill_s, first_token_s, token_times_s })
}
