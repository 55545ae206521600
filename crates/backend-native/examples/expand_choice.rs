//! Which path a tensor without a tuned kernel should take on the tuned engine: candle's own
//! product on its blocks (`QMatMul`), the blocks dequantized once at load and multiplied by the
//! dense tuned kernel in f16 or f32, or (Q5_0) re-encoded as Q8_0 with the same values. Times one product with every tensor of the file's most common
//! block type without a tuned kernel (e.g. the 166 Q5_0 tensors of a Q5_0 or Q4_K_M SmolLM2), at
//! 1 token (decode) and 64 tokens (prefill), each path the same work.
//!
//! usage: cargo run --release -p backend-native --example expand_choice -- FILE.gguf [THREADS]

use std::time::Instant;

use bench_backend::gguf::{GgmlType, GgufFile};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul};
use candle_core::{Device, Module, Tensor};
use cpu_kernels::{matmul, Matrix, WeightType};

fn candle_type(t: GgmlType) -> Option<GgmlDType> {
    Some(match t {
        GgmlType::Q5_0 => GgmlDType::Q5_0,
        GgmlType::Q5_1 => GgmlDType::Q5_1,
        GgmlType::Q2_K => GgmlDType::Q2K,
        GgmlType::Q3_K => GgmlDType::Q3K,
        _ => return None,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: expand_choice FILE.gguf [THREADS]")?;
    let threads: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(2);
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    cpu_kernels::pool::set_threads(threads);
    let g = GgufFile::open(path)?;
    let mut counts = std::collections::BTreeMap::new();
    for t in &g.tensors {
        if candle_type(t.ggml_type).is_some() && t.dims.len() == 2 {
            *counts.entry(t.ggml_type.to_string()).or_insert(0usize) += 1;
        }
    }
    let (ty_name, _) = counts.iter().max_by_key(|(_, n)| **n).ok_or("no tensor of a type without a tuned kernel (Q5_0, Q5_1, Q2_K, Q3_K)")?;
    let dev = Device::Cpu;
    let (mut q, mut f16m, mut f32m, mut q8m) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in g.tensors.iter().filter(|t| &t.ggml_type.to_string() == ty_name && t.dims.len() == 2 && t.name != "token_embd.weight") {
        let shape = t.shape();
        let qt = qtensor_from_ggml(candle_type(t.ggml_type).unwrap(), g.tensor_bytes(t)?, shape.clone(), &dev)?;
        let (rows, cols) = (shape[0], shape[1]);
        let h: Vec<half::f16> = qt.dequantize_f16(&dev)?.flatten_all()?.to_vec1()?;
        f16m.push(Matrix::new(WeightType::F16, rows, cols, h.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?);
        let f: Vec<f32> = qt.dequantize(&dev)?.flatten_all()?.to_vec1()?;
        f32m.push(Matrix::new(WeightType::F32, rows, cols, f.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?);
        if let Some(q8) = bench_backend::ggml_blocks::to_q8_0_exact(t.ggml_type, g.tensor_bytes(t)?) {
            q8m.push(Matrix::new(WeightType::Q8_0, rows, cols, q8)?);
        }
        q.push((QMatMul::from_qtensor(qt)?, rows, cols));
    }
    println!("{path}: {} {ty_name} tensors, {threads} threads", q.len());
    for tokens in [1usize, 64] {
        let reps = if tokens == 1 { 20 } else { 3 };
        let time = |f: &mut dyn FnMut() -> Result<(), Box<dyn std::error::Error>>| -> Result<f64, Box<dyn std::error::Error>> {
            f()?; // warm-up
            let start = Instant::now();
            for _ in 0..reps {
                f()?;
            }
            Ok(start.elapsed().as_secs_f64() * 1e3 / reps as f64)
        };
        let stock = time(&mut || {
            for (m, _, cols) in &q {
                let x = Tensor::ones((1, tokens, *cols), candle_core::DType::F32, &dev)?;
                m.forward(&x)?;
            }
            Ok(())
        })?;
        let dense = |ms: &[Matrix]| {
            time(&mut || {
                for m in ms {
                    let x = vec![0.5f32; tokens * m.cols()];
                    let mut y = vec![0.0f32; tokens * m.rows()];
                    matmul(m, &x, tokens, &mut y)?;
                }
                Ok(())
            })
        };
        let (t16, t32) = (dense(&f16m)?, dense(&f32m)?);
        let t8 = if q8m.is_empty() { "n/a".to_string() } else { format!("{:8.2} ms", dense(&q8m)?) };
        println!(
            "{tokens:3} token(s): candle QMatMul on {ty_name} blocks {stock:8.2} ms | tuned f16 {t16:8.2} ms | tuned f32 {t32:8.2} ms | tuned q8_0 (exact re-encoding) {t8}  (per pass over the {} tensors)",
            q.len()
        );
    }
    Ok(())
}
