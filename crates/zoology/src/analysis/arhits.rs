//! `zoology arhits RUN_DIR …` (issue 9): trained text models' per-token losses on the
//! validation split, sliced by [`crate::text::arhits`].
//!
//! For every run: the model is rebuilt from its config and verified checkpoint
//! ([`crate::generate::load_run`]); its `text` task (the first in `data.test`, else in
//! `data.train`) names the corpus, tokenizer and context length L. The corpus's **valid** split is
//! packed into consecutive windows of L (every token after the first is a target exactly once;
//! [`crate::text::dataset`]), optionally the first `max_windows`; each window goes through the
//! model in evaluation mode and the loss of every target (`−log softmax(logits)[target]`, nats) is
//! labelled (AR hit / first occurrence / other), bucketed by the bigram's count in the **train**
//! split (quantile buckets) and, for AR hits, by the distance back to the earlier occurrence.
//! All runs must read the same corpus, tokenizer and L, so that their slices hold the same tokens
//! and the share of a perplexity gap that AR hits explain ([`gap_share`]) is defined; the
//! reference is the run whose mixer is `attention` unless one is named.

use crate::analysis::arhits_trajectory::{eval_points, trajectory, trajectory_table, GapTrajectory, FIT_FROM, TARGET};
use crate::config::RunConfig;
use crate::error::{config_err, Error, Result};
use crate::generate::{load_run, read_config};
use crate::rundir;
use crate::tasks::text::TextConfig;
use crate::tasks::TaskConfig;
use crate::text::arhits::{
    format_frequency_table, format_table, gap_share, ArHitAnalyzer, ArHitReport, BigramCounts, FreqBuckets, GapShare,
};
use crate::text::corpus::Split;
use crate::text::dataset::window_sequences;
use crate::train::probes::{CopyProbe, CopyScore, CopySource};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct ArHitsOptions {
    /// Evaluate only the first N validation windows (all when `None`).
    pub max_windows: Option<usize>,
    /// How training-bigram frequency is bucketed: `Some(k)` = k quantile buckets of training
    /// occurrences; `None` = log-spaced counts merged to ≥ `min_bucket_hits` AR hits each (the
    /// default: it resolves the rare end, where the paper's gap is).
    pub buckets: Option<usize>,
    /// With log-spaced buckets: the fewest AR hits (among the evaluated windows) a bucket holds.
    pub min_bucket_hits: u64,
    /// Windows per forward pass.
    pub batch: usize,
    /// The run (its label) whose gap to every other run is split; default: the attention run.
    pub reference: Option<String>,
    /// Sequences per copy probe (one probe per [`CopySource`]; 0: no probes).
    pub copy_sequences: usize,
    pub quiet: bool,
}

impl Default for ArHitsOptions {
    fn default() -> Self {
        ArHitsOptions {
            max_windows: None,
            buckets: None,
            min_bucket_hits: 300,
            batch: 16,
            reference: None,
            copy_sequences: 64,
            quiet: false,
        }
    }
}

/// One evaluated run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelArHits {
    /// Table label: the sweep preset's label (else the mixer), made unique with the width (and
    /// then the run directory) when labels repeat.
    pub name: String,
    pub run_dir: String,
    pub mixer: String,
    pub d_model: i64,
    pub n_layers: i64,
    pub parameters: i64,
    pub report: ArHitReport,
    /// Share of this model's gap to the reference explained by each label (`None` for the
    /// reference itself, or when there is no reference).
    pub gap: Option<GapShare>,
    /// The copy probe on each source ([`crate::train::probes`]): does the model copy a repeated
    /// first half of random tokens, of frequent tokens, of natural text? (Absent in outputs
    /// written before the probes were added.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub copy: BTreeMap<CopySource, CopyScore>,
    /// A text chunk repeated at distance p at the end of a validation window
    /// ([`CopyProbe::text_at_distance`]), by p: does the model copy from p tokens back?
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub copy_by_distance: BTreeMap<usize, CopyScore>,
}

