//! The comparison as a Markdown section (for READMEs and pull requests).

use bench_core::metrics::comparison::Comparison;

pub struct Markdown;

impl super::Format for Markdown {
    fn render(&self, c: &Comparison) -> String {
        let mut out = String::new();
        for line in super::setup_lines(c) {
            out.push_str(&format!("- {line}\n"));
        }
        out.push('\n');
        let q = super::quantized(c);
        let header = super::table::header(q);
        out.push_str(&format!("| {} |\n", header.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
        for r in super::rows(c) {
            out.push_str(&format!("| {} |\n", super::table::row_cells(&r, q).join(" | ")));
        }
        out.push('\n');
        for line in super::summary_lines(c) {
            out.push_str(&format!("- {line}\n"));
        }
        out
    }
}
