//! The shared conformance suite, run against the llama.cpp framework.
//!
//! Every check of `backend_conformance` runs here except four, which test features llama.cpp
//! does not have (each is replaced by a test that the input is refused clearly):
//! - `tiny_gguf_matches_reference`: the hand-made tiny GGUF has no tokenizer metadata, and
//!   llama.cpp sizes its output layer from the file's vocabulary; the f32 checks on the real
//!   SmolLM2 GGUF cover the same maths at every position.
//! - `synthetic_llama3_1b_shape`: llama.cpp reads weights from GGUF files only, so in-memory
//!   synthetic weights are refused; synthetic weights reach it as a `cargo xtask synth-gguf` file.
//! - `quantized_int8_and_nf4_memory_and_quality` and `nf4_with_indivisible_rows_is_an_error`:
//!   bench-core's int8 / NF4 formats have no llama.cpp kernels; llama.cpp runs its own GGUF blocks.
//!
//! The safetensors check runs: llama.cpp reads GGUF only, and a safetensors model is refused with
//! a message naming the file.

use backend_conformance as suite;
use backend_llamacpp::LlamaCppBackend;
use bench_backend::backend::{Quantize, WeightSource};
use bench_hub::registry::Registry;

backend_conformance::conformance_checks!(LlamaCppBackend;
    f32_logits_match_reference,
    kv_cache_decode_matches_reference,
    greedy_answer_mentions_paris,
    quantized_top5_overlaps_reference,
    truncated_gguf_is_an_error,
    unsupported_architecture_is_an_error,
    unsupported_tensor_type_is_an_error,
    corrupt_safetensors_is_an_error,
    wrong_shaped_gguf_tensor_is_an_error,
    prompt_longer_than_context_is_an_error,
);

fn load_error(spec: bench_backend::backend::LoadSpec) -> String {
    use bench_backend::backend::Backend;
    match LlamaCppBackend.load(&spec) {
        Ok(_) => panic!("loading should have failed"),
        Err(e) => e.to_string(),
    }
}

/// In place of `synthetic_llama3_1b_shape`: in-memory synthetic weights are refused, pointing at
/// `cargo xtask synth-gguf`.
#[test]
fn synthetic_weights_in_memory_are_refused_with_the_fix() {
    let arch = Registry::load().unwrap().model("llama3-1b").unwrap().architecture.clone();
    let err = load_error(suite::spec(WeightSource::Synthetic { arch, seed: 7 }, None));
    assert!(err.contains("GGUF files only") && err.contains("cargo xtask synth-gguf"), "{err}");
}

/// In place of the int8 / NF4 checks: `--quantize int8|nf4` is refused, naming llama.cpp's own
/// block formats instead.
#[test]
fn bench_core_quantization_is_refused_with_the_fix() {
    let gguf = suite::fixtures::smollm2_gguf();
    for q in [Quantize::Int8, Quantize::Nf4] {
        let mut s = suite::spec(suite::gguf_source(&gguf), None);
        s.quantize = Some(q);
        let err = load_error(s);
        assert!(err.contains("no kernels") && err.contains("q8_0"), "{err}");
    }
}

/// In place of `tiny_gguf_matches_reference`: a GGUF without tokenizer metadata is refused,
/// saying what is missing.
#[test]
fn gguf_without_tokenizer_metadata_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    suite::fixtures::GgufBuilder::tiny_llama("llama").write(&path);
    let err = load_error(suite::spec(suite::gguf_source(&path), None));
    assert!(err.contains("tokenizer metadata") && err.contains("tiny.gguf"), "{err}");
}
