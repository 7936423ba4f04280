//! `zoology generate RUN_DIR` (issue 10): answers a run's MQAR test queries by recurrent
//! decoding and compares with the parallel evaluation.
//!
//! The run directory's model is rebuilt from its config.toml and its verified checkpoint
//! ([`load_run`]); its test data are regenerated exactly as training generated them
//! ([`crate::config::RunConfig::generate_test`]), optionally cut to the first N examples of each
//! segment. For each batch, the prompt (every position before the batch's first supervised
//! position: MQAR's key-value section) goes through [`LanguageModel::prefill_hidden`]; then each
//! following true input token is fed with [`LanguageModel::step_hidden`] (teacher forcing: the
//! queries are the data's, not the model's guesses), and the head is applied at the supervised
//! positions (the query keys, whose targets are the values). The predictions are scored by the
//! task's metric exactly as the trainer's evaluation scores them, and the trainer's parallel
//! evaluation ([`crate::train::trainer::evaluate`]) runs on the same examples; the two
//! accuracies must be equal. The number of supervised predictions whose argmax differs between
//! the two forms is reported too.
//!
//! Layer 9 of 11, **uses of trained models** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

use crate::config::RunConfig;
use crate::device::Runtime;
use crate::error::{config_err, Error, Result};
use crate::model::LanguageModel;
use crate::rundir;
use crate::tasks::metric::{self, Accumulator};
use crate::tasks::{Segment, IGNORE};
use crate::train::checkpoint;
use crate::train::trainer::{self, DeviceData};
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device, Tensor};

/// A run directory's model with its checkpoint's parameters (on the CPU).
pub struct LoadedRun {
    pub cfg: RunConfig,
    pub vs: nn::VarStore,
    pub model: LanguageModel,
}

/// Reads `dir/config.toml`, saying what is wrong when `dir` is not a run directory.
pub fn read_config(dir: &Path) -> Result<RunConfig> {
    let cfg_path = dir.join(rundir::CONFIG);
    // metadata, not is_dir/exists: those read "permission denied" as "not there"
    let meta = match std::fs::metadata(dir) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(crate::error::io_err(dir)(e)),
    };
    if !meta.is_some_and(|m| m.is_dir()) {
        return Err(config_err(
            "RUN_DIR",
            format!(
                "{} is not a directory; give a run directory written by `zoology train` or `zoology construct --out`",
                dir.display()
            ),
        ));
    }
    match std::fs::metadata(&cfg_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(crate::error::io_err(&cfg_path)(e)),
        Err(_) => return Err(config_err("RUN_DIR", format!("{} has no {}: it is not a run directory (give one written by `zoology train` or `zoology construct --out`)", dir.display(), rundir::CONFIG))),
        Ok(_) => RunConfig::load(&cfg_path),
    }
}

