//! x86-64 kernels: AVX2 (+FMA, F16C) and AVX-512 VNNI at 256-bit width.
//!
//! ggml block types (Q8 activations) work a 32-value block at a time with one "u8 x i8 -> i32
//! lanes" primitive ([`DotU8I8`]): AVX2 spells it `vpmaddubsw` + `vpmaddwd`, VNNI one `vpdpbusd`.
//! The per-type bodies are written once, generic over the primitive and over how many tokens
//! share a weight-block load, `#[inline(always)]`, and instantiated in `#[target_feature]` entry
//! points so the compiler emits each tier's instructions; callers reach those only after
//! run-time detection (`cpu::Isa::detect`). Q8_0's signed weights use the `vpsignb` trick
//! (|w| x sign(w)·a), as ggml's `mul_sum_i8_pairs` does; `vpmaddubsw`'s i16 sums cannot saturate
//! for these ranges (|w| <= 128, |a| <= 127, or 4/5/6-bit w; 2 products per lane).
//!
//! int8 and NF4 rows take int16 activations (`ActivationFormat::I16` / `I16Nf4`): codes widened
//! to i16 (NF4: looked up in the int16 code book with two `vpshufb`), multiplied and paired with
//! `vpmaddwd` (AVX2) or `vpdpwssd` (VNNI, [`MaddI16`]), each block's i32 sum moved to f32 in the
//! order of `quant/mod.rs`. Dense rows (f32/f16/bf16) widen the weights to f32 and use FMA. Block layouts and the maths per type are in `quant/mod.rs`; the scalar tier
//! (`quant/scalar.rs`) is the readable version of each body.

use std::arch::x86_64::*;

use super::reference::{iq4xs_scale, q3k_scales, scale_min_k4};
use super::reference::{IQ4NL_CODEBOOK, NF4_CODEBOOK_I16, NF4_CODE_SCALE};
use super::{ActivationFormat, BlockQ8, WeightType};

/// `u` (unsigned bytes) times `s` (signed bytes), summed in groups of 4 into i32 lanes.
trait DotU8I8 {
    /// # Safety
    ///
    /// The CPU has the implementing tier's instructions (`Avx2`: AVX2; `Vnni`: AVX-512 VNNI and VL).
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i;
}

struct Avx2;
impl DotU8I8 for Avx2 {
    #[inline(always)]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: the trait method's contract: the caller's CPU has this tier's instructions.
        unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)) }
    }
}

struct Vnni;
impl DotU8I8 for Vnni {
    #[inline(always)]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: the trait method's contract: the caller's CPU has this tier's instructions.
        unsafe { _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s) }
    }
}

/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`).
#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// An f16 block scale as f32, in integer registers and one multiply (exact: the exponent is
/// rebased by a power-of-two multiply). An f16 subnormal (a tiny `dmin`, say) is its integer
/// mantissa times 2^-24 instead: through the multiply it would be an f32 subnormal operand,
/// which costs a microcode assist (~100 cycles) per block. Not `vcvtph2ps`: the
/// compiler turns its scalar form into an insert that merges into an arbitrary register, which
/// was the loop's accumulator, chaining every block to the one before (3x slower).
///
/// # Safety
///
/// `p` points to 2 readable bytes.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: this fn's `# Safety` contract (2 readable bytes), upheld by the caller.
    unsafe {
        let h = (p as *const u16).read_unaligned() as u32;
        let em = h & 0x7fff;
        let v = if em >= 0x7c00 {
            f32::from_bits((em << 13) | 0x7f80_0000)
        } else if em < 0x0400 {
            em as f32 * f32::from_bits(0x3380_0000) // 2^-24
        } else {
            f32::from_bits(em << 13) * f32::from_bits(0x7780_0000) // 2^112
        };
        f32::from_bits(v.to_bits() | ((h & 0x8000) << 16))
    }
}

/// # Safety
///
/// `p` points to 4 readable bytes.
#[inline(always)]
unsafe fn f32_at(p: *const u8) -> f32 {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe { (p as *const f32).read_unaligned() }
}

/// 16 bytes of nibbles -> 32 bytes: low nibbles in the low half, high nibbles in the high half.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`), and `p` points to 16 readable bytes.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let v = _mm_loadu_si128(p as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
        _mm256_and_si256(both, _mm256_set1_epi8(0xF))
    }
}

/// Q5_0 / Q5_1's fifth bits as bit 4 of 32 bytes: byte `j` is `0x10` where bit `j` of `qh` is set
/// (each byte picks its `qh` byte with `vpshufb`, tests its bit, and masks).
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`).
#[inline(always)]
unsafe fn fifth_bits(qh: u32) -> __m256i {
    // SAFETY: this fn's `# Safety` contract (CPU features), upheld by the caller.
    unsafe {
        let v = _mm256_set1_epi32(qh as i32);
        let pick = _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, pick), bit), bit);
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }
}

/// IQ4_NL's code book in both 128-bit lanes, for `vpshufb`.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`).
#[inline(always)]
unsafe fn iq4_book() -> __m256i {
    // SAFETY: the contract above (AVX2); the load reads the 16-byte constant.
    unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(IQ4NL_CODEBOOK.as_ptr() as *const __m128i)) }
}

/// The 32 codes of an activation block.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`).
#[inline(always)]
unsafe fn load_q8(b: &BlockQ8) -> __m256i {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe { _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i) }
}

/// `scale * lanes` added to `acc`.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`).
#[inline(always)]
unsafe fn fma_lanes(acc: &mut __m256, lanes: __m256i, scale: f32) {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_set1_ps(scale), *acc);
    }
}

