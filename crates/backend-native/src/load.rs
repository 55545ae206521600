//! Building a [`NativeModel`] from GGUF, safetensors or synthetic weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::kv_cache::KvCache;

use bench_core::backend::{DType as BDType, Kernels, LoadSpec, ModelInfo, Quantize, WeightSource};
use bench_core::config::ModelConfig;
use bench_core::files::WeightFormat;
use bench_core::gguf::{GgmlType, GgufFile};
use bench_core::{quant, synthetic, Error, Result};

use crate::model::{Embedding, Layer, Llama, Weight};
use crate::{candle_err, Engine, NativeModel};

fn to_candle_dtype(d: BDType) -> DType {
    match d {
        BDType::F32 => DType::F32,
        BDType::F16 => DType::F16,
        BDType::BF16 => DType::BF16,
    }
}

fn device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        other => Err(Error::InvalidInput(format!(
            "device '{other}': this native build runs on the CPU only (build with candle's cuda feature for GPUs); use --device cpu"
        ))),
    }
}

/// A layer matrix (not the embedding or the output head): what --quantize int8|nf4 applies to.
fn is_layer_matrix(name: &str) -> bool {
    (name.starts_with("blk.") || name.starts_with("model.layers.")) && !name.contains("norm")
}

/// Quantizes a float matrix with bench-core's int8 / NF4 formats when `--quantize` asks for it.
fn maybe_quantize(spec: &LoadSpec, name: &str, w: Tensor) -> Result<Weight> {
    let q = match spec.quantize {
        Some(q @ (Quantize::Int8 | Quantize::Nf4)) if is_layer_matrix(name) => q,
        _ => return Ok(Weight::Dense(w)),
    };
    let dev = w.device().clone();
    let (rows, cols) = w.dims2().map_err(candle_err)?;
    let values: Vec<f32> = w.to_dtype(DType::F32).and_then(|t| t.flatten_all()?.to_vec1()).map_err(candle_err)?;
    drop(w);
    match q {
        Quantize::Int8 => {
            let m = quant::quantize_int8(&values, rows, cols);
            let codes: Vec<u8> = m.q.iter().map(|&v| (v as i16 + 128) as u8).collect();
            Ok(Weight::Int8 {
                q: Tensor::from_vec(codes, (rows, cols), &dev).map_err(candle_err)?,
                scales: Tensor::from_vec(m.scales, (rows, 1), &dev).map_err(candle_err)?,
            })
        }
        _ => {
            let m = quant::quantize_nf4(&values, rows, cols, name)?;
            Ok(Weight::Nf4 {
                packed: Tensor::from_vec(m.packed, (rows, cols / 2), &dev).map_err(candle_err)?,
                absmax: Tensor::from_vec(m.absmax, (rows, cols / quant::NF4_BLOCK, 1), &dev).map_err(candle_err)?,
                codebook: Tensor::new(&quant::NF4_CODEBOOK, &dev).map_err(candle_err)?,
            })
        }
    }
}

pub fn load_model(spec: &LoadSpec) -> Result<NativeModel> {
    if let Some(n) = spec.threads {
        // candle sizes its thread pools from this variable (read when kernels run).
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        // The tuned kernels' pool is sized once, before its first use.
        cpu_kernels::pool::set_threads(n);
    }
    let dev = device(&spec.device)?;
    let dtype = spec.float_dtype()?;
    match &spec.source {
        WeightSource::Files(files) => match &files.weights {
            WeightFormat::Gguf(path) => load_gguf(path, spec, dtype, &dev),
            WeightFormat::Safetensors { shards, config } => load_safetensors(shards, config, spec, dtype, &dev),
        },
        WeightSource::Synthetic { arch, seed } => load_synthetic(arch, *seed, spec, dtype, &dev),
    }
}

/// Collects tensors into a model and keeps the memory accounting in one place.
struct Builder {
    cfg: ModelConfig,
    dtype: DType,
    device: Device,
    bytes: u64,
    bytes_per_token: u64,
    kinds: BTreeMap<String, usize>,
    /// For weights converted at load: what they were in the file.
    source_desc: Option<String>,
}

