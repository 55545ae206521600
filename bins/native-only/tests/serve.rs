//! `native-only --serve` against the official `openai` Python client (see
//! `backend_conformance::serve`): chat and completions, streaming and not, greedy tokens equal
//! to `--prompt`'s, OpenAI-style errors, a client leaving mid-stream, the queue limit, SIGTERM.

use std::path::Path;

#[test]
fn openai_client_against_native_server() {
    backend_conformance::serve::openai_client_checks(Path::new(env!("CARGO_BIN_EXE_native-only")), &[]);
}
