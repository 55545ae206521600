//! What a run measured and how it is reported: statistics, the machine, reports, comparisons.

pub mod comparison;
pub mod machine;
pub mod report;
pub mod stats;
