//! The LLaMA 3 forward pass written with libtorch ops, from Meta's reference `llama/model.py`:
//! RMSNorm (in f32), grouped-query attention through `scaled_dot_product_attention` with
//! `enable_gqa` (K/V are never repeated), rotary embeddings from bench-core's frequency table
//! (Llama 3 scaling included), SwiGLU, and a KV cache preallocated once and written in place
//! (`narrow(..).copy_(..)`). With `--shard N` each layer (and its cache) lives on its shard's
//! device and the activations move with `to_device` where one shard hands over to the next.
//!
//! Several sequences (the server's continuous batching) each own a KV-cache slot; a step stacks
//! every sequence's tokens into one `(1, T, dim)` row block, so each weight matrix is read once
//! for all of them, and only rotation, the cache write and attention run per sequence, at that
//! sequence's positions and over its own slot.
//!
//! With `--kernels tuned` on the CPU in f32, a decode step of up to four tokens skips the op-by-op
//! path: each layer is nine calls into this crate's C++ (`weight_only` products with the residual
//! add fused, `decode_ops` for RMSNorm, rotation + cache write, attention, SiLU × up) over
//! preallocated rows, on libtorch's tensors and thread pool, because on a small model libtorch's
//! per-op cost was a quarter of the token. Prompts and `--kernels stock` run the ops below.

use bench_backend::config::{ModelConfig, RopeLayout};
use bench_backend::SeqStep;
use tch::{Device, Kind, Tensor};

use crate::decode_ops::{self, Cache, Heads};
use crate::weight_only::{self, f32_slice, f32_slice_mut, Matrix, Tier};

/// A weight matrix `(out, in)`: dense, or bench-backend's int8 / NF4 formats kept quantized in
/// memory. A quantized product of a few tokens on the CPU reads the codes directly
/// (`weight_only`, when a tier is given: `--kernels tuned`); otherwise the matrix is expanded to the
/// compute dtype inside the product and multiplied by libtorch (the same numerics either way).
pub enum Weight {
    Dense(Tensor),
    /// int8 codes and `(out, 1)` f32 scales.
    Int8 {
        q: Tensor,
        scales: Tensor,
    },
    /// `packed` `(out, in/2)` uint8, high nibble first; `absmax` `(out, in/64, 1)`; `codebook` (16).
    Nf4 {
        packed: Tensor,
        absmax: Tensor,
        codebook: Tensor,
    },
}

impl Weight {
    /// The matrix in a form the `weight_only` kernels read; `None` if its tensors do not fit them
    /// (not contiguous f32 / int8 / NF4 CPU tensors).
    pub fn matrix(&self) -> Option<Matrix<'_>> {
        match self {
            Weight::Dense(w) => Matrix::f32(w),
            Weight::Int8 { q, scales } => Matrix::int8(q, scales),
            Weight::Nf4 { packed, absmax, codebook } => Matrix::nf4(packed, absmax, codebook),
        }
    }

    pub fn apply(&self, x: &Tensor, tier: Option<Tier>) -> Tensor {
        if let Weight::Dense(w) = self {
            return Self::apply_dense(w, x, tier);
        }
        if let Some(y) = tier.zip(self.matrix()).and_then(|(tier, m)| m.product(tier, x)) {
            return y;
        }
        x.linear::<Tensor>(&self.expanded().to_kind(x.kind()), None)
    }

    /// The whole matrix as floats (codes times their scales), for libtorch's `linear`.
    fn expanded(&self) -> Tensor {
        match self {
            Weight::Dense(w) => w.shallow_clone(),
            Weight::Int8 { q, scales } => q.to_kind(Kind::Float) * scales,
            Weight::Nf4 { packed, absmax, codebook } => {
                let size = packed.size();
                let (rows, cols) = (size[0], size[1] * 2);
                let hi = packed.bitwise_right_shift_tensor_scalar(4);
                let lo = packed.bitwise_and(0x0F);
                let idx = Tensor::stack(&[hi, lo], 2).view([rows * cols]).to_kind(Kind::Int64);
                (codebook.index_select(0, &idx).view([rows, cols / 64, 64]) * absmax).view([rows, cols])
            }
        }
    }

    /// `x · wᵀ` for a dense `w`: the f32 kernel for a few tokens on the CPU when a tier is given,
    /// libtorch's `linear` otherwise.
    pub fn apply_dense(w: &Tensor, x: &Tensor, tier: Option<Tier>) -> Tensor {
        tier.and_then(|tier| weight_only::f32_matmul(tier, x, w)).unwrap_or_else(|| x.linear::<Tensor>(w, None))
    }

    pub fn bytes(&self) -> u64 {
        let b = |t: &Tensor| (t.numel() * t.kind().elt_size_in_bytes()) as u64;
        match self {
            Weight::Dense(w) => b(w),
            Weight::Int8 { q, scales } => b(q) + b(scales),
            Weight::Nf4 { packed, absmax, .. } => b(packed) + b(absmax),
        }
    }
}