fn tensor_bytes(t: &Tensor) -> u64 {
    (t.elem_count() * t.dtype().size_in_bytes()) as u64
}

fn weight_bytes(w: &Weight) -> u64 {
    match w {
        Weight::Quantized(QMatMul::QTensor(q)) => q.storage_size_in_bytes() as u64,
        Weight::Quantized(QMatMul::Tensor(t)) | Weight::Quantized(QMatMul::TensorF16(t)) | Weight::Dense(t) => tensor_bytes(t),
        Weight::Int8 { q, scales } => tensor_bytes(q) + tensor_bytes(scales),
        Weight::Nf4 { packed, absmax, .. } => tensor_bytes(packed) + tensor_bytes(absmax),
    }
}

fn weight_kind(w: &Weight, float: &str) -> String {
    match w {
        Weight::Int8 { .. } => "int8".into(),
        Weight::Nf4 { .. } => "nf4".into(),
        _ => float.into(),
    }
}

impl Builder {
    fn matrix(&mut self, w: Weight) -> Weight {
        let b = weight_bytes(&w);
        self.bytes += b;
        self.bytes_per_token += b;
        w
    }
    fn norm(&mut self, t: Tensor) -> Tensor {
        self.bytes += tensor_bytes(&t);
        self.bytes_per_token += tensor_bytes(&t);
        t
    }
    fn kind(&mut self, k: impl Into<String>) {
        *self.kinds.entry(k.into()).or_default() += 1;
    }

    fn finish(
        mut self,
        name: String,
        embedding: Embedding,
        layers: Vec<Layer>,
        norm: Tensor,
        output: Option<Weight>,
        spec: &LoadSpec,
        synthetic: bool,
    ) -> Result<NativeModel> {
        let emb_bytes = embedding.bytes();
        self.bytes += emb_bytes;
        // Decoding a token reads one embedding row.
        self.bytes_per_token += emb_bytes / self.cfg.arch.vocab_size as u64;
        let output = match output {
            Some(w) => self.matrix(w),
            None => {
                // Tied and dense: the head is the embedding tensor itself (shared storage).
                self.bytes_per_token += emb_bytes;
                let Embedding::Dense(table) = &embedding else {
                    return Err(Error::Backend("a tied head without its own tensor needs a dense embedding table".into()));
                };
                Weight::Dense(table.clone())
            }
        };
        let max_seq_len = spec.cache_len(&self.cfg);
        let kinds = self.kinds.iter().map(|(k, n)| format!("{n}x{k}")).collect::<Vec<_>>().join(", ");
        let dtype = format!("{:?}", self.dtype).to_lowercase();
        let quantized = self.kinds.keys().find(|k| *k == "int8" || *k == "nf4").cloned();
        let float = match (&self.source_desc, &quantized) {
            (Some(src), _) => format!("{dtype} (dequantized from {src})"),
            (None, Some(_)) if synthetic => format!("synthetic {dtype}"),
            (None, Some(_)) => dtype,
            (None, None) => kinds,
        };
        let weights = match quantized {
            Some(q) => format!("{q} layer matrices; embedding/head {float}"),
            None => float,
        };
        let info = ModelInfo {
            name,
            parameters: self.cfg.arch.parameters(),
            weight_bytes: self.bytes,
            weight_bytes_per_token: self.bytes_per_token,
            weights,
            compute_dtype: format!("{:?}", self.dtype).to_lowercase(),
            device: format!("{:?}", self.device).to_lowercase(),
            synthetic,
            max_seq_len,
            architecture: self.cfg.arch.clone(),
            kernels: format!("stock (candle {})", crate::CANDLE_VERSION),
        };
        let model = Llama::new(self.cfg, embedding, layers, norm, output, self.dtype, self.device, max_seq_len)
            .map_err(candle_err)?;
        tuned_or_stock(model, info, spec)
    }
}