/// One weight row against `N` token rows of activations at once: each weight block is loaded and
/// unpacked once and used `N` times (the register tile that makes prompt batches faster than
/// `N` separate products).
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`) (and `D`'s instructions); `ty` takes Q8 activations; every `a[n]` has the same number of blocks `nb`, and `row` holds the `ty` blocks those cover (`quant::q8_row_bytes`).
#[inline(always)]
unsafe fn body<D: DotU8I8, const N: usize>(ty: WeightType, row: &[u8], a: [&[BlockQ8]; N]) -> [f32; N] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let bb = ty.block_bytes();
        let p = row.as_ptr();
        let nb = a[0].len();
        let mut acc = [_mm256_setzero_ps(); N];
        // Offset terms (Q4_0's -8, Q4_1's min, K-quants' mins), one float per block.
        let mut offset = [0.0f32; N];
        match ty {
            WeightType::Q4_0 | WeightType::Q4_1 | WeightType::Q5_0 | WeightType::Q5_1 => {
                // Q5's fifth bits (the u32 before the nibbles) become bit 4 of each code.
                let five = matches!(ty, WeightType::Q5_0 | WeightType::Q5_1);
                let bias = match ty {
                    WeightType::Q4_0 => Some(-8.0),
                    WeightType::Q5_0 => Some(-16.0),
                    _ => None,
                };
                for i in 0..nb {
                    let b = p.add(i * bb);
                    let d = f16_at(b);
                    let off = match bias {
                        Some(k) => k * d,
                        None => f16_at(b.add(2)),
                    };
                    let mut w = nibbles(b.add(bb - 16));
                    if five {
                        w = _mm256_or_si256(w, fifth_bits((b.add(bb - 20) as *const u32).read_unaligned()));
                    }
                    for n in 0..N {
                        let x = a[n].get_unchecked(i);
                        fma_lanes(&mut acc[n], D::dot(w, load_q8(x)), d * x.d);
                        offset[n] += off * x.s;
                    }
                }
            }
            WeightType::IQ4NL => {
                // Codes through the code book (`vpshufb`), then signed x signed as Q8_0 below.
                let book = iq4_book();
                for i in 0..nb {
                    let b = p.add(i * bb);
                    let d = f16_at(b);
                    let w = _mm256_shuffle_epi8(book, nibbles(b.add(2)));
                    let wa = _mm256_sign_epi8(w, w);
                    for n in 0..N {
                        let x = a[n].get_unchecked(i);
                        fma_lanes(&mut acc[n], D::dot(wa, _mm256_sign_epi8(load_q8(x), w)), d * x.d);
                    }
                }
            }
            // The Q8_K types: one activation scale per 256 values, so each super-block's products
            // are summed as integers (`vpmaddubsw` pairs times the i16 sub-block scale by
            // `vpmaddwd`, as ggml does) and converted to float once.
            WeightType::IQ4XS => {
                let book = iq4_book();
                for i in 0..nb / 8 {
                    let b = p.add(i * bb);
                    let sb = std::slice::from_raw_parts(b, bb);
                    let mut sums = [_mm256_setzero_si256(); N];
                    for ib in 0..8 {
                        let w = _mm256_shuffle_epi8(book, nibbles(b.add(8 + 16 * ib)));
                        let wa = _mm256_sign_epi8(w, w);
                        let sc = _mm256_set1_epi16(iq4xs_scale(sb, ib) as i16);
                        for n in 0..N {
                            let x = a[n].get_unchecked(8 * i + ib);
                            let pairs = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(load_q8(x), w));
                            sums[n] = _mm256_add_epi32(sums[n], _mm256_madd_epi16(pairs, sc));
                        }
                    }
                    let d = f16_at(b);
                    for n in 0..N {
                        fma_lanes(&mut acc[n], sums[n], d * a[n].get_unchecked(8 * i).d);
                    }
                }
            }
            WeightType::Q2K | WeightType::Q3K => {
                // Activation block 4n + j of a super-block: 2-bit field j of code bytes 32n..32n+32
                // (Q3_K: and bit 4n + j of the 32 high-bit bytes as bit 2), one scale per 16 values
                // (the low and the high 128 bits of a block's products).
                let q3 = ty == WeightType::Q3K;
                let m3 = _mm256_set1_epi8(3);
                let one = _mm256_set1_epi8(1);
                for i in 0..nb / 8 {
                    let b = p.add(i * bb);
                    let sb = std::slice::from_raw_parts(b, bb);
                    let (qs, d, dmin) = if q3 { (b.add(32), f16_at(b.add(108)), 0.0) } else { (b.add(16), f16_at(b.add(80)), f16_at(b.add(82))) };
                    let hm = if q3 { _mm256_loadu_si256(b as *const __m256i) } else { _mm256_setzero_si256() };
                    // Q3_K: signed 6-bit scales; Q2_K: 4-bit scales and 4-bit mins.
                    let scales: [i32; 16] = if q3 { q3k_scales(&sb[96..108]) } else { std::array::from_fn(|k| (sb[k] & 0xF) as i32) };
                    let mut sums = [_mm256_setzero_si256(); N];
                    // Q3_K: Σ scale · 4 · Σx (the codes are q - 4); Q2_K: Σ min · Σx, per 16 values.
                    let mut offsets = [0i32; N];
                    for half in 0..2 {
                        let raw = _mm256_loadu_si256(qs.add(32 * half) as *const __m256i);
                        for j in 0..4 {
                            let shift = _mm_cvtsi32_si128(2 * j as i32);
                            let mut q = _mm256_and_si256(_mm256_srl_epi16(raw, shift), m3);
                            if q3 {
                                let h = _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128((4 * half + j) as i32)), one);
                                q = _mm256_or_si256(q, _mm256_slli_epi16(h, 2));
                            }
                            let k = 4 * half + j;
                            let (s0, s1) = (scales[2 * k], scales[2 * k + 1]);
                            let sc = _mm256_set_m128i(_mm_set1_epi16(s1 as i16), _mm_set1_epi16(s0 as i16));
                            let (o0, o1) = if q3 { (4 * s0, 4 * s1) } else { ((sb[2 * k] >> 4) as i32, (sb[2 * k + 1] >> 4) as i32) };
                            for n in 0..N {
                                let x = a[n].get_unchecked(8 * i + k);
                                sums[n] = _mm256_add_epi32(sums[n], _mm256_madd_epi16(_mm256_maddubs_epi16(q, load_q8(x)), sc));
                                offsets[n] += o0 * x.halves[0] + o1 * x.halves[1];
                            }
                        }
                    }
                    for n in 0..N {
                        let xd = a[n].get_unchecked(8 * i).d;
                        fma_lanes(&mut acc[n], sums[n], d * xd);
                        offset[n] -= if q3 { d } else { dmin } * xd * offsets[n] as f32;
                    }
                }
            }
            WeightType::Q8_0 => {
                for i in 0..nb {
                    let b = p.add(i * bb);
                    let d = f16_at(b);
                    let w = _mm256_loadu_si256(b.add(2) as *const __m256i);
                    let wa = _mm256_sign_epi8(w, w);
                    for n in 0..N {
                        let x = a[n].get_unchecked(i);
                        fma_lanes(&mut acc[n], D::dot(wa, _mm256_sign_epi8(load_q8(x), w)), d * x.d);
                    }
                }
            }
            WeightType::Q4K | WeightType::Q5K => {
                let five = ty == WeightType::Q5K;
                let m4 = _mm256_set1_epi8(0xF);
                let one = _mm256_set1_epi8(1);
                for i in 0..nb / 8 {
                    let b = p.add(i * bb);
                    let (d, dmin) = (f16_at(b), f16_at(b.add(2)));
                    let scales = std::slice::from_raw_parts(b.add(4), 12);
                    let (qh, qs) = if five { (b.add(16), b.add(48)) } else { (b, b.add(16)) };
                    let hbits = if five { _mm256_loadu_si256(qh as *const __m256i) } else { _mm256_setzero_si256() };
                    for j in 0..4 {
                        let raw = _mm256_loadu_si256(qs.add(32 * j) as *const __m256i);
                        let mut lo = _mm256_and_si256(raw, m4);
                        let mut hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                        if five {
                            let h1 = _mm256_and_si256(_mm256_srl_epi16(hbits, _mm_cvtsi32_si128(2 * j as i32)), one);
                            let h2 = _mm256_and_si256(_mm256_srl_epi16(hbits, _mm_cvtsi32_si128(2 * j as i32 + 1)), one);
                            lo = _mm256_or_si256(lo, _mm256_slli_epi16(h1, 4));
                            hi = _mm256_or_si256(hi, _mm256_slli_epi16(h2, 4));
                        }
                        let (sc1, m1) = scale_min_k4(2 * j, scales);
                        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                        let (ds1, ds2) = (d * sc1 as f32, d * sc2 as f32);
                        let (dm1, dm2) = (dmin * m1 as f32, dmin * m2 as f32);
                        for n in 0..N {
                            let (x1, x2) = (a[n].get_unchecked(8 * i + 2 * j), a[n].get_unchecked(8 * i + 2 * j + 1));
                            fma_lanes(&mut acc[n], D::dot(lo, load_q8(x1)), ds1 * x1.d);
                            fma_lanes(&mut acc[n], D::dot(hi, load_q8(x2)), ds2 * x2.d);
                            offset[n] -= dm1 * x1.s + dm2 * x2.s;
                        }
                    }
                }
            }
            WeightType::Q6K => {
                let m4 = _mm256_set1_epi8(0xF);
                let m2 = _mm256_set1_epi8(3);
                let k32 = _mm256_set1_epi8(32);
                for i in 0..nb / 8 {
                    let b = p.add(i * bb);
                    let d = f16_at(b.add(208));
                    for half in 0..2 {
                        let ql = b.add(64 * half);
                        let qh = _mm256_loadu_si256(b.add(128 + 32 * half) as *const __m256i);
                        let sc = b.add(192 + 8 * half) as *const i8;
                        let ql0 = _mm256_loadu_si256(ql as *const __m256i);
                        let ql1 = _mm256_loadu_si256(ql.add(32) as *const __m256i);
                        for g in 0..4 {
                            let src = if g & 1 == 0 { ql0 } else { ql1 };
                            let low = if g < 2 { _mm256_and_si256(src, m4) } else { _mm256_and_si256(_mm256_srli_epi16(src, 4), m4) };
                            let high = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g as i32)), m2);
                            let q = _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
                            // Lanes 0-3 hold values 0..16 (scale 2g), lanes 4-7 values 16..32 (2g+1).
                            let s = _mm256_set_m128(_mm_set1_ps(*sc.add(2 * g + 1) as f32), _mm_set1_ps(*sc.add(2 * g) as f32));
                            let s = _mm256_mul_ps(s, _mm256_set1_ps(d));
                            for n in 0..N {
                                let xb = a[n].get_unchecked(8 * i + 4 * half + g);
                                let xa = load_q8(xb);
                                let lanes = _mm256_sub_epi32(D::dot(q, xa), D::dot(k32, xa));
                                acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_mul_ps(s, _mm256_set1_ps(xb.d)), acc[n]);
                            }
                        }
                    }
                }
            }
            _ => unreachable!("{} takes no Q8 activations", ty.label()),
        }
        let mut out = [0.0f32; N];
        for n in 0..N {
            out[n] = hsum(acc[n]) + offset[n];
        }
        out
    }
}

/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`); `ty` takes Q8 activations and `row.len() == quant::q8_row_bytes(ty, a.len())`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q8_avx2(ty: WeightType, row: &[u8], a: &[BlockQ8]) -> f32 {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe { body::<Avx2, 1>(ty, row, [a])[0] }
}

/// # Safety
///
/// The CPU has the `Avx512Vnni` tier (AVX2, FMA, F16C, AVX-512 F/BW/VL/VNNI); `ty` takes Q8 activations and `row.len() == quant::q8_row_bytes(ty, a.len())`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn dot_q8_vnni(ty: WeightType, row: &[u8], a: &[BlockQ8]) -> f32 {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe { body::<Vnni, 1>(ty, row, [a])[0] }
}

