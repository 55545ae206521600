//! native's tuned kernels (crate `cpu-kernels`) against llama.cpp's own CPU code, called through
//! ggml's type traits (`ggml_get_type_traits_cpu`: each type's `vec_dot`, its `vec_dot_type` and
//! that type's `from_float`), on rows of a real SmolLM2 matrix quantized by ggml
//! (`ggml_quantize_chunk`) to every block type both read, and on activations that are real
//! SmolLM2 embedding rows:
//!
//! - the activations are quantized exactly as ggml quantizes them for each weight type (same
//!   codes, same scales, same sums, to the bit);
//! - every product equals ggml's `vec_dot` within 1e-6 of its magnitude (Σ |w·x|) on every
//!   instruction-set tier this CPU has, for one token and for a prompt batch: the integer sums
//!   are ggml's and only the order of float additions differs.

use bench_backend::gguf::{GgmlType, GgufFile};
use cpu_kernels::cpu::Isa;
use cpu_kernels::matmul::matmul_many_isa;
use cpu_kernels::quant::{quantize_row_q8, ActivationFormat, BlockQ8};
use cpu_kernels::{Matrix, WeightType};
use half::f16;

use backend_conformance::fixtures;

mod ggml;
use ggml::{ggml_quantize, ggml_to_float};

/// The block types both ggml and the tuned kernels multiply, with the kernels' name for each.
const TYPES: [(GgmlType, WeightType); 14] = [
    (GgmlType::Q4_0, WeightType::Q4_0),
    (GgmlType::Q4_1, WeightType::Q4_1),
    (GgmlType::Q5_0, WeightType::Q5_0),
    (GgmlType::Q5_1, WeightType::Q5_1),
    (GgmlType::Q8_0, WeightType::Q8_0),
    (GgmlType::Q2_K, WeightType::Q2K),
    (GgmlType::Q3_K, WeightType::Q3K),
    (GgmlType::Q4_K, WeightType::Q4K),
    (GgmlType::Q5_K, WeightType::Q5K),
    (GgmlType::Q6_K, WeightType::Q6K),
    (GgmlType::IQ4_NL, WeightType::IQ4NL),
    (GgmlType::IQ4_XS, WeightType::IQ4XS),
    (GgmlType::F16, WeightType::F16),
    (GgmlType::BF16, WeightType::BF16),
];

/// ggml's CPU traits of `ty` (its product, the activation type it takes, that type's quantizer).
fn cpu_traits(ty: GgmlType) -> llama_cpp_sys_2::ggml_type_traits_cpu {
    static INIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: `ggml_cpu_init` only fills ggml-cpu's static lookup tables; the traits table is
    // static and indexed by a valid type id.
    unsafe {
        INIT.call_once(|| llama_cpp_sys_2::ggml_cpu_init());
        *llama_cpp_sys_2::ggml_get_type_traits_cpu(ty.to_u32())
    }
}

/// ggml's activation row for a product with `ty` weights: `x` through `from_float` of the
/// weight type's `vec_dot_type`, and that type.
fn ggml_activations(ty: GgmlType, x: &[f32]) -> (GgmlType, Vec<u8>) {
    let act = GgmlType::from_u32(cpu_traits(ty).vec_dot_type);
    let (per_block, block_bytes) = act.block().unwrap();
    let mut out = vec![0u8; x.len() / per_block * block_bytes];
    let from_float = cpu_traits(act).from_float.expect("ggml-cpu quantizes activations to its vec_dot types");
    // SAFETY: `from_float` reads `x.len()` floats (a whole number of `act` blocks: every row
    // here is a multiple of 256) and writes as many values' blocks, which `out` holds.
    unsafe { from_float(x.as_ptr(), out.as_mut_ptr().cast(), x.len() as i64) };
    (act, out)
}

/// ggml's `vec_dot` of one weight row (`ty` blocks) and one activation row in its `vec_dot_type`.
fn ggml_dot(ty: GgmlType, row: &[u8], act: &[u8], n: usize) -> f32 {
    let vec_dot = cpu_traits(ty).vec_dot.unwrap();
    let mut s = 0.0f32;
    // SAFETY: `row` holds the blocks of `n` values of `ty` and `act` those of `n` values of the
    // type's `vec_dot_type` (both built for `n` by the callers); one row (nrc = 1), so the
    // strides are unused.
    unsafe { vec_dot(n as i32, &mut s, 0, row.as_ptr().cast(), 0, act.as_ptr().cast(), 0, 1) };
    s
}

