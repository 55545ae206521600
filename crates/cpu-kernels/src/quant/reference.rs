//! Plain dequantization of every weight format to f32: the reference the SIMD products are
//! tested against, and what `prefill` paths may use. Written from ggml's `dequantize_row_*`
//! (`ggml-quants.c`); the native backend's tests check it against candle's own dequantizer.

use half::{bf16, f16};

use super::{BlockQ8, WeightType};

/// The NF4 code book, as published in QLoRA (Appendix E) and bitsandbytes (the same constant
/// bench-core's `quant` uses; a native-backend test checks they are equal).
pub const NF4_CODEBOOK: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// The scale of [`NF4_CODEBOOK_I16`]: a code stands for `NF4_CODEBOOK_I16[q] / NF4_CODE_SCALE`.
/// 1024 is the largest power of two for which one 64-value block's integer sum fits in i32:
/// `64 * 1024 * 32767 = 2_147_418_112 <= i32::MAX` (|code| <= 1024, |activation| <= 32767).
/// (The torch framework scales its int16 code book to 32767 and moves each `vpmaddwd` lane to
/// f32 separately, which the per-block i32 sums here cannot.) Each code is then off by at most
/// `1 / (2 * 1024)` of the block's absmax (measured: 4.9e-4 at most, for 0.0795803).
pub const NF4_CODE_SCALE: i32 = 1024;

/// `round(NF4_CODEBOOK * NF4_CODE_SCALE)` (a test checks it against [`NF4_CODEBOOK`]).
pub const NF4_CODEBOOK_I16: [i16; 16] = [-1024, -713, -538, -404, -291, -189, -93, 0, 81, 165, 252, 346, 451, 576, 740, 1024];

/// Position of value `j` (0..64) of an NF4 block in the [`super::ActivationFormat::I16Nf4`]
/// layout: the 64 activations of a block as four runs of 16, `[0-7 | 32-39]`, `[8-15 | 40-47]`,
/// `[16-23 | 48-55]`, `[24-31 | 56-63]`: the order in which the x86 kernels' byte unpacks leave
/// the code book's int16 values (see `x86.rs`), so the activations are rearranged once per call,
/// never per row (the torch framework's `reorder_nf4`).
#[inline]
pub fn nf4_position(j: usize) -> usize {
    16 * ((j % 32) / 8) + 8 * (j / 32) + j % 8
}

/// Activations quantized with [`super::quantize_row_i16`] (`q` in `format`'s order, scale `s`)
/// back to f32 in index order: `s * q`.
pub fn dequantize_i16(format: super::ActivationFormat, q: &[i16], s: f32, out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        let at = match format {
            super::ActivationFormat::I16Nf4 => 64 * (i / 64) + nf4_position(i % 64),
            _ => i,
        };
        *o = s * q[at] as f32;
    }
}

/// IQ4_NL's and IQ4_XS's 16-entry non-linear code book (ggml's `kvalues_iq4nl`, `ggml-common.h`):
/// a 4-bit code `q` stands for `d * IQ4NL_CODEBOOK[q]`.
pub const IQ4NL_CODEBOOK: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K / Q5_K block (ggml's `get_scale_min_k4`).
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The 5-bit code of value `j` (0..32) of a Q5_0 / Q5_1 block whose fifth bits are `qh` and
/// nibbles `qs` (ggml's order: low nibbles are values 0..16, high nibbles 16..32; bit `j` of `qh`
/// is value `j`'s fifth bit).
#[inline]
pub(crate) fn q5_code(qh: u32, qs: &[u8], j: usize) -> u8 {
    let nibble = if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 };
    nibble | ((((qh >> j) & 1) as u8) << 4)
}

/// The 6-bit scale of sub-block `ib` (0..8) of an IQ4_XS block, minus 32 (ggml's
/// `dequantize_row_iq4_xs`): low 4 bits from `scales_l` (bytes 4..8), high 2 from `scales_h`.
#[inline]
pub(crate) fn iq4xs_scale(b: &[u8], ib: usize) -> i32 {
    let scales_h = u16::from_le_bytes([b[2], b[3]]) as i32;
    let low = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF;
    (low as i32 | (((scales_h >> (2 * ib)) & 3) << 4)) - 32
}

/// The 16 signed 6-bit scales of a Q3_K block (minus 32), unpacked from its 12 bytes as ggml's
/// `quantize_row_q3_K_ref` packs them: scale `j`'s low 4 bits are the low (j < 8) or high nibble
/// of byte `j % 8`, its high 2 bits are bits `2 (j / 4)` of byte `8 + j % 4`.
#[inline]
pub(crate) fn q3k_scales(scales: &[u8]) -> [i32; 16] {
    std::array::from_fn(|j| {
        let low = if j < 8 { scales[j] & 0xF } else { scales[j - 8] >> 4 };
        let high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        (low | (high << 4)) as i32 - 32
    })
}

