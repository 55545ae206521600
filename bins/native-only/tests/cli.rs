//! The shared command-line checks, run against `native-only`.

backend_conformance::cli_suite!(env!("CARGO_BIN_EXE_native-only"));

/// The default build has no CUDA: `--device cuda` says how to get a build that has it.
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_device_in_a_build_without_cuda_names_the_fix() {
    backend_conformance::cli::cuda_device_without_cuda_is_a_clear_error(
        std::path::Path::new(env!("CARGO_BIN_EXE_native-only")),
        "this native-only was built without CUDA; build it with `cargo xtask gpu-bundle`",
    );
}