/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`); `ty` takes Q8 activations; the four `a` rows have one length and `row.len() == quant::q8_row_bytes(ty, a[0].len())`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q8_x4_avx2(ty: WeightType, row: &[u8], a: [&[BlockQ8]; 4]) -> [f32; 4] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe { body::<Avx2, 4>(ty, row, a) }
}

/// # Safety
///
/// The CPU has the `Avx512Vnni` tier; `ty` takes Q8 activations; the four `a` rows have one length and `row.len() == quant::q8_row_bytes(ty, a[0].len())`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn dot_q8_x4_vnni(ty: WeightType, row: &[u8], a: [&[BlockQ8]; 4]) -> [f32; 4] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe { body::<Vnni, 4>(ty, row, a) }
}

/// Sums of `u` (unsigned bytes) x `s` (signed bytes) accumulated over the steps of one block,
/// for the interleaved kernels: each 32-bit lane is one row's sum.
trait StepDot {
    /// Accumulators per token (two break VNNI's 5-cycle dependency chain).
    const TWO: bool;
    /// # Safety
    ///
    /// The CPU has the implementing tier's instructions.
    unsafe fn step(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    /// The two accumulators as one vector of i32 lanes.
    ///
    /// # Safety
    ///
    /// The CPU has the implementing tier's instructions.
    unsafe fn finish(a: __m256i, b: __m256i) -> __m256i;
}

/// AVX2 with small weights: the sums stay in i16 lanes until the end of the block, which is
/// exact while they cannot pass 2^15: 8 steps of nibbles (8 * 2 * 15 * 127 = 30480).
struct Avx2Nibbles;
impl StepDot for Avx2Nibbles {
    const TWO: bool = false;
    #[inline(always)]
    unsafe fn step(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: the trait method's contract: the caller's CPU has this tier's instructions.
        unsafe { _mm256_add_epi16(acc, _mm256_maddubs_epi16(u, s)) }
    }
    #[inline(always)]
    unsafe fn finish(a: __m256i, _b: __m256i) -> __m256i {
        // SAFETY: the trait method's contract: the caller's CPU has this tier's instructions.
        unsafe { _mm256_madd_epi16(a, _mm256_set1_epi16(1)) }
    }
}

/// AVX2 with byte weights (u <= 128): widened to i32 every step.
struct Avx2Bytes;
impl StepDot for Avx2Bytes {
    const TWO: bool = false;
    #[inline(always)]
    unsafe fn step(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: the trait method's contract: the caller's CPU has this tier's instructions.
        unsafe { _mm256_add_epi32(acc, Avx2::dot(u, s)) }
    }
    #[inline(always)]
    unsafe fn finish(a: __m256i, _b: __m256i) -> __m256i {
        a
    }
}

impl StepDot for Vnni {
    const TWO: bool = true;
    #[inline(always)]
    unsafe fn step(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: the trait method's contract: the caller's CPU has this tier's instructions.
        unsafe { _mm256_dpbusd_epi32(acc, u, s) }
    }
    #[inline(always)]
    unsafe fn finish(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the trait method's contract: the caller's CPU has this tier's instructions.
        unsafe { _mm256_add_epi32(a, b) }
    }
}

/// AVX2 with 5-bit weights: i16 sums, one accumulator per nibble half (4 steps each: 4 * 2 * 31
/// * 127 = 31496 < 2^15, exact), widened at the end of the block.
struct Avx2Fives;
impl StepDot for Avx2Fives {
    const TWO: bool = true;
    #[inline(always)]
    unsafe fn step(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: the trait method's contract: the caller's CPU has this tier's instructions.
        unsafe { _mm256_add_epi16(acc, _mm256_maddubs_epi16(u, s)) }
    }
    #[inline(always)]
    unsafe fn finish(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the trait method's contract: the caller's CPU has this tier's instructions.
        unsafe {
            let one = _mm256_set1_epi16(1);
            _mm256_add_epi32(_mm256_madd_epi16(a, one), _mm256_madd_epi16(b, one))
        }
    }
}

/// A tier's step products for nibble, 5-bit and byte weights, and its i16 pair product
/// ([`MaddI16`]).
trait Tier: MaddI16 {
    type Nibbles: StepDot;
    type Fives: StepDot;
    type Bytes: StepDot;
    /// Whether steps are `vpdpbusd` (each a u8 x i8 product summed into i32 lanes in one
    /// instruction), else `vpmaddubsw`'s i16 pairs that the kernel still has to widen: the Q2_K,
    /// Q3_K and Q6_K kernels apply their 16-value group scales differently on the two.
    const DPBUSD: bool;
}
impl Tier for Avx2 {
    type Nibbles = Avx2Nibbles;
    type Fives = Avx2Fives;
    type Bytes = Avx2Bytes;
    const DPBUSD: bool = false;
}
impl Tier for Vnni {
    type Nibbles = Vnni;
    type Fives = Vnni;
    type Bytes = Vnni;
    const DPBUSD: bool = true;
}

/// Q4_0 / Q4_1 / Q5_0 / Q5_1, 8 interleaved rows (`quant::interleave`) against `N` tokens, added
/// to `acc` (lane `r` = row `r`). Word `c` (0..4) of the nibbles holds values `4c..4c+4` (low
/// nibbles) and `16+4c..` (high) of each row; Q5's word before them is each row's `qh`, whose bits
/// `4c + k` and `16 + 4c + k` become bit 4 of those codes (`vpshufb` spreads byte `c / 2` or
/// `2 + c / 2` of each lane over the lane, a compare against one bit per byte tests them).
///
/// # Safety
///
/// As [`group_body`]'s, with `ty` one of these four types and `D` the step product for its codes
/// (AVX2's i16 sums hold 8 steps of nibbles but only 4 of 5-bit codes: `Tier::Fives`).
#[inline(always)]
unsafe fn group_q4_q5<D: StepDot, const N: usize>(ty: WeightType, group: *const u8, nb: usize, a: [&[BlockQ8]; N], acc: &mut [__m256; N]) {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let gbb = 8 * ty.block_bytes();
        let zero = _mm256_setzero_si256();
        let five = matches!(ty, WeightType::Q5_0 | WeightType::Q5_1);
        let with_min = matches!(ty, WeightType::Q4_1 | WeightType::Q5_1);
        let header = if with_min { 32 } else { 16 };
        let payload = header + if five { 32 } else { 0 };
        let bias = if five { 16.0 } else { 8.0 };
        let m4 = _mm256_set1_epi8(0xF);
        let k10 = _mm256_set1_epi8(0x10);
        let lane_bytes = _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12, 0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12);
        let bits = [_mm256_set1_epi32(0x0804_0201), _mm256_set1_epi32(0x8040_2010u32 as i32)];
        for i in 0..nb {
            let b = group.add(i * gbb);
            if N == 1 {
                prefetch_ahead(b, gbb);
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
            // sel[q]: byte q of each row's qh in all 4 bytes of its lane.
            let sel: [__m256i; 4] = if five {
                let qh = _mm256_loadu_si256(b.add(header) as *const __m256i);
                [
                    _mm256_shuffle_epi8(qh, lane_bytes),
                    _mm256_shuffle_epi8(qh, _mm256_add_epi8(lane_bytes, _mm256_set1_epi8(1))),
                    _mm256_shuffle_epi8(qh, _mm256_add_epi8(lane_bytes, _mm256_set1_epi8(2))),
                    _mm256_shuffle_epi8(qh, _mm256_add_epi8(lane_bytes, _mm256_set1_epi8(3))),
                ]
            } else {
                [zero; 4]
            };
            let mut s0 = [zero; N];
            let mut s1 = [zero; N];
            for c in 0..4 {
                let raw = _mm256_loadu_si256(b.add(payload + 32 * c) as *const __m256i);
                let mut lo = _mm256_and_si256(raw, m4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                if five {
                    let bm = bits[c % 2];
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(sel[c / 2], bm), bm), k10));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(sel[2 + c / 2], bm), bm), k10));
                }
                for n in 0..N {
                    let qs = a[n].get_unchecked(i).qs.as_ptr();
                    s0[n] = D::step(s0[n], lo, broadcast_word(qs, c));
                    if D::TWO {
                        s1[n] = D::step(s1[n], hi, broadcast_word(qs, 4 + c));
                    } else {
                        s0[n] = D::step(s0[n], hi, broadcast_word(qs, 4 + c));
                    }
                }
            }
            let m = if with_min { _mm256_cvtph_ps(_mm_loadu_si128(b.add(16) as *const __m128i)) } else { _mm256_setzero_ps() };
            for n in 0..N {
                let x = a[n].get_unchecked(i);
                let sum = _mm256_cvtepi32_ps(D::finish(s0[n], s1[n]));
                if with_min {
                    // d·dx·Σq·qx + m·Σx (Σx ≈ x.s)
                    acc[n] = _mm256_fmadd_ps(d, _mm256_mul_ps(sum, _mm256_set1_ps(x.d)), acc[n]);
                    acc[n] = _mm256_fmadd_ps(m, _mm256_set1_ps(x.s), acc[n]);
                } else {
                    // d·(dx·Σq·qx - bias·Σx)
                    let t = _mm256_fmsub_ps(sum, _mm256_set1_ps(x.d), _mm256_set1_ps(bias * x.s));
                    acc[n] = _mm256_fmadd_ps(d, t, acc[n]);
                }
            }
        }
    }
}

/// Q4_K / Q5_K, 8 interleaved rows (`quant::interleave`) against `N` tokens, added to `acc`
/// (lane `r` = row `r`). After the header (`d`, `dmin`), words 0..3 are the 12 packed scale
/// bytes; Q5_K's `qh` follows as words 3..11, then the nibbles (Q4_K: words 3..35, Q5_K:
/// 11..43). Nibble word `8j + k` holds values `4k..4k+4` of sub-block `2j` (low nibbles) and of
/// `2j + 1` (high); their fifth bits are bits `2j` and `2j + 1` of the same bytes of `qh` word
/// `k`, moved to bit 4 by one 16-bit shift (by at most 4, so within the byte) and a mask.
///
/// # Safety
///
/// As [`group_body`]'s, with `ty` Q4_K or Q5_K and `D` the step product for its codes (AVX2's
/// i16 sums hold 8 steps of nibbles but only 4 of 5-bit codes: `Tier::Fives`).
#[inline(always)]
unsafe fn group_q4k_q5k<D: StepDot, const N: usize>(ty: WeightType, group: *const u8, nb: usize, a: [&[BlockQ8]; N], acc: &mut [__m256; N]) {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let gbb = 8 * ty.block_bytes();
        let zero = _mm256_setzero_si256();
        let five = ty == WeightType::Q5K;
        let q_base = if five { 11 } else { 3 };
        let m4 = _mm256_set1_epi8(0xF);
        let k10 = _mm256_set1_epi8(0x10);
        let (m6, m4d, m2d) = (_mm256_set1_epi32(63), _mm256_set1_epi32(0xF), _mm256_set1_epi32(3));
        let srl = |v: __m256i, n: i32| _mm256_srl_epi32(v, _mm_cvtsi32_si128(n));
        // Bit `bit` (0..8) of each byte of `h` as bit 4 (0x10 or 0).
        let bit4 = |h: __m256i, bit: i32| {
            let moved = if bit <= 4 { _mm256_sll_epi16(h, _mm_cvtsi32_si128(4 - bit)) } else { _mm256_srl_epi16(h, _mm_cvtsi32_si128(bit - 4)) };
            _mm256_and_si256(moved, k10)
        };
        for i in 0..nb / 8 {
            let b = group.add(i * gbb);
            if N == 1 {
                prefetch_ahead(b, gbb);
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(b.add(16) as *const __m128i));
            let w = b.add(32);
            // The 12 packed scale bytes are words 0..3: ggml's get_scale_min_k4 on 8 rows.
            let sw = [0, 1, 2].map(|k| _mm256_loadu_si256(w.add(32 * k) as *const __m256i));
            let mut dsc = [_mm256_setzero_ps(); 8];
            let mut dm = [_mm256_setzero_ps(); 8];
            for j in 0..4 {
                let sh = 8 * j as i32;
                let sc = _mm256_and_si256(srl(sw[0], sh), m6);
                let m = _mm256_and_si256(srl(sw[1], sh), m6);
                let sc_hi = _mm256_or_si256(_mm256_and_si256(srl(sw[2], sh), m4d), _mm256_slli_epi32(_mm256_and_si256(srl(sw[0], sh + 6), m2d), 4));
                let m_hi = _mm256_or_si256(_mm256_and_si256(srl(sw[2], sh + 4), m4d), _mm256_slli_epi32(_mm256_and_si256(srl(sw[1], sh + 6), m2d), 4));
                dsc[j] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc));
                dm[j] = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(m));
                dsc[j + 4] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc_hi));
                dm[j + 4] = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(m_hi));
            }
            // 64-value chunk j: low nibbles are sub-block 2j, high nibbles 2j+1. Q5_K's i16 sums
            // (AVX2) take 4 steps: for one token steps 4..8 go to a second sum (`split`); for
            // several, where two sums per token and nibble half would not fit the 16 registers,
            // the 8 steps run as two parts, each converted and added to `acc`.
            let split = five && N == 1;
            let parts = if five && !split { 2 } else { 1 };
            for j in 0..4 {
                for part in 0..parts {
                    let mut lo_acc = [[zero; N]; 2];
                    let mut hi_acc = [[zero; N]; 2];
                    for k in 8 * part / parts..8 * (part + 1) / parts {
                        let raw = _mm256_loadu_si256(w.add(32 * (q_base + 8 * j + k)) as *const __m256i);
                        let mut lo = _mm256_and_si256(raw, m4);
                        let mut hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                        if five {
                            let h = _mm256_loadu_si256(w.add(32 * (3 + k)) as *const __m256i);
                            lo = _mm256_or_si256(lo, bit4(h, 2 * j as i32));
                            hi = _mm256_or_si256(hi, bit4(h, 2 * j as i32 + 1));
                        }
                        let sub = usize::from(split && k >= 4);
                        for n in 0..N {
                            let (x1, x2) = (a[n].get_unchecked(8 * i + 2 * j), a[n].get_unchecked(8 * i + 2 * j + 1));
                            lo_acc[sub][n] = D::step(lo_acc[sub][n], lo, broadcast_word(x1.qs.as_ptr(), k));
                            hi_acc[sub][n] = D::step(hi_acc[sub][n], hi, broadcast_word(x2.qs.as_ptr(), k));
                        }
                    }
                    for n in 0..N {
                        let (x1, x2) = (a[n].get_unchecked(8 * i + 2 * j), a[n].get_unchecked(8 * i + 2 * j + 1));
                        let s1 = _mm256_cvtepi32_ps(D::finish(lo_acc[0][n], lo_acc[1][n]));
                        let s2 = _mm256_cvtepi32_ps(D::finish(hi_acc[0][n], hi_acc[1][n]));
                        // d·sc·dx·Σq·qx per sub-block
                        acc[n] = _mm256_fmadd_ps(dsc[2 * j], _mm256_mul_ps(s1, _mm256_set1_ps(x1.d)), acc[n]);
                        acc[n] = _mm256_fmadd_ps(dsc[2 * j + 1], _mm256_mul_ps(s2, _mm256_set1_ps(x2.d)), acc[n]);
                    }
                }
                for n in 0..N {
                    let (x1, x2) = (a[n].get_unchecked(8 * i + 2 * j), a[n].get_unchecked(8 * i + 2 * j + 1));
                    // - dmin·m·Σx per sub-block
                    acc[n] = _mm256_fnmadd_ps(dm[2 * j], _mm256_set1_ps(x1.s), acc[n]);
                    acc[n] = _mm256_fnmadd_ps(dm[2 * j + 1], _mm256_set1_ps(x2.s), acc[n]);
                }
            }
        }
    }
}

/// Activation bytes `4s..4s+4` of a block in every 32-bit lane.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`), and `qs` points to at least `4 * s + 4` readable bytes.
#[inline(always)]
unsafe fn broadcast_word(qs: *const i8, s: usize) -> __m256i {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe { _mm256_set1_epi32((qs.add(4 * s) as *const i32).read_unaligned()) }
}

