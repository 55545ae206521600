//! `compare`: which framework runs this LLaMA faster and leaner here, and by how much.
//!
//! Exit status: 0 = every framework ran; 2 = some framework was unavailable (the others are
//! reported); 3 = a regression beyond noise against `--baseline`; 1 = an error, or no framework ran.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use bench_core::comparison::{self, Comparison, Settings};
use bench_core::files::{self, ModelType};
use bench_core::machine::MachineInfo;
use bench_core::report::write_atomic;
use clap::{Args, Parser, ValueEnum};
use compare::report::{self, Format as _};

const FRAMEWORKS: [&str; 2] = ["native", "torch"];

#[derive(Debug, Parser)]
#[command(version, about = "Compare LLaMA 3 inference frameworks side by side, each in its own process",
    long_about = "Compare LLaMA 3 inference frameworks side by side, each in its own process.\n\n\
    Exit status: 0 every framework ran; 2 some framework was unavailable (the others are reported); \
    3 a regression beyond noise against --baseline; 1 an error, or no framework ran.")]
struct Cli {
    /// Frameworks to compare (default: all)
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
    /// Weight and compute dtype, the same for every framework
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DType,
    /// Load-time quantization, the same for every framework
    #[arg(long, value_enum)]
    quantize: Option<Quantize>,
    /// Split the model across N devices
    #[arg(long, default_value_t = 1)]
    shard: usize,
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
    F32,
    F16,
    Bf16,
}
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Quantize {
    Int8,
    Nf4,
    Float16,
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
    let frameworks: Vec<String> = if cli.framework.is_empty() { FRAMEWORKS.iter().map(|s| s.to_string()).collect() } else { cli.framework.clone() };

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
    ];
    match cli.model.quantize {
        Some(q) => args.extend(["--quantize".into(), name_of(q)]),
        None => args.extend(["--dtype".into(), name_of(cli.model.dtype)]),
    }
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

    let machine = MachineInfo::probe(!cli.output.no_bandwidth);
    let mut results = Vec::new();
    let mut unavailable = Vec::new();
    for fw in &frameworks {
        eprintln!("== {fw} ==");
        match compare::child::run(fw, &args) {
            Ok(r) => results.push(r),
            Err(u) => {
                eprintln!("{fw} unavailable: {}", u.reason);
                unavailable.push(u);
            }
        }
    }
    let model_label = results.first().map(|r| r.model_size.clone()).unwrap_or_else(|| {
        cli.model.model.clone().or(cli.model.size.clone()).or(cli.model.model_path.as_ref().map(|p| p.display().to_string())).unwrap_or_else(|| "smollm2-135m".into())
    });
    let settings = Settings {
        model: model_label,
        dtype: if cli.model.quantize.is_some() { "per --quantize".into() } else { name_of(cli.model.dtype) },
        quantize: cli.model.quantize.map(name_of),
        iterations: cli.bench.iterations,
        warmup: cli.bench.warmup,
        gen_tokens: cli.bench.gen_tokens,
        threads,
        device: cli.bench.device.clone(),
    };
    let comparison = Comparison::new(machine, settings, results, unavailable);

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
