//! The shared command-line checks, run against `torch-only`.

backend_conformance::cli_suite!(env!("CARGO_BIN_EXE_torch-only"));
