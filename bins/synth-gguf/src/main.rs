//! `synth-gguf` (run by `cargo xtask synth-gguf`, in release): a GGUF with the real Llama 3.2 1B / Llama 3 8B shapes (from
//! `models.toml`), seeded random weights (bench-core's `synthetic::tensor_values`, the values
//! `--synthetic` uses), the real Llama 3 tokenizer as GGUF tokenizer metadata, and the Llama 3
//! chat template. It is marked `llama3_bench.synthetic = true`, which every framework reports.
//!
//! Format: ggml's `docs/gguf.md` (version 3), written as a stream, one tensor at a time, to a
//! partial file renamed into place at the end. Blocks are quantized with candle's k_quants (the
//! ggml block formats; rows split across threads). Tokenizer metadata follows llama.cpp's
//! `convert_hf_to_gguf.py` for Llama 3 (`gpt2` model, `llama-bpe` pre-tokenizer, added special
//! tokens as CONTROL). `q4_k_m` follows llama.cpp's `Q4_K_M` recipe: Q4_K, with Q6_K for the
//! output head (the tied embedding on 1B) and for `attn_v` / `ffn_down` in the layers where
//! `llama-quantize` spends more bits.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bench_backend::arch::Architecture;
use bench_backend::schema::{self, TensorId, TensorRole};
use bench_backend::synthetic;
use bench_hub::cache::Cache;
use bench_hub::download;
use bench_hub::registry::{Registry, Size};
use candle_core::quantized::k_quants::{BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ6K, BlockQ8_0, GgmlType};
use clap::{Parser, ValueEnum};

/// Meta's Llama 3 Instruct chat template (tokenizer_config.json of Meta-Llama-3-8B-Instruct).
pub const LLAMA3_CHAT_TEMPLATE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

const ALIGNMENT: u64 = 32;

/// Write a GGUF with the real Llama 3.2 1B / Llama 3 8B shape, seeded random weights (labelled
/// synthetic in its metadata and every report), the real Llama 3 tokenizer and chat template.
#[derive(Debug, Parser)]
#[command(name = "synth-gguf")]
struct Cli {
    /// Model shape (1B and 8B are written; the larger ones would not fit a test machine)
    #[arg(long, value_enum)]
    size: Size,
    /// Storage: f16, or llama.cpp's q8_0, q4_0, q4_1, q4_k_m block formats
    #[arg(long = "type", value_enum)]
    file_type: FileType,
    /// Seed of the random weights (the values `--synthetic --seed N` generates; 1337 is the
    /// frameworks' default)
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// Output file (default: the cache's synthetic/llama3-SIZE-TYPE-seedN.gguf)
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result =
        Registry::load().map_err(anyhow::Error::from).and_then(|registry| run(&registry, &Cache::from_env(), cli.size, cli.file_type, cli.seed, cli.out));
    match result {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileType {
    F16,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_1")]
    Q4_1,
    #[value(name = "q4_k_m")]
    Q4KM,
}

impl FileType {
    fn name(self) -> &'static str {
        match self {
            FileType::F16 => "f16",
            FileType::Q8_0 => "q8_0",
            FileType::Q4_0 => "q4_0",
            FileType::Q4_1 => "q4_1",
            FileType::Q4KM => "q4_k_m",
        }
    }
    /// llama.cpp's `llama_ftype` number for `general.file_type`.
    fn ftype(self) -> u32 {
        match self {
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q4_1 => 3,
            FileType::Q8_0 => 7,
            FileType::Q4KM => 15,
        }
    }
}

/// ggml tensor types written here, with ggml's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ggml {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q8_0 = 8,
    Q4K = 12,
    Q6K = 14,
}

