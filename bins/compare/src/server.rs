//! A framework's `--serve` in its own process for `compare --serve`: started on a free loopback
//! port (`--port 0`; the server's ready line names the port), its log relayed to stderr with the
//! framework in front, stopped with SIGTERM (the server finishes in-flight requests and exits 0).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench_core::metrics::comparison::{Unavailable, UnavailableKind};
use bench_core::run::request::{BenchRequest, Framework};

use crate::child::{binary_for, build_fix};

/// A running server process.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    /// Seconds from the process start to its ready line (files read, model loaded, listening).
    pub ready_s: f64,
    /// The ready line said the weights are synthetic (random values of the model's shape).
    pub synthetic: bool,
    log: Arc<Mutex<VecDeque<String>>>,
}

/// Lines of the server's log kept for an error message.
const LOG_TAIL: usize = 20;

impl Server {
    /// Starts `{framework}-only --serve --host 127.0.0.1 --port 0 --parallel N` with the
    /// request's model, dtype, threads and kernels, and waits up to `timeout` for its ready line.
    pub fn start(framework: Framework, request: &BenchRequest, parallel: usize, max_seq_len: usize, timeout: Duration) -> Result<Server, Unavailable> {
        let bin = binary_for(framework);
        let unavailable = |reason: String, fix: String| Unavailable { framework: framework.to_string(), reason, fix, kind: UnavailableKind::Failed };
        if !bin.is_file() {
            return Err(Unavailable { kind: UnavailableKind::NotBuilt, ..unavailable(format!("{} is not built", bin.display()), build_fix(framework)) });
        }
        let started = Instant::now();
        let mut child = Command::new(&bin)
            .args(["--serve", "--host", "127.0.0.1", "--port", "0", "--parallel", &parallel.to_string(), "--max-seq-len", &max_seq_len.to_string()])
            .args(request.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| unavailable(format!("could not start {}: {e}", bin.display()), build_fix(framework)))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let (fw, tail) = (framework.to_string(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{fw} server] {line}");
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.push_back(line.clone());
                if t.len() > LOG_TAIL {
                    t.pop_front();
                }
                let _ = tx.send(line);
            }
        });
        let mut server = Server { child: Some(child), url: String::new(), ready_s: 0.0, synthetic: false, log };
        let deadline = started + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(500))) {
                Ok(line) => {
                    if let Some(url) =
                        line.split(": ready: serving ").nth(1).and_then(|rest| rest.split(" at ").nth(1)).and_then(|s| s.split_whitespace().next())
                    {
                        server.url = url.trim_end_matches('/').to_string();
                        server.ready_s = started.elapsed().as_secs_f64();
                        server.synthetic = line.contains("[SYNTHETIC WEIGHTS");
                        return Ok(server);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(unavailable(format!("not ready within {} s", timeout.as_secs()), "a larger model needs longer; see its log above".into()))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.as_mut().and_then(|c| c.wait().ok()).map(|s| s.to_string()).unwrap_or_default();
                    let last = server.last_error();
                    return Err(unavailable(
                        format!("its server exited before it was ready ({status}): {last}"),
                        "see the error above; the same command with the per-framework binary and --serve reproduces it".into(),
                    ));
                }
            }
        }
    }

    /// The last non-empty line of the server's log, without a leading `error: `.
    fn last_error(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let last = log.iter().rev().find(|l| !l.trim().is_empty()).cloned().unwrap_or_default();
        last.strip_prefix("error: ").unwrap_or(&last).to_string()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, then up to `grace` for a clean exit (killed after it); the exit status.
    pub fn stop(mut self, grace: Duration) -> Result<std::process::ExitStatus, String> {
        let mut child = self.child.take().ok_or("already stopped")?;
        let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        if !term.is_ok_and(|s| s.success()) {
            let _ = child.kill();
        }
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("did not exit within {} s of SIGTERM; killed", grace.as_secs()));
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
