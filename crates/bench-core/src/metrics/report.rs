//! Writing results: atomic file writes, and the human-readable table of one benchmark run.

use std::io::Write;
use std::path::Path;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use crate::run::bench::BenchmarkResult;
use crate::{Error, Result};

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader never sees a half-written file and a failed write leaves nothing behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::InvalidInput(format!("cannot write {}: folder {} does not exist", path.display(), dir.display())));
    }
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("creating a temporary file", dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io("writing", path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io("writing", path, e))?;
    tmp.persist(path).map_err(|e| Error::io("renaming into place", path, e.error))?;
    Ok(())
}

/// "weights / KV cache allocated (positions), used / rest of peak" in GB.
pub fn memory_split(r: &BenchmarkResult) -> String {
    let m = &r.memory;
    format!("{:.3} / {:.3} ({} positions), {:.3} used / {:.3} GB", m.weights_gb, m.kv_cache_gb, m.kv_cache_positions, m.kv_cache_used_gb, m.rest_gb)
}

/// One framework's benchmark as a table for people.
pub fn single_run_table(r: &BenchmarkResult) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["metric", "value"]);
    let tl = &r.token_latency_ms;
    let tps = &r.tokens_per_second;
    let rows: Vec<(String, String)> = vec![
        ("framework".into(), format!("{} ({})", r.framework, r.device.framework_version)),
        ("model".into(), format!("{}{}", r.model.name, if r.synthetic { "  [SYNTHETIC WEIGHTS]" } else { "" })),
        ("weights".into(), format!("{} (compute {})", r.model.weights, r.model.compute_dtype)),
        ("device".into(), format!("{} ({} threads, {})", r.device.device, r.device.threads, r.device.cpu)),
        ("prompt / generated tokens".into(), format!("{} / {}", r.prompt_tokens, r.generated_tokens)),
        ("iterations (+ warm-up)".into(), format!("{} (+{})", r.iterations, r.warmup_iterations)),
        ("decode throughput".into(), format!("{:.2} tok/s ± {:.2} (95% CI), peak {:.2}", tps.mean, tps.ci95, r.peak_tokens_per_second)),
        ("prefill throughput".into(), format!("{:.1} tok/s", r.prefill_tokens_per_second)),
        ("first-token latency".into(), format!("{:.1} ms ± {:.1}", r.first_token_latency_ms.mean, r.first_token_latency_ms.ci95)),
        ("token latency mean / p50 / p90 / p99".into(), format!("{:.2} / {:.2} / {:.2} / {:.2} ms", tl.mean, tl.p50, tl.p90, tl.p99)),
        ("token latency min / max / stddev".into(), format!("{:.2} / {:.2} / {:.2} ms", tl.min, tl.max, tl.stddev)),
        ("peak memory (process RSS)".into(), format!("{:.3} GB", r.peak_memory_gb)),
        ("  weights / KV cache allocated, used / rest".into(), memory_split(r)),
        ("achieved weight bandwidth".into(), format!("{:.2} GB/s", r.achieved_bandwidth_gbs)),
        ("load time (files to ready)".into(), format!("{:.2} s", r.load_time_s)),
        ("cold first token (process start)".into(), r.cold_first_token_s.map(|s| format!("{:.0} ms", s * 1e3)).unwrap_or_else(|| "not measured".into())),
    ];
    for (k, v) in rows {
        t.add_row(vec![k, v]);
    }
    t.to_string()
}
