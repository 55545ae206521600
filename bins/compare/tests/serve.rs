//! `compare --serve` as a user runs it: a short sweep against native's server started by compare,
//! and `--url` against a server started by hand, on the real SmolLM2 GGUF. The numbers are
//! timings of a busy test machine: only their presence and the request accounting are checked
//! here; a full sweep is a benchmark (the README's `compare --serve` line), not a test.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use bench_load::report::ServeComparison;

fn compare_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_compare"))
}

fn native_bin() -> PathBuf {
    let p = compare_bin().parent().unwrap().join("native-only");
    assert!(p.is_file(), "{} is not built: run the tests with `cargo test --workspace`", p.display());
    p
}

/// A short load: 4 prompts, 6 tokens each, one warm-up.
const SHORT: [&str; 11] = ["--serve", "--num-prompts", "4", "--output-len", "6", "--warmup-requests", "1", "--threads", "2", "--no-bandwidth", "--format"];

fn run(args: &[&str]) -> Output {
    backend_conformance::fixtures::smollm2_gguf();
    native_bin();
    Command::new(compare_bin()).args(args).output().unwrap()
}

fn parse(o: &Output) -> ServeComparison {
    assert!(o.status.success(), "compare --serve failed ({}):\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    ServeComparison::from_json(std::str::from_utf8(&o.stdout).unwrap()).unwrap()
}

/// Every request generated exactly the asked tokens, finished by length, with the server's usage.
fn assert_every_request_complete(c: &ServeComparison, input: Option<usize>, output: usize) {
    for level in &c.levels {
        for r in &level.results {
            assert_eq!((r.metrics.completed, r.metrics.failed), (r.run.records.len(), 0), "{}: {:?}", r.label, r.metrics.errors);
            for rec in &r.run.records {
                assert_eq!(rec.finish_reason.as_deref(), Some("length"));
                let usage = rec.usage.unwrap();
                assert_eq!(usage.completion_tokens, output);
                assert_eq!(rec.token_times_s.len(), output, "one token per chunk");
                if let Some(n) = input {
                    assert_eq!(usage.prompt_tokens, n, "the prompt is {n} tokens as the server counts them");
                }
            }
            let m = &r.metrics;
            assert_eq!(m.output_tokens, output * m.completed);
            assert!(m.ttft_ms.mean > 0.0 && m.tpot_ms.n == m.completed && m.itl_ms.n == m.completed * (output - 1));
            assert!(m.output_throughput > 0.0 && m.e2el_ms.mean >= m.ttft_ms.mean);
        }
    }
}

#[test]
fn a_sweep_against_natives_server_reports_every_request_and_agrees_with_each_request_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (plot, out) = (dir.path().join("serve.svg"), dir.path().join("serve.json"));
    let o = run(&[
        &SHORT[..],
        &[
            "json",
            "--input-len",
            "16",
            "--framework",
            "native",
            "--model",
            "smollm2-135m",
            "--concurrency",
            "1",
            "2",
            "--plot",
            plot.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
    ]
    .concat());
    let c = parse(&o);
    assert_eq!(c.levels.iter().map(|l| l.concurrency).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(c.servers.len(), 1);
    assert!(c.servers[0].ready_s.is_some_and(|s| s > 0.0));
    assert_every_request_complete(&c, Some(16), 6);
    // Greedy tokens at concurrency 2 equal each request's tokens alone (concurrency 1).
    let alone = c.agreements.iter().find(|a| a.against == "alone" && a.concurrency == 2).expect("an agreement against concurrency 1");
    assert_eq!((alone.requests, alone.identical), (4, 4), "{alone:?}");
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));
    assert_eq!(ServeComparison::from_json(&std::fs::read_to_string(&out).unwrap()).unwrap(), c);
    assert!(c.definitions.iter().any(|(k, v)| k == "TPOT" && v.contains("output tokens - 1")));
}

#[test]
fn url_measures_a_server_started_by_hand_and_bad_options_are_refused() {
    let server = backend_conformance::serve::ServerProcess::start(&native_bin(), &["--parallel", "2", "--threads", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("prompts.jsonl");
    std::fs::write(&data, "{\"prompt\": \"The capital of France is\"}\n\n{\"prompt\": \"Once upon a time\", \"id\": 7}\n").unwrap();
    let url = server.url.trim_end_matches('/').to_string();
    let o =
        run(&[&SHORT[..], &["json", "--url", &url, "--label", "by-hand", "--concurrency", "2", "--dataset", data.to_str().unwrap(), "--slo", "ttft=60000"]]
            .concat());
    let c = parse(&o);
    assert_eq!(c.servers.len(), 1);
    assert_eq!((c.servers[0].label.as_str(), c.servers[0].framework.as_deref()), ("by-hand", None));
    assert_eq!(c.settings.dataset, data.display().to_string());
    assert_every_request_complete(&c, None, 6);
    assert_eq!(c.levels[0].results[0].metrics.goodput, Some(c.levels[0].results[0].metrics.request_throughput), "every request meets a 60 s TTFT");
    assert!(server.terminate(Duration::from_secs(30)) == Some(0));

    let refused = |args: &[&str], says: &str| {
        let o = Command::new(compare_bin()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{args:?}: {err}");
    };
    refused(&["--serve", "--concurrency", "0"], "at least 1");
    refused(&["--serve", "--slo", "latency=5"], "not an SLO metric");
    refused(&["--serve", "--url", "localhost:8080"], "expected an http://");
    refused(&["--label", "x"], "--url");
    refused(&["--serve", "--url", "http://127.0.0.1:9", "--label", "nobody"], "no server could be measured");
}
