//! `compare`: which framework runs this LLaMA faster and leaner here, and by how much.
//!
//! Exit status: 0 = every framework ran; 2 = some framework was unavailable (the others are
//! reported), or under `--serve` some request failed; 3 = a regression beyond noise against
//! `--baseline`; 1 = an error, or no framework ran.
//!
//! With `--serve`, each framework's OpenAI-compatible server (and any `--url`) gets the same
//! load, and the report is the serving one (`serve.rs`, metrics from `bench-load`).

mod cli;
mod measure;
mod output;
mod plan;
mod serve;

use std::process::ExitCode;

use anyhow::Result;
use bench_core::metrics::comparison::Comparison;
use bench_core::metrics::machine::MachineInfo;
use clap::Parser;

use cli::Cli;
use output::Outcome;

fn main() -> ExitCode {
    let outcome = run(Cli::parse()).unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        Outcome::Error
    });
    ExitCode::from(outcome as u8)
}

/// Plan, measure, report: what the run came to.
fn run(cli: Cli) -> Result<Outcome> {
    plan::check_options(&cli)?;
    let request = plan::base_request(&cli);
    if cli.serve.serve {
        return serve::run(&cli, &request);
    }
    let machine = MachineInfo::probe(!cli.output.no_bandwidth);
    let measured = measure::measure(&plan::frameworks(&cli), &plan::levels(&cli), &request)?;
    let settings = output::settings(&cli, &request, &measured.results);
    let comparison = Comparison::new(machine, settings, measured.results, measured.unavailable, measured.quality);
    output::write_reports(&cli.output, &comparison)?;
    let regressed = match &cli.output.baseline {
        Some(path) => output::check_baseline(path, &comparison, cli.output.regression_threshold)?,
        None => false,
    };
    Ok(Outcome::of(&comparison, regressed))
}