/// What `zoology arhits` measured (`arhits.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArHitsOutput {
    pub corpus: String,
    pub tokenizer: String,
    pub split: String,
    pub seq_len: usize,
    pub windows: u64,
    pub buckets: String,
    pub reference: Option<String>,
    pub models: Vec<ModelArHits>,
    /// Each model's perplexity ratio to the reference over training, from the runs'
    /// metrics.jsonl, with the AR-hit trend ([`crate::analysis::arhits_trajectory`]; absent in
    /// outputs written before it was added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trajectories: Vec<GapTrajectory>,
}

impl ArHitsOutput {
    fn named(&self) -> Vec<(String, ArHitReport)> {
        self.models.iter().map(|m| (m.name.clone(), m.report.clone())).collect()
    }
    /// The terminal tables: per-label perplexities with the gap share, then by frequency bucket.
    pub fn tables(&self) -> Result<String> {
        let named = self.named();
        Ok(format!(
            "{} {} split, L = {}, {} windows ({} targets per model)\n{}\n{}",
            self.corpus,
            self.split,
            self.seq_len,
            self.windows,
            self.models.first().map(|m| m.report.all.tokens).unwrap_or(0),
            format_table(&named, self.reference.as_deref())?,
            format_frequency_table(&named)
        ) + &self.distance_table()
            + &self.recall_table()
            + &self.copy_table()
            + &self.copy_distance_table()
            + &self.reference.as_ref().map_or(String::new(), |r| trajectory_table(r, &self.trajectories)))
    }

    /// The text-repeat probe by distance: loss on the repeat and on the first copy (nats).
    pub fn copy_distance_table(&self) -> String {
        let ds: std::collections::BTreeSet<usize> =
            self.models.iter().flat_map(|m| m.copy_by_distance.keys().copied()).collect();
        if ds.is_empty() {
            return String::new();
        }
        let w = self.models.iter().map(|m| m.name.chars().count()).max().unwrap_or(5).max(12);
        let mut s = format!(
            "\ntext chunk repeated p tokens later (end of a validation window): loss on the repeat | on the first copy (nats)\n{:<w$}",
            "p (tokens)"
        );
        for d in &ds {
            s += &format!("{d:>16}");
        }
        s.push('\n');
        for m in &self.models {
            s += &format!("{:<w$}", m.name);
            for d in &ds {
                let cell = m
                    .copy_by_distance
                    .get(d)
                    .map_or("–".to_string(), |c| format!("{:.2} | {:.2}", c.loss, c.first_half_loss));
                s += &format!("{cell:>16}");
            }
            s.push('\n');
        }
        s
    }

    /// AR-hit perplexity by distance back to the earlier occurrence, with the ratio to the
    /// reference in brackets (where there is one).
    pub fn distance_table(&self) -> String {
        let Some(first) = self.models.first() else { return String::new() };
        let keep: Vec<usize> = (0..first.report.ar_hit_by_distance.len())
            .filter(|&i| first.report.ar_hit_by_distance[i].ar_hit.tokens > 0)
            .collect();
        if keep.is_empty() {
            return String::new();
        }
        let reference = self.reference.as_ref().and_then(|r| self.models.iter().find(|m| &m.name == r));
        let w = self.models.iter().map(|m| m.name.chars().count()).max().unwrap_or(5).max(22);
        let mut s = format!(
            "\nAR-hit perplexity by distance back to the earlier occurrence{}\n{:<w$}",
            if reference.is_some() { " (ratio to the reference in brackets)" } else { "" },
            "distance (tokens)"
        );
        for &i in &keep {
            s += &format!("{:>16}", first.report.ar_hit_by_distance[i].bucket);
        }
        s += &format!("\n{:<w$}", "AR hits");
        for &i in &keep {
            s += &format!("{:>16}", first.report.ar_hit_by_distance[i].ar_hit.tokens);
        }
        s.push('\n');
        for m in &self.models {
            s += &format!("{:<w$}", m.name);
            for &i in &keep {
                let own = m.report.ar_hit_by_distance.get(i).and_then(|r| r.ar_hit.perplexity());
                let base =
                    reference.and_then(|r| r.report.ar_hit_by_distance.get(i)).and_then(|r| r.ar_hit.perplexity());
                let cell = match (own, base) {
                    (Some(p), Some(b)) if reference.is_some_and(|r| r.name != m.name) => {
                        format!("{p:.2} ({:.2}×)", p / b)
                    }
                    (Some(p), _) => format!("{p:.2}"),
                    _ => "–".into(),
                };
                s += &format!("{cell:>16}");
            }
            s.push('\n');
        }
        s
    }

