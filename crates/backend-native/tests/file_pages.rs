//! Loading copies each tensor out of the memory-mapped GGUF and then releases that tensor's file
//! pages (`TensorSource::release`, `MADV_DONTNEED` on the read-only map), so the peak holds one
//! copy of the weights rather than the copy plus the file's pages. Releasing must never change
//! what the map reads: on the real SmolLM2 file, every tensor's bytes read after the release equal
//! a copy taken before it, through the same slice and through a fresh lookup. (How much resident
//! memory this saves is measured by the benchmark's peak-memory row, not asserted here; the test
//! prints the process's file-backed resident memory before and after for information.)

use backend_conformance::fixtures;
use bench_backend::backend::{WeightFormat, WeightSource};
use bench_backend::schema::{TensorId, TensorRole, LAYER_ROLES};
use bench_backend::source::{TensorData, TensorSource};

fn bytes<'a>(data: &TensorData<'a>) -> &'a [u8] {
    match data {
        TensorData::Ggml { bytes, .. } | TensorData::Float { bytes, .. } => bytes,
        TensorData::F32(_) => panic!("a GGUF tensor holds the file's bytes"),
    }
}

/// Kilobytes of file-backed memory resident in this process (`RssFile`), where Linux says.
fn rss_file_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssFile:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn released_file_pages_read_back_the_same_bytes() {
    let src = TensorSource::open(&WeightSource::Files(WeightFormat::Gguf(fixtures::smollm2_gguf())), "native").unwrap();
    let layers = src.config().arch.layers;
    let mut ids = vec![TensorId::global(TensorRole::TokenEmbedding), TensorId::global(TensorRole::OutputNorm)];
    for layer in [0, layers / 2, layers - 1] {
        ids.extend(LAYER_ROLES.iter().map(|&role| TensorId::layer(layer, role)));
    }
    let before = rss_file_kb();
    let mut total = 0usize;
    for id in ids {
        let t = src.tensor(id).unwrap();
        let copy = bytes(&t.data).to_vec();
        total += copy.len();
        src.release(&t);
        assert!(bytes(&t.data) == copy.as_slice(), "{}: bytes changed after release (same slice)", t.name);
        src.release(&t);
        let again = src.tensor(id).unwrap();
        assert!(bytes(&again.data) == copy.as_slice(), "{}: bytes changed after release (fresh lookup)", t.name);
        src.release(&again);
    }
    let after = rss_file_kb();
    eprintln!("read, released and read again {total} bytes; RssFile {before:?} kB before, {after:?} kB after");
}
