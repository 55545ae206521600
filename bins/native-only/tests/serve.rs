//! `native-only --serve` against the official `openai` Python client (see
//! `backend_conformance::serve`): chat and completions, streaming and not, greedy tokens equal
//! to `--prompt`'s, OpenAI-style errors, a client leaving mid-stream, the queue limit, SIGTERM.

use std::path::Path;

#[test]
fn openai_client_against_native_server() {
    backend_conformance::serve::openai_client_checks(Path::new(env!("CARGO_BIN_EXE_native-only")), &[]);
}

/// Headless Chromium (the Debian package; `.ci/run` installs it) asks through the chat page and
/// screenshots the streamed answer into the target's temporary folder.
#[test]
fn chat_page_in_headless_chromium() {
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chat-page.png");
    backend_conformance::serve::chat_page_in_headless_chromium(Path::new(env!("CARGO_BIN_EXE_native-only")), &png);
}
