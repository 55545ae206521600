//! Tokenizers on the `tokenizers` crate: the Llama 3 `tokenizer.json`, and byte-level BPE built
//! from a GGUF file's embedded vocabulary (`tokenizer.ggml.*`), with the pre-tokenizer that the
//! GGUF's `tokenizer.ggml.pre` names (the regexes are llama.cpp's `llama-vocab.cpp`, which are the
//! Hugging Face tokenizers' own).
//!
//! Special tokens are recognised in the input text (so a rendered chat template encodes its
//! headers as single tokens); BOS is added by [`Tokenizer::encode`] when asked, never implicitly.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use bench_backend::gguf::{GgufFile, MetaValue};
use bench_hub::files::{ModelFiles, TokenizerLocation};
use bench_hub::hf_config::ChatConfig;

use crate::{Error, Result};

/// Llama 3's pre-tokenizer regex (`llama-bpe`).
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// ggml token types (`llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    stop_tokens: Vec<u32>,
    add_bos: bool,
    chat_template: Option<String>,
    /// A Hugging Face checkpoint's `bos_token` / `eos_token` texts: chats are then encoded as
    /// transformers' `apply_chat_template` does (see [`crate::text::chat::encode_chat`]).
    checkpoint_tokens: Option<CheckpointTokens>,
    description: String,
}