/// How many 8-row super-blocks ahead the one-token Q6_K kernel prefetches: its three streams
/// (ql, ql, qh) are read faster than the hardware prefetchers ramp up (measured: 2 ahead lifted
/// an out-of-cache 14336 x 4096 matrix from about 25 to about 30 GiB/s; 4 ahead was slower).
const PF: usize = 2;

/// Q6_K, 8 interleaved rows, step `k` (0..8) of half `h`: the three words read together (ql
/// `16h + k`, ql `16h + 8 + k`, qh `32 + 8h + k`; `interleave::q6k_slot`) as the codes of runs
/// 0..4, word `k` of each: run `G` takes the low (G < 2) or high nibbles of the first (G even) or
/// second ql word and bits 2G, 2G+1 of qh as bits 4, 5 (ggml's `dequantize_row_q6_K`). Codes are
/// unsigned, 0..64; the kernel takes the 32 off through the activations' half sums.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`), and `w` points past the 16-byte header of an interleaved Q6_K block (`interleave`), so that its words `4 + 24h + 3k .. + 3` are readable (`h < 2`, `k < 8`).
#[inline(always)]
unsafe fn q6k_codes(w: *const u8, h: usize, k: usize) -> [__m256i; 4] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let (m4, m30) = (_mm256_set1_epi8(0xF), _mm256_set1_epi8(0x30));
        let p = w.add(32 * (4 + 24 * h + 3 * k));
        let qa = _mm256_loadu_si256(p as *const __m256i);
        let qb = _mm256_loadu_si256(p.add(32) as *const __m256i);
        let qh = _mm256_loadu_si256(p.add(64) as *const __m256i);
        let hi = |v: __m256i| _mm256_and_si256(v, m30);
        [
            _mm256_or_si256(_mm256_and_si256(qa, m4), hi(_mm256_slli_epi16(qh, 4))),
            _mm256_or_si256(_mm256_and_si256(qb, m4), hi(_mm256_slli_epi16(qh, 2))),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), hi(qh)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4), hi(_mm256_srli_epi16(qh, 2))),
        ]
    }
}

/// A `vpshufb` control: byte `b0` of each 32-bit lane into byte `at` (0 or 1) of the lane's low
/// 16-bit half, byte `b1` into byte `at` of its high half, zeros elsewhere.
const fn lane_bytes(b0: usize, b1: usize, at: usize) -> [u8; 32] {
    let mut m = [0x80u8; 32];
    let mut lane = 0;
    while lane < 8 {
        let base = 4 * (lane % 4);
        m[4 * lane + at] = (base + b0) as u8;
        m[4 * lane + 2 + at] = (base + b1) as u8;
        lane += 1;
    }
    m
}

/// `vpshufb` controls for the 16-value group scales of the K-quant kernels, whose scale bytes
/// are 4 per 32-bit lane (group `4q + b` is byte `b` of scale word `q`): `[b]` puts byte `b` in
/// both 16-bit halves of the lane, `[4 + k % 2]` bytes `2(k % 2)` and `2(k % 2) + 1` (the groups
/// of activation block `k`) one in each half; `LOW_BYTES` in the low byte of the half (unsigned
/// use: mask or shift it), `HIGH_BYTES` in the high byte (signed use: shift it right
/// arithmetically).
const LOW_BYTES: [[u8; 32]; 6] = [lane_bytes(0, 0, 0), lane_bytes(1, 1, 0), lane_bytes(2, 2, 0), lane_bytes(3, 3, 0), lane_bytes(0, 1, 0), lane_bytes(2, 3, 0)];
/// See [`LOW_BYTES`].
const HIGH_BYTES: [[u8; 32]; 6] =
    [lane_bytes(0, 0, 1), lane_bytes(1, 1, 1), lane_bytes(2, 2, 1), lane_bytes(3, 3, 1), lane_bytes(0, 1, 1), lane_bytes(2, 3, 1)];

/// `v`'s bytes picked by the control `m` ([`LOW_BYTES`], [`HIGH_BYTES`]).
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`).
#[inline(always)]
unsafe fn pick_bytes(v: __m256i, m: &[u8; 32]) -> __m256i {
    // SAFETY: this fn's `# Safety` contract (CPU features); `m` is 32 readable bytes.
    unsafe { _mm256_shuffle_epi8(v, _mm256_loadu_si256(m.as_ptr() as *const __m256i)) }
}

/// An activation block's two half sums (Q8_K's `bsums`, each within ±16 · 127) as i16 pairs in
/// every 32-bit lane, for `vpmaddwd` against a pair of 16-value group scales.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`).
#[inline(always)]
unsafe fn half_sums(x: &BlockQ8) -> __m256i {
    // SAFETY: this fn's `# Safety` contract (CPU features), upheld by the caller.
    unsafe { _mm256_set1_epi32((x.halves[0] & 0xFFFF) | (x.halves[1] << 16)) }
}

/// Q2_K, 8 interleaved rows (`quant::interleave`) against `N` tokens, added to `acc` (lane `r` =
/// row `r`), in ggml's arithmetic (`ggml_vec_dot_q2_K_q8_K`): per super-block the integer sum
/// `Σ_i sc_i · Σ q·x` over the 16-value groups `i` and the mins' `Σ_i m_i · bsum_i` (i16 pairs
/// of mins against the activations' half sums, `vpmaddwd` / `vpdpwssd`), then
/// `d·dx·sum - dmin·dx·mins` in float. After the header (`d`, `dmin`), words 0..4 are the 16
/// scale bytes (low nibble scale, high nibble min; group `4q + b` in byte `b` of word `q`), then
/// activation block `k = 4n + j` is bits `2j` of code words `4 + 8n ..+ 8` (word `w`: values
/// `4w..4w+4`; words 0..4 and 4..8 are its two groups). VNNI multiplies the codes by their group's
/// scale first (`vpmullw` on byte pairs: q·sc <= 3 · 15 = 45 stays within its byte) and sums all
/// the super-block's steps with `vpdpbusd`; AVX2 sums a group's 4 `vpmaddubsw` steps in i16
/// (<= 4 · 2 · 3 · 127 = 3048) and scales them with `vpmaddwd`.
///
/// # Safety
///
/// As [`group_body`]'s, with `ty` Q2_K.
#[inline(always)]
unsafe fn group_q2k<T: Tier, const N: usize>(group: *const u8, nb: usize, a: [&[BlockQ8]; N], acc: &mut [__m256; N]) {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let gbb = 8 * WeightType::Q2K.block_bytes();
        let zero = _mm256_setzero_si256();
        let (m3, m4w) = (_mm256_set1_epi8(3), _mm256_set1_epi16(0xF));
        // VNNI: independent `vpdpbusd` chains per token (one token needs more to hide latency;
        // eight tokens are eight chains).
        let chains = match N {
            1 => 4,
            2..8 => 2,
            _ => 1,
        };
        for i in 0..nb / 8 {
            let b = group.add(i * gbb);
            if N == 1 {
                prefetch_ahead(b, gbb);
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(b.add(16) as *const __m128i));
            let words = b.add(32);
            let sw = [0, 1, 2, 3].map(|q| _mm256_loadu_si256(words.add(32 * q) as *const __m256i));
            let x: [[&BlockQ8; 8]; N] = std::array::from_fn(|n| std::array::from_fn(|k| a[n].get_unchecked(8 * i + k)));
            // Σ m_i · bsum_i: groups 2k and 2k + 1 are activation block k's halves.
            let mut mins = [zero; N];
            for k in 0..8 {
                let m = _mm256_srli_epi16(pick_bytes(sw[k / 2], &LOW_BYTES[4 + k % 2]), 4);
                for n in 0..N {
                    mins[n] = T::madd(mins[n], m, half_sums(x[n][k]));
                }
            }
            for n in 0..N {
                acc[n] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins[n]), _mm256_mul_ps(dmin, _mm256_set1_ps(x[n][0].d)), acc[n]);
            }
            let mut sums = [[zero; 4]; N];
            for half in 0..2 {
                for j in 0..4 {
                    let k = 4 * half + j;
                    for g in 0..2 {
                        // Scale of group 2k + g in both i16 halves of each row's lane.
                        let sc = _mm256_and_si256(pick_bytes(sw[k / 2], &LOW_BYTES[2 * (k % 2) + g]), m4w);
                        let mut s16 = [zero; N];
                        for w in 4 * g..4 * g + 4 {
                            let raw = _mm256_loadu_si256(words.add(32 * (4 + 8 * half + w)) as *const __m256i);
                            let q = _mm256_and_si256(_mm256_srl_epi16(raw, _mm_cvtsi32_si128(2 * j as i32)), m3);
                            if T::DPBUSD {
                                let qs = _mm256_mullo_epi16(q, sc);
                                for n in 0..N {
                                    let s = &mut sums[n][w % chains];
                                    *s = <T as Tier>::Nibbles::step(*s, qs, broadcast_word(x[n][k].qs.as_ptr(), w));
                                }
                            } else {
                                for n in 0..N {
                                    s16[n] = _mm256_add_epi16(s16[n], _mm256_maddubs_epi16(q, broadcast_word(x[n][k].qs.as_ptr(), w)));
                                }
                            }
                        }
                        if !T::DPBUSD {
                            for n in 0..N {
                                sums[n][0] = T::madd(sums[n][0], s16[n], sc);
                            }
                        }
                    }
                }
            }
            for n in 0..N {
                let [s0, s1, s2, s3] = sums[n];
                let sum = _mm256_add_epi32(_mm256_add_epi32(s0, s1), _mm256_add_epi32(s2, s3));
                acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(d, _mm256_set1_ps(x[n][0].d)), acc[n]);
            }
        }
    }
}

