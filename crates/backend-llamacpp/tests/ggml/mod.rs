//! ggml's own conversions, called through `llama-cpp-sys-2`, for the tests that hold this
//! project's code to ggml's (a module shared by the test files of this folder).

use bench_backend::gguf::GgmlType;

/// ggml's own dequantization of `bytes` (`n` values of `ty`).
pub fn ggml_to_float(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let (per_block, block_bytes) = ty.block().unwrap();
    assert_eq!(bytes.len(), n / per_block * block_bytes);
    let mut out = vec![0.0f32; n];
    // SAFETY: the traits of a ggml type are static; `to_float` reads `n` values' blocks, which
    // `bytes` holds exactly (checked above), and writes `n` floats into `out`.
    unsafe {
        let traits = llama_cpp_sys_2::ggml_get_type_traits(ty.to_u32());
        let to_float = (*traits).to_float.expect("ggml has a to_float for every block type");
        to_float(bytes.as_ptr().cast(), out.as_mut_ptr(), n as i64);
    }
    out
}

/// ggml's own quantization of `rows` rows of `cols` values to `ty`.
pub fn ggml_quantize(ty: GgmlType, values: &[f32], rows: usize, cols: usize) -> Vec<u8> {
    let (per_block, block_bytes) = ty.block().unwrap();
    assert_eq!(values.len(), rows * cols);
    assert_eq!(cols % per_block, 0);
    let mut out = vec![0u8; rows * cols / per_block * block_bytes];
    // SAFETY: `values` holds rows x cols floats and `out` exactly the bytes of as many blocks;
    // no importance matrix (null) is accepted by every type used here.
    let written =
        unsafe { llama_cpp_sys_2::ggml_quantize_chunk(ty.to_u32(), values.as_ptr(), out.as_mut_ptr().cast(), 0, rows as i64, cols as i64, std::ptr::null()) };
    assert_eq!(written, out.len());
    out
}
