//! The interface every framework implements, and the types it exchanges.
//!
//! It is deliberately small: a backend loads weights and runs `forward`. Tokenization, sampling,
//! stopping and all timing happen in bench-core, so every framework is driven by the same loop.

use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use crate::arch::Architecture;
pub use crate::options::{DType, Device, Kernels, Quantize};
use crate::Result;

/// Logits over the vocabulary for one position.
pub type Logits = Vec<f32>;

/// A model's weight files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightFormat {
    /// One GGUF file.
    Gguf(PathBuf),
    /// Hugging Face safetensors: one file or the shards of a `model.safetensors.index.json`, and
    /// the `config.json` next to them.
    Safetensors {
        /// The `.safetensors` files, sorted.
        shards: Vec<PathBuf>,
        /// The checkpoint's `config.json`.
        config: PathBuf,
    },
}

/// Where the weights come from.
#[derive(Debug, Clone)]
pub enum WeightSource {
    /// Weight files on disk.
    Files(WeightFormat),
    /// Seeded random weights of a given shape: for speed work only, always labelled synthetic.
    Synthetic { arch: Architecture, seed: u64 },
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub source: WeightSource,
    /// `None`: keep the file's own storage (GGUF blocks stay quantized); `Some`: convert every
    /// weight to this dtype and compute in it.
    pub dtype: Option<DType>,
    pub quantize: Option<Quantize>,
    /// Where to run.
    pub device: Device,
    /// Longest sequence the KV cache must hold; `None` = the model's context, capped at 4096.
    pub max_seq_len: Option<usize>,
    /// CPU threads for the framework's kernels; `None` = the framework's default.
    pub threads: Option<usize>,
    /// Tuned or stock CPU kernels (frameworks without a choice ignore it).
    pub kernels: Kernels,
    /// `--shard N`: the layers split into N contiguous ranges, each on its own device
    /// ([`LoadSpec::shard_devices`]); 1 = the whole model on `device`.
    pub shard: usize,
    /// KV-cache slots: sequences the model can hold at once for [`LanguageModel::forward_batch`]
    /// (the server's `--parallel`); 1 for the command line. A slot's cache memory is taken when
    /// the slot is first used.
    pub slots: usize,
}

/// Test-only override of the devices `--shard N` puts its shards on, comma-separated (e.g.
/// `cpu,cpu`): lets the sharded code path run on a machine with fewer GPUs than shards, or none.
pub const SHARD_DEVICES_ENV: &str = "LLAMA3_BENCH_SHARD_DEVICES";

/// One shard of a model split with `--shard N`: a contiguous range of layers on one device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardInfo {
    pub device: String,
    /// First layer and one past the last.
    pub layers: [usize; 2],
    /// Weight bytes held on this device: its layers, plus the embedding on the first shard and
    /// the output norm and head on the last.
    pub weight_bytes: u64,
}

