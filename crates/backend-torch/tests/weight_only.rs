//! The f32 / int8 / NF4 products of `csrc/weight_only.cpp` against a plain reference: random
//! weights (quantized by bench-backend and expanded by bench-backend's own `dequantize_*`, for the
//! quantized formats), multiplied in f64 loops here. Every tier this CPU runs, odd shapes (k = 96 and 576, row counts that split
//! unevenly over threads), one and several tokens; and through `Weight::apply`, the fallback
//! (more tokens than the kernels take, `--kernels stock`) against the kernel.

mod common;

use backend_torch::model::Weight;
use backend_torch::weight_only::{self, Tier, MAX_TOKENS};
use bench_backend::quant::{self, NF4_BLOCK, NF4_CODEBOOK};
use common::noise;
use tch::{Kind, Tensor};

/// `x (m, k) · w (n, k)ᵀ` in f64.
fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for t in 0..m {
        for r in 0..n {
            y[t * n + r] = (0..k).map(|i| x[t * k + i] as f64 * w[r * k + i] as f64).sum::<f64>() as f32;
        }
    }
    y
}

fn assert_close(got: &Tensor, want: &[f32], what: &str) {
    let got = Vec::<f32>::try_from(&got.reshape([-1])).unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-4 * scale, "{what}: max |Δ| {worst} vs max |y| {scale}");
}

fn f32_weight(n: usize, k: usize, seed: u64) -> (Weight, Vec<f32>) {
    let dense = noise(n * k, seed);
    (Weight::Dense(Tensor::from_slice(&dense).view([n as i64, k as i64])), dense)
}

fn int8_weight(n: usize, k: usize, seed: u64) -> (Weight, Vec<f32>) {
    let m = quant::quantize_int8(&noise(n * k, seed), n, k);
    let dense = quant::dequantize_int8(&m);
    let w = Weight::Int8 { q: Tensor::from_slice(&m.q).view([n as i64, k as i64]), scales: Tensor::from_slice(&m.scales).view([n as i64, 1]) };
    (w, dense)
}

fn nf4_weight(n: usize, k: usize, seed: u64) -> (Weight, Vec<f32>) {
    let m = quant::quantize_nf4(&noise(n * k, seed), n, k, "test").unwrap();
    let dense = quant::dequantize_nf4(&m);
    let w = Weight::Nf4 {
        packed: Tensor::from_slice(&m.packed).view([n as i64, k as i64 / 2]),
        absmax: Tensor::from_slice(&m.absmax).view([n as i64, (k / NF4_BLOCK) as i64, 1]),
        codebook: Tensor::from_slice(&NF4_CODEBOOK),
    };
    (w, dense)
}

fn product(w: &Weight, tier: Tier, x: &Tensor) -> Option<Tensor> {
    match w {
        Weight::Int8 { q, scales } => weight_only::int8_matmul(tier, x, q, scales),
        Weight::Nf4 { packed, absmax, codebook } => weight_only::nf4_matmul(tier, x, packed, absmax, codebook),
        Weight::Dense(w) => weight_only::f32_matmul(tier, x, w),
    }
}

fn check(name: &str, make: fn(usize, usize, u64) -> (Weight, Vec<f32>), shapes: &[(usize, usize)]) {
    let tiers = Tier::available();
    eprintln!("{name}: tiers {:?} (best {:?})", tiers, Tier::best());
    for &(n, k) in shapes {
        let (w, dense) = make(n, k, (n * 31 + k) as u64);
        for m in [1, 3, MAX_TOKENS as usize] {
            let xs = noise(m * k, 7 + m as u64);
            let want = reference(&xs, &dense, m, n, k);
            let x = Tensor::from_slice(&xs).view([1, m as i64, k as i64]);
            for &tier in &tiers {
                let y = product(&w, tier, &x).unwrap_or_else(|| panic!("{name} {n}x{k}, {m} tokens: kernel declined"));
                assert_eq!(y.size(), [1, m as i64, n as i64]);
                assert_close(&y, &want, &format!("{name} {n}x{k}, {m} tokens, {tier:?}"));
            }
            // `Weight::apply` with the best tier, and with none (libtorch's expansion + linear).
            assert_close(&w.apply(&x, Some(Tier::best())), &want, &format!("{name} {n}x{k}, {m} tokens, apply"));
            assert_close(&w.apply(&x, None), &want, &format!("{name} {n}x{k}, {m} tokens, stock"));
        }
    }
}

#[test]
fn f32_products_match_the_reference_on_every_tier() {
    check("f32", f32_weight, &[(1, 96), (37, 100), (61, 576), (130, 1024), (5, 8200)]);
}

#[test]
fn int8_products_match_the_dequantized_reference_on_every_tier() {
    check("int8", int8_weight, &[(1, 96), (37, 96), (61, 576), (130, 1024), (5, 8200)]);
}

#[test]
fn nf4_products_match_the_dequantized_reference_on_every_tier() {
    check("nf4", nf4_weight, &[(1, 64), (37, 576), (130, 1024), (5, 8192)]);
}

#[test]
fn more_tokens_than_the_kernels_take_fall_back_to_libtorch_with_the_same_result() {
    let (n, k, m) = (45, 576, MAX_TOKENS as usize + 3);
    for (w, dense) in [f32_weight(n, k, 0), int8_weight(n, k, 1), nf4_weight(n, k, 2)] {
        let xs = noise(m * k, 3);
        let x = Tensor::from_slice(&xs).view([m as i64, k as i64]);
        assert!(product(&w, Tier::best(), &x).is_none(), "{m} tokens must go to libtorch");
        assert_close(&w.apply(&x, Some(Tier::best())), &reference(&xs, &dense, m, n, k), "fallback");
    }
}

#[test]
fn wrong_kinds_and_shapes_are_declined_not_read() {
    let (w, _) = int8_weight(8, 96, 4);
    let Weight::Int8 { q, scales } = &w else { unreachable!() };
    let x = Tensor::from_slice(&noise(96, 5)).view([1, 96]);
    let tier = Tier::best();
    assert!(weight_only::int8_matmul(tier, &x, q, scales).is_some());
    assert!(weight_only::int8_matmul(tier, &x.narrow(1, 0, 64), q, scales).is_none(), "k mismatch");
    assert!(weight_only::int8_matmul(tier, &x, &q.to_kind(Kind::Int16), scales).is_none(), "codes not int8");
    assert!(weight_only::int8_matmul(tier, &x, &q.tr(), scales).is_none(), "codes not contiguous (n, k)");
    assert!(weight_only::int8_matmul(tier, &x, q, &scales.narrow(0, 0, 7)).is_none(), "one scale short");
    let (w, _) = nf4_weight(8, 128, 6);
    let Weight::Nf4 { packed, absmax, codebook } = &w else { unreachable!() };
    let x = Tensor::from_slice(&noise(128, 7)).view([1, 128]);
    assert!(weight_only::nf4_matmul(tier, &x, packed, absmax, codebook).is_some());
    assert!(weight_only::nf4_matmul(tier, &x, packed, absmax, &codebook.narrow(0, 0, 15)).is_none(), "short code book");
    assert!(weight_only::nf4_matmul(tier, &x, &packed.narrow(1, 0, 48), absmax, codebook).is_none(), "k not a multiple of 64");
}
