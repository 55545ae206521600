//! `cargo xtask gpu-bundle [--out DIR]`: native-only, torch-only and compare built with CUDA on
//! this (GPU-less) machine, stripped, in one folder under 64 MiB with a `run.sh` for the GPU
//! machines (CUDA 13.0 driver, a Python venv with torch 2.11.0+cu130, no Rust, no network).
//!
//! What the build needs, all from the package registries and kept in the cache directory:
//! - nvcc: PyPI's CUDA 13.0 toolchain wheels, installed `--no-deps --target`, form one toolkit
//!   tree under `nvidia/cu13` (bin/nvcc, include/, lib/, nvvm/). No GPU is needed to compile
//!   kernels: the compute capability is given (`CUDA_COMPUTE_CAP=90`, H100 / H200).
//! - libtorch: the same `torch==2.11.0` wheel `setup-torch` installs is the `+cu130` build, so it
//!   holds `libtorch_cuda.so` to link against (`LLAMA3_BENCH_TORCH_CUDA=1` keeps it linked).
//! - candle-core 0.11.1 asks cudarc for `dynamic-linking` (libcuda, cuBLAS, NVRTC, cuRAND at link
//!   time; the driver library does not exist on a machine without a GPU) and a downstream crate
//!   cannot turn a dependency's feature off. So a copy of the published candle-core (the cargo
//!   registry's unpacked crate, found through `cargo metadata`), with cudarc's features changed to
//!   `dynamic-loading` + `cuda-13000` (cudarc then opens the libraries at run time), is prepared
//!   in the cache directory (never in the repository) and applied to this one build only with
//!   cargo's command-line `--config patch.crates-io...`; the default build, `cargo xtask test` and
//!   CI use candle-core as published and stay CUDA-free. The build uses its
//!   own target folder, and `Cargo.lock` (which a patch rewrites) is put back afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use bench_hub::cache::Cache;

use crate::torch;

/// CUDA 13.0 = the GPU machines' driver and torch build.
const CUDA_WHEELS: [&str; 5] =
    ["nvidia-cuda-nvcc==13.0.88", "nvidia-cuda-crt==13.0.88", "nvidia-cuda-runtime==13.0.96", "nvidia-cuda-cccl==13.0.85", "nvidia-nvvm==13.0.88"];
const CUDA_DIR: &str = "cuda-13.0";
/// H100 and H200 (sm_90).
const COMPUTE_CAP: &str = "90";
const CANDLE_CORE: &str = "candle-core-0.11.1";
/// What a carried folder may weigh on the GPU machines.
const LIMIT_BYTES: u64 = 64 * 1024 * 1024;
const BINARIES: [&str; 3] = ["native-only", "torch-only", "compare"];

fn is_toolkit(dir: &Path) -> bool {
    let cu = dir.join("nvidia/cu13");
    cu.join("bin/nvcc").is_file()
        && cu.join("nvvm/bin/cicc").is_file()
        && cu.join("lib/libcudart.so.13").is_file()
        && cu.join("include/cuda_runtime.h").is_file()
}

/// The CUDA 13.0 toolkit from PyPI (installed if missing): its `nvidia/cu13` folder, and a folder
/// for the linker's search path.
fn cuda_toolkit(cache: &Cache) -> Result<(PathBuf, PathBuf)> {
    let dir = cache.root().join(CUDA_DIR);
    torch::pip_install_into(cache, &dir, &CUDA_WHEELS, is_toolkit)?;
    let cu = dir.join("nvidia/cu13");
    // candle-kernels links `-lcudart`; the wheel ships only `libcudart.so.13`. A folder with the
    // unversioned name for the linker (on LIBRARY_PATH), outside the wheel's own tree.
    let links = dir.join("link");
    std::fs::create_dir_all(&links)?;
    let so = links.join("libcudart.so");
    if !so.exists() {
        #[cfg(unix)]
        std::os::unix::fs::symlink(cu.join("lib/libcudart.so.13"), &so)?;
    }
    Ok((cu, links))
}

