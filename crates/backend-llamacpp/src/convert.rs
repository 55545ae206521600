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
    let ftype = match dtype {
        DType::F32 => llama_cpp_sys_2::LLAMA_FTYPE_ALL_F32,
        DType::F16 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_F16,
        DType::BF16 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_BF16,
    };
    run_quantize(src, &tmp, ftype).map_err(|why| Error::Backend(format!("llama.cpp could not convert {} to {}: {why}", src.display(), dtype.as_str())))?;
    Ok(Converted(tmp))
}

/// The file types the test-setup step writes (`cargo xtask quantize`), each one of llama.cpp's
/// `LLAMA_FTYPE_MOSTLY_*` (llama-quantize's names): llama.cpp picks each tensor's block type as
/// its own quantizer does (e.g. Q4_K_M keeps some tensors in Q6_K, and rows whose length is not a
/// multiple of 256 fall back to a 32-value type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q2_K,
    Q3_K_M,
    Q4_K_M,
    Q5_K_M,
    Q6_K,
    IQ4_NL,
    IQ4_XS,
}

impl FileType {
    /// Every type, in the order the setup step writes them.
    pub const ALL: [FileType; 15] = [
        FileType::F32,
        FileType::F16,
        FileType::BF16,
        FileType::Q8_0,
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q2_K,
        FileType::Q3_K_M,
        FileType::Q4_K_M,
        FileType::Q5_K_M,
        FileType::Q6_K,
        FileType::IQ4_NL,
        FileType::IQ4_XS,
    ];

    /// llama-quantize's lower-case name, e.g. "q4_k_m".
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }

    /// The type named `name` (case-insensitive), or an error listing the accepted names.
    pub fn parse(name: &str) -> Result<FileType> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::InvalidInput(format!("unknown file type '{name}' (accepted: {})", Self::ALL.map(|t| t.name()).join(", "))))
    }

    fn ftype(self) -> llama_cpp_sys_2::llama_ftype {
        use llama_cpp_sys_2 as s;
        match self {
            FileType::F32 => s::LLAMA_FTYPE_ALL_F32,
            FileType::F16 => s::LLAMA_FTYPE_MOSTLY_F16,
            FileType::BF16 => s::LLAMA_FTYPE_MOSTLY_BF16,
            FileType::Q8_0 => s::LLAMA_FTYPE_MOSTLY_Q8_0,
            FileType::Q4_0 => s::LLAMA_FTYPE_MOSTLY_Q4_0,
            FileType::Q4_1 => s::LLAMA_FTYPE_MOSTLY_Q4_1,
            FileType::Q5_0 => s::LLAMA_FTYPE_MOSTLY_Q5_0,
            FileType::Q5_1 => s::LLAMA_FTYPE_MOSTLY_Q5_1,
            FileType::Q2_K => s::LLAMA_FTYPE_MOSTLY_Q2_K,
            FileType::Q3_K_M => s::LLAMA_FTYPE_MOSTLY_Q3_K_M,
            FileType::Q4_K_M => s::LLAMA_FTYPE_MOSTLY_Q4_K_M,
            FileType::Q5_K_M => s::LLAMA_FTYPE_MOSTLY_Q5_K_M,
            FileType::Q6_K => s::LLAMA_FTYPE_MOSTLY_Q6_K,
            FileType::IQ4_NL => s::LLAMA_FTYPE_MOSTLY_IQ4_NL,
            FileType::IQ4_XS => s::LLAMA_FTYPE_MOSTLY_IQ4_XS,
        }
    }
}

/// Writes `src` rewritten by llama.cpp's own quantizer (`llama_model_quantize`, what the
/// `llama-quantize` tool runs) as `ty` to `dst`. Quantized input is accepted (`allow_requantize`):
/// its blocks are dequantized by ggml first, so quantizing from a dequantized F32 file gives the
/// same result.
pub fn quantize(src: &Path, dst: &Path, ty: FileType) -> Result<()> {
    crate::llama_backend()?;
    run_quantize(src, dst, ty.ftype()).map_err(|why| Error::Backend(format!("llama.cpp could not quantize {} to {}: {why}", src.display(), ty.name())))
}

/// `llama_model_quantize(src, dst)` to `ftype`; the error is llama.cpp's own message.
fn run_quantize(src: &Path, dst: &Path, ftype: llama_cpp_sys_2::llama_ftype) -> std::result::Result<(), String> {
    let c = |p: &Path| CString::new(p.to_string_lossy().as_bytes()).map_err(|_| format!("path {} contains a NUL byte", p.display()));
    let (src_c, dst_c) = (c(src)?, c(dst)?);
    // SAFETY: plain C API calls with valid NUL-terminated paths that outlive the call, and a
    // params struct initialised by llama.cpp itself.
    let rc = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.ftype = ftype;
        // Dequantizing (and requantizing) blocks is allowed here (llama.cpp refuses it by default).
        params.allow_requantize = true;
        params.nthread = std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1);
        crate::logs::take_errors();
        llama_cpp_sys_2::llama_model_quantize(src_c.as_ptr(), dst_c.as_ptr(), &params)
    };
    if rc != 0 {
        return Err(crate::logs::take_errors().unwrap_or_else(|| format!("llama_model_quantize returned {rc}")));
    }
    Ok(())
}
