//! The LLaMA 3 forward pass on candle: RMSNorm, grouped-query attention with RoPE (Llama 3
//! frequency scaling comes precomputed from bench-core's `ModelConfig`), SwiGLU, tied or separate
//! output head. Maths: Meta's reference `llama/model.py` (Llama 3).
//!
//! Owned here rather than taken from candle-transformers because its `llama` / `quantized_llama`
//! grow the KV cache with `Tensor::cat` on every token and copy K/V per query head (`repeat_kv`);
//! this version writes into a preallocated cache in place (`candle_nn::kv_cache::KvCache`), and
//! runs grouped-query attention by folding the query heads that share a KV head into one matrix
//! product, so K and V are never copied. Norms, softmax and RoPE tables stay in f32.
//!
//! Devices: candle's own ops run on the CPU or on CUDA alike. With `--shard N` each layer (and
//! its cache) lives on its shard's device and the activations move with `to_device` where one
//! shard hands over to the next.

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::kv_cache::KvCache;

use bench_backend::config::{ModelConfig, RopeLayout};
use bench_backend::gguf::GgmlType;

/// GGUF blocks of a type candle 0.11.1 cannot hold (IQ4_NL, IQ4_XS) kept as the file stores them,
/// for the tuned kernels, which multiply them on their blocks. The stock path never sees them:
/// [`crate::load`] converts them before handing a model to it.
pub struct RawBlocks {
    pub ggml_type: GgmlType,
    /// `(rows, cols)`: output and input features (ggml's `ne[1]`, `ne[0]`).
    pub rows: usize,
    pub cols: usize,
    pub bytes: Vec<u8>,
    /// The tensor's name in the file, for errors.
    pub name: String,
}

/// A weight matrix `(out, in)`: ggml blocks kept quantized, a dense tensor, or bench-core's
/// int8 / NF4 formats, which stay quantized in memory and are expanded to the compute dtype
/// inside each product (candle has no int8 or NF4 matmul).
pub enum Weight {
    Quantized(QMatMul),
    /// Blocks candle cannot hold, kept for the tuned path (see [`RawBlocks`]).
    Raw(RawBlocks),
    /// GGUF blocks already in the tuned kernels' form, copied once from the file when the model
    /// is loaded for the tuned path (`crate::load`); the stock path never sees them.
    Tuned(std::sync::Arc<cpu_kernels::Matrix>),
    Dense(Tensor),
    /// Codes stored as `u8` = q + 128 (candle has no i8); `scales` is `(out, 1)`.
    Int8 {
        q: Tensor,
        scales: Tensor,
    },
    /// `packed` `(out, in/2)` u8, high nibble first; `absmax` `(out, in/64, 1)`; `codebook` (16).
    Nf4 {
        packed: Tensor,
        absmax: Tensor,
        codebook: Tensor,
    },
}

impl Weight {
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dense = |w: &Tensor| -> candle_core::Result<Tensor> {
            let (b, t, k) = x.dims3()?;
            x.reshape((b * t, k))?.matmul(&w.t()?)?.reshape((b, t, ()))
        };
        match self {
            Weight::Quantized(q) => q.forward(x),
            Weight::Raw(r) => candle_core::bail!("{}: {} blocks reached the stock path unconverted", r.name, r.ggml_type),
            Weight::Tuned(m) => candle_core::bail!("a {} matrix loaded for the tuned kernels reached the stock path", m.ty().label()),
            Weight::Dense(w) => dense(w),
            Weight::Int8 { q, scales } => {
                let w = (q.to_dtype(DType::F32)? - 128.0)?.broadcast_mul(scales)?;
                dense(&w.to_dtype(x.dtype())?)
            }
            Weight::Nf4 { packed, absmax, codebook } => {
                let (rows, half) = packed.dims2()?;
                let p = packed.to_dtype(DType::F32)?;
                let hi = (&p / 16.0)?.floor()?;
                let lo = (p - (&hi * 16.0)?)?;
                let idx = Tensor::stack(&[hi, lo], 2)?.reshape(rows * half * 2)?.to_dtype(DType::U32)?;
                let w = codebook.index_select(&idx, 0)?.reshape((rows, half * 2 / 64, 64))?.broadcast_mul(absmax)?;
                dense(&w.reshape((rows, half * 2))?.to_dtype(x.dtype())?)
            }
        }
    }
}

pub struct Layer {
    pub attn_norm: Tensor,
    pub wq: Weight,
    pub wk: Weight,
    pub wv: Weight,
    pub wo: Weight,
    pub ffn_norm: Tensor,
    pub w_gate: Weight,
    pub w_up: Weight,
    pub w_down: Weight,
    /// One KV cache per slot ([`bench_backend::LoadSpec::slots`]); each takes its memory on
    /// first use.
    pub caches: Vec<KvCache>,
}

