//! The tuned CPU path (`--kernels tuned`, the default): the same LLaMA 3 forward pass as
//! [`crate::model`], with each layer run as two candle custom ops over this project's
//! `cpu-kernels` crate, written in place into the residual stream:
//!
//! - attention block: RMSNorm, Q/K/V as one fused product (one activation quantization, one
//!   pool dispatch), rotary embedding, the step's K/V written into a preallocated f32 cache,
//!   causal attention over the cached positions without a mask tensor, the output projection and
//!   the residual add;
//! - MLP block: RMSNorm, gate and up as one product, `silu(gate) * up`, down projection, residual.
//!
//! Several sequences run in one step ([`TunedLlama::forward_batch`], the server's continuous
//! batching): their tokens are stacked into one activation matrix, so every product reads each
//! weight once for all of them; rotary embedding, the cache write and attention run per
//! sequence, over its own KV-cache slot.
//!
//! Activations are f32 whatever the weights' storage; quantized weights (GGUF blocks, `--quantize
//! int8|nf4`) are multiplied on their codes, never expanded. Intermediate buffers are reused
//! across tokens, so a decode step allocates only the candle tensors at its ends (the embedding
//! rows and the logits). The instruction set is the kernels' business (`cpu_kernels::cpu::isa`).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, InplaceOp1, Layout, Shape, Tensor};
use cpu_kernels::ops::{self, KvCache, RopePairs};
use cpu_kernels::{matmul, matmul_many, Matrix};

/// One decoder layer's weights and KV cache.
pub struct TunedLayer {
    pub attn_norm: Vec<f32>,
    pub wq: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    pub wo: Matrix,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Matrix,
    pub w_up: Matrix,
    pub w_down: Matrix,
    /// One KV cache per slot; each takes its memory on first use.
    pub caches: Mutex<Vec<KvCache>>,
}

/// One sequence's rows in a batched step: activation rows `start..start + len`, at positions
/// `pos..pos + len` of KV-cache slot `slot`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    slot: usize,
    pos: usize,
    start: usize,
    len: usize,
}

/// Buffers reused by every layer and token (one model runs one forward at a time).
#[derive(Default)]
struct Scratch {
    h: Vec<f32>,
    fused: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    act: Vec<f32>,
    out: Vec<f32>,
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

/// Shapes the ops need.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub eps: f32,
    pub pairs: RopePairs,
}

pub struct TunedLlama {
    pub dims: Dims,
    pub layers: Vec<TunedLayer>,
    /// Token embeddings `(vocab, dim)`; the same matrix as `output` when the head is tied.
    pub embedding: Arc<Matrix>,
    pub norm: Vec<f32>,
    pub output: Arc<Matrix>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    scratch: Mutex<Scratch>,
    /// Positions in each slot's KV cache.
    pub cached: Vec<usize>,
    pub max_seq_len: usize,
}

fn op_err(e: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

fn f32_slice<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(v) = s else { return Err(op_err(format!("{what}: expects f32 activations"))) };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => Err(op_err(format!("{what}: expects contiguous activations"))),
    }
}

impl TunedLlama {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dims: Dims,
        layers: Vec<TunedLayer>,
        embedding: Arc<Matrix>,
        norm: Vec<f32>,
        output: Arc<Matrix>,
        rope_tables: (Vec<f32>, Vec<f32>),
        max_seq_len: usize,
    ) -> Self {
        let (cos, sin) = rope_tables;
        let slots = layers.first().and_then(|l| l.caches.lock().ok().map(|c| c.len())).unwrap_or(1);
        Self { dims, layers, embedding, norm, output, cos, sin, scratch: Mutex::new(Scratch::default()), cached: vec![0; slots], max_seq_len }
    }

    /// Empties every slot.
    pub fn reset(&mut self) {
        self.cached.iter_mut().for_each(|c| *c = 0);
    }

    /// Empties one slot (its memory is kept for the next sequence).
    pub fn reset_slot(&mut self, slot: usize) {
        if let Some(c) = self.cached.get_mut(slot) {
            *c = 0;
        }
    }

    /// Bytes held by the KV caches.
    pub fn cache_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.caches.lock().map(|c| c.iter().map(KvCache::bytes).sum::<usize>()).unwrap_or(0)).sum()
    }

    /// Runs `tokens` at positions `pos..` of slot 0; returns f32 logits `(rows, vocab)` of the
    /// last position (`all = false`) or of every position.
    pub fn forward(&mut self, tokens: &[u32], pos: usize, all: bool) -> candle_core::Result<Tensor> {
        self.forward_batch(&[bench_backend::SeqStep { slot: 0, pos, tokens }], all)
    }

    /// Runs every sequence's tokens in one pass (the caller has checked slots and positions:
    /// `bench_backend::backend::check_batch_args`). Returns f32 logits `(rows, vocab)`: each
    /// sequence's last position in the order of `seqs` (`all = false`), or every row.
    pub fn forward_batch(&mut self, seqs: &[bench_backend::SeqStep], all: bool) -> candle_core::Result<Tensor> {
        let dim = self.dims.dim;
        let mut segments = Vec::with_capacity(seqs.len());
        let mut start = 0;
        for s in seqs {
            segments.push(Segment { slot: s.slot, pos: s.pos, start, len: s.tokens.len() });
            start += s.tokens.len();
        }
        let t = start;
        let mut rows = vec![0.0f32; t * dim];
        for (&tok, row) in seqs.iter().flat_map(|s| s.tokens).zip(rows.chunks_exact_mut(dim)) {
            self.embedding.dequantize_row(tok as usize, row);
        }
        let x = Tensor::from_vec(rows, (t, dim), &candle_core::Device::Cpu)?;
        for (i, layer) in self.layers.iter().enumerate() {
            {
                let _span = tracing::trace_span!("attention", layer = i).entered();
                x.inplace_op1(&AttentionBlock { model: self, layer, segments: &segments })?;
            }
            let _span = tracing::trace_span!("mlp", layer = i).entered();
            x.inplace_op1(&MlpBlock { model: self, layer })?;
        }
        for s in &segments {
            self.cached[s.slot] = s.pos + s.len;
        }
        let x = if all {
            x
        } else if let [one] = segments.as_slice() {
            x.narrow(0, one.start + one.len - 1, 1)?.contiguous()?
        } else {
            let last: Vec<u32> = segments.iter().map(|s| (s.start + s.len - 1) as u32).collect();
            x.index_select(&Tensor::new(last.as_slice(), &candle_core::Device::Cpu)?, 0)?.contiguous()?
        };
        let _span = tracing::trace_span!("output").entered();
        x.apply_op1_no_bwd(&Head { model: self })
    }
}

