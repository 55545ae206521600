//! `compare`: runs every framework the same way, each in its own process, and reports them side
//! by side (table, JSON, CSV, Markdown, SVG plot), with a greedy-token correctness cross-check and
//! regression flags against a saved baseline.

pub mod child;
pub mod plot;
pub mod report;
pub mod server;
