//! `compare` as a user runs it, on the real SmolLM2 GGUF, with both per-framework binaries.
//! `cargo test --workspace` builds `native-only`, `torch-only` and `llamacpp-only` next to `compare`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bench_core::metrics::comparison::Comparison;

const QUICK: [&str; 7] = ["--iterations", "2", "--warmup", "0", "--gen-tokens", "4", "--no-bandwidth"];

fn compare_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_compare"))
}

fn require(bin: &str) -> PathBuf {
    let p = compare_bin().parent().unwrap().join(bin);
    assert!(p.is_file(), "{} is not built: run the tests with `cargo test --workspace`", p.display());
    p
}

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S], bin_dir: Option<&Path>) -> Output {
    backend_conformance::fixtures::smollm2_gguf();
    let mut c = Command::new(compare_bin());
    c.args(args);
    if let Some(d) = bin_dir {
        c.env("LLAMA3_BENCH_BIN_DIR", d);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn json_has_one_result_per_framework_ratios_and_the_cross_check() {
    require("native-only");
    require("torch-only");
    let o = run(&[&["--framework", "native", "torch", "--model", "smollm2-135m", "--format", "json"][..], &QUICK[..]].concat(), None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let c = Comparison::from_json(std::str::from_utf8(&o.stdout).unwrap()).unwrap();
    let names: Vec<_> = c.results.iter().map(|r| r.framework.as_str()).collect();
    assert_eq!(names, ["native", "torch"]);
    assert!(c.unavailable.is_empty());
    for r in &c.results {
        assert_eq!((r.iterations, r.generated_tokens, r.device.threads), (2, 4, c.settings.threads));
        assert_eq!(r.model.compute_dtype, bench_backend::backend::DType::F32);
    }
    assert_eq!(c.results[0].prompt_tokens, c.results[1].prompt_tokens, "same prompt for both");
    for metric in ["throughput", "latency", "memory", "first_token", "prefill"] {
        assert!(c.ratios.iter().any(|r| r.metric == metric && r.ratio >= 1.0), "ratio for {metric}");
    }
    assert_eq!(c.cross_checks.len(), 1);
    let x = &c.cross_checks[0];
    assert!(x.agree && x.compared_tokens == 4, "{x:?}");
}

#[test]
fn native_alone_runs_without_libtorch_and_torch_missing_is_reported() {
    // A folder with native-only only: what a machine that never installed libtorch has.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(require("native-only"), dir.path().join("native-only")).unwrap();
    let o = run(&[&["--framework", "native", "--format", "json"][..], &QUICK[..]].concat(), Some(dir.path()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let c = Comparison::from_json(std::str::from_utf8(&o.stdout).unwrap()).unwrap();
    assert_eq!(c.results.len(), 1);

    let o = run(&QUICK, Some(dir.path()));
    assert_eq!(o.status.code(), Some(2), "torch unavailable -> exit 2: {}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("native") && table.contains("torch unavailable") && table.contains("cargo xtask setup-torch"), "{table}");
}

/// All three frameworks at `--dtype f32`: one row each, the same prompt, and the greedy tokens
/// agree (llama.cpp runs an f32 KV cache without flash attention at f32).
#[test]
fn three_frameworks_at_f32_agree_on_greedy_tokens() {
    require("native-only");
    require("torch-only");
    require("llamacpp-only");
    let o = run(&[&["--framework", "native", "torch", "llamacpp", "--format", "json"][..], &QUICK[..]].concat(), None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let c = Comparison::from_json(std::str::from_utf8(&o.stdout).unwrap()).unwrap();
    let names: Vec<_> = c.results.iter().map(|r| r.framework.as_str()).collect();
    assert_eq!(names, ["native", "torch", "llamacpp"]);
    assert!(c.results.iter().all(|r| r.prompt_tokens == c.results[0].prompt_tokens));
    let llama = &c.results[2];
    assert!(llama.device.framework_version.contains("kernels"), "SIMD reported: {}", llama.device.framework_version);
    let x = &c.cross_checks[0];
    assert!(x.agree && x.compared_tokens == 4 && x.frameworks.len() == 3, "{x:?}");
}

/// llamacpp-only not built: listed as unavailable with the build command, the others still run;
/// and the default set leaves it out.
#[test]
fn llamacpp_missing_is_reported_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(require("native-only"), dir.path().join("native-only")).unwrap();
    let o = run(&[&["--framework", "native", "llamacpp"][..], &QUICK[..]].concat(), Some(dir.path()));
    assert_eq!(o.status.code(), Some(2), "llamacpp unavailable -> exit 2: {}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("llamacpp unavailable") && table.contains("cmake") && table.contains("llamacpp-only"), "{table}");
    let o = run(&[&["--format", "json"][..], &QUICK[..]].concat(), Some(dir.path()));
    let c = Comparison::from_json(std::str::from_utf8(&o.stdout).unwrap()).unwrap();
    assert!(c.unavailable.iter().all(|u| u.framework != "llamacpp"), "not built, so not in the default set: {:?}", c.unavailable);
}

#[test]
fn model_type_mismatch_uses_the_original_message() {
    let gguf = backend_conformance::fixtures::smollm2_gguf();
    let o = run(&["--model-type", "gpt", "--model-path", gguf.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Model type mismatch: expected 'gpt' but detected 'llama'"), "{}", stderr(&o));
}

#[test]
fn formats_files_plot_and_baseline_regressions() {
    require("native-only");
    let dir = tempfile::tempdir().unwrap();
    let (json, csv, md, svg) = (dir.path().join("r.json"), dir.path().join("r.csv"), dir.path().join("r.md"), dir.path().join("p.svg"));
    let base = [&["--framework", "native"][..], &QUICK[..]].concat();
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let o = run(&with(&["--format", "json", "--output", json.to_str().unwrap(), "--plot", svg.to_str().unwrap()]), None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let saved = Comparison::from_json(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(saved.results.len(), 1);
    // Start-up and memory: the cold first token includes loading the model; the split's weights
    // are the loaded weights, and SmolLM2's cache (30 layers x 3 KV heads x 64 x 2, f32) is
    // 46 080 bytes a position.
    let r = &saved.results[0];
    let cold = r.cold_first_token_s.expect("cold first token measured on Linux");
    assert!(cold > r.load_time_s && cold > r.first_token_time, "cold {cold} s, load {} s", r.load_time_s);
    assert_eq!(r.memory.weights_gb, r.model_memory_gb);
    assert_eq!(r.memory.kv_cache_positions, r.model.max_seq_len);
    assert_eq!((r.memory.kv_cache_gb * 1e9).round() as u64, 46_080 * r.model.max_seq_len as u64);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("Per-token latency") && plot.contains("native"));

    let o = run(&with(&["--format", "csv", "--output", csv.to_str().unwrap()]), None);
    assert_eq!(o.status.code(), Some(0));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 2);
    // Fields outside quotes (the weights field is quoted and holds commas).
    let fields = |line: &str| {
        let mut quoted = false;
        let mut n = 1;
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => n += 1,
                _ => {}
            }
        }
        n
    };
    assert_eq!(fields(text.lines().next().unwrap()), fields(text.lines().nth(1).unwrap()), "{text}");
    assert!(text.lines().next().unwrap().ends_with("load_s,cold_first_token_ms,weights_gb,kv_cache_gb,kv_cache_used_gb,rest_of_peak_gb"));
    assert!(text.starts_with("framework,quantize,avg_latency_ms") && text.lines().nth(1).unwrap().starts_with("native,none,"));

    let o = run(&with(&["--format", "markdown", "--output", md.to_str().unwrap()]), None);
    assert_eq!(o.status.code(), Some(0));
    let md_text = std::fs::read_to_string(&md).unwrap();
    assert!(md_text.contains("| Framework | Avg Latency (ms) | Avg Throughput (tok/s) | Peak Memory (GB)"));
    assert!(md_text.contains("| Framework | Load (s) | Cold First Token (ms) | Weights (GB) | KV Cache (GB) | KV Used (GB) | Rest of Peak (GB) |"));

    // A doctored baseline claiming 10x the measured throughput: the real run must be flagged.
    let mut fast = saved.clone();
    for r in &mut fast.results {
        r.tokens_per_second.mean *= 10.0;
        r.tokens_per_second.ci95 = 0.01;
    }
    let doctored = dir.path().join("doctored-baseline.json");
    std::fs::write(&doctored, serde_json::to_string(&fast).unwrap()).unwrap();
    let o = run(&with(&["--baseline", doctored.to_str().unwrap()]), None);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("REGRESSION native throughput"), "{}", stderr(&o));

    // Unwritable output: clear error, nothing left behind.
    let o = run(&with(&["--output", "/nonexistent-dir/r.txt"]), None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn quantize_all_sweeps_levels_with_quality_against_f32() {
    require("native-only");
    require("torch-only");
    let o = run(&[&["--framework", "native", "torch", "--quantize", "all", "--format", "json"][..], &QUICK[..]].concat(), None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let c = Comparison::from_json(std::str::from_utf8(&o.stdout).unwrap()).unwrap();
    let runs: Vec<(String, String)> = c.results.iter().map(|r| (r.framework.clone(), r.level().to_string())).collect();
    for fw in ["native", "torch"] {
        for level in ["none", "float16", "int8", "nf4"] {
            assert!(runs.contains(&(fw.to_string(), level.to_string())), "{fw} {level} missing: {runs:?}");
        }
    }
    assert_eq!(c.quality.len(), 6, "float16, int8 and nf4 for both frameworks");
    let q = |fw: &str, l: &str| c.quality.iter().find(|q| q.framework == fw && q.quantize == l).unwrap().clone();
    for fw in ["native", "torch"] {
        assert!(q(fw, "int8").kl_divergence < q(fw, "nf4").kl_divergence, "int8 is closer to f32 than nf4");
        assert!(q(fw, "int8").top1_agreement > 0.8);
    }
    // Same quantized numbers in both frameworks: their quality agrees.
    assert!((q("native", "nf4").kl_divergence - q("torch", "nf4").kl_divergence).abs() < 1e-3);
    // Model memory: int8 and nf4 hold less than f32.
    let mem = |fw: &str, l: &str| c.results.iter().find(|r| r.framework == fw && r.level() == l).unwrap().model_memory_gb;
    assert!(mem("native", "nf4") < mem("native", "int8") && mem("native", "int8") < mem("native", "none"));
    assert_eq!(c.cross_checks.len(), 4, "a cross-check per level");
}

/// `--device cuda` reaches each framework; the default builds (no CUDA) refuse it with the fix,
/// so compare lists both as unavailable with their reasons and exits 1 (no framework ran).
#[test]
fn cuda_device_on_builds_without_cuda_lists_each_framework_with_the_fix() {
    require("native-only");
    require("torch-only");
    let o = run(&[&["--framework", "native", "torch", "--model", "smollm2-135m", "--device", "cuda", "--format", "json"][..], &QUICK[..]].concat(), None);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("native unavailable") && err.contains("this native-only was built without CUDA"), "{err}");
    assert!(err.contains("torch unavailable") && err.contains("libtorch sees 0 CUDA devices"), "{err}");
    assert!(err.contains("no framework could run"), "{err}");
}

/// Sizes and frameworks are typed values of compare's own parser: an unknown one is refused
/// before any framework starts, with the accepted values.
#[test]
fn unknown_size_or_framework_is_refused_by_the_parser_with_the_accepted_values() {
    for (args, accepted) in [(["--size", "3B"], "1B, 8B, 70B, 405B"), (["--framework", "tinygrad"], "native, torch, llamacpp")] {
        let o = Command::new(compare_bin()).args(args).env("LLAMA3_BENCH_BIN_DIR", "/nonexistent").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("invalid value") && err.contains(accepted), "{err}");
        assert!(!err.contains("=="), "no framework may have started: {err}");
    }
}