impl Ggml {
    /// (values per block, bytes per block)
    fn block(self) -> (usize, usize) {
        match self {
            Ggml::F32 => (1, 4),
            Ggml::F16 => (1, 2),
            Ggml::Q4_0 => (32, 18),
            Ggml::Q4_1 => (32, 20),
            Ggml::Q8_0 => (32, 34),
            Ggml::Q4K => (256, 144),
            Ggml::Q6K => (256, 210),
        }
    }
    fn bytes(self, values: usize) -> u64 {
        let (per, bytes) = self.block();
        (values / per * bytes) as u64
    }
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third between.
fn use_more_bits(layer: usize, layers: usize) -> bool {
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
}

/// The ggml type of a weight of the schema in a file of type `ty`.
fn tensor_type(id: TensorId, ty: FileType, arch: &Architecture) -> Ggml {
    if id.role.is_norm() {
        return Ggml::F32;
    }
    let base = match ty {
        FileType::F16 => return Ggml::F16,
        FileType::Q8_0 => return Ggml::Q8_0,
        FileType::Q4_0 => return Ggml::Q4_0,
        FileType::Q4_1 => return Ggml::Q4_1,
        FileType::Q4KM => Ggml::Q4K,
    };
    let head = id.role == TensorRole::Output || (arch.tied_embeddings && id.role == TensorRole::TokenEmbedding);
    match id.layer {
        _ if head => Ggml::Q6K,
        Some(i) if matches!(id.role, TensorRole::AttnV | TensorRole::FfnDown) && use_more_bits(i, arch.layers) => Ggml::Q6K,
        _ => base,
    }
}

/// Quantizes rows of `values` into ggml blocks, splitting the rows across threads.
fn encode(values: &[f32], ty: Ggml) -> Vec<u8> {
    fn blocks<B: GgmlType>(xs: &[f32]) -> Vec<u8> {
        let mut ys = vec![B::zeros(); xs.len() / B::BLCK_SIZE];
        B::from_float(xs, &mut ys);
        // SAFETY: candle's block structs are `#[repr(C)]` copies of ggml's block layouts
        // (checked against ggml's sizes below), made of plain integers and f16s.
        let bytes = unsafe { std::slice::from_raw_parts(ys.as_ptr() as *const u8, std::mem::size_of_val(ys.as_slice())) };
        bytes.to_vec()
    }
    let one = |xs: &[f32]| -> Vec<u8> {
        match ty {
            Ggml::F32 => xs.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Ggml::F16 => xs.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
            Ggml::Q4_0 => blocks::<BlockQ4_0>(xs),
            Ggml::Q4_1 => blocks::<BlockQ4_1>(xs),
            Ggml::Q8_0 => blocks::<BlockQ8_0>(xs),
            Ggml::Q4K => blocks::<BlockQ4K>(xs),
            Ggml::Q6K => blocks::<BlockQ6K>(xs),
        }
    };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let per = ty.block().0;
    let part = (values.len() / per).div_ceil(threads).max(1) * per;
    let parts: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = values.chunks(part).map(|c| s.spawn(move || one(c))).collect();
        handles.into_iter().map(|h| h.join().expect("quantization thread")).collect()
    });
    parts.concat()
}

enum Meta {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_meta(out: &mut Vec<u8>, key: &str, v: &Meta) {
    put_str(out, key);
    match v {
        Meta::U32(x) => {
            out.extend(4u32.to_le_bytes());
            out.extend(x.to_le_bytes());
        }
        Meta::F32(x) => {
            out.extend(6u32.to_le_bytes());
            out.extend(x.to_le_bytes());
        }
        Meta::Bool(x) => {
            out.extend(7u32.to_le_bytes());
            out.push(u8::from(*x));
        }
        Meta::Str(s) => {
            out.extend(8u32.to_le_bytes());
            put_str(out, s);
        }
        Meta::StrArray(a) => {
            out.extend(9u32.to_le_bytes());
            out.extend(8u32.to_le_bytes());
            out.extend((a.len() as u64).to_le_bytes());
            for s in a {
                put_str(out, s);
            }
        }
        Meta::I32Array(a) => {
            out.extend(9u32.to_le_bytes());
            out.extend(5u32.to_le_bytes());
            out.extend((a.len() as u64).to_le_bytes());
            for x in a {
                out.extend(x.to_le_bytes());
            }
        }
    }
}

/// Tokens, token types and merges from the Llama 3 `tokenizer.json`, as llama.cpp's converter
/// writes them: ids without a token become `[PAD{id}]`, added special tokens are CONTROL (3),
/// other added tokens USER_DEFINED (4), the rest NORMAL (1).
fn tokenizer_metadata(path: &Path, vocab_size: usize) -> Result<Vec<(String, Meta)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    let mut types = vec![1i32; vocab_size];
    let vocab = json["model"]["vocab"].as_object().with_context(|| format!("{}: no model.vocab", path.display()))?;
    for (tok, id) in vocab {
        let id = id.as_u64().context("vocab id")? as usize;
        if id < vocab_size {
            tokens[id] = Some(tok.clone());
        }
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let id = added["id"].as_u64().context("added token id")? as usize;
        if id < vocab_size {
            tokens[id] = Some(added["content"].as_str().unwrap_or_default().to_string());
            types[id] = if added["special"].as_bool().unwrap_or(false) { 3 } else { 4 };
        }
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = 4;
                format!("[PAD{i}]")
            })
        })
        .collect();
    let merges: Vec<String> = json["model"]["merges"]
        .as_array()
        .with_context(|| format!("{}: no model.merges", path.display()))?
        .iter()
        .filter_map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(p) => Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?)),
            _ => None,
        })
        .collect();
    let id_of = |t: &str| tokens.iter().position(|x| x == t).map(|i| i as u32);
    let bos = id_of("<|begin_of_text|>").context("the tokenizer has no <|begin_of_text|>")?;
    let eot = id_of("<|eot_id|>").context("the tokenizer has no <|eot_id|>")?;
    Ok(vec![
        ("tokenizer.ggml.model".into(), Meta::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Meta::Str("llama-bpe".into())),
        ("tokenizer.ggml.tokens".into(), Meta::StrArray(tokens)),
        ("tokenizer.ggml.token_type".into(), Meta::I32Array(types)),
        ("tokenizer.ggml.merges".into(), Meta::StrArray(merges)),
        ("tokenizer.ggml.bos_token_id".into(), Meta::U32(bos)),
        // The Instruct models end a turn with <|eot_id|> (as Meta's generation_config.json says).
        ("tokenizer.ggml.eos_token_id".into(), Meta::U32(eot)),
        ("tokenizer.ggml.add_bos_token".into(), Meta::Bool(true)),
        ("tokenizer.chat_template".into(), Meta::Str(LLAMA3_CHAT_TEMPLATE.into())),
    ])
}

