//! Building a [`NativeModel`] from GGUF, safetensors or synthetic weights, all read through
//! bench-backend's [`TensorSource`] (which has checked every tensor's shape): GGUF blocks are
//! kept as candle `QMatMul`s when no dtype is asked for, everything else becomes dense tensors
//! in the compute dtype, optionally quantized with bench-backend's int8 / NF4 formats.

use std::collections::BTreeMap;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::kv_cache::KvCache;

use bench_backend::backend::{shard_ranges, DType as BDType, Kernels, LoadSpec, ModelInfo, Quantize, ShardInfo};
use bench_backend::config::ModelConfig;
use bench_backend::gguf::GgmlType;
use bench_backend::memory::WeightBytes;
use bench_backend::schema::{TensorId, TensorRole};
use bench_backend::source::{self, TensorData, TensorSource};
use bench_backend::{ggml_blocks, quant, Error, Result};

use crate::model::{Embedding, Layer, Llama, RawBlocks, Weight};
use crate::{candle_err, Engine, NativeModel};

fn to_candle_dtype(d: BDType) -> DType {
    match d {
        BDType::F32 => DType::F32,
        BDType::F16 => DType::F16,
        BDType::BF16 => DType::BF16,
    }
}

fn device(spec: bench_backend::Device) -> Result<Device> {
    match spec {
        bench_backend::Device::Cpu => Ok(Device::Cpu),
        bench_backend::Device::Cuda(i) => cuda_device(i),
    }
}

/// Without the `cuda` feature candle has no CUDA backend at all: say how to get one.
#[cfg(not(feature = "cuda"))]
fn cuda_device(i: usize) -> Result<Device> {
    Err(Error::InvalidInput(format!(
        "device 'cuda:{i}': this native-only was built without CUDA; build it with `cargo xtask gpu-bundle` \
         (or `cargo build -p native-only --features cuda`, which needs nvcc), or use --device cpu"
    )))
}

/// candle's CUDA device `i`. cudarc loads the driver and CUDA libraries when first used and panics
/// when one is missing (e.g. a CUDA build run on a machine without an NVIDIA driver, or without
/// the bundle's LD_LIBRARY_PATH): that panic is caught, silenced and turned into an error here.
#[cfg(feature = "cuda")]
fn cuda_device(i: usize) -> Result<Device> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(i));
    std::panic::set_hook(hook);
    match opened {
        Ok(Ok(dev)) => Ok(dev),
        Ok(Err(e)) => {
            Err(Error::InvalidInput(format!("device 'cuda:{i}': candle could not open it ({e}); check that `nvidia-smi` lists it, or use --device cpu")))
        }
        Err(panic) => {
            let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            let first = msg.as_deref().and_then(|m| m.split(" - ").next()).unwrap_or("unknown error").to_string();
            Err(Error::InvalidInput(format!(
                "device 'cuda:{i}': the CUDA libraries could not be loaded ({first}); run on a machine with an NVIDIA \
                 driver, through the GPU bundle's run.sh (which sets LD_LIBRARY_PATH), or use --device cpu"
            )))
        }
    }
}

