//! Building a [`TorchModel`] from GGUF (blocks dequantized with tensor ops), safetensors
//! (memory-mapped with the `safetensors` crate) or synthetic weights. Every tensor's shape is
//! checked against the configuration before any libtorch op sees it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bench_core::backend::{DType, LoadSpec, ModelInfo, Quantize, WeightSource};
use bench_core::config::ModelConfig;
use bench_core::files::WeightFormat;
use bench_core::gguf::GgufFile;
use bench_core::registry::Architecture;
use bench_core::{quant, synthetic, Error, Result};
use tch::{Device, Kind, Tensor};

use crate::model::{Layer, TorchLlama, Weight};
use crate::{dequant, guarded, TorchModel};

fn kind_of(d: DType) -> Kind {
    match d {
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
    }
}

fn device(spec: &str) -> Result<Device> {
    let cuda_index = match spec {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        s => match s.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => i,
            None => return Err(Error::InvalidInput(format!("device '{spec}': use cpu, cuda or cuda:N"))),
        },
    };
    let n = tch::Cuda::device_count() as usize;
    if cuda_index >= n {
        return Err(Error::InvalidInput(format!(
            "device '{spec}': libtorch sees {n} CUDA device(s) here; use --device cpu"
        )));
    }
    Ok(Device::Cuda(cuda_index))
}

/// Turns a layer matrix into bench-core's int8 / NF4 format when `--quantize` asks for it
/// (the embedding and the output head stay in the compute dtype).
fn layer_weight(spec: &LoadSpec, name: &str, w: Tensor) -> Result<Weight> {
    let dev = w.device();
    let size = w.size();
    let (rows, cols) = (size[0] as usize, size[1] as usize);
    let values = || Vec::<f32>::try_from(&w.to_kind(Kind::Float).to_device(Device::Cpu).reshape([-1])).map_err(|e| Error::Backend(e.to_string()));
    match spec.quantize {
        Some(Quantize::Int8) => {
            let m = quant::quantize_int8(&values()?, rows, cols);
            Ok(Weight::Int8 {
                q: Tensor::from_slice(&m.q).view([rows as i64, cols as i64]).to_device(dev),
                scales: Tensor::from_slice(&m.scales).view([rows as i64, 1]).to_device(dev),
            })
        }
        Some(Quantize::Nf4) => {
            let m = quant::quantize_nf4(&values()?, rows, cols, name)?;
            Ok(Weight::Nf4 {
                packed: Tensor::from_slice(&m.packed).view([rows as i64, cols as i64 / 2]).to_device(dev),
                absmax: Tensor::from_slice(&m.absmax).view([rows as i64, (cols / quant::NF4_BLOCK) as i64, 1]).to_device(dev),
                codebook: Tensor::from_slice(&quant::NF4_CODEBOOK).to_device(dev),
            })
        }
        _ => Ok(Weight::Dense(w)),
    }
}

pub fn load_model(spec: &LoadSpec) -> Result<TorchModel> {
    if let Some(n) = spec.threads {
        tch::set_num_threads(n as i32);
    }
    let dev = device(&spec.device)?;
    let dtype = spec.float_dtype()?;
    guarded("loading the model", || {
        tch::no_grad(|| match &spec.source {
            WeightSource::Files(files) => match &files.weights {
                WeightFormat::Gguf(path) => load_gguf(path, spec, dtype, dev),
                WeightFormat::Safetensors { shards, config } => load_safetensors(shards, config, spec, dtype, dev),
            },
            WeightSource::Synthetic { arch, seed } => load_synthetic(arch, *seed, spec, dtype, dev),
        })
    })
}

/// Expected row-major shapes of every tensor, by GGUF name.
fn expected_shapes(arch: &Architecture) -> BTreeMap<String, Vec<usize>> {
    let mut s: BTreeMap<String, Vec<usize>> = synthetic::tensor_shapes(arch).into_iter().collect();
    s.insert("output.weight".into(), vec![arch.vocab_size, arch.dim]);
    s
}

