//! Hands a loaded candle model's weights to the tuned path: each matrix becomes a
//! `cpu_kernels::Matrix` in the kernels' layouts (ggml blocks copied as they are; int8 rows
//! prefixed with their scale; NF4 repacked into 32-value blocks in Q4_0's nibble order), one
//! tensor at a time so peak memory stays near one copy of the weights.
//!
//! The choice is per tensor: a tensor whose block type has no tuned kernel (see [`tuned_type`] and
//! [`tuned_ggml_type`]) is dequantized once to f16 and multiplied by the dense f16 kernel, while every other
//! tensor stays on its blocks (IQ4_NL and IQ4_XS, which candle cannot hold, as the file's bytes);
//! [`Expansions`] says which tensors took which path.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Tensor};
use cpu_kernels::ops::{KvCache, RopePairs};
use cpu_kernels::{Matrix, WeightType};

use bench_backend::config::RopeLayout;
use bench_backend::gguf::GgmlType;
use bench_backend::{ggml_blocks, quant, Error, Result};

use crate::candle_err;
use crate::model::{Embedding, Llama, RawBlocks, Weight};
use crate::tuned::{Dims, TunedLayer, TunedLlama};

/// Why a model stays on the stock path (a whole-model reason: odd dimensions, int8/NF4 rows that
/// are not whole blocks; a tensor's block type alone never is one).
pub struct NoTunedKernel(pub String);

/// The dense type a weight without a tuned kernel (and not exactly Q8_0) is expanded to, once at
/// load. f16 rather than f32: half the bytes read per token (measured against f32 and candle's own
/// product on the blocks on SmolLM2 Q5_0, see `examples/expand_choice.rs`).
pub const EXPANDED: WeightType = WeightType::F16;

/// The tuned kernels' type for a ggml block type, `None` where cpu-kernels has no kernel for it
/// (such a tensor is expanded to [`EXPANDED`] at load; every other tensor stays on its blocks).
/// A new kernel in cpu-kernels is one line here.
pub fn tuned_type(t: GgmlDType) -> Option<WeightType> {
    Some(match t {
        GgmlDType::Q4_0 => WeightType::Q4_0,
        GgmlDType::Q4_1 => WeightType::Q4_1,
        GgmlDType::Q5_0 => WeightType::Q5_0,
        GgmlDType::Q5_1 => WeightType::Q5_1,
        GgmlDType::Q8_0 => WeightType::Q8_0,
        GgmlDType::Q2K => WeightType::Q2K,
        GgmlDType::Q3K => WeightType::Q3K,
        GgmlDType::Q4K => WeightType::Q4K,
        GgmlDType::Q5K => WeightType::Q5K,
        GgmlDType::Q6K => WeightType::Q6K,
        GgmlDType::F32 => WeightType::F32,
        GgmlDType::F16 => WeightType::F16,
        GgmlDType::BF16 => WeightType::BF16,
        _ => return None,
    })
}

/// Which path each weight matrix took on the tuned kernels, for the model info's kernels line:
/// matrices multiplied on their own storage, counted by type, and the others counted by (file
/// type, what was done and why).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expansions {
    /// Matrices on their own blocks (or dense rows), by type label ("q5_0", "f32").
    pub own: BTreeMap<String, usize>,
    /// Matrices converted at load, by (file type, path).
    pub converted: BTreeMap<(String, String), usize>,
}

impl Expansions {
    /// Counts one tensor of type `ty` (e.g. "q5_0") that took path `how` (e.g. "dequantized to f16
    /// at load (no tuned kernel)").
    pub fn add(&mut self, ty: impl Into<String>, how: impl Into<String>) {
        *self.converted.entry((ty.into(), how.into())).or_default() += 1;
    }

    /// Counts one matrix multiplied on its own storage of type `ty`.
    pub fn own(&mut self, ty: impl Into<String>) {
        *self.own.entry(ty.into()).or_default() += 1;
    }

    /// "own storage: 196 q5_0, 15 q8_0" then "166 q5_0 tensors dequantized to f16 at load (...)",
    /// one clause per (type, path), joined by "; ".
    pub fn describe(&self) -> String {
        let own = self.own.iter().map(|(ty, n)| format!("{n} {ty}")).collect::<Vec<_>>().join(", ");
        let own = (!own.is_empty()).then(|| format!("matrices on their own storage: {own}"));
        let converted = self.converted.iter().map(|((ty, how), n)| format!("{n} {ty} matri{} {how}", if *n == 1 { "x" } else { "ces" }));
        own.into_iter().chain(converted).collect::<Vec<_>>().join("; ")
    }
}

