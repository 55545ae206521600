//! `compare`: which framework runs this LLaMA faster and leaner here, and by how much.
//!
//! Exit status: 0 = every framework ran; 2 = some framework was unavailable (the others are
//! reported); 3 = a regression beyond noise against `--baseline`; 1 = an error, or no framework ran.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use bench_core::comparison::{self, Comparison, Quality, Settings, Unavailable};
use bench_core::files::{self, ModelType};
use bench_core::machine::MachineInfo;
use bench_core::report::write_atomic;
use clap::{Args, Parser, ValueEnum};
use compare::report::{self, Format as _};

const FRAMEWORKS: [&str; 3] = ["native", "torch", "llamacpp"];
/// Opt-in frameworks (they need a C++ toolchain to build): in the default set only when built.
const OPT_IN: [&str; 1] = ["llamacpp"];

#[derive(Debug, Parser)]
#[command(version, about = "Compare LLaMA 3 inference frameworks side by side, each in its own process",
    long_about = "Compare LLaMA 3 inference frameworks side by side, each in its own process.\n\n\
    Exit status: 0 every framework ran; 2 some framework was unavailable (the others are reported); \
    3 a regression beyond noise against --baseline; 1 an error, or no framework ran.")]
struct Cli {
    /// Frameworks to compare (default: native, torch, and llamacpp when it is built)
    #[arg(long, num_args = 1.., value_parser = FRAMEWORKS)]
    framework: Vec<String>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    bench: BenchArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Model")]
struct ModelArgs {
    /// Registry model (default smollm2-135m)
    #[arg(long, conflicts_with_all = ["size", "model_path"])]
    model: Option<String>,
    /// Llama 3 size from the registry: 1B, 8B, 70B, 405B
    #[arg(long, conflicts_with = "model_path")]
    size: Option<String>,
    /// A model file or folder (.gguf, or safetensors with config.json)
    #[arg(long)]
    model_path: Option<PathBuf>,
    /// Expected model type; detected from the files, a mismatch is an error
    #[arg(long, value_enum)]
    model_type: Option<ModelTypeArg>,
    /// Seeded random weights of the registry model's shape (labelled synthetic)
    #[arg(long)]
    synthetic: bool,
    /// Let each framework download the registry model (and tokenizer) if missing
    #[arg(long)]
    download: bool,
    /// Weight and compute dtype, the same for every framework; `native` runs each file's own
    /// storage (GGUF blocks stay quantized where the framework has kernels for them; torch
    /// dequantizes, and its weights column says so)
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DType,
    /// Load-time quantization, the same for every framework; `all` sweeps none, float16, int8 and
    /// nf4. Quantized runs also report KL divergence and top-1 agreement against the same
    /// framework's f32 run on the benchmark prompt
    #[arg(long, value_enum)]
    quantize: Option<Quantize>,
    /// Split the model across N devices
    #[arg(long, default_value_t = 1)]
    shard: usize,
    /// Let every framework load even when the model looks larger than the memory available
    #[arg(long)]
    ignore_memory_check: bool,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Benchmark")]
struct BenchArgs {
    /// Measured iterations per framework
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// Warm-up iterations, discarded
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Tokens generated per iteration (EOS ignored)
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Threads for every framework (default: all logical cores)
    #[arg(long)]
    threads: Option<usize>,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
    /// CPU kernels of the native framework: tuned (this project's, picked per CPU at run time) or
    /// stock (candle's own ops as shipped); other frameworks ignore it. Every result says which ran
    #[arg(long, value_enum, default_value_t = KernelsArg::Tuned)]
    kernels: KernelsArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KernelsArg {
    Tuned,
    Stock,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
struct OutputArgs {
    #[arg(long, value_enum, default_value = "table")]
    format: OutputFormat,
    /// Also write the report (in --format) to this file, atomically
    #[arg(long)]
    output: Option<PathBuf>,
    /// A saved `--format json` comparison: flag throughput/latency regressions beyond noise
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// With --baseline: smallest change (percent) that counts as a regression, on top of being
    /// beyond the noise (separate runs on a shared machine drift by a few percent)
    #[arg(long, default_value_t = 5.0)]
    regression_threshold: f64,
    /// Write an SVG plot: per-token latency over the generation, and throughput bars
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Skip measuring the machine's memory bandwidth
    #[arg(long)]
    no_bandwidth: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModelTypeArg {
    Llama,
    Gpt,
}
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DType {
    Native,
    F32,
    F16,
    Bf16,
}
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Quantize {
    Int8,
    Nf4,
    Float16,
    All,
}
#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
    Csv,
    Markdown,
}

fn name_of<T: ValueEnum>(v: T) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

/// A private folder for the runs' logit dumps (removed at the end).
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("llama3-bench-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if cli.bench.iterations == 0 || cli.bench.gen_tokens == 0 {
        bail!("--iterations and --gen-tokens must be at least 1");
    }
    // Checks that need no framework happen once, up front, with the original's messages.
    if let Some(path) = &cli.model.model_path {
        let files = files::discover(path)?;
        let expected = cli.model.model_type.map(|t| match t {
            ModelTypeArg::Llama => ModelType::Llama,
            ModelTypeArg::Gpt => ModelType::Gpt,
        });
        files::check_model_type(&files, expected)?;
    } else if matches!(cli.model.model_type, Some(ModelTypeArg::Gpt)) {
        bail!(bench_core::Error::ModelTypeMismatch { expected: "gpt".into(), detected: "llama".into() });
    }
    if cli.model.shard != 1 {
        bail!("--shard {} needs {} GPUs; this build runs one device per framework process. Use --shard 1", cli.model.shard, cli.model.shard);
    }
    let threads = cli.bench.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let frameworks: Vec<String> = if cli.framework.is_empty() {
        FRAMEWORKS.iter().filter(|f| !OPT_IN.contains(f) || compare::child::binary_for(f).is_file()).map(|s| s.to_string()).collect()
    } else {
        cli.framework.clone()
    };

    // Same arguments for every framework: same prompt, tokens, dtype, threads.
    let mut args: Vec<String> = vec![
        "--iterations".into(),
        cli.bench.iterations.to_string(),
        "--warmup".into(),
        cli.bench.warmup.to_string(),
        "--gen-tokens".into(),
        cli.bench.gen_tokens.to_string(),
        "--threads".into(),
        threads.to_string(),
        "--device".into(),
        cli.bench.device.clone(),
        "--kernels".into(),
        name_of(cli.bench.kernels),
    ];
    if let Some(m) = &cli.model.model {
        args.extend(["--model".into(), m.clone()]);
    }
    if let Some(s) = &cli.model.size {
        args.extend(["--size".into(), s.clone()]);
    }
    if let Some(p) = &cli.model.model_path {
        args.extend(["--model-path".into(), p.display().to_string()]);
    }
    if let Some(t) = cli.model.model_type {
        args.extend(["--model-type".into(), name_of(t)]);
    }
    if cli.model.synthetic {
        args.push("--synthetic".into());
    }
    if cli.model.download {
        args.push("--download".into());
    }
    if cli.model.ignore_memory_check {
        args.push("--ignore-memory-check".into());
    }

    let machine = MachineInfo::probe(!cli.output.no_bandwidth);
    let levels: Vec<Option<String>> = match cli.model.quantize {
        None => vec![None],
        Some(Quantize::All) => [None, Some(Quantize::Float16), Some(Quantize::Int8), Some(Quantize::Nf4)].into_iter().map(|q| q.map(name_of)).collect(),
        Some(q) => vec![Some(name_of(q))],
    };
    let dumps = tempfile_dir()?;
    let mut results = Vec::new();
    let mut unavailable: Vec<Unavailable> = Vec::new();
    let mut quality = Vec::new();
    'frameworks: for fw in &frameworks {
        let mut reference: Option<PathBuf> = None;
        for level in &levels {
            let label = match level {
                None => fw.clone(),
                Some(q) => format!("{fw} {q}"),
            };
            eprintln!("== {label} ==");
            let dump = dumps.join(format!("{fw}-{}.f32", level.as_deref().unwrap_or("none")));
            let mut a = args.clone();
            match level {
                None if matches!(cli.model.dtype, DType::Native) => {}
                None => a.extend(["--dtype".into(), name_of(cli.model.dtype)]),
                Some(q) => a.extend(["--quantize".into(), q.clone()]),
            }
            a.extend(["--dump-logits".into(), dump.display().to_string()]);
            let r = match compare::child::run_labelled(fw, &label, &a) {
                Ok(r) => r,
                Err(mut u) => {
                    eprintln!("{label} unavailable: {}", u.reason);
                    u.framework = label;
                    let fatal = level.is_none() || u.reason.contains("is not built");
                    unavailable.push(u);
                    if fatal {
                        continue 'frameworks;
                    }
                    continue;
                }
            };
            if let Some(q) = level {
                // Quality against this framework's own f32 run: measured for the sweep, or a
                // single untimed-for-reporting f32 pass when only a quantized level was asked for.
                if reference.is_none() {
                    let ref_dump = dumps.join(format!("{fw}-reference.f32"));
                    let mut a = args.clone();
                    for (flag, value) in [("--iterations", "1"), ("--warmup", "0"), ("--gen-tokens", "1")] {
                        if let Some(i) = a.iter().position(|x| x == flag) {
                            a[i + 1] = value.into();
                        }
                    }
                    a.extend(["--dtype".into(), "f32".into(), "--dump-logits".into(), ref_dump.display().to_string()]);
                    eprintln!("== {fw} f32 reference (for quality only) ==");
                    if compare::child::run_labelled(fw, &format!("{fw} f32 reference"), &a).is_ok() {
                        reference = Some(ref_dump);
                    }
                }
                if let Some(ref_path) = &reference {
                    let read = |p: &PathBuf| -> Result<Vec<f32>> {
                        Ok(std::fs::read(p)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
                    };
                    quality.push(Quality::measure(fw, q, &read(ref_path)?, &read(&dump)?, r.model.architecture.vocab_size)?);
                }
            } else {
                reference = Some(dump.clone());
            }
            results.push(r);
        }
    }
    let _ = std::fs::remove_dir_all(&dumps);
    let model_label = results.first().map(|r| r.model_size.clone()).unwrap_or_else(|| {
        cli.model.model.clone().or(cli.model.size.clone()).or(cli.model.model_path.as_ref().map(|p| p.display().to_string())).unwrap_or_else(|| "smollm2-135m".into())
    });
    let settings = Settings {
        model: model_label,
        dtype: name_of(cli.model.dtype),
        quantize: cli.model.quantize.map(name_of),
        iterations: cli.bench.iterations,
        warmup: cli.bench.warmup,
        gen_tokens: cli.bench.gen_tokens,
        threads,
        device: cli.bench.device.clone(),
    };
    let comparison = Comparison::new(machine, settings, results, unavailable, quality);

    let rendered = match cli.output.format {
        OutputFormat::Table => report::Table.render(&comparison),
        OutputFormat::Json => report::Json.render(&comparison),
        OutputFormat::Csv => report::Csv.render(&comparison),
        OutputFormat::Markdown => report::Markdown.render(&comparison),
    };
    println!("{rendered}");
    if let Some(path) = &cli.output.output {
        write_atomic(path, rendered.as_bytes())?;
        eprintln!("report written to {}", path.display());
    }
    if let Some(path) = &cli.output.plot {
        let svg = compare::plot::render_svg(&comparison).map_err(|e| anyhow::anyhow!("plotting: {e}"))?;
        write_atomic(path, svg.as_bytes())?;
        eprintln!("plot written to {}", path.display());
    }
    let mut regressed = false;
    if let Some(path) = &cli.output.baseline {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading baseline {}: {e}", path.display()))?;
        let base = Comparison::from_json(&text)?;
        let found = comparison::regressions(&base, &comparison, cli.output.regression_threshold);
        if found.is_empty() {
            eprintln!("baseline {}: no regression beyond noise and {}%", path.display(), cli.output.regression_threshold);
        }
        for r in &found {
            eprintln!(
                "REGRESSION {} {}: {:.3} -> {:.3} ({:+.1}%, beyond noise) vs {}",
                r.framework,
                r.metric,
                r.baseline,
                r.current,
                r.change_percent,
                path.display()
            );
        }
        regressed = !found.is_empty();
    }
    Ok(if comparison.results.is_empty() {
        eprintln!("error: no framework could run");
        ExitCode::from(1)
    } else if regressed {
        ExitCode::from(3)
    } else if !comparison.unavailable.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
