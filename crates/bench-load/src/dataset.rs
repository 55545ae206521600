//! Prompts for the load: a `random` dataset of fixed input lengths in the model's tokens (vLLM's
//! `random` dataset: random token ids, decoded to text), or the prompts of a JSONL file.
//!
//! Lengths are exact where the tokenizer allows: decoding random ids and encoding the text again
//! does not always give the same number of tokens (merges across the joins), so the ids are
//! re-encoded, cut or topped up, and tried again until the text encodes to the asked length.
//! Each prompt's first token is different from every other prompt's (no shared prefix for a
//! prefix cache to reuse).

use std::collections::HashSet;
use std::path::Path;

use bench_core::text::tokenizer::Tokenizer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One prompt and its length in the model's tokens (without the BOS a server may add).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    pub text: String,
    pub input_tokens: usize,
}

/// Ids that decode to plain text: below the first special / added token.
fn text_ids(tok: &Tokenizer) -> u32 {
    let v = tok.vocab_size() as u32;
    // Llama 3 and SmolLM2 keep their special tokens at the top or the very bottom of the
    // vocabulary; ids are drawn from the plain range in between.
    (0..v).rev().find(|&id| tok.id_to_token(id).is_some_and(|t| !(t.starts_with("<|") || t.starts_with('<') && t.ends_with('>')))).map(|id| id + 1).unwrap_or(v)
}

/// `count` prompts of `input_len` tokens each, reproducible from `seed`; `start` offsets the
/// prompt numbers (warm-up prompts use other numbers than the measured ones).
pub fn random(tok: &Tokenizer, count: usize, input_len: usize, seed: u64, start: usize) -> Result<Vec<Prompt>> {
    if input_len == 0 {
        return Err(Error::InvalidInput("--input-len must be at least 1".into()));
    }
    let top = text_ids(tok);
    let low = (0..top).find(|&id| tok.id_to_token(id).is_some_and(|t| !t.starts_with('<'))).unwrap_or(0);
    let mut firsts = HashSet::new();
    let mut out = Vec::with_capacity(count);
    for i in start..start + count {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i as u64));
        let mut best: Option<Prompt> = None;
        for _attempt in 0..8 {
            let mut ids: Vec<u32> = (0..input_len).map(|_| rng.random_range(low..top)).collect();
            let mut text = String::new();
            let mut len = 0;
            for _ in 0..16 {
                text = tok.decode(&ids, true)?;
                let again = tok.encode(&text, false)?;
                len = again.len();
                if len == input_len {
                    break;
                }
                ids = again;
                ids.truncate(input_len);
                while ids.len() < input_len {
                    ids.push(rng.random_range(low..top));
                }
            }
            let first = tok.encode(&text, false)?.first().copied();
            let p = Prompt { text, input_tokens: len };
            if len == input_len && first.is_some_and(|f| !firsts.contains(&f)) {
                firsts.extend(first);
                best = Some(p);
                break;
            }
            if best.is_none() {
                best = Some(p);
            }
        }
        out.extend(best);
    }
    Ok(out)
}

/// The prompts of a JSONL file, one object per line with a `prompt` string (other fields
/// ignored), counted in the model's tokens; `count` of them (cycling when the file has fewer).
pub fn jsonl(path: &Path, tok: &Tokenizer, count: usize) -> Result<Vec<Prompt>> {
    let err = |message: String| Error::Dataset { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let mut prompts = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        #[derive(Deserialize)]
        struct Line {
            prompt: String,
        }
        let l: Line = serde_json::from_str(line).map_err(|e| err(format!("line {}: {e} (each line must be an object with a \"prompt\" string)", n + 1)))?;
        let input_tokens = tok.encode(&l.prompt, false)?.len();
        prompts.push(Prompt { text: l.prompt, input_tokens });
    }
    if prompts.is_empty() {
        return Err(err("no prompts in it (one JSON object with a \"prompt\" string per line)".into()));
    }
    Ok(prompts.iter().cycle().take(count).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the real SmolLM2 tokenizer: every prompt encodes to the asked length, no two share a
    /// first token, the same seed gives the same prompts and another seed others.
    #[test]
    fn random_prompts_have_the_asked_length_and_no_shared_prefix() {
        let tok = backend_conformance::fixtures::smollm2_tokenizer();
        let prompts = random(&tok, 16, 48, 7, 0).unwrap();
        assert_eq!(prompts.len(), 16);
        let mut firsts = HashSet::new();
        for p in &prompts {
            let ids = tok.encode(&p.text, false).unwrap();
            assert_eq!((ids.len(), p.input_tokens), (48, 48), "{:?}", p.text);
            assert!(firsts.insert(ids[0]), "two prompts start with token {}", ids[0]);
        }
        assert_eq!(random(&tok, 16, 48, 7, 0).unwrap(), prompts);
        assert_ne!(random(&tok, 16, 48, 8, 0).unwrap()[0], prompts[0]);
        assert!(random(&tok, 1, 0, 7, 0).is_err());
    }

    #[test]
    fn jsonl_cycles_its_prompts_and_names_a_bad_line() {
        let tok = backend_conformance::fixtures::smollm2_tokenizer();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(&path, "{\"prompt\": \"Hello there\"}\n{\"prompt\": \"Why is the sky blue?\"}\n").unwrap();
        let p = jsonl(&path, &tok, 3).unwrap();
        assert_eq!(p.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(), ["Hello there", "Why is the sky blue?", "Hello there"]);
        assert_eq!(p[0].input_tokens, tok.encode("Hello there", false).unwrap().len());
        std::fs::write(&path, "{\"prompt\": \"ok\"}\n{\"text\": 3}\n").unwrap();
        let e = jsonl(&path, &tok, 1).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("\"prompt\" string"), "{e}");
    }
}
