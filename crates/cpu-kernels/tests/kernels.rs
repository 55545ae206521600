//! Every product kernel, on every instruction-set tier this CPU has, against the plain
//! dequantize-then-multiply reference on random blocks: odd row counts, K = 576 (SmolLM2's width,
//! 18 blocks of 32), one and many tokens. int8 and NF4 (int16 activations) within a bound
//! derived from the int16 rounding (see `int16_bound`).

use cpu_kernels::cpu::Isa;
use cpu_kernels::matmul::{matmul_many_isa, Layout, Matrix};
use cpu_kernels::quant::reference::{dequantize_i16, dequantize_q8, dequantize_row, nf4_position, NF4_CODEBOOK, NF4_CODEBOOK_I16, NF4_CODE_SCALE};
use cpu_kernels::quant::{quantize_row_i16, quantize_row_q8, ActivationFormat, BlockQ8, WeightType};
use half::{bf16, f16};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// A random `(rows, cols)` matrix of `ty`: random code bytes, sane random scales.
fn random_matrix(rng: &mut SmallRng, ty: WeightType, rows: usize, cols: usize) -> Matrix {
    let rb = ty.row_bytes(cols).unwrap();
    let mut data = vec![0u8; rows * rb];
    rng.fill(&mut data[..]);
    for row in data.chunks_exact_mut(rb) {
        match ty {
            WeightType::F32 => row.chunks_exact_mut(4).for_each(|c| c.copy_from_slice(&rng.random_range(-1.0f32..1.0).to_le_bytes())),
            WeightType::F16 => row.chunks_exact_mut(2).for_each(|c| c.copy_from_slice(&f16::from_f32(rng.random_range(-1.0..1.0)).to_le_bytes())),
            WeightType::BF16 => row.chunks_exact_mut(2).for_each(|c| c.copy_from_slice(&bf16::from_f32(rng.random_range(-1.0..1.0)).to_le_bytes())),
            WeightType::Int8 => row[..4].copy_from_slice(&rng.random_range(0.001f32..0.02).to_le_bytes()),
            _ => {
                for b in row.chunks_exact_mut(ty.block_bytes()) {
                    match ty {
                        WeightType::Q4_0 | WeightType::Q5_0 | WeightType::Q8_0 => put_f16(b, 0, rng.random_range(0.001..0.05)),
                        WeightType::IQ4NL | WeightType::IQ4XS => put_f16(b, 0, rng.random_range(0.0001..0.002)),
                        WeightType::Q2K => {
                            put_f16(b, 80, rng.random_range(0.001..0.05));
                            put_f16(b, 82, rng.random_range(0.001..0.05));
                        }
                        WeightType::Q3K => put_f16(b, 108, rng.random_range(0.0001..0.005)),
                        WeightType::Q4_1 | WeightType::Q5_1 => {
                            put_f16(b, 0, rng.random_range(0.001..0.05));
                            put_f16(b, 2, rng.random_range(-0.4..0.0));
                        }
                        WeightType::Q4K | WeightType::Q5K => {
                            put_f16(b, 0, rng.random_range(0.0001..0.005));
                            put_f16(b, 2, rng.random_range(0.0001..0.005));
                        }
                        WeightType::Q6K => put_f16(b, 208, rng.random_range(0.0001..0.005)),
                        WeightType::Nf4 => b[..4].copy_from_slice(&rng.random_range(0.001f32..0.02).to_le_bytes()),
                        _ => unreachable!(),
                    }
                }
            }
        }
    }
    // Every 7th block of the ggml types gets a subnormal f16 scale (exact in every reader; the
    // row kernels take a separate path for them).
    if let Some(at) = match ty {
        WeightType::Q2K => Some(80),
        WeightType::Q3K => Some(108),
        WeightType::Q6K => Some(208),
        _ if ty.activation_format().is_some_and(ActivationFormat::is_q8) => Some(0),
        _ => None,
    } {
        let bb = ty.block_bytes();
        data.chunks_exact_mut(bb).step_by(7).for_each(|b| put_f16(b, at, 3.0e-6));
    }
    Matrix::new(ty, rows, cols, data).unwrap()
}

const ALL: [WeightType; 17] = [
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
    WeightType::Int8,
    WeightType::Nf4,
    WeightType::F32,
    WeightType::F16,
    WeightType::BF16,
];