    /// The copy probes, one column per source: accuracy and loss on the repeat, the first
    /// half's loss beside it (empty when no model was probed).
    pub fn copy_table(&self) -> String {
        if self.models.iter().all(|m| m.copy.is_empty()) {
            return String::new();
        }
        let w = self.models.iter().map(|m| m.name.chars().count()).max().unwrap_or(5).max(5);
        let mut s = format!(
            "\ncopy probes: a first half of {} tokens repeated; on the repeat, accuracy and loss (nats), the first half's loss in brackets\n{:<w$}",
            self.seq_len / 2,
            "model"
        );
        for src in CopySource::ALL {
            s += &format!("  {:>24}", src.describe());
        }
        s.push('\n');
        for m in &self.models {
            s += &format!("{:<w$}", m.name);
            for src in CopySource::ALL {
                let cell = m.copy.get(&src).map_or("–".to_string(), |c| {
                    format!("{:.3} {:5.2} ({:5.2})", c.accuracy, c.loss, c.first_half_loss)
                });
                s += &format!("  {cell:>24}");
            }
            s.push('\n');
        }
        s
    }
    /// The reference and the other models, when there is a reference.
    #[allow(clippy::type_complexity)]
    fn split_reference(&self) -> Option<((String, ArHitReport), Vec<(String, ArHitReport)>)> {
        let r = self.reference.as_ref()?;
        let named = self.named();
        let reference = named.iter().find(|(n, _)| n == r)?.clone();
        Some((reference, named.into_iter().filter(|(n, _)| n != r).collect()))
    }

    /// The gap per token to the reference on AR hits and on the other tokens of windows grouped
    /// by their AR-hit count (empty without a reference).
    pub fn recall_table(&self) -> String {
        let Some((reference, models)) = self.split_reference() else { return String::new() };
        let p = crate::analysis::arhits_gap_plot::GapByRecallsPlot { reference: reference.clone(), models };
        let (labels, rows) = p.gaps();
        let windows: Vec<u64> = reference.1.by_recalls.iter().filter(|r| r.windows > 0).map(|r| r.windows).collect();
        let mut s = format!(
            "\nloss gap to {} per token (nats), by AR hits per window (AR hits | other tokens)\n{:<22}",
            reference.0, "AR hits per window"
        );
        for l in &labels {
            s += &format!("{l:>16}");
        }
        s += &format!("\n{:<22}", "windows");
        for w in &windows {
            s += &format!("{w:>16}");
        }
        s.push('\n');
        let cell = |v: &Option<f64>| v.map_or("–".to_string(), |v| format!("{v:+.3}"));
        for (name, ar, other) in &rows {
            s += &format!("{:<22}", name);
            for (a, o) in ar.iter().zip(other) {
                s += &format!("{:>16}", format!("{} | {}", cell(a), cell(o)));
            }
            s.push('\n');
        }
        s
    }