/// `layers` split into `n` contiguous ranges whose sizes differ by at most one (the first
/// `layers % n` ranges take the extra layer).
pub fn shard_ranges(layers: usize, n: usize) -> Vec<std::ops::Range<usize>> {
    let n = n.max(1);
    let (base, extra) = (layers / n, layers % n);
    let mut start = 0;
    (0..n)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

impl LoadSpec {
    pub fn is_synthetic(&self) -> bool {
        matches!(self.source, WeightSource::Synthetic { .. })
    }

    /// The device of each shard: `--shard 1` runs on `device`; `--shard N` puts shard i on
    /// `cuda:i` (the one-process multi-GPU split), unless [`SHARD_DEVICES_ENV`] names the
    /// devices (tests). `layers` = the model's layer count (a shard needs at least one).
    pub fn shard_devices(&self, layers: usize) -> Result<Vec<Device>> {
        use crate::Error;
        let n = self.shard;
        if n == 0 {
            return Err(Error::InvalidInput("--shard must be at least 1".into()));
        }
        if n > layers {
            return Err(Error::InvalidInput(format!("--shard {n}: the model has only {layers} layers; use --shard {layers} or fewer")));
        }
        if n == 1 {
            return Ok(vec![self.device]);
        }
        if let Some(list) = std::env::var(SHARD_DEVICES_ENV).ok().filter(|l| !l.trim().is_empty()) {
            let devices = list.split(',').map(|d| d.trim().parse()).collect::<Result<Vec<Device>>>()?;
            if devices.len() != n {
                return Err(Error::InvalidInput(format!("{SHARD_DEVICES_ENV}={list} names {} devices for --shard {n}", devices.len())));
            }
            return Ok(devices);
        }
        match self.device {
            Device::Cuda(0) => Ok((0..n).map(Device::Cuda).collect()),
            other => Err(Error::InvalidInput(format!(
                "--shard {n} puts the layers on cuda:0..cuda:{} (one process, N GPUs); pass --device cuda, not {other}",
                n - 1
            ))),
        }
    }

    /// KV-cache length for a model config.
    pub fn cache_len(&self, context_length: usize) -> usize {
        self.max_seq_len.unwrap_or(4096).min(context_length).max(1)
    }

    /// The float dtype weights are held and computed in, from `--dtype` and `--quantize`:
    /// `None` keeps the file's own storage. float16 means f16 everywhere; int8 and nf4 quantize
    /// the layer matrices and keep the rest (and the compute) in `--dtype`, f32 by default.
    pub fn float_dtype(&self) -> crate::Result<Option<DType>> {
        match self.quantize {
            None => Ok(self.dtype),
            Some(Quantize::Float16) => match self.dtype {
                None | Some(DType::F16) => Ok(Some(DType::F16)),
                Some(other) => Err(crate::Error::InvalidInput(format!("--quantize float16 conflicts with --dtype {}; pass one of them", other.as_str()))),
            },
            Some(Quantize::Int8 | Quantize::Nf4) => Ok(Some(self.dtype.unwrap_or(DType::F32))),
        }
    }
}

/// The checks every `LanguageModel::forward` makes before running: tokens present, inside the
/// vocabulary, at the position the cache is at, and within the cache.
pub fn check_forward_args(tokens: &[u32], pos: usize, cached: usize, max_seq_len: usize, vocab: usize) -> crate::Result<()> {
    use crate::Error;
    if tokens.is_empty() {
        return Err(Error::InvalidInput("forward called with no tokens".into()));
    }
    if pos + tokens.len() > max_seq_len {
        return Err(Error::InvalidInput(format!("{} tokens at position {pos} exceed the context of {max_seq_len} tokens", tokens.len())));
    }
    if pos != cached {
        return Err(Error::InvalidInput(format!("forward at position {pos}, but the cache holds {cached} tokens")));
    }
    if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::InvalidInput(format!("token id {bad} is outside the vocabulary of {vocab}")));
    }
    Ok(())
}

/// One sequence's part of a [`LanguageModel::forward_batch`] step: `tokens` (a prompt chunk or
/// one decode token) at positions `pos..pos + tokens.len()` of KV-cache slot `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqStep<'a> {
    /// The KV-cache slot, `0..slots`.
    pub slot: usize,
    /// Position of `tokens[0]`: the number of tokens the slot holds.
    pub pos: usize,
    /// The tokens to run (at least one).
    pub tokens: &'a [u32],
}

