//! Per-kernel throughput: one matrix x one token (decode) and x 128 tokens (prefill) for every
//! weight type, at Llama 3.2 1B's MLP shape (8192 x 2048), reported by criterion as bytes of
//! weights per second, next to a measured memory copy of the same size (the machine's limit
//! for batch-1 decode); and at Llama 3 8B's MLP shape, larger than the caches. Weights are synthetic (a byte pattern, normal scales): speed does not depend on the values.
//!
//! `cargo bench -p cpu-kernels` (set `LLAMA3_BENCH_ISA=avx2` to measure a lower tier).

use cpu_kernels::{matmul, Matrix, WeightType};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};

fn matrix(ty: WeightType, rows: usize, cols: usize) -> Matrix {
    let rb = ty.row_bytes(cols).unwrap();
    // A byte pattern for the codes, then every f16 / bf16 value normal (0.01): a subnormal scale
    // costs a microcode assist per block in the row kernels, which files do not pay.
    let mut data: Vec<u8> = (0..rows * rb).map(|i| (i * 7 % 251) as u8).collect();
    let h = half::f16::from_f32(0.01).to_le_bytes();
    let fields: &[usize] = match ty {
        WeightType::Q4_1 | WeightType::Q5_1 | WeightType::Q4K | WeightType::Q5K => &[0, 2],
        WeightType::Q2K => &[80, 82],
        WeightType::Q3K => &[108],
        WeightType::Q6K => &[208],
        WeightType::Q4_0 | WeightType::Q5_0 | WeightType::Q8_0 | WeightType::IQ4NL | WeightType::IQ4XS => &[0],
        WeightType::F16 => &[0],
        WeightType::BF16 => {
            data.chunks_exact_mut(2).for_each(|c| c.copy_from_slice(&half::bf16::from_f32(0.01).to_le_bytes()));
            &[]
        }
        // int8: one f32 scale per row; NF4: one f32 absmax per 64-value block.
        WeightType::Int8 | WeightType::Nf4 => {
            let step = if ty == WeightType::Int8 { rb } else { ty.block_bytes() };
            data.chunks_exact_mut(step).for_each(|b| b[..4].copy_from_slice(&0.01f32.to_le_bytes()));
            &[]
        }
        WeightType::F32 => {
            data.chunks_exact_mut(4).for_each(|c| c.copy_from_slice(&0.01f32.to_le_bytes()));
            &[]
        }
    };
    for b in data.chunks_exact_mut(ty.block_bytes()) {
        for &f in fields {
            b[f..f + 2].copy_from_slice(&h);
        }
    }
    Matrix::new(ty, rows, cols, data).unwrap()
}

/// One matrix x one token for each of `types` at `(rows, cols)`, as bytes of weights per second.
fn decode(g: &mut BenchmarkGroup<'_, WallTime>, types: &[WeightType], rows: usize, cols: usize) {
    for &ty in types {
        let w = matrix(ty, rows, cols);
        let x = vec![0.5f32; cols];
        let mut y = vec![0.0f32; rows];
        g.throughput(Throughput::Bytes(w.bytes() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(ty.label()), &w, |b, w| b.iter(|| matmul(w, &x, 1, &mut y).unwrap()));
    }
}

fn kernels(c: &mut Criterion) {
    let (rows, cols) = (8192, 2048);
    let mut g = c.benchmark_group("decode_8192x2048");
    let src = vec![1u8; rows * cols * 4];
    let mut dst = vec![0u8; src.len()];
    g.throughput(Throughput::Bytes(src.len() as u64));
    g.bench_function("memcpy (copy bandwidth)", |b| b.iter(|| dst.copy_from_slice(&src)));
    let all = [
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
    decode(&mut g, &all, rows, cols);
    g.finish();
    // Larger than this machine's caches (Llama 3 8B's MLP shape, 14336 x 4096): what decode sees.
    let mut g = c.benchmark_group("decode_14336x4096");
    g.sample_size(20);
    decode(&mut g, &[WeightType::Q4_0, WeightType::Q4K, WeightType::Q6K, WeightType::Q8_0], 14336, 4096);
    g.finish();
    let mut g = c.benchmark_group("prefill_2048x2048_128_tokens");
    g.sample_size(10);
    for ty in [WeightType::Q4_0, WeightType::Q4_1, WeightType::Q8_0, WeightType::Q4K, WeightType::Q6K] {
        let w = matrix(ty, 2048, 2048);
        let t = 128;
        let x = vec![0.5f32; t * 2048];
        let mut y = vec![0.0f32; t * 2048];
        g.throughput(Throughput::Elements((2048 * 2048 * t) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(ty.label()), &w, |b, w| b.iter(|| matmul(w, &x, t, &mut y).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