/// Quantizes a layer matrix with bench-backend's int8 / NF4 formats when `--quantize` asks for it.
fn maybe_quantize(spec: &LoadSpec, id: TensorId, name: &str, w: Tensor) -> Result<Weight> {
    let q = match spec.quantize {
        Some(q @ (Quantize::Int8 | Quantize::Nf4)) if id.role.is_layer_matrix() => q,
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
    let dtype = spec.float_dtype()?;
    let src = TensorSource::open(&spec.source, "native")?;
    let devices = spec.shard_devices(src.config().arch.layers)?;
    // GGUF blocks bound for the tuned kernels go straight from the file into the kernels' storage
    // (one copy, no candle tensor between): the same conditions as `tuned_or_stock`'s.
    let for_tuned = spec.kernels == Kernels::Tuned
        && matches!(devices.as_slice(), [bench_backend::Device::Cpu])
        && src.gguf_file().is_some()
        && dtype.is_none()
        && crate::convert::shape_problem(&src.config().arch).is_none();
    let candle_devices = devices.iter().map(|&d| device(d)).collect::<Result<Vec<_>>>()?;
    let shards = shard_ranges(src.config().arch.layers, devices.len()).into_iter().zip(candle_devices).collect();
    let (model, info) = load(&src, spec, dtype, shards, &devices, for_tuned)?;
    // Every tensor has been copied out of the file and its pages released as it went: unmap it.
    drop(src);
    let mut model = tuned_or_stock(model, info, spec)?;
    // Stock caches hold the compute dtype; the tuned path's are f32.
    let value_bytes = match &model.engine {
        Engine::Stock(m) => m.dtype.size_in_bytes(),
        Engine::Tuned(_) => 4,
    };
    model.info.kv_cache_bytes = bench_backend::memory::kv_cache_bytes(&model.info.architecture, model.info.max_seq_len, spec.slots, value_bytes);
    if spec.slots > 1 && matches!(model.engine, Engine::Stock(_)) {
        model.info.kernels.push_str(&format!("; {} KV-cache slots, a batch's sequences run one after the other", spec.slots));
    }
    Ok(model)
}

/// A tensor of the source as a dense candle tensor in its stored dtype (ggml blocks dequantized).
fn dense(t: &source::Tensor, dev: &Device) -> Result<Tensor> {
    match &t.data {
        TensorData::Ggml { ggml_type, .. } if candle_ggml_dtype(*ggml_type).is_none() => expand_f16(t, dev),
        TensorData::Ggml { .. } => qtensor(t, dev)?.dequantize(dev).map_err(candle_err),
        TensorData::Float { dtype, bytes } => Tensor::from_raw_buffer(bytes, to_candle_dtype(*dtype), &t.shape, dev).map_err(candle_err),
        TensorData::F32(values) => Tensor::from_slice(values, t.shape.as_slice(), dev).map_err(candle_err),
    }
}

/// A GGUF tensor as candle's `QTensor` (its blocks as they are in the file).
fn qtensor(t: &source::Tensor, dev: &Device) -> Result<QTensor> {
    let TensorData::Ggml { ggml_type, bytes } = &t.data else {
        return Err(Error::Backend(format!("tensor {} holds no ggml blocks", t.name)));
    };
    let dtype = candle_ggml_dtype(*ggml_type).ok_or_else(|| Error::Backend(format!("tensor {}: candle cannot read {ggml_type} blocks", t.name)))?;
    qtensor_from_ggml(dtype, bytes, t.shape.clone(), dev).map_err(candle_err)
}

/// How a GGUF tensor is held when its blocks are kept.
enum Held {
    /// As the tuned kernels' matrix (for the tuned path, a type they multiply): the file's bytes
    /// copied once into the kernels' storage.
    Tuned(cpu_kernels::Matrix),
    /// As candle's blocks, the file's.
    Blocks(QTensor),
    /// As the file's bytes: a block type candle cannot hold (IQ4_NL, IQ4_XS). The tuned kernels
    /// multiply them on their blocks; [`stock_ready`] converts them for the stock path.
    Raw(RawBlocks),
}

/// A GGUF tensor as the tuned kernels' matrix (`for_tuned`, a type they multiply), else as
/// candle's blocks where candle reads its type, else its bytes as they are.
fn held(t: &source::Tensor, dev: &Device, for_tuned: bool) -> Result<Held> {
    let TensorData::Ggml { ggml_type, bytes } = &t.data else {
        return Err(Error::Backend(format!("tensor {} holds no ggml blocks", t.name)));
    };
    let [cols, rows] = t.shape.iter().rev().copied().collect::<Vec<_>>()[..] else {
        return Err(Error::Backend(format!("tensor {}: {ggml_type} blocks in {} dimensions; a matrix was expected", t.name, t.shape.len())));
    };
    if for_tuned {
        if let Some(ty) = crate::convert::tuned_ggml_type(*ggml_type).filter(|ty| ty.row_bytes(cols).is_some()) {
            let m = cpu_kernels::Matrix::new(ty, rows, cols, bytes).map_err(|e| Error::Backend(format!("tensor {}: {e}", t.name)))?;
            return Ok(Held::Tuned(m));
        }
    }
    if candle_ggml_dtype(*ggml_type).is_some() {
        return Ok(Held::Blocks(qtensor(t, dev)?));
    }
    Ok(Held::Raw(RawBlocks { ggml_type: *ggml_type, rows, cols, bytes: bytes.to_vec(), name: t.name.clone() }))
}

/// Blocks candle cannot hold, made readable by candle for the stock path: re-encoded as Q8_0 where
/// that keeps every value (IQ4_NL), else dequantized to f16 (IQ4_XS); counted in `converted` by
/// what was done. Fails for a type no dequantizer here reads, naming it and the supported types.
fn raw_for_candle(r: &RawBlocks, dev: &Device, converted: &mut BTreeMap<String, usize>) -> Result<QMatMul> {
    let ty = r.ggml_type.to_string().to_lowercase();
    if let Some(q8) = ggml_blocks::to_q8_0_exact(r.ggml_type, &r.bytes) {
        *converted.entry(format!("{ty} tensors re-encoded as q8_0 at load (the same values; candle cannot read {ty})")).or_default() += 1;
        let q = qtensor_from_ggml(GgmlDType::Q8_0, &q8, vec![r.rows, r.cols], dev).map_err(candle_err)?;
        return QMatMul::from_qtensor(q).map_err(candle_err);
    }
    *converted.entry(format!("{ty} tensors dequantized to f16 at load (candle cannot read {ty})")).or_default() += 1;
    Ok(QMatMul::TensorF16(blocks_f16(r.ggml_type, &r.bytes, &[r.rows, r.cols], &r.name, dev)?))
}

/// What the stock path's conversions did: bytes added to the layer matrices and head (read every
/// token) and to the embedding table (held), and the tensors converted, counted by what was done.
#[derive(Default)]
struct Growth {
    matrices: u64,
    embedding: u64,
    converted: BTreeMap<String, usize>,
}

/// The model as the stock forward pass needs it: blocks candle cannot hold converted
/// ([`raw_for_candle`], counted in [`Growth::converted`]) and the embedding table dense.
fn stock_ready(mut model: Llama) -> Result<(Llama, Growth)> {
    let mut converted = BTreeMap::new();
    let mut growth = Growth::default();
    let mut convert = |w: &mut Weight, dev: &Device| -> Result<()> {
        if let Weight::Tuned(m) = w {
            // `load_model` loads a model for the tuned kernels only when `tuned_or_stock` takes it.
            return Err(Error::Backend(format!("a {} matrix loaded for the tuned kernels was given to the stock path", m.ty().label())));
        }
        if let Weight::Quantized(QMatMul::QTensor(q)) = w {
            if matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
                // candle's own form for float blocks (expanded to f32), as the stock path has it.
                let before = q.storage_size_in_bytes() as u64;
                *w = Weight::Quantized(QMatMul::from_arc(q.clone()).map_err(candle_err)?);
                growth.matrices += weight_bytes(w).saturating_sub(before);
            }
        }
        if let Weight::Raw(r) = w {
            let before = r.bytes.len() as u64;
            *w = Weight::Quantized(raw_for_candle(r, dev, &mut converted)?);
            growth.matrices += weight_bytes(w).saturating_sub(before);
        }
        Ok(())
    };
    for (l, dev) in model.layers.iter_mut().zip(&model.layer_devices) {
        for w in [&mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.w_gate, &mut l.w_up, &mut l.w_down] {
            convert(w, dev)?;
        }
    }
    let last = model.layer_devices.last().cloned().unwrap_or(Device::Cpu);
    convert(&mut model.output, &last)?;
    growth.converted = converted;
    if let Embedding::Tuned(_) = &model.embedding {
        return Err(Error::Backend("an embedding table loaded for the tuned kernels was given to the stock path".into()));
    }
    if let Embedding::Raw(r) = &model.embedding {
        let values = ggml_blocks::dequantize(r.ggml_type, &r.bytes, r.rows * r.cols, &r.name)?;
        let table = Tensor::from_vec(values, (r.rows, r.cols), &model.device).and_then(|t| t.to_dtype(model.dtype)).map_err(candle_err)?;
        growth.embedding = tensor_bytes(&table).saturating_sub(r.bytes.len() as u64);
        model.embedding = Embedding::Dense(table);
    }
    Ok((model.with_dense_embedding().map_err(candle_err)?, growth))
}