/// The BOS and EOS texts a checkpoint's `tokenizer_config.json` gives its chat template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointTokens {
    /// `bos_token` ("" when the config has none).
    pub bos: String,
    /// `eos_token` ("" when the config has none).
    pub eos: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("description", &self.description).field("bos", &self.bos).finish()
    }
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// A Hugging Face `tokenizer.json` (e.g. the Llama 3 tokenizer).
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer(format!("cannot load {}: {e}", path.display())))?;
        let id = |t: &str| inner.token_to_id(t);
        let bos = id("<|begin_of_text|>").or_else(|| id("<s>"));
        let stop_tokens: Vec<u32> =
            ["<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "</s>", "<|endoftext|>", "<|im_end|>"].iter().filter_map(|t| id(t)).collect();
        Ok(Self {
            inner,
            bos,
            stop_tokens,
            add_bos: bos.is_some(),
            chat_template: None,
            checkpoint_tokens: None,
            description: format!("tokenizer.json ({})", path.display()),
        })
    }

    /// Byte-level BPE from a GGUF's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let model = gguf.get_str("tokenizer.ggml.model").ok_or_else(|| {
            Error::Tokenizer(format!("{} has no embedded tokenizer (tokenizer.ggml.model); pass a tokenizer.json next to it", gguf.path.display()))
        })?;
        if model != "gpt2" {
            return Err(Error::NotImplemented(format!(
                "GGUF tokenizer model '{model}' (only byte-level BPE, 'gpt2', as used by Llama 3 and SmolLM2, is supported)"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            let arr = gguf.get(key).and_then(MetaValue::as_array).ok_or_else(|| Error::Tokenizer(format!("GGUF lacks {key}")))?;
            arr.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(|| Error::Tokenizer(format!("{key} holds a non-string")))).collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges_raw = strings("tokenizer.ggml.merges")?;
        let types: Vec<i64> = match gguf.get("tokenizer.ggml.token_type").and_then(MetaValue::as_array) {
            Some(arr) => arr.iter().map(|v| v.as_u64().map(|x| x as i64).unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let pre = gguf.get_str("tokenizer.ggml.pre").unwrap_or("default").to_string();

        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let merges = merges_raw
            .iter()
            .map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::Tokenizer("a tokenizer.ggml.merges entry is not 'left right'".into()))?;
        // Every merge must join two tokens into a third: the tokenizers crate assumes it and
        // panics (writes past its buffer) on a merge longer than every token (found by fuzzing).
        if let Some((i, (a, b))) = merges
            .iter()
            .enumerate()
            .find(|(_, (a, b))| !(vocab.contains_key(a.as_str()) && vocab.contains_key(b.as_str()) && vocab.contains_key(&format!("{a}{b}"))))
        {
            return Err(Error::Tokenizer(format!(
                "{}: tokenizer.ggml.merges entry {i} '{a} {b}' does not join two tokens of tokenizer.ggml.tokens into a third (accepted: merges of vocabulary tokens)",
                gguf.path.display()
            )));
        }
        // llama.cpp skips merges for Llama 3 (a word that is a whole token is taken as is), as does
        // the Hugging Face tokenizer.json ("ignore_merges": true).
        let ignore_merges = matches!(pre.as_str(), "llama-bpe" | "llama3");
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).ignore_merges(ignore_merges).build().map_err(tok_err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);

        let pre_tokenizer: PreTokenizerWrapper = match pre.as_str() {
            "llama-bpe" | "llama3" => Sequence::new(vec![
                Split::new(SplitPattern::Regex(LLAMA3_PATTERN.into()), SplitDelimiterBehavior::Isolated, false).map_err(tok_err)?.into(),
                ByteLevel::new(false, true, false).into(),
            ])
            .into(),
            // SmolLM (like StarCoder): every digit on its own, then GPT-2's regex.
            "smollm" | "starcoder" | "refact" => Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into(),
            "gpt2" | "gpt-2" | "default" => ByteLevel::new(false, true, true).into(),
            other => return Err(Error::NotImplemented(format!("GGUF pre-tokenizer '{other}' (supported: llama-bpe, smollm, gpt2)"))),
        };
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(types.iter().chain(std::iter::repeat(&1)))
            .filter(|(_, &ty)| ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED)
            .map(|(t, &ty)| AddedToken::from(t.clone(), ty == TOKEN_TYPE_CONTROL))
            .collect();
        inner.add_special_tokens(added).map_err(tok_err)?;

        let id_of = |key: &str| gguf.get_u64(key).map(|v| v as u32).filter(|&v| (v as usize) < tokens.len());
        let bos = id_of("tokenizer.ggml.bos_token_id");
        let mut stop_tokens: Vec<u32> = id_of("tokenizer.ggml.eos_token_id").into_iter().collect();
        stop_tokens.extend(id_of("tokenizer.ggml.eot_token_id"));
        for t in ["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>"] {
            if let Some(id) = inner.token_to_id(t) {
                if !stop_tokens.contains(&id) {
                    stop_tokens.push(id);
                }
            }
        }
        let add_bos = gguf.get("tokenizer.ggml.add_bos_token").and_then(MetaValue::as_bool).unwrap_or(bos.is_some());
        Ok(Self {
            inner,
            bos,
            stop_tokens,
            add_bos,
            chat_template: gguf.get_str("tokenizer.chat_template").map(str::to_owned),
            checkpoint_tokens: None,
            description: format!("GGUF byte-level BPE, pre-tokenizer '{pre}', {} tokens", tokens.len()),
        })
    }

    /// The tokenizer of a model's files — embedded in the GGUF, or the checkpoint's
    /// `tokenizer.json`, with its `tokenizer_config.json` / `generation_config.json` applied —
    /// or, when the files carry none, the `tokenizer.json` at `fallback`.
    pub fn for_model(files: &ModelFiles, fallback: Option<&Path>) -> Result<Self> {
        let tokenizer = match (&files.tokenizer, fallback) {
            (TokenizerLocation::Gguf(p), _) => Self::from_gguf(&GgufFile::open(p)?)?,
            (TokenizerLocation::Json(p), _) => Self::from_json_file(p)?,
            (TokenizerLocation::Missing, Some(p)) => Self::from_json_file(p)?,
            (TokenizerLocation::Missing, None) => {
                return Err(Error::Tokenizer("the model's files have no tokenizer; put its tokenizer.json next to them".into()))
            }
        };
        match &files.chat_config {
            Some(cfg) => tokenizer.with_chat_config(cfg),
            None => Ok(tokenizer),
        }
    }

    /// Applies a Hugging Face checkpoint's `tokenizer_config.json` and `generation_config.json`
    /// as transformers does: its chat template, its BOS token and whether BOS is added, and the
    /// end-of-sequence ids generation stops at (`generation_config.json`'s `eos_token_id` list,
    /// else the `eos_token`). A token text the vocabulary lacks is an error naming it.
    pub fn with_chat_config(mut self, cfg: &ChatConfig) -> Result<Self> {
        let id = |tok: &Self, text: &str, field: &str| {
            tok.token_to_id(text).ok_or_else(|| Error::Tokenizer(format!("tokenizer_config.json {field} {text:?} is not in the vocabulary")))
        };
        if let Some(bos) = &cfg.bos_token {
            self.bos = Some(id(&self, bos, "bos_token")?);
        }
        let eos = cfg.eos_token.as_deref().map(|t| id(&self, t, "eos_token")).transpose()?;
        if !cfg.eos_token_ids.is_empty() {
            self.stop_tokens = cfg.eos_token_ids.clone();
        } else if let Some(eos) = eos {
            self.stop_tokens = vec![eos];
        }
        if let Some(add) = cfg.add_bos_token {
            self.add_bos = add;
        }
        if cfg.chat_template.is_some() {
            self.chat_template = cfg.chat_template.clone();
            self.checkpoint_tokens = Some(CheckpointTokens { bos: cfg.bos_token.clone().unwrap_or_default(), eos: cfg.eos_token.clone().unwrap_or_default() });
        }
        self.description.push_str(" with tokenizer_config.json");
        Ok(self)
    }

    /// The BOS / EOS texts of a checkpoint's chat template, when the tokenizer has one from
    /// `tokenizer_config.json`.
    pub fn checkpoint_tokens(&self) -> Option<&CheckpointTokens> {
        self.checkpoint_tokens.as_ref()
    }

    /// Token ids of `text`; special tokens written in the text become their ids. Prepends BOS when
    /// `add_bos` is true and the tokenizer has one.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(tok_err)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// Whether the model expects BOS at the start of a prompt.
    pub fn adds_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// Tokens that end a turn (EOS, end-of-turn).
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop_tokens
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_tokens.contains(&id)
    }

    /// The chat template embedded in the model file, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    pub fn description(&self) -> &str {
        &self.description
    }
}

