//! Weight formats the kernels multiply with, their byte layouts, and plain reference code.
//!
//! ggml block formats (layouts from ggml's `ggml-common.h`; the maths from `ggml-quants.c`'s
//! `dequantize_row_*`), each a run of fixed-size blocks along a row:
//!
//! | type | values/block | bytes | value |
//! |---|---|---|---|
//! | Q4_0 | 32 | 18: f16 d, 16 B nibbles | `d * (q - 8)`, q in 0..16; low nibbles = values 0..16, high = 16..32 |
//! | Q4_1 | 32 | 20: f16 d, f16 m, 16 B | `d * q + m` |
//! | Q5_0 | 32 | 22: f16 d, u32 qh (fifth bits), 16 B nibbles | `d * (q - 16)`, q in 0..32; bit j of qh is value j's bit 4 |
//! | Q5_1 | 32 | 24: f16 d, f16 m, u32 qh, 16 B | `d * q + m` |
//! | Q8_0 | 32 | 34: f16 d, 32 i8 | `d * q` |
//! | IQ4_NL | 32 | 18: f16 d, 16 B nibbles (Q4_0's order) | `d * kvalues_iq4nl[q]` ([`reference::IQ4NL_CODEBOOK`]) |
//! | IQ4_XS | 256 | 136: f16 d, u16 scales_h, 4 B scales_l, 128 B nibbles | `d * (ls_j - 32) * kvalues_iq4nl[q]`, 6-bit `ls_j` per 32-value sub-block j |
//! | Q2_K | 256 | 84: 16 B scales (low nibble scale, high nibble min), 64 B 2-bit codes, f16 d, f16 dmin | `d * sc_i * q - dmin * m_i` per 16-value group i |
//! | Q3_K | 256 | 110: 32 B high bits, 64 B 2-bit codes, 12 B packed 6-bit scales, f16 d | `d * (sc_i - 32) * (q - 4)`, q in 0..8, per 16-value group i |
//! | Q4_K | 256 | 144: f16 d, f16 dmin, 12 B packed 6-bit scales/mins, 128 B nibbles | `d * sc_j * q - dmin * m_j` per 32-value sub-block j |
//! | Q5_K | 256 | 176: as Q4_K + 32 B of fifth bits | as Q4_K with q in 0..32 |
//! | Q6_K | 256 | 210: 128 B low nibbles, 64 B high 2-bit pairs, 16 i8 scales, f16 d | `d * sc_i * (q - 32)` per 16-value group i |
//!
//! And this project's own load-time formats (bench-core `quant`), repacked at load into 32-value
//! blocks so they share the ggml kernels' inner loops:
//! - [`Int8`](WeightType::Int8): i8 codes, one f32 scale per row;
//! - [`Nf4`](WeightType::Nf4): 4-bit NormalFloat, blocks of 64 values (bench-core's): the f32
//!   absmax, then two runs of 16 bytes in Q4_0's nibble order.
//!
//! For the ggml types, activations are quantized once per product the way ggml quantizes them
//! for that weight type (its `vec_dot_type`, [`ActivationFormat`]): Q8_0 blocks (f16 scale) for
//! Q4_0, Q5_0, Q8_0 and IQ4_NL; Q8_1 (f16 scale, f16 scaled sum) for Q4_1 and Q5_1; Q8_K (one f32
//! scale per 256 values, sums per 16) for the K-quants and IQ4_XS. Each is held as [`BlockQ8`]s of
//! 32 codes, so the integer sums of every product are ggml's and only the order in which floats
//! are added differs (between tiers too: a test holds every SIMD tier to the scalar one within
//! 1e-6 of the product's magnitude; backend-llamacpp's `ggml_arithmetic` test holds every tier to
//! ggml's own `vec_dot` the same way, and the quantized activations to ggml's bit for bit). F16
//! and BF16 rows take the activations rounded to their own type, as ggml does (`matmul`).
//!
//! int8 and NF4 take int16 activations ([`ActivationFormat::I16`], [`ActivationFormat::I16Nf4`];
//! the torch framework's AVX2 int8 / NF4 rows do the same): one f32 scale `s = max|x| / 32767`
//! per token and `q = round_half_even(x / s)` (through `x * (32767 / max|x|)`), so a pair of
//! codes costs one `vpmaddwd` instead of two conversions to f32 and two FMAs. NF4's code book is
//! taken as int16 too ([`reference::NF4_CODEBOOK_I16`], scale [`reference::NF4_CODE_SCALE`] =
//! 1024). Products sum each block (int8: 32 values; NF4: 64) exactly in i32, convert that sum to
//! f32 (NF4: times the block's absmax), and add block `b` into float lane `b % 8`; the 8 lanes are
//! added as `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))` and the total multiplied by
//! `row_scale * s` (int8) or `s * (1 / 1024)` (NF4). Every tier follows that order, so all give
//! the same result bit for bit. Against dequantize-then-multiply in f32 each product term
//! `w_i x_i` is off by at most `|w_i| max|x| / 65534` (activation rounding) plus, for NF4,
//! `absmax max|x| / 2048` (code book rounding). Prompts of 4 or more tokens still expand the rows
//! to f32 and use gemm (`matmul`), i.e. the exact f32 maths.

