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

/// The ggml CPU options for a llama.cpp built for the CPU this runs on (cmake cache entries that
/// `llama-cpp-sys-2`'s build script forwards from `GGML_*` environment variables): AVX-512 and its
/// VBMI / VNNI / BF16 extensions, and AVX-VNNI, each ON exactly when this CPU has it; AMX always
/// OFF (ggml's AMX buffer type crashes on the project's virtual machines). Every option is set,
/// ON or OFF, so that the build script tracks them all and a build on another CPU rebuilds.
/// Without them the crate builds ggml's AVX2 tier whatever the machine (`GGML_NATIVE` is OFF).
pub fn cpu_env() -> Vec<(&'static str, &'static str)> {
    let on = |b: bool| if b { "ON" } else { "OFF" };
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl");
        vec![
            ("GGML_AVX512", on(avx512)),
            ("GGML_AVX512_VBMI", on(avx512 && has!("avx512vbmi"))),
            ("GGML_AVX512_VNNI", on(avx512 && has!("avx512vnni"))),
            ("GGML_AVX512_BF16", on(avx512 && has!("avx512bf16"))),
            ("GGML_AVX_VNNI", on(has!("avxvnni"))),
            ("GGML_AMX_TILE", "OFF"),
            ("GGML_AMX_INT8", "OFF"),
            ("GGML_AMX_BF16", "OFF"),
        ]
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = on;
        Vec::new()
    }
}

/// Makes the next cargo build of `llama-cpp-sys-2` in `target` use [`cpu_env`]. The crate's build
/// script only tracks the `GGML_*` variables it saw on its previous run, so a tree built without
/// them would keep its AVX2-only llama.cpp: a stamp in `target` records the options of the last
/// build through xtask, and when they differ the crate is cleaned once (a rebuild of llama.cpp).
pub fn prepare_target(target: &std::path::Path) -> Result<()> {
    let wanted = cpu_env().iter().map(|(k, v)| format!("{k}={v}\n")).collect::<String>();
    let stamp = target.join("llamacpp-cpu-options");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    if target.join("release/build").is_dir() || target.join("debug/build").is_dir() {
        eprintln!("llama.cpp's CPU options changed ({}): rebuilding llama-cpp-sys-2", wanted.trim().replace('\n', " "));
        crate::cargo(&["clean", "-p", "llama-cpp-sys-2"], &[])?;
    }
    std::fs::create_dir_all(target)?;
    std::fs::write(&stamp, wanted)?;
    Ok(())
}

/// Builds `bin` of `package` in release (llama.cpp for this CPU) and returns its path.
pub fn build_release_bin(package: &str, bin: &str) -> Result<std::path::PathBuf> {
    check_toolchain()?;
    crate::cargo(&["build", "--release"], &["-p", package, "--bin", bin])?;
    Ok(crate::target_dir().join("release").join(bin))
}
