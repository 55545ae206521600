//! The shared command-line checks, run against `llamacpp-only`.
//!
//! All of `backend_conformance::cli` runs except `profile_writes_a_chrome_trace`, whose spans
//! "attention" and "mlp" come from inside a backend's forward: llama.cpp runs each forward as one
//! ggml graph, so its trace has bench-core's spans (prefill, decode_token, sample) and one
//! `llama.cpp decode` span per forward, which the replacement below checks.

const BIN: &str = env!("CARGO_BIN_EXE_llamacpp-only");

backend_conformance::cli_checks!(BIN;
    greedy_prompt_json_mentions_paris,
    benchmark_json_is_a_benchmark_result,
    chat_reads_one_question_per_line_from_a_pipe,
    missing_path_is_a_clear_error,
    empty_directory_is_a_clear_error,
    model_type_mismatch_uses_the_original_message,
    prompt_longer_than_the_context_is_a_clear_error,
    unknown_model_and_offline_download_are_clear_errors,
    pickle_checkpoints_are_refused,
);

/// `--profile`: the Chrome trace holds bench-core's spans and llama.cpp's decode calls.
#[test]
fn profile_writes_a_chrome_trace_with_llamacpp_decodes() {
    backend_conformance::fixtures::smollm2_gguf();
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    let o = std::process::Command::new(BIN)
        .args(["--prompt", "Hi", "--max-tokens", "3", "--temperature", "0", "--profile", trace.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let events: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).expect("valid JSON trace");
    let names: std::collections::HashSet<String> = events.as_array().unwrap().iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect();
    for span in ["prefill", "sample", "decode_token", "llama.cpp decode"] {
        assert!(names.contains(span), "trace lacks {span}: {names:?}");
    }
}

/// safetensors input: a clear error naming the file and what to do.
#[test]
fn safetensors_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"model_type":"llama","hidden_size":8,"intermediate_size":16,"num_attention_heads":2,"num_hidden_layers":1,"num_key_value_heads":1,"vocab_size":32}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ").unwrap();
    let o = std::process::Command::new(BIN).args(["--model-path", dir.path().to_str().unwrap(), "--prompt", "x"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("GGUF files only") && err.contains("model.safetensors") && !err.contains("panicked"), "{err}");
}
