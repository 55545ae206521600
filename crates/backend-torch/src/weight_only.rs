//! The f32, int8 and NF4 weight-only products for a few tokens (`csrc/weight_only.cpp`, compiled by
//! build.rs against libtorch's headers and run on libtorch's thread pool), behind checked safe
//! functions: every shape, dtype, device and contiguity is checked here, once, before the C++ sees
//! a pointer.
//!
//! Why they exist: libtorch has no CPU op that multiplies a token by bench-backend's int8 or NF4
//! codes without first writing the whole matrix out in floats (its `_weight_int8pack_mm` measured
//! slower than that expansion; nothing takes an NF4 code book), so a quantized model read four to
//! eight times more memory per token than it holds. And libtorch's f32 `linear` of one token (its
//! BLAS's GEMV) reads a matrix larger than the caches at about half the machine's copy bandwidth
//! on the AMD EPYC this project measures on. Larger batches (prefill) keep libtorch's GEMM (after
//! the expansion, for quantized weights), where the work per byte is high. `--kernels stock`
//! turns all of this off.

use tch::{Device, Kind, Tensor};

/// The tiers of `csrc/weight_only.cpp`, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Plain C++ loops.
    Portable = 0,
    /// AVX2 + FMA.
    Avx2 = 1,
    /// AVX-512 F + BW.
    Avx512 = 2,
}

impl Tier {
    /// The name reports show.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Portable => "portable",
            Tier::Avx2 => "avx2",
            Tier::Avx512 => "avx512",
        }
    }

    /// The best tier this CPU runs (detected once by the C++ side).
    pub fn best() -> Tier {
        // SAFETY: takes no arguments; reads the CPU's feature flags.
        match unsafe { llama3_bench_weight_only_best_tier() } {
            2 => Tier::Avx512,
            1 => Tier::Avx2,
            _ => Tier::Portable,
        }
    }

    /// Every tier this CPU runs, lowest first (the tests run each).
    pub fn available() -> Vec<Tier> {
        [Tier::Portable, Tier::Avx2, Tier::Avx512].into_iter().filter(|&t| t <= Tier::best()).collect()
    }
}

/// Token counts up to this run the kernels; more go through expansion + libtorch's GEMM.
pub const MAX_TOKENS: i64 = 4;

extern "C" {
    fn llama3_bench_weight_only_best_tier() -> i32;
    fn llama3_bench_f32_matmul(tier: i32, x: *const f32, w: *const f32, y: *mut f32, m: i64, n: i64, k: i64) -> i32;
    fn llama3_bench_int8_matmul(tier: i32, x: *const f32, q: *const i8, scales: *const f32, y: *mut f32, m: i64, n: i64, k: i64) -> i32;
    fn llama3_bench_nf4_matmul(
        tier: i32,
        x: *const f32,
        packed: *const u8,
        absmax: *const f32,
        codebook: *const f32,
        y: *mut f32,
        m: i64,
        n: i64,
        k: i64,
    ) -> i32;
}

/// Whether `t` is a contiguous CPU tensor of `kind` with exactly `shape`.
fn is(t: &Tensor, kind: Kind, shape: &[i64]) -> bool {
    t.device() == Device::Cpu && t.kind() == kind && t.is_contiguous() && t.size() == shape
}

/// `x` as `(m, k)` contiguous f32 rows, or `None` when the kernels do not apply (not on the CPU,
/// more than [`MAX_TOKENS`] rows, a different `k`).
fn rows(x: &Tensor, k: i64) -> Option<(Tensor, i64)> {
    let size = x.size();
    let (&last, lead) = size.split_last()?;
    let m: i64 = lead.iter().product();
    if x.device() != Device::Cpu || last != k || m < 1 || m > MAX_TOKENS {
        return None;
    }
    Some((x.to_kind(Kind::Float).reshape([m, k]).contiguous(), m))
}

/// The `(m, n)` result as `x`'s leading dims + `n`, in `x`'s kind.
fn shaped(y: Tensor, x: &Tensor, n: i64) -> Tensor {
    let mut shape = x.size();
    *shape.last_mut().expect("x has a last dim") = n;
    y.view(shape.as_slice()).to_kind(x.kind())
}

