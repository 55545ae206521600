//! llama3-bench's `llamacpp` framework: llama.cpp's own LLaMA forward pass and KV cache, through
//! the `llama-cpp-2` bindings (llama.cpp built from the crate's vendored source, linked
//! statically). Only `forward` runs in llama.cpp: tokenization, sampling, stopping and timing stay
//! in bench-core, exactly as for the other frameworks, so the numbers mean the same thing.
//!
//! It reads GGUF files only. `--dtype f32|f16|bf16` converts the file once with llama.cpp's own
//! `llama_model_quantize` into a temporary GGUF (its `ALL_F32` / `MOSTLY_F16` / `MOSTLY_BF16`
//! file types) and loads that; without `--dtype` the file's own blocks run in llama.cpp's kernels.
//!
//! SIMD: built without `-C target-cpu`, the crate's build script turns `GGML_NATIVE` off and
//! ggml compiles its AVX/AVX2/FMA/F16C kernels. `GGML_*` environment variables at build time reach
//! ggml's CMake, and every build through `cargo xtask` (compare, test, quantize) sets them for the
//! CPU it runs on (xtask's `llamacpp::cpu_env`: AVX-512, VBMI, VNNI, BF16 and AVX-VNNI where
//! present; AMX always off, its extra buffer type crashes on some virtual machines). Every report
//! carries llama.cpp's own system-info string, and a CPU lacking an instruction set the build uses
//! is refused at load instead of crashing.

mod convert;
mod logs;

pub use convert::{quantize, FileType};

use std::ffi::CStr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bench_backend::backend::{
    check_batch_args, check_forward_args, Backend, DType, DeviceInfo, LanguageModel, LoadSpec, Logits, ModelInfo, Quantize, SeqStep, WeightSource,
};
use bench_backend::config::ModelConfig;
use bench_backend::gguf::GgufFile;
use bench_backend::memory::WeightBytes;
use bench_backend::schema::{TensorId, TensorRole};
use bench_backend::source::TensorSource;
use bench_backend::WeightFormat;
use bench_backend::{Error, Result};
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

/// Threads of the last model loaded (`--threads`), for [`Backend::device_info`].
static THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Version of the bindings (they vendor one llama.cpp source tree per release).
pub const LLAMA_CPP_2_VERSION: &str = "0.1.160";

#[derive(Debug, Default, Clone, Copy)]
pub struct LlamaCppBackend;

/// llama.cpp's process-wide state: initialised once, with its logs routed to `tracing`.
fn llama_backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            logs::install();
            LlamaBackend::init().map_err(|e| format!("initialising llama.cpp: {e}"))
        })
        .as_ref()
        .map_err(|e| Error::Backend(e.clone()))
}

/// llama.cpp's system-info string, e.g. "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | ...".
pub fn system_info() -> String {
    // SAFETY: returns a pointer to a static, NUL-terminated buffer owned by llama.cpp.
    let p = unsafe { llama_cpp_sys_2::llama_print_system_info() };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: `p` is non-null (checked above) and points to llama.cpp's NUL-terminated static buffer.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().trim().trim_end_matches('|').trim().to_string()
}

/// The instruction sets llama.cpp's CPU kernels were compiled with ("AVX2 F16C FMA ..."): the
/// entries of the system-info string that are set to 1, without the non-SIMD ones.
pub fn simd_summary() -> String {
    let info = system_info();
    let on: Vec<&str> = info
        .split('|')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let k = k.trim().trim_start_matches("CPU :").trim();
            (v.trim() == "1" && !matches!(k, "OPENMP" | "REPACK" | "LLAMAFILE" | "KLEIDIAI")).then_some(k)
        })
        .collect();
    if on.is_empty() {
        "generic (no SIMD flags reported)".into()
    } else {
        on.join(" ")
    }
}