/// The 6-bit scales of Q3_K groups `2k` and `2k + 1` (activation block `k`'s halves) of 8
/// interleaved rows as i16 pairs, one pair per row's lane, from the packed scale words 24..27 at
/// `words` (see [`group_q3k`]).
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`), `k < 8`, and `words`
/// points to the words of an interleaved Q3_K block (27 words of 32 bytes are readable).
#[inline(always)]
unsafe fn q3k_scale_pair(words: *const u8, k: usize) -> __m256i {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let word = |q: usize| _mm256_loadu_si256(words.add(32 * q) as *const __m256i);
        let (g, low_byte) = (2 * k, 2 * k % 8);
        let l = pick_bytes(word(24 + low_byte / 4), &LOW_BYTES[4 + low_byte % 4 / 2]);
        let low = if g < 8 { _mm256_and_si256(l, _mm256_set1_epi16(0xF)) } else { _mm256_srli_epi16(l, 4) };
        let h = pick_bytes(word(26), &LOW_BYTES[4 + g % 4 / 2]);
        // Bits 2(g / 4), 2(g / 4) + 1 of the byte to bits 4, 5.
        let sh = 2 * (g / 4) as i32;
        let h = if sh <= 4 { _mm256_sll_epi16(h, _mm_cvtsi32_si128(4 - sh)) } else { _mm256_srl_epi16(h, _mm_cvtsi32_si128(sh - 4)) };
        _mm256_sub_epi16(_mm256_or_si256(low, _mm256_and_si256(h, _mm256_set1_epi16(0x30))), _mm256_set1_epi16(32))
    }
}

/// The codes (0..8) of Q3_K activation block `4 half + j`, values `4w..4w+4`, of 8 interleaved
/// rows: bits `2j` of code word `8 + 8 half + w` and bit `4 half + j` of high-bit word `w` as bit
/// 2 (see [`group_q3k`]; 16-bit shifts by at most 5 keep each byte's bit 2 from its own byte).
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`), `half < 2`, `j < 4`,
/// `w < 8`, and `words` points to the words of an interleaved Q3_K block.
#[inline(always)]
unsafe fn q3k_codes(words: *const u8, half: usize, j: usize, w: usize) -> __m256i {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let raw = _mm256_loadu_si256(words.add(32 * (8 + 8 * half + w)) as *const __m256i);
        let q = _mm256_and_si256(_mm256_srl_epi16(raw, _mm_cvtsi32_si128(2 * j as i32)), _mm256_set1_epi8(3));
        let hm = _mm256_loadu_si256(words.add(32 * w) as *const __m256i);
        let k = (4 * half + j) as i32;
        let hm = if k <= 2 { _mm256_sll_epi16(hm, _mm_cvtsi32_si128(2 - k)) } else { _mm256_srl_epi16(hm, _mm_cvtsi32_si128(k - 2)) };
        _mm256_or_si256(q, _mm256_and_si256(hm, _mm256_set1_epi8(4)))
    }
}

/// Q3_K, 8 interleaved rows (`quant::interleave`) against `N` tokens, added to `acc` (lane `r` =
/// row `r`), in ggml's arithmetic (`ggml_vec_dot_q3_K_q8_K`): `Σ_i sc_i · Σ (q - 4)·x` over the
/// 16-value groups `i` summed in i32 per super-block, the offset of 4 taken off once per
/// super-block as `Σ_i 4·sc_i · bsum_i` (i16 pairs against the activations' half sums,
/// `vpmaddwd` / `vpdpwssd`), then times `d · dx` in float. After the header (`d`), words 0..8
/// are the high bits, 8..24 the 2-bit codes, 24..27 the 12 packed scale bytes (the 6-bit scale of
/// group `i`: low nibble of byte `i` (`i < 8`) or high nibble of byte `i - 8`, and bits `2(i / 4)`
/// of byte `8 + i % 4`, minus 32). Activation block `k = 4n + j` is bits `2j` of code words
/// `8 + 8n ..+ 8` with bit `k` of high-bit word `w` as bit 2 (word `w`: values `4w..4w+4`; words
/// 0..4 and 4..8 are its two groups). Codes are unsigned (0..8); a group's sum of `q·x` stays
/// within ±16 · 7 · 127 = 14224: AVX2 keeps it in i16 (`vpmaddubsw`) and scales it with
/// `vpmaddwd`, VNNI sums it with `vpdpbusd` and packs the two groups of a block into i16 pairs for
/// one `vpdpwssd` with their scales.
///
/// # Safety
///
/// As [`group_body`]'s, with `ty` Q3_K.
// The index loops address groups and tokens of per-token arrays together.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn group_q3k<T: Tier, const N: usize>(group: *const u8, nb: usize, a: [&[BlockQ8]; N], acc: &mut [__m256; N]) {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let gbb = 8 * WeightType::Q3K.block_bytes();
        let zero = _mm256_setzero_si256();
        for i in 0..nb / 8 {
            let b = group.add(i * gbb);
            if N == 1 {
                prefetch_ahead(b, gbb);
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
            let words = b.add(16);
            let x: [[&BlockQ8; 8]; N] = std::array::from_fn(|n| std::array::from_fn(|k| a[n].get_unchecked(8 * i + k)));
            // Σ 4·sc_i · bsum_i, taken off the sums from the start.
            let mut sum = [zero; N];
            for k in 0..8 {
                let sc4 = _mm256_slli_epi16(q3k_scale_pair(words, k), 2);
                for n in 0..N {
                    sum[n] = T::madd(sum[n], sc4, half_sums(x[n][k]));
                }
            }
            sum = sum.map(|s| _mm256_sub_epi32(zero, s));
            for half in 0..2 {
                for j in 0..4 {
                    let k = 4 * half + j;
                    let mut s = [[zero; N]; 2];
                    let step = |s: &mut [__m256i; N], w: usize| {
                        let q = q3k_codes(words, half, j, w);
                        for n in 0..N {
                            let xw = broadcast_word(x[n][k].qs.as_ptr(), w);
                            s[n] = if T::DPBUSD { <T as Tier>::Nibbles::step(s[n], q, xw) } else { _mm256_add_epi16(s[n], _mm256_maddubs_epi16(q, xw)) };
                        }
                    };
                    // One token: one loop over the 8 words; several: a group at a time (the
                    // shapes the compiler schedules best, measured).
                    if N == 1 {
                        for w in 0..8 {
                            step(&mut s[w / 4], w);
                        }
                    } else {
                        for (g, s) in s.iter_mut().enumerate() {
                            for w in 4 * g..4 * g + 4 {
                                step(s, w);
                            }
                        }
                    }
                    let sc = q3k_scale_pair(words, k);
                    if T::DPBUSD {
                        // Each group's sum fits i16: both groups as one i16 pair per lane.
                        for n in 0..N {
                            let pair = _mm256_blend_epi16(s[0][n], _mm256_slli_epi32(s[1][n], 16), 0xAA);
                            sum[n] = T::madd(sum[n], pair, sc);
                        }
                    } else {
                        // Each group's scale in both i16 halves of the lane.
                        let sc0 = _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(sc, 0xA0), 0xA0);
                        let sc1 = _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(sc, 0xF5), 0xF5);
                        for n in 0..N {
                            sum[n] = T::madd(T::madd(sum[n], s[0][n], sc0), s[1][n], sc1);
                        }
                    }
                }
            }
            for n in 0..N {
                acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[n]), _mm256_mul_ps(d, _mm256_set1_ps(x[n][0].d)), acc[n]);
            }
        }
    }
}

/// Q6_K, 8 interleaved rows (`quant::interleave`, codes by [`q6k_codes`]) against `N` tokens,
/// added to `acc` (lane `r` = row `r`), in ggml's arithmetic (`ggml_vec_dot_q6_K_q8_K`): the
/// 16-value group scales applied to integer group sums and the activations' scale once per
/// super-block. The codes are unsigned (0..64); their offset of 32 is taken off once per
/// super-block as `Σ_i 32·sc_i · bsum_i` (i16 pairs of `32·sc`, within ±4096, against the
/// activations' half sums: `vpmaddwd` / `vpdpwssd`). AVX2 adds two steps' `vpmaddubsw` pairs
/// in i16 (<= 2 · 2 · 63 · 127 = 32004, exact) and scales them by the group's i16 scale with
/// `vpmaddwd` into one i32 sum per super-block; VNNI sums each group's 4 steps with `vpdpbusd`
/// and adds the sum (< 2^17) times the scale, in f32, to one float sum per super-block (no
/// `vpmulld`, which is two micro-ops). Either sum is then multiplied by `d · dx`.
///
/// # Safety
///
/// As [`group_body`]'s, with `ty` Q6_K.
// The index loops address runs and tokens of per-token arrays together.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn group_q6k<T: Tier, const N: usize>(group: *const u8, nb: usize, a: [&[BlockQ8]; N], acc: &mut [__m256; N]) {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let gbb = 8 * WeightType::Q6K.block_bytes();
        let zero = _mm256_setzero_si256();
        for i in 0..nb / 8 {
            let b = group.add(i * gbb);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
            let w = b.add(16);
            // Words 0..4: the 16 i8 scales (group 4q + b in byte b of word q); then ql and qh words.
            let sw = [0, 1, 2, 3].map(|q| _mm256_loadu_si256(w.add(32 * q) as *const __m256i));
            let x: [[&BlockQ8; 8]; N] = std::array::from_fn(|n| std::array::from_fn(|k| a[n].get_unchecked(8 * i + k)));
            // Σ 32·sc_i · bsum_i: groups 2k and 2k + 1 are activation block k's halves.
            let mut off = [zero; N];
            for k in 0..8 {
                let sc32 = _mm256_srai_epi16(pick_bytes(sw[k / 2], &HIGH_BYTES[4 + k % 2]), 3);
                for n in 0..N {
                    off[n] = T::madd(off[n], sc32, half_sums(x[n][k]));
                }
            }
            // Run g of 32 values in half h is activation block 4h + g; its steps 0..4 and 4..8
            // are groups 8h + 2g and 8h + 2g + 1.
            if T::DPBUSD {
                type D<T> = <T as Tier>::Bytes;
                // Group idx's scale, as f32 in each row's lane.
                let scale = |idx: usize| {
                    let v = _mm256_sll_epi32(sw[idx / 4], _mm_cvtsi32_si128(24 - 8 * (idx % 4) as i32));
                    _mm256_cvtepi32_ps(_mm256_srai_epi32(v, 24))
                };
                let mut sb: [__m256; N] = std::array::from_fn(|n| _mm256_cvtepi32_ps(_mm256_sub_epi32(zero, off[n])));
                for h in 0..2 {
                    for part in 0..2 {
                        // Each step's three words are loaded once for all four runs.
                        let mut s = [[zero; 4]; N];
                        for k in 4 * part..4 * part + 4 {
                            if N == 1 {
                                let pf = w.add(32 * (4 + 24 * h + 3 * k) + PF * gbb);
                                _mm_prefetch::<_MM_HINT_T0>(pf as *const i8);
                                _mm_prefetch::<_MM_HINT_T0>(pf.add(64) as *const i8);
                            }
                            let q = q6k_codes(w, h, k);
                            for g in 0..4 {
                                for n in 0..N {
                                    s[n][g] = D::<T>::step(s[n][g], q[g], broadcast_word(x[n][4 * h + g].qs.as_ptr(), k));
                                }
                            }
                        }
                        for g in 0..4 {
                            let sc = scale(8 * h + 2 * g + part);
                            for n in 0..N {
                                sb[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(D::<T>::finish(s[n][g], zero)), sc, sb[n]);
                            }
                        }
                    }
                }
                for n in 0..N {
                    acc[n] = _mm256_fmadd_ps(sb[n], _mm256_mul_ps(d, _mm256_set1_ps(x[n][0].d)), acc[n]);
                }
            } else {
                // Group idx's scale, sign-extended, in both i16 halves of each row's lane.
                let scale = |idx: usize| _mm256_srai_epi16(pick_bytes(sw[idx / 4], &HIGH_BYTES[idx % 4]), 8);
                // Two steps' products, paired in i16.
                let pair = |q0: __m256i, q1: __m256i, xq: *const i8, k: usize| {
                    _mm256_add_epi16(_mm256_maddubs_epi16(q0, broadcast_word(xq, k)), _mm256_maddubs_epi16(q1, broadcast_word(xq, k + 1)))
                };
                let mut sum: [__m256i; N] = std::array::from_fn(|n| _mm256_sub_epi32(zero, off[n]));
                for h in 0..2 {
                    // Each step's three words are loaded once for all four runs.
                    for k in (0..8).step_by(2) {
                        if N == 1 {
                            for kk in k..k + 2 {
                                let pf = w.add(32 * (4 + 24 * h + 3 * kk) + PF * gbb);
                                _mm_prefetch::<_MM_HINT_T0>(pf as *const i8);
                                _mm_prefetch::<_MM_HINT_T0>(pf.add(64) as *const i8);
                            }
                        }
                        let (q0, q1) = (q6k_codes(w, h, k), q6k_codes(w, h, k + 1));
                        for g in 0..4 {
                            let sc = scale(8 * h + 2 * g + k / 4);
                            for n in 0..N {
                                sum[n] = T::madd(sum[n], pair(q0[g], q1[g], x[n][4 * h + g].qs.as_ptr(), k), sc);
                            }
                        }
                    }
                }
                for n in 0..N {
                    acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[n]), _mm256_mul_ps(d, _mm256_set1_ps(x[n][0].d)), acc[n]);
                }
            }
        }
    }
}

