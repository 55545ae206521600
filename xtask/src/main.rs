//! `cargo xtask`: developer and user chores.
//!
//! - `download <name>...`: fetch registry models and assets into the cache (verified, atomic).
//! - `list`: what the registry has and what is in the cache.
//! - `setup-torch`: install libtorch 2.11.0 (for tch 0.24.0) from the pinned PyPI wheels into the
//!   cache and link it at `.libtorch` in the repository, where `.cargo/config.toml` points `LIBTORCH`.
//! - `synth-gguf`: write a GGUF of the real Llama 3.2 1B / Llama 3 8B shape with seeded random
//!   weights and the real Llama 3 tokenizer, labelled synthetic, into the cache (the `synth-gguf`
//!   package, run in release: it quantizes with candle, which xtask itself does not build).
//! - `lint`: `cargo fmt --all --check` and `cargo clippy --workspace --all-targets -D warnings`.
//! - `test`: install what the tests need, then run the whole workspace's tests.
//! - `quantize --from MODEL --type T[,T..]|all`: test setup: the model rewritten by llama.cpp's own
//!   quantizer in its common storage types (F16 .. IQ4_XS), into the cache's `quantized/` folder.
//! - `fuzz TARGET [--seconds N]`: run a libFuzzer target of the file readers (gguf, safetensors,
//!   config) on the stable toolchain; `cargo test` replays their corpus.
//! - `gpu-bundle [--out DIR]`: native-only, torch-only and compare built with CUDA (sm_90) on a
//!   machine without a GPU, stripped into one folder under 64 MiB with a `run.sh` for the GPU
//!   machines (see `gpu.rs`).
//! - `compare` (alias `bench`): the main job on a fresh machine: install libtorch and the default
//!   model if missing, build the release binaries (llamacpp-only too where cmake and libclang are
//!   installed), run `compare` with the given arguments.

mod fuzz;
mod gpu;
mod llamacpp;
mod quantize;
mod torch;

use std::process::ExitCode;