/// A GGUF tensor of a block type candle cannot read, dequantized by bench-backend's reference
/// dequantizer (ggml's formulas) and stored as f16 (every such type's values are a small integer
/// times an f16 scale, so f16 holds them to within one rounding). Fails for a type no dequantizer
/// here reads, naming it and the supported types.
fn expand_f16(t: &source::Tensor, dev: &Device) -> Result<Tensor> {
    let TensorData::Ggml { ggml_type, bytes } = &t.data else {
        return Err(Error::Backend(format!("tensor {} holds no ggml blocks", t.name)));
    };
    blocks_f16(*ggml_type, bytes, &t.shape, &t.name, dev)
}

/// `bytes` of ggml type `ty` (a tensor of `shape` named `name`), dequantized by bench-backend's
/// reference dequantizer and stored as f16.
fn blocks_f16(ty: GgmlType, bytes: &[u8], shape: &[usize], name: &str, dev: &Device) -> Result<Tensor> {
    let values = ggml_blocks::dequantize(ty, bytes, shape.iter().product(), name)?;
    let halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
    Tensor::from_vec(halves, shape, dev).map_err(candle_err)
}

/// `shards`: each shard's layers and device (one for an unsharded model); `names`: the devices
/// as the user spelled them, for reports; `for_tuned`: GGUF blocks go straight into the tuned
/// kernels' matrices ([`Held::Tuned`]). Each tensor's file pages are released once it is copied
/// ([`TensorSource::release`]), so the peak holds about one copy of the weights.
fn load(
    src: &TensorSource,
    spec: &LoadSpec,
    dtype: Option<BDType>,
    shards: Vec<(std::ops::Range<usize>, Device)>,
    names: &[bench_backend::Device],
    for_tuned: bool,
) -> Result<(Llama, ModelInfo)> {
    let (first, last) = (shards[0].1.clone(), shards[shards.len() - 1].1.clone());
    let cfg = src.config().clone();
    let gguf = src.gguf_file().is_some();
    // GGUF blocks stay quantized (candle's QMatMul) unless a dtype is asked for.
    let keep_blocks = gguf && dtype.is_none();
    let compute = match dtype {
        Some(d) => d,
        None if gguf => BDType::F32,
        None => src.float_dtype(TensorId::global(TensorRole::TokenEmbedding)).unwrap_or(BDType::F32),
    };
    let label = if src.is_synthetic() { format!("synthetic {}", compute.as_str()) } else { compute.as_str().to_string() };
    let compute_c = to_candle_dtype(compute);
    let mut b = Builder {
        cfg: cfg.clone(),
        compute,
        dtype: compute_c,
        shards: shards.clone(),
        shard_bytes: vec![0; shards.len()],
        names: names.to_vec(),
        bytes: WeightBytes::default(),
        kinds: BTreeMap::new(),
        source_desc: (gguf && dtype.is_some()).then(|| src.storage_summary()),
    };
    let get = |b: &mut Builder, id: TensorId, dev: &Device| -> Result<Weight> {
        let t = src.tensor(id)?;
        if keep_blocks {
            let TensorData::Ggml { ggml_type, .. } = &t.data else { unreachable!("a GGUF source holds ggml data") };
            b.kind(ggml_type.to_string().to_lowercase());
            let w = match held(&t, dev, for_tuned)? {
                Held::Tuned(m) => Weight::Tuned(std::sync::Arc::new(m)),
                // As stored, f16/bf16/f32 too (candle's `QMatMul::from_qtensor` would expand
                // those to f32; the tuned kernels read them as they are, and `stock_ready` gives
                // the stock path candle's own form).
                Held::Blocks(q) => Weight::Quantized(QMatMul::QTensor(std::sync::Arc::new(q))),
                Held::Raw(r) => Weight::Raw(r),
            };
            src.release(&t);
            return Ok(w);
        }
        let w = maybe_quantize(spec, id, &t.name, dense(&t, dev)?.to_dtype(compute_c).map_err(candle_err)?)?;
        src.release(&t);
        b.kind(weight_kind(&w, &label));
        Ok(w)
    };
    let norm = |_: &mut Builder, id: TensorId, dev: &Device| -> Result<Tensor> {
        let t = src.tensor(id)?;
        let n = dense(&t, dev)?.to_dtype(DType::F32).map_err(candle_err)?;
        src.release(&t);
        Ok(n)
    };
    let cache_len = spec.cache_len(cfg.arch.context_length);
    let mut layers = Vec::with_capacity(cfg.arch.layers);
    for (s, (range, dev)) in shards.iter().enumerate() {
        let before = b.bytes.held();
        for i in range.clone() {
            layers.push(new_layer(&mut b, |b, id| get(b, id, dev), |b, id| norm(b, id, dev), i, cache_len, spec.slots.max(1))?);
        }
        b.shard_bytes[s] += b.bytes.held() - before;
    }
    let before = b.bytes.held();
    let out_norm = norm(&mut b, TensorId::global(TensorRole::OutputNorm), &last)?;
    let out_norm = b.norm(out_norm);
    // A tied head is the embedding tensor itself, except that GGUF blocks kept quantized keep the
    // head in its quantized form too, as llama.cpp does.
    let output = if !cfg.arch.tied_embeddings || keep_blocks { Some(get(&mut b, TensorId::global(TensorRole::Output), &last)?) } else { None };
    let embedding = match &output {
        // For the tuned kernels a tied table is the head's matrix itself (one copy, not two).
        Some(Weight::Tuned(m)) if cfg.arch.tied_embeddings => Embedding::Tuned(m.clone()),
        _ => {
            let emb = src.tensor(TensorId::global(TensorRole::TokenEmbedding))?;
            let embedding = if keep_blocks {
                // Kept as stored (rows looked up in the blocks), like the layer matrices.
                match held(&emb, &first, for_tuned)? {
                    Held::Tuned(m) => Embedding::Tuned(std::sync::Arc::new(m)),
                    Held::Blocks(q) => Embedding::Blocks(std::sync::Arc::new(q)),
                    Held::Raw(r) => Embedding::Raw(std::sync::Arc::new(r)),
                }
            } else {
                Embedding::Dense(dense(&emb, &first)?.to_dtype(compute_c).map_err(candle_err)?)
            };
            src.release(&emb);
            embedding
        }
    };
    let last_index = b.shard_bytes.len() - 1;
    b.shard_bytes[last_index] += b.bytes.held() - before;
    b.finish(src.model_name().to_string(), embedding, layers, out_norm, output, spec, src.is_synthetic())
}

