//! Plots ([`plot`]) and the self-contained HTML report ([`report`]) of a results directory.

pub mod plot;
pub mod report;
