//! `compare`: which framework runs this LLaMA faster and leaner here, and by how much.
//!
//! Exit status: 0 = every framework ran; 2 = some framework was unavailable (the others are
//! reported); 3 = a regression beyond noise against `--baseline`; 1 = an error, or no framework ran.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use bench_backend::backend::{DType, Device, Kernels, Quantize};
use bench_core::metrics::comparison::{self, Comparison, Quality, Settings, Unavailable, UnavailableKind};
use bench_core::metrics::machine::MachineInfo;
use bench_core::metrics::report::write_atomic;
use bench_core::run::bench::BenchmarkResult;
use bench_core::run::request::{BenchRequest, ModelChoice};
use bench_hub::files::{self, ModelType};
use clap::{Args, Parser, ValueEnum};
use compare::report::{self, Format as _};

const FRAMEWORKS: [&str; 3] = ["native", "torch", "llamacpp"];
/// Opt-in frameworks (they need a C++ toolchain to build): in the default set only when built.
const OPT_IN: [&str; 1] = ["llamacpp"];

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Compare LLaMA 3 inference frameworks side by side, each in its own process",
    long_about = "Compare LLaMA 3 inference frameworks side by side, each in its own process.\n\n\
    Exit status: 0 every framework ran; 2 some framework was unavailable (the others are reported); \
    3 a regression beyond noise against --baseline; 1 an error, or no framework ran."
)]
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
    model_type: Option<ModelType>,
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
    dtype: DTypeArg,
    /// Load-time quantization, the same for every framework; `all` sweeps none, float16, int8 and
    /// nf4. Quantized runs also report KL divergence and top-1 agreement against the same
    /// framework's f32 run on the benchmark prompt
    #[arg(long, value_enum)]
    quantize: Option<QuantizeArg>,
    /// Split each framework's model over N devices in its process: contiguous layer ranges on
    /// cuda:0..cuda:N-1 (needs --device cuda); each result lists its shards' weight bytes
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
    device: Device,
    /// CPU kernels: tuned = native's SIMD kernels, picked for the CPU at run time, and torch's
    /// int8 / NF4 products of a few tokens on the codes; stock = each framework's own ops as
    /// shipped (candle's, libtorch's). llama.cpp ignores it. Every result says which ran
    #[arg(long, value_enum, default_value_t = Kernels::Tuned)]
    kernels: Kernels,
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
enum DTypeArg {
    Native,
    F32,
    F16,
    Bf16,
}
#[derive(Debug, Clone, Copy, ValueEnum)]
enum QuantizeArg {
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
    check_options(&cli)?;
    let request = base_request(&cli);
    let machine = MachineInfo::probe(!cli.output.no_bandwidth);
    let measured = measure(&frameworks(&cli), &levels(&cli), &request)?;
    let comparison = Comparison::new(machine, settings(&cli, &request, &measured.results), measured.results, measured.unavailable, measured.quality);
    write_reports(&cli.output, &comparison)?;
    let regressed = match &cli.output.baseline {
        Some(path) => check_baseline(path, &comparison, cli.output.regression_threshold)?,
        None => false,
    };
    Ok(exit_code(&comparison, regressed))
}

/// The checks that need no framework, made once up front with the original's messages.
fn check_options(cli: &Cli) -> Result<()> {
    if cli.bench.iterations == 0 || cli.bench.gen_tokens == 0 {
        bail!("--iterations and --gen-tokens must be at least 1");
    }
    if let Some(path) = &cli.model.model_path {
        files::check_model_type(&files::discover(path)?, cli.model.model_type)?;
    } else if cli.model.model_type == Some(ModelType::Gpt) {
        bail!(bench_core::Error::ModelTypeMismatch { expected: "gpt".into(), detected: "llama".into() });
    }
    if cli.model.shard == 0 {
        bail!("--shard must be at least 1");
    }
    Ok(())
}

/// The request every framework gets: same model, prompt, tokens, dtype, threads.
fn base_request(cli: &Cli) -> BenchRequest {
    let model = match (&cli.model.model, &cli.model.size, &cli.model.model_path) {
        (Some(name), _, _) => ModelChoice::Registry(name.clone()),
        (None, Some(size), _) => ModelChoice::Size(size.clone()),
        (None, None, Some(path)) => ModelChoice::Path(path.clone()),
        (None, None, None) => ModelChoice::Default,
    };
    BenchRequest {
        model,
        model_type: cli.model.model_type,
        synthetic: cli.model.synthetic,
        download: cli.model.download,
        ignore_memory_check: cli.model.ignore_memory_check,
        dtype: match cli.model.dtype {
            DTypeArg::Native => None,
            DTypeArg::F32 => Some(DType::F32),
            DTypeArg::F16 => Some(DType::F16),
            DTypeArg::Bf16 => Some(DType::BF16),
        },
        quantize: None,
        iterations: cli.bench.iterations,
        warmup: cli.bench.warmup,
        gen_tokens: cli.bench.gen_tokens,
        threads: cli.bench.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        device: cli.bench.device,
        kernels: cli.bench.kernels,
        shard: cli.model.shard,
        dump_logits: None,
    }
}

/// The frameworks asked for, or the default set (opt-in ones only when built).
fn frameworks(cli: &Cli) -> Vec<String> {
    if !cli.framework.is_empty() {
        return cli.framework.clone();
    }
    FRAMEWORKS.iter().filter(|f| !OPT_IN.contains(f) || compare::child::binary_for(f).is_file()).map(|s| s.to_string()).collect()
}