/// Assembles the model from a tensor source keyed by GGUF names.
fn build(
    cfg: ModelConfig,
    spec: &LoadSpec,
    kind: Kind,
    dev: Device,
    name: String,
    synthetic_weights: bool,
    weights_desc: String,
    mut get: impl FnMut(&str) -> Result<Option<Tensor>>,
) -> Result<TorchModel> {
    let shapes = expected_shapes(&cfg.arch);
    let mut bytes = 0u64;
    let mut per_token = 0u64;
    let mut quantized_bytes = 0u64;
    let mut fetch = |n: &str, k: Kind| -> Result<Tensor> {
        let t = get(n)?.ok_or_else(|| Error::ModelFiles(format!("missing tensor {n}")))?;
        let want: Vec<i64> = shapes[n].iter().map(|&d| d as i64).collect();
        if t.size() != want {
            return Err(Error::ModelFiles(format!("tensor {n} has shape {:?}, expected {want:?}", t.size())));
        }
        Ok(t.to_kind(k).to_device(dev))
    };
    let mut layers = Vec::with_capacity(cfg.arch.layers);
    for i in 0..cfg.arch.layers {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        let mut matrix = |s: &str| -> Result<Weight> {
            let name = p(s);
            let w = layer_weight(spec, &name, fetch(&name, kind)?)?;
            quantized_bytes += w.bytes();
            Ok(w)
        };
        let (wq, wk, wv, wo) = (matrix("attn_q")?, matrix("attn_k")?, matrix("attn_v")?, matrix("attn_output")?);
        let (w_gate, w_up, w_down) = (matrix("ffn_gate")?, matrix("ffn_up")?, matrix("ffn_down")?);
        layers.push(Layer { attn_norm: fetch(&p("attn_norm"), Kind::Float)?, wq, wk, wv, wo, ffn_norm: fetch(&p("ffn_norm"), Kind::Float)?, w_gate, w_up, w_down });
    }
    let tensor_bytes = |t: &Tensor| (t.numel() * t.kind().elt_size_in_bytes()) as u64;
    for l in &layers {
        bytes += tensor_bytes(&l.attn_norm) + tensor_bytes(&l.ffn_norm);
    }
    bytes += quantized_bytes;
    per_token += bytes;
    let mut take = |n: &str, k: Kind| -> Result<Tensor> {
        let t = fetch(n, k)?;
        let b = tensor_bytes(&t);
        bytes += b;
        if n != "token_embd.weight" {
            per_token += b;
        }
        Ok(t)
    };
    let norm = take("output_norm.weight", Kind::Float)?;
    let embedding = take("token_embd.weight", kind)?;
    let emb_bytes = (embedding.numel() * kind.elt_size_in_bytes()) as u64;
    let output = if cfg.arch.tied_embeddings { None } else { Some(take("output.weight", kind)?) };
    drop(take);
    let output = output.unwrap_or_else(|| {
        per_token += emb_bytes; // the tied head reads the whole (shared) embedding
        embedding.shallow_clone()
    });
    per_token += emb_bytes / cfg.arch.vocab_size as u64;
    let max_seq_len = spec.cache_len(&cfg);
    let weights_desc = match spec.quantize {
        Some(Quantize::Int8) => format!("int8 layer matrices; embedding/head {weights_desc}"),
        Some(Quantize::Nf4) => format!("nf4 layer matrices; embedding/head {weights_desc}"),
        _ => weights_desc,
    };
    let info = ModelInfo {
        name,
        parameters: cfg.arch.parameters(),
        weight_bytes: bytes,
        weight_bytes_per_token: per_token,
        weights: weights_desc,
        compute_dtype: format!("{kind:?}").to_lowercase(),
        device: format!("{dev:?}").to_lowercase(),
        synthetic: synthetic_weights,
        max_seq_len,
        architecture: cfg.arch.clone(),
        kernels: format!("libtorch {}", crate::LIBTORCH_VERSION),
    };
    let model = TorchLlama::new(cfg, embedding, layers, norm, output, kind, dev, max_seq_len);
    Ok(TorchModel { model, info, cached: 0 })
}