/// Llama 3.1's RoPE frequency factors (llama.cpp's `rope_freqs.weight`): 1 for high frequencies,
/// `factor` for low ones, smoothly between (as `convert_hf_to_gguf.py` computes them).
fn rope_factors(arch: &Architecture) -> Option<Vec<f32>> {
    let s = arch.rope_scaling?;
    let dim = arch.head_dim();
    let (low_wavelen, high_wavelen) =
        (s.original_context_length as f64 / s.low_freq_factor as f64, s.original_context_length as f64 / s.high_freq_factor as f64);
    Some(
        (0..dim / 2)
            .map(|i| {
                let freq = 1.0 / (arch.rope_theta as f64).powf(2.0 * i as f64 / dim as f64);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                (if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    s.factor as f64
                } else {
                    let smooth =
                        (s.original_context_length as f64 / wavelen - s.low_freq_factor as f64) / (s.high_freq_factor as f64 - s.low_freq_factor as f64);
                    1.0 / ((1.0 - smooth) / s.factor as f64 + smooth)
                }) as f32
            })
            .collect(),
    )
}

fn default_path(cache: &Cache, size: Size, ty: FileType, seed: u64) -> PathBuf {
    let s = size.as_str().to_ascii_lowercase();
    cache.root().join("synthetic").join(format!("llama3-{s}-{}-seed{seed}.gguf", ty.name()))
}