/// Runs `kernel(x rows, y, m)` for `x` as `(m, k)` f32 rows (see [`rows`]) into a fresh `(m, n)`
/// f32 output, and shapes the result like `x`; `None` when `x` does not fit or the C++ reports a
/// failure. The caller has checked its weight tensors.
fn run(x: &Tensor, n: i64, k: i64, kernel: impl FnOnce(*const f32, *mut f32, i64) -> i32) -> Option<Tensor> {
    let (x2, m) = rows(x, k)?;
    let y = Tensor::empty([m, n], (Kind::Float, Device::Cpu));
    // x2 and y stay alive across the call: it reads m * k values of x2 and writes m * n of y.
    let status = kernel(x2.data_ptr() as *const f32, y.data_ptr() as *mut f32, m);
    (status == 0).then(|| shaped(y, x, n))
}

/// `(n, k)` of a 2-D tensor.
fn dims2(t: &Tensor) -> Option<(i64, i64)> {
    match t.size()[..] {
        [n, k] => Some((n, k)),
        _ => None,
    }
}

/// `x · wᵀ` for a dense f32 matrix `w` `(n, k)`, on `tier`; `None` when the kernel does not apply
/// (see [`rows`], `x` not f32, or `w` not a contiguous f32 CPU tensor), and the caller runs
/// libtorch's `linear`.
pub fn f32_matmul(tier: Tier, x: &Tensor, w: &Tensor) -> Option<Tensor> {
    let (n, k) = dims2(w)?;
    if x.kind() != Kind::Float || !is(w, Kind::Float, &[n, k]) {
        return None;
    }
    // SAFETY: w is a contiguous (n, k) f32 CPU tensor, checked above; `run` passes (m, k) and
    // (m, n) f32 buffers.
    run(x, n, k, |x, y, m| unsafe { llama3_bench_f32_matmul(tier as i32, x, w.data_ptr() as *const f32, y, m, n, k) })
}

/// `x · (q · scales)ᵀ` for int8 codes `q` `(n, k)` and f32 row scales `(n, 1)`, on `tier` (lowered
/// to what the CPU has); `None` when the kernel does not apply (see [`rows`], or `q` / `scales`
/// not contiguous CPU tensors of those shapes), and the caller expands instead.
pub fn int8_matmul(tier: Tier, x: &Tensor, q: &Tensor, scales: &Tensor) -> Option<Tensor> {
    let (n, k) = dims2(q)?;
    if !is(q, Kind::Int8, &[n, k]) || !is(scales, Kind::Float, &[n, 1]) {
        return None;
    }
    // SAFETY: q (n, k) i8 and scales (n, 1) f32 are contiguous CPU tensors, checked above; `run`
    // passes (m, k) and (m, n) f32 buffers.
    run(x, n, k, |x, y, m| unsafe {
        llama3_bench_int8_matmul(tier as i32, x, q.data_ptr() as *const i8, scales.data_ptr() as *const f32, y, m, n, k)
    })
}

/// `x · Wᵀ` for the NF4 matrix `W` `(n, k)` given as `packed` `(n, k/2)` uint8 (the even index in
/// the high nibble), `absmax` `(n, k/64, 1)` f32 and the 16-entry f32 `codebook`, on `tier`;
/// `None` when the kernel does not apply, as for [`int8_matmul`].
pub fn nf4_matmul(tier: Tier, x: &Tensor, packed: &Tensor, absmax: &Tensor, codebook: &Tensor) -> Option<Tensor> {
    let (n, half) = dims2(packed)?;
    let k = half * 2;
    if k % 64 != 0
        || !is(packed, Kind::Uint8, &[n, half])
        || !is(absmax, Kind::Float, &[n, k / 64, 1])
        || !is(codebook, Kind::Float, &[16])
    {
        return None;
    }
    // SAFETY: packed (n, k/2) u8, absmax (n, k/64) f32 and codebook (16) f32 are contiguous CPU
    // tensors, checked above, with k a multiple of 64; `run` passes (m, k) and (m, n) f32 buffers.
    run(x, n, k, |x, y, m| unsafe {
        let (p, a, c) = (packed.data_ptr() as *const u8, absmax.data_ptr() as *const f32, codebook.data_ptr() as *const f32);
        llama3_bench_nf4_matmul(tier as i32, x, p, a, c, y, m, n, k)
    })
}