/// One of ggml's activation blocks (Q8_0, Q8_1 or Q8_K) as the kernels hold them.
struct GgmlActBlock {
    codes: Vec<i8>,
    d: f32,
    /// Q8_1's scaled sum.
    s: Option<f32>,
    /// Q8_K's sums of each 16 codes.
    sums: Option<Vec<i32>>,
}

/// ggml's activation row `bytes` (type `act`) as blocks.
fn ggml_blocks_q8(act: GgmlType, bytes: &[u8]) -> Vec<GgmlActBlock> {
    let f16_at = |b: &[u8], at: usize| f16::from_le_bytes([b[at], b[at + 1]]).to_f32();
    let codes = |b: &[u8]| b.iter().map(|&v| v as i8).collect::<Vec<i8>>();
    match act {
        GgmlType::Q8_0 => bytes.chunks_exact(34).map(|b| GgmlActBlock { codes: codes(&b[2..]), d: f16_at(b, 0), s: None, sums: None }).collect(),
        GgmlType::Q8_1 => bytes.chunks_exact(36).map(|b| GgmlActBlock { codes: codes(&b[4..]), d: f16_at(b, 0), s: Some(f16_at(b, 2)), sums: None }).collect(),
        GgmlType::Q8_K => bytes
            .chunks_exact(292)
            .map(|b| GgmlActBlock {
                codes: codes(&b[4..260]),
                d: f32::from_le_bytes(b[..4].try_into().unwrap()),
                s: None,
                sums: Some(b[260..292].chunks_exact(2).map(|s| i16::from_le_bytes([s[0], s[1]]) as i32).collect()),
            })
            .collect(),
        other => panic!("unexpected activation type {other}"),
    }
}

/// The values an activation row stands for (codes times scales; F16 and BF16 as they are).
fn activation_values(act: GgmlType, bytes: &[u8]) -> Vec<f32> {
    if act == GgmlType::F16 {
        return bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
    }
    if act == GgmlType::BF16 {
        return bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
    }
    ggml_blocks_q8(act, bytes).iter().flat_map(|b| b.codes.iter().map(|&q| q as f32 * b.d).collect::<Vec<f32>>()).collect()
}

fn kernels_format(act: GgmlType) -> ActivationFormat {
    match act {
        GgmlType::Q8_0 => ActivationFormat::Q8_0,
        GgmlType::Q8_1 => ActivationFormat::Q8_1,
        GgmlType::Q8_K => ActivationFormat::Q8K,
        other => panic!("unexpected activation type {other}"),
    }
}

/// Real rows: `rows` x `cols` of layer 0's down projection (its values as ggml reads them) and
/// `t` token embeddings (the first `cols` values of each), SmolLM2-135M-Instruct.
fn real_data(rows: usize, cols: usize, t: usize) -> (Vec<f32>, Vec<f32>) {
    let gguf = GgufFile::open(fixtures::smollm2_gguf()).unwrap();
    let w = gguf.tensor("blk.0.ffn_down.weight").unwrap();
    assert!(w.dims[0] as usize >= cols);
    let all = ggml_to_float(w.ggml_type, gguf.tensor_bytes(w).unwrap(), w.elements() as usize);
    let wide = w.dims[0] as usize;
    let weights = (0..rows).flat_map(|r| all[r * wide..r * wide + cols].to_vec()).collect();
    let e = gguf.tensor("token_embd.weight").unwrap();
    let emb = ggml_to_float(e.ggml_type, gguf.tensor_bytes(e).unwrap(), e.elements() as usize);
    let dim = e.dims[0] as usize;
    // Tokens spread over the vocabulary; each row padded to `cols` with the next token's values.
    let x = (0..t).flat_map(|i| emb[(1000 + 997 * i) * dim..][..cols].to_vec()).collect();
    (weights, x)
}

