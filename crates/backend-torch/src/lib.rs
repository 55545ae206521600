//! llama3-bench's `torch` framework: a LLaMA 3 written from scratch with libtorch ops through
//! `tch`, independent of the native (candle) framework. It reads model files through bench-core
//! only (GGUF reader, safetensors via the `safetensors` crate) and never depends on candle.

pub mod decode_ops;
mod dequant;
mod load;
pub mod model;
pub mod weight_only;

use std::panic::{catch_unwind, AssertUnwindSafe};

use bench_backend::backend::{Backend, Device, DeviceInfo, LanguageModel, LoadSpec, Logits, ModelInfo, SeqStep};
use bench_backend::{Error, Result};

pub use dequant::dequantize;

pub const LIBTORCH_VERSION: &str = "2.11.0";

#[derive(Debug, Default, Clone, Copy)]
pub struct TorchBackend;

/// Runs libtorch code, turning a C++ exception (which tch raises as a panic) into an error.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        let first = msg.lines().next().unwrap_or("unknown error").to_string();
        Err(Error::Backend(format!("libtorch failed while {what}: {first}")))
    })
}

impl Backend for TorchBackend {
    fn name(&self) -> &'static str {
        "torch"
    }

    fn device_info(&self, device: Device) -> DeviceInfo {
        DeviceInfo {
            framework: "torch (libtorch via tch)".into(),
            framework_version: format!("libtorch {LIBTORCH_VERSION}, tch 0.24.0"),
            device: device.to_string(),
            threads: tch::get_num_threads().max(1) as usize,
            cpu: bench_backend::backend::cpu_model(),
        }
    }

    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn LanguageModel>> {
        Ok(Box::new(load::load_model(spec)?))
    }
}

pub struct TorchModel {
    pub(crate) model: model::TorchLlama,
    pub(crate) info: ModelInfo,
    /// Tokens in each KV-cache slot since its last reset (slot 0: the command line's).
    pub(crate) cached: Vec<usize>,
}

impl TorchModel {
    /// One step over `seqs` (checked here), the logits of each sequence's last token, or with
    /// `all` of every token.
    fn run(&mut self, seqs: &[SeqStep], all: bool) -> Result<Vec<Logits>> {
        bench_backend::backend::check_batch_args(seqs, &self.cached, self.model.max_seq_len, self.info.architecture.vocab_size)?;
        let model = &mut self.model;
        let rows = guarded("running the model", || {
            let logits = tch::no_grad(|| model.forward_batch(seqs, all));
            Vec::<Vec<f32>>::try_from(&logits).map_err(|e| Error::Backend(format!("reading logits: {e}")))
        })?;
        for s in seqs {
            self.cached[s.slot] = s.pos + s.tokens.len();
        }
        Ok(rows)
    }
}

impl LanguageModel for TorchModel {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Logits> {
        Ok(self.run(&[SeqStep { slot: 0, pos, tokens }], false)?.pop().unwrap_or_default())
    }

    fn forward_all(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<Logits>> {
        self.run(&[SeqStep { slot: 0, pos, tokens }], true)
    }

    fn reset(&mut self) {
        self.reset_slot(0);
    }

    fn slots(&self) -> usize {
        self.cached.len()
    }

    /// Every sequence's tokens stacked into one block: each weight matrix read once per step,
    /// rotation, cache write and attention per sequence in its own slot.
    fn forward_batch(&mut self, seqs: &[SeqStep]) -> Result<Vec<Logits>> {
        self.run(seqs, false)
    }

    fn reset_slot(&mut self, slot: usize) {
        // Positions are always written before they are read: nothing to clear in the cache.
        if let Some(c) = self.cached.get_mut(slot) {
            *c = 0;
        }
    }

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }
}
