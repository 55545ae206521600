//! Running one framework's benchmark in its own process (`native-only`, `torch-only`, `llamacpp-only`): no shared
//! thread pools, allocators or peak-memory counters between frameworks. A framework that cannot
//! run comes back as [`Unavailable`] with the reason and the fix, never as a failure of the rest.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use bench_core::metrics::comparison::{Unavailable, UnavailableKind};
use bench_core::run::bench::BenchmarkResult;
use bench_core::run::request::{BenchRequest, Framework};

/// Where the per-framework binaries are: next to this executable, or `LLAMA3_BENCH_BIN_DIR`.
pub fn binary_for(framework: Framework) -> PathBuf {
    let dir = std::env::var_os("LLAMA3_BENCH_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.to_path_buf())).unwrap_or_else(|| PathBuf::from(".")));
    dir.join(framework.binary_name())
}

pub fn build_fix(framework: Framework) -> String {
    match framework {
        Framework::Torch => "run `cargo xtask setup-torch && cargo build --release -p torch-only` (or `cargo xtask compare`, which does both)".into(),
        Framework::Llamacpp => "install cmake and libclang (`apt-get install -y cmake libclang-dev`), then run `cargo build --release -p llamacpp-only` (or `cargo xtask compare --framework ... llamacpp`, which builds it)".into(),
        Framework::Native => format!("run `cargo build --release -p {}`", framework.binary_name()),
    }
}

/// Runs `{framework}-only --benchmark --json` with the request's arguments, streaming its
/// progress to stderr with `label` in front of each line (e.g. "native int8").
pub fn run(framework: Framework, label: &str, request: &BenchRequest) -> Result<BenchmarkResult, Unavailable> {
    let bin = binary_for(framework);
    let unavailable = |reason: String, fix: String| Unavailable { framework: framework.to_string(), reason, fix, kind: UnavailableKind::Failed };
    if !bin.is_file() {
        return Err(Unavailable { kind: UnavailableKind::NotBuilt, ..unavailable(format!("{} is not built", bin.display()), build_fix(framework)) });
    }
    let mut child = Command::new(&bin)
        .args(["--benchmark", "--json"])
        .args(request.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| unavailable(format!("could not start {}: {e}", bin.display()), build_fix(framework)))?;
    let stderr = child.stderr.take().unwrap();
    let fw = label.to_string();
    let relay = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{fw}] {line}");
            lines.push(line);
        }
        lines
    });
    let out = child.wait_with_output().map_err(|e| unavailable(format!("waiting for {}: {e}", bin.display()), String::new()))?;
    let log = relay.join().unwrap_or_default();
    if !out.status.success() {
        let last = log.iter().rev().find(|l| !l.trim().is_empty()).cloned().unwrap_or_default();
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if out.status.signal() == Some(9) {
                return Err(unavailable(
                    "killed by the system (out of memory?)".into(),
                    "use a smaller model, --dtype f16/bf16, or a machine with more memory".into(),
                ));
            }
        }
        let fix = if last.contains("error while loading shared libraries") {
            build_fix(framework)
        } else if last.contains("not enough memory") {
            "pass one of the options it names (e.g. --dtype bf16 or --quantize int8), or --ignore-memory-check".into()
        } else {
            "see the error above; the same command with the per-framework binary reproduces it".into()
        };
        let reason = last.strip_prefix("error: ").unwrap_or(&last).to_string();
        return Err(unavailable(format!("failed ({}): {reason}", out.status), fix));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    BenchmarkResult::from_json(&text).map_err(|e| unavailable(format!("its output is not a BenchmarkResult: {e}"), build_fix(framework)))
}
