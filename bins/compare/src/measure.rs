//! Running every framework at every level, each in its own process, and the quality of quantized
//! runs against the same framework's f32 logits.

use std::path::PathBuf;

use anyhow::Result;
use bench_backend::backend::{DType, Quantize};
use bench_core::metrics::comparison::{Quality, Unavailable, UnavailableKind};
use bench_core::run::bench::BenchmarkResult;
use bench_core::run::request::{BenchRequest, Framework};

/// A private folder for the runs' logit dumps (removed at the end).
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("llama3-bench-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// What the child processes produced.
#[derive(Default)]
pub struct Measured {
    pub results: Vec<BenchmarkResult>,
    pub unavailable: Vec<Unavailable>,
    pub quality: Vec<Quality>,
}

/// Runs every framework at every level, each in its own process. A framework that is not built,
/// or cannot run its plain level, is listed as unavailable and its other levels are skipped.
pub fn measure(frameworks: &[Framework], levels: &[Option<Quantize>], base: &BenchRequest) -> Result<Measured> {
    let dumps = tempfile_dir()?;
    let mut m = Measured::default();
    'frameworks: for &fw in frameworks {
        let mut reference: Option<PathBuf> = None;
        for &level in levels {
            let label = match level {
                None => fw.to_string(),
                Some(q) => format!("{fw} {}", q.as_str()),
            };
            eprintln!("== {label} ==");
            let dump = dumps.join(format!("{fw}-{}.f32", level.map(Quantize::as_str).unwrap_or("none")));
            let request = match level {
                None => BenchRequest { dump_logits: Some(dump.clone()), ..base.clone() },
                Some(q) => BenchRequest { dtype: None, quantize: Some(q), dump_logits: Some(dump.clone()), ..base.clone() },
            };
            let r = match compare::child::run(fw, &label, &request) {
                Ok(r) => r,
                Err(mut u) => {
                    eprintln!("{label} unavailable: {}", u.reason);
                    u.framework = label;
                    let fatal = level.is_none() || u.kind == UnavailableKind::NotBuilt;
                    m.unavailable.push(u);
                    if fatal {
                        continue 'frameworks;
                    }
                    continue;
                }
            };
            match level {
                None => reference = Some(dump),
                Some(q) => {
                    if reference.is_none() {
                        reference = f32_reference(fw, base, &dumps);
                    }
                    if let Some(ref_path) = &reference {
                        let vocab = r.model.architecture.vocab_size;
                        m.quality.push(Quality::measure(fw.as_str(), q.as_str(), &read_f32s(ref_path)?, &read_f32s(&dump)?, vocab)?);
                    }
                }
            }
            m.results.push(r);
        }
    }
    let _ = std::fs::remove_dir_all(&dumps);
    Ok(m)
}

/// A single f32 pass of `fw` for the quality of its quantized runs when the sweep has no plain
/// level: its logit dump, or `None` when it could not run.
fn f32_reference(fw: Framework, base: &BenchRequest, dumps: &std::path::Path) -> Option<PathBuf> {
    let dump = dumps.join(format!("{fw}-reference.f32"));
    let request =
        BenchRequest { iterations: 1, warmup: 0, gen_tokens: 1, dtype: Some(DType::F32), quantize: None, dump_logits: Some(dump.clone()), ..base.clone() };
    eprintln!("== {fw} f32 reference (for quality only) ==");
    compare::child::run(fw, &format!("{fw} f32 reference"), &request).ok().map(|_| dump)
}

fn read_f32s(path: &std::path::Path) -> Result<Vec<f32>> {
    Ok(std::fs::read(path)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}
