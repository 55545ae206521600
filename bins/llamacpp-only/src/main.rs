//! `llamacpp-only`: chat with, generate from and benchmark a LLaMA model on the llama.cpp
//! framework. The command line and loops are bench-cli's, shared with `native-only`.

fn main() -> std::process::ExitCode {
    bench_cli::main(&backend_llamacpp::LlamaCppBackend)
}