/// Eight interleaved rows (`quant::interleave`'s layout, `nb` blocks) against `N` token rows of
/// activations: lane `r` of result `n` is row `r` times token `n`.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`) (and `T`'s instructions); `ty` is interleaved (`interleave::applies`); every `a[n]` has `nb` blocks and `group` points to 8 interleaved rows holding the `ty` blocks those cover.
#[inline(always)]
unsafe fn group_body<T: Tier, const N: usize>(ty: WeightType, group: *const u8, nb: usize, a: [&[BlockQ8]; N]) -> [[f32; 8]; N] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let gbb = 8 * ty.block_bytes();
        let mut acc = [_mm256_setzero_ps(); N];
        let zero = _mm256_setzero_si256();
        match ty {
            WeightType::Q4_0 | WeightType::Q4_1 => group_q4_q5::<<T as Tier>::Nibbles, N>(ty, group, nb, a, &mut acc),
            WeightType::Q5_0 | WeightType::Q5_1 => group_q4_q5::<<T as Tier>::Fives, N>(ty, group, nb, a, &mut acc),
            WeightType::Q2K => group_q2k::<T, N>(group, nb, a, &mut acc),
            WeightType::Q3K => group_q3k::<T, N>(group, nb, a, &mut acc),
            WeightType::IQ4XS => {
                // Per row: d (header field 0), scales_h (field 1, u16), scales_l (word 0); the
                // 6-bit scale of sub-block ib is bits 4ib.. of scales_l and 2ib.. of scales_h.
                type D<T> = <T as Tier>::Bytes;
                let book = iq4_book();
                let m4 = _mm256_set1_epi8(0xF);
                for i in 0..nb / 8 {
                    let b = group.add(i * gbb);
                    if N == 1 {
                        prefetch_ahead(b, gbb);
                    }
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
                    let sh = _mm256_cvtepu16_epi32(_mm_loadu_si128(b.add(16) as *const __m128i));
                    let sl = _mm256_loadu_si256(b.add(32) as *const __m256i);
                    let w = b.add(64);
                    for ib in 0..8 {
                        let low = _mm256_and_si256(_mm256_srl_epi32(sl, _mm_cvtsi32_si128(4 * ib as i32)), _mm256_set1_epi32(0xF));
                        let high = _mm256_and_si256(_mm256_srl_epi32(sh, _mm_cvtsi32_si128(2 * ib as i32)), _mm256_set1_epi32(3));
                        let ls = _mm256_sub_epi32(_mm256_or_si256(low, _mm256_slli_epi32(high, 4)), _mm256_set1_epi32(32));
                        let dl = _mm256_mul_ps(d, _mm256_cvtepi32_ps(ls));
                        let mut s0 = [zero; N];
                        let mut s1 = [zero; N];
                        for c in 0..4 {
                            let raw = _mm256_loadu_si256(w.add(32 * (4 * ib + c)) as *const __m256i);
                            let lo = _mm256_shuffle_epi8(book, _mm256_and_si256(raw, m4));
                            let hi = _mm256_shuffle_epi8(book, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
                            let (lo_abs, hi_abs) = (_mm256_sign_epi8(lo, lo), _mm256_sign_epi8(hi, hi));
                            for n in 0..N {
                                let qs = a[n].get_unchecked(8 * i + ib).qs.as_ptr();
                                s0[n] = D::<T>::step(s0[n], lo_abs, _mm256_sign_epi8(broadcast_word(qs, c), lo));
                                let h = _mm256_sign_epi8(broadcast_word(qs, 4 + c), hi);
                                if D::<T>::TWO {
                                    s1[n] = D::<T>::step(s1[n], hi_abs, h);
                                } else {
                                    s0[n] = D::<T>::step(s0[n], hi_abs, h);
                                }
                            }
                        }
                        for n in 0..N {
                            let x = a[n].get_unchecked(8 * i + ib);
                            let sum = _mm256_cvtepi32_ps(D::<T>::finish(s0[n], s1[n]));
                            acc[n] = _mm256_fmadd_ps(dl, _mm256_mul_ps(sum, _mm256_set1_ps(x.d)), acc[n]);
                        }
                    }
                }
            }
            WeightType::IQ4NL => {
                // Codes through the code book, then signed x signed as Q8_0 (|w| · sign(w)·x).
                type D<T> = <T as Tier>::Bytes;
                let book = iq4_book();
                let m4 = _mm256_set1_epi8(0xF);
                for i in 0..nb {
                    let b = group.add(i * gbb);
                    if N == 1 {
                        prefetch_ahead(b, gbb);
                    }
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
                    let mut s0 = [zero; N];
                    let mut s1 = [zero; N];
                    for c in 0..4 {
                        let raw = _mm256_loadu_si256(b.add(16 + 32 * c) as *const __m256i);
                        let lo = _mm256_shuffle_epi8(book, _mm256_and_si256(raw, m4));
                        let hi = _mm256_shuffle_epi8(book, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
                        let (lo_abs, hi_abs) = (_mm256_sign_epi8(lo, lo), _mm256_sign_epi8(hi, hi));
                        for n in 0..N {
                            let qs = a[n].get_unchecked(i).qs.as_ptr();
                            s0[n] = D::<T>::step(s0[n], lo_abs, _mm256_sign_epi8(broadcast_word(qs, c), lo));
                            let h = _mm256_sign_epi8(broadcast_word(qs, 4 + c), hi);
                            if D::<T>::TWO {
                                s1[n] = D::<T>::step(s1[n], hi_abs, h);
                            } else {
                                s0[n] = D::<T>::step(s0[n], hi_abs, h);
                            }
                        }
                    }
                    for n in 0..N {
                        let x = a[n].get_unchecked(i);
                        let sum = _mm256_cvtepi32_ps(D::<T>::finish(s0[n], s1[n]));
                        acc[n] = _mm256_fmadd_ps(d, _mm256_mul_ps(sum, _mm256_set1_ps(x.d)), acc[n]);
                    }
                }
            }
            WeightType::Q8_0 => {
                type D<T> = <T as Tier>::Bytes;
                for i in 0..nb {
                    let b = group.add(i * gbb);
                    if N == 1 {
                        prefetch_ahead(b, gbb);
                    }
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
                    let mut s0 = [zero; N];
                    let mut s1 = [zero; N];
                    for s in 0..8 {
                        let w = _mm256_loadu_si256(b.add(16 + 32 * s) as *const __m256i);
                        // |w| x sign(w)·x: u8 x i8 for the unsigned-by-signed products.
                        let wa = _mm256_sign_epi8(w, w);
                        for n in 0..N {
                            let xs = _mm256_sign_epi8(broadcast_word(a[n].get_unchecked(i).qs.as_ptr(), s), w);
                            if D::<T>::TWO && s % 2 == 1 {
                                s1[n] = D::<T>::step(s1[n], wa, xs);
                            } else {
                                s0[n] = D::<T>::step(s0[n], wa, xs);
                            }
                        }
                    }
                    for n in 0..N {
                        let x = a[n].get_unchecked(i);
                        let sum = _mm256_cvtepi32_ps(D::<T>::finish(s0[n], s1[n]));
                        acc[n] = _mm256_fmadd_ps(d, _mm256_mul_ps(sum, _mm256_set1_ps(x.d)), acc[n]);
                    }
                }
            }
            WeightType::Q4K => group_q4k_q5k::<<T as Tier>::Nibbles, N>(ty, group, nb, a, &mut acc),
            WeightType::Q5K => group_q4k_q5k::<<T as Tier>::Fives, N>(ty, group, nb, a, &mut acc),
            WeightType::Q6K => group_q6k::<T, N>(group, nb, a, &mut acc),
            _ => unreachable!("{} is not interleaved", ty.label()),
        }
        let mut out = [[0.0f32; 8]; N];
        for n in 0..N {
            _mm256_storeu_ps(out[n].as_mut_ptr(), acc[n]);
        }
        out
    }
}

/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`); `ty` is interleaved and `group.len() == 8 * quant::q8_row_bytes(ty, a.len())`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn group_q8_avx2(ty: WeightType, group: &[u8], a: &[BlockQ8]) -> [f32; 8] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe { group_body::<Avx2, 1>(ty, group.as_ptr(), a.len(), [a])[0] }
}

/// # Safety
///
/// The CPU has the `Avx512Vnni` tier; `ty` is interleaved and `group.len() == 8 * quant::q8_row_bytes(ty, a.len())`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn group_q8_vnni(ty: WeightType, group: &[u8], a: &[BlockQ8]) -> [f32; 8] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe { group_body::<Vnni, 1>(ty, group.as_ptr(), a.len(), [a])[0] }
}

/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`); `ty` is interleaved; the four `a` rows have one length and `group.len() == 8 * quant::q8_row_bytes(ty, a[0].len())`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn group_q8_x4_avx2(ty: WeightType, group: &[u8], a: [&[BlockQ8]; 4]) -> [[f32; 8]; 4] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe { group_body::<Avx2, 4>(ty, group.as_ptr(), a[0].len(), a) }
}

