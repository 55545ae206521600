//! The fused decode-step operations of `csrc/decode_ops.cpp` against libtorch's own ops on random
//! data (the op-by-op path `--kernels stock` runs): RMSNorm against `rms_norm`, SiLU × up against
//! `silu` and `*`, rotation against the rotation written in tensor ops for both pair layouts (and
//! the cache rows it writes), attention against `scaled_dot_product_attention` with an explicit
//! causal mask, on every tier this CPU runs, one and several tokens, short and long contexts;
//! and the checks that decline wrong lengths before any pointer crosses. The model-level fused
//! step is checked against the NumPy reference by the conformance suite
//! (`kv_cache_decode_matches_reference`).

mod common;

use backend_torch::decode_ops::{self, Cache, Heads};
use backend_torch::weight_only::{Matrix, Tier};
use bench_backend::config::RopeLayout;
use common::noise;
use tch::{Device, Kind, Tensor};

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_kind(Kind::Float).contiguous().reshape([-1])).unwrap()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-5 * scale.max(1.0), "{what}: max |Δ| {worst} vs max |y| {scale}");
}

const SMOLLM2: Heads = Heads { heads: 9, kv_heads: 3, head_dim: 64 };

#[test]
fn rms_norm_matches_libtorch() {
    for (m, dim) in [(1, 576), (3, 576), (4, 2048), (2, 13)] {
        let x = noise(m * dim, 1);
        let w = Tensor::from_slice(&noise(dim, 2));
        let mut y = vec![0f32; m * dim];
        assert!(decode_ops::rms_norm(&x, &w, 1e-5, &mut y));
        let want = Tensor::from_slice(&x).view([m as i64, dim as i64]).rms_norm([dim as i64], Some(&w), 1e-5);
        assert_close(&y, &values(&want), &format!("rms_norm {m}x{dim}"));
    }
}

#[test]
fn silu_mul_matches_libtorch() {
    for (m, ffn) in [(1, 1536), (4, 1536), (3, 7)] {
        let gu = noise(m * 2 * ffn, 3).iter().map(|v| v * 6.0).collect::<Vec<_>>();
        let mut y = vec![0f32; m * ffn];
        assert!(decode_ops::silu_mul(&gu, &mut y, m));
        let t = Tensor::from_slice(&gu).view([m as i64, 2 * ffn as i64]);
        let want = t.narrow(1, 0, ffn as i64).silu() * t.narrow(1, ffn as i64, ffn as i64);
        assert_close(&y, &values(&want), &format!("silu_mul {m}x{ffn}"));
    }
}

/// Rotation written in tensor ops, as the op-by-op path does: `x` `(m, heads, hd)`, tables
/// `(m, hd/2)`.
fn rope_reference(x: &Tensor, cos: &Tensor, sin: &Tensor, layout: RopeLayout) -> Tensor {
    let size = x.size();
    let (m, h, hd) = (size[0], size[1], size[2]);
    let (cos, sin) = (cos.unsqueeze(1), sin.unsqueeze(1));
    let (x0, x1) = match layout {
        RopeLayout::Interleaved => {
            let p = x.view([m, h, hd / 2, 2]);
            (p.select(3, 0), p.select(3, 1))
        }
        RopeLayout::HalfSplit => (x.narrow(2, 0, hd / 2), x.narrow(2, hd / 2, hd / 2)),
    };
    let r0 = &x0 * &cos - &x1 * &sin;
    let r1 = &x0 * &sin + &x1 * &cos;
    match layout {
        RopeLayout::Interleaved => Tensor::stack(&[r0, r1], 3).view([m, h, hd]),
        RopeLayout::HalfSplit => Tensor::cat(&[r0, r1], 2),
    }
}

