//! Weight bytes per second of every quantized product kernel on every instruction-set tier this
//! CPU has: one token (decode) at 8192 x 2048 and a 64-token prompt at 2048 x 2048 (GB/s of
//! weights times tokens), on `N` pool threads (`cargo run --release -p cpu-kernels --example
//! throughput -- N [TYPES]`, default 1 thread; TYPES a comma-separated list of labels such as
//! `nf4,int8,f32`, default all). Synthetic weights (pseudo-random codes, normal scales): speed
//! does not depend on the values, except that subnormal f16 scales are slow in the row kernels.
//! The criterion bench (`benches/kernels.rs`) covers one tier at a time with statistics.

use cpu_kernels::cpu::Isa;
use cpu_kernels::matmul::matmul_many_isa;
use cpu_kernels::{Matrix, WeightType};
use std::time::Instant;

fn matrix(ty: WeightType, rows: usize, cols: usize) -> Matrix {
    let rb = ty.row_bytes(cols).unwrap();
    // Pseudo-random codes; every f16 scale field a normal f16 (0.01): a subnormal scale costs a
    // microcode assist per block in the row kernels and is not what files hold.
    let mut data: Vec<u8> = (0..rows * rb).map(|i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8).collect();
    let h = half::f16::from_f32(0.01).to_le_bytes();
    let fields: &[usize] = match ty {
        WeightType::Q4_1 | WeightType::Q5_1 | WeightType::Q4K | WeightType::Q5K => &[0, 2],
        WeightType::Q2K => &[80, 82],
        WeightType::Q3K => &[108],
        WeightType::Q6K => &[208],
        WeightType::BF16 | WeightType::F32 | WeightType::Int8 | WeightType::Nf4 => &[],
        _ => &[0],
    };
    if ty == WeightType::BF16 {
        data.chunks_exact_mut(2).enumerate().for_each(|(i, c)| c.copy_from_slice(&half::bf16::from_f32(((i % 13) as f32 - 6.0) * 0.01).to_le_bytes()));
    }
    // f32 scales: int8's one per row, NF4's absmax per 64-value block; f32 weights small values.
    let f32_fields: Option<(usize, f32)> = match ty {
        WeightType::Int8 => Some((rb, 0.01)),
        WeightType::Nf4 => Some((ty.block_bytes(), 0.05)),
        _ => None,
    };
    if let Some((step, v)) = f32_fields {
        data.chunks_exact_mut(step).for_each(|c| c[..4].copy_from_slice(&v.to_le_bytes()));
    }
    if ty == WeightType::F32 {
        data.chunks_exact_mut(4).enumerate().for_each(|(i, c)| c.copy_from_slice(&(((i % 13) as f32 - 6.0) * 0.01).to_le_bytes()));
    }
    for b in data.chunks_exact_mut(ty.block_bytes()) {
        for &f in fields {
            b[f..f + 2].copy_from_slice(&h);
        }
    }
    Matrix::new(ty, rows, cols, data).unwrap()
}

fn time(mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let (t0, mut n) = (Instant::now(), 0);
        while t0.elapsed().as_secs_f64() < 0.1 {
            f();
            n += 1;
        }
        best = best.min(t0.elapsed().as_secs_f64() / n as f64);
    }
    best
}

fn main() {
    let threads: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    cpu_kernels::pool::set_threads(threads);
    let types = [
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
        WeightType::BF16,
    ];
    println!("threads {threads}; best tier {:?}", Isa::detect());
    println!("{:8} {:>8} | {:>26} | {:>26}", "type", "layout", "decode 8192x2048 GB/s s/a2/vnni", "prefill 2048x2048x64 GB/s·tok");
    let only: Option<Vec<String>> = std::env::args().nth(2).map(|s| s.split(',').map(str::to_owned).collect());
    for ty in types.into_iter().filter(|t| only.as_ref().is_none_or(|o| o.iter().any(|l| l == t.label()))) {
        let (w, w2) = (matrix(ty, 8192, 2048), matrix(ty, 2048, 2048));
        let x = vec![0.5f32; 2048];
        let xp: Vec<f32> = (0..64 * 2048).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
        let mut y = vec![0.0f32; 8192];
        let mut yp = vec![0.0f32; 64 * 2048];
        let mut dec = Vec::new();
        let mut pre = Vec::new();
        for isa in Isa::available() {
            let s = time(|| matmul_many_isa(isa, &[&w], &x, 1, &mut y).unwrap());
            dec.push(format!("{:6.1}", w.bytes() as f64 / s / 1e9));
            let s = time(|| matmul_many_isa(isa, &[&w2], &xp, 64, &mut yp).unwrap());
            pre.push(format!("{:6.1}", 64.0 * w2.bytes() as f64 / s / 1e9));
        }
        println!("{:8} {:>8} | {:>26} | {:>26}", ty.label(), format!("{:?}", w.layout()), dec.join(" "), pre.join(" "));
    }
}