/// candle-core 0.11.1 exactly as published: the cargo registry's unpacked copy, which `cargo
/// metadata` downloads if it is missing and whose manifest path it reports.
fn registry_candle_core(root: &Path) -> Result<PathBuf> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--locked"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).context("reading cargo metadata's output")?;
    let (name, version) = CANDLE_CORE.rsplit_once('-').expect("name-version");
    let manifest = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name && p["version"] == version && p["source"].as_str().is_some_and(|s| s.starts_with("registry+")))
        .and_then(|p| p["manifest_path"].as_str())
        .with_context(|| format!("{CANDLE_CORE} from the registry is not in the workspace's dependency graph"))?;
    let dir = Path::new(manifest).parent().context("manifest path without a folder")?.to_path_buf();
    if !dir.join("src/lib.rs").is_file() {
        bail!("{} has no src/lib.rs: the registry copy is incomplete (`cargo fetch` redoes it)", dir.display());
    }
    Ok(dir)
}

/// candle-core's manifest with cudarc loading its libraries at run time. Errors when the manifest
/// is not the one this edit was written for.
fn patch_manifest(manifest: &str) -> Result<String> {
    const FROM: &str = "    \"cuda-version-from-build-system\",\n    \"dynamic-linking\",\n";
    const TO: &str = "    \"cuda-13000\",\n    \"dynamic-loading\",\n";
    if manifest.matches(FROM).count() != 1 {
        bail!("{CANDLE_CORE}'s Cargo.toml does not list cudarc's features as expected (\"cuda-version-from-build-system\", \"dynamic-linking\"); update xtask/src/gpu.rs");
    }
    Ok(manifest.replace(FROM, TO))
}

/// The patched candle-core copy in the cache directory, outside the repository (made if missing
/// from the registry's copy, through a staging folder); only the GPU build uses it.
fn patched_candle_core(cache: &Cache, root: &Path) -> Result<PathBuf> {
    let dir = cache.root().join("gpu").join(format!("{CANDLE_CORE}-dynamic-loading"));
    if dir.join("Cargo.toml").is_file() {
        return Ok(dir);
    }
    let src = registry_candle_core(root)?;
    let staging = dir.with_extension("staging");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(staging.parent().unwrap())?;
    let status = Command::new("cp").arg("-a").arg(&src).arg(&staging).status()?;
    if !status.success() {
        bail!("copying {} failed ({status})", src.display());
    }
    let manifest = staging.join("Cargo.toml");
    std::fs::write(&manifest, patch_manifest(&std::fs::read_to_string(&manifest)?)?)?;
    std::fs::rename(&staging, &dir)?;
    Ok(dir)
}

/// Puts `Cargo.lock` back as it was when dropped (the patched build rewrites it).
struct LockGuard {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let tmp = self.path.with_extension("lock.tmp");
        if std::fs::write(&tmp, &self.bytes).and_then(|_| std::fs::rename(&tmp, &self.path)).is_err() {
            eprintln!("warning: could not restore {}; `git checkout Cargo.lock` does", self.path.display());
        }
    }
}