/// Streaming detokenisation: turns generated ids into text pieces as they arrive, holding back
/// bytes until they form whole UTF-8 characters (a byte-level BPE token can end mid-character).
pub struct TokenStream<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    /// Text already emitted corresponds to `ids[..emitted]`, decoded from `ids[prefix..]`.
    prefix: usize,
    emitted: usize,
}

impl<'a> TokenStream<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self { tokenizer, ids: Vec::new(), prefix: 0, emitted: 0 }
    }

    /// Adds one token; returns the text that is now complete, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let before = self.tokenizer.decode(&self.ids[self.prefix..self.emitted], true)?;
        let now = self.tokenizer.decode(&self.ids[self.prefix..], true)?;
        // An incomplete character decodes to U+FFFD at the end: wait for the next token.
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') && now.is_char_boundary(before.len()) {
            let piece = now[before.len()..].to_string();
            self.prefix = self.emitted;
            self.emitted = self.ids.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// Whatever is still held back (e.g. a truncated character at the end of generation).
    pub fn finish(&mut self) -> Result<Option<String>> {
        let before = self.tokenizer.decode(&self.ids[self.prefix..self.emitted], true)?;
        let now = self.tokenizer.decode(&self.ids[self.prefix..], true)?;
        self.prefix = self.emitted;
        self.emitted = self.ids.len();
        Ok((now.len() > before.len() && now.is_char_boundary(before.len())).then(|| now[before.len()..].to_string()))
    }
}