/// Collects tensors into a model and keeps the memory accounting in one place.
struct Builder {
    cfg: ModelConfig,
    compute: BDType,
    dtype: DType,
    /// Each shard's layers and device.
    shards: Vec<(std::ops::Range<usize>, Device)>,
    /// Weight bytes held on each shard's device.
    shard_bytes: Vec<u64>,
    /// The shards' devices as `--device` spells them.
    names: Vec<bench_backend::Device>,
    bytes: WeightBytes,
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
        Weight::Raw(r) => r.bytes.len() as u64,
        Weight::Tuned(m) => m.bytes() as u64,
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
        self.bytes.whole(weight_bytes(&w));
        w
    }
    fn norm(&mut self, t: Tensor) -> Tensor {
        self.bytes.whole(tensor_bytes(&t));
        t
    }
    fn kind(&mut self, k: impl Into<String>) {
        *self.kinds.entry(k.into()).or_default() += 1;
    }

    #[allow(clippy::too_many_arguments)] // the parts of a model, each named at the one call site
    fn finish(
        mut self,
        name: String,
        embedding: Embedding,
        layers: Vec<Layer>,
        norm: Tensor,
        output: Option<Weight>,
        spec: &LoadSpec,
        synthetic: bool,
    ) -> Result<(Llama, ModelInfo)> {
        let emb_bytes = embedding.bytes();
        // Tied and dense (no output tensor of its own): the head is the embedding tensor itself.
        self.bytes.embedding(emb_bytes, self.cfg.arch.vocab_size as u64, output.is_none());
        self.shard_bytes[0] += emb_bytes;
        let output = match output {
            Some(w) => self.matrix(w),
            None => {
                let Embedding::Dense(table) = &embedding else {
                    return Err(Error::Backend("a tied head without its own tensor needs a dense embedding table".into()));
                };
                let last = &self.shards[self.shards.len() - 1].1;
                if table.device().same_device(last) {
                    Weight::Dense(table.clone())
                } else {
                    // Sharded over devices: the head needs its own copy next to the last layers.
                    let n = self.shard_bytes.len();
                    self.shard_bytes[n - 1] += emb_bytes;
                    self.bytes.copy(emb_bytes);
                    Weight::Dense(table.to_device(last).map_err(candle_err)?)
                }
            }
        };
        let max_seq_len = spec.cache_len(self.cfg.arch.context_length);
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
            weight_bytes: self.bytes.held(),
            weight_bytes_per_token: self.bytes.per_token(),
            weights,
            compute_dtype: self.compute,
            device: self.names.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
            synthetic,
            max_seq_len,
            architecture: self.cfg.arch.clone(),
            kernels: format!("stock (candle {})", crate::CANDLE_VERSION),
            // Set once the engine (and so the cache's dtype) is chosen: `load_model`.
            kv_cache_bytes: 0,
            shards: if self.shards.len() > 1 {
                self.shards
                    .iter()
                    .zip(&self.names)
                    .zip(&self.shard_bytes)
                    .map(|(((r, _), d), &weight_bytes)| ShardInfo { device: d.to_string(), layers: [r.start, r.end], weight_bytes })
                    .collect()
            } else {
                Vec::new()
            },
        };
        let model = Llama::new(self.cfg, embedding, layers, norm, output, self.dtype, self.shards, max_seq_len).map_err(candle_err)?;
        Ok((model, info))
    }
}

