//! The comparison as a Markdown section (for READMEs and pull requests).

use bench_core::metrics::comparison::Comparison;
use bench_load::report::ServeComparison;

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
        let header = super::table::startup_header(q);
        out.push_str(&format!("| {} |\n", header.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
        for r in super::rows(c) {
            out.push_str(&format!("| {} |\n", super::table::startup_cells(&r, q).join(" | ")));
        }
        out.push_str(&format!("\n{}\n\n", super::table::STARTUP_NOTE));
        for line in super::summary_lines(c) {
            out.push_str(&format!("- {line}\n"));
        }
        out
    }

    fn render_serve(&self, c: &ServeComparison) -> String {
        let mut out = String::new();
        for line in super::serve::setup_lines(c) {
            out.push_str(&format!("- {line}\n"));
        }
        for level in &c.levels {
            out.push_str(&format!("\n**Concurrency {}**\n\n", level.concurrency));
            out.push_str(&format!("| {} |\n", super::serve::HEADER.join(" | ")));
            out.push_str(&format!("|{}\n", "---|".repeat(super::serve::HEADER.len())));
            for r in &level.results {
                out.push_str(&format!("| {} |\n", super::serve::cells(r).join(" | ")));
            }
        }
        out.push('\n');
        for line in super::serve::summary_lines(c) {
            out.push_str(&format!("- {line}\n"));
        }
        out
    }
}
