//! The comparison as JSON: every `BenchmarkResult`, the ratios, the cross-check, the machine; for
//! `--serve` every level's metrics and every request's record.

use bench_core::metrics::comparison::Comparison;
use bench_load::report::ServeComparison;

pub struct Json;

impl super::Format for Json {
    fn render(&self, c: &Comparison) -> String {
        serde_json::to_string_pretty(c).expect("Comparison serialises")
    }

    /// Everything, every request's record included (timestamps, tokens, usage).
    fn render_serve(&self, c: &ServeComparison) -> String {
        serde_json::to_string_pretty(c).expect("ServeComparison serialises")
    }
}
