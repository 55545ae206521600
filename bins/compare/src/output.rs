//! The report (table, JSON, CSV, Markdown, SVG plot), the baseline check, and the exit status.

use crate::cli::*;
use anyhow::Result;
use bench_core::metrics::comparison::{self, Comparison, Settings};
use bench_core::metrics::report::write_atomic;
use bench_core::run::bench::BenchmarkResult;
use bench_core::run::request::{BenchRequest, ModelChoice};
use bench_hub::registry::DEFAULT_MODEL;
use bench_load::report::ServeComparison;
use compare::report::{self, Format as _};

/// The model as the request names it (registry name, size or path).
pub fn model_label(request: &BenchRequest) -> String {
    let name = match &request.model {
        ModelChoice::Registry(name) => name.clone(),
        ModelChoice::Size(size) => size.to_string(),
        ModelChoice::Path(path) => path.display().to_string(),
        ModelChoice::Default => DEFAULT_MODEL.into(),
    };
    if request.synthetic {
        format!("{name} (synthetic)")
    } else {
        name
    }
}

pub fn settings(cli: &Cli, request: &BenchRequest, results: &[BenchmarkResult]) -> Settings {
    let model = results.first().map(|r| r.model_size.clone()).unwrap_or_else(|| model_label(request));
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
pub fn write_reports(out: &OutputArgs, comparison: &Comparison) -> Result<()> {
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

/// Prints the serving report, and writes it (and the plot) where asked.
pub fn write_serve_reports(out: &OutputArgs, comparison: &ServeComparison) -> Result<()> {
    let rendered = match out.format {
        OutputFormat::Table => report::Table.render_serve(comparison),
        OutputFormat::Json => report::Json.render_serve(comparison),
        OutputFormat::Csv => report::Csv.render_serve(comparison),
        OutputFormat::Markdown => report::Markdown.render_serve(comparison),
    };
    println!("{rendered}");
    if let Some(path) = &out.output {
        write_atomic(path, rendered.as_bytes())?;
        eprintln!("report written to {}", path.display());
    }
    if let Some(path) = &out.plot {
        let svg = compare::plot::render_serve_svg(comparison).map_err(|e| anyhow::anyhow!("plotting: {e}"))?;
        write_atomic(path, svg.as_bytes())?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(())
}

/// Flags throughput / latency regressions beyond noise and `threshold` percent against a saved
/// comparison; whether there was any.
pub fn check_baseline(path: &std::path::Path, comparison: &Comparison, threshold: f64) -> Result<bool> {
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

/// What a run came to; its discriminant is compare's exit status (the one place they are set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every framework ran.
    AllRan = 0,
    /// An error, or no framework could run.
    Error = 1,
    /// Some framework was unavailable; the others are reported.
    SomeUnavailable = 2,
    /// A regression beyond noise against `--baseline`.
    Regressed = 3,
}

impl Outcome {
    /// A serving run: no server measured is an error; a server that could not start, or a
    /// request that failed, is reported and makes the status 2.
    pub fn of_serve(c: &ServeComparison) -> Outcome {
        if c.servers.is_empty() {
            eprintln!("error: no server could be measured");
            Outcome::Error
        } else if !c.unavailable.is_empty() || c.levels.iter().flat_map(|l| &l.results).any(|r| r.metrics.failed > 0) {
            Outcome::SomeUnavailable
        } else {
            Outcome::AllRan
        }
    }

    pub fn of(comparison: &Comparison, regressed: bool) -> Outcome {
        if comparison.results.is_empty() {
            eprintln!("error: no framework could run");
            Outcome::Error
        } else if regressed {
            Outcome::Regressed
        } else if !comparison.unavailable.is_empty() {
            Outcome::SomeUnavailable
        } else {
            Outcome::AllRan
        }
    }
}
