//! Load-time weight quantization shared by every framework, so both compute with the very same
//! quantized values (backends only differ in how they multiply with them):
//!
//! - **int8**: weight-only, symmetric, one scale per output row: `scale = max|w_row| / 127`,
//!   `q = round(w / scale)` in -127..=127 (as the original project's int8 and LLM.int8's
//!   vector-wise weight quantization without outliers).
//! - **nf4**: 4-bit NormalFloat (QLoRA, Dettmers et al. 2023): blocks of 64 consecutive values of
//!   a row, one absmax scale per block, each value the nearest of 16 code-book levels. Two codes
//!   per byte, the first value in the high nibble (bitsandbytes' order).

use crate::{Error, Result};

/// The NF4 code book, as published in QLoRA (Appendix E) and bitsandbytes.
#[allow(clippy::excessive_precision)] // the published digits, kept as published
pub const NF4_CODEBOOK: [f32; 16] = [
    -1.0,
    -0.696_192_800_998_687_7,
    -0.525_073_051_452_636_7,
    -0.394_917_488_098_144_53,
    -0.284_441_381_692_886_35,
    -0.184_773_433_208_465_58,
    -0.091_050_036_251_544_95,
    0.0,
    0.079_580_299_556_255_34,
    0.160_930_201_411_247_25,
    0.246_112_301_945_686_34,
    0.337_915_241_718_292_24,
    0.440_709_829_330_444_34,
    0.562_617_003_917_694_1,
    0.722_956_836_223_602_3,
    1.0,
];

pub const NF4_BLOCK: usize = 64;

/// A `(rows, cols)` matrix in int8 with one f32 scale per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Matrix {
    pub rows: usize,
    pub cols: usize,
    pub q: Vec<i8>,
    pub scales: Vec<f32>,
}

/// A `(rows, cols)` matrix in NF4: `cols / 2` bytes per row, one absmax per 64 values.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Matrix {
    pub rows: usize,
    pub cols: usize,
    pub packed: Vec<u8>,
    pub absmax: Vec<f32>,
}

impl Int8Matrix {
    pub fn bytes(&self) -> u64 {
        (self.q.len() + 4 * self.scales.len()) as u64
    }
}

impl Nf4Matrix {
    pub fn bytes(&self) -> u64 {
        (self.packed.len() + 4 * self.absmax.len()) as u64
    }
}

pub fn quantize_int8(w: &[f32], rows: usize, cols: usize) -> Int8Matrix {
    assert_eq!(w.len(), rows * cols);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(rows);
    for row in w.chunks_exact(cols.max(1)) {
        let absmax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = absmax / 127.0;
        scales.push(scale);
        q.extend(row.iter().map(|&v| if scale > 0.0 { (v / scale).round().clamp(-127.0, 127.0) as i8 } else { 0 }));
    }
    Int8Matrix { rows, cols, q, scales }
}

pub fn dequantize_int8(m: &Int8Matrix) -> Vec<f32> {
    m.q.chunks_exact(m.cols.max(1)).zip(&m.scales).flat_map(|(row, &s)| row.iter().map(move |&v| v as f32 * s)).collect()
}

/// Index of the nearest code-book level to `x` (in [-1, 1]).
fn nf4_code(x: f32) -> u8 {
    let mut best = 0;
    let mut best_d = f32::INFINITY;
    for (i, &c) in NF4_CODEBOOK.iter().enumerate() {
        let d = (x - c).abs();
        if d < best_d {
            best = i;
            best_d = d;
        }
    }
    best as u8
}

/// Fails, naming the matrix and the fix, when a row does not split into 64-value blocks.
pub fn quantize_nf4(w: &[f32], rows: usize, cols: usize, name: &str) -> Result<Nf4Matrix> {
    assert_eq!(w.len(), rows * cols);
    if !cols.is_multiple_of(NF4_BLOCK) {
        return Err(Error::InvalidInput(format!(
            "--quantize nf4 needs every matrix row to split into blocks of {NF4_BLOCK} values, but {name} has rows of {cols}; \
             use --quantize int8 or float16 for this model"
        )));
    }
    let mut packed = Vec::with_capacity(w.len() / 2);
    let mut absmax = Vec::with_capacity(w.len() / NF4_BLOCK);
    for block in w.chunks_exact(NF4_BLOCK) {
        let m = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        absmax.push(m);
        let inv = if m > 0.0 { 1.0 / m } else { 0.0 };
        for pair in block.chunks_exact(2) {
            packed.push((nf4_code(pair[0] * inv) << 4) | nf4_code(pair[1] * inv));
        }
    }
    Ok(Nf4Matrix { rows, cols, packed, absmax })
}