/// Moves the model onto the tuned kernels when asked (and possible), with the memory figures
/// of what the tuned path holds and reads.
fn tuned_or_stock(model: Llama, mut info: ModelInfo, spec: &LoadSpec) -> Result<NativeModel> {
    let sharded = !model.handovers.is_empty();
    if spec.kernels == Kernels::Stock || !model.device.is_cpu() || sharded {
        if spec.kernels == Kernels::Tuned {
            // The tuned kernels are whole-model CPU code: on a GPU, or split into shards, the
            // stock path (candle's ops, CUDA or CPU) runs, and says so.
            let why = if sharded { "sharded" } else { "the tuned kernels are CPU-only" };
            info.kernels = format!("stock (candle {} on {}; {why})", crate::CANDLE_VERSION, info.device);
        }
        return stock(model, info);
    }
    match crate::convert::to_tuned(model)? {
        Ok((tuned, paths)) => {
            let mut bytes = WeightBytes::default();
            for l in &tuned.layers {
                for m in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down] {
                    bytes.whole(m.bytes() as u64);
                }
                bytes.whole(4 * (l.attn_norm.len() + l.ffn_norm.len()) as u64);
            }
            bytes.whole(4 * tuned.norm.len() as u64);
            // One matrix serves as embedding and head when they are tied (an `Arc` shared by both).
            let shared = std::sync::Arc::ptr_eq(&tuned.embedding, &tuned.output);
            if !shared {
                bytes.whole(tuned.output.bytes() as u64);
            }
            bytes.embedding(tuned.embedding.bytes() as u64, tuned.embedding.rows() as u64, shared);
            info.weight_bytes = bytes.held();
            info.weight_bytes_per_token = bytes.per_token();
            info.compute_dtype = BDType::F32;
            info.kernels = format!("tuned ({}; {})", cpu_kernels::cpu::isa().label(), paths.describe());
            Ok(NativeModel { engine: Engine::Tuned(tuned), info })
        }
        Err((model, why)) => {
            info.kernels = format!("stock (candle {}; {})", crate::CANDLE_VERSION, why.0);
            stock(model, info)
        }
    }
}

