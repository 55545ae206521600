//! Plain reference dequantization of every ggml block type this project reads, for frameworks
//! that have no faster reading of a type: the native framework expands tensors whose type candle
//! cannot read (IQ4_NL, IQ4_XS) once at load, and the torch framework expands the types it has no
//! tensor-op dequantization for.
//!
//! Maths and byte layouts: ggml's `ggml-common.h` (the `block_*` structs) and `ggml-quants.c`
//! (`dequantize_row_*`, and `kvalues_iq4nl` for the IQ4 code book). Each value is computed with
//! the same float operations in the same order as ggml's scalar code, so the results are
//! bit-identical to ggml's (tested against llama.cpp's own dequantization in backend-llamacpp, and
//! against candle's in backend-native). Written for clarity, not speed: one pass per tensor at load.

use half::{bf16, f16};

use crate::gguf::GgmlType;
use crate::{Error, Result};

/// The types [`dequantize`] reads, as `GgmlType`'s names (for error messages): the GGUF reader's
/// list of supported types.
pub use crate::gguf::SUPPORTED_TYPES as SUPPORTED;

/// The IQ4_NL / IQ4_XS code book: the 16 non-uniform levels a 4-bit code selects (ggml's
/// `kvalues_iq4nl`), scaled by the block's (sub-block's) scale.
pub const IQ4_LEVELS: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Dequantizes `bytes`, holding `n` values of ggml type `ty`, to f32. `name` is the tensor's, for
/// messages. An error names the type and the supported types when `ty` is not one of them, or the
/// problem when `bytes` does not hold exactly `n` values.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize, name: &str) -> Result<Vec<f32>> {
    let mut out = vec![0.0f32; n];
    dequantize_into(ty, bytes, &mut out, name)?;
    Ok(out)
}

/// [`dequantize`] into `out` (its length is the number of values).
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32], name: &str) -> Result<()> {
    let unsupported = || Error::NotImplemented(format!("tensor {name} has ggml type {ty}, which no dequantizer here reads (supported: {SUPPORTED})"));
    let (per_block, block_bytes) = ty.block().ok_or_else(unsupported)?;
    let n = out.len();
    if !n.is_multiple_of(per_block) || bytes.len() != n / per_block * block_bytes {
        return Err(Error::ModelFiles(format!(
            "tensor {name}: {} bytes of {ty} do not hold {n} values ({per_block} values per {block_bytes}-byte block)",
            bytes.len()
        )));
    }
    let block_fn: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, y| y[0] = half_at(b, 0),
        GgmlType::BF16 => |b, y| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q2_K => q2_k,
        GgmlType::Q3_K => q3_k,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        GgmlType::IQ4_NL => iq4_nl,
        GgmlType::IQ4_XS => iq4_xs,
        GgmlType::Q8_1 | GgmlType::Q8_K | GgmlType::Other(_) => return Err(unsupported()),
    };
    for (b, y) in bytes.chunks_exact(block_bytes).zip(out.chunks_exact_mut(per_block)) {
        block_fn(b, y);
    }
    Ok(())
}

/// Re-encodes blocks of `ty` as Q8_0 blocks holding exactly the same values, for the types where
/// that is possible: Q5_0 (value `(q - 16) * d`, q - 16 in -16..=15) and IQ4_NL (value
/// `d * level`, level in -127..=113) are each an integer in i8's range times the block's f16 scale,
/// which is Q8_0's form (`q * d`) with the same d. `None` for any other type (or bytes that are not
/// whole blocks). Lets a framework with a Q8_0 kernel run those files at 8.5 bits a value, with
/// ggml's values to the bit.
pub fn to_q8_0_exact(ty: GgmlType, bytes: &[u8]) -> Option<Vec<u8>> {
    let (_, block_bytes) = ty.block()?;
    if !bytes.len().is_multiple_of(block_bytes) {
        return None;
    }
    let code: fn(&[u8], usize) -> i8 = match ty {
        GgmlType::Q5_0 => |b, j| {
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            let (h0, h1) = q5_high(qh, j % 16);
            let q = b[6 + j % 16];
            let v = if j < 16 { (q & 0xF) as i32 | h0 } else { (q >> 4) as i32 | h1 };
            (v - 16) as i8
        },
        GgmlType::IQ4_NL => |b, j| {
            let q = b[2 + j % 16];
            IQ4_LEVELS[if j < 16 { q & 0xF } else { q >> 4 } as usize]
        },
        _ => return None,
    };
    let mut out = Vec::with_capacity(bytes.len() / block_bytes * 34);
    for b in bytes.chunks_exact(block_bytes) {
        out.extend_from_slice(&b[0..2]);
        out.extend((0..32).map(|j| code(b, j) as u8));
    }
    Some(out)
}

/// `block_q4_0`: f16 d, 16 bytes of nibbles; value = (q - 8) * d, low nibbles first.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = ((q & 0xF) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// `block_q4_1`: f16 d, f16 m, 16 bytes of nibbles; value = q * d + m.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    for (j, &q) in b[4..20].iter().enumerate() {
        y[j] = (q & 0xF) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// The fifth bits of `block_q5_*`: bit j of the little-endian u32 `qh` is value j's.
