//! Plots ([`plot`]) and the self-contained HTML report ([`report`]) of a results directory;
//! plots of the AR-hit analysis of real text ([`arhits_plot`]).

pub mod arhits_plot;
pub mod cost_plot;
pub mod decode_plot;
pub mod mad_plot;
pub mod plot;
pub mod report;
pub mod width_plot;