struct AttentionBlock<'a> {
    model: &'a TunedLlama,
    layer: &'a TunedLayer,
    segments: &'a [Segment],
}

impl InplaceOp1 for AttentionBlock<'_> {
    fn name(&self) -> &'static str {
        "tuned-attention-block"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let x = f32_slice(storage, layout, self.name())?;
        let m = self.model;
        let d = m.dims;
        let t = x.len() / d.dim;
        let (qw, kvw) = (d.heads * d.head_dim, d.kv_heads * d.head_dim);
        let mut guard = m.scratch.lock().map_err(op_err)?;
        let s = &mut *guard;
        let h = sized(&mut s.h, t * d.dim);
        ops::rms_norm(x, &self.layer.attn_norm, d.eps, h);
        let width = qw + 2 * kvw;
        let fused = sized(&mut s.fused, t * width);
        matmul_many(&[&self.layer.wq, &self.layer.wk, &self.layer.wv], h, t, fused).map_err(op_err)?;
        let (q, k, v) = (sized(&mut s.q, t * qw), sized(&mut s.k, t * kvw), sized(&mut s.v, t * kvw));
        for (i, row) in fused.chunks_exact(width).enumerate() {
            q[i * qw..(i + 1) * qw].copy_from_slice(&row[..qw]);
            k[i * kvw..(i + 1) * kvw].copy_from_slice(&row[qw..qw + kvw]);
            v[i * kvw..(i + 1) * kvw].copy_from_slice(&row[qw + kvw..]);
        }
        let attn = sized(&mut s.attn, t * qw);
        let mut caches = self.layer.caches.lock().map_err(op_err)?;
        for seg in self.segments {
            let (qs, ks) = (seg.start * qw..(seg.start + seg.len) * qw, seg.start * kvw..(seg.start + seg.len) * kvw);
            let cache = caches.get_mut(seg.slot).ok_or_else(|| op_err(format!("KV-cache slot {} does not exist", seg.slot)))?;
            ops::rope(&mut q[qs.clone()], d.heads, d.head_dim, seg.pos, &m.cos, &m.sin, d.pairs);
            ops::rope(&mut k[ks.clone()], d.kv_heads, d.head_dim, seg.pos, &m.cos, &m.sin, d.pairs);
            cache.write(&k[ks.clone()], &v[ks], seg.pos);
            ops::attention(&q[qs.clone()], cache, d.heads, seg.pos, &mut attn[qs]);
        }
        let out = sized(&mut s.out, t * d.dim);
        matmul(&self.layer.wo, attn, t, out).map_err(op_err)?;
        x.iter_mut().zip(out.iter()).for_each(|(a, b)| *a += b);
        Ok(())
    }
}

struct MlpBlock<'a> {
    model: &'a TunedLlama,
    layer: &'a TunedLayer,
}

impl InplaceOp1 for MlpBlock<'_> {
    fn name(&self) -> &'static str {
        "tuned-mlp-block"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let x = f32_slice(storage, layout, self.name())?;
        let d = self.model.dims;
        let t = x.len() / d.dim;
        let mut guard = self.model.scratch.lock().map_err(op_err)?;
        let s = &mut *guard;
        let h = sized(&mut s.h, t * d.dim);
        ops::rms_norm(x, &self.layer.ffn_norm, d.eps, h);
        let gu = sized(&mut s.fused, t * 2 * d.ffn_dim);
        matmul_many(&[&self.layer.w_gate, &self.layer.w_up], h, t, gu).map_err(op_err)?;
        let act = sized(&mut s.act, t * d.ffn_dim);
        ops::silu_mul(gu, d.ffn_dim, act);
        let out = sized(&mut s.out, t * d.dim);
        matmul(&self.layer.w_down, act, t, out).map_err(op_err)?;
        x.iter_mut().zip(out.iter()).for_each(|(a, b)| *a += b);
        Ok(())
    }
}

struct Head<'a> {
    model: &'a TunedLlama,
}

impl CustomOp1 for Head<'_> {
    fn name(&self) -> &'static str {
        "tuned-output-head"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(v) = storage else { return Err(op_err("output head: expects f32 activations")) };
        let (a, b) = layout.contiguous_offsets().ok_or_else(|| op_err("output head: expects contiguous activations"))?;
        let x = &v[a..b];
        let m = self.model;
        let rows = x.len() / m.dims.dim;
        let mut h = vec![0.0f32; x.len()];
        ops::rms_norm(x, &m.norm, m.dims.eps, &mut h);
        let vocab = m.output.rows();
        let mut logits = vec![0.0f32; rows * vocab];
        matmul(&m.output, &h, rows, &mut logits).map_err(op_err)?;
        Ok((CpuStorage::F32(logits), Shape::from((rows, vocab))))
    }
}
