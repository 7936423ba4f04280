//! Analysis (layer: analysis, the top of the library): plots ([`plot`]) and the self-contained
//! HTML report ([`report`]) of a results directory; the AR-hit evaluation of trained text models
//! ([`arhits`], `zoology arhits`) and its plots ([`arhits_plot`]).
//!
//! Layer 11 of 11, **analysis** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

pub mod arhits;
pub mod arhits_gap_plot;
pub mod arhits_plot;
pub mod arhits_trajectory;
pub mod cost_plot;
pub mod decode_plot;
pub mod mad_plot;
pub mod plot;
pub mod report;
pub mod width_plot;
