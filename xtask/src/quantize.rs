//! `cargo xtask quantize --from MODEL --type T[,T...]`: a test-setup step that writes GGUF files
//! through llama.cpp's own quantizer (`llama_model_quantize`), so the frameworks can be compared
//! on every common storage type without committing model files. It builds and runs the small
//! `llamacpp-quantize` binary of `backend-llamacpp` (release, llama.cpp built for this CPU, see
//! `llamacpp::cpu_env`); xtask itself links no C++.
//!
//! A source whose layer matrices are already quantized (SmolLM2's file is Q4_1) is first written
//! as F32 by the same quantizer (every value exactly as ggml dequantizes it, no rounding), and the
//! types are quantized from that file rather than requantized block to block.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bench_backend::gguf::GgufFile;
use bench_hub::cache::Cache;
use bench_hub::registry::Registry;

/// llama-quantize's names for the types the setup step writes ("all": every one but f32).
pub const TYPES: [&str; 14] = ["f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs"];

/// The file `from` names (a path, or a registry model in the cache: its GGUF) and the stem of the
/// files written from it (the registry name, or the file's name without its type).
fn source_file(registry: &Registry, cache: &Cache, from: &str) -> Result<(PathBuf, String)> {
    let p = Path::new(from);
    if p.is_file() {
        let stem = p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "model".into());
        let stem = stem.replace("-f16-", "-").replace("-f32-", "-");
        return Ok((p.to_path_buf(), stem));
    }
    if registry.models.contains_key(from) {
        let paths = bench_hub::download::fetch(registry, cache, from)?.paths().to_vec();
        return paths
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "gguf"))
            .map(|p| (p, from.to_string()))
            .with_context(|| format!("registry model {from} has no GGUF file; give a GGUF path with --from"));
    }
    bail!("--from {from}: neither a file nor a registry model (see `cargo xtask list`)")
}

/// Writes `from` in each of `types` into the cache's `quantized/` folder (or `out`, a folder);
/// returns the files written.
pub fn run(registry: &Registry, cache: &Cache, from: &str, types: &[String], out: Option<PathBuf>) -> Result<Vec<PathBuf>> {
    let types: Vec<String> = if types.iter().any(|t| t == "all") { TYPES.iter().map(|t| t.to_string()).collect() } else { types.to_vec() };
    for t in &types {
        if !TYPES.contains(&t.to_lowercase().as_str()) && t.to_lowercase() != "f32" {
            bail!("--type {t}: not one of {} (or all)", TYPES.join(", "));
        }
    }
    let (src, stem) = source_file(registry, cache, from)?;
    let dir = out.unwrap_or_else(|| cache.root().join("quantized"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let tool = crate::llamacpp::build_release_bin("backend-llamacpp", "llamacpp-quantize")?;
    let quantize = |input: &Path, ty: &str, output: &Path| -> Result<()> {
        let started = std::time::Instant::now();
        let status = std::process::Command::new(&tool).arg(input).arg(ty).arg(output).status()?;
        if !status.success() {
            bail!("llamacpp-quantize {} {ty} failed ({status})", input.display());
        }
        let types = GgufFile::open(output).map(|g| g.type_summary()).unwrap_or_default();
        println!("{ty:7} {} ({types}; {:.1}s)", output.display(), started.elapsed().as_secs_f64());
        Ok(())
    };

    // Quantized layer matrices: dequantize once to F32 (exact), and quantize from there.
    let g = GgufFile::open(&src)?;
    let quantized_input = g.tensor("blk.0.attn_q.weight").is_some_and(|t| t.ggml_type.is_quantized());
    drop(g);
    let input = if quantized_input {
        let f32_file = dir.join(format!("{stem}-f32.gguf"));
        if !f32_file.is_file() {
            println!("{} holds quantized blocks: writing it as F32 first (ggml's dequantization, exact)", src.display());
            quantize(&src, "f32", &f32_file)?;
        }
        f32_file
    } else {
        src.clone()
    };
    let mut written = Vec::new();
    for ty in &types {
        let ty = ty.to_lowercase();
        let output = dir.join(format!("{stem}-{ty}.gguf"));
        if ty == "f32" && output == input {
            written.push(output);
            continue;
        }
        quantize(&input, &ty, &output)?;
        written.push(output);
    }
    Ok(written)
}
