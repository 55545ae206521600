//! A hub transfer that stalls mid-body is abandoned after the stall timeout, with a clear error
//! and no partial file left in hf-hub's cache. The stand-in hub is a raw TCP server on loopback
//! that answers hf-hub's metadata request, then sends half of the file and goes silent (tiny_http
//! would buffer the half, so the stall would happen before the body). Its own process because it
//! sets environment variables.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use bench_hub::cache::Cache;
use bench_hub::download;
use bench_hub::registry::Registry;

const SIZE: usize = 200_000;

fn serve_stalling() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range = Some(v.trim().to_string());
                    }
                }
                let headers = |len: usize, start: usize, end: usize| {
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {len}\r\nContent-Range: bytes {start}-{end}/{SIZE}\r\n\
                         ETag: \"stall-etag\"\r\nX-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\n\r\n"
                    )
                };
                if range.as_deref() == Some("0-0") {
                    // hf-hub's metadata request.
                    let _ = stream.write_all(headers(1, 0, 0).as_bytes());
                    let _ = stream.write_all(&[7]);
                    return;
                }
                let start: usize = range.as_deref().and_then(|r| r.split('-').next()).and_then(|s| s.parse().ok()).unwrap_or(0);
                let _ = stream.write_all(headers(SIZE - start, start, SIZE - 1).as_bytes());
                let _ = stream.write_all(&vec![7u8; (SIZE - start) / 2]);
                let _ = stream.flush();
                // Stall: keep the connection open, send nothing more.
                std::thread::sleep(Duration::from_secs(120));
            });
        }
    });
    addr
}

#[test]
fn a_transfer_stalled_mid_body_times_out_and_leaves_no_partial_file() {
    let hf_home = tempfile::tempdir().unwrap();
    std::env::set_var("HF_HOME", hf_home.path());
    std::env::set_var("HF_ENDPOINT", serve_stalling());
    std::env::set_var("CI", "1");
    std::env::set_var("LLAMA3_BENCH_STALL_TIMEOUT_S", "2");
    let registry = Registry::parse(
        r#"
        [assets.stalls]
        description = "a file whose transfer stalls half way"
        [assets.stalls.source]
        kind = "huggingface"
        repo = "test-org/stalling"
        files = [{ path = "model.gguf" }]
        "#,
        Path::new("test registry"),
    )
    .unwrap();
    let cache = Cache::at(tempfile::tempdir().unwrap().path());
    let t = Instant::now();
    let err = download::fetch(&registry, &cache, "stalls").unwrap_err().to_string();
    let took = t.elapsed();
    println!("gave up after {took:.1?}: {err}");
    assert!(err.contains("model.gguf") && err.contains("no data received for 2 s") && err.contains("1 partial file(s) removed"), "{err}");
    // Half the body arrived before the stall, so the watchdog saw progress first, then none.
    assert!(took >= Duration::from_secs(2), "gave up after {took:?}");
    let leftovers: Vec<_> = walk(hf_home.path()).into_iter().filter(|p| p.is_file()).collect();
    assert!(leftovers.iter().all(|p| !p.to_string_lossy().ends_with(".part")), "partial files left: {leftovers:?}");
    assert!(leftovers.iter().all(|p| !p.ends_with("model.gguf")), "nothing in the cache: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