#[test]
fn rope_qkv_rotates_q_and_k_and_fills_the_cache_like_libtorch() {
    let Heads { heads, kv_heads, head_dim: hd } = SMOLLM2;
    let (capacity, positions) = (64usize, 40usize);
    let half = hd / 2;
    let cos = Tensor::from_slice(&noise(positions * half, 4)).view([positions as i64, half as i64]);
    let sin = Tensor::from_slice(&noise(positions * half, 5)).view([positions as i64, half as i64]);
    for layout in [RopeLayout::Interleaved, RopeLayout::HalfSplit] {
        for (m, pos) in [(1usize, 0usize), (1, 17), (4, 36)] {
            let width = (heads + 2 * kv_heads) * hd;
            let qkv = noise(m * width, 6 + pos as u64);
            let shape = [1, kv_heads as i64, capacity as i64, hd as i64];
            let (mut k, mut v) = (Tensor::zeros(shape, (Kind::Float, Device::Cpu)), Tensor::zeros(shape, (Kind::Float, Device::Cpu)));
            let mut q = vec![0f32; m * heads * hd];
            let mut cache = Cache::new(&mut k, &mut v, SMOLLM2).unwrap();
            assert!(decode_ops::rope_qkv(&qkv, &cos, &sin, layout, SMOLLM2, pos, &mut q, &mut cache));
            let t = Tensor::from_slice(&qkv).view([m as i64, (heads + 2 * kv_heads) as i64, hd as i64]);
            let (c, s) = (cos.narrow(0, pos as i64, m as i64), sin.narrow(0, pos as i64, m as i64));
            let what = format!("{layout:?}, {m} tokens at {pos}");
            let want_q = rope_reference(&t.narrow(1, 0, heads as i64), &c, &s, layout);
            assert_close(&q, &values(&want_q), &format!("q, {what}"));
            let want_k = rope_reference(&t.narrow(1, heads as i64, kv_heads as i64), &c, &s, layout).transpose(0, 1);
            let got_k = k.squeeze_dim(0).narrow(1, pos as i64, m as i64);
            assert_close(&values(&got_k), &values(&want_k), &format!("k cache, {what}"));
            let want_v = t.narrow(1, (heads + kv_heads) as i64, kv_heads as i64).transpose(0, 1);
            let got_v = v.squeeze_dim(0).narrow(1, pos as i64, m as i64);
            assert_eq!(values(&got_v), values(&want_v), "v cache, {what}");
            // Nothing outside positions pos..pos+m is written.
            let written = (k.abs().sum_dim_intlist(&[1i64, 3][..], false, Kind::Float).squeeze_dim(0)).gt(0.0);
            let want_rows: Vec<bool> = (0..capacity).map(|p| (pos..pos + m).contains(&p)).collect();
            assert_eq!(Vec::<bool>::try_from(&written).unwrap(), want_rows, "rows written, {what}");
        }
    }
}

#[test]
fn attention_matches_libtorch_sdpa_on_every_tier() {
    let Heads { heads, kv_heads, head_dim: hd } = SMOLLM2;
    let capacity = 1024usize;
    let shape = [1, kv_heads as i64, capacity as i64, hd as i64];
    let mut k = Tensor::from_slice(&noise(kv_heads * capacity * hd, 7)).view(shape) * 2.0;
    let mut v = Tensor::from_slice(&noise(kv_heads * capacity * hd, 8)).view(shape);
    // One token at the start, a few after a short context, and long contexts (the pool's path).
    for (m, pos) in [(1usize, 0usize), (1, 5), (3, 37), (1, 700), (4, 1000)] {
        let q = noise(m * heads * hd, 9 + pos as u64).iter().map(|v| v * 2.0).collect::<Vec<_>>();
        let total = (pos + m) as i64;
        let qt = Tensor::from_slice(&q).view([1, m as i64, heads as i64, hd as i64]).transpose(1, 2);
        let rows = Tensor::arange_start(pos as i64, total, (Kind::Int64, Device::Cpu)).unsqueeze(1);
        let cols = Tensor::arange(total, (Kind::Int64, Device::Cpu)).unsqueeze(0);
        let mask = cols.le_tensor(&rows);
        let want = Tensor::scaled_dot_product_attention(&qt, &k.narrow(2, 0, total), &v.narrow(2, 0, total), Some(&mask), 0.0, false, None, true);
        let want = values(&want.transpose(1, 2));
        let cache = Cache::new(&mut k, &mut v, SMOLLM2).unwrap();
        for tier in Tier::available() {
            let mut out = vec![f32::NAN; q.len()];
            assert!(decode_ops::attention(tier, &q, &cache, SMOLLM2, pos, &mut out));
            assert_close(&out, &want, &format!("attention, {m} tokens at {pos}, {tier:?}"));
        }
    }
}

