//! Hand-set MQAR solutions (issue 10, "Hand-set solutions"): language models whose weights are
//! written analytically, with no training, evaluated on MQAR test data with Zoology's metric.
//!
//! Both constructions are the project's own [`LanguageModel`] (2 layers, Zoology's
//! `TransformerBlock` with LayerNorms, identity state mixer, no position embeddings, untied
//! head) built from a registered mixer config; only the values of its variables are set by
//! hand through the `VarStore`. So an accuracy printed here proves that the real model code can
//! represent the solution, at the printed width:
//!
//! - [`attention`]: `hybrid [base_conv k=3, attention]`: the short convolution shifts each
//!   key's code one position forward, one softmax head looks the query's key up; d does not
//!   depend on L (default 128).
//! - [`base_conv`]: `base_conv kernel_size = [3, -1]` (explicit long filter): the short gated
//!   convolution writes `c(key) ⊙ g(value)` at each value position, the long all-ones filter
//!   sums them and the gate multiplies the sum by the query's `c(q)`, a linear-attention memory
//!   held in d/2 channels; the width needed grows with the number of pairs (so with L at
//!   kv = L/16).
//!
//! Common conventions (the math is in each module's doc):
//! - codes are seeded random **balanced** ±1 vectors (as many +1 as −1), so every sum of codes
//!   has zero mean over channels and the LayerNorms act on it as a positive per-position
//!   scale; the head rows are balanced too, so the mean a LayerNorm subtracts never reaches a
//!   logit;
//! - the filler token 0 is embedded as the zero vector (constructions use
//!   `random_non_queries = false`, Zoology Figure 2's data);
//! - the head scores only value tokens (rows of key and filler tokens are 0); the metric is
//!   Zoology's per-example accuracy on the query positions (the trainer's sparse head).
//!
//! LayerNorm is `(x − μ)/√(σ² + ε)·w + b` with ε = 1e-5; where a construction has to know the
//! scale a LayerNorm applies, it is computed from that formula ([`ln_scale`]).
//!
//! Layer 9 of 11, **uses of trained models** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

pub mod attention;
pub mod base_conv;

use crate::error::{config_err, Result};
use crate::model::LanguageModel;
use crate::tasks::metric::{self, Accumulator, Metric};
use crate::tasks::mqar::MqarConfig;
use crate::tasks::{mix_seed, Task, IGNORE};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

/// LayerNorm's ε (the model's).
pub const LN_EPS: f64 = 1e-5;

/// Widths the base_conv construction tries, smallest first, when `--d` is not given.
pub const BASE_CONV_WIDTHS: [i64; 9] = [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];

/// Largest width a construction builds (the embedding and head are V × d each).
pub const MAX_D: i64 = 16384;

/// What to construct and how to evaluate it.
#[derive(Debug, Clone)]
pub struct Spec {
    pub seq_len: usize,
    pub kv: usize,
    pub vocab: usize,
    /// Width; `None` = the construction's default (attention: 128; base_conv: the smallest of
    /// [`BASE_CONV_WIDTHS`] that reaches 0.99 on calibration data).
    pub d: Option<i64>,
    pub examples: usize,
    pub seed: u64,
}

impl Spec {
    /// MQAR at (L, kv) with `kv = L/16` (at least 1) when `kv` is None, V = 8192, 256 examples.
    pub fn new(seq_len: usize, kv: Option<usize>) -> Self {
        Spec { seq_len, kv: kv.unwrap_or((seq_len / 16).max(1)), vocab: 8192, d: None, examples: 256, seed: 123 }
    }

    /// The MQAR test data of this spec (filler 0), validated with named errors.
    pub fn mqar(&self, examples: usize) -> Result<MqarConfig> {
        let c = MqarConfig::new(self.seq_len, self.kv, examples);
        c.validate(self.vocab, "construct")?;
        Ok(c)
    }