fn check(ty: WeightType, rows: usize, cols: usize, t: usize, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let w = random_matrix(&mut rng, ty, rows, cols);
    let x: Vec<f32> = (0..t * cols).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    // The reference: weights dequantized to f32; activations as the kernel sees them (quantized
    // to Q8 for quantized types, by the scalar tier; rounded to f16 / bf16 for those rows, as
    // ggml does), the sum in f64.
    let mut q = vec![BlockQ8::default(); t * cols / 32];
    // int8 / NF4 against the f32 activations themselves, within `int16_bound`.
    let xs: Vec<f32> = match ty.activation_format().filter(|f| f.is_q8()) {
        Some(format) => {
            let mut back = vec![0.0; t * cols];
            for (xr, (qr, br)) in x.chunks_exact(cols).zip(q.chunks_exact_mut(cols / 32).zip(back.chunks_exact_mut(cols))) {
                quantize_row_q8(Isa::Scalar, format, xr, qr);
                dequantize_q8(qr, br);
            }
            back
        }
        None => match ty {
            WeightType::F16 => x.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
            WeightType::BF16 => x.iter().map(|&v| bf16::from_f32(v).to_f32()).collect(),
            _ => x.clone(),
        },
    };
    let mut wrow = vec![0.0f32; cols];
    let mut want = vec![0.0f64; t * rows];
    let mut mag = vec![0.0f64; t * rows];
    let mut bound = vec![0.0f64; t * rows];
    for r in 0..rows {
        dequantize_row(ty, &w.row(r), &mut wrow);
        for tok in 0..t {
            let xr = &xs[tok * cols..(tok + 1) * cols];
            want[tok * rows + r] = wrow.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
            if ty.activation_format() == Some(ActivationFormat::Q8_1) {
                // ggml's Q4_1 / Q5_1 products take the min term as m · s with Q8_1's f16 `s`,
                // not m · d · Σq of the dequantized activations: add the difference.
                let row = w.row(r);
                for (b, xb) in row.chunks_exact(ty.block_bytes()).zip(&q[tok * cols / 32..(tok + 1) * cols / 32]) {
                    let m = f16::from_le_bytes([b[2], b[3]]).to_f32() as f64;
                    want[tok * rows + r] += m * (xb.s as f64 - xb.d as f64 * (xb.halves[0] + xb.halves[1]) as f64);
                }
            }
            mag[tok * rows + r] = wrow.iter().zip(xr).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
            bound[tok * rows + r] = int16_bound(ty, &w.row(r), &wrow, xr);
        }
    }
    // The same matrix in every layout it can take (rows as in the file; 8 rows interleaved).
    let mut layouts = vec![w.clone()];
    if w.layout() != Layout::Rows {
        layouts.push(in_layout(&w, Layout::Rows));
    }
    for w in &layouts {
        for isa in Isa::available() {
            let mut y = vec![f32::NAN; t * rows];
            matmul_many_isa(isa, &[w], &x, t, &mut y).unwrap();
            for i in 0..t * rows {
                let err = (y[i] as f64 - want[i]).abs();
                assert!(
                    err <= 1e-4 * mag[i] + bound[i] + 1e-6,
                    "{} ({:?}) on {isa:?}, ({rows}x{cols}) x {t} tokens: element {i} is {} but the reference is {} (|err| {err:e}, scale {:e})",
                    ty.label(),
                    w.layout(),
                    y[i],
                    want[i],
                    mag[i]
                );
            }
        }
    }
}

/// How far an int8 / NF4 product with int16 activations may be from dequantize-then-multiply in
/// f32 (0 for the other types): with `m = max|x|` of the token, each activation is off by at most
/// `m / 65534` (half a step of `m / 32767`), so a term `w_i x_i` by `|w_i| m / 65534`; NF4's int16
/// code book (`round(code * 1024)`) puts each weight off by at most `absmax / 2048`, a term by
/// `absmax m / 2048` more (the activation is at most `m`). The bound is the sum over the row,
/// times 1.0001 for the float rounding of the scales. The f32 sums' own rounding is in the
/// caller's `1e-4 * magnitude`.
fn int16_bound(ty: WeightType, row: &[u8], wrow: &[f32], x: &[f32]) -> f64 {
    let m = x.iter().fold(0.0f64, |a, &v| a.max(v.abs() as f64));
    let act: f64 = wrow.iter().map(|&w| w.abs() as f64 * m / 65534.0).sum();
    let book: f64 = match ty {
        WeightType::Nf4 => {
            row.chunks_exact(36).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).abs() as f64 * 64.0 * m / (2.0 * NF4_CODE_SCALE as f64)).sum()
        }
        WeightType::Int8 => 0.0,
        _ => return 0.0,
    };
    (act + book) * 1.0001
}

