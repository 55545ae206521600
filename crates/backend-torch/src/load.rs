//! Building a [`TorchModel`] from GGUF (blocks dequantized with tensor ops), safetensors
//! (memory-mapped) or synthetic weights, all read through bench-backend's [`TensorSource`],
//! which has checked every tensor's shape against the configuration before libtorch sees it.

use bench_backend::backend::{shard_ranges, DType, Kernels, LoadSpec, ModelInfo, Quantize, ShardInfo};
use bench_backend::memory::WeightBytes;
use bench_backend::schema::{TensorId, TensorRole};
use bench_backend::source::{self, TensorData, TensorSource};
use bench_backend::{quant, Error, Result};
use tch::{Device, Kind, Tensor};

use crate::model::{Layer, TorchLlama, Weight};
use crate::weight_only::{self, Tier};
use crate::{dequant, guarded, TorchModel};

fn kind_of(d: DType) -> Kind {
    match d {
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
    }
}

/// Whether this build keeps `libtorch_cuda.so` linked (build.rs, `LLAMA3_BENCH_TORCH_CUDA=1`):
/// without it libtorch sees no GPU even on a GPU machine, which the error says.
const CUDA_LINKED: bool = matches!(env!("LLAMA3_BENCH_TORCH_CUDA_LINKED").as_bytes(), b"1");

fn device(spec: bench_backend::Device) -> Result<Device> {
    let cuda_index = match spec {
        bench_backend::Device::Cpu => return Ok(Device::Cpu),
        bench_backend::Device::Cuda(i) => i,
    };
    let n = tch::Cuda::device_count() as usize;
    if cuda_index >= n {
        let fix = if n > 0 {
            format!("use cuda:0..cuda:{}", n - 1)
        } else if !CUDA_LINKED {
            "this torch-only was built without libtorch's CUDA library linked; build it with `cargo xtask gpu-bundle` \
             (or LLAMA3_BENCH_TORCH_CUDA=1 cargo build -p torch-only), or use --device cpu"
                .to_string()
        } else {
            "no NVIDIA GPU or driver is visible to this process (on the GPU machine run it through the bundle's run.sh, \
             which sets LD_LIBRARY_PATH), or use --device cpu"
                .to_string()
        };
        return Err(Error::InvalidInput(format!("device '{spec}': libtorch sees {n} CUDA devices; {fix}")));
    }
    Ok(Device::Cuda(cuda_index))
}

