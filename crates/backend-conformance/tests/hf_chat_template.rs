//! A Hugging Face checkpoint's own chat settings are honoured as transformers honours them: the
//! chat prompt ids equal transformers' `apply_chat_template(messages, add_generation_prompt=True)`
//! (computed by `tests/reference/chat_template.py` in a Python venv, cached by input hash and
//! date), and every id of `generation_config.json`'s `eos_token_id` list stops generation.
//!
//! The checkpoint is made here: the real Llama 3 `tokenizer.json` and Meta's Llama 3.2 Instruct
//! chat template (both fetched through the registry), the `tokenizer_config.json` /
//! `generation_config.json` fields of Llama 3.2 Instruct, and a tiny LLaMA `config.json` +
//! safetensors so that the folder is discovered as a checkpoint.

use std::path::Path;
use std::process::Command;

use backend_conformance::fixtures;
use bench_backend::arch::Architecture;
use bench_backend::backend::{LanguageModel, Logits, ModelInfo};
use bench_core::run::generate::{generate, StopReason};
use bench_core::run::sampling::{Sampler, SamplingConfig};
use bench_core::text::chat::{encode_chat, ChatTemplate, Message, Role};
use bench_core::text::tokenizer::Tokenizer;
use bench_hub::cache::Cache;
use bench_hub::download;
use bench_hub::files;
use bench_hub::registry::Registry;
use sha2::{Digest, Sha256};

const EOS_IDS: [u32; 3] = [128001, 128008, 128009];

fn fetch(name: &str) -> std::path::PathBuf {
    let registry = Registry::load().unwrap();
    download::fetch(&registry, &Cache::from_env(), name).unwrap_or_else(|e| panic!("test setup could not fetch {name}: {e}")).paths()[0].clone()
}

/// A Llama 3.2 Instruct-style checkpoint folder with tiny weights.
fn checkpoint(dir: &Path) {
    std::fs::copy(fetch("llama3-tokenizer"), dir.join("tokenizer.json")).unwrap();
    let template = std::fs::read_to_string(fetch("llama32-chat-template")).unwrap();
    let tokenizer_config = serde_json::json!({
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "chat_template": template,
        "clean_up_tokenization_spaces": true,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    std::fs::write(dir.join("tokenizer_config.json"), tokenizer_config.to_string()).unwrap();
    let generation_config = serde_json::json!({
        "bos_token_id": 128000, "do_sample": true, "eos_token_id": EOS_IDS, "temperature": 0.6, "top_p": 0.9,
    });
    std::fs::write(dir.join("generation_config.json"), generation_config.to_string()).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type":"llama","hidden_size":8,"intermediate_size":16,"num_attention_heads":2,"num_hidden_layers":1,
            "num_key_value_heads":1,"vocab_size":128256,"tie_word_embeddings":true}"#,
    )
    .unwrap();
    // Discovery needs the weights to be there, not to be read.
    std::fs::write(dir.join("model.safetensors"), b"").unwrap();
}