/// The token embedding table.
pub enum Embedding {
    /// `(vocab, dim)` in the compute dtype.
    Dense(Tensor),
    /// A GGUF block tensor as the file stores it: the tuned path looks rows up in it directly
    /// (a Llama 3 8B Q4_0 table is 0.3 GB, 2.1 GB as f32); the stock path expands it first
    /// ([`Llama::with_dense_embedding`]).
    Blocks(std::sync::Arc<QTensor>),
    /// Blocks candle cannot hold (IQ4_NL, IQ4_XS), for the tuned path only, like [`Weight::Raw`].
    Raw(std::sync::Arc<RawBlocks>),
    /// The tuned kernels' matrix, like [`Weight::Tuned`] (with a tied head, the head's matrix itself).
    Tuned(std::sync::Arc<cpu_kernels::Matrix>),
}

impl Embedding {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        match self {
            Embedding::Dense(t) => (t.elem_count() * t.dtype().size_in_bytes()) as u64,
            Embedding::Blocks(q) => q.storage_size_in_bytes() as u64,
            Embedding::Raw(r) => r.bytes.len() as u64,
            Embedding::Tuned(m) => m.bytes() as u64,
        }
    }
}

pub struct Llama {
    pub cfg: ModelConfig,
    pub embedding: Embedding,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    pub output: Weight,
    cos: Tensor,
    sin: Tensor,
    pub dtype: DType,
    /// Where the tokens go in: the embedding's device (the first shard's).
    pub device: Device,
    /// The device of each layer (all `device` unless sharded); the output norm and head are on
    /// the last one.
    pub layer_devices: Vec<Device>,
    /// The first layer of every shard after the first: where the activations are handed over
    /// (always through `to_device`, so the path runs even when two shards share a device).
    pub handovers: Vec<usize>,
    pub max_seq_len: usize,
}

impl Llama {
    #[allow(clippy::too_many_arguments)] // the parts of a model, each named at the one call site
    pub fn new(
        cfg: ModelConfig,
        embedding: Embedding,
        layers: Vec<Layer>,
        norm: Tensor,
        output: Weight,
        dtype: DType,
        shards: Vec<(std::ops::Range<usize>, Device)>,
        max_seq_len: usize,
    ) -> candle_core::Result<Self> {
        let device = shards.first().map(|s| s.1.clone()).unwrap_or(Device::Cpu);
        let layer_devices = shards.iter().flat_map(|(r, d)| r.clone().map(move |_| d.clone())).collect();
        let handovers = shards.iter().skip(1).map(|(r, _)| r.start).collect();
        let (cos, sin) = cfg.rope_tables(max_seq_len);
        let half = cfg.head_dim() / 2;
        let cos = Tensor::from_vec(cos, (max_seq_len, half), &device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (max_seq_len, half), &device)?.to_dtype(dtype)?;
        Ok(Self { cfg, embedding, layers, norm, output, cos, sin, dtype, device, layer_devices, handovers, max_seq_len })
    }

    /// The model with its embedding table dense, as the stock forward pass needs it.
    pub fn with_dense_embedding(mut self) -> candle_core::Result<Self> {
        if let Embedding::Blocks(q) = &self.embedding {
            self.embedding = Embedding::Dense(q.dequantize(&self.device)?.to_dtype(self.dtype)?);
        }
        Ok(self)
    }

    pub fn reset(&mut self) {
        for l in &mut self.layers {
            l.caches.iter_mut().for_each(KvCache::reset);
        }
    }

    /// Empties one slot's cache.
    pub fn reset_slot(&mut self, slot: usize) {
        for l in &mut self.layers {
            if let Some(c) = l.caches.get_mut(slot) {
                c.reset();
            }
        }
    }

    /// Positions each slot's cache holds.
    pub fn cached(&self) -> Vec<usize> {
        self.layers.first().map(|l| l.caches.iter().map(|c| c.current_seq_len()).collect()).unwrap_or_default()
    }