    /// Checks the sizes (field names are the CLI's flags).
    pub fn validate(&self) -> Result<()> {
        if self.examples == 0 || self.examples > 1 << 20 {
            return Err(config_err("--examples", format!("must be in [1, {}] (got {})", 1 << 20, self.examples)));
        }
        if self.seq_len > 1 << 16 {
            return Err(config_err("--seq-len", format!("must be ≤ 65536 for a construction (got {})", self.seq_len)));
        }
        if self.vocab > 1 << 20 {
            return Err(config_err("--vocab", format!("must be ≤ 1048576 for a construction (got {})", self.vocab)));
        }
        if let Some(d) = self.d {
            if !(8..=MAX_D).contains(&d) || d % 8 != 0 {
                return Err(config_err("--d", format!("must be a multiple of 8 in [8, {MAX_D}] (got {d})")));
            }
        }
        self.mqar(self.examples).map(|_| ()).map_err(|e| {
            // name the CLI flag instead of the config field
            let msg = e.to_string();
            let flag = [
                ("construct.seq_len", "--seq-len"),
                ("construct.num_kv_pairs", "--kv"),
                ("data.vocab_size", "--vocab"),
                ("construct.num_examples", "--examples"),
            ]
            .iter()
            .find(|(f, _)| msg.contains(f))
            .map(|(_, fl)| *fl)
            .unwrap_or("construct");
            config_err(flag, msg.splitn(2, "`: ").nth(1).unwrap_or(&msg).to_string())
        })
    }
}

/// A constructed model and what it costs.
pub struct Built {
    pub vs: nn::VarStore,
    pub model: LanguageModel,
    pub d: i64,
    /// The mixer config, as the model was built from it (TOML inline table).
    pub mixer: String,
    /// Examples per forward batch (bounded by the largest intermediate tensor).
    pub batch: usize,
    /// base_conv: the same forward computed with the block structure of the projections
    /// (their only nonzero entries are one diagonal block), so that a wide model is evaluated
    /// without d×d matmuls; a test checks it against `model.hidden`.
    pub(crate) fast: Option<base_conv::Fast>,
}

impl Built {
    pub fn num_parameters(&self) -> i64 {
        crate::model::num_parameters(&self.vs)
    }
    /// Recurrent state elements per sequence after `seq_len` tokens ([`LanguageModel::state_size`]).
    pub fn state_size(&self, seq_len: i64) -> i64 {
        self.model.state_size(seq_len)
    }
    /// Logits `[M, V]` of hidden states `[M, d]` (the model's head).
    pub fn head(&self, hidden: &Tensor) -> Tensor {
        match &self.fast {
            Some(f) => f.head(hidden),
            None => self.model.head(hidden),
        }
    }
    /// Final hidden states `[B, L, d]` of `tokens` (evaluation mode).
    pub fn hidden(&self, tokens: &Tensor) -> Tensor {
        match &self.fast {
            Some(f) => f.hidden(tokens),
            None => self.model.hidden(tokens, false),
        }
    }
}

/// One printed result.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub mixer: &'static str,
    pub seq_len: usize,
    pub kv: usize,
    pub vocab: usize,
    pub d: i64,
    pub num_parameters: i64,
    pub state_size: i64,
    pub accuracy: f64,
    /// Mean cross-entropy at the query positions (nats).
    pub loss: f64,
    pub examples: usize,
    pub seconds: f64,
    /// base_conv's width search: (d, accuracy on the calibration examples).
    pub search: Vec<(i64, f64)>,
}

/// Builds a 2-layer LM (transformer block, identity state mixer, no dropout, no positions,
/// untied head) around `mixer` (a TOML inline table) and returns it with its variables.
pub(crate) fn build_lm(mixer: &str, d: i64, vocab: i64, seq_len: i64) -> Result<(Built, HashMap<String, Tensor>)> {
    let text = format!(
        "d_model = {d}\nn_layers = 2\nstate_mixer = \"identity\"\nembed_dropout = 0.0\nresid_dropout = 0.0\ntie_embeddings = false\nmax_position_embeddings = 0\nmixer = {mixer}\n"
    );
    let cfg: crate::model::ModelConfig =
        toml::from_str(&text).map_err(|e| config_err("construct", format!("model config: {e}")))?;
    cfg.validate(vocab, seq_len)?;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = LanguageModel::new(&vs.root(), &cfg, vocab, seq_len)?;
    let vars = vs.variables();
    // every variable starts at zero, norm weights at one; the construction writes the rest
    tch::no_grad(|| {
        for (name, v) in &vars {
            let is_norm_weight = (name.contains(".norm") || name.starts_with("ln_f")) && name.ends_with(".weight");
            let _ = if is_norm_weight { v.shallow_clone().fill_(1.0) } else { v.shallow_clone().zero_() };
        }
    });
    Ok((Built { vs, model, d, mixer: mixer.to_string(), batch: 1, fast: None }, vars))
}