/// The tuned kernels' type for a GGUF tensor type, `None` where cpu-kernels has no kernel for it
/// (the file's own spelling of [`tuned_type`], which also covers IQ4_NL and IQ4_XS).
pub fn tuned_ggml_type(t: GgmlType) -> Option<WeightType> {
    Some(match t {
        GgmlType::IQ4_NL => WeightType::IQ4NL,
        GgmlType::IQ4_XS => WeightType::IQ4XS,
        GgmlType::Q8_1 | GgmlType::Q8_K | GgmlType::Other(_) => return None,
        other => tuned_type(crate::load::candle_ggml_dtype(other)?)?,
    })
}

/// Why a model of this shape cannot run on the tuned kernels at all, `None` when it can.
pub fn shape_problem(a: &bench_backend::arch::Architecture) -> Option<NoTunedKernel> {
    (!a.dim.is_multiple_of(32) || !a.ffn_dim.is_multiple_of(32)).then(|| NoTunedKernel(format!("dimensions {} / {} are not multiples of 32", a.dim, a.ffn_dim)))
}

/// What the tuned path does with a tensor of a type without a tuned kernel.
pub const EXPANDED_F16: &str = "dequantized to f16 at load (no tuned kernel)";

fn dense(t: &Tensor) -> Result<Matrix> {
    let (rows, cols) = t.dims2().map_err(candle_err)?;
    let flat = t.flatten_all().map_err(candle_err)?;
    let (ty, bytes) = match t.dtype() {
        DType::F32 => (WeightType::F32, flat.to_vec1::<f32>().map_err(candle_err)?.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()),
        DType::F16 => (WeightType::F16, flat.to_vec1::<half::f16>().map_err(candle_err)?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        DType::BF16 => (WeightType::BF16, flat.to_vec1::<half::bf16>().map_err(candle_err)?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        other => return Err(Error::NotImplemented(format!("weights of dtype {other:?}"))),
    };
    Matrix::new(ty, rows, cols, bytes).map_err(|e| Error::Backend(e.to_string()))
}

/// The kernels' form of a weight, or why the model has none. Blocks without a tuned kernel are
/// expanded to [`EXPANDED`] and counted in `expansions`.
fn matrix(expansions: &mut Expansions, w: Weight) -> Result<std::result::Result<Matrix, NoTunedKernel>> {
    let kernel_err = |e: cpu_kernels::KernelError| Error::Backend(e.to_string());
    Ok(Ok(match w {
        Weight::Tuned(m) => {
            expansions.own(m.ty().label());
            // The only owner unless the head is tied (then `to_tuned` takes the `Arc` itself).
            Arc::try_unwrap(m).unwrap_or_else(|m| (*m).clone())
        }
        Weight::Quantized(QMatMul::QTensor(q)) => {
            let (rows, cols) = q.shape().dims2().map_err(candle_err)?;
            let label = format!("{:?}", q.dtype()).to_lowercase().replace('k', "_k");
            let ty = match tuned_type(q.dtype()) {
                Some(ty) if ty.row_bytes(cols).is_some() => ty,
                Some(ty) => {
                    expansions.add(label, format!("dequantized to f16 at load (rows of {cols} values are not whole {} blocks)", ty.label()));
                    return Ok(Ok(expand(&q)?));
                }
                None => {
                    expansions.add(label, EXPANDED_F16);
                    return Ok(Ok(expand(&q)?));
                }
            };
            let bytes = q.data().map_err(candle_err)?;
            expansions.own(label);
            Matrix::new(ty, rows, cols, bytes).map_err(kernel_err)?
        }
        Weight::Raw(r) => {
            let label = r.ggml_type.to_string().to_lowercase();
            match tuned_ggml_type(r.ggml_type) {
                Some(ty) if ty.row_bytes(r.cols).is_some() => {
                    expansions.own(label);
                    Matrix::new(ty, r.rows, r.cols, r.bytes).map_err(kernel_err)?
                }
                _ => {
                    let values = ggml_blocks::dequantize(r.ggml_type, &r.bytes, r.rows * r.cols, &r.name)?;
                    expansions.add(label, EXPANDED_F16);
                    let bytes: Vec<u8> = values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
                    Matrix::new(WeightType::F16, r.rows, r.cols, bytes).map_err(kernel_err)?
                }
            }
        }
        Weight::Quantized(QMatMul::Tensor(t)) | Weight::Quantized(QMatMul::TensorF16(t)) | Weight::Dense(t) => {
            let m = dense(&t)?;
            expansions.own(m.ty().label());
            m
        }
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

/// A block tensor without a tuned kernel, dequantized by candle to [`EXPANDED`].
fn expand(q: &QTensor) -> Result<Matrix> {
    let dev = candle_core::Device::Cpu;
    let t = match EXPANDED {
        WeightType::F16 => q.dequantize_f16(&dev),
        _ => q.dequantize(&dev),
    };
    dense(&t.map_err(candle_err)?)
}

fn norm(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32).and_then(|t| t.flatten_all()?.to_vec1::<f32>()).map_err(candle_err)
}

/// Moves `llama`'s weights into a [`TunedLlama`] (with the tensors expanded on the way), or gives
/// `llama` back with the reason when the model's shape has no tuned path.
pub fn to_tuned(llama: Llama) -> Result<std::result::Result<(TunedLlama, Expansions), (Llama, NoTunedKernel)>> {
    // Check the whole-model conditions first, so that giving the model back needs no undoing.
    if let Some(why) = shape_problem(&llama.cfg.arch) {
        return Ok(Err((llama, why)));
    }
    let Llama { cfg, embedding, layers, norm: out_norm, output, max_seq_len, .. } = llama;
    let mut expansions = Expansions::default();
    let ex = &mut expansions;
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
    let slots = layers.first().map_or(1, |l| l.caches.len());
    let mut tuned_layers = Vec::with_capacity(layers.len());
    for l in layers {
        tuned_layers.push(TunedLayer {
            attn_norm: norm(&l.attn_norm)?,
            wq: unwrap(matrix(ex, l.wq)?)?,
            wk: unwrap(matrix(ex, l.wk)?)?,
            wv: unwrap(matrix(ex, l.wv)?)?,
            wo: unwrap(matrix(ex, l.wo)?)?,
            ffn_norm: norm(&l.ffn_norm)?,
            w_gate: unwrap(matrix(ex, l.w_gate)?)?,
            w_up: unwrap(matrix(ex, l.w_up)?)?,
            w_down: unwrap(matrix(ex, l.w_down)?)?,
            caches: Mutex::new((0..slots).map(|_| KvCache::new(a.kv_heads, a.head_dim(), max_seq_len)).collect()),
        });
    }
    // A tied head that is the embedding tensor itself, or a GGUF tied head kept quantized:
    // one matrix serves both (rows are dequantized per token for the lookup).
    let tied_dense = matches!((&output, &embedding), (Weight::Dense(t), Embedding::Dense(e)) if t.id() == e.id());
    let tied = tied_dense || (a.tied_embeddings && matches!(&output, Weight::Quantized(_) | Weight::Raw(_) | Weight::Tuned(_)));
    let output = match output {
        Weight::Tuned(m) => {
            ex.own(m.ty().label());
            m
        }
        w => Arc::new(unwrap(matrix(ex, w)?)?),
    };
    let embedding = if tied {
        output.clone()
    } else if let Embedding::Tuned(m) = embedding {
        m
    } else {
        Arc::new(match embedding {
            Embedding::Tuned(_) => unreachable!("taken by the branch above"),
            Embedding::Dense(t) => dense(&t)?,
            // Rows are dequantized per token from the blocks (a block type without a tuned
            // kernel is expanded once, like a layer matrix).
            Embedding::Blocks(q) => unwrap(matrix(ex, Weight::Quantized(QMatMul::QTensor(q.clone())))?)?,
            Embedding::Raw(r) => {
                let r = std::sync::Arc::try_unwrap(r).unwrap_or_else(|r| RawBlocks { bytes: r.bytes.clone(), name: r.name.clone(), ..*r });
                unwrap(matrix(ex, Weight::Raw(r))?)?
            }
        })
    };
    let rope_tables = cfg.rope_tables(max_seq_len);
    let out_norm = norm(&out_norm)?;
    Ok(Ok((TunedLlama::new(dims, tuned_layers, embedding, out_norm, output, rope_tables, max_seq_len), expansions)))
}