/// One decoder layer. Q, K and V are one matrix of `(heads + 2 kv_heads) * head_dim` rows, gate
/// and up one of `2 ffn_dim` rows (stacked at load): two products instead of five, which matters
/// for a small model, where libtorch's per-op cost is a large share of a token.
pub struct Layer {
    pub attn_norm: Tensor,
    pub wqkv: Weight,
    pub wo: Weight,
    pub ffn_norm: Tensor,
    pub w_gate_up: Weight,
    pub w_down: Weight,
}

pub struct TorchLlama {
    pub cfg: ModelConfig,
    /// On the first shard's device (`device`).
    pub embedding: Tensor,
    pub layers: Vec<Layer>,
    /// The device of each layer (all `device` unless sharded).
    pub layer_devices: Vec<Device>,
    /// The first layer of every shard after the first: where the activations are handed over
    /// (always through `to_device`, so the path runs even when two shards share a device).
    pub handovers: Vec<usize>,
    pub norm: Tensor,
    /// `(vocab, dim)`; the embedding itself when tied. With the norm, on the last layer's device.
    pub output: Tensor,
    cos: Tensor,
    sin: Tensor,
    /// `[layer][slot]`, each `(1, kv_heads, max_seq_len, head_dim)` on the layer's device,
    /// allocated uninitialised (a position is always written before it is read), so an unused
    /// slot's pages are never touched.
    k_cache: Vec<Vec<Tensor>>,
    v_cache: Vec<Vec<Tensor>>,
    pub kind: Kind,
    /// The `weight_only` tier the f32 / int8 / NF4 products of a few tokens run on (`None`:
    /// `--kernels stock` or not on the CPU: libtorch ops only).
    pub tier: Option<Tier>,
    /// Where the tokens go in: the embedding's device.
    pub device: Device,
    pub max_seq_len: usize,
    /// Rows for the fused decode step (`None` where it does not apply: `--kernels stock`, not
    /// on the CPU, sharded, a compute kind other than f32, or tensors the kernels do not read).
    scratch: Option<Scratch>,
}

/// Preallocated rows of a decode step of up to [`weight_only::MAX_TOKENS`] tokens, so the fused
/// path allocates nothing per token but the logits it returns.
struct Scratch {
    /// The residual stream `(m, dim)`.
    x: Vec<f32>,
    /// A normed copy of it `(m, dim)`.
    h: Vec<f32>,
    /// The stacked Q/K/V product `(m, (heads + 2 kv_heads) hd)`.
    qkv: Vec<f32>,
    /// Rotated queries and the attention output `(m, heads hd)`.
    q: Vec<f32>,
    attn: Vec<f32>,
    /// The stacked gate/up product `(m, 2 ffn)` and SiLU(gate) × up `(m, ffn)`.
    gate_up: Vec<f32>,
    act: Vec<f32>,
}