    /// Ratio of a model's perplexity to the reference's on AR hits and on other tokens.
    pub fn ratios(&self) -> Vec<(String, f64, f64)> {
        let Some(r) = self.reference.as_ref().and_then(|r| self.models.iter().find(|m| &m.name == r)) else {
            return vec![];
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => a / b,
            _ => f64::NAN,
        };
        self.models
            .iter()
            .filter(|m| m.name != r.name)
            .map(|m| {
                (
                    m.name.clone(),
                    ratio(m.report.ar_hit.perplexity(), r.report.ar_hit.perplexity()),
                    ratio(m.report.other.perplexity(), r.report.other.perplexity()),
                )
            })
            .collect()
    }
}

/// The text task of a run (the first in `data.test`, else in `data.train`).
pub fn text_task(cfg: &RunConfig, dir: &Path) -> Result<TextConfig> {
    cfg.data.test.iter().chain(&cfg.data.train).find_map(|t| if let TaskConfig::Text(c) = t { Some(c.clone()) } else { None }).ok_or_else(|| {
        let tasks: Vec<&str> = cfg.data.train.iter().map(|t| t.name()).collect();
        config_err("RUN_DIR", format!("{} was trained on {} (no `text` task): `zoology arhits` evaluates language models trained with task = \"text\"", dir.display(), tasks.join(", ")))
    })
}

/// The run directories among `args`: a run directory as is, a results directory (one with a
/// `runs/` folder, as `zoology sweep run --out` writes) as each of its **finished** runs (a
/// checkpoint and a summary). Returns them with the runs of results directories that were left
/// out because they have a checkpoint but no summary yet (in progress or interrupted: their
/// checkpoint is a mid-training snapshot); name such a run's directory to evaluate it anyway.
pub fn expand_run_dirs(args: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut out, mut unfinished) = (vec![], vec![]);
    for a in args {
        if a.join(rundir::CONFIG).exists() {
            out.push(a.clone());
        } else if a.join("runs").is_dir() {
            let mut runs: Vec<PathBuf> = std::fs::read_dir(a.join("runs"))
                .map_err(crate::error::io_err(a.join("runs")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join(rundir::CONFIG).exists() && p.join(rundir::CHECKPOINT).exists())
                .collect();
            runs.sort();
            let (done, open): (Vec<PathBuf>, Vec<PathBuf>) =
                runs.into_iter().partition(|p| p.join(rundir::SUMMARY).exists());
            if done.is_empty() {
                let why =
                    if open.is_empty() { "no run with a checkpoint" } else { "no finished run (all are in progress)" };
                return Err(config_err("RUN_DIR", format!("{} holds {why} under runs/", a.display())));
            }
            out.extend(done);
            unfinished.extend(open);
        } else {
            // load_run's error says what a run directory is
            read_config(a)?;
        }
    }
    if out.is_empty() {
        return Err(config_err("RUN_DIR", "give at least one run directory (or a results directory with runs/)"));
    }
    Ok((out, unfinished))
}

/// Per-target losses (nats) of `windows` (each `L + 1` tokens), `[n][L]` flattened.
pub fn window_losses(model: &crate::model::LanguageModel, windows: &[&[u32]]) -> Vec<f32> {
    let _g = tch::no_grad_guard();
    let l = windows[0].len() - 1;
    let n = windows.len() as i64;
    let x: Vec<i64> = windows.iter().flat_map(|w| w[..l].iter().map(|&t| t as i64)).collect();
    let y: Vec<i64> = windows.iter().flat_map(|w| w[1..].iter().map(|&t| t as i64)).collect();
    let x = Tensor::from_slice(&x).view([n, l as i64]);
    let y = Tensor::from_slice(&y).view([n, l as i64, 1]);
    let logp = model.logits(&x, false).log_softmax(-1, Kind::Float);
    let nll = logp.gather(2, &y, false).neg().view([-1]);
    Vec::<f32>::try_from(&nll).expect("float losses")
}

