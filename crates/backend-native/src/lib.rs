//! llama3-bench's `native` framework: LLaMA 3 in pure Rust on candle, with no C++ runtime.
//!
//! Loads GGUF (quantized blocks kept as `QMatMul`, or dequantized to `--dtype`), Hugging Face
//! safetensors (single or sharded, memory-mapped), or seeded synthetic weights, and implements
//! bench-core's [`Backend`] / [`LanguageModel`] traits.

mod convert;
mod load;
pub mod model;
pub mod tuned;

use bench_backend::backend::{Backend, Device, DeviceInfo, LanguageModel, LoadSpec, Logits, ModelInfo, SeqStep};
use bench_backend::{Error, Result};

pub use load::load_model;

/// The candle framework.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeBackend;

pub const CANDLE_VERSION: &str = "0.11.1";

impl Backend for NativeBackend {
    fn name(&self) -> &'static str {
        "native"
    }

    fn device_info(&self, device: Device) -> DeviceInfo {
        DeviceInfo {
            framework: "native (candle)".into(),
            framework_version: format!("candle {CANDLE_VERSION}"),
            device: device.to_string(),
            threads: candle_core::utils::get_num_threads(),
            cpu: bench_backend::backend::cpu_model(),
        }
    }

    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn LanguageModel>> {
        Ok(Box::new(load_model(spec)?))
    }

    fn keeps_gguf_blocks(&self) -> bool {
        true
    }
}

/// Which forward pass a loaded model runs (`--kernels`).
pub enum Engine {
    /// candle's own ops (`model.rs`).
    Stock(model::Llama),
    /// The same model on this project's CPU kernels (`tuned.rs`).
    Tuned(tuned::TunedLlama),
}

/// A loaded candle model.
pub struct NativeModel {
    pub(crate) engine: Engine,
    pub(crate) info: ModelInfo,
}

pub(crate) fn candle_err(e: candle_core::Error) -> Error {
    Error::Backend(format!("candle: {e}"))
}

impl NativeModel {
    /// Positions held by each slot's cache, and the cache length.
    fn cached(&self) -> (Vec<usize>, usize) {
        match &self.engine {
            Engine::Stock(m) => (m.cached(), m.max_seq_len),
            Engine::Tuned(m) => (m.cached.clone(), m.max_seq_len),
        }
    }

    fn run(&mut self, tokens: &[u32], pos: usize, all: bool) -> Result<Vec<Logits>> {
        let (cached, max) = self.cached();
        bench_backend::backend::check_forward_args(tokens, pos, cached.first().copied().unwrap_or(0), max, self.info.architecture.vocab_size)?;
        let logits = match &mut self.engine {
            Engine::Stock(m) => m.forward(tokens, pos, all, 0),
            Engine::Tuned(m) => m.forward(tokens, pos, all),
        };
        model::rows(&logits.map_err(candle_err)?).map_err(candle_err)
    }
}

impl LanguageModel for NativeModel {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Logits> {
        Ok(self.run(tokens, pos, false)?.pop().unwrap_or_default())
    }

    fn forward_all(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<Logits>> {
        self.run(tokens, pos, true)
    }

    fn reset(&mut self) {
        match &mut self.engine {
            Engine::Stock(m) => m.reset(),
            Engine::Tuned(m) => m.reset(),
        }
    }

    fn slots(&self) -> usize {
        self.cached().0.len()
    }

    /// Tuned: one pass with every sequence's tokens stacked (one weight read per step). Stock:
    /// the sequences one after the other through candle's ops (said in the model's kernels).
    fn forward_batch(&mut self, seqs: &[SeqStep]) -> Result<Vec<Logits>> {
        let (cached, max) = self.cached();
        bench_backend::backend::check_batch_args(seqs, &cached, max, self.info.architecture.vocab_size)?;
        match &mut self.engine {
            Engine::Tuned(m) => model::rows(&m.forward_batch(seqs, false).map_err(candle_err)?).map_err(candle_err),
            Engine::Stock(m) => seqs
                .iter()
                .map(|s| {
                    let logits = m.forward(s.tokens, s.pos, false, s.slot).map_err(candle_err)?;
                    Ok(model::rows(&logits).map_err(candle_err)?.pop().unwrap_or_default())
                })
                .collect(),
        }
    }

    fn reset_slot(&mut self, slot: usize) {
        match &mut self.engine {
            Engine::Stock(m) => m.reset_slot(slot),
            Engine::Tuned(m) => m.reset_slot(slot),
        }
    }

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }
}