fn q5_high(qh: u32, j: usize) -> (i32, i32) {
    ((((qh >> j) << 4) & 0x10) as i32, ((qh >> (j + 12)) & 0x10) as i32)
}

/// `block_q5_0`: f16 d, u32 qh (fifth bits), 16 bytes of nibbles; value = (q - 16) * d.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, &q) in b[6..22].iter().enumerate() {
        let (h0, h1) = q5_high(qh, j);
        y[j] = (((q & 0xF) as i32 | h0) - 16) as f32 * d;
        y[j + 16] = (((q >> 4) as i32 | h1) - 16) as f32 * d;
    }
}

/// `block_q5_1`: f16 d, f16 m, u32 qh, 16 bytes of nibbles; value = q * d + m.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, &q) in b[8..24].iter().enumerate() {
        let (h0, h1) = q5_high(qh, j);
        y[j] = ((q & 0xF) as i32 | h0) as f32 * d + m;
        y[j + 16] = ((q >> 4) as i32 | h1) as f32 * d + m;
    }
}

/// `block_q8_0`: f16 d, 32 i8; value = q * d.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for (j, &q) in b[2..34].iter().enumerate() {
        y[j] = q as i8 as f32 * d;
    }
}

/// `block_q2_K` (256 values): 16 scale bytes (low nibble scale, high nibble min, per 16 values),
/// 64 bytes of 2-bit codes, f16 d, f16 dmin; value = d * scale * q - dmin * min.
fn q2_k(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, min) = (half_at(b, 80), half_at(b, 82));
    let mut is = 0;
    for n in 0..2 {
        let q = &qs[32 * n..32 * n + 32];
        for j in 0..4 {
            let shift = 2 * j;
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * (sc & 0xF) as f32, min * (sc >> 4) as f32);
                let base = 128 * n + 32 * j + 16 * half;
                for l in 0..16 {
                    y[base + l] = dl * ((q[l + 16 * half] >> shift) & 3) as f32 - ml;
                }
            }
        }
    }
}

/// `block_q3_K` (256 values): 32 bytes of high-bit masks, 64 bytes of low 2-bit codes, 12 bytes
/// of sixteen packed 6-bit scales, f16 d; value = d * (scale - 32) * (q - (high bit clear ? 4 : 0)).
fn q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs, packed) = (&b[0..32], &b[32..96], &b[96..108]);
    let d_all = half_at(b, 108);
    // Unpacking as ggml does: four u32 words, low nibbles in words 0-1, high 2-bit parts in word 2.
    let word = |i: usize| u32::from_le_bytes([packed[4 * i], packed[4 * i + 1], packed[4 * i + 2], packed[4 * i + 3]]);
    let (kmask1, kmask2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let (a0, a1, tmp) = (word(0), word(1), word(2));
    let aux = [
        (a0 & kmask2) | ((tmp & kmask1) << 4),
        (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4),
        ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4),
        ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4),
    ];
    let scales: Vec<i8> = aux.iter().flat_map(|w| w.to_le_bytes()).map(|v| v as i8).collect();
    let mut is = 0;
    let mut m = 1u8;
    for n in 0..2 {
        let q = &qs[32 * n..32 * n + 32];
        for j in 0..4 {
            let shift = 2 * j;
            for half in 0..2 {
                let dl = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                let base = 128 * n + 32 * j + 16 * half;
                for l in 0..16 {
                    let i = l + 16 * half;
                    let low = ((q[i] >> shift) & 3) as i8;
                    let sub = if hmask[i] & m != 0 { 0 } else { 4 };
                    y[base + l] = dl * (low - sub) as f32;
                }
            }
            m <<= 1;
        }
    }
}

/// ggml's `get_scale_min_k4`: the j-th 6-bit scale and min of the 12 packed bytes of Q4_K / Q5_K.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// `block_q4_K` (256 values): f16 d, f16 dmin, 12 bytes of 6-bit scales and mins (per 32 values),
/// 128 bytes of nibbles; value = d * scale * q - dmin * min.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (half_at(b, 0), half_at(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for c in 0..4 {
        let q = &qs[32 * c..32 * c + 32];
        let (s1, m1) = scale_min_k4(2 * c, scales);
        let (s2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1) = (d * s1 as f32, min * m1 as f32);
        let (d2, m2) = (d * s2 as f32, min * m2 as f32);
        for l in 0..32 {
            y[64 * c + l] = d1 * (q[l] & 0xF) as f32 - m1;
            y[64 * c + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// `block_q5_K` (256 values): as Q4_K plus 32 bytes of fifth bits (`qh`) before the nibbles.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (half_at(b, 0), half_at(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for c in 0..4 {
        let q = &qs[32 * c..32 * c + 32];
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let (s1, m1) = scale_min_k4(2 * c, scales);
        let (s2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1) = (d * s1 as f32, min * m1 as f32);
        let (d2, m2) = (d * s2 as f32, min * m2 as f32);
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[64 * c + l] = d1 * ((q[l] & 0xF) + h1) as f32 - m1;
            y[64 * c + 32 + l] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
        }
    }
}

