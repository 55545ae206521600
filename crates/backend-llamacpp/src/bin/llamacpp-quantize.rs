//! `llamacpp-quantize FROM.gguf TYPE OUT.gguf`: rewrites a GGUF with llama.cpp's own quantizer
//! (`backend_llamacpp::quantize`). The test-setup step `cargo xtask quantize` runs it; TYPE is one
//! of llama-quantize's names (f16, q8_0, q4_k_m, iq4_xs, ...).

use std::path::PathBuf;
use std::process::ExitCode;

use backend_llamacpp::{quantize, FileType};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [from, ty, out] = args.as_slice() else {
        let names = FileType::ALL.map(|t| t.name()).join(", ");
        eprintln!("usage: llamacpp-quantize FROM.gguf TYPE OUT.gguf   (TYPE: {names})");
        return ExitCode::from(2);
    };
    let run = || -> bench_backend::Result<()> {
        let ty = FileType::parse(ty)?;
        let (from, out) = (PathBuf::from(from), PathBuf::from(out));
        if !from.is_file() {
            return Err(bench_backend::Error::InvalidInput(format!("{}: no such file (give a GGUF to quantize)", from.display())));
        }
        quantize(&from, &out, ty)
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