    /// Runs `tokens` at positions `pos..` of slot `slot`'s cache; returns f32 logits
    /// `(rows, vocab)` of the last position (`all = false`) or of every position. (The stock
    /// path runs the sequences of a batch one after the other.)
    pub fn forward(&mut self, tokens: &[u32], pos: usize, all: bool, slot: usize) -> candle_core::Result<Tensor> {
        let t = tokens.len();
        let ids = Tensor::new(tokens, &self.device)?;
        let Embedding::Dense(table) = &self.embedding else {
            candle_core::bail!("the stock forward pass needs a dense embedding table (Llama::with_dense_embedding)")
        };
        let mut x = table.index_select(&ids, 0)?.unsqueeze(0)?; // (1, t, dim)
        let mut cos = self.cos.narrow(0, pos, t)?;
        let mut sin = self.sin.narrow(0, pos, t)?;
        let a = &self.cfg.arch;
        let (heads, kv_heads, hd) = (a.heads, a.kv_heads, a.head_dim());
        let n_rep = heads / kv_heads;
        let eps = a.norm_eps as f32;
        let mut mask = if t > 1 { Some(causal_mask(t, pos, n_rep, &self.device)?) } else { None };
        let scale = 1.0 / (hd as f64).sqrt();

        for (i, layer) in self.layers.iter_mut().enumerate() {
            if self.handovers.contains(&i) {
                // A shard boundary: the activations (and this step's small tables) move to the
                // next shard's device; nothing else crosses devices.
                let _span = tracing::trace_span!("shard_handover", layer = i).entered();
                let here = &self.layer_devices[i];
                x = x.to_device(here)?;
                cos = cos.to_device(here)?;
                sin = sin.to_device(here)?;
                mask = mask.map(|m| m.to_device(here)).transpose()?;
            }
            let attn = {
                let _span = tracing::trace_span!("attention", layer = i).entered();
                let h = rms_norm(&x, &layer.attn_norm, eps)?;
                let q = layer.wq.forward(&h)?.reshape((1, t, heads, hd))?.transpose(1, 2)?.contiguous()?;
                let k = layer.wk.forward(&h)?.reshape((1, t, kv_heads, hd))?.transpose(1, 2)?.contiguous()?;
                let v = layer.wv.forward(&h)?.reshape((1, t, kv_heads, hd))?.transpose(1, 2)?.contiguous()?;
                let (q, k) = match self.cfg.rope_layout {
                    RopeLayout::Interleaved => (candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?, candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?),
                    RopeLayout::HalfSplit => (candle_nn::rotary_emb::rope(&q, &cos, &sin)?, candle_nn::rotary_emb::rope(&k, &cos, &sin)?),
                };
                // Written in place into the preallocated cache; returns views of positions 0..pos+t.
                let (k, v) = layer.caches[slot].append(&k, &v)?;
                // Query heads sharing a KV head become extra rows of one product: (1, kv, rep*t, hd).
                let q = q.reshape((1, kv_heads, n_rep * t, hd))?;
                let scores = (q.matmul(&k.t()?)? * scale)?.to_dtype(DType::F32)?;
                let scores = match &mask {
                    Some(m) => scores.broadcast_add(m)?,
                    None => scores,
                };
                let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(self.dtype)?;
                let out = probs.matmul(&v)?; // (1, kv, rep*t, hd)
                let out = out.reshape((1, heads, t, hd))?.transpose(1, 2)?.reshape((1, t, heads * hd))?;
                layer.wo.forward(&out)?
            };
            x = (x + attn)?;
            let mlp = {
                let _span = tracing::trace_span!("mlp", layer = i).entered();
                let h = rms_norm(&x, &layer.ffn_norm, eps)?;
                let gate = candle_nn::ops::silu(&layer.w_gate.forward(&h)?)?;
                let up = layer.w_up.forward(&h)?;
                layer.w_down.forward(&(gate * up)?)?
            };
            x = (x + mlp)?;
        }
        let x = if all { x } else { x.narrow(1, t - 1, 1)? };
        let _span = tracing::trace_span!("output").entered();
        let x = rms_norm(&x, &self.norm, eps)?;
        let logits = self.output.forward(&x)?; // (1, rows, vocab)
        logits.squeeze(0)?.to_dtype(DType::F32)
    }
}

/// RMSNorm computed in f32 whatever the compute dtype (as Meta's reference does).
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    let dtype = x.dtype();
    let y = candle_nn::ops::rms_norm(&x.to_dtype(DType::F32)?, weight, eps)?;
    y.to_dtype(dtype)
}

/// Additive causal mask `(rep*t, pos+t)` for `t` new queries at `pos..pos+t`, repeated for the
/// `rep` query heads folded into each KV head's rows.
fn causal_mask(t: usize, pos: usize, rep: usize, device: &Device) -> candle_core::Result<Tensor> {
    let len = pos + t;
    let mut m = Vec::with_capacity(rep * t * len);
    for _ in 0..rep {
        for i in 0..t {
            m.extend((0..len).map(|j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }));
        }
    }
    Tensor::from_vec(m, (rep * t, len), device)
}

/// The last dimension's values of a 2-D f32 tensor, as rows.
pub fn rows(logits: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    logits.to_dtype(DType::F32)?.to_vec2()
}
