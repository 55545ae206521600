//! Portable kernels: any CPU. Integer dot products per 32-value block, like the SIMD ones, so all
//! tiers compute the same sums (up to float rounding order).

use half::{bf16, f16};

use super::reference::{f16_at, iq4xs_scale, q3k_scales, q5_code, scale_min_k4};
use super::reference::{nf4_position, IQ4NL_CODEBOOK, NF4_CODEBOOK_I16, NF4_CODE_SCALE};
use super::{ActivationFormat, BlockQ8, WeightType};

/// Q8_0 / Q8_1 blocks as ggml-cpu's x86 `quantize_row_q8_0` / `_q8_1` make them (scale
/// `127 / amax`, round half to even).
pub(super) fn quantize_row_q8(format: ActivationFormat, x: &[f32], out: &mut [BlockQ8]) {
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(32)) {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round_ties_even() as i8;
        }
        let halves = [isum(&b.qs[..16]), isum(&b.qs[16..])];
        finish_q8_block(format, b, amax / 127.0, halves);
    }
}

/// A Q8_0 / Q8_1 block's stored scale and sum from `d = amax / 127` and its codes' half sums
/// (both tiers).
pub(super) fn finish_q8_block(format: ActivationFormat, b: &mut BlockQ8, d: f32, halves: [i32; 2]) {
    b.halves = halves;
    let sum = b.halves[0] + b.halves[1];
    b.d = f16::from_f32(d).to_f32();
    b.s = match format {
        ActivationFormat::Q8_1 => f16::from_f32(d * sum as f32).to_f32(),
        _ => b.d * sum as f32,
    };
}

/// Q8_K blocks as ggml's `quantize_row_q8_K_ref` makes them, each as 8 [`BlockQ8`]s sharing `d`.
pub(super) fn quantize_row_q8k(x: &[f32], out: &mut [BlockQ8]) {
    for (blocks, xs) in out.chunks_exact_mut(8).zip(x.chunks_exact(256)) {
        // The value of largest magnitude, the first one on ties (ggml's strict `>`).
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xs {
            if v.abs() > amax {
                (amax, max) = (v.abs(), v);
            }
        }
        if amax == 0.0 {
            blocks.fill(BlockQ8::default());
            continue;
        }
        let iscale = -127.0 / max;
        let d = 1.0 / iscale;
        for (b, xs) in blocks.iter_mut().zip(xs.chunks_exact(32)) {
            for (q, &v) in b.qs.iter_mut().zip(xs) {
                *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
            }
            b.halves = [isum(&b.qs[..16]), isum(&b.qs[16..])];
            b.d = d;
            b.s = d * (b.halves[0] + b.halves[1]) as f32;
        }
    }
}

/// Σ kvalues_iq4nl[q] · x over a 32-value IQ4 run (16 bytes of nibbles, Q4_0's order).
fn iq4_dot(qs: &[u8], x: &[i8; 32]) -> i32 {
    (0..16).map(|j| IQ4NL_CODEBOOK[(qs[j] & 0xF) as usize] as i32 * x[j] as i32 + IQ4NL_CODEBOOK[(qs[j] >> 4) as usize] as i32 * x[j + 16] as i32).sum()
}

fn isum(a: &[i8]) -> i32 {
    a.iter().map(|&v| v as i32).sum()
}