/// transformers' ids for `messages`, from the Python reference (cached by inputs and date: Llama
/// 3.2's template writes today's date through `strftime_now`).
fn transformers_reference(dir: &Path, messages: &serde_json::Value) -> serde_json::Value {
    let script = fixtures::repo_root().join("tests/reference/chat_template.py");
    let today = bench_core::text::chat::strftime("%d %b %Y", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64);
    let mut h = Sha256::new();
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        h.update(std::fs::read(dir.join(f)).unwrap());
    }
    h.update(std::fs::read(&script).unwrap());
    h.update(messages.to_string());
    h.update(&today);
    let out = Cache::from_env().root().join("reference").join(format!("chat-{}.json", &hex::encode(h.finalize())[..16]));
    if !out.is_file() {
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let python = fixtures::python_env("pyref-chat", "requirements-chat.txt");
        let status = Command::new(python).arg(&script).arg(dir).arg(&out).arg(messages.to_string()).status().unwrap();
        assert!(status.success(), "the transformers reference failed");
    }
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn chat_prompt_ids_equal_transformers_apply_chat_template() {
    let dir = tempfile::tempdir().unwrap();
    checkpoint(dir.path());
    let files = files::discover(dir.path()).unwrap();
    assert!(files.chat_config.is_some(), "tokenizer_config.json is read at discovery");
    let tokenizer = Tokenizer::for_model(&files, None).unwrap();
    let template = ChatTemplate::for_tokenizer(&tokenizer);
    let conversations: Vec<Vec<Message>> = vec![
        vec![Message::new(Role::User, "Hello")],
        vec![Message::new(Role::System, "You are a pirate."), Message::new(Role::User, "  What is the capital of France?  ")],
        vec![Message::new(Role::User, "Hi"), Message::new(Role::Assistant, "Hello! How can I help?"), Message::new(Role::User, "Tell me a joke.")],
    ];
    for messages in &conversations {
        let ours = encode_chat(&tokenizer, &template, messages).unwrap();
        let reference = transformers_reference(dir.path(), &serde_json::to_value(messages).unwrap());
        assert_eq!(
            ours,
            ids(&reference["ids"]),
            "prompt ids differ from transformers {}; transformers' text:\n{}\nours:\n{}",
            reference["transformers"],
            reference["text"],
            tokenizer.decode(&ours, false).unwrap()
        );
    }
    // "Hello": the template's system block with its dates, 36 ids (the built-in header format gave 11).
    let hello = encode_chat(&tokenizer, &template, &conversations[0]).unwrap();
    assert_eq!(hello.first(), Some(&128000));
    assert!(tokenizer.decode(&hello, false).unwrap().contains("Cutting Knowledge Date: December 2023\nToday Date: "));
}

/// Emits `script` one token per forward (as the argmax of its logits).
struct Scripted {
    script: Vec<u32>,
    at: usize,
    info: ModelInfo,
}

impl LanguageModel for Scripted {
    fn forward(&mut self, tokens: &[u32], _pos: usize) -> bench_backend::Result<Logits> {
        let mut logits = vec![0.0; self.info.architecture.vocab_size];
        logits[self.script[self.at.min(self.script.len() - 1)] as usize] = 10.0;
        self.at += 1;
        assert!(!tokens.is_empty());
        Ok(logits)
    }
    fn reset(&mut self) {
        self.at = 0;
    }
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }
}

#[test]
fn every_generation_config_eos_id_stops_generation() {
    let dir = tempfile::tempdir().unwrap();
    checkpoint(dir.path());
    let files = files::discover(dir.path()).unwrap();
    let tokenizer = Tokenizer::for_model(&files, None).unwrap();
    let reference = transformers_reference(dir.path(), &serde_json::json!([{"role": "user", "content": "Hello"}]));
    assert_eq!(ids(&reference["eos_token_id"]), EOS_IDS, "transformers reads the same list");
    let arch = Architecture {
        layers: 1,
        dim: 8,
        heads: 2,
        kv_heads: 1,
        ffn_dim: 16,
        vocab_size: 128_256,
        rope_theta: 500_000.0,
        norm_eps: 1e-5,
        tied_embeddings: true,
        context_length: 64,
        rope_scaling: None,
    };
    let info = ModelInfo {
        name: "scripted".into(),
        parameters: 0,
        weight_bytes: 0,
        weight_bytes_per_token: 0,
        weights: "none".into(),
        compute_dtype: bench_backend::backend::DType::F32,
        device: "cpu".into(),
        synthetic: true,
        max_seq_len: 64,
        architecture: arch,
        kernels: String::new(),
        shards: Vec::new(),
        kv_cache_bytes: 0,
    };
    let hello = tokenizer.encode("Hello", false).unwrap()[0];
    let prompt = tokenizer.encode("Hi", true).unwrap();
    for eos in EOS_IDS {
        let mut model = Scripted { script: vec![hello, hello, eos, hello], at: 0, info: info.clone() };
        let mut sampler = Sampler::new(SamplingConfig::greedy());
        let out = generate(&mut model, &tokenizer, &prompt, &mut sampler, 10, |_| {}).unwrap();
        assert_eq!(out.stop_reason, StopReason::StopToken, "eos id {eos}");
        assert_eq!(out.generated_ids, vec![hello, hello], "eos id {eos}");
    }
}
