//! The llama.cpp framework's build needs: `llama-cpp-sys-2` builds llama.cpp from its vendored
//! source with CMake and generates bindings with bindgen (libclang). Nothing is downloaded.

use anyhow::{bail, Result};

const FIX: &str = "install them with `apt-get install -y cmake libclang-dev` (Debian/Ubuntu)";

/// Fails, naming what is missing and how to install it, unless cmake and libclang are present.
pub fn check_toolchain() -> Result<()> {
    let cmake = std::process::Command::new("cmake").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    let libclang = std::env::var_os("LIBCLANG_PATH").is_some() || has_libclang();
    match (cmake, libclang) {
        (true, true) => Ok(()),
        (false, true) => bail!("the llamacpp framework needs cmake to build llama.cpp: {FIX}"),
        (true, false) => bail!("the llamacpp framework needs libclang for its bindings: {FIX}"),
        (false, false) => bail!("the llamacpp framework needs cmake and libclang to build llama.cpp: {FIX}"),
    }
}

/// libclang where bindgen's `clang-sys` looks for it on Linux.
fn has_libclang() -> bool {
    let roots = ["/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"];
    let is_libclang = |n: &str| n.starts_with("libclang") && n.contains(".so") && !n.starts_with("libclang-cpp");
    let dir_has = |d: &std::path::Path| std::fs::read_dir(d).map(|it| it.flatten().any(|e| is_libclang(&e.file_name().to_string_lossy()))).unwrap_or(false);
    roots.iter().any(|r| {
        let r = std::path::Path::new(r);
        dir_has(r)
            || std::fs::read_dir(r)
                .map(|it| it.flatten().any(|e| e.file_name().to_string_lossy().starts_with("llvm-") && dir_has(&e.path().join("lib"))))
                .unwrap_or(false)
    })
}