impl Scratch {
    fn new(cfg: &ModelConfig) -> Scratch {
        let a = &cfg.arch;
        let rows = weight_only::MAX_TOKENS as usize;
        let hd = a.head_dim();
        let z = |n: usize| vec![0.0f32; rows * n];
        Scratch {
            x: z(a.dim),
            h: z(a.dim),
            qkv: z((a.heads + 2 * a.kv_heads) * hd),
            q: z(a.heads * hd),
            attn: z(a.heads * hd),
            gate_up: z(2 * a.ffn_dim),
            act: z(a.ffn_dim),
        }
    }
}

impl TorchLlama {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: ModelConfig,
        embedding: Tensor,
        layers: Vec<Layer>,
        norm: Tensor,
        output: Tensor,
        kind: Kind,
        tier: Option<Tier>,
        shards: &[(std::ops::Range<usize>, Device)],
        max_seq_len: usize,
        slots: usize,
    ) -> Self {
        let device = shards.first().map(|s| s.1).unwrap_or(Device::Cpu);
        let layer_devices: Vec<Device> = shards.iter().flat_map(|(r, d)| r.clone().map(move |_| *d)).collect();
        let handovers = shards.iter().skip(1).map(|(r, _)| r.start).collect();
        let (cos, sin) = cfg.rope_tables(max_seq_len);
        let half = (cfg.head_dim() / 2) as i64;
        let table = |v: Vec<f32>| Tensor::from_slice(&v).view([max_seq_len as i64, half]).to_device(device);
        let a = &cfg.arch;
        let shape = [1, a.kv_heads as i64, max_seq_len as i64, a.head_dim() as i64];
        let caches = || layer_devices.iter().map(|&d| (0..slots.max(1)).map(|_| Tensor::empty(shape, (kind, d))).collect()).collect();
        let (k_cache, v_cache) = (caches(), caches());
        let (cos, sin) = (table(cos), table(sin));
        // The fused decode step reads every tensor through the kernels' checked views; it is on
        // only when all of them fit (f32 compute on the CPU, `--kernels tuned`).
        let fits = |l: &Layer| {
            [&l.wqkv, &l.wo, &l.w_gate_up, &l.w_down].iter().all(|w| w.matrix().is_some())
                && f32_slice(&l.attn_norm).is_some()
                && f32_slice(&l.ffn_norm).is_some()
        };
        // A sharded model keeps its op-by-op path, which hands the activations over between
        // shards (the shard tests map every shard to the CPU to run it).
        let fused = tier.is_some()
            && kind == Kind::Float
            && shards.len() == 1
            && layer_devices.iter().all(|d| *d == Device::Cpu)
            && layers.iter().all(fits)
            && f32_slice(&embedding).is_some()
            && f32_slice(&norm).is_some()
            && Matrix::f32(&output).is_some();
        let scratch = fused.then(|| Scratch::new(&cfg));
        Self { cos, sin, cfg, embedding, layers, layer_devices, handovers, norm, output, k_cache, v_cache, kind, tier, device, max_seq_len, scratch }
    }

    /// Whether decode steps (up to [`weight_only::MAX_TOKENS`] tokens) run the fused path.
    pub fn fused_decode(&self) -> bool {
        self.scratch.is_some()
    }

    /// A decode step of a few tokens with the fused kernels: each layer is RMSNorm, the Q/K/V
    /// product, rotation + cache write, attention over the cache, the output product with the
    /// residual add, RMSNorm, the gate/up product, SiLU × up, the down product with the residual
    /// add: nine calls, no libtorch op between them. The same maths as the op-by-op path below.
    /// The sequences' rows are stacked for the products; rotation, cache write and attention run
    /// per sequence in its slot. `None` (nothing done) when the fused path is off or there are
    /// too many tokens in all.
    fn forward_fused(&mut self, seqs: &[SeqStep], all: bool) -> Option<Tensor> {
        let m: usize = seqs.iter().map(|s| s.tokens.len()).sum();
        if m == 0 || m > weight_only::MAX_TOKENS as usize || seqs.iter().any(|s| s.tokens.is_empty()) {
            return None;
        }
        let Self { cfg, embedding, layers, norm, output, cos, sin, k_cache, v_cache, tier, scratch, .. } = self;
        let (tier, s) = (tier.as_ref().copied()?, scratch.as_mut()?);
        const BUG: &str = "the fused decode step's tensors were checked when the model was built";
        let a = &cfg.arch;
        let (dim, ffn, hd) = (a.dim, a.ffn_dim, a.head_dim());
        let heads = Heads { heads: a.heads, kv_heads: a.kv_heads, head_dim: hd };
        let (qkv_width, q_width) = ((a.heads + 2 * a.kv_heads) * hd, a.heads * hd);
        let x = &mut s.x[..m * dim];
        let emb = f32_slice(embedding).expect(BUG);
        for (row, &t) in x.chunks_exact_mut(dim).zip(seqs.iter().flat_map(|s| s.tokens)) {
            row.copy_from_slice(&emb[t as usize * dim..(t as usize + 1) * dim]);
        }
        let h = &mut s.h[..m * dim];
        let qkv = &mut s.qkv[..m * qkv_width];
        let (q, attn) = (&mut s.q[..m * q_width], &mut s.attn[..m * q_width]);
        let (gate_up, act) = (&mut s.gate_up[..m * 2 * ffn], &mut s.act[..m * ffn]);
        let eps = a.norm_eps;
        let product = |w: &Weight, x: &[f32], y: &mut [f32], add: bool| {
            assert!(w.matrix().expect(BUG).product_into(tier, x, y, add), "a weight_only product failed ({BUG})");
        };
        for (i, layer) in layers.iter().enumerate() {
            let attn_span = tracing::trace_span!("attention", layer = i).entered();
            assert!(decode_ops::rms_norm(x, &layer.attn_norm, eps, h), "{BUG}");
            product(&layer.wqkv, h, qkv, false);
            let mut row = 0;
            for seq in seqs {
                let (r, t) = (row, seq.tokens.len());
                row += t;
                let (k, v) = (&mut k_cache[i][seq.slot], &mut v_cache[i][seq.slot]);
                let mut cache = Cache::new(k, v, heads).expect(BUG);
                let (q, attn) = (&mut q[r * q_width..(r + t) * q_width], &mut attn[r * q_width..(r + t) * q_width]);
                let qkv = &qkv[r * qkv_width..(r + t) * qkv_width];
                assert!(decode_ops::rope_qkv(qkv, cos, sin, cfg.rope_layout, heads, seq.pos, q, &mut cache), "{BUG}");
                assert!(decode_ops::attention(tier, q, &cache, heads, seq.pos, attn), "attention failed ({BUG})");
            }
            product(&layer.wo, attn, x, true);
            drop(attn_span);
            let _mlp_span = tracing::trace_span!("mlp", layer = i).entered();
            assert!(decode_ops::rms_norm(x, &layer.ffn_norm, eps, h), "{BUG}");
            product(&layer.w_gate_up, h, gate_up, false);
            assert!(decode_ops::silu_mul(gate_up, act, m), "{BUG}");
            product(&layer.w_down, act, x, true);
        }
        let _span = tracing::trace_span!("output").entered();
        // Every row, or the last row of each sequence, normed into the first rows of `h`.
        let last_rows: Vec<usize> = if all {
            (0..m).collect()
        } else {
            seqs.iter()
                .scan(0, |end, s| {
                    *end += s.tokens.len();
                    Some(*end - 1)
                })
                .collect()
        };
        let rows = last_rows.len();
        for (j, &r) in last_rows.iter().enumerate() {
            assert!(decode_ops::rms_norm(&x[r * dim..(r + 1) * dim], norm, eps, &mut h[j * dim..(j + 1) * dim]), "{BUG}");
        }
        let mut logits = Tensor::empty([rows as i64, a.vocab_size as i64], (Kind::Float, Device::Cpu));
        let out = f32_slice_mut(&mut logits).expect("a fresh f32 CPU tensor");
        assert!(Matrix::f32(output).expect(BUG).product_into(tier, &h[..rows * dim], out, false), "the head product failed ({BUG})");
        Some(logits)
    }

    /// Rotates `x` `(1, heads, t, hd)` by the `(t, hd/2)` tables of its positions, in f32.
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let x = x.to_kind(Kind::Float);
        let size = x.size();
        let hd = size[3];
        let (x0, x1) = match self.cfg.rope_layout {
            // pairs (x[2i], x[2i+1])
            RopeLayout::Interleaved => {
                let p = x.view([size[0], size[1], size[2], hd / 2, 2]);
                (p.select(4, 0), p.select(4, 1))
            }
            // pairs (x[i], x[i + hd/2])
            RopeLayout::HalfSplit => (x.narrow(3, 0, hd / 2), x.narrow(3, hd / 2, hd / 2)),
        };
        let r0 = &x0 * cos - &x1 * sin;
        let r1 = &x0 * sin + &x1 * cos;
        let out = match self.cfg.rope_layout {
            RopeLayout::Interleaved => Tensor::stack(&[r0, r1], 4).view([size[0], size[1], size[2], hd]),
            RopeLayout::HalfSplit => Tensor::cat(&[r0, r1], 3),
        };
        out.to_kind(self.kind)
    }

    /// RMSNorm in f32 (`w` is f32), back in the compute kind: libtorch's own `rms_norm` op.
    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> Tensor {
        let dim = self.cfg.arch.dim as i64;
        x.to_kind(Kind::Float).rms_norm([dim], Some(w), self.cfg.arch.norm_eps).to_kind(self.kind)
    }

    /// Logits `(rows, vocab)` in f32 for the last position or every position of one sequence
    /// in slot 0 (the command line's cache).
    pub fn forward(&mut self, tokens: &[u32], pos: usize, all: bool) -> Tensor {
        self.forward_batch(&[SeqStep { slot: 0, pos, tokens }], all)
    }

    /// Logits `(rows, vocab)` in f32: the last position of each sequence, in the order given, or
    /// (`all`) every position of every sequence. The arguments were checked by the caller
    /// (`check_batch_args`: slots in range and distinct, positions what each slot holds).
    pub fn forward_batch(&mut self, seqs: &[SeqStep], all: bool) -> Tensor {
        if let Some(logits) = self.forward_fused(seqs, all) {
            return logits;
        }
        let a = &self.cfg.arch;
        let (heads, kv_heads, hd) = (a.heads as i64, a.kv_heads as i64, a.head_dim() as i64);
        let ids: Vec<i64> = seqs.iter().flat_map(|s| s.tokens).map(|&x| x as i64).collect();
        let t_all = ids.len() as i64;
        let ids = Tensor::from_slice(&ids).to_device(self.device);
        let mut x = self.embedding.index_select(0, &ids).unsqueeze(0); // (1, T, dim)
                                                                       // Per sequence: its first row in `x`, its rotation tables and its causal mask. No mask
                                                                       // for one new token; `is_causal` when the whole sequence is new; an explicit mask
                                                                       // (true = attend) for a chunk after cached positions.
        let mut parts: Vec<Part> = Vec::with_capacity(seqs.len());
        let mut row = 0;
        for seq in seqs {
            let (t, pos) = (seq.tokens.len() as i64, seq.pos as i64);
            let mask = (t > 1 && pos > 0).then(|| {
                let q = Tensor::arange_start(pos, pos + t, (Kind::Int64, self.device)).unsqueeze(1);
                let k = Tensor::arange(pos + t, (Kind::Int64, self.device)).unsqueeze(0);
                k.le_tensor(&q)
            });
            parts.push(Part { row, t, pos, cos: self.cos.narrow(0, pos, t), sin: self.sin.narrow(0, pos, t), mask });
            row += t;
        }
        for i in 0..self.layers.len() {
            if self.handovers.contains(&i) {
                // A shard boundary: the activations (and this step's small tables) move to the
                // next shard's device; nothing else crosses devices.
                let here = self.layer_devices[i];
                let _span = tracing::trace_span!("shard_handover", layer = i).entered();
                x = x.to_device(here);
                for p in &mut parts {
                    p.cos = p.cos.to_device(here);
                    p.sin = p.sin.to_device(here);
                    p.mask = p.mask.as_ref().map(|m| m.to_device(here));
                }
            }
            let attn_span = tracing::trace_span!("attention", layer = i).entered();
            let layer = &self.layers[i];
            let h = self.rms_norm(&x, &layer.attn_norm);
            // (1, heads + 2 kv_heads, T, hd): Q's heads, then K's, then V's; Q and K rotated together.
            let qkv = layer.wqkv.apply(&h, self.tier).view([1, t_all, heads + 2 * kv_heads, hd]).transpose(1, 2);
            let mut outs = Vec::with_capacity(seqs.len());
            for (seq, p) in seqs.iter().zip(&parts) {
                let qkv = qkv.narrow(2, p.row, p.t);
                let qk = self.rope(&qkv.narrow(1, 0, heads + kv_heads), &p.cos, &p.sin);
                let (q, k) = (qk.narrow(1, 0, heads), qk.narrow(1, heads, kv_heads));
                let v = qkv.narrow(1, heads + kv_heads, kv_heads);
                let (k_cache, v_cache) = (&self.k_cache[i][seq.slot], &self.v_cache[i][seq.slot]);
                k_cache.narrow(2, p.pos, p.t).copy_(&k);
                v_cache.narrow(2, p.pos, p.t).copy_(&v);
                let total = p.pos + p.t;
                let (keys, values) = (k_cache.narrow(2, 0, total), v_cache.narrow(2, 0, total));
                let causal = p.t > 1 && p.pos == 0;
                let attn = Tensor::scaled_dot_product_attention(&q, &keys, &values, p.mask.as_ref(), 0.0, causal, None, true);
                outs.push(attn.transpose(1, 2).reshape([1, p.t, heads * hd]));
            }
            let attn = if outs.len() == 1 { outs.pop().expect("one sequence") } else { Tensor::cat(&outs, 1) };
            let layer = &self.layers[i];
            x += layer.wo.apply(&attn, self.tier);
            drop(attn_span);
            let _mlp_span = tracing::trace_span!("mlp", layer = i).entered();
            let h = self.rms_norm(&x, &layer.ffn_norm);
            let gate_up = layer.w_gate_up.apply(&h, self.tier);
            let ffn = a.ffn_dim as i64;
            let gate = gate_up.narrow(2, 0, ffn).silu();
            x += layer.w_down.apply(&(gate * gate_up.narrow(2, ffn, ffn)), self.tier);
        }
        let x = if all {
            x
        } else if let [p] = parts.as_slice() {
            x.narrow(1, p.row + p.t - 1, 1)
        } else {
            let last: Vec<i64> = parts.iter().map(|p| p.row + p.t - 1).collect();
            x.index_select(1, &Tensor::from_slice(&last).to_device(x.device()))
        };
        let _span = tracing::trace_span!("output").entered();
        let x = self.rms_norm(&x, &self.norm);
        Weight::apply_dense(&self.output, &x, self.tier).squeeze_dim(0).to_kind(Kind::Float)
    }
}

/// One sequence's share of an op-by-op step: its rows `row..row + t` of the stacked block, at
/// positions `pos..pos + t` of its slot.
struct Part {
    row: i64,
    t: i64,
    pos: i64,
    cos: Tensor,
    sin: Tensor,
    mask: Option<Tensor>,
}
