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
    fn llama3_bench_f32_matmul(tier: i32, x: *const f32, w: *const f32, y: *mut f32, m: i64, n: i64, k: i64, add: i32) -> i32;
    fn llama3_bench_int8_matmul(tier: i32, x: *const f32, q: *const i8, scales: *const f32, y: *mut f32, m: i64, n: i64, k: i64, add: i32) -> i32;
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
        add: i32,
    ) -> i32;
}

/// Whether `t` is a contiguous CPU tensor of `kind` with exactly `shape`.
pub(crate) fn is(t: &Tensor, kind: Kind, shape: &[i64]) -> bool {
    t.device() == Device::Cpu && t.kind() == kind && t.is_contiguous() && t.size() == shape
}

/// `(n, k)` of a 2-D tensor.
fn dims2(t: &Tensor) -> Option<(i64, i64)> {
    match t.size()[..] {
        [n, k] => Some((n, k)),
        _ => None,
    }
}

/// A weight matrix `(n, k)` in one of the kernels' formats, its tensors checked (contiguous CPU
/// tensors of the right kinds and shapes) when it is made: the only way to reach the C++.
#[derive(Clone, Copy)]
pub enum Matrix<'a> {
    /// `w` `(n, k)` f32.
    F32 { w: &'a Tensor, n: i64, k: i64 },
    /// int8 codes `(n, k)` and f32 row scales `(n, 1)`.
    Int8 { q: &'a Tensor, scales: &'a Tensor, n: i64, k: i64 },
    /// `packed` `(n, k/2)` uint8 (the even index in the high nibble), `absmax` `(n, k/64, 1)` f32
    /// and the 16-entry f32 `codebook`; `k` a multiple of 64.
    Nf4 { packed: &'a Tensor, absmax: &'a Tensor, codebook: &'a Tensor, n: i64, k: i64 },
}

impl<'a> Matrix<'a> {
    /// A dense f32 matrix; `None` if `w` is not a contiguous 2-D f32 CPU tensor.
    pub fn f32(w: &'a Tensor) -> Option<Self> {
        let (n, k) = dims2(w)?;
        is(w, Kind::Float, &[n, k]).then_some(Matrix::F32 { w, n, k })
    }

    /// int8 codes with their scales; `None` unless `q` `(n, k)` int8 and `scales` `(n, 1)` f32 are
    /// contiguous CPU tensors.
    pub fn int8(q: &'a Tensor, scales: &'a Tensor) -> Option<Self> {
        let (n, k) = dims2(q)?;
        (is(q, Kind::Int8, &[n, k]) && is(scales, Kind::Float, &[n, 1])).then_some(Matrix::Int8 { q, scales, n, k })
    }

    /// NF4 codes; `None` unless the three tensors have the shapes and kinds above.
    pub fn nf4(packed: &'a Tensor, absmax: &'a Tensor, codebook: &'a Tensor) -> Option<Self> {
        let (n, half) = dims2(packed)?;
        let k = half * 2;
        let ok = k % 64 == 0 && is(packed, Kind::Uint8, &[n, half]) && is(absmax, Kind::Float, &[n, k / 64, 1]) && is(codebook, Kind::Float, &[16]);
        ok.then_some(Matrix::Nf4 { packed, absmax, codebook, n, k })
    }

    /// `(n, k)`: output and input widths.
    pub fn dims(&self) -> (i64, i64) {
        match *self {
            Matrix::F32 { n, k, .. } | Matrix::Int8 { n, k, .. } | Matrix::Nf4 { n, k, .. } => (n, k),
        }
    }

    /// `y = x · Wᵀ` (or `y += x · Wᵀ` with `add`: a residual add fused into the product) for `x`
    /// `m` rows of `k` values and `y` `m` rows of `n`, `m` from 1 to [`MAX_TOKENS`], on `tier`
    /// (lowered to what the CPU has). `false` (nothing written) when the lengths do not fit or the
    /// C++ reports a failure of libtorch's pool.
    pub fn product_into(&self, tier: Tier, x: &[f32], y: &mut [f32], add: bool) -> bool {
        let (n, k) = self.dims();
        let m = x.len() as i64 / k.max(1);
        if !(1..=MAX_TOKENS).contains(&m) || x.len() as i64 != m * k || y.len() as i64 != m * n {
            return false;
        }
        let (t, xp, yp, add) = (tier as i32, x.as_ptr(), y.as_mut_ptr(), i32::from(add));
        // SAFETY: the weight tensors were checked when `self` was made (contiguous CPU tensors of
        // the kinds and shapes the C++ reads, which `self` borrows, so they outlive the call); x
        // holds m * k values and y m * n, checked above.
        let status = unsafe {
            match *self {
                Matrix::F32 { w, .. } => llama3_bench_f32_matmul(t, xp, w.data_ptr() as *const f32, yp, m, n, k, add),
                Matrix::Int8 { q, scales, .. } => llama3_bench_int8_matmul(t, xp, q.data_ptr() as *const i8, scales.data_ptr() as *const f32, yp, m, n, k, add),
                Matrix::Nf4 { packed, absmax, codebook, .. } => {
                    let (p, a, c) = (packed.data_ptr() as *const u8, absmax.data_ptr() as *const f32, codebook.data_ptr() as *const f32);
                    llama3_bench_nf4_matmul(t, xp, p, a, c, yp, m, n, k, add)
                }
            }
        };
        status == 0
    }

    /// `x · Wᵀ` for a tensor `x` of any leading dims and last dim `k`, as a new tensor of `x`'s
    /// leading dims + `n` in `x`'s kind; `None` when the kernel does not apply (not on the CPU,
    /// more than [`MAX_TOKENS`] rows, another `k`) or the C++ reports a failure, and the caller
    /// runs libtorch instead.
    pub fn product(&self, tier: Tier, x: &Tensor) -> Option<Tensor> {
        let (n, k) = self.dims();
        let size = x.size();
        let (&last, lead) = size.split_last()?;
        let m: i64 = lead.iter().product();
        if x.device() != Device::Cpu || last != k || !(1..=MAX_TOKENS).contains(&m) {
            return None;
        }
        let x2 = x.to_kind(Kind::Float).reshape([m, k]).contiguous();
        let mut y = Tensor::empty([m, n], (Kind::Float, Device::Cpu));
        let ok = self.product_into(tier, f32_slice(&x2)?, f32_slice_mut(&mut y)?, false);
        let mut shape = size;
        *shape.last_mut().expect("x has a last dim") = n;
        ok.then(|| y.view(shape.as_slice()).to_kind(x.kind()))
    }
}

/// The values of a contiguous f32 CPU tensor; `None` for any other.
pub(crate) fn f32_slice(t: &Tensor) -> Option<&[f32]> {
    if t.device() != Device::Cpu || t.kind() != Kind::Float || !t.is_contiguous() {
        return None;
    }
    // SAFETY: a contiguous f32 CPU tensor holds numel() f32 values from data_ptr(), which live as
    // long as the tensor (borrowed for the slice's lifetime).
    Some(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, t.numel()) })
}