/// The quantization levels to run: `None` is the plain (unquantized) run.
fn levels(cli: &Cli) -> Vec<Option<Quantize>> {
    match cli.model.quantize {
        None => vec![None],
        Some(QuantizeArg::All) => vec![None, Some(Quantize::Float16), Some(Quantize::Int8), Some(Quantize::Nf4)],
        Some(QuantizeArg::Float16) => vec![Some(Quantize::Float16)],
        Some(QuantizeArg::Int8) => vec![Some(Quantize::Int8)],
        Some(QuantizeArg::Nf4) => vec![Some(Quantize::Nf4)],
    }
}

/// What the child processes produced.
#[derive(Default)]
struct Measured {
    results: Vec<BenchmarkResult>,
    unavailable: Vec<Unavailable>,
    quality: Vec<Quality>,
}

/// Runs every framework at every level, each in its own process. A framework that is not built,
/// or cannot run its plain level, is listed as unavailable and its other levels are skipped.
fn measure(frameworks: &[String], levels: &[Option<Quantize>], base: &BenchRequest) -> Result<Measured> {
    let dumps = tempfile_dir()?;
    let mut m = Measured::default();
    'frameworks: for fw in frameworks {
        let mut reference: Option<PathBuf> = None;
        for &level in levels {
            let label = match level {
                None => fw.clone(),
                Some(q) => format!("{fw} {}", q.as_str()),
            };
            eprintln!("== {label} ==");
            let dump = dumps.join(format!("{fw}-{}.f32", level.map(Quantize::as_str).unwrap_or("none")));
            let request = match level {
                None => BenchRequest { dump_logits: Some(dump.clone()), ..base.clone() },
                Some(q) => BenchRequest { dtype: None, quantize: Some(q), dump_logits: Some(dump.clone()), ..base.clone() },
            };
            let r = match compare::child::run(fw, &label, &request) {
                Ok(r) => r,
                Err(mut u) => {
                    eprintln!("{label} unavailable: {}", u.reason);
                    u.framework = label;
                    let fatal = level.is_none() || u.kind == UnavailableKind::NotBuilt;
                    m.unavailable.push(u);
                    if fatal {
                        continue 'frameworks;
                    }
                    continue;
                }
            };
            match level {
                None => reference = Some(dump),
                Some(q) => {
                    if reference.is_none() {
                        reference = f32_reference(fw, base, &dumps);
                    }
                    if let Some(ref_path) = &reference {
                        let vocab = r.model.architecture.vocab_size;
                        m.quality.push(Quality::measure(fw, q.as_str(), &read_f32s(ref_path)?, &read_f32s(&dump)?, vocab)?);
                    }
                }
            }
            m.results.push(r);
        }
    }
    let _ = std::fs::remove_dir_all(&dumps);
    Ok(m)
}

/// A single f32 pass of `fw` for the quality of its quantized runs when the sweep has no plain
/// level: its logit dump, or `None` when it could not run.
fn f32_reference(fw: &str, base: &BenchRequest, dumps: &std::path::Path) -> Option<PathBuf> {
    let dump = dumps.join(format!("{fw}-reference.f32"));
    let request =
        BenchRequest { iterations: 1, warmup: 0, gen_tokens: 1, dtype: Some(DType::F32), quantize: None, dump_logits: Some(dump.clone()), ..base.clone() };
    eprintln!("== {fw} f32 reference (for quality only) ==");
    compare::child::run(fw, &format!("{fw} f32 reference"), &request).ok().map(|_| dump)
}

fn read_f32s(path: &std::path::Path) -> Result<Vec<f32>> {
    Ok(std::fs::read(path)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn settings(cli: &Cli, request: &BenchRequest, results: &[BenchmarkResult]) -> Settings {
    let model = results.first().map(|r| r.model_size.clone()).unwrap_or_else(|| match &request.model {
        ModelChoice::Registry(name) => name.clone(),
        ModelChoice::Size(size) => size.clone(),
        ModelChoice::Path(path) => path.display().to_string(),
        ModelChoice::Default => "smollm2-135m".into(),
    });
    Settings {
        model,
        dtype: name_of(cli.model.dtype),
        quantize: cli.model.quantize.map(name_of),
        iterations: request.iterations,
        warmup: request.warmup,
        gen_tokens: request.gen_tokens,
        threads: request.threads,
        device: request.device.to_string(),
    }
}

/// Prints the report, and writes it (and the plot) where asked.
fn write_reports(out: &OutputArgs, comparison: &Comparison) -> Result<()> {
    let rendered = match out.format {
        OutputFormat::Table => report::Table.render(comparison),
        OutputFormat::Json => report::Json.render(comparison),
        OutputFormat::Csv => report::Csv.render(comparison),
        OutputFormat::Markdown => report::Markdown.render(comparison),
    };
    println!("{rendered}");
    if let Some(path) = &out.output {
        write_atomic(path, rendered.as_bytes())?;
        eprintln!("report written to {}", path.display());
    }
    if let Some(path) = &out.plot {
        let svg = compare::plot::render_svg(comparison).map_err(|e| anyhow::anyhow!("plotting: {e}"))?;
        write_atomic(path, svg.as_bytes())?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(())
}

/// Flags throughput / latency regressions beyond noise and `threshold` percent against a saved
/// comparison; whether there was any.
fn check_baseline(path: &std::path::Path, comparison: &Comparison, threshold: f64) -> Result<bool> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading baseline {}: {e}", path.display()))?;
    let found = comparison::regressions(&Comparison::from_json(&text)?, comparison, threshold);
    if found.is_empty() {
        eprintln!("baseline {}: no regression beyond noise and {threshold}%", path.display());
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
    Ok(!found.is_empty())
}

fn exit_code(comparison: &Comparison, regressed: bool) -> ExitCode {
    if comparison.results.is_empty() {
        eprintln!("error: no framework could run");
        ExitCode::from(1)
    } else if regressed {
        ExitCode::from(3)
    } else if !comparison.unavailable.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
