//! The command-line checks every per-framework binary must pass, run as a user runs it: real
//! SmolLM2 GGUF, real process, exit codes and messages. Instantiated per binary by
//! [`crate::cli_suite!`].

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn bin(path: &Path) -> Command {
    // Make sure the model is in the cache (the binary itself is not asked to download).
    crate::fixtures::smollm2_gguf();
    Command::new(path)
}

fn run(path: &Path, args: &[&str]) -> Output {
    bin(path).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failure: non-zero exit, the expected message, no panic.
fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "should fail: {err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

pub fn greedy_prompt_json_mentions_paris(bin_path: &Path) {
    let o = run(bin_path, &["--model", "smollm2-135m", "--prompt", "What is the capital of France?", "--temperature", "0", "--dtype", "f32", "--json", "--max-tokens", "24"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON only");
    assert!(v["text"].as_str().unwrap().contains("Paris"), "{v}");
    assert!(!v["prompt_ids"].as_array().unwrap().is_empty());
    assert!(!v["generated_ids"].as_array().unwrap().is_empty());
    assert!(v["framework"].is_string());
}

pub fn benchmark_json_is_a_benchmark_result(bin_path: &Path) {
    let o = run(bin_path, &["--model", "smollm2-135m", "--benchmark", "--iterations", "2", "--warmup", "0", "--gen-tokens", "6", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = bench_core::bench::BenchmarkResult::from_json(std::str::from_utf8(&o.stdout).unwrap()).unwrap();
    assert_eq!((r.iterations, r.generated_tokens), (2, 6));
    assert_eq!(r.samples.len(), 2);
    assert!(r.avg_tokens_per_second > 0.0 && r.model_memory_gb > 0.05 && r.peak_memory_gb >= r.model_memory_gb);
    assert_eq!(r.greedy_tokens.len(), 6);
}

pub fn chat_reads_one_question_per_line_from_a_pipe(bin_path: &Path) {
    let mut child = bin(bin_path)
        .args(["--model", "smollm2-135m", "--temperature", "0", "--dtype", "f32", "--max-tokens", "12", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"What is the capital of France?\nAnd of Germany?\n/exit\nignored\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let answers: Vec<serde_json::Value> =
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 2, "two questions before /exit");
    assert!(answers[0]["answer"].as_str().unwrap().contains("Paris"));
    // The second turn sees the first (history): it answers about Germany.
    assert!(answers[1]["answer"].as_str().unwrap().contains("Berlin"), "{}", answers[1]);
}

pub fn profile_writes_a_chrome_trace(bin_path: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    let o = run(bin_path, &["--prompt", "Hi", "--max-tokens", "3", "--temperature", "0", "--profile", trace.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&trace).unwrap();
    let events: serde_json::Value = serde_json::from_str(&text).expect("valid JSON trace");
    let names: std::collections::HashSet<String> =
        events.as_array().unwrap().iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect();
    for span in ["prefill", "attention", "mlp", "sample", "decode_token"] {
        assert!(names.contains(span), "trace lacks {span}: {names:?}");
    }
}

pub fn missing_path_is_a_clear_error(bin_path: &Path) {
    assert_clean_failure(&run(bin_path, &["--model-path", "/nonexistent/model.gguf", "--prompt", "x"]), "does not exist");
}

pub fn empty_directory_is_a_clear_error(bin_path: &Path) {
    let dir = tempfile::tempdir().unwrap();
    assert_clean_failure(&run(bin_path, &["--model-path", dir.path().to_str().unwrap(), "--prompt", "x"]), "contains no model file");
}

pub fn model_type_mismatch_uses_the_original_message(bin_path: &Path) {
    let gguf = crate::fixtures::smollm2_gguf();
    let o = run(bin_path, &["--model-path", gguf.to_str().unwrap(), "--model-type", "gpt", "--benchmark"]);
    assert_clean_failure(&o, "Model type mismatch: expected 'gpt' but detected 'llama'");
}

pub fn prompt_longer_than_the_context_is_a_clear_error(bin_path: &Path) {
    let long = "word ".repeat(40);
    let o = run(bin_path, &["--max-seq-len", "16", "--prompt", &long]);
    assert_clean_failure(&o, "context holds 16");
}

pub fn unknown_model_and_offline_download_are_clear_errors(bin_path: &Path) {
    assert_clean_failure(&run(bin_path, &["--model", "llama9", "--prompt", "x"]), "Known models");
    let o = run(bin_path, &["--size", "1B", "--download", "--prompt", "x"]);
    assert_clean_failure(&o, "--synthetic");
}

pub fn pickle_checkpoints_are_refused(bin_path: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("consolidated.00.pth");
    std::fs::write(&p, b"not really").unwrap();
    assert_clean_failure(&run(bin_path, &["--model-path", p.to_str().unwrap(), "--prompt", "x"]), "pickle");
}