/// As [`f32_slice`], writable: `&mut` on the tensor handle stands for its storage (the tensors
/// this crate passes here are its own, never views shared with another live handle while written).
pub(crate) fn f32_slice_mut(t: &mut Tensor) -> Option<&mut [f32]> {
    if t.device() != Device::Cpu || t.kind() != Kind::Float || !t.is_contiguous() {
        return None;
    }
    // SAFETY: as in `f32_slice`; the handle is borrowed mutably for the slice's lifetime.
    Some(unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, t.numel()) })
}

/// `x · wᵀ` for a dense f32 matrix `w` `(n, k)`, on `tier`; `None` when the kernel does not apply
/// (see [`Matrix::product`], `x` not f32, or `w` not a contiguous f32 CPU tensor), and the caller
/// runs libtorch's `linear`.
pub fn f32_matmul(tier: Tier, x: &Tensor, w: &Tensor) -> Option<Tensor> {
    if x.kind() != Kind::Float {
        return None;
    }
    Matrix::f32(w)?.product(tier, x)
}

/// `x · (q · scales)ᵀ` for int8 codes `q` `(n, k)` and f32 row scales `(n, 1)`, on `tier`; `None`
/// when the kernel does not apply, and the caller expands instead.
pub fn int8_matmul(tier: Tier, x: &Tensor, q: &Tensor, scales: &Tensor) -> Option<Tensor> {
    Matrix::int8(q, scales)?.product(tier, x)
}

/// `x · Wᵀ` for the NF4 matrix `W` given as `packed`, `absmax` and `codebook` (see
/// [`Matrix::Nf4`]), on `tier`; `None` when the kernel does not apply, as for [`int8_matmul`].
pub fn nf4_matmul(tier: Tier, x: &Tensor, packed: &Tensor, absmax: &Tensor, codebook: &Tensor) -> Option<Tensor> {
    Matrix::nf4(packed, absmax, codebook)?.product(tier, x)
}
