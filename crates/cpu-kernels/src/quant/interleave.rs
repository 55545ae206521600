//! Rows in groups of eight, blocks interleaved: the load-time layout the x86 kernels multiply
//! Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, IQ4_XS, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K matrices in (this project's layout; the idea is ggml-cpu's `repack.cpp`,
//! whose `block_q4_0x8` serves the same purpose).
//!
//! Why: a row-at-a-time dot product ends every row with a horizontal sum and converts one f16
//! scale per block in scalar code, about 8 cycles per block here, so a 1B-shaped Q4_0 model
//! decoded at half of llama.cpp's speed. With eight rows side by side, each 256-bit register
//! holds 4 consecutive values of each of the 8 rows, one broadcast of 4 activation bytes serves
//! all 8 rows (`vpdpbusd` / `vpmaddubsw` leave each row's sum in its own 32-bit lane), the 8
//! scales are converted with one `vcvtph2ps`, and the 8 results come out as one vector.
//!
//! Layout of group `g` (rows `8g..8g+8`), block `i`: `8 * block_bytes` bytes at
//! `(g * blocks + i) * 8 * block_bytes`:
//! - the header: each f16 field of the ggml block (Q4_0 / Q5_0 / Q8_0 / IQ4_NL / Q6_K: `d`;
//!   Q4_1 / Q5_1: `d`, `m`; Q4_K / Q5_K / Q2_K: `d`, `dmin`; IQ4_XS: `d`, `scales_h`; Q3_K: `d`) for
//!   rows 0..8, 16 bytes per field;
//! - the rest of the block (nibbles, codes, high bits, packed sub-block scales), in the block's
//!   own byte order, as 4-byte words: word `s` of rows 0..8 together (32 bytes per `s`); Q6_K's
//!   words are reordered into the order its kernel reads them ([`q6k_slot`]).
//!
//! A Q4 word `s` holds, in its low nibbles, values `4s..4s+4` of the block and, in its high
//! nibbles, values `16+4s..16+4s+4` (ggml's nibble order), so one mask and one shift of 32
//! bytes give the 8 rows' values for two runs of 4 activations; the K-quants' words follow
//! their blocks the same way (see the kernels in `x86.rs`). Q5_0 / Q5_1's word 0 is the block's
//! `qh` (each row's 32 fifth bits in its own 32-bit lane), its nibbles words 1..5 as Q4's.
//! IQ4_XS's word 0 is `scales_l`, then sub-block `ib`'s nibbles are words `1 + 4 ib ..`, as Q4's.
//! Q4_K: scale words 0..3, nibble words 3..35; Q5_K: scale words 0..3, `qh` words 3..11 (word
//! `k` of a row: fifth bits of values `4k..4k+4` of every 32-value sub-block, sub-block `b` in
//! bit `b` of each byte, so they line up byte for byte with nibble words `8j + k`), nibble words
//! 11..43 as Q4_K's. Q2_K: scale words 0..4, code words 4..20; Q3_K: high-bit words 0..8, code words 8..24, scale
//! words 24..27 (the blocks' own byte order, header out). Bytes are only moved: the layout is
//! a permutation of the ggml bytes ([`unpack_row`] gives a row back exactly).

use super::WeightType;

/// Rows per group.
pub const GROUP: usize = 8;

/// Whether `ty` matrices with `rows` rows are stored interleaved (rows a multiple of 8).
pub fn applies(ty: WeightType, rows: usize) -> bool {
    matches!(
        ty,
        WeightType::Q4_0
            | WeightType::Q4_1
            | WeightType::Q5_0
            | WeightType::Q5_1
            | WeightType::Q8_0
            | WeightType::IQ4NL
            | WeightType::IQ4XS
            | WeightType::Q2K
            | WeightType::Q3K
            | WeightType::Q4K
            | WeightType::Q5K
            | WeightType::Q6K
    ) && rows.is_multiple_of(GROUP)
}

/// Where a ggml block of `ty` keeps its f16 fields (bytes `start..end`).
fn header(ty: WeightType) -> (usize, usize) {
    match ty {
        WeightType::Q4_1 | WeightType::Q5_1 | WeightType::Q4K | WeightType::Q5K | WeightType::IQ4XS => (0, 4),
        WeightType::Q6K => (208, 210),
        WeightType::Q2K => (80, 84),
        WeightType::Q3K => (108, 110),
        _ => (0, 2),
    }
}

