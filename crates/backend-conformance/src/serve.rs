//! `--serve` checks for any framework's binary: the server is started on a free loopback port
//! with the real SmolLM2 GGUF, driven by the official `openai` Python client (installed into its
//! own venv in the cache folder) and raw HTTP (`tests/serve/openai_client.py`), then stopped with
//! SIGTERM, which must end it with status 0.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::fixtures;

/// The question asked in the checks.
pub const QUESTION: &str = "What is the capital of France?";

/// A server process, killed if a check fails before it is stopped.
pub struct ServerProcess {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    stderr: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `bin --serve --host 127.0.0.1 --port 0 ARGS` and waits for its ready line.
    pub fn start(bin: &Path, args: &[&str]) -> ServerProcess {
        let gguf = fixtures::smollm2_gguf();
        let mut child = Command::new(bin)
            .args(["--model-path"])
            .arg(&gguf)
            .args(["--serve", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("server: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut server = ServerProcess { child: Some(child), url: String::new(), stderr: rx };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = server.stderr.recv_timeout(left).unwrap_or_else(|_| panic!("the server did not say it was ready"));
            if let Some(rest) = line.split(": ready: serving ").nth(1) {
                let url = rest.split(" at ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap();
                assert!(url.starts_with("http://127.0.0.1:"), "the server listens on {url}, not loopback");
                server.url = url.to_string();
                return server;
            }
        }
    }

    /// SIGTERM; returns the exit status code within `timeout`.
    pub fn terminate(mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The command line's greedy token ids for [`QUESTION`] (`--prompt --temperature 0 --json`).
pub fn cli_greedy_ids(bin: &Path, max_tokens: usize, extra: &[&str]) -> Vec<u32> {
    let out = Command::new(bin)
        .arg("--model-path")
        .arg(fixtures::smollm2_gguf())
        .args(["--prompt", QUESTION, "--temperature", "0", "--json", "--max-tokens", &max_tokens.to_string()])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    j["generated_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

/// The Python with the `openai` client.
pub fn openai_python() -> PathBuf {
    fixtures::python_env("pyserve", "requirements-serve.txt")
}

/// The whole client check against `bin`'s server (`extra`: framework options such as
/// `--dtype f32`, given to the server and the command line alike).
pub fn openai_client_checks(bin: &Path, extra: &[&str]) {
    let python = openai_python();
    let expected = cli_greedy_ids(bin, 24, extra);
    let (context, body_limit, parallel, max_queue) = (512, 65536, 2, 2);
    let mut args = vec!["--max-seq-len", "512", "--max-body-bytes", "65536", "--parallel", "2", "--max-queue", "2"];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(bin, &args);
    let script = fixtures::repo_root().join("tests/serve/openai_client.py");
    let gguf = fixtures::smollm2_gguf();
    let model_id = gguf.file_name().unwrap().to_string_lossy().to_string();
    let out = Command::new(&python)
        .arg(&script)
        .args([server.url.as_str(), model_id.as_str(), QUESTION])
        .arg(serde_json::to_string(&expected).unwrap())
        .args([context.to_string(), body_limit.to_string(), parallel.to_string(), max_queue.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("openai client: {stdout}");
    assert!(out.status.success(), "the openai client checks failed:\n{stderr}\n{stdout}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["chat_stream"]["equal_to_cli"], true);
    assert_eq!(server.terminate(Duration::from_secs(30)), Some(0), "SIGTERM must end the server with status 0");
}

/// Headless Chromium loads the chat page at `/`, the page asks [`QUESTION`] at temperature 0 with
/// its own streaming code, and the streamed answer (seen while it streams, then whole) equals the
/// command line's greedy answer; the screenshot goes to `png`.
pub fn chat_page_in_headless_chromium(bin: &Path, png: &Path) {
    let python = openai_python();
    let gguf = fixtures::smollm2_gguf();
    let out =
        Command::new(bin).arg("--model-path").arg(&gguf).args(["--prompt", QUESTION, "--temperature", "0", "--json", "--max-tokens", "48"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let server = ServerProcess::start(bin, &["--parallel", "1", "--max-seq-len", "512"]);
    let _ = std::fs::remove_file(png);
    let script = fixtures::repo_root().join("tests/serve/chromium_chat.py");
    let out = Command::new(&python).arg(&script).args([server.url.as_str(), QUESTION]).arg(png).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the Chromium check failed:\n{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    println!("chromium: {stdout}");
    let page: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(page["error"], "", "the page shows an error");
    assert_eq!(page["answer"], cli["text"], "the page's answer differs from the command line's greedy answer");
    assert_eq!(page["seen_while_streaming"], true, "the answer never showed partially: it did not stream");
    let stats = page["stats"].as_str().unwrap();
    assert!(stats.contains("tok/s") && stats.contains("done"), "stats line {stats:?}");
    let bytes = std::fs::read(png).unwrap();
    assert!(bytes.len() > 1000 && bytes.starts_with(b"\x89PNG"), "{} is not a PNG screenshot", png.display());
    println!("chromium: screenshot {}", png.display());
    assert_eq!(server.terminate(Duration::from_secs(30)), Some(0));
}