pub mod interleave;
pub mod reference;
mod scalar;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_ops {
    //! The f32 helpers of `x86.rs` that `ops` uses.
    pub(crate) use super::x86::{axpy_f32_avx2, dot_f32_avx2};
}
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::cpu::{Isa, Supported};

/// A weight matrix's storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightType {
    /// ggml Q4_0.
    Q4_0,
    /// ggml Q4_1.
    Q4_1,
    /// ggml Q5_0.
    Q5_0,
    /// ggml Q5_1.
    Q5_1,
    /// ggml Q8_0.
    Q8_0,
    /// ggml IQ4_NL (type 20).
    IQ4NL,
    /// ggml IQ4_XS (type 23).
    IQ4XS,
    /// ggml Q2_K.
    Q2K,
    /// ggml Q3_K.
    Q3K,
    /// ggml Q4_K.
    Q4K,
    /// ggml Q5_K.
    Q5K,
    /// ggml Q6_K.
    Q6K,
    /// Symmetric int8 with one scale per row: each row is `4` bytes of f32 scale then `cols` i8.
    Int8,
    /// NF4 repacked: per 64 values, the f32 absmax, then for each half of 32 values 16 bytes of
    /// codes (low nibbles = values 0..16 of the half, high = 16..32).
    Nf4,
    /// Dense f32 (little-endian).
    F32,
    /// Dense IEEE f16.
    F16,
    /// Dense bfloat16.
    BF16,
}

impl WeightType {
    /// Values per block (1 for dense types, the row for int8 whose scale is per row).
    pub fn block_values(self) -> usize {
        match self {
            WeightType::Q4_0 | WeightType::Q4_1 | WeightType::Q5_0 | WeightType::Q5_1 | WeightType::Q8_0 | WeightType::IQ4NL | WeightType::Int8 => 32,
            WeightType::Nf4 => 64,
            WeightType::Q4K | WeightType::Q5K | WeightType::Q6K | WeightType::IQ4XS | WeightType::Q2K | WeightType::Q3K => 256,
            WeightType::F32 | WeightType::F16 | WeightType::BF16 => 1,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            WeightType::Q4_0 => 18,
            WeightType::Q4_1 => 20,
            WeightType::Q5_0 => 22,
            WeightType::Q5_1 => 24,
            WeightType::Q8_0 => 34,
            WeightType::IQ4NL => 18,
            WeightType::IQ4XS => 136,
            WeightType::Q2K => 84,
            WeightType::Q3K => 110,
            WeightType::Q4K => 144,
            WeightType::Q5K => 176,
            WeightType::Q6K => 210,
            WeightType::Int8 => 32,
            WeightType::Nf4 => 36,
            WeightType::F32 => 4,
            WeightType::F16 | WeightType::BF16 => 2,
        }
    }

    /// How products quantize the activations for this type (ggml's `vec_dot_type`; int8 and NF4: int16), or `None`
    /// for the dense types, which take f32 activations.
    pub fn activation_format(self) -> Option<ActivationFormat> {
        match self {
            WeightType::Q4_0 | WeightType::Q5_0 | WeightType::Q8_0 | WeightType::IQ4NL => Some(ActivationFormat::Q8_0),
            WeightType::Q4_1 | WeightType::Q5_1 => Some(ActivationFormat::Q8_1),
            WeightType::Q2K | WeightType::Q3K | WeightType::Q4K | WeightType::Q5K | WeightType::Q6K | WeightType::IQ4XS => Some(ActivationFormat::Q8K),
            WeightType::Int8 => Some(ActivationFormat::I16),
            WeightType::Nf4 => Some(ActivationFormat::I16Nf4),
            WeightType::F32 | WeightType::F16 | WeightType::BF16 => None,
        }
    }