/// Dequantizes one row (`row` bytes of type `ty`) into `out` (`out.len()` values).
pub fn dequantize_row(ty: WeightType, row: &[u8], out: &mut [f32]) {
    assert_eq!(Some(row.len()), ty.row_bytes(out.len()), "row bytes do not match {} values of {}", out.len(), ty.label());
    let bb = ty.block_bytes();
    match ty {
        WeightType::F32 => out.iter_mut().enumerate().for_each(|(i, o)| *o = f32_at(row, 4 * i)),
        WeightType::F16 => out.iter_mut().enumerate().for_each(|(i, o)| *o = f16_at(row, 2 * i)),
        WeightType::BF16 => out.iter_mut().enumerate().for_each(|(i, o)| *o = bf16::from_le_bytes([row[2 * i], row[2 * i + 1]]).to_f32()),
        WeightType::Int8 => {
            let scale = f32_at(row, 0);
            out.iter_mut().zip(&row[4..]).for_each(|(o, &q)| *o = scale * q as i8 as f32);
        }
        WeightType::Nf4 => {
            for (b, y) in row.chunks_exact(bb).zip(out.chunks_exact_mut(64)) {
                let d = f32_at(b, 0);
                for (half, y) in y.chunks_exact_mut(32).enumerate() {
                    let qs = &b[4 + 16 * half..4 + 16 * (half + 1)];
                    for j in 0..16 {
                        y[j] = d * NF4_CODEBOOK[(qs[j] & 0xF) as usize];
                        y[j + 16] = d * NF4_CODEBOOK[(qs[j] >> 4) as usize];
                    }
                }
            }
        }
        WeightType::Q4_0 | WeightType::Q4_1 => {
            for (b, y) in row.chunks_exact(bb).zip(out.chunks_exact_mut(32)) {
                let qs = &b[bb - 16..];
                for j in 0..16 {
                    let (lo, hi) = (qs[j] & 0xF, qs[j] >> 4);
                    let (a, c) = match ty {
                        WeightType::Q4_0 => {
                            let d = f16_at(b, 0);
                            (d * (lo as f32 - 8.0), d * (hi as f32 - 8.0))
                        }
                        _ => {
                            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                            (d * lo as f32 + m, d * hi as f32 + m)
                        }
                    };
                    y[j] = a;
                    y[j + 16] = c;
                }
            }
        }
        WeightType::Q5_0 | WeightType::Q5_1 => {
            for (b, y) in row.chunks_exact(bb).zip(out.chunks_exact_mut(32)) {
                let qh = u32::from_le_bytes([b[bb - 20], b[bb - 19], b[bb - 18], b[bb - 17]]);
                let qs = &b[bb - 16..];
                let d = f16_at(b, 0);
                for j in 0..16 {
                    let x0 = ((qs[j] & 0xF) as u32 | (((qh >> j) << 4) & 0x10)) as f32;
                    let x1 = ((qs[j] >> 4) as u32 | ((qh >> (j + 12)) & 0x10)) as f32;
                    (y[j], y[j + 16]) = match ty {
                        WeightType::Q5_0 => (d * (x0 - 16.0), d * (x1 - 16.0)),
                        _ => (d * x0 + f16_at(b, 2), d * x1 + f16_at(b, 2)),
                    };
                }
            }
        }
        WeightType::IQ4NL => {
            for (b, y) in row.chunks_exact(bb).zip(out.chunks_exact_mut(32)) {
                let d = f16_at(b, 0);
                for j in 0..16 {
                    y[j] = d * IQ4NL_CODEBOOK[(b[2 + j] & 0xF) as usize] as f32;
                    y[j + 16] = d * IQ4NL_CODEBOOK[(b[2 + j] >> 4) as usize] as f32;
                }
            }
        }
        WeightType::IQ4XS => {
            for (b, y) in row.chunks_exact(bb).zip(out.chunks_exact_mut(256)) {
                let d = f16_at(b, 0);
                let scales_h = u16::from_le_bytes([b[2], b[3]]) as i32;
                for (ib, y) in y.chunks_exact_mut(32).enumerate() {
                    let ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) as i32 | (((scales_h >> (2 * ib)) & 3) << 4);
                    let dl = d * (ls - 32) as f32;
                    let qs = &b[8 + 16 * ib..8 + 16 * (ib + 1)];
                    for j in 0..16 {
                        y[j] = dl * IQ4NL_CODEBOOK[(qs[j] & 0xF) as usize] as f32;
                        y[j + 16] = dl * IQ4NL_CODEBOOK[(qs[j] >> 4) as usize] as f32;
                    }
                }
            }
        }
        WeightType::Q2K => {
            // scales[16] (low nibble scale, high nibble min, per 16 values), qs[64], d, dmin.
            for (b, y) in row.chunks_exact(bb).zip(out.chunks_exact_mut(256)) {
                let (sc, qs) = (&b[0..16], &b[16..80]);
                let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
                for (v, o) in y.iter_mut().enumerate() {
                    // Value v = 128 n + 32 j + l: bits 2j of byte 32 n + l, scale 16-group v / 16.
                    let (n, j, l) = (v / 128, (v % 128) / 32, v % 32);
                    let q = (qs[32 * n + l] >> (2 * j)) & 3;
                    let s = sc[v / 16];
                    *o = d * (s & 0xF) as f32 * q as f32 - dmin * (s >> 4) as f32;
                }
            }
        }
        WeightType::Q3K => {
            // hmask[32], qs[64], scales[12], d: q = 2 low bits | high bit << 2, minus 4.
            for (b, y) in row.chunks_exact(bb).zip(out.chunks_exact_mut(256)) {
                let (hm, qs) = (&b[0..32], &b[32..96]);
                // ggml's unpacking of the 12 scale bytes into 16 signed bytes (4 little-endian words).
                let word = |k: usize| u32::from_le_bytes([b[96 + 4 * k], b[97 + 4 * k], b[98 + 4 * k], b[99 + 4 * k]]);
                let (a0, a1, tmp) = (word(0), word(1), word(2));
                let (kmask1, kmask2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
                let aux = [
                    (a0 & kmask2) | ((tmp & kmask1) << 4),
                    (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4),
                    ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4),
                    ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4),
                ];
                let scales: Vec<i32> = aux.iter().flat_map(|w| w.to_le_bytes()).map(|v| v as i8 as i32 - 32).collect();
                let d = f16_at(b, 108);
                for (v, o) in y.iter_mut().enumerate() {
                    let (n, j, l) = (v / 128, (v % 128) / 32, v % 32);
                    let low = (qs[32 * n + l] >> (2 * j)) & 3;
                    let high = (hm[l] >> (4 * n + j)) & 1;
                    *o = d * scales[v / 16] as f32 * ((low | (high << 2)) as i32 - 4) as f32;
                }
            }
        }
        WeightType::Q8_0 => {
            for (b, y) in row.chunks_exact(bb).zip(out.chunks_exact_mut(32)) {
                let d = f16_at(b, 0);
                y.iter_mut().zip(&b[2..]).for_each(|(o, &q)| *o = d * q as i8 as f32);
            }
        }
        WeightType::Q4K | WeightType::Q5K => {
            for (b, y) in row.chunks_exact(bb).zip(out.chunks_exact_mut(256)) {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let scales = &b[4..16];
                let (qh, qs) = if ty == WeightType::Q5K { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
                for j in 0..4 {
                    let (sc1, m1) = scale_min_k4(2 * j, scales);
                    let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                    for l in 0..32 {
                        let mut q1 = qs[32 * j + l] & 0xF;
                        let mut q2 = qs[32 * j + l] >> 4;
                        if ty == WeightType::Q5K {
                            q1 += ((qh[l] >> (2 * j)) & 1) << 4;
                            q2 += ((qh[l] >> (2 * j + 1)) & 1) << 4;
                        }
                        y[64 * j + l] = d * sc1 as f32 * q1 as f32 - dmin * m1 as f32;
                        y[64 * j + 32 + l] = d * sc2 as f32 * q2 as f32 - dmin * m2 as f32;
                    }
                }
            }
        }
        WeightType::Q6K => {
            for (b, y) in row.chunks_exact(bb).zip(out.chunks_exact_mut(256)) {
                let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                let d = f16_at(b, 208);
                for half in 0..2 {
                    let (ql, qh, sc, y) = (&ql[64 * half..], &qh[32 * half..], &sc[8 * half..], &mut y[128 * half..]);
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                }
            }
        }
    }
}

/// Dequantizes activations quantized with [`super::quantize_row_q8`].
pub fn dequantize_q8(a: &[BlockQ8], out: &mut [f32]) {
    for (b, y) in a.iter().zip(out.chunks_exact_mut(32)) {
        y.iter_mut().zip(&b.qs).for_each(|(o, &q)| *o = b.d * q as f32);
    }
}