/// Loads `dir/config.toml` and the parameters of `dir/checkpoint.safetensors` (verified, and
/// checked to belong to that config), with errors that say what is missing and what to do.
pub fn load_run(dir: &Path) -> Result<LoadedRun> {
    let cfg = read_config(dir)?;
    let ckpt = dir.join(rundir::CHECKPOINT);
    if !ckpt.exists() {
        return Err(config_err(
            "RUN_DIR",
            format!(
                "{} has no {}, so there are no parameters to decode with: training writes it at the end of each epoch (let the run finish an epoch, or continue it with `zoology train --resume {}`); if it was deleted, train the run again",
                dir.display(),
                rundir::CHECKPOINT,
                dir.display()
            ),
        ));
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let model = LanguageModel::new(&vs.root(), &cfg.model, cfg.data.vocab_size as i64, cfg.max_seq_len() as i64)?;
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let id = checkpoint::Identity { config_hash: rundir::run_id(&cfg), seed: cfg.seed };
    let loaded = checkpoint::load(&ckpt, &id)?;
    checkpoint::restore_model(&loaded, &ckpt, &named)?;
    Ok(LoadedRun { cfg, vs, model })
}

/// What `zoology generate` measured.
#[derive(Debug, Clone)]
pub struct GenerateReport {
    /// The tasks' metric (`per_example_accuracy` for MQAR).
    pub metric: String,
    pub examples: usize,
    /// Accuracy of the decoded predictions, by the tasks' metric.
    pub decode_accuracy: f64,
    /// The trainer's parallel evaluation on the same examples.
    pub parallel_accuracy: f64,
    /// Supervised predictions scored, and how many differ between decoding and the parallel form.
    pub predictions: usize,
    pub differing: usize,
    /// Total seconds in prefill, and prompt tokens prefilled.
    pub prefill_s: f64,
    pub prefill_tokens: usize,
    /// Total seconds in step, and tokens stepped (sequences × steps).
    pub decode_s: f64,
    pub decode_tokens: usize,
}

impl GenerateReport {
    pub fn decode_tokens_per_s(&self) -> f64 {
        self.decode_tokens as f64 / self.decode_s.max(1e-12)
    }
}

/// Checks that every test segment of `cfg` is MQAR, naming the offending entry.
pub fn check_mqar(cfg: &RunConfig) -> Result<()> {
    for (i, t) in cfg.data.test.iter().enumerate() {
        if t.name() != "mqar" {
            return Err(config_err(
                format!("data.test[{i}].task"),
                format!("is `{}`; `zoology generate` answers MQAR queries and needs a run whose test data are `mqar` (train or construct one on mqar)", t.name()),
            ));
        }
    }
    Ok(())
}

/// The first `n` examples of a segment (all when `n` is None or larger).
fn first_examples(seg: &Segment, n: Option<usize>) -> Segment {
    seg.first(n.unwrap_or(seg.n))
}

/// Decodes the run's MQAR test queries (the first `num_examples` of each test segment) in
/// batches of `batch`, and evaluates the same examples in parallel.
pub fn generate(run: &LoadedRun, num_examples: Option<usize>, batch: usize) -> Result<GenerateReport> {
    if batch == 0 {
        return Err(config_err("--batch", "must be at least 1"));
    }
    if num_examples == Some(0) {
        return Err(config_err("--num-examples", "must be at least 1"));
    }
    check_mqar(&run.cfg)?;
    let segs: Vec<Segment> = run.cfg.generate_test().iter().map(|s| first_examples(s, num_examples)).collect();
    let model = &run.model;
    let mut r = GenerateReport {
        metric: String::new(),
        examples: segs.iter().map(|s| s.n).sum(),
        decode_accuracy: f64::NAN,
        parallel_accuracy: f64::NAN,
        predictions: 0,
        differing: 0,
        prefill_s: 0.0,
        prefill_tokens: 0,
        decode_s: 0.0,
        decode_tokens: 0,
    };
    let mut parts = vec![];
    tch::no_grad(|| -> Result<()> {
        for seg in &segs {
            let (x, y) = seg.to_tensors(Device::Cpu);
            let (n, l) = (seg.n as i64, seg.seq_len as i64);
            let mut acc = Accumulator::new(seg.metric);
            let mut start = 0;
            while start < n {
                let b = (batch as i64).min(n - start);
                let (xb, yb) = (x.narrow(0, start, b), y.narrow(0, start, b));
                // the prompt: every position before the batch's first supervised one (≥ 1 token)
                let sup = yb.ne(IGNORE as i64);
                let first = sup.any_dim(0, false).nonzero();
                let p = if first.numel() == 0 { l } else { first.int64_value(&[0, 0]).max(1) };
                let t0 = Instant::now();
                let (hp, mut st) = model.prefill_hidden(&xb.narrow(1, 0, p))?;
                r.prefill_s += t0.elapsed().as_secs_f64();
                r.prefill_tokens += (b * p) as usize;
                let mut hs = vec![hp];
                let t1 = Instant::now();
                for t in p..l {
                    hs.push(model.step_hidden(&mut st, &xb.select(1, t))?.unsqueeze(1));
                }
                r.decode_s += t1.elapsed().as_secs_f64();
                r.decode_tokens += (b * (l - p)) as usize;
                let h = Tensor::cat(&hs, 1);
                // the head at the supervised positions, in the trainer's order
                let d = h.size()[2];
                let flat_y = yb.reshape([-1]);
                let idx = flat_y.ne(IGNORE as i64).nonzero().squeeze_dim(1);
                let logits = model.head(&h.reshape([-1, d]).index_select(0, &idx));
                let tg = flat_y.index_select(0, &idx);
                let ex = idx.divide_scalar_mode(l, "floor");
                metric::score_batch(&mut acc, &logits, &tg, &ex, b as usize);
                // the same positions through the parallel form
                let par = model.head(&model.hidden(&xb, false).reshape([-1, d]).index_select(0, &idx));
                r.predictions += idx.numel();
                r.differing +=
                    logits.argmax(-1, false).ne_tensor(&par.argmax(-1, false)).sum(tch::Kind::Int64).int64_value(&[])
                        as usize;
                start += b;
            }
            parts.push((seg.metric, &seg.slices, acc.finish()));
        }
        Ok(())
    })?;
    let s = metric::summarize(&parts);
    r.decode_accuracy = s.accuracy;
    r.metric = s.metric;
    let par = trainer::evaluate(model, &DeviceData::new(segs.clone(), &Runtime::cpu()), batch);
    r.parallel_accuracy = par.accuracy;
    if r.metric != par.metric {
        return Err(Error::Other(format!(
            "internal: decoding scored by {} but the parallel evaluation by {}",
            r.metric, par.metric
        )));
    }
    Ok(r)
}