/// Evaluates every run on the validation windows (see the module docs). Phases: read the runs'
/// configs (they must share corpus, tokenizer and L), build the training-bigram counts and the
/// validation windows, score every model's per-token losses, then the gaps to the reference.
pub fn evaluate_runs(dirs: &[PathBuf], opts: &ArHitsOptions) -> Result<ArHitsOutput> {
    if opts.batch == 0 {
        return Err(config_err("--batch", "must be at least 1"));
    }
    let cfgs = read_run_configs(dirs)?;
    let t0 = cfgs[0].2.clone();
    let data = t0.dataset("RUN_DIR text task")?;
    let counts = BigramCounts::from_tokens(data.tokens(Split::Train));
    let valid = data.tokens(Split::Valid);
    let wins = validation_windows(valid, &t0, opts.max_windows)?;
    let buckets = match opts.buckets {
        Some(k) => FreqBuckets::quantiles(&counts, k)?,
        None => FreqBuckets::log_spaced(&counts, wins.iter().copied(), opts.min_bucket_hits)?,
    };
    let probes =
        copy_probes(data.tokens(Split::Train), &wins, cfgs[0].1.data.vocab_size, t0.seq_len, opts.copy_sequences);
    let by_distance = distance_probes(&wins, t0.seq_len, opts.copy_sequences);

    let pb = if opts.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some((wins.len() * cfgs.len()) as u64), ProgressDrawTarget::stderr())
    };
    pb.set_style(
        ProgressStyle::with_template("{msg:>20} [{bar:30}] {pos}/{len} windows, {elapsed} (eta {eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    let mut models = vec![];
    for ((dir, cfg, _), name) in cfgs.iter().zip(model_labels(&cfgs)) {
        pb.set_message(name.clone());
        let run = load_run(dir)?;
        let mut an = ArHitAnalyzer::new(&counts, &buckets, t0.seq_len);
        for chunk in wins.chunks(opts.batch) {
            let nll = window_losses(&run.model, chunk);
            for (w, l) in chunk.iter().zip(nll.chunks(t0.seq_len)) {
                an.add_window(w, l).map_err(|e| Error::Data(format!("{}: {e}", dir.display())))?;
            }
            pb.inc(chunk.len() as u64);
        }
        models.push(ModelArHits {
            name,
            run_dir: dir.display().to_string(),
            mixer: cfg.model.mixer_name(),
            d_model: cfg.model.d_model,
            n_layers: cfg.model.n_layers,
            parameters: crate::model::num_parameters(&run.vs),
            report: an.finish(),
            gap: None,
            copy: probes.iter().map(|(src, p)| (*src, p.evaluate_with(|x| run.model.logits(x, false)))).collect(),
            copy_by_distance: by_distance
                .iter()
                .map(|(d, p)| (*d, p.evaluate_with(|x| run.model.logits(x, false))))
                .collect(),
        });
    }
    pb.finish_and_clear();

    let reference = reference_name(&models, opts.reference.as_deref())?;
    if let Some(r) = &reference {
        let rr = models.iter().find(|m| &m.name == r).expect("found above").report.clone();
        for m in models.iter_mut().filter(|m| &m.name != r) {
            m.gap = gap_share(&rr, &m.report)?;
        }
    }
    let trajectories = match &reference {
        Some(r) => {
            let evals = |i: usize| {
                let (dir, cfg, t) = &cfgs[i];
                Ok::<_, Error>(eval_points(&run_curve(dir)?, (cfg.data.batch_size * t.seq_len) as u64))
            };
            let ri = models.iter().position(|m| &m.name == r).expect("found above");
            let re = evals(ri)?;
            let mut out = vec![];
            for (i, m) in models.iter().enumerate().filter(|(i, _)| *i != ri) {
                out.push(trajectory(&m.name, &re, &evals(i)?, FIT_FROM, TARGET));
            }
            out
        }
        None => vec![],
    };
    Ok(ArHitsOutput {
        corpus: t0.corpus.clone(),
        tokenizer: t0.tokenizer.clone(),
        split: "valid".into(),
        seq_len: t0.seq_len,
        windows: wins.len() as u64,
        buckets: buckets.scheme.clone(),
        reference,
        models,
        trajectories,
    })
}

/// One copy probe per [`CopySource`] of `n` sequences of length `l` (fewer for text when there
/// are fewer validation windows; none when `n` is 0 or L < 4), the same for every model: random
/// halves from a fixed seed, frequent-token halves from the `4·⌊l/2⌋` most frequent tokens of
/// the training split, text halves from the first validation windows.
fn copy_probes(train: &[u32], wins: &[&[u32]], vocab: usize, l: usize, n: usize) -> Vec<(CopySource, CopyProbe)> {
    if n == 0 || l < 4 {
        return vec![];
    }
    let h = l / 2;
    let mut counts = vec![0u64; vocab];
    for &t in train {
        if let Some(c) = counts.get_mut(t as usize) {
            *c += 1;
        }
    }
    let mut by_count: Vec<i64> = (0..vocab as i64).filter(|&t| counts[t as usize] > 0).collect();
    by_count.sort_by_key(|&t| std::cmp::Reverse(counts[t as usize]));
    by_count.truncate(4 * h);
    let everything: Vec<i64> = (0..vocab as i64).collect();
    let halves: Vec<Vec<i64>> = wins.iter().take(n).map(|w| w[..h].iter().map(|&t| t as i64).collect()).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    let dev = tch::Device::Cpu;
    CopySource::ALL
        .into_iter()
        .map(|src| {
            let p = match src {
                CopySource::Uniform => CopyProbe::random(&everything, n, l, vocab, &mut rng, dev),
                CopySource::Frequent => CopyProbe::random(&by_count, n, l, vocab, &mut rng, dev),
                CopySource::Text => CopyProbe::from_halves(&halves, l, vocab, &mut rng, dev),
            };
            (src, p)
        })
        .collect()
}

/// The distances of the text-repeat probe: 4, 8, … up to L/2.
fn repeat_distances(l: usize) -> Vec<usize> {
    (2..).map(|k| 1usize << k).take_while(|&p| 2 * p <= l).collect()
}

/// One [`CopyProbe::text_at_distance`] per distance of [`repeat_distances`]: the first `n`
/// validation windows as context, chunks from the last windows (other text); none when `n` is 0.
fn distance_probes(wins: &[&[u32]], l: usize, n: usize) -> Vec<(usize, CopyProbe)> {
    if n == 0 {
        return vec![];
    }
    let ctx: Vec<&[u32]> = wins.iter().take(n).copied().collect();
    let chunks: Vec<&[u32]> = wins.iter().rev().take(ctx.len()).copied().collect();
    repeat_distances(l)
        .into_iter()
        .map(|p| (p, CopyProbe::text_at_distance(&ctx, &chunks, p, tch::Device::Cpu)))
        .collect()
}

/// Each run's directory, config and text task; an error unless all read the same corpus,
/// tokenizer and context length (so that their slices hold the same tokens).
fn read_run_configs(dirs: &[PathBuf]) -> Result<Vec<(PathBuf, RunConfig, TextConfig)>> {
    let mut cfgs: Vec<(PathBuf, RunConfig, TextConfig)> = vec![];
    for d in dirs {
        let cfg = read_config(d)?;
        let t = text_task(&cfg, d)?;
        if let Some((d0, _, t0)) = cfgs.first() {
            if (&t.corpus, &t.tokenizer, t.seq_len) != (&t0.corpus, &t0.tokenizer, t0.seq_len) {
                return Err(config_err(
                    "RUN_DIR",
                    format!(
                        "{} reads corpus {} / tokenizer {} at L = {} but {} reads {} / {} at L = {}: compare runs on the same windows",
                        d.display(),
                        t.corpus,
                        t.tokenizer,
                        t.seq_len,
                        d0.display(),
                        t0.corpus,
                        t0.tokenizer,
                        t0.seq_len
                    ),
                ));
            }
        }
        cfgs.push((d.clone(), cfg, t));
    }
    Ok(cfgs)
}

/// The validation split packed into windows of `L + 1` tokens, the first `max_windows` of them.
fn validation_windows<'v>(valid: &'v [u32], t0: &TextConfig, max_windows: Option<usize>) -> Result<Vec<&'v [u32]>> {
    let mut wins: Vec<&[u32]> = window_sequences(valid, t0.seq_len).collect();
    if let Some(m) = max_windows {
        if m == 0 {
            return Err(config_err("--max-windows", "must be at least 1"));
        }
        wins.truncate(m);
    }
    if wins.is_empty() {
        return Err(Error::Data(format!(
            "the valid split of {} ({} tokens) holds no window of L = {}",
            t0.corpus,
            valid.len(),
            t0.seq_len
        )));
    }
    Ok(wins)
}