fn build(root: &Path, cu: &Path, links: &Path, libtorch: &Path, candle: &Path, target: &Path) -> Result<()> {
    let lock = root.join("Cargo.lock");
    let _guard = LockGuard { bytes: std::fs::read(&lock)?, path: lock };
    let path = format!("{}:{}", cu.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let patch = format!("patch.crates-io.candle-core.path={:?}", candle.display().to_string());
    let mut args = vec!["build", "--release", "--config", &patch, "--features", "native-only/cuda"];
    for b in BINARIES {
        args.extend(["-p", b]);
    }
    eprintln!("building {} with CUDA (sm_{COMPUTE_CAP}) into {}", BINARIES.join(", "), target.display());
    let started = std::time::Instant::now();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(&args)
        .env("CARGO_TARGET_DIR", target)
        .env("PATH", path)
        .env("CUDA_HOME", cu)
        .env("CUDA_ROOT", cu)
        .env("CUDA_PATH", cu)
        .env("NVCC", cu.join("bin/nvcc"))
        .env("CUDA_COMPUTE_CAP", COMPUTE_CAP)
        .env("LIBRARY_PATH", links)
        .env("LIBTORCH", libtorch.join("torch"))
        .env("LLAMA3_BENCH_TORCH_CUDA", "1")
        .status()?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    eprintln!("CUDA build took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

const RUN_SH: &str = include_str!("gpu_run.sh");

/// The bundle: the stripped binaries as `bin.tar.gz` (stripped, native-only alone is about 60 MB
/// with its sm_90 kernels; gzip takes the three to about a third), the Llama 3 tokenizer (gzip)
/// for `--synthetic`, and `run.sh`, which unpacks them on the GPU machine.
fn write_bundle(release: &Path, tokenizer: &Path, out: &Path) -> Result<u64> {
    let staging = out.with_extension("staging");
    let _ = std::fs::remove_dir_all(&staging);
    let bin = staging.join("bin");
    std::fs::create_dir_all(&bin)?;
    let mut unpacked = 0;
    for b in BINARIES {
        let status = Command::new("strip").arg("--strip-all").arg(release.join(b)).arg("-o").arg(bin.join(b)).status().context("running strip (binutils)")?;
        if !status.success() {
            bail!("strip {b} failed ({status})");
        }
        unpacked += std::fs::metadata(bin.join(b))?.len();
    }
    let status = Command::new("tar").arg("-czf").arg(staging.join("bin.tar.gz")).arg("-C").arg(&bin).args(BINARIES).status().context("running tar")?;
    if !status.success() {
        bail!("tar failed ({status})");
    }
    std::fs::remove_dir_all(&bin)?;
    eprintln!("stripped binaries: {:.1} MiB unpacked", unpacked as f64 / 1048576.0);
    let gz = std::fs::File::create(staging.join("llama3-tokenizer.json.gz"))?;
    let status = Command::new("gzip").args(["-9", "-n", "-c"]).arg(tokenizer).stdout(gz).status().context("running gzip")?;
    if !status.success() {
        bail!("gzip {} failed ({status})", tokenizer.display());
    }
    let script = staging.join("run.sh");
    std::fs::write(&script, RUN_SH)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    }
    let mut total = 0;
    let mut listing = String::new();
    for e in std::fs::read_dir(&staging)? {
        let e = e?;
        let len = e.metadata()?.len();
        total += len;
        listing.push_str(&format!("  {:>10}  {}\n", len, e.file_name().to_string_lossy()));
    }
    if total > LIMIT_BYTES {
        bail!("the bundle is {:.1} MiB, over the 64 MiB a GPU machine takes:\n{listing}", total as f64 / 1048576.0);
    }
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    std::fs::rename(&staging, out)?;
    eprint!("{listing}");
    Ok(total)
}

pub fn bundle(out: Option<PathBuf>) -> Result<()> {
    let root = torch::repo_root();
    let out = out.unwrap_or_else(|| root.join("target/gpu-bundle"));
    let cache = Cache::from_env();
    let registry = bench_hub::registry::Registry::load()?;
    let tokenizer = bench_hub::download::fetch(&registry, &cache, "llama3-tokenizer")?.paths()[0].clone();
    let (cu, links) = cuda_toolkit(&cache)?;
    let libtorch = torch::setup()?;
    let candle = patched_candle_core(&cache, &root)?;
    let target = root.join("target/gpu-build");
    build(&root, &cu, &links, &libtorch, &candle, &target)?;
    let total = write_bundle(&target.join("release"), &tokenizer, &out)?;
    println!(
        "GPU bundle: {} ({:.1} MiB of 64). On the GPU machine: ./run.sh compare --device cuda --synthetic --size 8B --dtype bf16",
        out.display(),
        total as f64 / 1048576.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// run.sh on a stand-in GPU machine (a fake venv, a fake binary that prints what it got):
    /// unversioned links to the venv's CUDA libraries come first on LD_LIBRARY_PATH, then torch/lib
    /// and nvidia/*/lib; the tokenizer is unpacked into the cache; arguments pass through; a
    /// missing venv or binary is a clear error.
    #[test]
    fn run_sh_sets_the_library_path_unpacks_the_tokenizer_and_passes_arguments() {
        let root = std::env::temp_dir().join(format!("llama3-bench-run-sh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (bundle, site, cache) = (root.join("bundle"), root.join("site"), root.join("cache"));
        for d in [bundle.clone(), site.join("torch/lib"), site.join("nvidia/cu13/lib"), site.join("nvidia/cudnn/lib")] {
            std::fs::create_dir_all(d).unwrap();
        }
        for f in
            ["torch/lib/libtorch_cuda.so", "nvidia/cu13/lib/libcublas.so.13", "nvidia/cu13/lib/libnvrtc-builtins.so.13.0", "nvidia/cudnn/lib/libcudnn.so.9"]
        {
            std::fs::write(site.join(f), b"").unwrap();
        }
        std::fs::write(bundle.join("run.sh"), RUN_SH).unwrap();
        let bins = root.join("bins");
        std::fs::create_dir_all(&bins).unwrap();
        for b in BINARIES {
            std::fs::write(bins.join(b), "#!/bin/sh\necho \"LD=$LD_LIBRARY_PATH\"\necho \"ARGS=$*\"\n").unwrap();
        }
        Command::new("chmod").arg("+x").arg(bundle.join("run.sh")).args(BINARIES.map(|b| bins.join(b))).status().unwrap();
        assert!(Command::new("tar").arg("-czf").arg(bundle.join("bin.tar.gz")).arg("-C").arg(&bins).args(BINARIES).status().unwrap().success());
        let tok = root.join("tokenizer.json");
        std::fs::write(&tok, br#"{"model":"stand-in"}"#).unwrap();
        let gz = std::fs::File::create(bundle.join("llama3-tokenizer.json.gz")).unwrap();
        assert!(Command::new("gzip").arg("-c").arg(&tok).stdout(gz).status().unwrap().success());
        let run = |args: &[&str]| {
            Command::new(bundle.join("run.sh"))
                .args(args)
                .env("SITE", &site)
                .env("LLAMA3_BENCH_HOME", &cache)
                .env("TMPDIR", &root)
                .env_remove("LD_LIBRARY_PATH")
                .output()
                .unwrap()
        };

        let o = run(&["native-only", "--device", "cuda", "--prompt", "two words"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{out} {}", String::from_utf8_lossy(&o.stderr));
        let ld = out.lines().find_map(|l| l.strip_prefix("LD=")).unwrap();
        let dirs: Vec<&str> = ld.split(':').collect();
        let links = Path::new(dirs[0]);
        assert!(links.starts_with(&root), "{ld}");
        assert_eq!(dirs[1], site.join("torch/lib").to_str().unwrap(), "{ld}");
        assert!(dirs.contains(&site.join("nvidia/cu13/lib").to_str().unwrap()) && dirs.contains(&site.join("nvidia/cudnn/lib").to_str().unwrap()), "{ld}");
        for (name, target) in [
            ("libcublas.so", "nvidia/cu13/lib/libcublas.so.13"),
            ("libnvrtc-builtins.so", "nvidia/cu13/lib/libnvrtc-builtins.so.13.0"),
            ("libcudnn.so", "nvidia/cudnn/lib/libcudnn.so.9"),
        ] {
            assert_eq!(std::fs::read_link(links.join(name)).unwrap(), site.join(target));
        }
        assert!(out.contains("ARGS=--device cuda --prompt two words"), "{out}");
        assert_eq!(std::fs::read(cache.join("models/llama3-tokenizer/tokenizer.json")).unwrap(), std::fs::read(&tok).unwrap());

        let o = run(&["no-such-binary"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("usage:"));
        std::fs::remove_file(site.join("torch/lib/libtorch_cuda.so")).unwrap();
        let o = run(&["native-only"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("set SITE"));
        let _ = std::fs::remove_dir_all(&root);
    }

    /// The edit applies to candle-core 0.11.1's published manifest exactly once, and changes only
    /// cudarc's two features.
    #[test]
    fn candle_core_manifest_patch_swaps_cudarc_linking_for_loading() {
        let src = registry_candle_core(&torch::repo_root()).unwrap();
        let before = std::fs::read_to_string(src.join("Cargo.toml")).unwrap();
        let after = patch_manifest(&before).unwrap();
        assert!(after.contains("\"dynamic-loading\"") && after.contains("\"cuda-13000\""));
        assert!(!after.contains("\"dynamic-linking\"") && !after.contains("cuda-version-from-build-system"));
        let changed: Vec<_> = before.lines().zip(after.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert!(patch_manifest("[dependencies.cudarc]\nfeatures = []\n").is_err());
    }
}