/// Writes `value` into the variable `name` (same shape required).
pub(crate) fn set(vars: &HashMap<String, Tensor>, name: &str, value: &Tensor) {
    let v = vars
        .get(name)
        .unwrap_or_else(|| panic!("construction: the model has no variable {name} (has {:?})", sorted_names(vars)));
    assert_eq!(v.size(), value.size(), "construction: {name} has shape {:?}, value {:?}", v.size(), value.size());
    tch::no_grad(|| {
        let _ = v.shallow_clone().copy_(&value.to_kind(v.kind()));
    });
}

fn sorted_names(vars: &HashMap<String, Tensor>) -> Vec<&String> {
    let mut n: Vec<&String> = vars.keys().collect();
    n.sort();
    n
}

/// `n` balanced ±1 codes of length `m` (m even), `[n, m]`, from a seeded stream: each row is a
/// uniformly random arrangement of m/2 (+1) and m/2 (−1).
pub fn balanced_codes(n: usize, m: usize, seed: u64) -> Tensor {
    assert!(m % 2 == 0 && m > 0, "balanced codes need an even length");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut row: Vec<f32> = (0..m).map(|i| if i < m / 2 { 1.0 } else { -1.0 }).collect();
    let mut out = Vec::with_capacity(n * m);
    for _ in 0..n {
        row.shuffle(&mut rng);
        out.extend_from_slice(&row);
    }
    Tensor::from_slice(&out).view([n as i64, m as i64])
}

/// The scale a LayerNorm with unit weight applies to a zero-mean vector with `sq_norm` = ‖x‖²
/// in `d` channels: `1/√(‖x‖²/d + ε)`.
pub fn ln_scale(sq_norm: f64, d: i64) -> f64 {
    1.0 / (sq_norm / d as f64 + LN_EPS).sqrt()
}

/// The scale the layer-1 input `LN1(r1 + LN2(r1))` applies to a zero-mean layer-0 output `r1`
/// with ‖r1‖² = `sq_norm` (the identity state mixer adds `LN2(r1)` to the residual).
pub fn layer1_scale(sq_norm: f64, d: i64) -> f64 {
    let g = 1.0 + ln_scale(sq_norm, d);
    g * ln_scale(g * g * sq_norm, d)
}

/// Token-id ranges of MQAR (Zoology): keys `[1, V/2)`, values `[V/2, V)`, 0 the filler.
pub fn key_range(vocab: usize) -> (i64, i64) {
    (1, (vocab / 2) as i64)
}
pub fn value_range(vocab: usize) -> (i64, i64) {
    ((vocab / 2) as i64, vocab as i64)
}

/// A `[V, m]` table with `codes` (`[hi − lo, m]`) in rows `lo..hi` and zeros elsewhere.
pub(crate) fn rows(vocab: usize, lo: i64, hi: i64, codes: &Tensor) -> Tensor {
    let m = codes.size()[1];
    let t = Tensor::zeros([vocab as i64, m], (Kind::Float, Device::Cpu));
    let _ = t.narrow(0, lo, hi - lo).copy_(codes);
    t
}

/// Zoology's per-example accuracy of `model` on `examples` MQAR test examples (seed `seed`),
/// with the head at the query positions only (as the trainer's sparse head evaluates).
pub fn evaluate(built: &Built, spec: &Spec, examples: usize, seed: u64) -> Result<f64> {
    Ok(evaluate_stats(built, spec, examples, seed)?.accuracy(Metric::PerExample))
}

/// [`evaluate`]'s statistics: accuracies and the mean cross-entropy at the query positions.
pub fn evaluate_stats(built: &Built, spec: &Spec, examples: usize, seed: u64) -> Result<metric::Stats> {
    let seg = spec.mqar(examples)?.generate(spec.vocab, seed);
    Ok(evaluate_segment(built, &seg))
}