/// # Safety
///
/// The CPU has the `Avx512Vnni` tier; `ty` is interleaved; the four `a` rows have one length and `group.len() == 8 * quant::q8_row_bytes(ty, a[0].len())`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn group_q8_x4_vnni(ty: WeightType, group: &[u8], a: [&[BlockQ8]; 4]) -> [[f32; 8]; 4] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe { group_body::<Vnni, 4>(ty, group.as_ptr(), a[0].len(), a) }
}

/// [`group_q8_x4_vnni`] with eight tokens, for Q2_K (`quant::has_group_x8`).
///
/// # Safety
///
/// The CPU has the `Avx512Vnni` tier; `ty` is Q2_K; the eight `a` rows have one length and `group.len() == 8 * quant::q8_row_bytes(ty, a[0].len())`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn group_q8_x8_vnni(ty: WeightType, group: &[u8], a: [&[BlockQ8]; 8]) -> [[f32; 8]; 8] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 8];
        match ty {
            WeightType::Q2K => group_q2k::<Vnni, 8>(group.as_ptr(), a[0].len(), a, &mut acc),
            _ => unreachable!("no eight-token kernel for {}", ty.label()),
        }
        let mut out = [[0.0f32; 8]; 8];
        for (o, acc) in out.iter_mut().zip(acc) {
            _mm256_storeu_ps(o.as_mut_ptr(), acc);
        }
        out
    }
}

/// Q8_0 / Q8_1 activations (`format`), 32 floats at a time as ggml-cpu's x86
/// `quantize_row_q8_0` / `_q8_1` do: absmax, scale `127 / absmax`, round half to even, pack to
/// i8; the f16 scale and sum as the scalar tier makes them (`scalar::finish_q8_block`).
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`), and `x.len() >= 32 * out.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_row_q8_avx2(format: ActivationFormat, x: &[f32], out: &mut [BlockQ8]) {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        for (i, b) in out.iter_mut().enumerate() {
            let p = x.as_ptr().add(32 * i);
            let v = [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))];
            let mut m = _mm256_andnot_ps(sign, v[0]);
            for vi in &v[1..] {
                m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vi));
            }
            let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            let amax = _mm_cvtss_f32(m4);
            let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            let mut q = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            }
            let lane_sum = |v: __m256i| {
                let s4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
                let s4 = _mm_hadd_epi32(s4, s4);
                _mm_cvtsi128_si32(_mm_hadd_epi32(s4, s4))
            };
            let halves = [lane_sum(_mm256_add_epi32(q[0], q[1])), lane_sum(_mm256_add_epi32(q[2], q[3]))];
            // packs work per 128-bit lane: undo the interleave with a permute.
            let p16a = _mm256_packs_epi32(q[0], q[1]);
            let p16b = _mm256_packs_epi32(q[2], q[3]);
            let p8 = _mm256_packs_epi16(p16a, p16b);
            let p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(b.qs.as_mut_ptr() as *mut __m256i, p8);
            super::scalar::finish_q8_block(format, b, amax / 127.0, halves);
        }
    }
}

/// Q8_K activations, 256 floats at a time, giving the blocks `scalar::quantize_row_q8k` gives
/// (ggml's `quantize_row_q8_K_ref`): the largest magnitude by vector max, the first value that
/// has it by a scalar scan (its sign sets the scale's), then codes `min(127, round_even(iscale ·
/// x))` 32 at a time, packed as in [`quantize_row_q8_avx2`].
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`); `x.len() == 32 *
/// out.len()` and `out.len()` is a multiple of 8.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_row_q8k_avx2(x: &[f32], out: &mut [BlockQ8]) {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        let k127 = _mm256_set1_epi32(127);
        for (blocks, xs) in out.chunks_exact_mut(8).zip(x.chunks_exact(256)) {
            let p = xs.as_ptr();
            let mut m = _mm256_setzero_ps();
            for k in 0..32 {
                m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(8 * k))));
            }
            let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
            if amax == 0.0 {
                blocks.fill(BlockQ8::default());
                continue;
            }
            let max = xs.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
            let iscale = -127.0 / max;
            let d = 1.0 / iscale;
            let mul = _mm256_set1_ps(iscale);
            for (j, b) in blocks.iter_mut().enumerate() {
                let pj = p.add(32 * j);
                let mut q = [_mm256_setzero_si256(); 4];
                for (k, qk) in q.iter_mut().enumerate() {
                    let v = _mm256_mul_ps(_mm256_loadu_ps(pj.add(8 * k)), mul);
                    *qk = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)), k127);
                }
                let lane_sum = |v: __m256i| {
                    let s4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
                    let s4 = _mm_hadd_epi32(s4, s4);
                    _mm_cvtsi128_si32(_mm_hadd_epi32(s4, s4))
                };
                b.halves = [lane_sum(_mm256_add_epi32(q[0], q[1])), lane_sum(_mm256_add_epi32(q[2], q[3]))];
                let p8 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
                let p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                _mm256_storeu_si256(b.qs.as_mut_ptr() as *mut __m256i, p8);
                b.d = d;
                b.s = d * (b.halves[0] + b.halves[1]) as f32;
            }
        }
    }
}

/// 8 dense weights from value index `i` of `p`, as f32.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`), and `p` holds values `i..i + 8` of `ty` (f32, f16 or bf16).
#[inline(always)]
unsafe fn load_dense(ty: WeightType, p: *const u8, i: usize) -> __m256 {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        match ty {
            WeightType::F32 => _mm256_loadu_ps((p as *const f32).add(i)),
            WeightType::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * i) as *const __m128i)),
            _ => _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(2 * i) as *const __m128i)), 16)),
        }
    }
}

/// `acc` plus the products of 16 i16 pairs `w · x`, added pairwise into 8 i32 lanes.
trait MaddI16 {
    /// # Safety
    ///
    /// The CPU has the implementing tier's instructions (`Avx2`: AVX2; `Vnni`: AVX-512 VNNI and VL).
    unsafe fn madd(acc: __m256i, w: __m256i, x: __m256i) -> __m256i;
}

impl MaddI16 for Avx2 {
    #[inline(always)]
    unsafe fn madd(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: the trait method's contract: the caller's CPU has this tier's instructions.
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(w, x)) }
    }
}

impl MaddI16 for Vnni {
    #[inline(always)]
    unsafe fn madd(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: the trait method's contract: the caller's CPU has this tier's instructions.
        unsafe { _mm256_dpwssd_epi32(acc, w, x) }
    }
}

/// Byte `HIGH` (0: low, 1: high) of each of [`NF4_CODEBOOK_I16`]'s 16 values, a `vpshufb` table.
const fn nf4_table(high: bool) -> [u8; 16] {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        let v = NF4_CODEBOOK_I16[i] as u16;
        t[i] = if high { (v >> 8) as u8 } else { v as u8 };
        i += 1;
    }
    t
}

const NF4_TABLE_LO: [u8; 16] = nf4_table(false);
const NF4_TABLE_HI: [u8; 16] = nf4_table(true);

/// int16 activations (`ActivationFormat::I16`, or `I16Nf4` when `nf4_order`), the codes and
/// scale `scalar::quantize_row_i16` gives: vector absmax, `x * (32767 / absmax)` rounded half to
/// even (`vroundps`, exact, then `vcvtps2dq`), clamped to ±32767, packed to i16 (`vpackssdw`
/// works per 128-bit lane, so it pairs the 8 values for the low lane with the 8 for the high one
/// and `vpermq` restores them). NF4 order pairs values `8v..8v+8` with `32+8v..32+8v+8` of each
/// 64-value block (`reference::nf4_position`), index order `16v..16v+8` with `16v+8..16v+16`.
/// Returns the scale `absmax / 32767`.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`); `out.len() ==
/// x.len()`, a multiple of 32 (of 64 when `nf4_order`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_row_i16_avx2(nf4_order: bool, x: &[f32], out: &mut [i16]) -> f32 {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let (n, p, q) = (x.len(), x.as_ptr(), out.as_mut_ptr());
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_setzero_ps();
        for i in (0..n).step_by(8) {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(i))));
        }
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
        let inv = _mm256_set1_ps(if amax != 0.0 { 32767.0 / amax } else { 0.0 });
        let (lo, hi) = (_mm256_set1_epi32(-32767), _mm256_set1_epi32(32767));
        // 8 codes from `p`, as i32.
        let codes = |p: *const f32| {
            let v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(p), inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(v), lo), hi)
        };
        // Values `a..a+8` into the low lane of 16 codes at `at`, `b..b+8` into the high one.
        let pack = |a: usize, b: usize, at: usize| {
            let v = _mm256_packs_epi32(codes(p.add(a)), codes(p.add(b)));
            _mm256_storeu_si256(q.add(at) as *mut __m256i, _mm256_permute4x64_epi64(v, 0xD8));
        };
        if nf4_order {
            for blk in (0..n).step_by(64) {
                for v in 0..4 {
                    pack(blk + 8 * v, blk + 32 + 8 * v, blk + 16 * v);
                }
            }
        } else {
            for i in (0..n).step_by(16) {
                pack(i, i + 8, i);
            }
        }
        amax / 32767.0
    }
}