/// A label per run: the sweep's preset label when the run came from a sweep (two hybrids are
/// "based" and "hybrid", not "hybrid" twice), else the mixer; made unique by width and depth,
/// then by directory name.
fn model_labels(cfgs: &[(PathBuf, RunConfig, TextConfig)]) -> Vec<String> {
    let preset = |dir: &Path| crate::rundir::read_sweep_meta(dir).map(|m| m.label).filter(|l| !l.is_empty());
    let mixers: Vec<String> = cfgs.iter().map(|(d, c, _)| preset(d).unwrap_or_else(|| c.model.mixer_name())).collect();
    let same_shape =
        |a: &RunConfig, b: &RunConfig| a.model.d_model == b.model.d_model && a.model.n_layers == b.model.n_layers;
    cfgs.iter()
        .zip(&mixers)
        .map(|((dir, cfg, _), mixer)| {
            if mixers.iter().filter(|m| *m == mixer).count() == 1 {
                return mixer.clone();
            }
            let twins = cfgs.iter().zip(&mixers).filter(|((_, c, _), m)| *m == mixer && same_shape(c, cfg)).count();
            if twins > 1 {
                format!("{mixer} {}", dir.file_name().and_then(|n| n.to_str()).unwrap_or("?"))
            } else {
                format!("{mixer} d{} L{}", cfg.model.d_model, cfg.model.n_layers)
            }
        })
        .collect()
}

