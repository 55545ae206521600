//! llama.cpp's log lines (about 2,300 a run) go to `tracing` at debug level under the target
//! `llama.cpp` instead of stderr; its error lines are also kept so a failed load can say why
//! (the C API itself only returns a null pointer).

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

unsafe extern "C" fn forward(level: llama_cpp_sys_2::ggml_log_level, text: *const c_char, _user: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for the duration of the call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let line = text.trim_end();
    if line.is_empty() {
        return;
    }
    tracing::debug!(target: "llama.cpp", "{line}");
    if level == llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR {
        if let Ok(mut e) = ERRORS.lock() {
            e.push(line.to_string());
            let n = e.len();
            if n > 8 {
                e.drain(..n - 8);
            }
        }
    }
}

/// Routes llama.cpp's and ggml's logs through [`forward`].
pub fn install() {
    // SAFETY: the callback is a plain function valid for the whole process; no user data.
    unsafe { llama_cpp_sys_2::llama_log_set(Some(forward), std::ptr::null_mut()) };
}

/// The error lines logged since the last call, joined, or `None` if there were none.
pub fn take_errors() -> Option<String> {
    let mut e = ERRORS.lock().ok()?;
    let s = e.join("; ");
    e.clear();
    (!s.is_empty()).then_some(s)
}