use anyhow::Result;
use bench_hub::cache::Cache;
use bench_hub::download::{self, Outcome};
use bench_hub::registry::Registry;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "llama3-bench chores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download registry models or assets (e.g. smollm2-135m, llama3-tokenizer) into the cache.
    Download {
        /// Registry names (see `cargo xtask list`).
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List the registry's models and assets and whether each is in the cache.
    List,
    /// Install libtorch 2.11.0 (PyPI wheels, no network beyond the package registry) for the torch framework.
    SetupTorch,
    /// The main job: install what is missing (libtorch, the model), build, and compare the frameworks.
    #[command(alias = "bench")]
    Compare {
        /// Arguments for `compare` (see `compare --help`), e.g. --iterations 5 --plot out.svg
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Write a GGUF with the real Llama 3.2 1B / Llama 3 8B shape, seeded random weights (labelled
    /// synthetic in its metadata and every report), the real Llama 3 tokenizer and chat template
    /// (the `synth-gguf` package, built in release: `--size 1B|8B --type f16|q8_0|q4_0|q4_1|q4_k_m
    /// [--seed N] [--out FILE]`).
    SynthGguf {
        /// Arguments for `synth-gguf` (see `cargo xtask synth-gguf --help`)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Test setup: write a GGUF in llama.cpp's common storage types through llama.cpp's own
    /// quantizer (`llama_model_quantize`) into the cache's quantized/ folder. Needs cmake and libclang.
    Quantize {
        /// The GGUF to start from: a registry model (e.g. smollm2-135m) or a path (e.g. the
        /// synthetic 1B from `cargo xtask synth-gguf --size 1B --type f16`)
        #[arg(long)]
        from: String,
        /// Types, comma-separated, or all: f16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_m, q4_k_m, q5_k_m, q6_k, iq4_nl, iq4_xs
        #[arg(long = "type", value_delimiter = ',', required = true)]
        types: Vec<String>,
        /// Output folder (default: the cache's quantized/)
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Fuzz one of bench-core's file readers with libFuzzer (stable toolchain, needs a C++ compiler).
    Fuzz {
        /// gguf, safetensors or config
        target: String,
        /// How long to run
        #[arg(long, default_value_t = 600)]
        seconds: u64,
    },
    /// Build native-only, torch-only and compare with CUDA for H100/H200 (sm_90) and write them,
    /// stripped, with a run.sh, into one folder for the GPU machines (needs no GPU here).
    GpuBundle {
        /// Output folder (default target/gpu-bundle)
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// The lint gate (CI's first step): `cargo fmt --all --check`, then `cargo clippy --workspace
    /// --all-targets -- -D warnings` (installs libtorch first and needs cmake/libclang, as the
    /// torch and llama.cpp crates are workspace members).
    Lint,
    /// Install everything the tests need (libtorch, models, reference files), then run `cargo test --workspace`.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs cargo in the repository root.
fn cargo(command: &[&str], args: &[&str]) -> Result<()> {
    cargo_in(&torch::repo_root(), command, args)
}

/// The workspace's target folder (`CARGO_TARGET_DIR` when set).
fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| torch::repo_root().join("target"))
}

/// Runs cargo in `dir`, with llama.cpp's CPU options for this machine (`llamacpp::cpu_env`; only
/// llama.cpp's build reads them, and every build through xtask passes the same ones, so none
/// rebuilds llama.cpp for another).
fn cargo_in(dir: &std::path::Path, command: &[&str], args: &[&str]) -> Result<()> {
    if !matches!(command.first(), Some(&"clean") | Some(&"fmt")) {
        llamacpp::prepare_target(&target_dir())?;
    }
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(dir)
        .envs(llamacpp::cpu_env())
        .args(command)
        .args(args)
        .status()?;
    if !status.success() {
        anyhow::bail!("cargo {} failed ({status})", command.join(" "));
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let registry = Registry::load()?;
    let cache = Cache::from_env();
    match cli.command {
        Command::Download { names } => {
            for name in names {
                match download::fetch(&registry, &cache, &name)? {
                    Outcome::AlreadyPresent(paths) => {
                        println!("{name}: already in the cache, nothing downloaded");
                        for p in paths {
                            println!("  {}", p.display());
                        }
                    }
                    Outcome::Downloaded(paths) => {
                        println!("{name}: downloaded and verified");
                        for p in paths {
                            println!("  {}", p.display());
                        }
                    }
                }
            }
        }
        Command::SetupTorch => {
            let dir = torch::setup()?;
            println!("libtorch ready: {}", dir.display());
        }
        Command::Compare { args } => {
            // libtorch is optional: without it compare reports torch as unavailable.
            let torch_ok = match torch::setup() {
                Ok(_) => true,
                Err(e) => {
                    eprintln!("warning: libtorch could not be installed ({e:#}); comparing without torch");
                    false
                }
            };
            // The default or a --model NAME is fetched here; --size and --model-path are left to
            // the frameworks, which say what to download if it is missing.
            let wants_download = !args.iter().any(|a| a == "--model-path" || a == "--synthetic" || a == "--size");
            if wants_download {
                let model = args.iter().position(|a| a == "--model").and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| "smollm2-135m".into());
                download::fetch(&registry, &cache, &model)?;
            }
            let mut packages = vec!["-p", "native-only", "-p", "compare"];
            if torch_ok {
                packages.extend(["-p", "torch-only"]);
            }
            // llama.cpp is opt-in (a C++ build): built when the toolchain is there, else compare
            // lists it as unavailable with the fix.
            match llamacpp::check_toolchain() {
                Ok(()) => packages.extend(["-p", "llamacpp-only"]),
                Err(e) => eprintln!("warning: {e:#}; comparing without llamacpp"),
            }
            cargo(&["build", "--release"], &packages)?;
            let status = std::process::Command::new(torch::repo_root().join("target/release/compare")).args(&args).status()?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Command::Test { args } => {
            torch::setup()?;
            // The llamacpp crates are workspace members: their build needs cmake and libclang.
            llamacpp::check_toolchain()?;
            for name in ["smollm2-135m", "llama3-tokenizer", "tokenizer-references"] {
                download::fetch(&registry, &cache, name)?;
            }
            // Passing tests print what they measured (reference cases run and passed, parity
            // margins): show it unless the caller passes their own test-harness arguments.
            let mut rest: Vec<&str> = vec!["--workspace"];
            if args.is_empty() {
                rest.extend(["--", "--show-output"]);
            }
            rest.extend(args.iter().map(String::as_str));
            cargo(&["test"], &rest)?;
        }
        Command::Lint => {
            cargo(&["fmt", "--all", "--check"], &[]).map_err(|e| e.context("formatting differs from rustfmt.toml: run `cargo fmt --all`"))?;
            torch::setup()?;
            llamacpp::check_toolchain()?;
            cargo(&["clippy", "--workspace", "--all-targets"], &["--", "-D", "warnings"])?;
            println!("lint: formatting and clippy clean");
        }
        Command::GpuBundle { out } => gpu::bundle(out)?,
        Command::SynthGguf { args } => {
            let args: Vec<&str> = ["--"].into_iter().chain(args.iter().map(String::as_str)).collect();
            cargo(&["run", "--release", "-p", "synth-gguf"], &args)?;
        }
        Command::Quantize { from, types, out } => {
            quantize::run(&registry, &cache, &from, &types, out)?;
        }
        Command::Fuzz { target, seconds } => {
            if target == "gguf" {
                download::fetch(&registry, &cache, "smollm2-135m")?;
            }
            fuzz::run(&torch::repo_root(), &target, seconds)?;
        }
        Command::List => {
            println!("cache: {}", cache.root().display());
            for (name, m) in &registry.models {
                let have = cache.resolve(&registry, name).ok().flatten().is_some();
                println!("{name:16} {:9} {}", if have { "cached" } else { "-" }, m.description);
            }
            for (name, a) in &registry.assets {
                let have = cache.resolve(&registry, name).ok().flatten().is_some();
                println!("{name:16} {:9} {}", if have { "cached" } else { "-" }, a.description);
            }
        }
    }
    Ok(())
}
