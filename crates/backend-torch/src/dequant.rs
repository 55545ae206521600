//! ggml block formats dequantized with tensor operations (no per-value loops in Rust): the raw
//! bytes become a `(blocks, block_bytes)` uint8 tensor, scales are reinterpreted in place
//! (`view_dtype`), nibbles and high bits are unpacked with shifts and masks.
//!
//! Layouts: ggml's `ggml-quants.c` (`dequantize_row_*`) and `ggml-common.h` (block structs).
//! Types without a tensor-op reading here (Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL, IQ4_XS) go
//! through bench-backend's reference dequantizer (`ggml_blocks`, plain loops, ggml's formulas).

use bench_backend::gguf::GgmlType;
use bench_backend::{ggml_blocks, Error, Result};
use tch::{Kind, Tensor};

/// Dequantizes `bytes` of ggml type `ty` holding `n` values to a flat f32 tensor.
pub fn dequantize(bytes: &[u8], ty: GgmlType, n: usize, name: &str) -> Result<Tensor> {
    let (per_block, block_bytes) = ty.block().ok_or_else(|| {
        Error::NotImplemented(format!("tensor {name} has ggml type {ty}, which the torch framework does not read (supported: {})", ggml_blocks::SUPPORTED))
    })?;
    let blocks = (n / per_block) as i64;
    let raw = || Tensor::from_slice(bytes).view([blocks, block_bytes as i64]);
    let t = match ty {
        GgmlType::F32 => Tensor::from_slice(bytes).view_dtype(Kind::Float),
        GgmlType::F16 => Tensor::from_slice(bytes).view_dtype(Kind::Half).to_kind(Kind::Float),
        GgmlType::BF16 => Tensor::from_slice(bytes).view_dtype(Kind::BFloat16).to_kind(Kind::Float),
        GgmlType::Q8_0 => {
            let b = raw();
            let d = f16_at(&b, 0);
            let q = b.narrow(1, 2, 32).contiguous().view_dtype(Kind::Int8).to_kind(Kind::Float);
            q * d
        }
        GgmlType::Q4_0 => {
            let b = raw();
            let d = f16_at(&b, 0);
            (nibbles_split(&b.narrow(1, 2, 16)) - 8.0) * d
        }
        GgmlType::Q4_1 => {
            let b = raw();
            let (d, m) = (f16_at(&b, 0), f16_at(&b, 2));
            nibbles_split(&b.narrow(1, 4, 16)) * d + m
        }
        GgmlType::Q4_K => q4_k(&raw()),
        GgmlType::Q6_K => q6_k(&raw()),
        // The other types (Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL, IQ4_XS) through bench-backend's
        // plain reference dequantizer, once at load; it names the type and the supported ones when
        // it has no reading of `ty` either.
        other => Tensor::from_slice(&ggml_blocks::dequantize(other, bytes, n, name)?),
    };
    Ok(t.reshape([n as i64]))
}

/// The little-endian f16 at byte `at` of every block, as a `(blocks, 1)` f32 column.
fn f16_at(b: &Tensor, at: i64) -> Tensor {
    b.narrow(1, at, 2).contiguous().view_dtype(Kind::Half).to_kind(Kind::Float)
}

/// 16 packed bytes -> 32 values: low nibbles are values 0..16, high nibbles 16..32 (Q4_0/Q4_1).
fn nibbles_split(q: &Tensor) -> Tensor {
    let q = q.to_kind(Kind::Int16);
    let lo = q.bitwise_and(0x0F);
    let hi = q.bitwise_right_shift_tensor_scalar(4);
    Tensor::cat(&[lo, hi], 1).to_kind(Kind::Float)
}

/// Q4_K: 256 values in 8 sub-blocks of 32, each with a 6-bit scale and min packed in 12 bytes.
fn q4_k(b: &Tensor) -> Tensor {
    let blocks = b.size()[0];
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let s = b.narrow(1, 4, 12).to_kind(Kind::Int16); // scales[12]
    let col = |j: i64| s.narrow(1, j, 1);
    // get_scale_min_k4 for j = 0..8
    let mut scales = Vec::with_capacity(8);
    let mut mins = Vec::with_capacity(8);
    for j in 0..8 {
        if j < 4 {
            scales.push(col(j).bitwise_and(63));
            mins.push(col(j + 4).bitwise_and(63));
        } else {
            scales.push(col(j + 4).bitwise_and(0x0F).bitwise_or_tensor(&col(j - 4).bitwise_right_shift_tensor_scalar(6).bitwise_left_shift_tensor_scalar(4)));
            mins.push(
                col(j + 4)
                    .bitwise_right_shift_tensor_scalar(4)
                    .bitwise_or_tensor(&col(j).bitwise_right_shift_tensor_scalar(6).bitwise_left_shift_tensor_scalar(4)),
            );
        }
    }
    let sc = Tensor::cat(&scales, 1).to_kind(Kind::Float) * &d; // (blocks, 8)
    let mn = Tensor::cat(&mins, 1).to_kind(Kind::Float) * &dmin;
    // qs[128]: for each 64-value chunk c (4 of them), 32 bytes: low nibbles -> sub-block 2c, high -> 2c+1.
    let qs = b.narrow(1, 16, 128).to_kind(Kind::Int16).view([blocks, 4, 32]);
    let lo = qs.bitwise_and(0x0F);
    let hi = qs.bitwise_right_shift_tensor_scalar(4);
    let q = Tensor::stack(&[lo, hi], 2).view([blocks, 8, 32]).to_kind(Kind::Float);
    (q * sc.unsqueeze(2) - mn.unsqueeze(2)).view([blocks, 256])
}

/// Q6_K: 256 values; 4 low bits in ql[128], 2 high bits in qh[64], 16 int8 scales, one f16 d.
fn q6_k(b: &Tensor) -> Tensor {
    let blocks = b.size()[0];
    let ql = b.narrow(1, 0, 128).to_kind(Kind::Int16).view([blocks, 2, 64]);
    let qh = b.narrow(1, 128, 64).to_kind(Kind::Int16).view([blocks, 2, 32]);
    let sc = b.narrow(1, 192, 16).contiguous().view_dtype(Kind::Int8).to_kind(Kind::Float).view([blocks, 2, 8]);
    let d = f16_at(b, 208).view([blocks, 1, 1]);
    let ql_a = ql.narrow(2, 0, 32);
    let ql_b = ql.narrow(2, 32, 32);
    let hbits = |shift: i64| qh.bitwise_right_shift_tensor_scalar(shift).bitwise_and(3).bitwise_left_shift_tensor_scalar(4);
    let q1 = ql_a.bitwise_and(0x0F).bitwise_or_tensor(&hbits(0)) - 32;
    let q2 = ql_b.bitwise_and(0x0F).bitwise_or_tensor(&hbits(2)) - 32;
    let q3 = ql_a.bitwise_right_shift_tensor_scalar(4).bitwise_or_tensor(&hbits(4)) - 32;
    let q4 = ql_b.bitwise_right_shift_tensor_scalar(4).bitwise_or_tensor(&hbits(6)) - 32;
    // Within each 128-half: values l, l+32, l+64, l+96 use scales is, is+2, is+4, is+6 (is = l / 16).
    let q = Tensor::stack(&[q1, q2, q3, q4], 2).to_kind(Kind::Float); // (blocks, 2, 4, 32)
    let scale = sc.view([blocks, 2, 4, 2]).repeat_interleave_self_int(16, 3, None); // (blocks, 2, 4, 32)
    (q * scale * d.unsqueeze(3)).view([blocks, 256])
}
