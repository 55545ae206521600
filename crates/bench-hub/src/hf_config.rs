//! What a Hugging Face checkpoint says about chatting with it, read as transformers reads it:
//!
//! - `tokenizer_config.json`: `chat_template` (a string, or a list of named templates of which
//!   transformers takes `default`), `bos_token` / `eos_token` (a string or an added-token object
//!   with `content`), `add_bos_token`; a `chat_template.jinja` file next to it wins over the
//!   JSON's template, as in transformers 4.43 and later.
//! - `generation_config.json`: `eos_token_id`, one id or a list; generation stops at any of them
//!   (transformers' `GenerationConfig`, whose stopping criteria take every id of the list).
//!
//! transformers' `apply_chat_template(messages, add_generation_prompt=True)` renders the template
//! with `bos_token` / `eos_token` and tokenizes the result with `add_special_tokens=False`: the
//! template alone decides whether BOS is there. bench-core's chat encoding does the same for a
//! checkpoint that has a template here.

use std::path::Path;

use serde_json::Value;

use crate::{Error, Result};

/// The chat settings of a checkpoint folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatConfig {
    /// The Jinja chat template.
    pub chat_template: Option<String>,
    /// The BOS token's text (`bos_token`).
    pub bos_token: Option<String>,
    /// The EOS token's text (`eos_token`).
    pub eos_token: Option<String>,
    /// `add_bos_token`, when the config says.
    pub add_bos_token: Option<bool>,
    /// `generation_config.json`'s `eos_token_id`: every id that ends generation.
    pub eos_token_ids: Vec<u32>,
}

impl ChatConfig {
    /// Reads `tokenizer_config.json`, `chat_template.jinja` and `generation_config.json` in `dir`;
    /// `None` when there is none of them. A file that is there but malformed is an error naming it.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let tokenizer_config = read_json(&dir.join("tokenizer_config.json"))?;
        let generation_config = read_json(&dir.join("generation_config.json"))?;
        let jinja_path = dir.join("chat_template.jinja");
        let jinja = if jinja_path.is_file() {
            Some(std::fs::read_to_string(&jinja_path).map_err(|e| Error::io("reading chat template", &jinja_path, e))?)
        } else {
            None
        };
        if tokenizer_config.is_none() && generation_config.is_none() && jinja.is_none() {
            return Ok(None);
        }
        let mut cfg = ChatConfig::default();
        if let Some((path, v)) = &tokenizer_config {
            cfg.chat_template = chat_template(&v["chat_template"], path)?;
            cfg.bos_token = token_text(&v["bos_token"]);
            cfg.eos_token = token_text(&v["eos_token"]);
            cfg.add_bos_token = v["add_bos_token"].as_bool();
        }
        if jinja.is_some() {
            cfg.chat_template = jinja;
        }
        if let Some((path, v)) = &generation_config {
            cfg.eos_token_ids = token_ids(&v["eos_token_id"]).ok_or_else(|| {
                Error::ModelFiles(format!("{}: eos_token_id is {} (accepted: a token id or a list of token ids)", path.display(), v["eos_token_id"]))
            })?;
        }
        Ok(Some(cfg))
    }
}

fn read_json(path: &Path) -> Result<Option<(std::path::PathBuf, Value)>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| Error::ModelFiles(format!("{} is not valid JSON: {e}", path.display())))?;
    if !v.is_object() {
        return Err(Error::ModelFiles(format!("{} is not a JSON object", path.display())));
    }
    Ok(Some((path.to_path_buf(), v)))
}

/// A string template, or transformers' list of `{name, template}` (the `default` one).
fn chat_template(v: &Value, path: &Path) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Array(list) => Ok(list.iter().find(|t| t["name"] == "default").and_then(|t| t["template"].as_str()).map(str::to_owned)),
        other => Err(Error::ModelFiles(format!("{}: chat_template is {other} (accepted: a string or a list of {{\"name\", \"template\"}})", path.display()))),
    }
}

/// A token as written in `tokenizer_config.json`: a string, or an added-token object.
fn token_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// One id or a list of ids; `null` is none.
fn token_ids(v: &Value) -> Option<Vec<u32>> {
    let one = |x: &Value| x.as_u64().and_then(|n| u32::try_from(n).ok());
    match v {
        Value::Null => Some(vec![]),
        Value::Array(list) => list.iter().map(one).collect(),
        x => one(x).map(|id| vec![id]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_files_as_transformers_does() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|eot_id|>", "lstrip": false},
                "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("generation_config.json"), r#"{"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]}"#).unwrap();
        let c = ChatConfig::read(dir.path()).unwrap().unwrap();
        assert_eq!(c.chat_template.as_deref(), Some("D"));
        assert_eq!(c.bos_token.as_deref(), Some("<|begin_of_text|>"));
        assert_eq!(c.eos_token.as_deref(), Some("<|eot_id|>"));
        assert_eq!(c.eos_token_ids, vec![128001, 128008, 128009]);
        std::fs::write(dir.path().join("generation_config.json"), r#"{"eos_token_id": 2}"#).unwrap();
        assert_eq!(ChatConfig::read(dir.path()).unwrap().unwrap().eos_token_ids, vec![2]);
        std::fs::write(dir.path().join("generation_config.json"), r#"{"eos_token_id": "x"}"#).unwrap();
        let err = ChatConfig::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("generation_config.json: eos_token_id is \"x\""), "{err}");
        assert_eq!(ChatConfig::read(tempfile::tempdir().unwrap().path()).unwrap(), None);
    }
}
