//! The comparison as JSON: every `BenchmarkResult`, the ratios, the cross-check, the machine.

use bench_core::metrics::comparison::Comparison;

pub struct Json;

impl super::Format for Json {
    fn render(&self, c: &Comparison) -> String {
        serde_json::to_string_pretty(c).expect("Comparison serialises")
    }
}