/// The int8 / NF4 products with int16 activations against dequantize-then-multiply in f64 on
/// random data (one token, the int16 kernels; three tokens), every tier, within [`int16_bound`],
/// and not needlessly far: the error over all products is well under the bound.
#[test]
fn int16_products_are_within_the_rounding_bound() {
    for ty in [WeightType::Int8, WeightType::Nf4] {
        let (rows, cols) = (40, 2048 + 64);
        for t in [1, 3] {
            let mut rng = SmallRng::seed_from_u64(91 + t as u64);
            let w = random_matrix(&mut rng, ty, rows, cols);
            let x: Vec<f32> = (0..t * cols).map(|_| rng.random_range(-3.0f32..3.0)).collect();
            let mut wrow = vec![0.0f32; cols];
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; t * rows];
                matmul_many_isa(isa, &[&w], &x, t, &mut y).unwrap();
                let (mut worst, mut sum_err, mut sum_bound) = (0.0f64, 0.0, 0.0);
                for r in 0..rows {
                    dequantize_row(ty, &w.row(r), &mut wrow);
                    for tok in 0..t {
                        let xr = &x[tok * cols..(tok + 1) * cols];
                        let want: f64 = wrow.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
                        let mag: f64 = wrow.iter().zip(xr).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                        let bound = int16_bound(ty, &w.row(r), &wrow, xr) + 1e-6 * mag;
                        let err = (y[tok * rows + r] as f64 - want).abs();
                        assert!(
                            err <= bound,
                            "{} on {isa:?}, row {r} token {tok}: {} vs {want} (|err| {err:e} > bound {bound:e})",
                            ty.label(),
                            y[tok * rows + r]
                        );
                        worst = worst.max(err / bound);
                        (sum_err, sum_bound) = (sum_err + err, sum_bound + bound);
                    }
                }
                assert!(sum_err < 0.2 * sum_bound, "{} on {isa:?}: mean error {:e} of mean bound {:e}", ty.label(), sum_err, sum_bound);
                eprintln!("{} on {isa:?}, {t} tokens: worst error {worst:.3} of the bound", ty.label());
            }
        }
    }
}

/// int16 activations on every tier, bit for bit as defined: `s = max|x| / 32767`, codes
/// `round_half_even(x * (32767 / max|x|))` (ties tested), NF4's blocks at `nf4_position`; an
/// all-zero row gives `s = 0` and zero codes; the int16 code book is `round(NF4_CODEBOOK * 1024)`.
#[test]
fn int16_activation_quantization_is_the_same_on_every_tier() {
    for (i, &c) in NF4_CODEBOOK.iter().enumerate() {
        assert_eq!(NF4_CODEBOOK_I16[i] as f32, (c * NF4_CODE_SCALE as f32).round(), "code {i}");
    }
    let mut positions: Vec<usize> = (0..64).map(nf4_position).collect();
    positions.sort_unstable();
    assert_eq!(positions, (0..64).collect::<Vec<_>>(), "nf4_position is a permutation");
    let mut rng = SmallRng::seed_from_u64(5);
    let mut x: Vec<f32> = (0..640).map(|_| rng.random_range(-3.0f32..3.0)).collect();
    // Exact ties k + 0.5 of x * (32767 / amax) with amax = 32767 / 64 (inv = 64, a power of two).
    let amax = 32767.0 / 64.0;
    x[3] = -amax;
    for k in 0..40 {
        x[100 + k] = (k as f32 - 20.0 + 0.5) / 64.0;
    }
    for format in ActivationFormat::I16_FORMATS {
        let inv = 32767.0 / amax;
        let mut want = vec![0i16; 640];
        for (i, &v) in x.iter().enumerate() {
            let at = if format == ActivationFormat::I16Nf4 { 64 * (i / 64) + nf4_position(i % 64) } else { i };
            want[at] = (v * inv).round_ties_even() as i16;
        }
        assert_eq!(want[100 + 20], 0, "0.5 rounds to even 0");
        for isa in Isa::available() {
            let mut got = vec![7i16; 640];
            let s = quantize_row_i16(isa, format, &x, &mut got);
            assert_eq!(s, amax / 32767.0, "{format:?} on {isa:?}");
            assert_eq!(got, want, "{format:?} on {isa:?}");
            let mut back = vec![0.0; 640];
            dequantize_i16(format, &got, s, &mut back);
            assert!(back.iter().zip(&x).all(|(b, v)| (b - v).abs() <= amax / 65534.0 * 1.001), "{format:?} on {isa:?}");
            let mut zero = vec![7i16; 128];
            assert_eq!(quantize_row_i16(isa, format, &[0.0; 128], &mut zero), 0.0);
            assert!(zero.iter().all(|&q| q == 0), "{format:?} on {isa:?}");
        }
    }
}