fn run(registry: &Registry, cache: &Cache, size: Size, ty: FileType, seed: u64, out: Option<PathBuf>) -> Result<PathBuf> {
    for (ggml, got) in [
        (Ggml::Q4_0, std::mem::size_of::<BlockQ4_0>()),
        (Ggml::Q4_1, std::mem::size_of::<BlockQ4_1>()),
        (Ggml::Q8_0, std::mem::size_of::<BlockQ8_0>()),
        (Ggml::Q4K, std::mem::size_of::<BlockQ4K>()),
        (Ggml::Q6K, std::mem::size_of::<BlockQ6K>()),
    ] {
        if ggml.block().1 != got {
            bail!("candle's {ggml:?} block is {got} bytes, ggml's is {}: this candle version's layout differs", ggml.block().1);
        }
    }
    let (model, label) = match size {
        Size::B1 => ("llama3-1b", "Llama 3.2 1B"),
        Size::B8 => ("llama3-8b", "Llama 3 8B"),
        Size::B70 | Size::B405 => bail!("synth-gguf writes the 1B and 8B shapes; a {size} file would not fit this kind of machine"),
    };
    let arch = registry.model(model)?.architecture.clone();
    let path = out.unwrap_or_else(|| default_path(cache, size, ty, seed));
    if path.is_file() {
        println!("{} already exists (written atomically, so complete); delete it to write it again", path.display());
        return Ok(path);
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let tokenizer_files = download::fetch(registry, cache, "llama3-tokenizer")?.paths().to_vec();
    let tokenizer_json =
        tokenizer_files.iter().find(|p| p.file_name().is_some_and(|n| n == "tokenizer.json")).context("the llama3-tokenizer asset has no tokenizer.json")?;

    let started = Instant::now();
    let a = |k: &str| format!("llama.{k}");
    let mut meta: Vec<(String, Meta)> = vec![
        ("general.architecture".into(), Meta::Str("llama".into())),
        ("general.name".into(), Meta::Str(format!("{label} shape, SYNTHETIC seeded random weights (seed {seed})"))),
        ("general.file_type".into(), Meta::U32(ty.ftype())),
        ("general.quantization_version".into(), Meta::U32(2)),
        ("general.alignment".into(), Meta::U32(ALIGNMENT as u32)),
        (bench_backend::gguf::SYNTHETIC_KEY.into(), Meta::Bool(true)),
        ("llama3_bench.seed".into(), Meta::U32(seed as u32)),
        (a("block_count"), Meta::U32(arch.layers as u32)),
        (a("context_length"), Meta::U32(arch.context_length as u32)),
        (a("embedding_length"), Meta::U32(arch.dim as u32)),
        (a("feed_forward_length"), Meta::U32(arch.ffn_dim as u32)),
        (a("attention.head_count"), Meta::U32(arch.heads as u32)),
        (a("attention.head_count_kv"), Meta::U32(arch.kv_heads as u32)),
        (a("rope.freq_base"), Meta::F32(arch.rope_theta)),
        (a("rope.dimension_count"), Meta::U32(arch.head_dim() as u32)),
        (a("attention.layer_norm_rms_epsilon"), Meta::F32(arch.norm_eps as f32)),
        (a("vocab_size"), Meta::U32(arch.vocab_size as u32)),
    ];
    meta.extend(tokenizer_metadata(tokenizer_json, arch.vocab_size)?);

    // Tensor table: GGUF lists dimensions fastest-first, the reverse of the row-major shapes.
    // The schema's weights, then Llama 3.1's RoPE factors (no TensorId: not a weight).
    let mut tensors: Vec<(String, Vec<usize>, Ggml, Option<TensorId>)> =
        schema::tensors(&arch).into_iter().map(|id| (id.gguf_name(), id.shape(&arch), tensor_type(id, ty, &arch), Some(id))).collect();
    let factors = rope_factors(&arch);
    if let Some(f) = &factors {
        tensors.push((schema::GGUF_ROPE_FREQS.into(), vec![f.len()], Ggml::F32, None));
    }
    let mut header = Vec::new();
    header.extend(b"GGUF");
    header.extend(3u32.to_le_bytes());
    header.extend((tensors.len() as u64).to_le_bytes());
    header.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in &meta {
        put_meta(&mut header, k, v);
    }
    let mut offset = 0u64;
    let mut offsets = Vec::with_capacity(tensors.len());
    for (name, shape, t, _) in &tensors {
        put_str(&mut header, name);
        header.extend((shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            header.extend((*d as u64).to_le_bytes());
        }
        header.extend((*t as u32).to_le_bytes());
        header.extend(offset.to_le_bytes());
        offsets.push(offset);
        offset = (offset + t.bytes(shape.iter().product())).div_ceil(ALIGNMENT) * ALIGNMENT;
    }
    header.resize((header.len() as u64).div_ceil(ALIGNMENT) as usize * ALIGNMENT as usize, 0);

    let partial = dir.join(format!(".{}.partial", path.file_name().unwrap_or_default().to_string_lossy()));
    let result = (|| -> Result<()> {
        let mut w = BufWriter::with_capacity(1 << 22, std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?);
        w.write_all(&header)?;
        let mut written = 0u64;
        for ((_, shape, t, id), off) in tensors.iter().zip(&offsets) {
            let pad = off - written;
            w.write_all(&vec![0u8; pad as usize])?;
            let values = match (id, &factors) {
                (Some(id), _) => synthetic::tensor_values(seed, *id, shape),
                (None, Some(f)) => f.clone(),
                (None, None) => unreachable!("only the RoPE factors have no TensorId"),
            };
            let bytes = encode(&values, *t);
            debug_assert_eq!(bytes.len() as u64, t.bytes(values.len()));
            w.write_all(&bytes)?;
            written = off + bytes.len() as u64;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("writing {}", path.display())));
    }
    std::fs::rename(&partial, &path).with_context(|| format!("moving {} into place", partial.display()))?;
    let len = std::fs::metadata(&path)?.len();
    println!(
        "wrote {} ({:.3} GB, {label} shape, {} blocks, SYNTHETIC seeded weights, seed {seed}) in {:.1} s",
        path.display(),
        len as f64 / 1e9,
        ty.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(path)
}
