//! `torch-only --serve` against the official `openai` Python client (see
//! `backend_conformance::serve`).

use std::path::Path;

#[test]
fn openai_client_against_torch_server() {
    backend_conformance::serve::openai_client_checks(Path::new(env!("CARGO_BIN_EXE_torch-only")), &[]);
}
