//! The operations between a decode step's products (`csrc/decode_ops.cpp`: RMSNorm, rotation of
//! Q and K with the KV-cache write, causal grouped-query attention over the cache, SiLU × up),
//! each one call instead of libtorch's chain of small ops, behind checked safe functions: every
//! length, shape, kind and position is checked here before the C++ sees a pointer.
//!
//! Why they exist: on a small model libtorch's per-op cost (a few microseconds an op, RMSNorm six
//! ops, rotation a dozen) was about a quarter of a decode token's time on SmolLM2 (measured: 7.6 of
//! 27.6 ms at 2 threads on the AVX2 EPYC), with the products themselves at the machine's copy
//! bandwidth. The maths is the native backend's (`crates/cpu-kernels/src/ops.rs`), tested here
//! against libtorch's own ops (`tests/decode_ops.rs`).

use bench_backend::config::RopeLayout;
use tch::{Kind, Tensor};

use crate::weight_only::{f32_slice, is, Tier};

extern "C" {
    fn llama3_bench_rms_norm(x: *const f32, w: *const f32, eps: f32, y: *mut f32, m: i64, dim: i64);
    fn llama3_bench_rope_qkv(
        qkv: *const f32,
        cos: *const f32,
        sin: *const f32,
        interleaved: i32,
        q: *mut f32,
        k_cache: *mut f32,
        v_cache: *mut f32,
        pos: i64,
        m: i64,
        heads: i64,
        kv_heads: i64,
        hd: i64,
        capacity: i64,
    );
    fn llama3_bench_attention(
        tier: i32,
        q: *const f32,
        k_cache: *const f32,
        v_cache: *const f32,
        out: *mut f32,
        pos: i64,
        m: i64,
        heads: i64,
        kv_heads: i64,
        hd: i64,
        capacity: i64,
    ) -> i32;
    fn llama3_bench_silu_mul(gate_up: *const f32, y: *mut f32, m: i64, ffn: i64);
}

/// `y = x / sqrt(mean(x²) + eps) * w` row by row, `w` a contiguous f32 CPU tensor of one row's
/// width; `false` (nothing written) when the lengths do not fit.
pub fn rms_norm(x: &[f32], w: &Tensor, eps: f64, y: &mut [f32]) -> bool {
    let Some(w) = f32_slice(w) else { return false };
    let dim = w.len();
    if dim == 0 || !x.len().is_multiple_of(dim) || y.len() != x.len() {
        return false;
    }
    // SAFETY: x and y hold m * dim values and w dim, checked above.
    unsafe { llama3_bench_rms_norm(x.as_ptr(), w.as_ptr(), eps as f32, y.as_mut_ptr(), (x.len() / dim) as i64, dim as i64) };
    true
}

/// `y = silu(gate) * up` for `m` rows: `gate_up` `(m, 2 ffn)` and `y` `(m, ffn)`; `false` when the
/// lengths do not fit.
pub fn silu_mul(gate_up: &[f32], y: &mut [f32], m: usize) -> bool {
    if m == 0 || !y.len().is_multiple_of(m) || gate_up.len() != 2 * y.len() {
        return false;
    }
    // SAFETY: gate_up holds m * 2 ffn values and y m * ffn, checked above.
    unsafe { llama3_bench_silu_mul(gate_up.as_ptr(), y.as_mut_ptr(), m as i64, (y.len() / m) as i64) };
    true
}

/// Shapes of a decode step's attention: query heads, KV heads, values per head.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// A layer's KV cache: two contiguous f32 CPU tensors `(1, kv_heads, capacity, head_dim)`,
/// checked when it is made.
pub struct Cache<'a> {
    k: &'a mut Tensor,
    v: &'a mut Tensor,
    capacity: usize,
}

