//! The Hugging Face path of `download::fetch`, for real over HTTP, against a stand-in hub on
//! loopback (`HF_ENDPOINT`) that serves a small sharded model tree the way the hub does:
//! `GET /{repo}/resolve/{revision}/{file}` with `Range`, `ETag` and `X-Repo-Commit` headers.
//! Its own process (one test) because it sets environment variables.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bench_hub::cache::Cache;
use bench_hub::download::{self, Outcome};
use bench_hub::files::{discover, WeightFormat};
use bench_hub::registry::Registry;

fn serve(files: HashMap<String, Vec<u8>>, gets: Arc<AtomicUsize>) -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", server.server_addr().to_ip().unwrap());
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let url = req.url().to_string();
            let key = url.strip_prefix("/test-org/tiny-llama/resolve/main/").map(str::to_owned);
            let Some(body) = key.and_then(|k| files.get(&k).cloned()) else {
                let _ = req.respond(tiny_http::Response::from_string("not found").with_status_code(404));
                continue;
            };
            let range = req.headers().iter().find(|h| h.field.equiv("Range")).map(|h| h.value.to_string());
            let start: usize =
                range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.split('-').next()).and_then(|s| s.parse().ok()).unwrap_or(0);
            let end = if range.as_deref() == Some("bytes=0-0") { 1 } else { body.len() };
            if end > 1 || body.len() <= 1 {
                gets.fetch_add(1, Ordering::SeqCst);
            }
            let h = |k: &str, v: String| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap();
            let etag = format!("\"{:x}\"", body.len() * 7919 + body.first().copied().unwrap_or(0) as usize);
            let resp = tiny_http::Response::from_data(body[start..end.min(body.len())].to_vec())
                .with_status_code(206)
                .with_header(h("ETag", etag))
                .with_header(h("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567".into()))
                .with_header(h("Content-Range", format!("bytes {start}-{}/{}", end.saturating_sub(1), body.len())));
            let _ = req.respond(resp);
        }
    });
    addr
}

#[test]
fn huggingface_source_downloads_through_hf_hub_from_a_standin_hub() {
    let hf_home = tempfile::tempdir().unwrap();
    let config = br#"{"model_type":"llama","hidden_size":8,"intermediate_size":16,"num_attention_heads":2,
        "num_hidden_layers":1,"num_key_value_heads":1,"vocab_size":32,"rms_norm_eps":1e-5,"rope_theta":10000.0}"#;
    let index = br#"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
    let mut files = HashMap::new();
    files.insert("config.json".to_string(), config.to_vec());
    files.insert("model.safetensors.index.json".to_string(), index.to_vec());
    files.insert("model-00001-of-00002.safetensors".to_string(), vec![1u8; 3000]);
    files.insert("model-00002-of-00002.safetensors".to_string(), vec![2u8; 5000]);
    let gets = Arc::new(AtomicUsize::new(0));
    let endpoint = serve(files, gets.clone());

    std::env::set_var("HF_HOME", hf_home.path());
    std::env::set_var("HF_ENDPOINT", &endpoint);
    std::env::set_var("CI", "1"); // no progress bars in test output
    let registry = Registry::parse(
        r#"
        [models.tiny]
        description = "stand-in"
        [models.tiny.architecture]
        layers = 1
        dim = 8
        heads = 2
        kv_heads = 1
        ffn_dim = 16
        vocab_size = 32
        rope_theta = 10000.0
        norm_eps = 1e-5
        tied_embeddings = true
        context_length = 64
        [models.tiny.source]
        kind = "huggingface"
        repo = "test-org/tiny-llama"
        files = [{ path = "config.json" }]
        index = "model.safetensors.index.json"
        "#,
        Path::new("test registry"),
    )
    .unwrap();
    let cache = Cache::at(tempfile::tempdir().unwrap().path());

    let first = download::fetch(&registry, &cache, "tiny").unwrap();
    let Outcome::Downloaded(paths) = &first else { panic!("expected a download, got {first:?}") };
    assert_eq!(paths.len(), 4);
    let shard2 = paths.iter().find(|p| p.ends_with("model-00002-of-00002.safetensors")).unwrap();
    assert_eq!(std::fs::read(shard2).unwrap(), vec![2u8; 5000]);
    assert!(shard2.starts_with(hf_home.path()), "files live in hf-hub's cache (HF_HOME)");
    let downloads = gets.load(Ordering::SeqCst);
    assert_eq!(downloads, 4);

    // The folder hf-hub made is a model folder bench-core can discover.
    let files = discover(shard2.parent().unwrap()).unwrap();
    assert!(matches!(files.weights, WeightFormat::Safetensors { ref shards, .. } if shards.len() == 2));

    // A second fetch is answered from the cache without contacting the server.
    let second = download::fetch(&registry, &cache, "tiny").unwrap();
    assert!(matches!(second, Outcome::AlreadyPresent(_)), "{second:?}");
    assert_eq!(gets.load(Ordering::SeqCst), downloads);

    // A file the stand-in does not have is a clear error naming it.
    let missing = Registry::parse(
        r#"
        [assets.nope]
        description = "missing"
        [assets.nope.source]
        kind = "huggingface"
        repo = "test-org/tiny-llama"
        files = [{ path = "absent.gguf" }]
        "#,
        Path::new("test registry"),
    )
    .unwrap();
    let err = download::fetch(&missing, &cache, "nope").unwrap_err().to_string();
    assert!(err.contains("absent.gguf") && err.contains(&endpoint), "{err}");
}
