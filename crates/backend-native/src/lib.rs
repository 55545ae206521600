//! llama3-bench's `native` framework: LLaMA 3 in pure Rust on candle, with no C++ runtime.
//!
//! Loads GGUF (quantized blocks kept as `QMatMul`, or dequantized to `--dtype`), Hugging Face
//! safetensors (single or sharded, memory-mapped), or seeded synthetic weights, and implements
//! bench-core's [`Backend`] / [`LanguageModel`] traits.

mod convert;
mod load;
pub mod model;
pub mod tuned;

use bench_backend::backend::{Backend, Device, DeviceInfo, LanguageModel, LoadSpec, Logits, ModelInfo};
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
    fn check_range(&self, tokens: &[u32], pos: usize) -> Result<()> {
        let (cached, max) = match &self.engine {
            Engine::Stock(m) => (m.layers.first().map(|l| l.cache.current_seq_len()).unwrap_or(0), m.max_seq_len),
            Engine::Tuned(m) => (m.cached, m.max_seq_len),
        };
        bench_backend::backend::check_forward_args(tokens, pos, cached, max, self.info.architecture.vocab_size)
    }

    fn run(&mut self, tokens: &[u32], pos: usize, all: bool) -> Result<Vec<Logits>> {
        self.check_range(tokens, pos)?;
        let logits = match &mut self.engine {
            Engine::Stock(m) => m.forward(tokens, pos, all),
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

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }
}
