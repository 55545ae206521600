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
    let o = run(
        bin_path,
        &["--model", "smollm2-135m", "--prompt", "What is the capital of France?", "--temperature", "0", "--dtype", "f32", "--json", "--max-tokens", "24"],
    );
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
    let r = bench_core::run::bench::BenchmarkResult::from_json(std::str::from_utf8(&o.stdout).unwrap()).unwrap();
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
    let answers: Vec<serde_json::Value> = String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 2, "two questions before /exit");
    assert!(answers[0]["answer"].as_str().unwrap().contains("Paris"));
    // The second turn sees the first (history): it answers about Germany.
    assert!(answers[1]["answer"].as_str().unwrap().contains("Berlin"), "{}", answers[1]);
}

/// Bad chat lines (not UTF-8, over a megabyte, longer than the context) each get a one-line error
/// and the chat goes on to answer the next question; end of input ends it with exit 0.
pub fn chat_survives_bad_lines_and_ends_cleanly_at_eof(bin_path: &Path) {
    let mut child = bin(bin_path)
        .args(["--model", "smollm2-135m", "--temperature", "0", "--dtype", "f32", "--max-tokens", "12", "--max-seq-len", "80", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = b"caf\xe9 au lait?\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', (1 << 20) + 100));
    input.push(b'\n');
    input.extend("word ".repeat(100).into_bytes());
    input.push(b'\n');
    input.extend(b"What is the capital of France?\n");
    let mut stdin = child.stdin.take().unwrap();
    // Written from a thread: the binary loads the model before it reads, and the pipe is small.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "end of input ends the chat with exit 0: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("input line 1 is not valid UTF-8 (bad byte at offset 3)"), "{err}");
    assert!(err.contains(&format!("input line 2 is {} bytes (accepted: up to 1048576)", (1 << 20) + 101)), "{err}");
    assert!(err.contains("input line 3 is") && err.contains("the context holds 80"), "{err}");
    let answers: Vec<serde_json::Value> = String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 1, "only the good question is answered: {answers:?}");
    assert!(answers[0]["answer"].as_str().unwrap().contains("Paris"), "{}", answers[0]);
}

/// Llama 3 405B in f32 (1.6 TB of weights) is refused before a byte is allocated, naming what it
/// needs, what is available and the override; with the override the check is skipped (shown
/// with a model that fits, so nothing large is loaded).
pub fn a_model_larger_than_memory_is_refused_before_loading(bin_path: &Path) {
    let o = run(bin_path, &["--synthetic", "--size", "405B", "--prompt", "hi"]);
    assert_clean_failure(&o, "not enough memory for llama3-405b (synthetic)");
    let err = stderr(&o);
    assert!(err.contains("GB of weights, f32") && err.contains("GB is available") && err.contains("--ignore-memory-check"), "{err}");
    let o = run(bin_path, &["--model", "smollm2-135m", "--ignore-memory-check", "--prompt", "Hi", "--max-tokens", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

pub fn profile_writes_a_chrome_trace(bin_path: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    let o = run(bin_path, &["--prompt", "Hi", "--max-tokens", "3", "--temperature", "0", "--profile", trace.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&trace).unwrap();
    let events: serde_json::Value = serde_json::from_str(&text).expect("valid JSON trace");
    let names: std::collections::HashSet<String> = events.as_array().unwrap().iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect();
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

/// `--device cuda` and `cuda:N` on a build or machine without CUDA: a clear error naming `needle`
/// (the fix), exit 1, no panic, before any weights are read. For a binary whose build cannot use
/// a GPU, so the outcome does not depend on the machine the test runs on.
pub fn cuda_device_without_cuda_is_a_clear_error(bin_path: &Path, needle: &str) {
    for device in ["cuda", "cuda:1"] {
        let o = run(bin_path, &["--model", "smollm2-135m", "--device", device, "--prompt", "Hi", "--max-tokens", "2"]);
        assert_clean_failure(&o, needle);
        let expected = if device == "cuda" { "cuda:0" } else { device };
        assert!(stderr(&o).contains(&format!("device '{expected}'")), "names the device: {}", stderr(&o));
    }
}