/// Refuses to run kernels the running CPU cannot execute (they would die with SIGILL).
fn check_cpu_supports_build() -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    {
        let info = system_info();
        let built = |k: &str| info.contains(&format!("{k} = 1"));
        let checks: [(&str, bool); 9] = [
            ("AVX", std::arch::is_x86_feature_detected!("avx")),
            ("AVX2", std::arch::is_x86_feature_detected!("avx2")),
            ("FMA", std::arch::is_x86_feature_detected!("fma")),
            ("F16C", std::arch::is_x86_feature_detected!("f16c")),
            ("AVX512", std::arch::is_x86_feature_detected!("avx512f")),
            ("AVX512_VBMI", std::arch::is_x86_feature_detected!("avx512vbmi")),
            ("AVX512_VNNI", std::arch::is_x86_feature_detected!("avx512vnni")),
            ("AVX512_BF16", std::arch::is_x86_feature_detected!("avx512bf16")),
            ("AVX_VNNI", std::arch::is_x86_feature_detected!("avxvnni")),
        ];
        let missing: Vec<&str> = checks.iter().filter(|(k, has)| built(k) && !has).map(|(k, _)| *k).collect();
        if !missing.is_empty() {
            return Err(Error::Backend(format!(
                "this llama.cpp build uses {} but this CPU lacks it; rebuild it for this CPU with `cargo xtask compare` \
                 (or with those GGML_* options OFF, e.g. GGML_AVX512=OFF GGML_AVX2=OFF cargo build --release -p llamacpp-only)",
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

impl Backend for LlamaCppBackend {
    fn name(&self) -> &'static str {
        "llamacpp"
    }

    fn device_info(&self, device: bench_backend::Device) -> DeviceInfo {
        // Initialise first so the system info reflects the registered CPU backend.
        let _ = llama_backend();
        DeviceInfo {
            framework: "llama.cpp (llama-cpp-2 bindings)".into(),
            framework_version: format!("llama.cpp via llama-cpp-2 {LLAMA_CPP_2_VERSION}, kernels {}", simd_summary()),
            device: device.to_string(),
            threads: match THREADS.load(std::sync::atomic::Ordering::Relaxed) {
                0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                n => n,
            },
            cpu: bench_backend::backend::cpu_model(),
        }
    }

    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn LanguageModel>> {
        Ok(Box::new(load(spec, false)?))
    }

    fn keeps_gguf_blocks(&self) -> bool {
        true
    }

    fn check_source(&self, spec: &LoadSpec) -> Result<()> {
        gguf_path(spec).map(|_| ())
    }
}

/// A model whose attention runs in f32 whatever the weights: an f32 KV cache and no flash
/// attention (llama.cpp's defaults for a file's own blocks are an f16 cache and flash attention,
/// whose CPU kernel rounds through f16). With it, llama.cpp on a quantized file differs from
/// another framework's f32 attention only in the products' arithmetic: what the tests that compare
/// native's quantized kernels with ggml's use as their reference.
pub fn load_with_f32_attention(spec: &LoadSpec) -> Result<Box<dyn LanguageModel>> {
    Ok(Box::new(load(spec, true)?))
}

// The context borrows the model; both live in one value so the model can be returned as a box.
self_cell::self_cell!(
    struct Session {
        owner: LlamaModel,
        #[covariant]
        dependent: Context,
    }
);
type Context<'a> = LlamaContext<'a>;

pub struct LlamaCppModel {
    session: Session,
    info: ModelInfo,
    /// Tokens in each sequence's KV cache (llama.cpp's `seq_id` = the slot) since its reset.
    cached: Vec<usize>,
    /// Longest batch one `decode` call takes (= the context length of every slot together).
    n_batch: usize,
    /// Keeps a converted (`--dtype`) temporary GGUF alive as long as llama.cpp maps it.
    _converted: Option<convert::Converted>,
}

/// The GGUF file of `spec`, or the error for a source llama.cpp cannot read.
fn gguf_path(spec: &LoadSpec) -> Result<PathBuf> {
    Ok(match &spec.source {
        WeightSource::Files(weights) => match weights {
            WeightFormat::Gguf(p) => p.clone(),
            WeightFormat::Safetensors { shards, .. } => {
                let first = shards.first().map(|p| p.display().to_string()).unwrap_or_default();
                return Err(Error::InvalidInput(format!(
                    "the llamacpp framework reads GGUF files only, and {first} is safetensors; \
                     convert it with llama.cpp's convert_hf_to_gguf.py, or run it on native or torch"
                )));
            }
        },
        WeightSource::Synthetic { .. } => {
            return Err(Error::InvalidInput(
                "the llamacpp framework reads GGUF files only and cannot make synthetic weights in memory; \
                 write a synthetic GGUF with `cargo xtask synth-gguf --size 1B --type f16` and pass it with --model-path"
                    .into(),
            ))
        }
    })
}

/// `f32_attention`: see [`load_with_f32_attention`] (always so for `--dtype f32`).
fn load(spec: &LoadSpec, f32_attention: bool) -> Result<LlamaCppModel> {
    let path = gguf_path(spec)?;
    if spec.device != bench_backend::Device::Cpu {
        return Err(Error::InvalidInput(format!("device '{}': this llama.cpp build is CPU-only; use --device cpu", spec.device)));
    }
    if spec.shard != 1 {
        return Err(Error::InvalidInput(format!("--shard {}: this llama.cpp build is CPU-only and runs unsharded; use --shard 1", spec.shard)));
    }
    let target = match (spec.quantize, spec.float_dtype()?) {
        (Some(q @ (Quantize::Int8 | Quantize::Nf4)), _) => {
            return Err(Error::InvalidInput(format!(
                "--quantize {} is bench-core's format, which llama.cpp has no kernels for; \
                 run a GGUF with llama.cpp's own blocks instead (e.g. `cargo xtask synth-gguf --type q8_0|q4_0`)",
                q.as_str()
            )))
        }
        (_, dtype) => dtype,
    };
    // bench-backend reads the file first: clear errors for truncation, architecture, every
    // tensor's shape and type (llama.cpp's own messages only reach the log), and the config for
    // ModelInfo.
    let src = TensorSource::gguf(&path, "llamacpp")?;
    src.check_shapes()?;
    let gguf = src.gguf_file().expect("opened as a GGUF file");
    if let Some(t) = gguf.tensors.iter().find(|t| t.ggml_type.block().is_none()) {
        return Err(Error::NotImplemented(format!(
            "tensor {} has {}, which llama3-bench does not read (supported: {})",
            t.name,
            t.ggml_type,
            bench_backend::ggml_blocks::SUPPORTED
        )));
    }
    let cfg = src.config().clone();
    let synthetic = gguf.is_synthetic();
    if gguf.get("tokenizer.ggml.tokens").is_none() {
        // llama.cpp sizes its output layer from the vocabulary it reads from the file.
        return Err(Error::ModelFiles(format!(
            "{}: llama.cpp needs the GGUF's tokenizer metadata (tokenizer.ggml.tokens), which this file lacks; \
             run it on native or torch, or add the metadata",
            path.display()
        )));
    }
    let source_types = gguf.type_summary();
    drop(src);

    check_cpu_supports_build()?;
    let backend = llama_backend()?;

    let converted = match target {
        Some(dtype) => Some(convert::convert(&path, dtype)?),
        None => None,
    };
    let load_path: &Path = converted.as_ref().map(|c| c.path()).unwrap_or(&path);
    let loaded = GgufFile::open(load_path)?;
    let (weight_bytes, weight_bytes_per_token) = weight_bytes(&loaded, &cfg)?;
    let weights = match target {
        Some(d) => format!("{} (converted by llama.cpp from gguf {source_types})", d.as_str()),
        None => format!("gguf {source_types}"),
    };
    let weights = if synthetic { format!("synthetic {weights}") } else { weights };
    drop(loaded);

    let params = LlamaModelParams::default();
    logs::take_errors();
    let model = LlamaModel::load_from_file(backend, load_path, &params)
        .map_err(|e| Error::Backend(format!("llama.cpp could not load {}: {}", load_path.display(), logs::take_errors().unwrap_or_else(|| e.to_string()))))?;
    let max_seq_len = spec.cache_len(cfg.arch.context_length);
    let slots = spec.slots.max(1);
    let threads = spec.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    THREADS.store(threads, std::sync::atomic::Ordering::Relaxed);
    let threads = threads as i32;
    let ctx_params = LlamaContextParams::default()
        // One sequence per slot, each with its own stream of max_seq_len cells (not unified).
        .with_n_ctx(NonZeroU32::new((max_seq_len * slots) as u32))
        .with_n_batch((max_seq_len * slots) as u32)
        .with_n_ubatch(max_seq_len.min(512) as u32)
        .with_n_seq_max(slots as u32)
        .with_kv_unified(false)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_no_perf(true);
    // `--dtype f32` means f32 everywhere: the KV cache too (llama.cpp's default is f16), and no
    // flash attention (its CPU kernel rounds through f16: max |Δ| 3.7e-2 on SmolLM2's logits
    // against the f32 reference, 7.8e-5 without it).
    let f32_attention = f32_attention || target == Some(DType::F32);
    let ctx_params = if f32_attention {
        ctx_params.with_type_k(KvCacheType::F32).with_type_v(KvCacheType::F32).with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED)
    } else {
        ctx_params
    };
    let session = Session::try_new(model, |m| {
        m.new_context(backend, ctx_params).map_err(|e| {
            Error::Backend(format!("llama.cpp could not create a context of {max_seq_len} tokens: {}", logs::take_errors().unwrap_or_else(|| e.to_string())))
        })
    })?;
    let n_vocab = session.borrow_owner().n_vocab() as usize;
    if n_vocab != 0 && n_vocab != cfg.arch.vocab_size {
        return Err(Error::ModelFiles(format!(
            "{}: llama.cpp reads a vocabulary of {n_vocab} tokens but the embedding has {} rows",
            path.display(),
            cfg.arch.vocab_size
        )));
    }
    let info = ModelInfo {
        name: path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        parameters: cfg.arch.parameters(),
        weight_bytes,
        weight_bytes_per_token,
        weights,
        // ggml computes in f32 whatever the weights are stored in.
        compute_dtype: DType::F32,
        device: format!("cpu ({})", simd_summary()),
        synthetic,
        max_seq_len,
        architecture: cfg.arch.clone(),
        kernels: format!(
            "llama.cpp ggml-cpu ({}), {}",
            simd_summary(),
            match (target, f32_attention) {
                (Some(_), true) => "f32 KV cache, no flash attention",
                (Some(_), false) => "f16 KV cache",
                (None, true) => "the file's blocks, f32 KV cache, no flash attention",
                (None, false) => "the file's blocks, f16 KV cache",
            }
        ) + &if slots > 1 { format!(", {slots} sequences per llama_batch (one seq_id per KV-cache slot)") } else { String::new() },
        shards: Vec::new(),
        kv_cache_bytes: bench_backend::memory::kv_cache_bytes(&cfg.arch, max_seq_len, slots, if f32_attention { 4 } else { 2 }),
    };
    Ok(LlamaCppModel { session, info, cached: vec![0; slots], n_batch: max_seq_len, _converted: converted })
}

/// (bytes of every weight as llama.cpp holds them, bytes read to decode one token): every matrix,
/// one embedding row, and the whole embedding again when it doubles as the output head.
fn weight_bytes(gguf: &GgufFile, cfg: &ModelConfig) -> Result<(u64, u64)> {
    let mut bytes = WeightBytes::default();
    let embedding_name = TensorId::global(TensorRole::TokenEmbedding).gguf_name();
    for t in &gguf.tensors {
        let b = t.byte_len().ok_or_else(|| Error::NotImplemented(format!("tensor {} has {}", t.name, t.ggml_type)))?;
        if t.name == embedding_name {
            bytes.embedding(b, cfg.arch.vocab_size as u64, cfg.arch.tied_embeddings);
        } else {
            bytes.whole(b);
        }
    }
    Ok((bytes.held(), bytes.per_token()))
}

impl LlamaCppModel {
    fn run(&mut self, tokens: &[u32], pos: usize, all: bool) -> Result<Vec<Logits>> {
        let vocab = self.info.architecture.vocab_size;
        check_forward_args(tokens, pos, self.cached[0], self.info.max_seq_len, vocab)?;
        let mut out = Vec::with_capacity(if all { tokens.len() } else { 1 });
        let n_batch = self.n_batch;
        let mut failed = None;
        self.session.with_dependent_mut(|_, ctx| {
            let mut batch = LlamaBatch::new(n_batch.min(tokens.len()), 1);
            for (c, chunk) in tokens.chunks(n_batch).enumerate() {
                batch.clear();
                let start = pos + c * n_batch;
                let last_chunk = start + chunk.len() == pos + tokens.len();
                for (i, &t) in chunk.iter().enumerate() {
                    let want = all || (last_chunk && i + 1 == chunk.len());
                    if let Err(e) = batch.add(LlamaToken::new(t as i32), (start + i) as i32, &[0], want) {
                        failed = Some(format!("filling the batch: {e}"));
                        return;
                    }
                }
                let span = tracing::trace_span!("llama.cpp decode", tokens = chunk.len()).entered();
                let decoded = ctx.decode(&mut batch);
                drop(span);
                if let Err(e) = decoded {
                    failed = Some(format!("llama_decode failed: {e}"));
                    return;
                }
                for i in 0..chunk.len() {
                    if all || (last_chunk && i + 1 == chunk.len()) {
                        let row = ctx.get_logits_ith(i as i32);
                        if row.len() != vocab {
                            failed = Some(format!(
                                "llama.cpp returned {} logits, expected {vocab}: the GGUF needs tokenizer metadata for llama.cpp to size its output",
                                row.len()
                            ));
                            return;
                        }
                        out.push(row.to_vec());
                    }
                }
            }
        });
        if let Some(e) = failed {
            // The cache may hold part of the batch now: start over at the next reset.
            self.reset_slot(0);
            return Err(Error::Backend(e));
        }
        self.cached[0] = pos + tokens.len();
        Ok(out)
    }

    /// Every sequence's tokens in one `llama_batch`, each token tagged with its slot's `seq_id`
    /// and position; logits asked for each sequence's last token only.
    fn run_batch(&mut self, seqs: &[SeqStep]) -> Result<Vec<Logits>> {
        let vocab = self.info.architecture.vocab_size;
        check_batch_args(seqs, &self.cached, self.info.max_seq_len, vocab)?;
        let total: usize = seqs.iter().map(|s| s.tokens.len()).sum();
        let mut out = Vec::with_capacity(seqs.len());
        let mut failed = None;
        self.session.with_dependent_mut(|_, ctx| {
            let mut batch = LlamaBatch::new(total, 1);
            let mut last_rows = Vec::with_capacity(seqs.len());
            let mut row = 0;
            for s in seqs {
                for (i, &t) in s.tokens.iter().enumerate() {
                    let last = i + 1 == s.tokens.len();
                    if let Err(e) = batch.add(LlamaToken::new(t as i32), (s.pos + i) as i32, &[s.slot as i32], last) {
                        failed = Some(format!("filling the batch: {e}"));
                        return;
                    }
                    if last {
                        last_rows.push(row);
                    }
                    row += 1;
                }
            }
            let span = tracing::trace_span!("llama.cpp decode", tokens = total, sequences = seqs.len()).entered();
            let decoded = ctx.decode(&mut batch);
            drop(span);
            if let Err(e) = decoded {
                failed = Some(format!("llama_decode failed: {e}"));
                return;
            }
            for r in last_rows {
                let logits = ctx.get_logits_ith(r);
                if logits.len() != vocab {
                    failed = Some(format!("llama.cpp returned {} logits, expected {vocab}", logits.len()));
                    return;
                }
                out.push(logits.to_vec());
            }
        });
        if let Some(e) = failed {
            for s in seqs {
                self.reset_slot(s.slot);
            }
            return Err(Error::Backend(e));
        }
        for s in seqs {
            self.cached[s.slot] = s.pos + s.tokens.len();
        }
        Ok(out)
    }
}

impl LanguageModel for LlamaCppModel {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Logits> {
        Ok(self.run(tokens, pos, false)?.pop().unwrap_or_default())
    }

    fn forward_all(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<Logits>> {
        self.run(tokens, pos, true)
    }

    fn reset(&mut self) {
        self.session.with_dependent_mut(|_, ctx| ctx.clear_kv_cache());
        self.cached.iter_mut().for_each(|c| *c = 0);
    }

    fn slots(&self) -> usize {
        self.cached.len()
    }

    fn forward_batch(&mut self, seqs: &[SeqStep]) -> Result<Vec<Logits>> {
        self.run_batch(seqs)
    }

    fn reset_slot(&mut self, slot: usize) {
        if slot < self.cached.len() {
            self.session.with_dependent_mut(|_, ctx| {
                let _ = ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
            });
            self.cached[slot] = 0;
        }
    }

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }
}