/// The stock engine, with blocks candle cannot hold converted ([`stock_ready`]: said in the
/// kernels line, and the weight figures taken at load corrected by what the conversion added).
fn stock(model: Llama, mut info: ModelInfo) -> Result<NativeModel> {
    let (model, growth) = stock_ready(model)?;
    info.weight_bytes = info.weight_bytes + growth.matrices + growth.embedding;
    info.weight_bytes_per_token += growth.matrices;
    for note in load_notes(&growth.converted) {
        info.kernels = format!("{}; {note}", info.kernels);
    }
    Ok(NativeModel { engine: Engine::Stock(model), info })
}

/// "168 iq4_nl tensors re-encoded as q8_0 at load (...)" for each kind of load-time conversion.
fn load_notes(expanded: &BTreeMap<String, usize>) -> Vec<String> {
    expanded.iter().map(|(what, n)| format!("{n} {what}")).collect()
}

fn new_layer(
    b: &mut Builder,
    mut get: impl FnMut(&mut Builder, TensorId) -> Result<Weight>,
    mut norm: impl FnMut(&mut Builder, TensorId) -> Result<Tensor>,
    layer: usize,
    cache_len: usize,
    slots: usize,
) -> Result<Layer> {
    let id = |role| TensorId::layer(layer, role);
    let attn_norm = norm(b, id(TensorRole::AttnNorm))?;
    let wq = get(b, id(TensorRole::AttnQ))?;
    let wk = get(b, id(TensorRole::AttnK))?;
    let wv = get(b, id(TensorRole::AttnV))?;
    let wo = get(b, id(TensorRole::AttnOutput))?;
    let ffn_norm = norm(b, id(TensorRole::FfnNorm))?;
    let w_gate = get(b, id(TensorRole::FfnGate))?;
    let w_up = get(b, id(TensorRole::FfnUp))?;
    let w_down = get(b, id(TensorRole::FfnDown))?;
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
        caches: (0..slots).map(|_| KvCache::new(2, cache_len)).collect(),
    })
}

/// candle's name for a ggml block type, `None` for one candle 0.11.1 cannot read.
pub(crate) fn candle_ggml_dtype(t: GgmlType) -> Option<GgmlDType> {
    Some(match t {
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
        GgmlType::Q8_1 | GgmlType::IQ4_NL | GgmlType::IQ4_XS | GgmlType::Other(_) => return None,
    })
}
