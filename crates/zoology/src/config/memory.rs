//! A lower bound on a run's memory from its sizes alone ([`MemoryEstimate`]), and the machine's
//! memory ([`mem_total_bytes`]).

use super::RunConfig;
use crate::error::{config_err, Result};
use crate::mixers::{BuildCtx, MixerMemory};
use crate::tasks::TaskConfig;

pub(crate) fn gib(b: f64) -> String {
    format!("{:.1} GiB", b / (1u64 << 30) as f64)
}

/// What one layer's sequence mixer costs at `seq_len`: the mixer's own statement
/// ([`crate::mixers::MixerKind::memory`]: parameters, what it keeps for the backward pass, its
/// largest transient intermediate), or the conservative default (no parameters, the output)
/// when the table does not parse.
pub fn mixer_layer_cost(mixer: &toml::Table, d_model: i64, ctx: &BuildCtx, seq_len: i64) -> MixerMemory {
    crate::mixers::memory_table(mixer, d_model, ctx, seq_len)
        .unwrap_or_else(|_| MixerMemory::output_only(d_model, seq_len))
}

/// One part of the estimate: what it is, its bytes, the config key to change first (the
/// refusal's field) and every key that drives it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPart {
    pub what: String,
    pub bytes: f64,
    pub field: String,
    pub keys: &'static str,
}

/// A lower bound on the memory of a training run, in bytes, from its sizes alone:
///
/// - parameters with their gradients and AdamW moments (4 × 4 bytes each): embedding,
///   positions, norms, state mixers and each layer's mixer as it states its own count
///   ([`crate::mixers::MixerKind::memory`]);
/// - training activations kept for the backward pass (per token and layer: the block's two
///   LayerNorm inputs and outputs, the state mixer's hidden units and what the mixer keeps,
///   e.g. attention's `H·L²` softmax weights), at the training batch size and longest training
///   sequence; 4 bytes each (2 in bf16);
/// - the largest transient intermediate of one layer's mixer (attention's scores before their
///   softmax), in training or in evaluation (the test batch at the longest test sequence);
/// - the token data (host i32 + device i64 copies of inputs and targets).
///
/// Validation refuses a config above [`crate::limits::MAX_BYTES`]; `train` refuses one above the
/// machine's memory before it writes or allocates anything. Being a lower bound, it never refuses
/// a config that fits. The refusal names the largest part's config key.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEstimate {
    pub parameters: f64,
    pub bytes: f64,
    pub parts: Vec<MemoryPart>,
}

impl MemoryEstimate {
    pub fn of(cfg: &RunConfig) -> Self {
        use crate::model::state_mixer::StateMixerKind;
        let m = &cfg.model;
        let (d_i, layers_i) = (m.d_model.max(0), m.n_layers.clamp(0, crate::limits::MAX_LAYERS));
        let (d, layers) = (d_i as f64, layers_i as f64);
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
        let max_len = |segs: &[TaskConfig]| segs.iter().map(|t| t.seq_len()).max().unwrap_or(0) as i64;
        let (train_len, test_len) = (max_len(&cfg.data.train), max_len(&cfg.data.test));
        let model_len = cfg.max_seq_len() as i64;
        // each layer's mixer at the training length, and at the test length for evaluation
        let mixers: Vec<(MixerMemory, MixerMemory)> = (0..layers_i as usize)
            .map(|i| {
                let ctx = BuildCtx::new(i, layers_i as usize, model_len);
                (mixer_layer_cost(&m.mixer, d_i, &ctx, train_len), mixer_layer_cost(&m.mixer, d_i, &ctx, test_len))
            })
            .collect();
        let mixer_params: f64 = mixers.iter().map(|(t, _)| t.params.unwrap_or(0.0)).sum();
        let params = v * d * if m.tie_embeddings { 1.0 } else { 2.0 }
            + m.max_position_embeddings.max(0) as f64 * d
            + layers * (4.0 * d + state_mixer.0)
            + mixer_params
            + 2.0 * d;
        let tokens =
            |segs: &[TaskConfig]| segs.iter().map(|t| t.num_examples() as f64 * t.seq_len() as f64).sum::<f64>();
        let data = 24.0 * (tokens(&cfg.data.train) + tokens(&cfg.data.test));
        let elt = if cfg.train.precision == crate::device::Precision::Bf16 { 2.0 } else { 4.0 };
        let (b_train, b_test) =
            (cfg.data.batch_size as f64, cfg.data.test_batch_size.unwrap_or(cfg.data.batch_size) as f64);
        let lt = train_len as f64;
        let saved: f64 = mixers.iter().map(|(t, _)| t.saved_per_seq).sum();
        let activations = elt * b_train * (lt * (d + layers * (4.0 * d + state_mixer.1)) + saved);
        // the largest transient of one layer, in training or in evaluation
        let transient = mixers
            .iter()
            .flat_map(|(t, e)| [(b_train * t.transient_per_seq, t), (b_test * e.transient_per_seq, e)])
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let mut parts = vec![
            MemoryPart {
                what: "parameters with gradients and AdamW state".into(),
                bytes: 16.0 * params,
                field: "model.d_model".into(),
                keys:
                    "model.d_model, model.n_layers, data.vocab_size, model.max_position_embeddings, the mixer's widths",
            },
            MemoryPart {
                what: "training activations".into(),
                bytes: activations,
                field: "data.batch_size".into(),
                keys: "data.batch_size × seq_len × model.d_model × model.n_layers",
            },
        ];
        if let Some((x, mm)) = transient.filter(|t| t.0 > 0.0) {
            parts.push(MemoryPart {
                what: format!("the mixer's {}", mm.transient_what),
                bytes: elt * x,
                field: "data.batch_size".into(),
                keys: "data.batch_size (data.test_batch_size in evaluation) and seq_len",
            });
        }
        parts.push(MemoryPart {
            what: "token data".into(),
            bytes: data,
            field: largest_segment(cfg),
            keys: "num_examples × seq_len of [[data.train]] and [[data.test]]",
        });
        MemoryEstimate { parameters: params, bytes: parts.iter().map(|p| p.bytes).sum(), parts }
    }