/// `block_q6_K` (256 values): 128 bytes of low nibbles, 64 bytes of high 2-bit parts, 16 i8
/// scales (per 16 values), f16 d; value = d * scale * (q - 32).
fn q6_k(b: &[u8], y: &mut [f32]) {
    let (ql_all, qh_all, sc_all) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = half_at(b, 208);
    for n in 0..2 {
        let (ql, qh, sc) = (&ql_all[64 * n..], &qh_all[32 * n..], &sc_all[8 * n..]);
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * sc[is] as i8 as f32 * q1 as f32;
            y[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
            y[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
            y[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
        }
    }
}

/// `block_iq4_nl`: f16 d, 16 bytes of nibbles, each a code-book index; value = d * level.
fn iq4_nl(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = d * IQ4_LEVELS[(q & 0xF) as usize] as f32;
        y[j + 16] = d * IQ4_LEVELS[(q >> 4) as usize] as f32;
    }
}

/// `block_iq4_xs` (256 values): f16 d, u16 high scale bits, 4 bytes of low scale nibbles, 128 bytes
/// of code-book nibbles; each 32 values have a 6-bit scale ls; value = d * (ls - 32) * level.
fn iq4_xs(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let (scales_l, qs_all) = (&b[4..8], &b[8..136]);
    for ib in 0..8 {
        let ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) as i32 | ((((scales_h >> (2 * ib)) & 3) as i32) << 4);
        let dl = d * (ls - 32) as f32;
        let qs = &qs_all[16 * ib..16 * ib + 16];
        for j in 0..16 {
            y[32 * ib + j] = dl * IQ4_LEVELS[(qs[j] & 0xF) as usize] as f32;
            y[32 * ib + 16 + j] = dl * IQ4_LEVELS[(qs[j] >> 4) as usize] as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed blocks (synthetic bytes): one per block family, the value worked out from
    /// ggml's struct comments by hand.
    #[test]
    fn hand_computed_values() {
        // Q4_0, d = 0.5 (f16 0x3800): byte 0x1F -> low nibble 15 -> (15 - 8) * 0.5 = 3.5; high 1 -> -3.5.
        let mut b = vec![0x00, 0x38];
        b.extend([0x1F; 16]);
        let y = dequantize(GgmlType::Q4_0, &b, 32, "t").unwrap();
        assert_eq!((y[0], y[16]), (3.5, -3.5));
        // IQ4_NL, d = 2: nibbles 0 and 15 -> 2 * -127, 2 * 113.
        let mut b = vec![0x00, 0x40];
        b.extend([0xF0; 16]);
        let y = dequantize(GgmlType::IQ4_NL, &b, 32, "t").unwrap();
        assert_eq!((y[0], y[16]), (-254.0, 226.0));
        // Q5_0, d = 1, qh bit 0 set: value 0 = (0 | 16) - 16 = 0, value 1 = 0 - 16.
        let mut b = vec![0x00, 0x3C, 1, 0, 0, 0];
        b.extend([0x00; 16]);
        let y = dequantize(GgmlType::Q5_0, &b, 32, "t").unwrap();
        assert_eq!((y[0], y[1]), (0.0, -16.0));
    }

    /// Random bytes (finite scales) of Q5_0 and IQ4_NL re-encoded as Q8_0 read as the same values.
    #[test]
    fn q8_0_re_encoding_keeps_every_value() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
        for ty in [GgmlType::Q5_0, GgmlType::IQ4_NL] {
            let (per_block, block_bytes) = ty.block().unwrap();
            let blocks = 40;
            let mut bytes: Vec<u8> = (0..blocks * block_bytes).map(|_| rng.random()).collect();
            for (i, b) in bytes.chunks_exact_mut(block_bytes).enumerate() {
                b[..2].copy_from_slice(&f16::from_f32(0.001 + i as f32 * 0.0007).to_le_bytes());
            }
            let n = blocks * per_block;
            let q8 = to_q8_0_exact(ty, &bytes).unwrap();
            assert_eq!(dequantize(GgmlType::Q8_0, &q8, n, "t").unwrap(), dequantize(ty, &bytes, n, "t").unwrap(), "{ty}");
        }
        assert!(to_q8_0_exact(GgmlType::Q5_1, &[0; 24]).is_none());
    }

    #[test]
    fn unsupported_and_short_inputs_are_errors() {
        let e = dequantize(GgmlType::Other(99), &[0; 4], 1, "blk.0.x").unwrap_err().to_string();
        assert!(e.contains("ggml type 99") && e.contains("IQ4_XS"), "{e}");
        let e = dequantize(GgmlType::Q4_0, &[0; 17], 32, "blk.0.x").unwrap_err().to_string();
        assert!(e.contains("17 bytes"), "{e}");
    }
}