/// The reference model's label: the run named by `--reference` (by label or mixer), else the
/// attention run, else none.
fn reference_name(models: &[ModelArHits], named: Option<&str>) -> Result<Option<String>> {
    let Some(r) = named else {
        return Ok(models
            .iter()
            .find(|m| m.mixer == "attention")
            .or_else(|| models.iter().find(|m| m.name == "attention"))
            .map(|m| m.name.clone()));
    };
    let found = models.iter().find(|m| m.name == r).or_else(|| models.iter().find(|m| m.mixer == r));
    match found {
        Some(m) => Ok(Some(m.name.clone())),
        None => Err(config_err(
            "--reference",
            format!(
                "no evaluated run is called `{r}` (runs: {})",
                models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// Writes `arhits.json`, `arhits.md` (the tables) and the plots (`arhits_frequency`,
/// `arhits_ar_vs_other`, PNG + SVG) into `out`; returns the files written.
pub fn write_outputs(o: &ArHitsOutput, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(crate::error::io_err(out))?;
    let json = out.join("arhits.json");
    std::fs::write(&json, serde_json::to_string_pretty(o).expect("serialisable"))
        .map_err(crate::error::io_err(&json))?;
    let md = out.join("arhits.md");
    std::fs::write(&md, format!("```\n{}```\n", o.tables()?)).map_err(crate::error::io_err(&md))?;
    let named = o.named();
    crate::analysis::arhits_plot::plot_frequency(&named, &out.join("arhits_frequency"))?;
    crate::analysis::arhits_plot::plot_ar_vs_other(&named, &out.join("arhits_ar_vs_other"))?;
    let mut files = vec![json, md, out.join("arhits_frequency.png"), out.join("arhits_ar_vs_other.png")];
    if let Some((reference, models)) = o.split_reference().filter(|(_, m)| !m.is_empty()) {
        use crate::analysis::arhits_gap_plot as g;
        let (r, m) = (reference, models);
        g::plot_gap_by_frequency(
            &g::GapByFrequencyPlot { reference: r.clone(), models: m.clone() },
            &out.join("arhits_gap_frequency"),
        )?;
        g::plot_gap_by_recalls(
            &g::GapByRecallsPlot { reference: r.clone(), models: m.clone() },
            &out.join("arhits_gap_recalls"),
        )?;
        g::plot_gap_by_distance(
            &g::GapByDistancePlot { reference: r.clone(), models: m.clone() },
            &out.join("arhits_gap_distance"),
        )?;
        g::plot_gap_bars(&g::GapBarsPlot { reference: r, models: m }, &out.join("arhits_gap_bars"))?;
        files.extend(
            ["arhits_gap_frequency.png", "arhits_gap_distance.png", "arhits_gap_recalls.png", "arhits_gap_bars.png"]
                .map(|f| out.join(f)),
        );
    }
    if let Some(r) = o.reference.as_ref().filter(|_| o.trajectories.iter().any(|t| !t.points.is_empty())) {
        use crate::analysis::arhits_trajectory as t;
        let p = t::GapTrajectoryPlot { reference: r.clone(), trajectories: o.trajectories.clone() };
        t::plot_gap_trajectory(&p, &out.join("arhits_gap_trajectory"))?;
        files.push(out.join("arhits_gap_trajectory.png"));
    }
    let curves = training_curves(o)?;
    if curves.iter().any(|(_, c)| c.iter().any(|p| p.copy.is_some())) {
        use crate::analysis::arhits_gap_plot as g;
        g::plot_training_curves(&g::TrainingCurvesPlot { curves }, &out.join("arhits_training"))?;
        files.push(out.join("arhits_training.png"));
    }
    Ok(files)
}

/// Each evaluated run's evaluations over training ([`run_curve`]).
pub fn training_curves(o: &ArHitsOutput) -> Result<Vec<crate::analysis::arhits_gap_plot::Curve>> {
    o.models.iter().map(|m| Ok((m.name.clone(), run_curve(Path::new(&m.run_dir))?))).collect()
}

/// One run's evaluations from its metrics.jsonl: the copy accuracies (random tokens; text,
/// where recorded), AR-hit and other-token loss.
pub fn run_curve(run_dir: &Path) -> Result<Vec<crate::analysis::arhits_gap_plot::CurvePoint>> {
    use crate::train::metrics::{read_lines, MetricLine};
    let lines = read_lines(&run_dir.join(crate::rundir::METRICS))?;
    Ok(lines
        .iter()
        .filter_map(|l| match l {
            MetricLine::Eval { step, result, .. } => Some(crate::analysis::arhits_gap_plot::CurvePoint {
                step: *step as f64,
                copy: result.metrics.get("copy_accuracy").copied(),
                copy_text: result.metrics.get("copy_text_accuracy").copied(),
                ar_hit_loss: result.metrics.get("ar_hit_loss").copied(),
                other_loss: result.metrics.get("other_loss").copied(),
            }),
            _ => None,
        })
        .collect())
}

/// Reads `dir/arhits.json` if present (for `zoology report`).
pub fn read_output(dir: &Path) -> Result<Option<ArHitsOutput>> {
    let p = dir.join("arhits.json");
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(crate::error::io_err(&p))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Data(format!("{}: {e}; run `zoology arhits … --out {}` again", p.display(), dir.display())))
}