    /// Whether products quantize the activations first (the ggml block types to [`BlockQ8`]s,
    /// int8 and NF4 to int16; see [`WeightType::activation_format`]); the dense types take f32.
    pub fn quantizes_activations(self) -> bool {
        self.activation_format().is_some()
    }

    /// Bytes of one row of `cols` values, or `None` when `cols` is not a whole number of blocks.
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        if cols == 0 || !cols.is_multiple_of(self.block_values()) {
            return None;
        }
        let blocks = cols / self.block_values();
        let extra = if self == WeightType::Int8 { 4 } else { 0 };
        blocks.checked_mul(self.block_bytes())?.checked_add(extra)
    }

    /// A short label ("q4_1", "int8", "bf16").
    pub fn label(self) -> &'static str {
        match self {
            WeightType::Q4_0 => "q4_0",
            WeightType::Q4_1 => "q4_1",
            WeightType::Q5_0 => "q5_0",
            WeightType::Q5_1 => "q5_1",
            WeightType::Q8_0 => "q8_0",
            WeightType::IQ4NL => "iq4_nl",
            WeightType::IQ4XS => "iq4_xs",
            WeightType::Q2K => "q2_k",
            WeightType::Q3K => "q3_k",
            WeightType::Q4K => "q4_k",
            WeightType::Q5K => "q5_k",
            WeightType::Q6K => "q6_k",
            WeightType::Int8 => "int8",
            WeightType::Nf4 => "nf4",
            WeightType::F32 => "f32",
            WeightType::F16 => "f16",
            WeightType::BF16 => "bf16",
        }
    }
}

/// How the activations a weight type is multiplied with are quantized. The ggml types as ggml
/// does (`vec_dot_type` in ggml-cpu's type traits; the quantizers are `quantize_row_q8_0` /
/// `_q8_1` of ggml-cpu's x86 code and `quantize_row_q8_K_ref` of `ggml-quants.c`, which x86
/// uses), held as [`BlockQ8`]s; int8 and NF4 to int16, one f32 scale per token row
/// ([`quantize_row_i16`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivationFormat {
    /// Blocks of 32: `d = amax / 127` stored as f16, codes `round_even(x · 127 / amax)`.
    Q8_0,
    /// As Q8_0, and `s = d · Σ codes` (d before its f16 rounding) stored as f16.
    Q8_1,
    /// Blocks of 256: `max` the value of largest magnitude (first one), `iscale = -127 / max`,
    /// codes `min(127, round_even(iscale · x))`, `d = 1 / iscale` as f32, code sums per 16.
    Q8K,
    /// int16 per token row, in index order (for int8 weights): `s = max|x| / 32767` (0 when
    /// `x` is all zeros, then every code is 0), codes `round_even(x · (32767 / max|x|))`, in
    /// -32767..=32767.
    I16,
    /// As [`ActivationFormat::I16`], each 64-value block stored in NF4 order
    /// ([`reference::nf4_position`]), for NF4 weights.
    I16Nf4,
}

impl ActivationFormat {
    /// All formats, in [`ActivationFormat::index`] order.
    pub const ALL: [ActivationFormat; 5] =
        [ActivationFormat::Q8_0, ActivationFormat::Q8_1, ActivationFormat::Q8K, ActivationFormat::I16, ActivationFormat::I16Nf4];

    /// The formats held as [`BlockQ8`]s ([`quantize_row_q8`]), the first of [`ActivationFormat::ALL`].
    pub const Q8: [ActivationFormat; 3] = [ActivationFormat::Q8_0, ActivationFormat::Q8_1, ActivationFormat::Q8K];

    /// The int16 formats ([`quantize_row_i16`]), the last of [`ActivationFormat::ALL`].
    pub const I16_FORMATS: [ActivationFormat; 2] = [ActivationFormat::I16, ActivationFormat::I16Nf4];

    /// Position in [`ActivationFormat::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the format is held as [`BlockQ8`]s (else as int16 values and a scale per row).
    pub fn is_q8(self) -> bool {
        !matches!(self, ActivationFormat::I16 | ActivationFormat::I16Nf4)
    }

    /// Values per block of the format (a multiple of 32; the int16 formats: the weight type's).
    pub fn block_values(self) -> usize {
        match self {
            ActivationFormat::Q8_0 | ActivationFormat::Q8_1 | ActivationFormat::I16 => 32,
            ActivationFormat::I16Nf4 => 64,
            ActivationFormat::Q8K => 256,
        }
    }
}