/// The checks every [`LanguageModel::forward_batch`] makes before running: at least one
/// sequence, each slot in range and named once, and for each sequence what
/// [`check_forward_args`] checks against its own slot (`cached[slot]` positions held).
pub fn check_batch_args(seqs: &[SeqStep], cached: &[usize], max_seq_len: usize, vocab: usize) -> crate::Result<()> {
    use crate::Error;
    if seqs.is_empty() {
        return Err(Error::InvalidInput("forward_batch called with no sequences".into()));
    }
    let slots = cached.len();
    for (i, s) in seqs.iter().enumerate() {
        if s.slot >= slots {
            return Err(Error::InvalidInput(format!(
                "KV-cache slot {} does not exist: the model was loaded with {slots} slot(s) (0..{slots}); load it with more slots (--parallel)",
                s.slot
            )));
        }
        if seqs[..i].iter().any(|o| o.slot == s.slot) {
            return Err(Error::InvalidInput(format!("KV-cache slot {} is named twice in one forward_batch step", s.slot)));
        }
        check_forward_args(s.tokens, s.pos, cached[s.slot], max_seq_len, vocab).map_err(|e| Error::InvalidInput(format!("slot {}: {e}", s.slot)))?;
    }
    Ok(())
}

/// What a framework runs on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceInfo {
    pub framework: String,
    pub framework_version: String,
    /// "cpu" or a GPU name.
    pub device: String,
    pub threads: usize,
    pub cpu: String,
}

/// What was loaded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub parameters: u64,
    /// Bytes of weights as held in memory by the framework.
    pub weight_bytes: u64,
    /// Bytes of weights read to decode one token (all matrices; the embedding contributes one row).
    pub weight_bytes_per_token: u64,
    /// e.g. "f32", "bf16", "gguf q4_1 (+q8_0 embedding)".
    pub weights: String,
    /// The dtype of the activations and the arithmetic (weights may be stored in another form:
    /// see `weights`).
    pub compute_dtype: DType,
    pub device: String,
    pub synthetic: bool,
    pub max_seq_len: usize,
    pub architecture: Architecture,
    /// The kernels that ran, e.g. "tuned (avx512-vnni (256-bit))", "stock (candle 0.11.1)",
    /// "libtorch". Empty in results written before it existed.
    #[serde(default)]
    pub kernels: String,
    /// With `--shard N` (N > 1): each shard's device, layers and weight bytes; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardInfo>,
    /// Bytes of the KV cache allocated for the context (`max_seq_len` positions in every slot,
    /// in the cache's own dtype); 0 in results written before it existed.
    #[serde(default)]
    pub kv_cache_bytes: u64,
}

/// One framework.
pub trait Backend {
    /// "native", "torch".
    fn name(&self) -> &'static str;
    fn device_info(&self, device: Device) -> DeviceInfo;
    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn LanguageModel>>;
    /// Whether GGUF blocks are kept as they are when no dtype is asked for (ggml kernels), rather
    /// than dequantized to f32 at load: what the memory check before loading counts.
    fn keeps_gguf_blocks(&self) -> bool {
        false
    }
    /// Refuses a weight source this framework cannot load at all (a format it does not read),
    /// before anything is read or validated, so the user hears that first.
    fn check_source(&self, _spec: &LoadSpec) -> Result<()> {
        Ok(())
    }
}

/// A loaded model with its KV cache.
pub trait LanguageModel {
    /// Runs `tokens` at cache positions `pos..pos + tokens.len()` and returns the logits of the
    /// last position. Positions before `pos` must have been run since the last `reset`.
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Logits>;