/// Moves the model onto the tuned kernels when asked (and possible), with the memory figures
/// of what the tuned path holds and reads.
fn tuned_or_stock(model: Llama, mut info: ModelInfo, spec: &LoadSpec) -> Result<NativeModel> {
    if spec.kernels == Kernels::Stock || !model.device.is_cpu() {
        let model = model.with_dense_embedding().map_err(candle_err)?;
        return Ok(NativeModel { engine: Engine::Stock(model), info });
    }
    match crate::convert::to_tuned(model)? {
        Ok(tuned) => {
            let layer_bytes: u64 = tuned
                .layers
                .iter()
                .map(|l| {
                    let m = [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].iter().map(|m| m.bytes() as u64).sum::<u64>();
                    m + 4 * (l.attn_norm.len() + l.ffn_norm.len()) as u64
                })
                .sum();
            let head = tuned.output.bytes() as u64 + 4 * tuned.norm.len() as u64;
            let shared = std::sync::Arc::ptr_eq(&tuned.embedding, &tuned.output);
            let emb = if shared { 0 } else { tuned.embedding.bytes() as u64 };
            info.weight_bytes = layer_bytes + head + emb;
            info.weight_bytes_per_token = layer_bytes + head + tuned.embedding.bytes() as u64 / tuned.embedding.rows() as u64;
            info.compute_dtype = "f32".into();
            info.kernels = format!("tuned ({})", cpu_kernels::cpu::isa().label());
            Ok(NativeModel { engine: Engine::Tuned(tuned), info })
        }
        Err((model, why)) => {
            let model = model.with_dense_embedding().map_err(candle_err)?;
            info.kernels = format!("stock (candle {}; {})", crate::CANDLE_VERSION, why.0);
            Ok(NativeModel { engine: Engine::Stock(model), info })
        }
    }
}

fn new_layer(
    b: &mut Builder,
    mut get: impl FnMut(&mut Builder, &str) -> Result<Weight>,
    mut norm: impl FnMut(&mut Builder, &str) -> Result<Tensor>,
    names: [&str; 9],
    cache_len: usize,
) -> Result<Layer> {
    let attn_norm = norm(b, names[0])?;
    let wq = get(b, names[1])?;
    let wk = get(b, names[2])?;
    let wv = get(b, names[3])?;
    let wo = get(b, names[4])?;
    let ffn_norm = norm(b, names[5])?;
    let w_gate = get(b, names[6])?;
    let w_up = get(b, names[7])?;
    let w_down = get(b, names[8])?;
    Ok(Layer {
        attn_norm: b.norm(attn_norm),
        wq: b.matrix(wq),
        wk: b.matrix(wk),
        wv: b.matrix(wv),
        wo: b.matrix(wo),
        ffn_norm: b.norm(ffn_norm),
        w_gate: b.matrix(w_gate),
        w_up: b.matrix(w_up),
        w_down: b.matrix(w_down),
        cache: KvCache::new(2, cache_len),
    })
}

fn gguf_layer_names(i: usize) -> [String; 9] {
    ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
        .map(|n| format!("blk.{i}.{n}.weight"))
}

fn candle_ggml_dtype(t: GgmlType, name: &str) -> Result<GgmlDType> {
    Ok(match t {
        GgmlType::F32 => GgmlDType::F32,
        GgmlType::F16 => GgmlDType::F16,
        GgmlType::BF16 => GgmlDType::BF16,
        GgmlType::Q4_0 => GgmlDType::Q4_0,
        GgmlType::Q4_1 => GgmlDType::Q4_1,
        GgmlType::Q5_0 => GgmlDType::Q5_0,
        GgmlType::Q5_1 => GgmlDType::Q5_1,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q2_K => GgmlDType::Q2K,
        GgmlType::Q3_K => GgmlDType::Q3K,
        GgmlType::Q4_K => GgmlDType::Q4K,
        GgmlType::Q5_K => GgmlDType::Q5K,
        GgmlType::Q6_K => GgmlDType::Q6K,
        GgmlType::Q8_K => GgmlDType::Q8K,
        other => {
            return Err(Error::NotImplemented(format!(
                "tensor {name} has type {other}, which the native framework does not support \
                 (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q8_K)"
            )))
        }
    })
}