/// Statistics of `built` on one test segment, scored by the segment's metric.
pub fn evaluate_segment(built: &Built, seg: &crate::tasks::Segment) -> metric::Stats {
    let (x, y) = seg.to_tensors(Device::Cpu);
    let n = seg.n as i64;
    let mut acc = Accumulator::new(seg.metric);
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = (built.batch.max(1) as i64).min(n - start);
            let h = built.hidden(&x.narrow(0, start, len));
            let d = h.size()[2];
            let flat_y = y.narrow(0, start, len).reshape([-1]);
            let idx = flat_y.ne(IGNORE as i64).nonzero().squeeze_dim(1);
            let logits = built.head(&h.reshape([-1, d]).index_select(0, &idx));
            let ex = idx.divide_scalar_mode(seg.seq_len as i64, "floor");
            metric::score_batch(&mut acc, &logits, &flat_y.index_select(0, &idx), &ex, len as usize);
            start += len;
        }
    });
    acc.finish()
}

/// Examples the width search of [`base_conv`] evaluates each candidate on (a calibration seed,
/// not the reported one).
pub const SEARCH_EXAMPLES: usize = 64;

/// The calibration seed derived from the evaluation seed.
pub fn search_seed(seed: u64) -> u64 {
    mix_seed(seed, 77)
}

/// Seed of the token codes derived from the evaluation seed (codes and data are independent).
pub fn code_seed(seed: u64, which: u64) -> u64 {
    mix_seed(seed, 1000 + which)
}

/// A lower bound on the bytes a construction of width `d` needs: embedding and head (V·d
/// each), projections (4·d² for attention, 2·d² + d·L for base_conv), the largest per-batch
/// intermediate (attention's L×L scores, base_conv's FFT buffers) and the test data.
pub fn memory_estimate(mixer: &str, spec: &Spec, d: i64) -> f64 {
    let (v, l, n) = (spec.vocab as f64, spec.seq_len as f64, spec.examples as f64);
    let d = d as f64;
    let (weights, batch) = match mixer {
        "attention" => (4.0 * d * d, 3.0 * l * l),
        _ => (2.0 * d * d + d * l, 4.0 * d * 2.0 * l),
    };
    4.0 * (2.0 * v * d + weights + batch) + 24.0 * n * l
}

/// Builds the named construction, evaluates it and times it. `mixer` is `attention` or
/// `base_conv`.
pub fn run(mixer: &str, spec: &Spec) -> Result<Outcome> {
    run_built(mixer, spec).map(|(o, _)| o)
}

/// [`run`], also returning the constructed model (for [`write_run_dir`]).
pub fn run_built(mixer: &str, spec: &Spec) -> Result<(Outcome, Built)> {
    spec.validate()?;
    let widest =
        spec.d.unwrap_or(if mixer == "attention" { attention::DEFAULT_D } else { *BASE_CONV_WIDTHS.last().unwrap() });
    let need = memory_estimate(mixer, spec, widest);
    if let Some(total) = crate::config::mem_total_bytes() {
        if need > total {
            return Err(config_err(
                "construct",
                format!(
                    "these sizes need at least {:.1} GiB (d = {widest}), more than the {:.1} GiB this machine has; lower --d, --vocab, --seq-len or --examples",
                    need / 2f64.powi(30),
                    total / 2f64.powi(30)
                ),
            ));
        }
    }
    let t0 = std::time::Instant::now();
    let (name, built, search): (&'static str, Built, Vec<(i64, f64)>) = match mixer {
        "attention" => ("attention", attention::build(spec, spec.d.unwrap_or(attention::DEFAULT_D))?, vec![]),
        "base_conv" => match spec.d {
            Some(d) => ("base_conv", base_conv::build(spec, d)?, vec![]),
            None => {
                let (b, s) = base_conv::smallest_width(spec)?;
                ("base_conv", b, s)
            }
        },
        other => {
            return Err(config_err(
                "MIXER",
                format!("no construction for `{other}`; constructions exist for `attention` and `base_conv`"),
            ))
        }
    };
    let stats = evaluate_stats(&built, spec, spec.examples, spec.seed)?;
    let outcome = Outcome {
        mixer: name,
        seq_len: spec.seq_len,
        kv: spec.kv,
        vocab: spec.vocab,
        d: built.d,
        num_parameters: built.num_parameters(),
        state_size: built.state_size(spec.seq_len as i64),
        accuracy: stats.accuracy(Metric::PerExample),
        loss: stats.ce.value(),
        examples: spec.examples,
        seconds: t0.elapsed().as_secs_f64(),
        search,
    };
    Ok((outcome, built))
}

