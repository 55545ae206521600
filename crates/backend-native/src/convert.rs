//! Hands a loaded candle model's weights to the tuned path: each matrix becomes a
//! `cpu_kernels::Matrix` in the kernels' layouts (ggml blocks copied as they are; int8 rows
//! prefixed with their scale; NF4 repacked into 32-value blocks in Q4_0's nibble order), one
//! tensor at a time so peak memory stays near one copy of the weights.

use std::sync::{Arc, Mutex};

use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{DType, Tensor};
use cpu_kernels::ops::{KvCache, RopePairs};
use cpu_kernels::{Matrix, WeightType};

use bench_backend::config::RopeLayout;
use bench_backend::{quant, Error, Result};

use crate::candle_err;
use crate::model::{Embedding, Llama, Weight};
use crate::tuned::{Dims, TunedLayer, TunedLlama};

/// Why a model stays on the stock path.
pub struct NoTunedKernel(pub String);

fn dense(t: &Tensor) -> Result<Matrix> {
    let (rows, cols) = t.dims2().map_err(candle_err)?;
    let flat = t.flatten_all().map_err(candle_err)?;
    let (ty, bytes) = match t.dtype() {
        DType::F32 => (WeightType::F32, flat.to_vec1::<f32>().map_err(candle_err)?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        DType::F16 => (WeightType::F16, flat.to_vec1::<half::f16>().map_err(candle_err)?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        DType::BF16 => (WeightType::BF16, flat.to_vec1::<half::bf16>().map_err(candle_err)?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        other => return Err(Error::NotImplemented(format!("weights of dtype {other:?}"))),
    };
    Matrix::new(ty, rows, cols, bytes).map_err(|e| Error::Backend(e.to_string()))
}

/// The kernels' form of a weight, or why there is none.
fn matrix(w: Weight) -> Result<std::result::Result<Matrix, NoTunedKernel>> {
    let kernel_err = |e: cpu_kernels::KernelError| Error::Backend(e.to_string());
    Ok(Ok(match w {
        Weight::Quantized(QMatMul::QTensor(q)) => {
            let ty = match q.dtype() {
                GgmlDType::Q4_0 => WeightType::Q4_0,
                GgmlDType::Q4_1 => WeightType::Q4_1,
                GgmlDType::Q8_0 => WeightType::Q8_0,
                GgmlDType::Q4K => WeightType::Q4K,
                GgmlDType::Q5K => WeightType::Q5K,
                GgmlDType::Q6K => WeightType::Q6K,
                GgmlDType::F32 => WeightType::F32,
                GgmlDType::F16 => WeightType::F16,
                GgmlDType::BF16 => WeightType::BF16,
                other => return Ok(Err(NoTunedKernel(format!("no tuned kernel for {other:?} blocks")))),
            };
            let (rows, cols) = q.shape().dims2().map_err(candle_err)?;
            if ty.row_bytes(cols).is_none() {
                return Ok(Err(NoTunedKernel(format!("rows of {cols} values are not whole {} blocks", ty.label()))));
            }
            let bytes = q.data().map_err(candle_err)?.into_owned();
            Matrix::new(ty, rows, cols, bytes).map_err(kernel_err)?
        }
        Weight::Quantized(QMatMul::Tensor(t)) | Weight::Quantized(QMatMul::TensorF16(t)) | Weight::Dense(t) => dense(&t)?,
        Weight::Int8 { q, scales } => {
            let (rows, cols) = q.dims2().map_err(candle_err)?;
            if cols % 32 != 0 {
                return Ok(Err(NoTunedKernel(format!("int8 rows of {cols} values are not whole 32-value blocks"))));
            }
            let codes = q.to_vec2::<u8>().map_err(candle_err)?;
            let scales = scales.flatten_all().and_then(|s| s.to_vec1::<f32>()).map_err(candle_err)?;
            let mut bytes = Vec::with_capacity(rows * (cols + 4));
            for (row, s) in codes.iter().zip(&scales) {
                bytes.extend_from_slice(&s.to_le_bytes());
                // Stored as q + 128 (candle has no i8); the kernels take two's-complement i8.
                bytes.extend(row.iter().map(|&c| (c as i16 - 128) as i8 as u8));
            }
            Matrix::new(WeightType::Int8, rows, cols, bytes).map_err(kernel_err)?
        }
        Weight::Nf4 { packed, absmax, .. } => {
            let (rows, half_cols) = packed.dims2().map_err(candle_err)?;
            let cols = half_cols * 2;
            let packed = packed.to_vec2::<u8>().map_err(candle_err)?;
            let absmax = absmax.flatten_all().and_then(|s| s.to_vec1::<f32>()).map_err(candle_err)?;
            let per_row = cols / quant::NF4_BLOCK;
            let mut bytes = Vec::with_capacity(rows * per_row * 36);
            for (r, row) in packed.iter().enumerate() {
                // bench-core's order: value 2j in byte j's high nibble, 2j+1 in its low nibble.
                let code = |i: usize| if i.is_multiple_of(2) { row[i / 2] >> 4 } else { row[i / 2] & 0xF };
                for b in 0..per_row {
                    bytes.extend_from_slice(&absmax[r * per_row + b].to_le_bytes());
                    for half in 0..2 {
                        let base = 64 * b + 32 * half;
                        bytes.extend((0..16).map(|j| code(base + j) | (code(base + 16 + j) << 4)));
                    }
                }
            }
            Matrix::new(WeightType::Nf4, rows, cols, bytes).map_err(kernel_err)?
        }
    }))
}

fn norm(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32).and_then(|t| t.flatten_all()?.to_vec1::<f32>()).map_err(candle_err)
}

/// Moves `llama`'s weights into a [`TunedLlama`], or gives `llama` back with the reason when a
/// weight has no tuned kernel (Q5_0, Q2_K, ...: the stock path runs those).
pub fn to_tuned(llama: Llama) -> Result<std::result::Result<TunedLlama, (Llama, NoTunedKernel)>> {
    // Check every weight first, so that giving the model back needs no undoing.
    let check = |w: &Weight| -> Option<NoTunedKernel> {
        if let Weight::Quantized(QMatMul::QTensor(q)) = w {
            let supported = matches!(
                q.dtype(),
                GgmlDType::Q4_0
                    | GgmlDType::Q4_1
                    | GgmlDType::Q8_0
                    | GgmlDType::Q4K
                    | GgmlDType::Q5K
                    | GgmlDType::Q6K
                    | GgmlDType::F32
                    | GgmlDType::F16
                    | GgmlDType::BF16
            );
            if !supported {
                return Some(NoTunedKernel(format!("no tuned kernel for {:?} blocks", q.dtype())));
            }
        }
        None
    };
    let problem =
        llama.layers.iter().flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]).chain(std::iter::once(&llama.output)).find_map(check);
    if let Some(p) = problem {
        return Ok(Err((llama, p)));
    }
    if !llama.cfg.arch.dim.is_multiple_of(32) || !llama.cfg.arch.ffn_dim.is_multiple_of(32) {
        let why = NoTunedKernel(format!("dimensions {} / {} are not multiples of 32", llama.cfg.arch.dim, llama.cfg.arch.ffn_dim));
        return Ok(Err((llama, why)));
    }
    let Llama { cfg, embedding, layers, norm: out_norm, output, max_seq_len, .. } = llama;
    let a = &cfg.arch;
    let dims = Dims {
        dim: a.dim,
        heads: a.heads,
        kv_heads: a.kv_heads,
        head_dim: a.head_dim(),
        ffn_dim: a.ffn_dim,
        eps: a.norm_eps as f32,
        pairs: match cfg.rope_layout {
            RopeLayout::Interleaved => RopePairs::Interleaved,
            RopeLayout::HalfSplit => RopePairs::HalfSplit,
        },
    };
    let unwrap = |m: std::result::Result<Matrix, NoTunedKernel>| m.map_err(|e| Error::Backend(e.0));
    let mut tuned_layers = Vec::with_capacity(layers.len());
    for l in layers {
        tuned_layers.push(TunedLayer {
            attn_norm: norm(&l.attn_norm)?,
            wq: unwrap(matrix(l.wq)?)?,
            wk: unwrap(matrix(l.wk)?)?,
            wv: unwrap(matrix(l.wv)?)?,
            wo: unwrap(matrix(l.wo)?)?,
            ffn_norm: norm(&l.ffn_norm)?,
            w_gate: unwrap(matrix(l.w_gate)?)?,
            w_up: unwrap(matrix(l.w_up)?)?,
            w_down: unwrap(matrix(l.w_down)?)?,
            cache: Mutex::new(KvCache::new(a.kv_heads, a.head_dim(), max_seq_len)),
        });
    }
    // A tied head that is the embedding tensor itself, or a GGUF tied head kept quantized:
    // one matrix serves both (rows are dequantized per token for the lookup).
    let tied_dense = matches!((&output, &embedding), (Weight::Dense(t), Embedding::Dense(e)) if t.id() == e.id());
    let tied = tied_dense || (a.tied_embeddings && matches!(&output, Weight::Quantized(_)));
    let output = Arc::new(unwrap(matrix(output)?)?);
    let embedding = if tied {
        output.clone()
    } else {
        Arc::new(match embedding {
            Embedding::Dense(t) => dense(&t)?,
            // Rows are dequantized per token from the blocks; a block type without a tuned
            // kernel is expanded to f32 once.
            Embedding::Blocks(q) => match matrix(Weight::Quantized(QMatMul::QTensor(q.clone())))? {
                Ok(m) => m,
                Err(_) => dense(&q.dequantize(&candle_core::Device::Cpu).map_err(candle_err)?)?,
            },
        })
    };
    let rope_tables = cfg.rope_tables(max_seq_len);
    let out_norm = norm(&out_norm)?;
    Ok(Ok(TunedLlama::new(dims, tuned_layers, embedding, out_norm, output, rope_tables, max_seq_len)))
}