fn load_gguf(path: &Path, spec: &LoadSpec, dtype: Option<BDType>, dev: &Device) -> Result<NativeModel> {
    let gguf = GgufFile::open(path)?;
    gguf.require_llama("native")?;
    let cfg = ModelConfig::from_gguf(&gguf)?;
    let compute = dtype.map(to_candle_dtype).unwrap_or(DType::F32);
    let qtensor = |name: &str| -> Result<(QTensor, GgmlType)> {
        let info = gguf.tensor(name).ok_or_else(|| Error::gguf(path, format!("missing tensor {name}")))?;
        let gdt = candle_ggml_dtype(info.ggml_type, name)?;
        let q = qtensor_from_ggml(gdt, gguf.tensor_bytes(info)?, info.shape(), dev).map_err(candle_err)?;
        Ok((q, info.ggml_type))
    };
    let mut b = Builder { cfg: cfg.clone(), dtype: compute, device: dev.clone(), bytes: 0, bytes_per_token: 0, kinds: BTreeMap::new(), source_desc: None };
    let mut get = |b: &mut Builder, name: &str| -> Result<Weight> {
        let (q, ty) = qtensor(name)?;
        match dtype {
            None => {
                b.kind(ty.to_string().to_lowercase());
                Ok(Weight::Quantized(QMatMul::from_qtensor(q).map_err(candle_err)?))
            }
            Some(dt) => {
                let dense = q.dequantize(dev).and_then(|t| t.to_dtype(to_candle_dtype(dt))).map_err(candle_err)?;
                let w = maybe_quantize(spec, name, dense)?;
                b.kind(weight_kind(&w, dt.as_str()));
                Ok(w)
            }
        }
    };
    let norm = |_: &mut Builder, name: &str| -> Result<Tensor> { qtensor(name)?.0.dequantize(dev).map_err(candle_err) };
    if dtype.is_some() {
        b.source_desc = Some(format!("gguf {}", gguf.type_summary()));
    }
    let cache_len = spec.cache_len(&cfg);
    let mut layers = Vec::with_capacity(cfg.arch.layers);
    for i in 0..cfg.arch.layers {
        let names = gguf_layer_names(i);
        let names = names.each_ref().map(String::as_str);
        layers.push(new_layer(&mut b, &mut get, norm, names, cache_len)?);
    }
    let out_norm = norm(&mut b, "output_norm.weight")?;
    let out_norm = b.norm(out_norm);
    let embedding = match dtype {
        // Kept as stored (rows looked up in the blocks), like the layer matrices.
        None => Embedding::Blocks(std::sync::Arc::new(qtensor("token_embd.weight")?.0)),
        Some(_) => Embedding::Dense(qtensor("token_embd.weight")?.0.dequantize(dev).and_then(|t| t.to_dtype(compute)).map_err(candle_err)?),
    };
    let output = if gguf.tensor("output.weight").is_some() {
        Some(get(&mut b, "output.weight")?)
    } else if dtype.is_none() {
        // Tied head kept in its quantized form, as llama.cpp does.
        Some(get(&mut b, "token_embd.weight")?)
    } else {
        None
    };
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    b.finish(name, embedding, layers, out_norm, output, spec, false)
}