/// 32 activations quantized in one of the [`ActivationFormat`]s: `x ≈ d * qs`; `s ≈ d * Σ qs`
/// (Q8_1: ggml's f16 `s`); the two half sums of `qs` (Q8_K's `bsums`; used by types with an
/// offset). Q8_K's 256-value blocks are 8 of these with one `d`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct BlockQ8 {
    /// Scale (Q8_0 / Q8_1: the f16 value as f32).
    pub d: f32,
    /// The scaled sum of `qs` (Q8_1: ggml's f16 value as f32).
    pub s: f32,
    /// Codes in -127..=127.
    pub qs: [i8; 32],
    /// Sums of `qs[0..16]` and `qs[16..32]` (Q6_K's offset of 32 is per 16 values).
    pub halves: [i32; 2],
}

/// Quantizes one row of activations in `format` (`x.len() == 32 * out.len()`, a whole number of
/// the format's blocks) on tier `isa`, clamped to what this CPU has ([`Isa::clamped`]): asking
/// for a tier the CPU lacks runs the best one it has. Every tier gives the same blocks.
pub fn quantize_row_q8(isa: Isa, format: ActivationFormat, x: &[f32], out: &mut [BlockQ8]) {
    quantize_row_q8_on(Supported::clamp(isa), format, x, out)
}

/// [`quantize_row_q8`] on a tier already clamped.
pub(crate) fn quantize_row_q8_on(isa: Supported, format: ActivationFormat, x: &[f32], out: &mut [BlockQ8]) {
    assert!(
        format.is_q8() && x.len() == out.len() * 32 && x.len().is_multiple_of(format.block_values()),
        "{} activations are not a whole number of {format:?} blocks ({} blocks given)",
        x.len(),
        out.len()
    );
    match (isa.isa(), format) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as below; whole 256-value blocks checked above.
        (Isa::Avx2 | Isa::Avx512Vnni, ActivationFormat::Q8K) => unsafe { x86::quantize_row_q8k_avx2(x, out) },
        (_, ActivationFormat::Q8K) => scalar::quantize_row_q8k(x, out),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a `Supported` tier of at least Avx2 means AVX2/FMA/F16C were detected; lengths checked above.
        (Isa::Avx2 | Isa::Avx512Vnni, _) => unsafe { x86::quantize_row_q8_avx2(format, x, out) },
        _ => scalar::quantize_row_q8(format, x, out),
    }
}

/// Quantizes one row of activations to int16 in `format` ([`ActivationFormat::I16`] or
/// [`ActivationFormat::I16Nf4`]; `out.len() == x.len()`, a whole number of the format's blocks)
/// on tier `isa`, clamped to what this CPU has, and returns the row's scale `s`. Every tier gives
/// the same codes and scale.
pub fn quantize_row_i16(isa: Isa, format: ActivationFormat, x: &[f32], out: &mut [i16]) -> f32 {
    quantize_row_i16_on(Supported::clamp(isa), format, x, out)
}

/// [`quantize_row_i16`] on a tier already clamped.
pub(crate) fn quantize_row_i16_on(isa: Supported, format: ActivationFormat, x: &[f32], out: &mut [i16]) -> f32 {
    assert!(
        !format.is_q8() && x.len() == out.len() && x.len().is_multiple_of(format.block_values()),
        "{} activations into {} int16 values are not a whole number of {format:?} blocks",
        x.len(),
        out.len()
    );
    match isa.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a `Supported` tier of at least Avx2 means AVX2/FMA/F16C were detected; lengths
        // (equal, whole 32- or 64-value blocks) checked above.
        Isa::Avx2 | Isa::Avx512Vnni => unsafe { x86::quantize_row_i16_avx2(format == ActivationFormat::I16Nf4, x, out) },
        _ => scalar::quantize_row_i16(format == ActivationFormat::I16Nf4, x, out),
    }
}

/// Whether a row of `ty` (`row` bytes) matches `n` int16 activations.
#[inline]
fn i16_row_fits(ty: WeightType, row: usize, n: usize) -> bool {
    match ty {
        WeightType::Int8 => n.is_multiple_of(32) && row == 4 + n,
        WeightType::Nf4 => n.is_multiple_of(64) && row == n / 64 * 36,
        _ => false,
    }
}