/// The run config a constructed model is saved under: MQAR at the construction's settings,
/// the built model's config, one epoch (nothing is trained).
fn run_config(built: &Built, spec: &Spec, mixer: &str) -> Result<crate::config::RunConfig> {
    let task = |n: usize| {
        format!(
            "task = \"mqar\"\nseq_len = {}\nnum_kv_pairs = {}\nnum_examples = {n}\nrandom_non_queries = false\n",
            spec.seq_len, spec.kv
        )
    };
    let text = format!(
        "name = \"construct-{mixer}\"\nseed = {}\n[data]\nvocab_size = {}\nbatch_size = {}\n[[data.train]]\n{}[[data.test]]\n{}[train]\nepochs = 1\n",
        spec.seed,
        spec.vocab,
        built.batch.max(1),
        task(spec.examples),
        task(spec.examples)
    );
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| config_err("construct", format!("run config: {e}")))?;
    let model =
        toml::Value::try_from(&built.model.cfg).map_err(|e| config_err("construct", format!("model config: {e}")))?;
    table.insert("model".into(), model);
    crate::config::RunConfig::from_table(table)
}

/// Writes a constructed model as a run directory under `dir` (issue 10), so that the verbs
/// that read run directories (`generate`, `results`, `plot`) work on it:
///
/// - `config.toml`: a complete run config: seed = the construction's seed, `data.test` = MQAR
///   at the spec's (L, kv, V, examples) with filler 0, `data.train` = the same settings
///   (a config needs a training segment; nothing is trained), the model the construction
///   built, `train.epochs = 1` (the smallest a config accepts);
/// - `checkpoint.safetensors`: the parameters as the trainer writes them (AdamW moments zero,
///   trainer state at step 0), tied to this config by its run id and seed;
/// - `summary.json`: status `done`, 0 epochs and 0 steps, the accuracy (and every metric) of
///   the model on **this run's** test data (regenerated from the config as training would: its
///   seed differs from the construction's printed evaluation), and `reason` saying it was
///   constructed, not trained.
///
/// Refuses a `dir` that already holds a run. Returns the run's test accuracy.
pub fn write_run_dir(dir: &std::path::Path, built: &Built, spec: &Spec, mixer: &str, seconds: f64) -> Result<f64> {
    use crate::error::io_err;
    use crate::rundir::{self, StopReason, Summary};
    use crate::train::checkpoint::{self, TrainerState};
    if dir.join(rundir::CHECKPOINT).exists() || dir.join(rundir::SUMMARY).exists() || dir.join(rundir::CONFIG).exists()
    {
        return Err(config_err(
            "--out",
            format!("{} already holds a run; choose another --out or delete it", dir.display()),
        ));
    }
    let cfg = run_config(built, spec, mixer)?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    rundir::write_atomic(&dir.join(rundir::CONFIG), cfg.to_toml().as_bytes())?;
    let mut named: Vec<(String, Tensor)> = built.vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let t = &cfg.train;
    let opt = crate::train::optim::AdamW::new(
        named.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
        t.weight_decay,
        t.beta1,
        t.beta2,
        t.eps,
        t.no_decay_norms_biases,
    );
    let st = TrainerState { stopped: Some(StopReason::MaxEpochs), ..Default::default() };
    let id = checkpoint::Identity { config_hash: rundir::run_id(&cfg), seed: cfg.seed };
    checkpoint::save(&dir.join(rundir::CHECKPOINT), &named, &opt, &st, &id)?;
    let segs = cfg.generate_test();
    let stats: Vec<metric::Stats> = segs.iter().map(|s| evaluate_segment(built, s)).collect();
    let parts: Vec<(Metric, &std::collections::BTreeMap<String, String>, metric::Stats)> =
        segs.iter().zip(stats).map(|(s, st)| (s.metric, &s.slices, st)).collect();
    let m = metric::summarize(&parts);
    let seq_len = cfg.max_seq_len() as i64;
    let flops = built.model.flops(seq_len);
    let summary = Summary {
        status: "done".into(),
        stop_reason: StopReason::MaxEpochs,
        reason: Some(format!(
            "constructed by hand with `zoology construct {mixer}` (weights set analytically, no training)"
        )),
        mixer: cfg.model.mixer_name(),
        d_model: cfg.model.d_model,
        best_accuracy: m.accuracy,
        best_epoch: 0,
        final_accuracy: m.accuracy,
        metric: m.metric.clone(),
        final_metrics: m.metrics.clone(),
        final_loss: m.loss,
        slices: m.slices.clone(),
        best_slices: m.slices.clone(),
        num_parameters: built.num_parameters(),
        state_size: built.state_size(seq_len),
        state_size_seq_len: seq_len,
        // inference costs; a constructed model has no training cost
        flops_train_per_step: None,
        flops_prefill_per_seq: Some(flops.body.prefill_per_seq + flops.head_per_position),
        flops_decode_per_token: Some(flops.body.decode_per_token + flops.head_per_position),
        wall_time_s: seconds,
        train_tokens_per_s: None,
        train_gflops_per_s: None,
        epochs: 0,
        steps: 0,
        device: "cpu".into(),
        machine: Some(crate::device::machine()),
        // solved with no training at every threshold it meets: zero training FLOPs
        solved: Some(
            cfg.train
                .solve_thresholds
                .iter()
                .filter(|&&t| m.accuracy >= t)
                .map(|&threshold| crate::rundir::Solved {
                    threshold,
                    accuracy: m.accuracy,
                    step: 0,
                    examples: 0,
                    tokens: 0,
                    wall_time_s: 0.0,
                    train_flops: Some(0.0),
                })
                .collect(),
        ),
    };
    rundir::write_summary(dir, &summary)?;
    Ok(m.accuracy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_codes_are_balanced_and_seeded() {
        let c = balanced_codes(50, 16, 3);
        assert_eq!(c.size(), [50, 16]);
        assert_eq!(c.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).abs().max().double_value(&[]), 0.0);
        assert_eq!(c.abs().min().double_value(&[]), 1.0);
        assert!(c.equal(&balanced_codes(50, 16, 3)) && !c.equal(&balanced_codes(50, 16, 4)));
    }

    /// `ln_scale` and `layer1_scale` are what the model's LayerNorms do to a zero-mean vector.
    #[test]
    fn layer_norm_scales_match_the_formula() {
        let x = balanced_codes(1, 64, 1) * 3.0; // zero mean, ‖x‖² = 576
        let ln = |x: &Tensor| x.layer_norm([64], None::<&Tensor>, None::<&Tensor>, LN_EPS, false);
        let got = ln(&x).divide(&x).mean(Kind::Float).double_value(&[]);
        assert!((got - ln_scale(576.0, 64)).abs() < 1e-6, "{got}");
        let r = &x + ln(&x);
        let got1 = ln(&r).divide(&x).mean(Kind::Float).double_value(&[]);
        assert!((got1 - layer1_scale(576.0, 64)).abs() < 1e-6, "{got1}");
    }

    #[test]
    fn bad_sizes_name_the_flag() {
        let mut s = Spec::new(64, None);
        s.kv = 17;
        assert!(s.validate().unwrap_err().to_string().contains("--kv"));
        let mut s = Spec::new(63, Some(4));
        assert!(s.validate().unwrap_err().to_string().contains("--seq-len"), "{}", s.validate().unwrap_err());
        s = Spec::new(64, Some(4));
        s.d = Some(12);
        assert!(s.validate().unwrap_err().to_string().contains("--d"));
        s.d = None;
        s.vocab = 40;
        assert!(s.validate().unwrap_err().to_string().contains("--vocab"), "{}", s.validate().unwrap_err());
        s.vocab = 8192;
        s.examples = 0;
        assert!(s.validate().unwrap_err().to_string().contains("--examples"));
        assert!(run("mamba", &Spec::new(64, None)).unwrap_err().to_string().contains("attention"));
        // sizes no machine holds are refused before anything is allocated
        let huge = Spec { vocab: 1 << 20, d: Some(MAX_D), examples: 1 << 20, ..Spec::new(1 << 16, None) };
        if crate::config::mem_total_bytes().is_some() {
            assert!(run("attention", &huge).unwrap_err().to_string().contains("GiB"));
        }
    }
}
