//! backend-torch's build script: the rpath and CUDA link switch every libtorch executable gets
//! (`build/link.rs`; torch-only and framework-parity use `build/executables.rs`), and
//! `csrc/weight_only.cpp` (the int8 / NF4 products for a few tokens, see that file) compiled
//! against libtorch's headers. That file runs `at::parallel_for`, which libtorch's headers expand
//! to OpenMP: the OpenMP runtime libtorch itself loads (`libgomp.so.1` in `$LIBTORCH/lib`) is
//! linked, so the products share libtorch's thread pool and its `set_num_threads`.
include!("build/link.rs");

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=csrc/weight_only.cpp");
    println!("cargo:rerun-if-changed=csrc/decode_ops.cpp");
    println!("cargo:rerun-if-changed=csrc/cpu.h");
    let Some(root) = link_libtorch() else { return };
    // The ABI torch-sys builds its own C++ with (libtorch 2.x wheels: the C++11 ABI).
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("csrc/weight_only.cpp")
        .file("csrc/decode_ops.cpp")
        .include(root.join("include"))
        .std("c++17")
        .flag("-fopenmp")
        // GCC 12 warns inside its own AVX-512 conversion intrinsics.
        .flag_if_supported("-Wno-maybe-uninitialized")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .opt_level(3)
        .compile("llama3_bench_weight_only");
    println!("cargo:rustc-link-search=native={}", root.join("lib").display());
    println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
}
