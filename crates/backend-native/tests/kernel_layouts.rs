//! The tuned kernels' reading of ggml blocks agrees with candle's own, independent one: blocks
//! quantized by candle (`QTensor::quantize`, ggml's algorithm) and dequantized by candle must equal
//! cpu-kernels' reference dequantization of the same bytes, and the tuned product on those bytes
//! must match candle's dequantize-then-multiply. Also: the NF4 code book is bench-core's.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use cpu_kernels::quant::reference::{dequantize_row, NF4_CODEBOOK};
use cpu_kernels::{matmul, Matrix, WeightType};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[test]
fn ggml_blocks_read_the_same_as_candle() {
    let mut rng = SmallRng::seed_from_u64(11);
    let cases = [
        (GgmlDType::Q4_0, WeightType::Q4_0, 576),
        (GgmlDType::Q4_1, WeightType::Q4_1, 576),
        (GgmlDType::Q8_0, WeightType::Q8_0, 576),
        (GgmlDType::Q4K, WeightType::Q4K, 768),
        (GgmlDType::Q5K, WeightType::Q5K, 768),
        (GgmlDType::Q6K, WeightType::Q6K, 768),
    ];
    for (gdt, ty, cols) in cases {
        let rows = 13;
        let values: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, gdt).unwrap();
        let candle: Vec<Vec<f32>> = q.dequantize(&Device::Cpu).unwrap().to_vec2().unwrap();
        let w = Matrix::new(ty, rows, cols, q.data().unwrap()).unwrap();
        let mut ours = vec![0.0f32; cols];
        for (r, want) in candle.iter().enumerate() {
            dequantize_row(ty, &w.row(r), &mut ours);
            assert_eq!(&ours, want, "{} row {r}: cpu-kernels and candle read the blocks differently", ty.label());
        }
        // The tuned product against candle's dequantized matrix times f32 activations (the
        // difference is the activations' 8-bit quantization: well under 1% of the row's scale).
        let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mut y = vec![0.0f32; rows];
        matmul(&w, &x, 1, &mut y).unwrap();
        for (r, want) in candle.iter().enumerate() {
            let exact: f32 = want.iter().zip(&x).map(|(a, b)| a * b).sum();
            let scale: f32 = want.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
            assert!((y[r] - exact).abs() <= 0.01 * scale, "{} row {r}: {} vs {exact} (scale {scale})", ty.label(), y[r]);
        }
    }
}

#[test]
fn nf4_code_book_is_bench_cores() {
    assert_eq!(NF4_CODEBOOK, bench_backend::quant::NF4_CODEBOOK);
}