impl<'a> Cache<'a> {
    /// `None` unless both tensors are contiguous f32 CPU tensors of shape
    /// `(1, kv_heads, capacity, head_dim)` for `heads`' sizes.
    pub fn new(k: &'a mut Tensor, v: &'a mut Tensor, heads: Heads) -> Option<Self> {
        let capacity = *k.size().get(2)?;
        let shape = [1, heads.kv_heads as i64, capacity, heads.head_dim as i64];
        (is(k, Kind::Float, &shape) && is(v, Kind::Float, &shape)).then_some(Cache { k, v, capacity: capacity as usize })
    }
}

/// Splits `m` rows of a stacked Q/K/V product (`qkv`: `(m, (heads + 2 kv_heads) head_dim)`),
/// rotates Q into `q` `(m, heads head_dim)` and K into the cache, and copies V into the cache, at
/// positions `pos..pos+m`; `cos` / `sin` are the model's `(positions, head_dim / 2)` f32 tables.
/// `false` (nothing written) when a length does not fit or `pos + m` passes the cache or tables.
#[allow(clippy::too_many_arguments)]
pub fn rope_qkv(qkv: &[f32], cos: &Tensor, sin: &Tensor, layout: RopeLayout, heads: Heads, pos: usize, q: &mut [f32], cache: &mut Cache) -> bool {
    let Heads { heads: h, kv_heads: kv, head_dim: hd } = heads;
    let (Some(cos), Some(sin)) = (f32_slice(cos), f32_slice(sin)) else { return false };
    let width = (h + 2 * kv) * hd;
    if width == 0 || hd % 2 != 0 || !qkv.len().is_multiple_of(width) {
        return false;
    }
    let m = qkv.len() / width;
    let half = hd / 2;
    if m == 0 || q.len() != m * h * hd || pos + m > cache.capacity || cos.len() < (pos + m) * half || sin.len() != cos.len() {
        return false;
    }
    let interleaved = i32::from(layout == RopeLayout::Interleaved);
    let (k_cache, v_cache) = (cache.k.data_ptr() as *mut f32, cache.v.data_ptr() as *mut f32);
    // SAFETY: qkv holds m rows of width values and q m * heads * hd; the tables hold hd/2 values
    // for positions 0..pos+m, the caches kv * capacity * hd with pos + m <= capacity (checked above
    // and in `Cache::new`); the caches are borrowed mutably, so nothing else reads them meanwhile.
    unsafe {
        llama3_bench_rope_qkv(
            qkv.as_ptr(),
            cos.as_ptr().add(pos * half),
            sin.as_ptr().add(pos * half),
            interleaved,
            q.as_mut_ptr(),
            k_cache,
            v_cache,
            pos as i64,
            m as i64,
            h as i64,
            kv as i64,
            hd as i64,
            cache.capacity as i64,
        )
    };
    true
}

/// Causal attention of `q` (`m` rows of `heads head_dim`, at positions `pos..pos+m`) over the
/// cache, which must already hold positions `0..pos+m`, into `out` (same shape as `q`), on `tier`
/// (lowered to what the CPU has). `false` (nothing written) when a length does not fit or the C++
/// reports a failure of libtorch's pool.
pub fn attention(tier: Tier, q: &[f32], cache: &Cache, heads: Heads, pos: usize, out: &mut [f32]) -> bool {
    let Heads { heads: h, kv_heads: kv, head_dim: hd } = heads;
    let width = h * hd;
    if width == 0 || kv == 0 || h % kv != 0 || !q.len().is_multiple_of(width) || out.len() != q.len() {
        return false;
    }
    let m = q.len() / width;
    if m == 0 || pos + m > cache.capacity {
        return false;
    }
    // SAFETY: q and out hold m * heads * hd values, the caches kv * capacity * hd with
    // pos + m <= capacity (checked above and in `Cache::new`); heads is a multiple of kv.
    let status = unsafe {
        llama3_bench_attention(
            tier as i32,
            q.as_ptr(),
            cache.k.data_ptr() as *const f32,
            cache.v.data_ptr() as *const f32,
            out.as_mut_ptr(),
            pos as i64,
            m as i64,
            h as i64,
            kv as i64,
            hd as i64,
            cache.capacity as i64,
        )
    };
    status == 0
}
