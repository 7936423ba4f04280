//! Pieces shared by several mixers, none of them a mixer itself: layers and tensor plumbing
//! ([`layers`]), range checks for hyperparameters ([`bounds`]), the chunk layout of every
//! chunked form ([`chunking`]), causal convolutions ([`conv`]), diagonal modal recurrences
//! ([`modal`]), the parallel scan ([`scan`]), and the two recurrence cores that several mixers
//! wrap: decayed linear attention ([`decayed_linear`]) and the (gated) delta rule
//! ([`delta_rule`]); and fused C++ kernels with their own backward ([`fused`]: Mamba's selective
//! scan). A mixer file (one per mixer, in the parent folder) builds on these.

pub mod bounds;
pub mod chunking;
pub mod conv;
pub mod decayed_linear;
pub mod delta_rule;
pub mod diag64;
pub mod dplr;
pub mod fused;
pub mod layers;
pub mod modal;
pub mod scan;
pub mod torch_init;