#[test]
fn products_with_the_residual_add_fused_add_to_their_output() {
    let (n, k) = (37usize, 576usize);
    let w = Tensor::from_slice(&noise(n * k, 10)).view([n as i64, k as i64]);
    let matrix = Matrix::f32(&w).unwrap();
    let x = noise(2 * k, 11);
    let base = noise(2 * n, 12);
    let product = Tensor::from_slice(&x).view([2, k as i64]).matmul(&w.tr());
    let want: Vec<f32> = values(&product).iter().zip(&base).map(|(p, b)| p + b).collect();
    for tier in Tier::available() {
        let mut y = base.clone();
        assert!(matrix.product_into(tier, &x, &mut y, true));
        assert_close(&y, &want, &format!("f32 product + residual, {tier:?}"));
    }
}

#[test]
fn wrong_lengths_and_shapes_are_declined_before_any_pointer_crosses() {
    let Heads { heads, kv_heads, head_dim: hd } = SMOLLM2;
    let w = Tensor::from_slice(&noise(576, 13));
    let x = noise(576, 14);
    assert!(!decode_ops::rms_norm(&x, &w, 1e-5, &mut vec![0f32; 575]), "output one short");
    assert!(!decode_ops::rms_norm(&x[..575], &w, 1e-5, &mut vec![0f32; 575]), "not whole rows");
    assert!(!decode_ops::rms_norm(&x, &w.to_kind(Kind::Half), 1e-5, &mut vec![0f32; 576]), "f16 weight");
    assert!(!decode_ops::silu_mul(&[0f32; 3 * 10], &mut [0f32; 10], 1), "gate/up not twice the output");
    let shape = [1, kv_heads as i64, 8, hd as i64];
    let (mut k, mut v) = (Tensor::zeros(shape, (Kind::Float, Device::Cpu)), Tensor::zeros(shape, (Kind::Float, Device::Cpu)));
    assert!(Cache::new(&mut k, &mut v.narrow(2, 0, 4), SMOLLM2).is_none(), "caches of different lengths");
    assert!(Cache::new(&mut k.to_kind(Kind::Half), &mut v.to_kind(Kind::Half), SMOLLM2).is_none(), "f16 caches");
    let mut cache = Cache::new(&mut k, &mut v, SMOLLM2).unwrap();
    let q = vec![0f32; heads * hd];
    let mut out = vec![0f32; heads * hd];
    assert!(!decode_ops::attention(Tier::best(), &q, &cache, SMOLLM2, 8, &mut out), "position past the cache");
    assert!(!decode_ops::attention(Tier::best(), &q, &cache, SMOLLM2, 0, &mut out[..64]), "output short");
    let tables = Tensor::zeros([4, (hd / 2) as i64], (Kind::Float, Device::Cpu));
    let qkv = vec![0f32; (heads + 2 * kv_heads) * hd];
    let mut q = vec![0f32; heads * hd];
    assert!(!decode_ops::rope_qkv(&qkv, &tables, &tables, RopeLayout::HalfSplit, SMOLLM2, 4, &mut q, &mut cache), "tables end at 4");
    assert!(!decode_ops::rope_qkv(&qkv[1..], &tables, &tables, RopeLayout::HalfSplit, SMOLLM2, 0, &mut q, &mut cache), "not a whole row");
    assert!(decode_ops::rope_qkv(&qkv, &tables, &tables, RopeLayout::HalfSplit, SMOLLM2, 3, &mut q, &mut cache));
}