    /// The part that needs the most memory.
    pub fn largest(&self) -> Option<&MemoryPart> {
        self.parts.iter().max_by(|a, b| a.bytes.total_cmp(&b.bytes))
    }

    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .filter(|p| p.bytes > 0.0)
            .map(|p| format!("{} {} ({})", p.what, gib(p.bytes), p.keys))
            .collect();
        format!("this run needs at least {}: {}", gib(self.bytes), parts.join("; "))
    }

    /// The refusal of a run above `limit` bytes (`where_`: "this machine has", ...): the
    /// estimate, its parts, and the largest part's key as the field to change.
    pub fn refusal(&self, limit: f64, where_: &str) -> crate::Error {
        let (field, what) =
            self.largest().map(|p| (p.field.clone(), p.what.clone())).unwrap_or(("<memory>".into(), String::new()));
        config_err(
            field.clone(),
            format!(
                "{}, more than the {} {where_}; the largest part is {what}: make it smaller (change `{field}` first)",
                self.describe(),
                gib(limit)
            ),
        )
    }

    /// Refuses the run when it cannot fit in this machine's memory (CPU: MemTotal; on a GPU the
    /// parameters, activations and device data must fit in the host's memory too, so the same
    /// bound is a valid lower bound there).
    pub fn check_fits_here(&self) -> Result<()> {
        let Some(total) = mem_total_bytes() else { return Ok(()) };
        if self.bytes > total {
            return Err(self.refusal(total, "of memory this machine has"));
        }
        Ok(())
    }
}

/// `data.train[i].num_examples` (or `data.test[i]`) of the segment with the most tokens.
fn largest_segment(cfg: &RunConfig) -> String {
    let all = cfg.data.train.iter().enumerate().map(|(i, t)| (format!("data.train[{i}]"), t));
    let all = all.chain(cfg.data.test.iter().enumerate().map(|(i, t)| (format!("data.test[{i}]"), t)));
    all.max_by(|a, b| {
        let n = |t: &TaskConfig| t.num_examples() as f64 * t.seq_len() as f64;
        n(a.1).total_cmp(&n(b.1))
    })
    .map(|(f, _)| format!("{f}.num_examples"))
    .unwrap_or_else(|| "data.train".into())
}

/// MemTotal of /proc/meminfo in bytes.
pub fn mem_total_bytes() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|kb| kb * 1024.0)
}

#[cfg(test)]
mod tests {
    use crate::config::RunConfig;

    fn tiny(extra: &[&str]) -> RunConfig {
        let mut t: toml::Table = toml::from_str(include_str!("../../../../examples/mqar-tiny-attention.toml")).unwrap();
        for s in extra {
            crate::config::apply_set(&mut t, s).unwrap();
        }
        RunConfig::from_table(t).unwrap()
    }

    /// The issue-25 reproducers: d_model = 64000 (attention's 4·d² weights, 49 GB each layer's
    /// wqkv alone) and attention at L = 65536, batch 2 (32 GiB of scores) pass validation, and
    /// the estimate is above 24 GiB for both, naming the field to change.
    #[test]
    fn the_estimate_counts_mixer_weights_and_attention_scores() {
        let gib = (1u64 << 30) as f64;
        let wide = tiny(&["model.d_model=64000"]).memory_estimate();
        assert!(wide.bytes > 400.0 * gib, "{}", wide.describe());
        assert_eq!(wide.largest().unwrap().field, "model.d_model");
        // attention's 4d² + 4d per layer is in the parameter count
        assert!(wide.parameters > 2.0 * 4.0 * 64000f64.powi(2), "{}", wide.parameters);
        let long = tiny(&[
            "data.vocab_size=65600",
            "data.train.0.seq_len=65536",
            "data.test.0.seq_len=65536",
            "model.max_position_embeddings=65536",
            "data.batch_size=2",
            "data.train.0.num_examples=2",
            "data.test.0.num_examples=2",
        ])
        .memory_estimate();
        assert!(long.bytes > 64.0 * gib, "{}", long.describe());
        let e = long.refusal(24.0 * gib, "of memory this machine has").to_string();
        assert!(e.contains("`data.batch_size`") && e.contains("attention scores"), "{e}");
        // and the shipped tiny run is far below any machine
        assert!(tiny(&[]).memory_estimate().bytes < 0.5 * gib);
    }
}