pub(super) fn dot_q8(ty: WeightType, row: &[u8], a: &[BlockQ8]) -> f32 {
    let bb = ty.block_bytes();
    let mut acc = 0.0f32;
    match ty {
        WeightType::Q4_0 | WeightType::Q4_1 => {
            for (b, x) in row.chunks_exact(bb).zip(a) {
                let qs = &b[bb - 16..];
                let dot: i32 = qs.iter().enumerate().map(|(j, &q)| (q & 0xF) as i32 * x.qs[j] as i32 + (q >> 4) as i32 * x.qs[j + 16] as i32).sum();
                acc += match ty {
                    WeightType::Q4_0 => f16_at(b, 0) * x.d * (dot - 8 * isum(&x.qs)) as f32,
                    _ => f16_at(b, 0) * x.d * dot as f32 + f16_at(b, 2) * x.s,
                };
            }
        }
        WeightType::Q5_0 | WeightType::Q5_1 => {
            for (b, x) in row.chunks_exact(bb).zip(a) {
                let qh = u32::from_le_bytes([b[bb - 20], b[bb - 19], b[bb - 18], b[bb - 17]]);
                let qs = &b[bb - 16..];
                let dot: i32 = (0..32).map(|j| q5_code(qh, qs, j) as i32 * x.qs[j] as i32).sum();
                acc += match ty {
                    WeightType::Q5_0 => f16_at(b, 0) * x.d * (dot - 16 * isum(&x.qs)) as f32,
                    _ => f16_at(b, 0) * x.d * dot as f32 + f16_at(b, 2) * x.s,
                };
            }
        }
        WeightType::IQ4NL => {
            for (b, x) in row.chunks_exact(bb).zip(a) {
                acc += f16_at(b, 0) * x.d * iq4_dot(&b[2..18], &x.qs) as f32;
            }
        }
        WeightType::IQ4XS => {
            for (b, x) in row.chunks_exact(bb).zip(a.chunks_exact(8)) {
                let d = f16_at(b, 0);
                for (ib, xb) in x.iter().enumerate() {
                    let dot = iq4_dot(&b[8 + 16 * ib..8 + 16 * (ib + 1)], &xb.qs);
                    acc += d * xb.d * (iq4xs_scale(b, ib) * dot) as f32;
                }
            }
        }
        WeightType::Q2K => {
            for (b, x) in row.chunks_exact(bb).zip(a.chunks_exact(8)) {
                let (sc, qs) = (&b[0..16], &b[16..80]);
                let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
                // Activation block 4n + j: 2-bit field j of qs bytes 32n..32n+32; scales 2(4n+j), +1.
                for (k, xb) in x.iter().enumerate() {
                    let (n, j) = (k / 4, k % 4);
                    let mut sums = [0i32; 2];
                    for l in 0..32 {
                        sums[l / 16] += ((qs[32 * n + l] >> (2 * j)) & 3) as i32 * xb.qs[l] as i32;
                    }
                    let (s0, s1) = (sc[2 * k], sc[2 * k + 1]);
                    let dot = (s0 & 0xF) as i32 * sums[0] + (s1 & 0xF) as i32 * sums[1];
                    let mins = (s0 >> 4) as i32 * xb.halves[0] + (s1 >> 4) as i32 * xb.halves[1];
                    acc += d * xb.d * dot as f32 - dmin * xb.d * mins as f32;
                }
            }
        }
        WeightType::Q3K => {
            for (b, x) in row.chunks_exact(bb).zip(a.chunks_exact(8)) {
                let (hm, qs) = (&b[0..32], &b[32..96]);
                let scales = q3k_scales(&b[96..108]);
                let d = f16_at(b, 108);
                for (k, xb) in x.iter().enumerate() {
                    let (n, j) = (k / 4, k % 4);
                    let mut sums = [0i32; 2];
                    for l in 0..32 {
                        let q = ((qs[32 * n + l] >> (2 * j)) & 3) | (((hm[l] >> (4 * n + j)) & 1) << 2);
                        sums[l / 16] += q as i32 * xb.qs[l] as i32;
                    }
                    // Codes are q - 4: the 4 comes off through the activations' half sums.
                    let dot = scales[2 * k] * (sums[0] - 4 * xb.halves[0]) + scales[2 * k + 1] * (sums[1] - 4 * xb.halves[1]);
                    acc += d * xb.d * dot as f32;
                }
            }
        }
        WeightType::Q8_0 => {
            for (b, x) in row.chunks_exact(bb).zip(a) {
                let dot: i32 = b[2..].iter().zip(&x.qs).map(|(&w, &v)| w as i8 as i32 * v as i32).sum();
                acc += f16_at(b, 0) * x.d * dot as f32;
            }
        }
        WeightType::Q4K | WeightType::Q5K => {
            for (b, x) in row.chunks_exact(bb).zip(a.chunks_exact(8)) {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let scales = &b[4..16];
                let (qh, qs) = if ty == WeightType::Q5K { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
                for j in 0..4 {
                    for (h, xb) in [(0usize, &x[2 * j]), (1, &x[2 * j + 1])] {
                        let (sc, m) = scale_min_k4(2 * j + h, scales);
                        let mut dot = 0i32;
                        for l in 0..32 {
                            let mut q = (qs[32 * j + l] >> (4 * h)) & 0xF;
                            if ty == WeightType::Q5K {
                                q += ((qh[l] >> (2 * j + h)) & 1) << 4;
                            }
                            dot += q as i32 * xb.qs[l] as i32;
                        }
                        acc += d * sc as f32 * xb.d * dot as f32 - dmin * m as f32 * xb.s;
                    }
                }
            }
        }
        WeightType::Q6K => {
            for (b, x) in row.chunks_exact(bb).zip(a.chunks_exact(8)) {
                let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                let d = f16_at(b, 208);
                for half in 0..2 {
                    let (ql, qh, sc) = (&ql[64 * half..], &qh[32 * half..], &sc[8 * half..]);
                    // Groups of 32 values: q1 (ql low, qh bits 0-1), q2 (ql+32 low, bits 2-3),
                    // q3 (ql high, bits 4-5), q4 (ql+32 high, bits 6-7).
                    for g in 0..4 {
                        let xb = &x[4 * half + g];
                        let mut sums = [0i32; 2];
                        for l in 0..32 {
                            let src = ql[l + 32 * (g & 1)];
                            let low = if g < 2 { src & 0xF } else { src >> 4 };
                            let q = (low | (((qh[l] >> (2 * g)) & 3) << 4)) as i32 - 32;
                            sums[l / 16] += q * xb.qs[l] as i32;
                        }
                        let dot = sc[2 * g] as i8 as i32 * sums[0] + sc[2 * g + 1] as i8 as i32 * sums[1];
                        acc += d * xb.d * dot as f32;
                    }
                }
            }
        }
        WeightType::F32 | WeightType::F16 | WeightType::BF16 | WeightType::Int8 | WeightType::Nf4 => {
            unreachable!("{} takes no Q8 activations", ty.label())
        }
    }
    acc
}

pub(crate) fn dot_dense(ty: WeightType, row: &[u8], x: &[f32]) -> f32 {
    match ty {
        WeightType::F32 => row.chunks_exact(4).zip(x).map(|(b, &v)| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * v).sum(),
        WeightType::F16 => (0..x.len()).map(|i| f16_at(row, 2 * i) * x[i]).sum(),
        WeightType::BF16 => (0..x.len()).map(|i| bf16::from_le_bytes([row[2 * i], row[2 * i + 1]]).to_f32() * x[i]).sum(),
        _ => unreachable!("{} quantizes its activations", ty.label()),
    }
}

/// int16 activations (`ActivationFormat::I16`, or `I16Nf4` when `nf4_order`): `s = max|x| /
/// 32767`, codes `round_half_even(x * (32767 / max|x|))` clamped to -32767..=32767 (all 0 and
/// `s = 0` for a zero row), NF4's 64-value blocks stored at `reference::nf4_position`. Returns `s`.
pub(super) fn quantize_row_i16(nf4_order: bool, x: &[f32], out: &mut [i16]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let inv = if amax != 0.0 { 32767.0 / amax } else { 0.0 };
    for (i, &v) in x.iter().enumerate() {
        let at = if nf4_order { 64 * (i / 64) + nf4_position(i % 64) } else { i };
        out[at] = (v * inv).round_ties_even().clamp(-32767.0, 32767.0) as i16;
    }
    amax / 32767.0
}

/// The fixed sum of the 8 float lanes of the int16 products (the x86 `hsum`'s order):
/// `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`.
pub(super) fn sum_lanes(l: [f32; 8]) -> f32 {
    let h = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    (h[0] + h[2]) + (h[1] + h[3])
}

/// int8 / NF4 row times int16 activations `a` (scale `s`), the arithmetic every tier follows:
/// each block's products (int8: 32; NF4: 64, codes from `NF4_CODEBOOK_I16`) summed exactly in
/// i32; block `b`'s sum as f32 (NF4: times its absmax) added into lane `b % 8`; the lanes summed
/// by [`sum_lanes`], times `row_scale * s` (int8) or `s * (1 / NF4_CODE_SCALE)` (NF4).
pub(super) fn dot_i16(ty: WeightType, row: &[u8], a: &[i16], s: f32) -> f32 {
    let f32_at = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut lanes = [0.0f32; 8];
    match ty {
        WeightType::Int8 => {
            for (b, (q, x)) in row[4..].chunks_exact(32).zip(a.chunks_exact(32)).enumerate() {
                let sum: i32 = q.iter().zip(x).map(|(&q, &x)| q as i8 as i32 * x as i32).sum();
                lanes[b % 8] += sum as f32;
            }
            sum_lanes(lanes) * (f32_at(row) * s)
        }
        WeightType::Nf4 => {
            for (b, (blk, x)) in row.chunks_exact(36).zip(a.chunks_exact(64)).enumerate() {
                // Byte i of half h: value 32h + i (low nibble) and 32h + 16 + i (high nibble).
                let mut sum = 0i32;
                for (i, &byte) in blk[4..36].iter().enumerate() {
                    let j = 32 * (i / 16) + i % 16;
                    sum += NF4_CODEBOOK_I16[(byte & 0xF) as usize] as i32 * x[nf4_position(j)] as i32
                        + NF4_CODEBOOK_I16[(byte >> 4) as usize] as i32 * x[nf4_position(j + 16)] as i32;
                }
                lanes[b % 8] += sum as f32 * f32_at(blk);
            }
            sum_lanes(lanes) * (s * (1.0 / NF4_CODE_SCALE as f32))
        }
        _ => unreachable!("{} takes no int16 activations", ty.label()),
    }
}