/// `w` rebuilt from its rows in `layout`.
fn in_layout(w: &Matrix, layout: Layout) -> Matrix {
    let data: Vec<u8> = (0..w.rows()).flat_map(|r| w.row(r).into_owned()).collect();
    Matrix::with_layout(w.ty(), w.rows(), w.cols(), data, layout).unwrap()
}

#[test]
fn every_type_matches_the_reference_on_every_tier() {
    for ty in ALL {
        let cols_list: &[usize] = match ty.block_values() {
            256 => &[256, 768],
            64 => &[576, 64, 1536],
            _ => &[576, 32, 96, 1536],
        };
        for &cols in cols_list {
            // 64 / 16 / 24 rows: whole groups of 8 (interleaved where the type allows).
            for (rows, t) in [(1, 1), (37, 1), (100, 5), (7, 19), (64, 1), (16, 9), (24, 4)] {
                check(ty, rows, cols, t, (rows * 1000 + cols + t) as u64);
            }
        }
    }
}

#[test]
fn fused_products_equal_separate_ones() {
    let mut rng = SmallRng::seed_from_u64(7);
    let (cols, t) = (576, 5);
    // Q4_K_M files mix types within a layer (attn_v is Q6_K): fusing must not care.
    // After 13 rows, the interleaved Q4_0 matrix's groups straddle task boundaries.
    let ws = [
        random_matrix(&mut rng, WeightType::Q8_0, 64, cols),
        random_matrix(&mut rng, WeightType::Q4_1, 13, cols),
        random_matrix(&mut rng, WeightType::Q4_0, 256, cols),
        random_matrix(&mut rng, WeightType::F16, 29, cols),
    ];
    let x: Vec<f32> = (0..t * cols).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let total: usize = ws.iter().map(|w| w.rows()).sum();
    let mut fused = vec![0.0; t * total];
    matmul_many_isa(Isa::detect(), &ws.iter().collect::<Vec<_>>(), &x, t, &mut fused).unwrap();
    let mut base = 0;
    for w in &ws {
        let mut y = vec![0.0; t * w.rows()];
        matmul_many_isa(Isa::detect(), &[w], &x, t, &mut y).unwrap();
        for tok in 0..t {
            // Equal up to summation order: rows of a group that straddles a task boundary are
            // multiplied one at a time instead of 8 side by side.
            let (f, s) = (&fused[tok * total + base..tok * total + base + w.rows()], &y[tok * w.rows()..(tok + 1) * w.rows()]);
            for (a, b) in f.iter().zip(s) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{}: fused {a} vs separate {b}", w.ty().label());
            }
        }
        base += w.rows();
    }
}