/// Where byte `j` of row `r`'s block (0 <= r < 8) lies inside its group's interleaved block.
#[inline]
fn position(ty: WeightType, r: usize, j: usize) -> usize {
    let (start, end) = header(ty);
    let hb = end - start;
    if (start..end).contains(&j) {
        ((j - start) / 2) * 2 * GROUP + 2 * r + (j - start) % 2
    } else {
        let k = if j < start { j } else { j - hb };
        let word = if ty == WeightType::Q6K { q6k_slot(k / 4) } else { k / 4 };
        GROUP * hb + word * 4 * GROUP + 4 * r + k % 4
    }
}

/// Where Q6_K's 4-byte word `w` of a block (ql words 0..32, qh 32..48, scales 48..52) goes: the
/// scales first, then for each half `h` and word `k < 8` the three words one step of the decode
/// kernel reads together (ql `16h + k`, ql `16h + 8 + k`, qh `32 + 8h + k`), so the kernel
/// walks the block front to back once instead of returning to each ql and qh word four times.
fn q6k_slot(w: usize) -> usize {
    match w {
        0..32 => 4 + 24 * (w / 16) + 3 * (w % 8) + (w % 16) / 8,
        32..48 => 4 + 24 * ((w - 32) / 8) + 3 * ((w - 32) % 8) + 2,
        _ => w - 48,
    }
}

/// `rows` ggml rows of `row_bytes` each (row-major) in the interleaved layout, into `out`
/// (as long as `data`).
pub fn pack(ty: WeightType, rows: usize, row_bytes: usize, data: &[u8], out: &mut [u8]) {
    debug_assert!(applies(ty, rows) && data.len() == rows * row_bytes && out.len() == data.len());
    let bb = ty.block_bytes();
    let blocks = row_bytes / bb;
    for g in 0..rows / GROUP {
        for i in 0..blocks {
            let dst = &mut out[(g * blocks + i) * GROUP * bb..][..GROUP * bb];
            for r in 0..GROUP {
                let src = &data[(g * GROUP + r) * row_bytes + i * bb..][..bb];
                for (j, &byte) in src.iter().enumerate() {
                    dst[position(ty, r, j)] = byte;
                }
            }
        }
    }
}

/// Row `r` of an interleaved matrix, in ggml's row layout, into `out` (`row_bytes` long).
pub fn unpack_row(ty: WeightType, row_bytes: usize, data: &[u8], r: usize, out: &mut [u8]) {
    let bb = ty.block_bytes();
    let blocks = row_bytes / bb;
    let (g, rr) = (r / GROUP, r % GROUP);
    for i in 0..blocks {
        let src = &data[(g * blocks + i) * GROUP * bb..][..GROUP * bb];
        for (j, byte) in out[i * bb..(i + 1) * bb].iter_mut().enumerate() {
            *byte = src[position(ty, rr, j)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_is_a_permutation_that_unpacks_exactly() {
        for ty in [
            WeightType::Q4_0,
            WeightType::Q4_1,
            WeightType::Q5_0,
            WeightType::Q5_1,
            WeightType::Q8_0,
            WeightType::IQ4NL,
            WeightType::IQ4XS,
            WeightType::Q2K,
            WeightType::Q3K,
            WeightType::Q4K,
            WeightType::Q5K,
            WeightType::Q6K,
        ] {
            let (rows, row_bytes) = (16, 3 * ty.block_bytes());
            let data: Vec<u8> = (0..rows * row_bytes).map(|i| (i * 31 % 253) as u8).collect();
            let mut packed = vec![0u8; data.len()];
            pack(ty, rows, row_bytes, &data, &mut packed);
            let mut seen = vec![false; ty.block_bytes() * GROUP];
            for r in 0..GROUP {
                for j in 0..ty.block_bytes() {
                    assert!(!std::mem::replace(&mut seen[position(ty, r, j)], true), "{ty:?}: two bytes map to one place");
                }
            }
            let mut row = vec![0u8; row_bytes];
            for r in 0..rows {
                unpack_row(ty, row_bytes, &packed, r, &mut row);
                assert_eq!(row, data[r * row_bytes..(r + 1) * row_bytes], "{ty:?} row {r}");
            }
        }
    }
}
