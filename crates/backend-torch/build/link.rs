// Shared by every build script that links libtorch (included with `include!`).

/// Gives the crate's executables an rpath to `$LIBTORCH/lib`, so they run without
/// LD_LIBRARY_PATH (LIBTORCH comes from .cargo/config.toml, `cargo xtask setup-torch`), and
/// returns libtorch's folder.
///
/// `LLAMA3_BENCH_TORCH_CUDA=1` keeps `libtorch_cuda.so` linked: rustc links with `--as-needed`,
/// which drops it (no Rust code names its symbols) and libtorch then sees no GPU. Off by default
/// because its CUDA dependencies (cuBLAS, cuDNN, ...) are only on GPU machines; a binary built
/// with it needs them at start-up.
fn link_libtorch() -> Option<std::path::PathBuf> {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LLAMA3_BENCH_TORCH_CUDA");
    let cuda = std::env::var("LLAMA3_BENCH_TORCH_CUDA").is_ok_and(|v| v == "1");
    if cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-ltorch_cpu,-ltorch,-lc10,--as-needed,--allow-shlib-undefined");
    }
    // Lets the code (and tests) tell "built without CUDA" from "no GPU here" in its errors.
    println!("cargo:rustc-env=LLAMA3_BENCH_TORCH_CUDA_LINKED={}", u8::from(cuda));
    // Without LIBTORCH, torch-sys stops the build with its own message (how to install it).
    let root = std::path::PathBuf::from(std::env::var_os("LIBTORCH")?);
    let root = root.canonicalize().unwrap_or(root);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", root.join("lib").display());
    Some(root)
}
