//! The tokenizers against llama.cpp's reference cases (`ggml-vocab-{llama-bpe,gpt-2}.gguf.inp/.out`,
//! shipped in the llama-cpp-python source distribution): text -> ids must match exactly, and
//! decoding must give the text back.

mod common;

use bench_backend::gguf::GgufFile;
use bench_core::text::chat::{encode_chat, ChatTemplate, Message, Role};
use bench_core::text::tokenizer::{TokenStream, Tokenizer};

/// (text, expected ids) pairs, split as llama.cpp's `test-tokenizer-0` splits them.
fn cases(vocab: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(common::fetch_file("tokenizer-references", &format!("{vocab}.inp"))).unwrap();
    let out = std::fs::read_to_string(common::fetch_file("tokenizer-references", &format!("{vocab}.out"))).unwrap();
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let ids: Vec<Vec<u32>> = out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    // The file ends with a separator and an empty remainder.
    let texts = &texts[..ids.len()];
    texts.iter().map(|t| t.to_string()).zip(ids).collect()
}

fn check(label: &str, tokenizer: &Tokenizer, cases: &[(String, Vec<u32>)]) -> usize {
    let mut failures = vec![];
    for (text, expected) in cases {
        let got = tokenizer.encode(text, false).unwrap();
        if &got != expected {
            failures.push(format!("{text:?}: expected {expected:?}, got {got:?}"));
            continue;
        }
        let back = tokenizer.decode(&got, false).unwrap();
        if &back != text {
            failures.push(format!("{text:?}: decodes to {back:?}"));
        }
    }
    println!("{label}: {} reference cases run, {} passed", cases.len(), cases.len() - failures.len());
    assert!(failures.is_empty(), "{label}: {} failures:\n{}", failures.len(), failures.join("\n"));
    cases.len()
}

#[test]
fn llama_bpe_from_gguf_matches_llama_cpp() {
    let cases = cases("ggml-vocab-llama-bpe.gguf");
    assert!(cases.len() >= 30, "expected the full reference set, got {}", cases.len());
    let gguf = GgufFile::open(common::fetch_file("tokenizer-references", "ggml-vocab-llama-bpe.gguf")).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    check("llama-bpe (GGUF vocabulary)", &tok, &cases);
}

#[test]
fn llama3_tokenizer_json_matches_llama_cpp() {
    let cases = cases("ggml-vocab-llama-bpe.gguf");
    let tok = Tokenizer::from_json_file(&common::fetch_file("llama3-tokenizer", "tokenizer.json")).unwrap();
    assert_eq!(tok.vocab_size(), 128_256);
    assert_eq!(tok.bos(), Some(128_000));
    assert_eq!(tok.token_to_id("<|eot_id|>"), Some(128_009));
    assert!(tok.is_stop(128_009));
    check("llama3 tokenizer.json", &tok, &cases);
}

#[test]
fn gpt2_from_gguf_matches_llama_cpp() {
    let cases = cases("ggml-vocab-gpt-2.gguf");
    let gguf = GgufFile::open(common::fetch_file("tokenizer-references", "ggml-vocab-gpt-2.gguf")).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    check("gpt-2 (GGUF vocabulary)", &tok, &cases);
}

#[test]
fn llama3_chat_template_encodes_headers_as_single_tokens() {
    let tok = Tokenizer::from_json_file(&common::fetch_file("llama3-tokenizer", "tokenizer.json")).unwrap();
    let tmpl = ChatTemplate::for_tokenizer(&tok);
    assert!(matches!(tmpl, ChatTemplate::Llama3));
    let ids = encode_chat(&tok, &tmpl, &[Message::new(Role::User, "Hi")]).unwrap();
    // <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n
    // (ids from the Llama 3 vocabulary: user=882, "\n\n"=271, Hi=13347, assistant=78191)
    assert_eq!(ids, vec![128000, 128006, 882, 128007, 271, 13347, 128009, 128006, 78191, 128007, 271]);
}

#[test]
fn smollm2_embedded_tokenizer_and_chatml_template() {
    let gguf = GgufFile::open(common::fetch_file("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    assert!(!tok.adds_bos());
    let im_start = tok.token_to_id("<|im_start|>").unwrap();
    let im_end = tok.token_to_id("<|im_end|>").unwrap();
    assert_eq!((im_start, im_end), (1, 2));
    assert!(tok.is_stop(im_end));
    let tmpl = ChatTemplate::for_tokenizer(&tok);
    let text = tmpl.render(&[Message::new(Role::User, "What is 2+2?")], true, "", "<|im_end|>").unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = encode_chat(&tok, &tmpl, &[Message::new(Role::User, "What is 2+2?")]).unwrap();
    assert_eq!(ids[0], im_start);
    assert_eq!(ids.iter().filter(|&&i| i == im_end).count(), 2);
    // SmolLM's pre-tokenizer splits digits one by one.
    let two_plus_two = tok.encode("2+2=4", false).unwrap();
    assert_eq!(two_plus_two.len(), 5);
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
}

#[test]
fn streaming_never_splits_a_character() {
    let tok = Tokenizer::from_json_file(&common::fetch_file("llama3-tokenizer", "tokenizer.json")).unwrap();
    let text = "Grüße 🦙 нещо 日本語 ½!";
    let ids = tok.encode(text, false).unwrap();
    let mut stream = TokenStream::new(&tok);
    let mut out = String::new();
    for &id in &ids {
        if let Some(piece) = stream.push(id).unwrap() {
            assert!(!piece.contains('\u{FFFD}'), "piece {piece:?} splits a character");
            out.push_str(&piece);
        }
    }
    out.extend(stream.finish().unwrap());
    assert_eq!(out, text);
    // The llama emoji is several byte-level tokens: at least one push returned nothing.
    assert!(ids.len() > text.split_whitespace().count());
}