/// Dot product of one int8 or NF4 weight row with int16 activations `a` (scale `s`, in the
/// type's [`WeightType::activation_format`]), in the order the module docs give. Panics if the
/// lengths disagree or `ty` is not int8 / NF4.
#[inline]
pub(crate) fn dot_i16(isa: Supported, ty: WeightType, row: &[u8], a: &[i16], s: f32) -> f32 {
    assert!(i16_row_fits(ty, row.len(), a.len()), "{} row of {} bytes vs {} int16 activations", ty.label(), row.len(), a.len());
    match isa.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the tier is `Supported` (detected on this CPU); type and lengths checked above.
        Isa::Avx2 => unsafe { x86::dot_i16_avx2(ty, row, a, s) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for the AVX-512 VNNI tier.
        Isa::Avx512Vnni => unsafe { x86::dot_i16_vnni(ty, row, a, s) },
        _ => scalar::dot_i16(ty, row, a, s),
    }
}

/// [`dot_i16`] of one weight row with four token rows at once (all of `a`'s rows one length).
#[inline]
pub(crate) fn dot_i16_x4(isa: Supported, ty: WeightType, row: &[u8], a: [&[i16]; 4], s: [f32; 4]) -> [f32; 4] {
    assert!(
        a.iter().all(|r| r.len() == a[0].len()) && i16_row_fits(ty, row.len(), a[0].len()),
        "{} row of {} bytes vs int16 activation rows of {:?} values",
        ty.label(),
        row.len(),
        a.map(|r| r.len())
    );
    match isa.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot_i16`.
        Isa::Avx2 => unsafe { x86::dot_i16_x4_avx2(ty, row, a, s) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot_i16`.
        Isa::Avx512Vnni => unsafe { x86::dot_i16_x4_vnni(ty, row, a, s) },
        _ => std::array::from_fn(|n| scalar::dot_i16(ty, row, a[n], s[n])),
    }
}

/// Bytes of a row of `ty` that `blocks` Q8 activation blocks cover (`None` if they do not cover
/// whole blocks of `ty`). Cheap (no division by a run-time value): the kernels check it per row.
#[inline]
fn q8_row_bytes(ty: WeightType, blocks: usize) -> Option<usize> {
    match ty.block_values() {
        32 => Some(blocks * ty.block_bytes()),
        256 if blocks.is_multiple_of(8) => Some(blocks / 8 * ty.block_bytes()),
        _ => None,
    }
}

/// Dot product of one weight row (`row`, bytes of type `ty`) with quantized activations `a`
/// (the row's values / 32 blocks). Panics if the lengths disagree or `ty` takes no Q8 activations.
#[inline]
pub(crate) fn dot_q8(isa: Supported, ty: WeightType, row: &[u8], a: &[BlockQ8]) -> f32 {
    assert!(
        ty.activation_format().is_some_and(ActivationFormat::is_q8) && q8_row_bytes(ty, a.len()) == Some(row.len()),
        "{} row of {} bytes vs {} activation blocks",
        ty.label(),
        row.len(),
        a.len()
    );
    match isa.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the tier is `Supported` (detected on this CPU); lengths and type checked above.
        Isa::Avx2 => unsafe { x86::dot_q8_avx2(ty, row, a) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for the AVX-512 VNNI tier.
        Isa::Avx512Vnni => unsafe { x86::dot_q8_vnni(ty, row, a) },
        _ => scalar::dot_q8(ty, row, a),
    }
}

/// [`dot_q8`] of one weight row with four token rows at once (all of `a`'s rows the same length).
#[inline]
pub(crate) fn dot_q8_x4(isa: Supported, ty: WeightType, row: &[u8], a: [&[BlockQ8]; 4]) -> [f32; 4] {
    assert!(
        ty.activation_format().is_some_and(ActivationFormat::is_q8)
            && a.iter().all(|r| r.len() == a[0].len())
            && q8_row_bytes(ty, a[0].len()) == Some(row.len()),
        "{} row of {} bytes vs activation rows of {:?} blocks",
        ty.label(),
        row.len(),
        a.map(|r| r.len())
    );
    match isa.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot_q8`.
        Isa::Avx2 => unsafe { x86::dot_q8_x4_avx2(ty, row, a) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot_q8`.
        Isa::Avx512Vnni => unsafe { x86::dot_q8_x4_vnni(ty, row, a) },
        _ => a.map(|r| scalar::dot_q8(ty, row, r)),
    }
}