/// Every tier quantizes activations to the same blocks, bit for bit, and those blocks are ggml's:
/// Q8_0 / Q8_1 as ggml-cpu's x86 `quantize_row_q8_0` / `_q8_1` (f16 `d = amax / 127`, codes
/// `round_half_even(x · 127 / amax)`, Q8_1's f16 `s = d · Σq` with `d` before rounding), Q8_K as
/// `quantize_row_q8_K_ref` (`iscale = -127 / max` for the first value of largest magnitude, codes
/// `min(127, round_half_even(iscale · x))`, f32 `d = 1 / iscale`, sums per 16 codes), each
/// rewritten here from those definitions.
#[test]
fn activation_quantization_is_ggmls_on_every_tier() {
    let mut rng = SmallRng::seed_from_u64(3);
    let mut x: Vec<f32> = (0..768).map(|_| rng.random_range(-3.0f32..3.0)).collect();
    x[300] = 0.0; // a tie-free but exact value
    x[256..288].fill(0.0); // an all-zero 32-block (an inner one of the second Q8_K block)
                           // Block 0 tells ggml's `127 / amax` from `1 / (amax / 127)` and half-to-even from half-away:
                           // its amax is one where the two scales differ, its other values land exactly on k + 0.5.
    let amax = (0..10_000).map(|i| 2.0f32 + i as f32 * 1e-3).find(|&a| 127.0 / a != 1.0 / (a / 127.0)).unwrap();
    let id = 127.0 / amax;
    x[0] = amax;
    let ties: Vec<f32> = (0..127).map(|k| (k as f32 + 0.5) / id).filter(|&v| (v * id).fract() == 0.5).collect();
    assert!(ties.len() >= 31, "only {} exact ties", ties.len());
    x[1..32].copy_from_slice(&ties[..31]);
    for format in ActivationFormat::Q8 {
        let mut want = vec![BlockQ8::default(); 24];
        match format {
            ActivationFormat::Q8K => {
                for (blocks, xs) in want.chunks_exact_mut(8).zip(x.chunks_exact(256)) {
                    let max = xs.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                    let iscale = -127.0 / max;
                    for (b, xs) in blocks.iter_mut().zip(xs.chunks_exact(32)) {
                        for (q, &v) in b.qs.iter_mut().zip(xs) {
                            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
                        }
                        b.d = 1.0 / iscale;
                    }
                }
            }
            _ => {
                for (b, xs) in want.iter_mut().zip(x.chunks_exact(32)) {
                    let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    for (q, &v) in b.qs.iter_mut().zip(xs) {
                        *q = if amax == 0.0 { 0 } else { (v * (127.0 / amax)).round_ties_even() as i8 };
                    }
                    b.d = f16::from_f32(amax / 127.0).to_f32();
                    let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
                    if format == ActivationFormat::Q8_1 {
                        b.s = f16::from_f32(amax / 127.0 * sum as f32).to_f32();
                    }
                }
            }
        }
        for isa in Isa::available() {
            let mut got = vec![BlockQ8::default(); 24];
            quantize_row_q8(isa, format, &x, &mut got);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_eq!(a.qs, b.qs, "{format:?} on {isa:?}, block {i}");
                assert_eq!(a.d, b.d, "{format:?} on {isa:?}, block {i}");
                assert_eq!(a.halves, [&a.qs[..16], &a.qs[16..]].map(|h| h.iter().map(|&q| q as i32).sum::<i32>()), "{format:?} {isa:?} {i}");
                if format == ActivationFormat::Q8_1 {
                    assert_eq!(a.s, b.s, "{format:?} on {isa:?}, block {i}");
                } else {
                    assert_eq!(a.s, a.d * (a.halves[0] + a.halves[1]) as f32, "{format:?} on {isa:?}, block {i}");
                }
            }
        }
    }
}

