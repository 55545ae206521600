//! Building a [`TorchModel`] from GGUF (blocks dequantized with tensor ops), safetensors
//! (memory-mapped) or synthetic weights, all read through bench-backend's [`TensorSource`],
//! which has checked every tensor's shape against the configuration before libtorch sees it.

use bench_backend::backend::{DType, LoadSpec, ModelInfo, Quantize};
use bench_backend::schema::{TensorId, TensorRole};
use bench_backend::source::{self, TensorData, TensorSource};
use bench_backend::memory::WeightBytes;
use bench_backend::{quant, Error, Result};
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

fn device(spec: bench_backend::Device) -> Result<Device> {
    let cuda_index = match spec {
        bench_backend::Device::Cpu => return Ok(Device::Cpu),
        bench_backend::Device::Cuda(i) => i,
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
    let dev = device(spec.device)?;
    let dtype = spec.float_dtype()?;
    let src = TensorSource::open(&spec.source, "torch")?;
    guarded("loading the model", || tch::no_grad(|| build(&src, spec, dtype, dev)))
}

/// A tensor of the source as a libtorch tensor of its shape: ggml blocks dequantized to f32 by
/// tensor ops, safetensors floats in their own kind, synthetic values in f32.
fn to_tensor(t: &source::Tensor) -> Result<Tensor> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    let elements = t.shape.iter().product();
    Ok(match &t.data {
        TensorData::Ggml { ggml_type, bytes } => dequant::dequantize(bytes, *ggml_type, elements, &t.name)?.view(shape.as_slice()),
        TensorData::Float { dtype, bytes } => Tensor::from_data_size(bytes, &shape, kind_of(*dtype)),
        TensorData::F32(values) => Tensor::from_slice(values).view(shape.as_slice()),
    })
}

/// Assembles the model, reading one tensor at a time (so a staging copy never exceeds one).
fn build(src: &TensorSource, spec: &LoadSpec, dtype: Option<DType>, dev: Device) -> Result<TorchModel> {
    let cfg = src.config().clone();
    // No ggml kernels in libtorch: GGUF blocks are dequantized once at load, to f32 unless asked
    // otherwise; safetensors keep their own dtype unless asked otherwise.
    let compute = match dtype {
        Some(d) => d,
        None if src.gguf_file().is_some() => DType::F32,
        None => src.float_dtype(TensorId::global(TensorRole::TokenEmbedding)).unwrap_or(DType::F32),
    };
    let kind = kind_of(compute);
    let fetch = |id: TensorId, k: Kind| -> Result<Tensor> { Ok(to_tensor(&src.tensor(id)?)?.to_kind(k).to_device(dev)) };
    let tensor_bytes = |t: &Tensor| (t.numel() * t.kind().elt_size_in_bytes()) as u64;
    let mut bytes = WeightBytes::default();
    let mut layers = Vec::with_capacity(cfg.arch.layers);
    for i in 0..cfg.arch.layers {
        let id = |role| TensorId::layer(i, role);
        let mut matrix = |role| -> Result<Weight> {
            let w = layer_weight(spec, &id(role).gguf_name(), fetch(id(role), kind)?)?;
            bytes.whole(w.bytes());
            Ok(w)
        };
        let (wq, wk, wv, wo) = (matrix(TensorRole::AttnQ)?, matrix(TensorRole::AttnK)?, matrix(TensorRole::AttnV)?, matrix(TensorRole::AttnOutput)?);
        let (w_gate, w_up, w_down) = (matrix(TensorRole::FfnGate)?, matrix(TensorRole::FfnUp)?, matrix(TensorRole::FfnDown)?);
        let (attn_norm, ffn_norm) = (fetch(id(TensorRole::AttnNorm), Kind::Float)?, fetch(id(TensorRole::FfnNorm), Kind::Float)?);
        bytes.whole(tensor_bytes(&attn_norm) + tensor_bytes(&ffn_norm));
        layers.push(Layer { attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down });
    }
    let norm = fetch(TensorId::global(TensorRole::OutputNorm), Kind::Float)?;
    bytes.whole(tensor_bytes(&norm));
    let output = if cfg.arch.tied_embeddings { None } else { Some(fetch(TensorId::global(TensorRole::Output), kind)?) };
    if let Some(o) = &output {
        bytes.whole(tensor_bytes(o));
    }
    let embedding = fetch(TensorId::global(TensorRole::TokenEmbedding), kind)?;
    bytes.embedding(tensor_bytes(&embedding), cfg.arch.vocab_size as u64, output.is_none());
    let output = output.unwrap_or_else(|| embedding.shallow_clone());
    let max_seq_len = spec.cache_len(&cfg);
    let stored = if src.is_synthetic() {
        format!("synthetic {}", compute.as_str())
    } else if src.gguf_file().is_some() {
        format!("{} (dequantized from {})", compute.as_str(), src.storage_summary())
    } else {
        format!("{} ({})", compute.as_str(), src.storage_summary())
    };
    let weights = match spec.quantize {
        Some(q @ (Quantize::Int8 | Quantize::Nf4)) => format!("{} layer matrices; embedding/head {stored}", q.as_str()),
        _ => stored,
    };
    let info = ModelInfo {
        name: src.model_name().to_string(),
        parameters: cfg.arch.parameters(),
        weight_bytes: bytes.held(),
        weight_bytes_per_token: bytes.per_token(),
        weights,
        compute_dtype: compute,
        device: format!("{dev:?}").to_lowercase(),
        synthetic: src.is_synthetic(),
        max_seq_len,
        architecture: cfg.arch.clone(),
        kernels: format!("libtorch {}", crate::LIBTORCH_VERSION),
    };
    let model = TorchLlama::new(cfg, embedding, layers, norm, output, kind, dev, max_seq_len);
    Ok(TorchModel { model, info, cached: 0 })
}
