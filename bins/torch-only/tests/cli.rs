//! The shared command-line checks, run against `torch-only`.

backend_conformance::cli_suite!(env!("CARGO_BIN_EXE_torch-only"));

/// Without libtorch's CUDA library linked (the default build) libtorch sees no GPU even on a GPU
/// machine: `--device cuda` says so and how to build one that does.
#[test]
fn cuda_device_in_a_build_without_cuda_names_the_fix() {
    // Set by backend-torch/build.rs when it links libtorch_cuda (absent if the script's output
    // predates it: then it did not link it either).
    if option_env!("LLAMA3_BENCH_TORCH_CUDA_LINKED") == Some("1") {
        eprintln!("skipped: this torch-only links libtorch's CUDA library (a GPU build)");
        return;
    }
    backend_conformance::cli::cuda_device_without_cuda_is_a_clear_error(
        std::path::Path::new(env!("CARGO_BIN_EXE_torch-only")),
        "libtorch sees 0 CUDA devices; this torch-only was built without libtorch's CUDA library linked; build it with `cargo xtask gpu-bundle`",
    );
}
