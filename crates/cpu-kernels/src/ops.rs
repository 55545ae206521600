//! The per-token operations between the products, on f32 rows: RMSNorm (Zhang & Sennrich 2019,
//! as Meta's Llama reference computes it), SwiGLU's `silu(gate) * up` (Shazeer 2020), rotary
//! position embedding (Su et al. 2021) in GGUF's interleaved-pair or Hugging Face's half-split
//! layout, and causal attention of new queries over a KV cache (grouped-query: query head `h`
//! reads KV head `h / (heads / kv_heads)`), computed directly over the cached positions with
//! no mask tensor: query `i` at position `pos + i` attends to positions `0..=pos + i`.

use std::cell::RefCell;

use crate::cpu::{self, Isa, Supported};
use crate::pool;
#[cfg(target_arch = "x86_64")]
use crate::quant::x86_ops;

fn dot(isa: Supported, a: &[f32], b: &[f32]) -> f32 {
    match isa.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a `Supported` tier of at least Avx2: AVX2/FMA detected on this CPU; any lengths.
        Isa::Avx2 | Isa::Avx512Vnni => unsafe { x86_ops::dot_f32_avx2(a, b) },
        _ => a.iter().zip(b).map(|(x, y)| x * y).sum(),
    }
}

fn axpy(isa: Supported, alpha: f32, x: &[f32], y: &mut [f32]) {
    match isa.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot`.
        Isa::Avx2 | Isa::Avx512Vnni => unsafe { x86_ops::axpy_f32_avx2(alpha, x, y) },
        _ => y.iter_mut().zip(x).for_each(|(o, v)| *o += alpha * v),
    }
}

/// `out = x / sqrt(mean(x²) + eps) * w`, row by row (`w.len()` values per row).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "rms_norm: input and output sizes differ");
    let isa = Supported::clamp(cpu::isa());
    for (xr, or) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
        let ms = dot(isa, xr, xr) / w.len() as f32;
        let r = 1.0 / (ms + eps).sqrt();
        or.iter_mut().zip(xr.iter().zip(w)).for_each(|(o, (&v, &g))| *o = v * r * g);
    }
}

/// `out[t][i] = silu(gu[t][i]) * gu[t][ff + i]` for rows `gu` of `2 * ff` (gate then up).
pub fn silu_mul(gu: &[f32], ff: usize, out: &mut [f32]) {
    assert_eq!(gu.len(), 2 * out.len(), "silu_mul: expects (t, 2ff) in and (t, ff) out");
    for (g, o) in gu.chunks_exact(2 * ff).zip(out.chunks_exact_mut(ff)) {
        let (gate, up) = g.split_at(ff);
        o.iter_mut().zip(gate.iter().zip(up)).for_each(|(o, (&a, &b))| *o = a / (1.0 + (-a).exp()) * b);
    }
}

/// How a head's dimensions are paired for rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopePairs {
    /// `(2i, 2i+1)`: GGUF files (llama.cpp permutes Q/K at conversion).
    Interleaved,
    /// `(i, i + hd/2)`: Hugging Face checkpoints.
    HalfSplit,
}

/// Rotates `x` (`t` rows of `heads * hd`) for positions `pos..pos+t`, with tables `cos`/`sin`
/// of `hd / 2` values per position.
pub fn rope(x: &mut [f32], heads: usize, hd: usize, pos: usize, cos: &[f32], sin: &[f32], pairs: RopePairs) {
    let half = hd / 2;
    for (i, row) in x.chunks_exact_mut(heads * hd).enumerate() {
        let (c, s) = (&cos[(pos + i) * half..(pos + i + 1) * half], &sin[(pos + i) * half..(pos + i + 1) * half]);
        for head in row.chunks_exact_mut(hd) {
            for j in 0..half {
                let (a, b) = match pairs {
                    RopePairs::Interleaved => (2 * j, 2 * j + 1),
                    RopePairs::HalfSplit => (j, j + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * c[j] - x1 * s[j];
                head[b] = x0 * s[j] + x1 * c[j];
            }
        }
    }
}

/// A layer's KV cache: `kv_heads` x `capacity` positions x `head_dim`, f32, written in place.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// KV heads.
    pub kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Positions it can hold.
    pub capacity: usize,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl KvCache {
    /// An empty cache; its memory is allocated on first use.
    pub fn new(kv_heads: usize, head_dim: usize, capacity: usize) -> KvCache {
        KvCache { kv_heads, head_dim, capacity, k: Vec::new(), v: Vec::new() }
    }

    /// Writes `t` rows of K and V (`kv_heads * head_dim` each) at positions `pos..pos+t`.
    pub fn write(&mut self, k: &[f32], v: &[f32], pos: usize) {
        let (hd, kvh) = (self.head_dim, self.kv_heads);
        let t = k.len() / (kvh * hd);
        assert!(pos + t <= self.capacity, "KV cache holds {} positions; {} asked", self.capacity, pos + t);
        if self.k.is_empty() {
            self.k = vec![0.0; kvh * self.capacity * hd];
            self.v = vec![0.0; kvh * self.capacity * hd];
        }
        for i in 0..t {
            for h in 0..kvh {
                let src = (i * kvh + h) * hd;
                let dst = (h * self.capacity + pos + i) * hd;
                self.k[dst..dst + hd].copy_from_slice(&k[src..src + hd]);
                self.v[dst..dst + hd].copy_from_slice(&v[src..src + hd]);
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * (self.k.len() + self.v.len())
    }
}

thread_local! {
    /// Attention scores of one (query, head), reused across calls (no allocation per token).
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: each task writes a disjoint (token, head) slice of the output; `attention` returns only
// after all tasks finish.
unsafe impl Send for OutPtr {}
// SAFETY: as for `Send`: no two tasks touch the same slice.
unsafe impl Sync for OutPtr {}

/// Causal attention of `q` (`t` rows of `heads * hd`, at positions `pos..pos+t`) over the cache,
/// which must already hold positions `0..pos+t`. Writes `out` (`t` rows of `heads * hd`).
pub fn attention(q: &[f32], cache: &KvCache, heads: usize, pos: usize, out: &mut [f32]) {
    let (hd, kvh, cap) = (cache.head_dim, cache.kv_heads, cache.capacity);
    let width = heads * hd;
    let t = q.len() / width;
    assert!(heads.is_multiple_of(kvh) && q.len() == t * width && out.len() == q.len() && pos + t <= cap && !cache.k.is_empty());
    let rep = heads / kvh;
    let scale = 1.0 / (hd as f32).sqrt();
    let isa = Supported::clamp(cpu::isa());
    let optr = OutPtr(out.as_mut_ptr());
    let task = move |task: usize| {
        let optr = optr;
        let (i, h) = (task / heads, task % heads);
        let len = pos + i + 1;
        let g = h / rep;
        let qh = &q[i * width + h * hd..i * width + (h + 1) * hd];
        let keys = &cache.k[g * cap * hd..];
        let vals = &cache.v[g * cap * hd..];
        SCORES.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.resize(len, 0.0);
            let scores = &mut buf[..len];
            let mut max = f32::NEG_INFINITY;
            for (j, s) in scores.iter_mut().enumerate() {
                *s = dot(isa, qh, &keys[j * hd..(j + 1) * hd]) * scale;
                max = max.max(*s);
            }
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            // SAFETY: (i, h) owns out[i*width + h*hd ..][..hd], disjoint from every other task's.
            let o = unsafe { std::slice::from_raw_parts_mut(optr.0.add(i * width + h * hd), hd) };
            o.fill(0.0);
            for (j, &p) in scores.iter().enumerate() {
                axpy(isa, p / sum, &vals[j * hd..(j + 1) * hd], o);
            }
        });
    };
    // Tiny decode steps run on the calling thread: a pool dispatch costs more than they do.
    if t * heads * (pos + t) * hd < 64 * 1024 {
        (0..t * heads).for_each(task);
    } else {
        pool::global().run(t * heads, &task);
    }
}