/// ggml's arithmetic on every tier: for each type, each SIMD tier's product equals the scalar
/// tier's within 1e-6 of the product's magnitude (Σ|w·x|) — the integer sums are the same, only
/// the order of float additions differs — for one token and for a prompt batch. int8 and NF4
/// (int16 activations, one summation order for all tiers) also fused with a Q8_0 matrix, so that
/// a batch goes through their four-token kernels instead of gemm.
#[test]
fn every_simd_tier_equals_the_scalar_tier() {
    for ty in ALL {
        let cols = if ty.block_values() == 256 { 1536 } else { 1536 + 64 };
        let rows = 24;
        // 13 tokens: the eight-token kernels where a type has them, then four, then one.
        for t in [1, 6, 13] {
            let mut rng = SmallRng::seed_from_u64(cols as u64 + t as u64);
            let w = random_matrix(&mut rng, ty, rows, cols);
            let x: Vec<f32> = (0..t * cols).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            let mut want = vec![0.0; t * rows];
            matmul_many_isa(Isa::Scalar, &[&w], &x, t, &mut want).unwrap();
            // The magnitude: dequantized weights times the activations the kernels see.
            let mut xs = x.clone();
            match ty.activation_format() {
                Some(format) if format.is_q8() => {
                    let mut q = vec![BlockQ8::default(); cols / 32];
                    for xr in xs.chunks_exact_mut(cols) {
                        quantize_row_q8(Isa::Scalar, format, xr, &mut q);
                        dequantize_q8(&q, xr);
                    }
                }
                Some(format) => {
                    let mut q = vec![0i16; cols];
                    for xr in xs.chunks_exact_mut(cols) {
                        let s = quantize_row_i16(Isa::Scalar, format, xr, &mut q);
                        dequantize_i16(format, &q, s, xr);
                    }
                }
                None => {}
            }
            let mut wrow = vec![0.0f32; cols];
            let mags: Vec<f64> = (0..t * rows)
                .map(|i| {
                    dequantize_row(ty, &w.row(i % rows), &mut wrow);
                    wrow.iter().zip(&xs[(i / rows) * cols..]).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum()
                })
                .collect();
            // int8 / NF4 fused with a small Q8_0 matrix: the int16 kernels for every batch size.
            let q8 = random_matrix(&mut rng, WeightType::Q8_0, 8, cols);
            let fused = matches!(ty, WeightType::Int8 | WeightType::Nf4);
            let run = |isa: Isa| {
                if fused {
                    let mut y = vec![f32::NAN; t * (rows + 8)];
                    matmul_many_isa(isa, &[&w, &q8], &x, t, &mut y).unwrap();
                    y.chunks_exact(rows + 8).flat_map(|r| r[..rows].to_vec()).collect::<Vec<f32>>()
                } else {
                    let mut y = vec![f32::NAN; t * rows];
                    matmul_many_isa(isa, &[&w], &x, t, &mut y).unwrap();
                    y
                }
            };
            if fused {
                want = run(Isa::Scalar);
            }
            for isa in Isa::available() {
                let y = run(isa);
                for i in 0..t * rows {
                    let diff = (y[i] as f64 - want[i] as f64).abs();
                    assert!(
                        diff <= 1e-6 * mags[i],
                        "{} on {isa:?}, {t} tokens, element {i}: {} vs scalar {} (|diff| {diff:e}, magnitude {:e})",
                        ty.label(),
                        y[i],
                        want[i],
                        mags[i]
                    );
                }
            }
        }
    }
}

/// The public entries that take a tier clamp it to what the CPU has: asking for every tier,
/// including ones above this CPU's best, runs (no illegal instruction, no UB) and gives the
/// result of the tier actually run, bit for bit.
#[test]
fn requested_tiers_are_clamped_to_the_cpu() {
    let best = Isa::detect();
    eprintln!("best tier on this CPU: {best:?} ({})", best.label());
    for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni] {
        let want = if isa <= best { isa } else { best };
        assert_eq!(isa.clamped(), want, "{isa:?} on a CPU whose best tier is {best:?}");
    }
    assert!(Isa::available().iter().all(|i| i.clamped() == *i));
    let mut rng = SmallRng::seed_from_u64(11);
    let x: Vec<f32> = (0..576).map(|_| rng.random_range(-3.0f32..3.0)).collect();
    let w = random_matrix(&mut rng, WeightType::Q5_0, 16, 576);
    for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni] {
        let (mut got, mut want) = (vec![BlockQ8::default(); 18], vec![BlockQ8::default(); 18]);
        quantize_row_q8(isa, ActivationFormat::Q8_0, &x, &mut got);
        quantize_row_q8(isa.clamped(), ActivationFormat::Q8_0, &x, &mut want);
        assert!(got.iter().zip(&want).all(|(a, b)| a.qs == b.qs && a.d == b.d && a.s == b.s), "quantize_row_q8 on {isa:?}");
        let (mut y, mut y_want) = (vec![0.0; 16], vec![0.0; 16]);
        matmul_many_isa(isa, &[&w], &x, 1, &mut y).unwrap();
        matmul_many_isa(isa.clamped(), &[&w], &x, 1, &mut y_want).unwrap();
        assert_eq!(y, y_want, "matmul_many_isa on {isa:?}");
    }
}

#[test]
fn bad_shapes_are_errors() {
    assert!(Matrix::new(WeightType::Q4_1, 2, 576, vec![0; 10]).is_err());
    assert!(Matrix::new(WeightType::Q4K, 1, 576, vec![0; 1000]).is_err(), "576 is not a whole number of 256-value blocks");
    let w = Matrix::new(WeightType::F32, 2, 4, vec![0; 32]).unwrap();
    let mut y = vec![0.0; 3];
    assert!(matmul_many_isa(Isa::Scalar, &[&w], &[0.0; 4], 1, &mut y).is_err());
}