/// `cpu` / `cuda:N`, as `--device` spells it.
fn device_name(d: Device) -> String {
    match d {
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
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
    let dtype = spec.float_dtype()?;
    let src = TensorSource::open(&spec.source, "torch")?;
    let devices = spec.shard_devices(src.config().arch.layers)?.into_iter().map(device).collect::<Result<Vec<_>>>()?;
    guarded("loading the model", || tch::no_grad(|| build(&src, spec, dtype, &devices)))
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

/// Assembles the model, reading one tensor at a time (so a staging copy never exceeds one), with
/// each shard's layers on its device (`devices`: one per shard; one for an unsharded model).
fn build(src: &TensorSource, spec: &LoadSpec, dtype: Option<DType>, devices: &[Device]) -> Result<TorchModel> {
    let cfg = src.config().clone();
    // No ggml kernels in libtorch: GGUF blocks are dequantized once at load, to f32 unless asked
    // otherwise; safetensors keep their own dtype unless asked otherwise.
    let compute = match dtype {
        Some(d) => d,
        None if src.gguf_file().is_some() => DType::F32,
        None => src.float_dtype(TensorId::global(TensorRole::TokenEmbedding)).unwrap_or(DType::F32),
    };
    let kind = kind_of(compute);
    let fetch = |id: TensorId, k: Kind, dev: Device| -> Result<Tensor> { Ok(to_tensor(&src.tensor(id)?)?.to_kind(k).to_device(dev)) };
    let tensor_bytes = |t: &Tensor| (t.numel() * t.kind().elt_size_in_bytes()) as u64;
    let ranges = shard_ranges(cfg.arch.layers, devices.len());
    let layer_devices: Vec<Device> = ranges.iter().zip(devices).flat_map(|(r, &d)| r.clone().map(move |_| d)).collect();
    let (first, last) = (devices[0], devices[devices.len() - 1]);
    // Weight bytes held on each shard's device.
    let mut shard_bytes = vec![0u64; devices.len()];
    let mut bytes = WeightBytes::default();
    let mut layers = Vec::with_capacity(cfg.arch.layers);
    for i in 0..cfg.arch.layers {
        let dev = layer_devices[i];
        let layer_start = bytes.held();
        let id = |role| TensorId::layer(i, role);
        // Matrices that share an input are stacked by rows before quantizing (one product then
        // computes them all); int8 scales and NF4 blocks are per row, so that equals stacking the
        // quantized parts.
        let mut matrix = |roles: &[TensorRole]| -> Result<Weight> {
            let parts = roles.iter().map(|&r| fetch(id(r), kind, dev)).collect::<Result<Vec<_>>>()?;
            let w = layer_weight(spec, &id(roles[0]).gguf_name(), Tensor::cat(&parts, 0))?;
            bytes.whole(w.bytes());
            Ok(w)
        };
        let wqkv = matrix(&[TensorRole::AttnQ, TensorRole::AttnK, TensorRole::AttnV])?;
        let wo = matrix(&[TensorRole::AttnOutput])?;
        let w_gate_up = matrix(&[TensorRole::FfnGate, TensorRole::FfnUp])?;
        let w_down = matrix(&[TensorRole::FfnDown])?;
        let (attn_norm, ffn_norm) = (fetch(id(TensorRole::AttnNorm), Kind::Float, dev)?, fetch(id(TensorRole::FfnNorm), Kind::Float, dev)?);
        bytes.whole(tensor_bytes(&attn_norm) + tensor_bytes(&ffn_norm));
        shard_bytes[ranges.iter().position(|r| r.contains(&i)).unwrap_or(0)] += bytes.held() - layer_start;
        layers.push(Layer { attn_norm, wqkv, wo, ffn_norm, w_gate_up, w_down });
    }
    let norm = fetch(TensorId::global(TensorRole::OutputNorm), Kind::Float, last)?;
    bytes.whole(tensor_bytes(&norm));
    let output = if cfg.arch.tied_embeddings { None } else { Some(fetch(TensorId::global(TensorRole::Output), kind, last)?) };
    if let Some(o) = &output {
        bytes.whole(tensor_bytes(o));
    }
    *shard_bytes.last_mut().unwrap() += tensor_bytes(&norm) + output.as_ref().map(tensor_bytes).unwrap_or(0);
    let embedding = fetch(TensorId::global(TensorRole::TokenEmbedding), kind, first)?;
    let emb_bytes = tensor_bytes(&embedding);
    shard_bytes[0] += emb_bytes;
    bytes.embedding(emb_bytes, cfg.arch.vocab_size as u64, output.is_none());
    let output = match output {
        Some(o) => o,
        None if first == last => embedding.shallow_clone(),
        None => {
            // A tied head on another device than the embedding: a copy there.
            *shard_bytes.last_mut().unwrap() += emb_bytes;
            bytes.copy(emb_bytes);
            embedding.to_device(last)
        }
    };
    let max_seq_len = spec.cache_len(cfg.arch.context_length);
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
    // The one choice `--kernels` gives here: on the CPU, decode steps of a few tokens run this
    // crate's C++ on libtorch's thread pool (tuned: the whole step fused in f32, the products
    // alone in f16 / bf16), or libtorch ops only (stock).
    let on_cpu = devices.iter().all(|d| *d == Device::Cpu);
    let tier = (spec.kernels == Kernels::Tuned && on_cpu).then(Tier::best);
    let shards: Vec<_> = ranges.iter().cloned().zip(devices.iter().copied()).collect();
    let model = TorchLlama::new(cfg.clone(), embedding, layers, norm, output, kind, tier, &shards, max_seq_len, spec.slots);
    let libtorch = format!("libtorch {}", crate::LIBTORCH_VERSION);
    let kernels = match (on_cpu, tier) {
        (false, _) => libtorch,
        (true, Some(t)) if model.fused_decode() => {
            format!("tuned ({libtorch}; decode steps of up to {} tokens fused: weight_only.cpp + decode_ops.cpp, {})", weight_only::MAX_TOKENS, t.as_str())
        }
        (true, Some(t)) => {
            format!("tuned ({libtorch}; f32/int8/nf4 products of up to {} tokens: weight_only.cpp, {})", weight_only::MAX_TOKENS, t.as_str())
        }
        (true, None) => format!("stock ({libtorch})"),
    };
    let info = ModelInfo {
        kv_cache_bytes: bench_backend::memory::kv_cache_bytes(&cfg.arch, max_seq_len, spec.slots, kind.elt_size_in_bytes()),
        name: src.model_name().to_string(),
        parameters: cfg.arch.parameters(),
        weight_bytes: bytes.held(),
        weight_bytes_per_token: bytes.per_token(),
        weights,
        compute_dtype: compute,
        device: devices.iter().map(|d| device_name(*d)).collect::<Vec<_>>().join(","),
        synthetic: src.is_synthetic(),
        max_seq_len,
        architecture: cfg.arch.clone(),
        kernels,
        shards: if devices.len() > 1 {
            ranges
                .iter()
                .zip(devices)
                .zip(&shard_bytes)
                .map(|((r, d), &weight_bytes)| ShardInfo { device: device_name(*d), layers: [r.start, r.end], weight_bytes })
                .collect()
        } else {
            Vec::new()
        },
    };
    Ok(TorchModel { model, info, cached: vec![0; spec.slots.max(1)] })
}