fn load_safetensors(shards: &[PathBuf], config: &Path, spec: &LoadSpec, dtype: Option<BDType>, dev: &Device) -> Result<NativeModel> {
    let cfg = ModelConfig::from_safetensors(config, shards)?;
    // SAFETY: memory-mapped read-only; the files must not be truncated while in use.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(shards) }.map_err(|e| {
        Error::ModelFiles(format!(
            "invalid safetensors file ({}): {e}. The file is corrupt or truncated; download it again",
            shards.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let load = |name: &str| -> Result<Tensor> {
        st.load(name, dev).map_err(|e| Error::ModelFiles(format!("safetensors: tensor {name}: {e}")))
    };
    let embedding = load("model.embed_tokens.weight")?;
    let compute = dtype.map(to_candle_dtype).unwrap_or(embedding.dtype());
    if !matches!(compute, DType::F32 | DType::F16 | DType::BF16) {
        return Err(Error::NotImplemented(format!("safetensors weights of dtype {:?}; use f32, f16 or bf16", compute)));
    }
    let mut b = Builder { cfg: cfg.clone(), dtype: compute, device: dev.clone(), bytes: 0, bytes_per_token: 0, kinds: BTreeMap::new(), source_desc: None };
    let get = |b: &mut Builder, name: &str| -> Result<Weight> {
        let w = maybe_quantize(spec, name, load(name)?.to_dtype(compute).map_err(candle_err)?)?;
        b.kind(weight_kind(&w, &format!("{compute:?}").to_lowercase()));
        Ok(w)
    };
    let norm = |_: &mut Builder, name: &str| -> Result<Tensor> { load(name)?.to_dtype(DType::F32).map_err(candle_err) };
    let cache_len = spec.cache_len(&cfg);
    let mut layers = Vec::with_capacity(cfg.arch.layers);
    for i in 0..cfg.arch.layers {
        let p = format!("model.layers.{i}");
        let names = [
            format!("{p}.input_layernorm.weight"),
            format!("{p}.self_attn.q_proj.weight"),
            format!("{p}.self_attn.k_proj.weight"),
            format!("{p}.self_attn.v_proj.weight"),
            format!("{p}.self_attn.o_proj.weight"),
            format!("{p}.post_attention_layernorm.weight"),
            format!("{p}.mlp.gate_proj.weight"),
            format!("{p}.mlp.up_proj.weight"),
            format!("{p}.mlp.down_proj.weight"),
        ];
        let names = names.each_ref().map(String::as_str);
        layers.push(new_layer(&mut b, get, norm, names, cache_len)?);
    }
    let out_norm = norm(&mut b, "model.norm.weight")?;
    let out_norm = b.norm(out_norm);
    let embedding = embedding.to_dtype(compute).map_err(candle_err)?;
    let output = if cfg.arch.tied_embeddings { None } else { Some(get(&mut b, "lm_head.weight")?) };
    let name = config.parent().and_then(|p| p.file_name()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    b.finish(name, Embedding::Dense(embedding), layers, out_norm, output, spec, false)
}

fn load_synthetic(arch: &bench_core::registry::Architecture, seed: u64, spec: &LoadSpec, dtype: Option<BDType>, dev: &Device) -> Result<NativeModel> {
    let cfg = ModelConfig::synthetic(arch.clone())?;
    let compute = to_candle_dtype(dtype.unwrap_or(BDType::F32));
    let shapes: BTreeMap<String, Vec<usize>> = synthetic::tensor_shapes(arch).into_iter().collect();
    let make = |name: &str, dt: DType| -> Result<Tensor> {
        let shape = &shapes[name];
        Tensor::from_vec(synthetic::tensor_values(seed, name, shape), shape.as_slice(), dev)
            .and_then(|t| t.to_dtype(dt))
            .map_err(candle_err)
    };
    let mut b = Builder { cfg: cfg.clone(), dtype: compute, device: dev.clone(), bytes: 0, bytes_per_token: 0, kinds: BTreeMap::new(), source_desc: None };
    let get = |b: &mut Builder, name: &str| -> Result<Weight> {
        let w = maybe_quantize(spec, name, make(name, compute)?)?;
        b.kind(weight_kind(&w, &format!("synthetic {compute:?}").to_lowercase()));
        Ok(w)
    };
    let norm = |_: &mut Builder, name: &str| make(name, DType::F32);
    let cache_len = spec.cache_len(&cfg);
    let mut layers = Vec::with_capacity(arch.layers);
    for i in 0..arch.layers {
        let names = gguf_layer_names(i);
        let names = names.each_ref().map(String::as_str);
        layers.push(new_layer(&mut b, get, norm, names, cache_len)?);
    }
    let out_norm = norm(&mut b, "output_norm.weight")?;
    let out_norm = b.norm(out_norm);
    let embedding = make("token_embd.weight", compute)?;
    let output = if arch.tied_embeddings { None } else { Some(get(&mut b, "output.weight")?) };
    b.finish(format!("synthetic (seed {seed})"), Embedding::Dense(embedding), layers, out_norm, output, spec, true)
}