fn load_gguf(path: &Path, spec: &LoadSpec, dtype: Option<DType>, dev: Device) -> Result<TorchModel> {
    let gguf = GgufFile::open(path)?;
    gguf.require_llama("torch")?;
    let cfg = ModelConfig::from_gguf(&gguf)?;
    // No ggml kernels in libtorch: blocks are dequantized once at load, to f32 unless asked otherwise.
    let kind = kind_of(dtype.unwrap_or(DType::F32));
    let desc = format!("{} (dequantized from gguf {})", format!("{kind:?}").to_lowercase(), gguf.type_summary());
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    build(cfg, spec, kind, dev, name, false, desc, |n| {
        let Some(info) = gguf.tensor(n) else { return Ok(None) };
        let bytes = gguf.tensor_bytes(info).map_err(|_| {
            Error::NotImplemented(format!("tensor {n} has type {}, which the torch framework does not support", info.ggml_type))
        })?;
        let shape: Vec<i64> = info.shape().iter().map(|&d| d as i64).collect();
        Ok(Some(dequant::dequantize(bytes, info.ggml_type, info.elements() as usize, n)?.view(shape.as_slice())))
    })
}


fn load_safetensors(shards: &[PathBuf], config: &Path, spec: &LoadSpec, dtype: Option<DType>, dev: Device) -> Result<TorchModel> {
    let cfg = ModelConfig::from_safetensors(config, shards)?;
    let mut maps = Vec::with_capacity(shards.len());
    for p in shards {
        let f = std::fs::File::open(p).map_err(|e| Error::io("opening safetensors file", p, e))?;
        // SAFETY: read-only map; the file must not be truncated while in use.
        let m = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io("memory-mapping safetensors file", p, e))?;
        maps.push((p.clone(), m));
    }
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut files = Vec::with_capacity(maps.len());
    for (i, (p, m)) in maps.iter().enumerate() {
        let st = safetensors::SafeTensors::deserialize(m).map_err(|e| {
            Error::ModelFiles(format!("invalid safetensors file {}: {e}. The file is corrupt or truncated; download it again", p.display()))
        })?;
        for name in st.names() {
            index.insert(name.to_string(), i);
        }
        files.push(st);
    }
    let stored = |name: &str| -> Option<Kind> {
        let st = &files[*index.get(name)?];
        match st.tensor(name).ok()?.dtype() {
            safetensors::Dtype::F32 => Some(Kind::Float),
            safetensors::Dtype::F16 => Some(Kind::Half),
            safetensors::Dtype::BF16 => Some(Kind::BFloat16),
            _ => None,
        }
    };
    let file_kind = stored("model.embed_tokens.weight")
        .ok_or_else(|| Error::ModelFiles("safetensors: model.embed_tokens.weight is missing or not f32/f16/bf16".into()))?;
    let kind = dtype.map(kind_of).unwrap_or(file_kind);
    let desc = format!("{} (safetensors {})", format!("{kind:?}").to_lowercase(), format!("{file_kind:?}").to_lowercase());
    let name = config.parent().and_then(|p| p.file_name()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    build(cfg, spec, kind, dev, name, false, desc, |n| {
        let hf = bench_core::config::hf_tensor_name(n);
        let Some(&i) = index.get(&hf) else { return Ok(None) };
        let view = files[i].tensor(&hf).map_err(|e| Error::ModelFiles(format!("safetensors: {hf}: {e}")))?;
        let k = stored(&hf).ok_or_else(|| Error::NotImplemented(format!("safetensors tensor {hf} of dtype {:?}", view.dtype())))?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        Ok(Some(Tensor::from_data_size(view.data(), &shape, k)))
    })
}

fn load_synthetic(arch: &Architecture, seed: u64, spec: &LoadSpec, dtype: Option<DType>, dev: Device) -> Result<TorchModel> {
    let cfg = ModelConfig::synthetic(arch.clone())?;
    let kind = kind_of(dtype.unwrap_or(DType::F32));
    let shapes: BTreeMap<String, Vec<usize>> = synthetic::tensor_shapes(arch).into_iter().collect();
    let desc = format!("synthetic {}", format!("{kind:?}").to_lowercase());
    build(cfg, spec, kind, dev, format!("synthetic (seed {seed})"), true, desc, |n| {
        let Some(shape) = shapes.get(n) else { return Ok(None) };
        let s: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        // Converted one tensor at a time so the f32 staging copy never exceeds one tensor.
        Ok(Some(Tensor::from_slice(&synthetic::tensor_values(seed, n, shape)).view(s.as_slice()).to_kind(kind)))
    })
}
