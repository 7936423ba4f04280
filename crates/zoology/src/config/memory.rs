//! A lower bound on a run's memory from its sizes alone ([`MemoryEstimate`]), and the machine's
//! memory ([`mem_total_bytes`]).

use super::RunConfig;
use crate::error::{config_err, Result};
use crate::tasks::TaskConfig;

pub(crate) fn gib(b: f64) -> String {
    format!("{:.1} GiB", b / (1u64 << 30) as f64)
}

/// What one layer's sequence mixer costs: parameters, and activation floats kept for the
/// backward pass per token. The hook for per-mixer cost functions; until a mixer has one, the
/// generic bound is used (no parameters, the mixer's output only), which never overestimates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerCost {
    pub params: f64,
    pub activations_per_token: f64,
}

/// Cost of one layer's mixer. Per-mixer cost functions (from the registry) plug in here.
pub fn mixer_layer_cost(_mixer: &toml::Table, d_model: f64) -> LayerCost {
    LayerCost { params: 0.0, activations_per_token: d_model }
}

/// A lower bound on the memory of a training run, in bytes, from its sizes alone: parameters
/// with their gradients and AdamW moments (4 × 4 bytes each: embedding, positions, norms, state
/// mixers and [`mixer_layer_cost`]), training activations (per token and layer: the block's
/// two LayerNorm inputs and outputs, the mixer's output and the state mixer's hidden units, f32)
/// and the token data (host i32 + device i64 copies of inputs and targets). Validation refuses a
/// config above [`crate::limits::MAX_BYTES`]; the trainer refuses one above the machine's memory
/// before it allocates anything. Being a lower bound, it never refuses a config that fits.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEstimate {
    pub parameters: f64,
    pub bytes: f64,
    /// (what, bytes, which config keys drive it)
    pub parts: Vec<(&'static str, f64, &'static str)>,
}

impl MemoryEstimate {
    pub fn of(cfg: &RunConfig) -> Self {
        use crate::model::state_mixer::StateMixerKind;
        let m = &cfg.model;
        let d = m.d_model.max(0) as f64;
        let layers = m.n_layers.max(0) as f64;
        let v = cfg.data.vocab_size as f64;
        let state_mixer = match m.state_mixer {
            StateMixerKind::Identity => (0.0, 0.0),
            StateMixerKind::Mlp => (8.0 * d * d + 5.0 * d, 8.0 * d),
            StateMixerKind::Glu => (12.0 * d * d + 9.0 * d, 12.0 * d),
            StateMixerKind::SwiGlu => {
                let h = crate::model::state_mixer::swiglu_hidden(m.d_model.max(0)) as f64;
                (3.0 * d * h, 3.0 * h)
            }
            StateMixerKind::RwkvChannel => (9.0 * d * d + 2.0 * d, 8.0 * d),
        };
        let mixer = mixer_layer_cost(&m.mixer, d);
        let per_layer = 4.0 * d + state_mixer.0 + mixer.params;
        let params = v * d * if m.tie_embeddings { 1.0 } else { 2.0 }
            + m.max_position_embeddings.max(0) as f64 * d
            + layers * per_layer
            + 2.0 * d;
        let tokens =
            |segs: &[TaskConfig]| segs.iter().map(|t| t.num_examples() as f64 * t.seq_len() as f64).sum::<f64>();
        let data = 24.0 * (tokens(&cfg.data.train) + tokens(&cfg.data.test));
        let max_train_len = cfg.data.train.iter().map(|t| t.seq_len()).max().unwrap_or(0) as f64;
        let per_token = d + layers * (4.0 * d + mixer.activations_per_token + state_mixer.1);
        let activations = 4.0 * cfg.data.batch_size as f64 * max_train_len * per_token;
        let parts = vec![
            (
                "parameters with gradients and AdamW state",
                16.0 * params,
                "model.d_model, model.n_layers, data.vocab_size, model.max_position_embeddings",
            ),
            ("training activations", activations, "data.batch_size × seq_len × model.d_model × model.n_layers"),
            ("token data", data, "num_examples × seq_len of [[data.train]] and [[data.test]]"),
        ];
        MemoryEstimate { parameters: params, bytes: parts.iter().map(|p| p.1).sum(), parts }
    }

    pub fn describe(&self) -> String {
        let parts: Vec<String> =
            self.parts.iter().filter(|p| p.1 > 0.0).map(|(w, b, k)| format!("{w} {} ({k})", gib(*b))).collect();
        format!("this run needs at least {}: {}", gib(self.bytes), parts.join("; "))
    }

    /// Refuses the run when it cannot fit in this machine's memory (CPU: MemTotal; on a GPU the
    /// parameters, activations and device data must fit in the host's memory too, so the same
    /// bound is a valid lower bound there).
    pub fn check_fits_here(&self) -> Result<()> {
        let Some(total) = mem_total_bytes() else { return Ok(()) };
        if self.bytes > total {
            return Err(config_err(
                "<memory>",
                format!(
                    "{}, more than the {} of memory this machine has; make the largest part smaller",
                    self.describe(),
                    gib(total)
                ),
            ));
        }
        Ok(())
    }
}

/// MemTotal of /proc/meminfo in bytes.
pub fn mem_total_bytes() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|kb| kb * 1024.0)
}
