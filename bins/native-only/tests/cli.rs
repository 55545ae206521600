//! The shared command-line checks, run against `native-only`.

backend_conformance::cli_suite!(env!("CARGO_BIN_EXE_native-only"));
