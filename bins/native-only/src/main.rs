//! `native-only`: chat with, generate from and benchmark a LLaMA model on the native (candle)
//! framework. The command line and loops are bench-cli's, shared with `torch-only`.

fn main() -> std::process::ExitCode {
    bench_cli::main(&backend_native::NativeBackend)
}
