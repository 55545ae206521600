//! `cargo xtask setup-torch`: libtorch from the package registry.
//!
//! tch 0.24.0 needs libtorch 2.11.0. PyPI's `torch==2.11.0` wheel carries exactly that build
//! (`+cu130`, the same as the GPU machines'), with its headers and shared libraries. Its CPU
//! library needs the CUDA runtime and CUPTI libraries at load time, which two small wheels carry.
//! They are installed with `pip --target` into a staging folder of the cache, checked, and renamed
//! into place (so an interrupted install never looks complete); `.libtorch` in the repository is
//! then a symlink to it, where `.cargo/config.toml` points `LIBTORCH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use bench_hub::cache::Cache;

pub const TORCH_VERSION: &str = "2.11.0";
const WHEELS: [&str; 3] = ["torch==2.11.0", "nvidia-cuda-runtime==13.0.96", "nvidia-cuda-cupti==13.0.85"];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn is_complete(dir: &Path) -> bool {
    dir.join("torch/lib/libtorch_cpu.so").is_file()
        && dir.join("torch/include/torch/csrc/api/include/torch/torch.h").is_file()
        && std::fs::read_to_string(dir.join("torch/version.py")).is_ok_and(|v| v.contains(&format!("__version__ = '{TORCH_VERSION}")))
}

/// Installs libtorch if missing; returns the install folder (which holds `torch/` and `nvidia/`).
pub fn setup() -> Result<PathBuf> {
    let cache = Cache::from_env();
    let dir = cache.root().join(format!("libtorch-{TORCH_VERSION}"));
    pip_install_into(&cache, &dir, &WHEELS, is_complete)?;
    link_into_repo(&dir)?;
    Ok(dir)
}

/// Installs `wheels` (`--no-deps`, binary only) into `dir` unless `is_complete(dir)`: through a
/// staging folder, checked, then renamed into place, so an interrupted install never looks complete.
pub fn pip_install_into(cache: &Cache, dir: &Path, wheels: &[&str], is_complete: fn(&Path) -> bool) -> Result<()> {
    if is_complete(dir) {
        return Ok(());
    }
    std::fs::create_dir_all(cache.root())?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("install");
    let staging = dir.with_file_name(format!(".{name}.staging"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let python = std::env::var("LLAMA3_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!("installing {} from the package registry into {}", wheels.join(", "), dir.display());
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "--only-binary", ":all:", "--target"])
        .arg(&staging)
        .args(wheels)
        .status()
        .with_context(|| format!("running `{python} -m pip` (install Python 3 with pip, or set LLAMA3_BENCH_PYTHON)"))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        bail!("pip could not install {} ({status}); is the package registry reachable?", wheels.join(" "));
    }
    if !is_complete(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        bail!("the installed wheels ({}) do not contain what is needed", wheels.join(" "));
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::rename(&staging, dir)?;
    Ok(())
}

/// `.libtorch` -> the install folder, replaced atomically if it points elsewhere.
fn link_into_repo(dir: &Path) -> Result<()> {
    let link = repo_root().join(".libtorch");
    if std::fs::read_link(&link).is_ok_and(|t| t == dir) {
        return Ok(());
    }
    let tmp = repo_root().join(".libtorch.tmp");
    let _ = std::fs::remove_file(&tmp);
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir, &tmp)?;
    std::fs::rename(&tmp, &link).with_context(|| format!("linking {} -> {}", link.display(), dir.display()))?;
    Ok(())
}