    /// Logits of every position of `tokens` (for parity and perplexity). The default runs one token
    /// at a time through the KV cache; backends may override it with a single batched pass.
    fn forward_all(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<Logits>> {
        tokens.iter().enumerate().map(|(i, &t)| self.forward(&[t], pos + i)).collect()
    }

    /// Empties the KV cache (every slot).
    fn reset(&mut self);

    fn info(&self) -> ModelInfo;

    /// KV-cache slots this model holds ([`LoadSpec::slots`]): how many sequences
    /// [`LanguageModel::forward_batch`] can keep at once.
    fn slots(&self) -> usize {
        1
    }

    /// One step over several sequences, each in its own KV-cache slot: every sequence's tokens
    /// run at its own positions (weights read once for all of them, in the backends that batch),
    /// and the logits of each sequence's last token come back in the order of `seqs`. Slot 0 is
    /// the cache [`LanguageModel::forward`] uses.
    ///
    /// The default serves a model with one slot: one sequence in slot 0, through `forward`.
    fn forward_batch(&mut self, seqs: &[SeqStep]) -> Result<Vec<Logits>> {
        match seqs {
            [one] if one.slot == 0 => Ok(vec![self.forward(one.tokens, one.pos)?]),
            _ => Err(crate::Error::InvalidInput(format!(
                "this model has one KV-cache slot, so it runs one sequence at a time ({} asked, slots {:?})",
                seqs.len(),
                seqs.iter().map(|s| s.slot).collect::<Vec<_>>()
            ))),
        }
    }

    /// Empties one slot's KV cache (the others keep theirs).
    fn reset_slot(&mut self, slot: usize) {
        if slot == 0 {
            self.reset();
        }
    }
}

/// The CPU's model name (Linux `/proc/cpuinfo`), for reports.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ranges_are_contiguous_balanced_and_cover_every_layer() {
        assert_eq!(shard_ranges(30, 1), vec![0..30]);
        assert_eq!(shard_ranges(30, 3), vec![0..10, 10..20, 20..30]);
        assert_eq!(shard_ranges(32, 3), vec![0..11, 11..22, 22..32]);
        assert_eq!(shard_ranges(16, 5), vec![0..4, 4..7, 7..10, 10..13, 13..16]);
        for (layers, n) in [(1, 1), (7, 7), (80, 8), (126, 4)] {
            let r = shard_ranges(layers, n);
            assert_eq!((r.len(), r[0].start, r[n - 1].end), (n, 0, layers));
            assert!(r.windows(2).all(|w| w[0].end == w[1].start && w[0].len() >= w[1].len() && w[0].len() - w[1].len() <= 1));
        }
    }

    /// One test for everything that reads the environment variable (tests run in parallel).
    #[test]
    fn shard_devices_are_cuda_0_to_n_or_the_test_override() {
        let spec = |device, shard| LoadSpec {
            source: WeightSource::Files(WeightFormat::Gguf(PathBuf::from("m.gguf"))),
            dtype: None,
            quantize: None,
            device,
            max_seq_len: None,
            threads: None,
            kernels: Kernels::Tuned,
            shard,
            slots: 1,
        };
        std::env::remove_var(SHARD_DEVICES_ENV);
        assert_eq!(spec(Device::Cpu, 1).shard_devices(30).unwrap(), vec![Device::Cpu]);
        assert_eq!(spec(Device::Cuda(3), 1).shard_devices(30).unwrap(), vec![Device::Cuda(3)]);
        assert_eq!(spec(Device::Cuda(0), 3).shard_devices(30).unwrap(), vec![Device::Cuda(0), Device::Cuda(1), Device::Cuda(2)]);
        let err = |s: LoadSpec, layers| s.shard_devices(layers).unwrap_err().to_string();
        assert!(err(spec(Device::Cpu, 2), 30).contains("pass --device cuda"));
        assert!(err(spec(Device::Cuda(1), 2), 30).contains("cuda:0..cuda:1"));
        assert!(err(spec(Device::Cuda(0), 0), 30).contains("at least 1"));
        assert!(err(spec(Device::Cuda(0), 31), 30).contains("only 30 layers"));
        std::env::set_var(SHARD_DEVICES_ENV, " ");
        assert!(err(spec(Device::Cpu, 2), 30).contains("pass --device cuda"), "empty = unset");
        std::env::set_var(SHARD_DEVICES_ENV, "cpu, cpu");
        assert_eq!(spec(Device::Cpu, 2).shard_devices(30).unwrap(), vec![Device::Cpu, Device::Cpu]);
        assert!(err(spec(Device::Cpu, 3), 30).contains("names 2 devices"));
        std::env::set_var(SHARD_DEVICES_ENV, "cpu,gpu");
        assert!(err(spec(Device::Cpu, 2), 30).contains("device 'gpu'"));
        std::env::remove_var(SHARD_DEVICES_ENV);
    }
}