pub fn dequantize_nf4(m: &Nf4Matrix) -> Vec<f32> {
    let mut out = Vec::with_capacity(m.rows * m.cols);
    for (bytes, &a) in m.packed.chunks_exact(NF4_BLOCK / 2).zip(&m.absmax) {
        for &b in bytes {
            out.push(NF4_CODEBOOK[(b >> 4) as usize] * a);
            out.push(NF4_CODEBOOK[(b & 0x0F) as usize] * a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::excessive_precision)] // the published digits
    fn nf4_codebook_is_the_published_one() {
        // bitsandbytes `get_4bit_type("nf4")` / QLoRA Appendix E, to float32 precision.
        let published = [
            -1.0f32,
            -0.6961928009986877,
            -0.5250730514526367,
            -0.39491748809814453,
            -0.28444138169288635,
            -0.18477343022823334,
            -0.09105003625154495,
            0.0,
            0.07958029955625534,
            0.16093020141124725,
            0.24611230194568634,
            0.33791524171829224,
            0.44070982933044434,
            0.5626170039176941,
            0.7229568362236023,
            1.0,
        ];
        assert_eq!(NF4_CODEBOOK, published);
        assert!(NF4_CODEBOOK.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn int8_hand_computed_row() {
        // Row absmax 1.0 -> scale 1/127: 1.0 -> 127, -0.5 -> -63.5 -> -64 (half away from zero),
        // 0.25 -> 31.75 -> 32, 0 -> 0. Second row all zero: scale 0, codes 0.
        let m = quantize_int8(&[1.0, -0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0], 2, 4);
        assert_eq!(m.q, vec![127, -64, 32, 0, 0, 0, 0, 0]);
        assert_eq!(m.scales, vec![1.0 / 127.0, 0.0]);
        let d = dequantize_int8(&m);
        assert!((d[1] - (-64.0 / 127.0)).abs() < 1e-7 && (d[2] - 32.0 / 127.0).abs() < 1e-7);
        assert_eq!(m.bytes(), 8 + 8);
    }

    #[test]
    fn nf4_hand_computed_block() {
        // absmax 2.0; w/absmax = [0.5, -1, 0, 0.03, ...]: 0.5 is nearest level 12 (0.4407, 0.0593
        // away; level 13, 0.5626, is 0.0626 away),
        // -1 is level 0, 0 is level 7, 0.03 is nearest level 7 (0.0; 0.0796 is 0.0496 away).
        let mut w = vec![0.0f32; 64];
        w[..4].copy_from_slice(&[1.0, -2.0, 0.0, 0.06]);
        let m = quantize_nf4(&w, 1, 64, "w").unwrap();
        assert_eq!(m.absmax, vec![2.0]);
        assert_eq!(m.packed[0], 12 << 4);
        assert_eq!(m.packed[1], (7 << 4) | 7);
        let d = dequantize_nf4(&m);
        assert!((d[0] - 2.0 * 0.440_709_83).abs() < 1e-6);
        assert_eq!((d[1], d[2], d[3]), (-2.0, 0.0, 0.0));
        assert_eq!(m.bytes(), 32 + 4);
    }

    #[test]
    fn round_trip_error_bounds() {
        let (rows, cols) = (8, 256);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i as f32 * 0.7311).sin() * 3.0) * if i % 97 == 0 { 4.0 } else { 1.0 }).collect();
        // int8: at most half a step (scale / 2) per value.
        let m = quantize_int8(&w, rows, cols);
        for (r, (orig, back)) in w.chunks(cols).zip(dequantize_int8(&m).chunks(cols)).enumerate() {
            let bound = m.scales[r] / 2.0 + 1e-6;
            assert!(orig.iter().zip(back).all(|(a, b)| (a - b).abs() <= bound), "row {r}");
        }
        // nf4: at most half the widest code-book gap (0.3038 / 2) times the block's absmax.
        let half_gap = NF4_CODEBOOK.windows(2).map(|p| p[1] - p[0]).fold(0.0f32, f32::max) / 2.0;
        let n = quantize_nf4(&w, rows, cols, "w").unwrap();
        for (b, (orig, back)) in w.chunks(NF4_BLOCK).zip(dequantize_nf4(&n).chunks(NF4_BLOCK)).enumerate() {
            let bound = half_gap * n.absmax[b] + 1e-6;
            assert!(orig.iter().zip(back).all(|(a, c)| (a - c).abs() <= bound), "block {b}");
        }
        // Memory against f32: int8 ~0.25x (+ scales), nf4 ~0.14x (+ absmax).
        let f32_bytes = (w.len() * 4) as f64;
        assert!((m.bytes() as f64 / f32_bytes - 0.2539).abs() < 1e-3);
        assert!((n.bytes() as f64 / f32_bytes - 0.1406).abs() < 1e-3);
    }

    #[test]
    fn nf4_rejects_rows_that_do_not_split_into_blocks() {
        let name = crate::schema::TensorId::layer(0, crate::schema::TensorRole::AttnQ).gguf_name();
        let err = quantize_nf4(&[0.0; 96], 1, 96, &name).unwrap_err().to_string();
        assert!(err.contains("blocks of 64") && err.contains(&name) && err.contains("rows of 96"), "{err}");
    }
}