/// The 64 int16 code-book values ([`NF4_CODEBOOK_I16`]) of the NF4 block whose 32 code bytes
/// start at `p`, as four vectors of 16 in the `I16Nf4` activation order: `[0-7 | 32-39]`,
/// `[8-15 | 40-47]`, `[16-23 | 48-55]`, `[24-31 | 56-63]`. The 32 bytes are the block's two
/// halves, one per 128-bit lane, low nibbles values 0..16 of the half and high nibbles 16..32;
/// `vpshufb` of each nibble vector in the tables of the values' low and high bytes, and the byte
/// unpacks within each lane, give the int16 values in that order (the torch framework's
/// `nf4_row_avx2` lookup).
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`), and `p` points to 32
/// readable bytes; `tab_lo` / `tab_hi` hold [`NF4_TABLE_LO`] / [`NF4_TABLE_HI`] in both lanes.
#[inline(always)]
unsafe fn nf4_codes(p: *const u8, tab_lo: __m256i, tab_hi: __m256i) -> [__m256i; 4] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let bytes = _mm256_loadu_si256(p as *const __m256i);
        let (lo, hi) = (_mm256_and_si256(bytes, m4), _mm256_and_si256(_mm256_srli_epi16(bytes, 4), m4));
        let (l0, h0) = (_mm256_shuffle_epi8(tab_lo, lo), _mm256_shuffle_epi8(tab_hi, lo));
        let (l1, h1) = (_mm256_shuffle_epi8(tab_lo, hi), _mm256_shuffle_epi8(tab_hi, hi));
        [_mm256_unpacklo_epi8(l0, h0), _mm256_unpackhi_epi8(l0, h0), _mm256_unpacklo_epi8(l1, h1), _mm256_unpackhi_epi8(l1, h1)]
    }
}

/// 16 activations at `p` (a function, not a closure, to keep the caller's target features).
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`), and `p` points to 16 readable i16.
#[inline(always)]
unsafe fn load_i16(p: *const i16) -> __m256i {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// The i32 sums of block `blk` of an int8 (`NF4 == false`: 32 values at `row + 4 + 32 blk`) or
/// NF4 (`NF4`: 64 values, codes at `row + 36 blk + 4`) row times each of `N` int16 activation
/// rows, in 8 lanes per token (the block's sum is the sum of the lanes; exact: see
/// `reference::NF4_CODE_SCALE`).
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`) (and `D`'s
/// instructions); the row and every `a[n]` hold block `blk`; NF4 tables as in [`nf4_codes`].
#[inline(always)]
unsafe fn i16_block<D: MaddI16, const N: usize, const NF4: bool>(
    row: *const u8,
    blk: usize,
    a: [*const i16; N],
    tab_lo: __m256i,
    tab_hi: __m256i,
) -> [__m256i; N] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let z = _mm256_setzero_si256();
        let mut out = [z; N];
        if NF4 {
            let w = nf4_codes(row.add(36 * blk + 4), tab_lo, tab_hi);
            for n in 0..N {
                let x = a[n].add(64 * blk);
                let s0 = D::madd(D::madd(z, w[0], load_i16(x)), w[1], load_i16(x.add(16)));
                let s1 = D::madd(D::madd(z, w[2], load_i16(x.add(32))), w[3], load_i16(x.add(48)));
                out[n] = _mm256_add_epi32(s0, s1);
            }
        } else {
            let q = row.add(4 + 32 * blk);
            let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(q as *const __m128i));
            let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(q.add(16) as *const __m128i));
            for n in 0..N {
                let x = a[n].add(32 * blk);
                out[n] = D::madd(D::madd(z, w0, load_i16(x)), w1, load_i16(x.add(16)));
            }
        }
        out
    }
}

/// An int8 (`NF4 == false`) or NF4 row times `N` int16 activation rows (`a`, scales `s`) in the
/// arithmetic of `scalar::dot_i16` (the order in `quant/mod.rs`): blocks in groups of 8, each
/// block's i32 lanes reduced to one sum by `vphaddd` pairs and one cross-lane add (so block `g+k`
/// lands in lane `k`), converted to f32 (NF4: times the 8 absmax values, gathered at their 36-byte
/// stride; a short last group gathers and sums zeros) and added to the lanes; the lanes summed by
/// [`hsum`] and scaled.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`) (and `D`'s
/// instructions); every `a[n]` has one length `k`, a multiple of 32 (NF4: 64), and `row` is an
/// int8 row of `k` values (`4 + k` bytes) or an NF4 row of `k` values (`k / 64 * 36` bytes).
// The index loops address the inner (block) dimension of per-token arrays, for every token.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn i16_body<D: MaddI16, const N: usize, const NF4: bool>(row: &[u8], a: [&[i16]; N], s: [f32; N]) -> [f32; N] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let nb = a[0].len() / if NF4 { 64 } else { 32 };
        let rp = row.as_ptr();
        let ap = a.map(|r| r.as_ptr());
        let tab_lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(NF4_TABLE_LO.as_ptr() as *const __m128i));
        let tab_hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(NF4_TABLE_HI.as_ptr() as *const __m128i));
        let z = _mm256_setzero_si256();
        let mut lanes = [_mm256_setzero_ps(); N];
        let mut g = 0;
        while g < nb {
            // quads[n][h]: `vphaddd` of the pairs of blocks g+4h..g+4h+4: lane k of each 128-bit
            // half is block g+4h+k's sum over that half's lanes.
            let mut quads = [[z; 2]; N];
            for h in 0..2 {
                let mut pairs = [[z; 2]; N];
                for pr in 0..2 {
                    let mut sums = [[z; 2]; N];
                    for e in 0..2 {
                        let blk = g + 4 * h + 2 * pr + e;
                        if blk < nb {
                            let v = i16_block::<D, N, NF4>(rp, blk, ap, tab_lo, tab_hi);
                            for n in 0..N {
                                sums[n][e] = v[n];
                            }
                        }
                    }
                    for n in 0..N {
                        pairs[n][pr] = _mm256_hadd_epi32(sums[n][0], sums[n][1]);
                    }
                }
                for n in 0..N {
                    quads[n][h] = _mm256_hadd_epi32(pairs[n][0], pairs[n][1]);
                }
            }
            let absmax = if NF4 {
                let live = _mm256_cmpgt_epi32(_mm256_set1_epi32((nb - g).min(8) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                let stride = _mm256_setr_epi32(0, 9, 18, 27, 36, 45, 54, 63);
                _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), rp.add(36 * g) as *const f32, stride, _mm256_castsi256_ps(live))
            } else {
                _mm256_setzero_ps()
            };
            for n in 0..N {
                let [q0, q1] = quads[n];
                let block_sums = _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31));
                let f = _mm256_cvtepi32_ps(block_sums);
                lanes[n] = _mm256_add_ps(lanes[n], if NF4 { _mm256_mul_ps(f, absmax) } else { f });
            }
            g += 8;
        }
        let mut out = [0.0f32; N];
        for n in 0..N {
            let scale = if NF4 { s[n] * (1.0 / NF4_CODE_SCALE as f32) } else { f32_at(rp) * s[n] };
            out[n] = hsum(lanes[n]) * scale;
        }
        out
    }
}

/// int8 / NF4 row x one token's int16 activations (`ActivationFormat::I16` / `I16Nf4`, scale
/// `s`), AVX2 (`vpmaddwd`): [`i16_body`].
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`); `ty` is int8 or NF4
/// and `row` holds `a.len()` values of it (`quant::i16_row_fits`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_i16_avx2(ty: WeightType, row: &[u8], a: &[i16], s: f32) -> f32 {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        match ty {
            WeightType::Nf4 => i16_body::<Avx2, 1, true>(row, [a], [s])[0],
            _ => i16_body::<Avx2, 1, false>(row, [a], [s])[0],
        }
    }
}

/// [`dot_i16_avx2`] on the AVX-512 VNNI tier (`vpdpwssd ymm`).
///
/// # Safety
///
/// The CPU has the `Avx512Vnni` tier; `ty` is int8 or NF4 and `row` holds `a.len()` values of it.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn dot_i16_vnni(ty: WeightType, row: &[u8], a: &[i16], s: f32) -> f32 {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        match ty {
            WeightType::Nf4 => i16_body::<Vnni, 1, true>(row, [a], [s])[0],
            _ => i16_body::<Vnni, 1, false>(row, [a], [s])[0],
        }
    }
}

/// [`dot_i16_avx2`] for four tokens at once (each weight block decoded once).
///
/// # Safety
///
/// As [`dot_i16_avx2`], with the four `a` rows of one length.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_i16_x4_avx2(ty: WeightType, row: &[u8], a: [&[i16]; 4], s: [f32; 4]) -> [f32; 4] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        match ty {
            WeightType::Nf4 => i16_body::<Avx2, 4, true>(row, a, s),
            _ => i16_body::<Avx2, 4, false>(row, a, s),
        }
    }
}

/// [`dot_i16_vnni`] for four tokens at once.
///
/// # Safety
///
/// As [`dot_i16_vnni`], with the four `a` rows of one length.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn dot_i16_x4_vnni(ty: WeightType, row: &[u8], a: [&[i16]; 4], s: [f32; 4]) -> [f32; 4] {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        match ty {
            WeightType::Nf4 => i16_body::<Vnni, 4, true>(row, a, s),
            _ => i16_body::<Vnni, 4, false>(row, a, s),
        }
    }
}

/// How far ahead of its reads the dense row kernel asks for weight bytes (`prefetcht0`). Decode
/// streams every weight once per token, and the hardware prefetchers stop at each 4 KiB page
/// boundary (even inside a 2 MiB page), so without it each page of a row starts with a wait for
/// memory. 2-4 KiB measured best on the 1B BF16 file (decode 6.6 -> 8.5 tok/s, 2 threads, Intel
/// Xeon; 8 KiB no better); f32, f16 and bf16 rows all go through this kernel.
const DENSE_PREFETCH: usize = 2048;

/// Asks for the `len` weight bytes [`DENSE_PREFETCH`] ahead of `p` (one `prefetcht0` per 64-byte
/// line), for the one-token kernels that stream interleaved groups: the same page-boundary stall
/// as the dense rows'. Called once per block step with that step's bytes (and by the dense row
/// kernel once per 32 values).
///
/// # Safety
///
/// The CPU has SSE (every x86-64 CPU). Any `p` and `len`: a prefetch never faults and reads
/// nothing into the program, and `wrapping_add` names the address without creating a reference.
#[inline(always)]
unsafe fn prefetch_ahead(p: *const u8, len: usize) {
    for line in (0..len).step_by(64) {
        // SAFETY: as this fn's contract says: any address may be prefetched.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(DENSE_PREFETCH + line) as *const i8) };
    }
}

/// A dense f32/f16/bf16 row x f32 activations (32 values per step in 4 accumulators;
/// bandwidth-bound).
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`); `ty` takes f32 activations and `row.len() == ty.row_bytes(x.len())`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_dense_avx2(ty: WeightType, row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let n = x.len();
        let p = row.as_ptr();
        let xp = x.as_ptr();
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        let bytes = ty.block_bytes();
        while i + 32 <= n {
            // Past the row's end this reaches the next row's bytes, which the next call reads.
            prefetch_ahead(p.wrapping_add(i * bytes), 32 * bytes);
            for (k, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(load_dense(ty, p, i + 8 * k), _mm256_loadu_ps(xp.add(i + 8 * k)), *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(load_dense(ty, p, i), _mm256_loadu_ps(xp.add(i)), acc[0]);
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        while i < n {
            s += super::scalar::dot_dense(ty, &row[i * ty.block_bytes()..(i + 1) * ty.block_bytes()], &x[i..i + 1]);
            i += 1;
        }
        s
    }
}

/// `Σ a_i b_i` over f32 slices of equal length.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`). Any lengths (the shorter one counts).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), acc1);
            i += 16;
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        while i < n {
            s += a[i] * b[i];
            i += 1;
        }
        s
    }
}

/// `y += alpha * x` over f32 slices of equal length.
///
/// # Safety
///
/// The CPU has AVX2, FMA and F16C (the `Avx2` tier of `cpu::Isa::detect`). Any lengths (the shorter one counts).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn axpy_f32_avx2(alpha: f32, x: &[f32], y: &mut [f32]) {
    // SAFETY: this fn's `# Safety` contract (CPU features, lengths), upheld by the caller.
    unsafe {
        let n = x.len().min(y.len());
        let (px, py) = (x.as_ptr(), y.as_mut_ptr());
        let va = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            _mm256_storeu_ps(py.add(i), _mm256_fmadd_ps(va, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i))));
            i += 8;
        }
        while i < n {
            y[i] += alpha * x[i];
            i += 1;
        }
    }
}