#[test]
fn activations_are_quantized_as_ggml_quantizes_them() {
    let (cols, t) = (512, 4);
    let (_, x) = real_data(1, cols, t);
    for (gty, _) in TYPES.iter().filter(|(g, _)| !matches!(g, GgmlType::F16 | GgmlType::BF16)) {
        for xr in x.chunks_exact(cols) {
            let (act, bytes) = ggml_activations(*gty, xr);
            let want = ggml_blocks_q8(act, &bytes);
            for isa in Isa::available() {
                let mut got = vec![BlockQ8::default(); cols / 32];
                quantize_row_q8(isa, kernels_format(act), xr, &mut got);
                let per = want[0].codes.len() / 32;
                for (i, b) in got.iter().enumerate() {
                    let GgmlActBlock { codes, d, s, sums } = &want[i / per];
                    let j = i % per;
                    assert_eq!(&b.qs[..], &codes[32 * j..32 * j + 32], "{gty} ({act}) on {isa:?}, block {i}: codes");
                    assert_eq!(b.d.to_bits(), d.to_bits(), "{gty} ({act}) on {isa:?}, block {i}: scale");
                    if let Some(s) = s {
                        assert_eq!(b.s.to_bits(), s.to_bits(), "{gty} ({act}) on {isa:?}, block {i}: scaled sum");
                    }
                    if let Some(sums) = sums {
                        assert_eq!(b.halves, [sums[2 * j], sums[2 * j + 1]], "{gty} ({act}) on {isa:?}, block {i}: 16-value sums");
                    }
                }
            }
        }
    }
    println!("activation blocks of {} types x {t} real rows: ggml's codes, scales and sums on every tier", TYPES.len() - 1);
}

#[test]
fn every_product_equals_ggmls_vec_dot() {
    // 1536 columns: SmolLM2's down projection, six 256-value blocks; 24 rows (three interleaved
    // groups of 8); 1 token (decode), 6 (a prompt: a 4-token tile and two single tokens) and 13
    // (an 8-token tile where a type has one, then 4 and 1).
    let (rows, cols) = (24, 1536);
    let (w_values, x_all) = real_data(rows, cols, 13);
    let mut worst = 0.0f64;
    // Products bit-identical to ggml's, per type: tier and token count -> (equal, of).
    let mut identical: Vec<String> = Vec::new();
    for (gty, kty) in TYPES {
        let mut same = Vec::new();
        let blocks = ggml_quantize(gty, &w_values, rows, cols);
        let w_read = ggml_to_float(gty, &blocks, rows * cols);
        let w = Matrix::new(kty, rows, cols, blocks.clone()).unwrap();
        let row_bytes = blocks.len() / rows;
        for t in [1, 6, 13] {
            let x = &x_all[..t * cols];
            // ggml: each token row quantized once, then one vec_dot per weight row.
            let mut want = vec![0.0f32; t * rows];
            let mut mags = vec![0.0f64; t * rows];
            for (tok, xr) in x.chunks_exact(cols).enumerate() {
                let (act, a) = ggml_activations(gty, xr);
                let x_read = activation_values(act, &a);
                for r in 0..rows {
                    want[tok * rows + r] = ggml_dot(gty, &blocks[r * row_bytes..(r + 1) * row_bytes], &a, cols);
                    mags[tok * rows + r] = w_read[r * cols..(r + 1) * cols].iter().zip(&x_read).map(|(&p, &q)| (p as f64 * q as f64).abs()).sum();
                }
            }
            for isa in Isa::available() {
                let mut got = vec![f32::NAN; t * rows];
                matmul_many_isa(isa, &[&w], x, t, &mut got).unwrap();
                let equal = got.iter().zip(&want).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
                same.push(format!("{isa:?}/{t}: {equal}/{}", t * rows));
                for i in 0..t * rows {
                    let rel = (got[i] as f64 - want[i] as f64).abs() / mags[i];
                    worst = worst.max(rel);
                    assert!(rel <= 1e-6, "{gty} on {isa:?}, {t} tokens, element {i}: {} vs ggml's {} (|diff| / magnitude {rel:e})", got[i], want[i]);
                }
            }
        }
        identical.push(format!("{gty}: {}", same.join(", ")));
    }
    println!("bit-identical to ggml's vec_dot (tier/tokens: equal/products):\n  {}", identical.join("\n  "));
    println!("{} types x {rows} real rows x 1, 6 and 13 tokens: every tier within {worst:e} of ggml's vec_dot (relative to Σ|w·x|)", TYPES.len());
}