/// Eight interleaved rows ([`interleave`]'s layout, `group` is their bytes) times one token's
/// activations: the 8 results in row order. Only for the SIMD tiers (the caller unpacks rows for
/// the scalar one); panics on the scalar tier, on a type that is not interleaved, or on lengths
/// that disagree.
#[inline]
pub(crate) fn dot_q8_group(isa: Supported, ty: WeightType, group: &[u8], a: &[BlockQ8]) -> [f32; 8] {
    assert!(
        interleave::applies(ty, interleave::GROUP) && q8_row_bytes(ty, a.len()).map(|b| b * interleave::GROUP) == Some(group.len()),
        "{} group of {} bytes vs {} activation blocks",
        ty.label(),
        group.len(),
        a.len()
    );
    match isa.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot_q8`.
        Isa::Avx2 => unsafe { x86::group_q8_avx2(ty, group, a) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot_q8`.
        Isa::Avx512Vnni => unsafe { x86::group_q8_vnni(ty, group, a) },
        _ => unreachable!("interleaved products run on the SIMD tiers only"),
    }
}

/// [`dot_q8_group`] with four tokens at once: `[token][row]`.
#[inline]
pub(crate) fn dot_q8_group_x4(isa: Supported, ty: WeightType, group: &[u8], a: [&[BlockQ8]; 4]) -> [[f32; 8]; 4] {
    assert!(
        interleave::applies(ty, interleave::GROUP)
            && a.iter().all(|r| r.len() == a[0].len())
            && q8_row_bytes(ty, a[0].len()).map(|b| b * interleave::GROUP) == Some(group.len()),
        "{} group of {} bytes vs activation rows of {:?} blocks",
        ty.label(),
        group.len(),
        a.map(|r| r.len())
    );
    match isa.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot_q8`.
        Isa::Avx2 => unsafe { x86::group_q8_x4_avx2(ty, group, a) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot_q8`.
        Isa::Avx512Vnni => unsafe { x86::group_q8_x4_vnni(ty, group, a) },
        _ => unreachable!("interleaved products run on the SIMD tiers only"),
    }
}

/// Whether [`dot_q8_group_x8`] has a kernel for `ty` on tier `isa`: Q2_K on AVX-512 VNNI, whose
/// 32 vector registers hold eight tokens' sums, so each code word is decoded (and scaled) once for
/// eight tokens instead of four (measured: about 1.25x; Q3_K's kernel with eight tokens was
/// slower than with four).
#[inline]
pub(crate) fn has_group_x8(isa: Supported, ty: WeightType) -> bool {
    cfg!(target_arch = "x86_64") && isa.isa() == Isa::Avx512Vnni && ty == WeightType::Q2K
}

/// [`dot_q8_group`] with eight tokens at once: `[token][row]`. Panics where [`has_group_x8`] is
/// false or the lengths disagree.
#[inline]
pub(crate) fn dot_q8_group_x8(isa: Supported, ty: WeightType, group: &[u8], a: [&[BlockQ8]; 8]) -> [[f32; 8]; 8] {
    assert!(
        has_group_x8(isa, ty) && a.iter().all(|r| r.len() == a[0].len()) && q8_row_bytes(ty, a[0].len()).map(|b| b * interleave::GROUP) == Some(group.len()),
        "{} group of {} bytes vs activation rows of {:?} blocks on {:?}",
        ty.label(),
        group.len(),
        a.map(|r| r.len()),
        isa.isa()
    );
    match isa.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot_q8`; the type checked above.
        Isa::Avx512Vnni => unsafe { x86::group_q8_x8_vnni(ty, group, a) },
        _ => unreachable!("checked by has_group_x8"),
    }
}

/// Dot product of one dense weight row (f32/f16/bf16) with f32 activations. Panics if the
/// lengths disagree or `ty` quantizes its activations.
#[inline]
pub(crate) fn dot_dense(isa: Supported, ty: WeightType, row: &[u8], x: &[f32]) -> f32 {
    assert!(!ty.quantizes_activations() && ty.row_bytes(x.len()) == Some(row.len()), "{} row of {} bytes vs {} activations", ty.label(), row.len(), x.len());
    match isa.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2/FMA/F16C detected (a `Supported` tier of at least Avx2); lengths checked above.
        Isa::Avx2 | Isa::Avx512Vnni => unsafe { x86::dot_dense_avx2(ty, row, x) },
        _ => scalar::dot_dense(ty, row, x),
    }
}
