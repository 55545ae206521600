//! `--dtype f32|f16|bf16` on llama.cpp: the GGUF is rewritten once by llama.cpp's own
//! `llama_model_quantize` (file types `ALL_F32`, `MOSTLY_F16`, `MOSTLY_BF16`; quantized blocks are
//! dequantized by ggml) into a temporary file in the cache directory, which is removed when the
//! model is dropped. This is how llama.cpp's `llama-quantize` tool changes storage types, so the
//! weights are exactly the values the other frameworks dequantize to.

use std::ffi::CString;
use std::path::Path;

use bench_backend::backend::DType;
use bench_backend::cache_root;
use bench_backend::{Error, Result};

/// A converted temporary GGUF; deleted on drop.
pub struct Converted(tempfile::TempPath);

impl Converted {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

pub fn convert(src: &Path, dtype: DType) -> Result<Converted> {
    let dir = cache_root().join("tmp");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating the folder for converted GGUF files", &dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".llamacpp-")
        .suffix(&format!("-{}.gguf", dtype.as_str()))
        .tempfile_in(&dir)
        .map_err(|e| Error::io("creating a temporary GGUF file", &dir, e))?
        .into_temp_path();
    let c = |p: &Path| CString::new(p.to_string_lossy().as_bytes()).map_err(|_| Error::InvalidInput(format!("path {} contains a NUL byte", p.display())));
    let (src_c, dst_c) = (c(src)?, c(&tmp)?);
    // SAFETY: plain C API calls with valid NUL-terminated paths and a params struct initialised
    // by llama.cpp itself.
    let rc = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.ftype = match dtype {
            DType::F32 => llama_cpp_sys_2::LLAMA_FTYPE_ALL_F32,
            DType::F16 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_F16,
            DType::BF16 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_BF16,
        };
        // Dequantizing blocks is what we want here (llama.cpp refuses it by default).
        params.allow_requantize = true;
        params.nthread = std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1);
        crate::logs::take_errors();
        llama_cpp_sys_2::llama_model_quantize(src_c.as_ptr(), dst_c.as_ptr(), &params)
    };
    if rc != 0 {
        return Err(Error::Backend(format!(
            "llama.cpp could not convert {} to {}: {}",
            src.display(),
            dtype.as_str(),
            crate::logs::take_errors().unwrap_or_else(|| format!("llama_model_quantize returned {rc}"))
        )));
    }
    Ok(Converted(tmp))
}
