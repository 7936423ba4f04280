//! The training loop: data generation, AdamW with warmup + cosine, evaluation every epoch on
//! supervised positions only (Zoology's per-example accuracy, plus micro accuracy and per-slice
//! accuracy), early stopping, checkpoints, resume, and divergence detection.

use super::checkpoint::{self, TrainerState};
use super::metrics::{self, EvalResult, MetricLine, StopReason, Summary};
use super::optim::AdamW;
use crate::config::{RunConfig, Schedule};
use crate::device::{set_threads, Runtime};
use crate::error::{catch_panic, io_err, Error, Result};
use crate::model::{num_parameters, LanguageModel};
use crate::rundir::{self, Heartbeat, RunLock, Solved};
use crate::tasks::metric::{self, Accumulator};
use crate::tasks::{mix_seed, Segment, IGNORE};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Tensor};

#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Run directory (created if missing).
    pub out_dir: PathBuf,
    /// Continue from `out_dir/checkpoint.safetensors`.
    pub resume: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Prefix for the progress bar (e.g. the run id in a sweep).
    pub label: String,
}

/// Data on the device: one `[n, L]` input and target tensor per segment.
pub struct DeviceData {
    pub segments: Vec<Segment>,
    pub inputs: Vec<Tensor>,
    pub targets: Vec<Tensor>,
}

impl DeviceData {
    pub fn new(segments: Vec<Segment>, rt: &Runtime) -> Self {
        let (inputs, targets) = segments.iter().map(|s| s.to_tensors(rt.device)).unzip();
        DeviceData { segments, inputs, targets }
    }
}

/// Batches of one epoch: (segment, example indices), shuffled by (seed, epoch) when asked.
fn epoch_batches(segs: &[Segment], batch: usize, shuffle: bool, seed: u64, epoch: usize) -> Vec<(usize, Vec<i64>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, 5_000_000 + epoch as u64));
    let mut out = vec![];
    for (si, s) in segs.iter().enumerate() {
        let mut idx: Vec<i64> = (0..s.n as i64).collect();
        if shuffle {
            idx.shuffle(&mut rng);
        }
        for c in idx.chunks(batch) {
            out.push((si, c.to_vec()));
        }
    }
    if shuffle {
        out.shuffle(&mut rng);
    }
    out
}

/// Loss (mean CE over supervised positions) with the head applied only at those positions.
/// Returns (loss, logits `[M, V]`, targets `[M]`, example index of each row `[M]`).
pub fn sparse_head_loss(
    model: &LanguageModel,
    x: &Tensor,
    y: &Tensor,
    train: bool,
) -> (Tensor, Tensor, Tensor, Tensor) {
    let (_, l) = x.size2().unwrap();
    let h = model.hidden(x, train);
    let d = h.size()[2];
    let flat_y = y.reshape([-1]);
    let idx = flat_y.ne(IGNORE as i64).nonzero().squeeze_dim(1);
    let hs = h.reshape([-1, d]).index_select(0, &idx);
    // the loss in fp32 whatever the precision of the forward pass
    let logits = model.head(&hs).to_kind(tch::Kind::Float);
    let tg = flat_y.index_select(0, &idx);
    let loss = logits.cross_entropy_for_logits(&tg);
    let ex = idx.divide_scalar_mode(l, "floor");
    (loss, logits, tg, ex)
}

/// Evaluates on the test segments (no dropout, no gradients), each scored by its task's
/// metric (`tasks::metric`): the primary `accuracy` is that metric, `metrics` holds every
/// convention (per-example, micro, MAD's macro where the task uses it, perplexity).
pub fn evaluate(model: &LanguageModel, data: &DeviceData, batch: usize) -> EvalResult {
    tch::no_grad(|| {
        let mut parts = Vec::with_capacity(data.segments.len());
        for (si, seg) in data.segments.iter().enumerate() {
            let mut acc = Accumulator::new(seg.metric);
            let n = seg.n as i64;
            let mut start = 0;
            while start < n {
                let len = (batch as i64).min(n - start);
                let x = data.inputs[si].narrow(0, start, len);
                let y = data.targets[si].narrow(0, start, len);
                let (_, logits, tg, ex) = sparse_head_loss(model, &x, &y, false);
                metric::score_batch(&mut acc, &logits, &tg, &ex, len as usize);
                start += len;
            }
            parts.push((seg.metric, &seg.slices, acc.finish()));
        }
        let s = metric::summarize(&parts);
        EvalResult {
            accuracy: s.accuracy,
            accuracy_micro: s.accuracy_micro,
            loss: s.loss,
            slices: s.slices,
            metric: s.metric,
            metrics: s.metrics,
        }
    })
}

/// The learning rate of optimiser step `step` (from 0) of a run of `total` steps,
/// `steps_per_epoch` to an epoch.
pub fn lr_at(cfg: &crate::config::TrainConfig, step: usize, total: usize, steps_per_epoch: usize) -> f64 {
    if step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    match cfg.schedule {
        Schedule::Constant => cfg.lr,
        Schedule::CosinePerEpoch => {
            let epoch = (step / steps_per_epoch.max(1)).min(cfg.epochs) as f64;
            let min = cfg.lr * cfg.min_lr_ratio;
            min + (cfg.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * epoch / cfg.epochs.max(1) as f64).cos())
        }
        Schedule::Cosine => {
            let span = (total - cfg.warmup_steps.min(total)).max(1) as f64;
            let p = ((step - cfg.warmup_steps) as f64 / span).min(1.0);
            let min = cfg.lr * cfg.min_lr_ratio;
            min + (cfg.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
        }
    }
}

/// Runs (or resumes) one training run and writes its run directory. Takes the directory's
/// lock first: a second trainer of the same directory is refused ([`Error::Busy`]).
pub fn train(cfg: &RunConfig, opts: &TrainOptions) -> Result<Summary> {
    let cfg = cfg.resolved()?;
    cfg.validate()?;
    // a run that cannot fit here is refused before its directory is created
    cfg.memory_estimate().check_fits_here()?;
    let dir = &opts.out_dir;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let lock = RunLock::acquire(dir)?;
    train_locked(&cfg, opts, &lock)
}

/// [`train`] with the run directory's lock already held (a sweep takes it to claim the run).
/// While it trains, running.json names this process and carries a heartbeat; an error or a
/// panic after that point is recorded in failed.json with its reason.
pub fn train_locked(cfg: &RunConfig, opts: &TrainOptions, lock: &RunLock) -> Result<Summary> {
    let cfg = &cfg.resolved()?;
    cfg.validate()?;
    let dir = &opts.out_dir;
    if lock.dir != *dir {
        return Err(Error::Other(format!(
            "internal: the lock held is for {}, not {}",
            lock.dir.display(),
            dir.display()
        )));
    }
    let ckpt_path = dir.join(checkpoint::FILE);
    if opts.resume {
        if dir.join(rundir::SUMMARY).exists() {
            return metrics::read_summary(dir); // already finished: nothing is retrained
        }
    } else if ckpt_path.exists() || dir.join(rundir::SUMMARY).exists() {
        return Err(Error::Other(format!(
            "{} already holds a run; pass --resume to continue it, or choose another --out",
            dir.display()
        )));
    } else if let Some(other) = rundir::foreign_run(dir, &rundir::run_id(cfg)) {
        return Err(Error::Other(format!(
            "{} holds another run ({other}) without a checkpoint; training here would overwrite its files: choose another --out, or delete it",
            dir.display()
        )));
    }
    // temporary files of a process killed mid-write (we hold the lock: nobody else writes here)
    rundir::remove_temporaries(dir);
    let _ = std::fs::remove_file(dir.join(rundir::FAILED)); // trying again
    let mut heartbeat = Heartbeat::start(dir, lock)?;
    let result = catch_panic(|| run(cfg, opts));
    heartbeat.stop();
    if let Err(e) = &result {
        rundir::record_failure(dir, &e.to_string())?;
    }
    result
}

/// Test hooks for the failure paths (`ZOOLOGY_FAULT`, comma-separated): `panic@N` panics and
/// `abort@N` aborts the process right after step N; `kill-before-summary` SIGKILLs the process
/// after the last checkpoint, before summary.json. Unset in normal use.
fn fault(what: &str, step: usize) {
    let Ok(spec) = std::env::var("ZOOLOGY_FAULT") else { return };
    for f in spec.split(',').map(str::trim) {
        match f.split_once('@') {
            Some((kind, n)) if kind == what && n.parse() == Ok(step) => match kind {
                "panic" => panic!("injected fault ZOOLOGY_FAULT={f}"),
                "abort" => std::process::abort(),
                _ => {}
            },
            None if f == what => {
                // SAFETY: sends a signal to this process; nothing is shared.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
            _ => {}
        }
    }
}

/// Test hook: `ZOOLOGY_STEP_DELAY_MS=N` sleeps N ms after every training step, so that a test
/// can act on a run while it trains (a Slurm cancel mid-run) however fast or loaded the machine.
fn step_delay() {
    if let Some(ms) = std::env::var("ZOOLOGY_STEP_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(10_000)));
    }
}

/// How the step loop ended (the summary's status and its last words).
struct Outcome {
    stop: StopReason,
    reason: Option<String>,
    /// The last training loss, or the non-finite loss that stopped the run.
    last_loss: f64,
}

/// One training run in progress: what [`run`]'s phases share.
struct Session<'a> {
    cfg: &'a RunConfig,
    ckpt_path: PathBuf,
    metrics_path: PathBuf,
    identity: checkpoint::Identity,
    rt: Runtime,
    train_data: DeviceData,
    test_data: DeviceData,
    max_test_len: i64,
    vs: nn::VarStore,
    model: LanguageModel,
    /// Every parameter by name, sorted (the checkpoint's and the optimiser's order).
    named: Vec<(String, Tensor)>,
    opt: AdamW,
    st: TrainerState,
    /// The exact training FLOPs of each step (for `solved`): per segment the model's FLOPs at
    /// its length, and each example's supervised positions (the sparse head runs there).
    seg_flops: Vec<crate::model::ModelFlops>,
    supervised: Vec<Vec<usize>>,
    total_steps: usize,
    steps_per_epoch: usize,
    test_batch: usize,
    pb: ProgressBar,
    session_start: Instant,
    wall_before: f64,
    /// Tokens trained since the last train line, and when that line was written.
    tokens_since: usize,
    tick: Instant,
    /// The copy and AR-hit probes of a text run ([`super::probes`]).
    probes: Option<super::probes::TextProbes>,
    /// Bars, a plain line per epoch, or nothing ([`crate::console`]); the run's wall time when
    /// the epoch in progress began.
    progress: crate::console::Progress,
    epoch_mark: f64,
}

/// Phases of a run: open the run directory (identity, resume), build data, model and optimiser,
/// restore a checkpoint, train epoch by epoch (evaluation, early stop, checkpoints), then write
/// the summary.
fn run(cfg: &RunConfig, opts: &TrainOptions) -> Result<Summary> {
    let mut s = Session::open(cfg, opts)?;
    // a checkpoint that already decided to stop: write the summary, train nothing
    let resumed_stopped = s.st.stopped.is_some();
    let outcome = s.train_epochs()?;
    s.pb.finish_and_clear();
    fault("kill-before-summary", 0);
    let summary = s.summary(outcome, resumed_stopped);
    metrics::write_summary(&opts.out_dir, &summary)?;
    Ok(summary)
}

impl<'a> Session<'a> {
    /// Writes config.toml, checks the memory estimate, generates the data, builds the model and
    /// the optimiser (in this order, so that seeds and results do not depend on resuming), and
    /// restores the checkpoint when resuming.
    fn open(cfg: &'a RunConfig, opts: &'a TrainOptions) -> Result<Self> {
        let dir = &opts.out_dir;
        let ckpt_path = dir.join(checkpoint::FILE);
        let metrics_path = dir.join(rundir::METRICS);
        let identity = checkpoint::Identity { config_hash: rundir::run_id(cfg), seed: cfg.seed };
        if !opts.resume {
            let _ = std::fs::remove_file(&metrics_path);
        }
        metrics::write_atomic(&dir.join(rundir::CONFIG), cfg.to_toml().as_bytes())?;
        cfg.memory_estimate().check_fits_here()?;

        set_threads(cfg.threads);
        let rt = Runtime::new(cfg.device.resolve("device")?);
        let (train_segs, test_segs) = cfg.generate_data();
        let train_data = DeviceData::new(train_segs, &rt);
        let test_data = DeviceData::new(test_segs, &rt);
        let max_test_len = test_data.segments.iter().map(|s| s.seq_len).max().unwrap_or(0) as i64;

        tch::manual_seed(mix_seed(cfg.seed, 77) as i64 & i64::MAX);
        let vs = nn::VarStore::new(rt.device);
        let model = LanguageModel::new(&vs.root(), &cfg.model, cfg.data.vocab_size as i64, cfg.max_seq_len() as i64)?;
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let t = &cfg.train;
        let mut opt = AdamW::new(
            named.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
            t.weight_decay,
            t.beta1,
            t.beta2,
            t.eps,
            t.no_decay_norms_biases,
        );
        let st = restore(opts, &ckpt_path, &metrics_path, &identity, &named, &mut opt)?;

        let seg_flops = train_data.segments.iter().map(|s| model.flops(s.seq_len as i64)).collect();
        let supervised = train_data.segments.iter().map(Segment::supervised_per_example).collect();
        let steps_per_epoch = epoch_batches(&train_data.segments, cfg.data.batch_size, false, 0, 0).len();
        let total_steps = steps_per_epoch * t.epochs;
        let pb = progress_bar(opts, total_steps, st.step);
        let probes = super::probes::TextProbes::new(
            &test_data.segments,
            cfg.data.vocab_size,
            t.text_probes,
            cfg.seed,
            rt.device,
        );
        let wall_before = st.wall_time_s;
        Ok(Session {
            cfg,
            ckpt_path,
            metrics_path,
            identity,
            rt,
            train_data,
            test_data,
            max_test_len,
            vs,
            model,
            named,
            opt,
            st,
            seg_flops,
            supervised,
            total_steps,
            steps_per_epoch,
            test_batch: cfg.data.test_batch_size.unwrap_or(cfg.data.batch_size),
            pb,
            session_start: Instant::now(),
            wall_before,
            tokens_since: 0,
            tick: Instant::now(),
            probes,
            progress: crate::console::Progress::detect(opts.quiet),
            epoch_mark: wall_before,
        })
    }

    /// Wall time of the run so far, sessions before a resume included.
    fn wall(&self) -> f64 {
        self.wall_before + self.session_start.elapsed().as_secs_f64()
    }

    fn save_checkpoint(&self) -> Result<()> {
        checkpoint::save(&self.ckpt_path, &self.named, &self.opt, &self.st, &self.identity)
    }

    /// The epoch loop: every epoch's batches, an evaluation inside the epoch every
    /// `eval_every_steps` and at its end, checkpoints, and the stop decisions.
    fn train_epochs(&mut self) -> Result<Outcome> {
        let t = &self.cfg.train;
        let mut out =
            Outcome { stop: self.st.stopped.unwrap_or(StopReason::MaxEpochs), reason: None, last_loss: f64::NAN };
        while self.st.epoch < t.epochs && self.st.stopped.is_none() {
            let batches = epoch_batches(
                &self.train_data.segments,
                self.cfg.data.batch_size,
                t.shuffle,
                self.cfg.seed,
                self.st.epoch,
            );
            while self.st.batch < batches.len() {
                let (si, idx) = &batches[self.st.batch];
                if let Some(end) = self.train_step(*si, idx, &mut out.last_loss)? {
                    out.stop = end.stop;
                    out.reason = end.reason;
                    out.last_loss = end.last_loss;
                    return Ok(out);
                }
                let inside_epoch = self.st.batch < batches.len();
                if t.checkpoint_every_steps > 0 && self.st.step % t.checkpoint_every_steps == 0 && inside_epoch {
                    self.st.wall_time_s = self.wall();
                    self.save_checkpoint()?;
                }
                if t.eval_every_steps > 0 && self.st.step % t.eval_every_steps == 0 && inside_epoch {
                    if let Some(end) = self.evaluate_inside_epoch(out.last_loss)? {
                        return Ok(end);
                    }
                }
                fault("panic", self.st.step);
                fault("abort", self.st.step);
                step_delay();
            }
            if let Some(end) = self.end_epoch(&mut out)? {
                return Ok(end);
            }
        }
        Ok(out)
    }

    /// One optimiser step on the batch `idx` of segment `si`. Returns the outcome when the loss
    /// or the gradient norm is not finite (that step is not applied).
    fn train_step(&mut self, si: usize, idx: &[i64], last_loss: &mut f64) -> Result<Option<Outcome>> {
        let t = &self.cfg.train;
        let st = &mut self.st;
        let started = Instant::now();
        let it = Tensor::from_slice(idx).to_device(self.rt.device);
        let x = self.train_data.inputs[si].index_select(0, &it);
        let y = self.train_data.targets[si].index_select(0, &it);
        tch::manual_seed(mix_seed(self.cfg.seed, 9_000_000 + st.step as u64) as i64 & i64::MAX);
        self.opt.zero_grad();
        let (loss, _, _, _) = t.precision.autocast(self.rt.device, || sparse_head_loss(&self.model, &x, &y, true));
        // mixers' auxiliary losses (sigmoid_lookups' selection penalty), as Zoology's Trainer adds them
        let loss = match self.model.take_auxiliary_loss() {
            Some(aux) => loss + aux.to_kind(tch::Kind::Float),
            None => loss,
        };
        let lv = loss.double_value(&[]);
        if !lv.is_finite() {
            let reason = format!("training loss became {lv} at step {} (epoch {})", st.step + 1, st.epoch + 1);
            return Ok(Some(Outcome { stop: StopReason::Diverged, reason: Some(reason), last_loss: lv }));
        }
        loss.backward();
        let grad_norm = self.opt.clip_grad_norm(t.grad_clip);
        if !grad_norm.is_finite() {
            let reason = format!(
                "gradient norm became {grad_norm} at step {} (epoch {}); that step was not applied",
                st.step + 1,
                st.epoch + 1
            );
            return Ok(Some(Outcome { stop: StopReason::Diverged, reason: Some(reason), last_loss: lv }));
        }
        let lr = lr_at(t, st.step, self.total_steps, self.steps_per_epoch);
        self.opt.step(lr);
        st.train_time_s += started.elapsed().as_secs_f64();
        st.step += 1;
        st.batch += 1;
        *last_loss = lv;
        let toks = idx.len() * self.train_data.segments[si].seq_len;
        self.tokens_since += toks;
        st.examples += idx.len() as u64;
        st.tokens += toks as u64;
        let heads: u64 = idx.iter().map(|&i| self.supervised[si][i as usize] as u64).sum();
        st.train_flops += crate::flops::TRAIN_FACTOR
            * (self.seg_flops[si].body.forward(idx.len() as i64) + self.seg_flops[si].head_per_position * heads as f64);
        self.pb.inc(1);
        if st.step % t.log_every_steps == 0 {
            let tps = self.tokens_since as f64 / self.tick.elapsed().as_secs_f64().max(1e-9);
            self.tokens_since = 0;
            self.tick = Instant::now();
            st.metrics_bytes = metrics::append_line(
                &self.metrics_path,
                &MetricLine::Train { step: st.step, epoch: st.epoch, loss: lv, lr, tokens_per_s: tps, grad_norm },
            )?;
            let acc = st.last_eval.as_ref().map(|e| format!(" acc {:.3}", e.accuracy)).unwrap_or_default();
            self.pb.set_message(format!("ep {}/{} loss {lv:.3}{acc} {:.0} tok/s", st.epoch + 1, t.epochs, tps));
        }
        Ok(None)
    }

    /// An evaluation inside the epoch (the epoch's end has its own): records it and decides
    /// whether the run stops here (diverged test loss, or early stop, checkpointed).
    fn evaluate_inside_epoch(&mut self, last_loss: f64) -> Result<Option<Outcome>> {
        self.st.wall_time_s = self.wall();
        let epochs_completed = self.st.epoch;
        let ev = self.evaluate_and_record(epochs_completed)?;
        self.show_eval(last_loss, &ev);
        if !ev.loss.is_finite() {
            let reason = format!("test loss became {} at step {} (epoch {})", ev.loss, self.st.step, self.st.epoch + 1);
            return Ok(Some(Outcome { stop: StopReason::Diverged, reason: Some(reason), last_loss: ev.loss }));
        }
        if ev.accuracy > self.cfg.train.early_stop_accuracy {
            self.st.stopped = Some(StopReason::EarlyStop);
            self.save_checkpoint()?;
            return Ok(Some(Outcome { stop: StopReason::EarlyStop, reason: None, last_loss }));
        }
        Ok(None)
    }

    /// The end of an epoch: evaluate, record, checkpoint; returns the outcome when the run
    /// stops (diverged test loss, or early stop).
    fn end_epoch(&mut self, out: &mut Outcome) -> Result<Option<Outcome>> {
        self.st.wall_time_s = self.wall();
        let epochs_completed = self.st.epoch + 1;
        let ev = self.evaluate_and_record(epochs_completed)?;
        self.st.epochs_done = self.st.epoch + 1;
        self.show_eval(out.last_loss, &ev);
        self.epoch_line(out.last_loss, &ev);
        let diverged = !ev.loss.is_finite();
        let early = ev.accuracy > self.cfg.train.early_stop_accuracy;
        if diverged {
            out.reason = Some(format!("test loss became {} after epoch {}", ev.loss, self.st.epoch + 1));
            out.last_loss = ev.loss;
        }
        self.st.epoch += 1;
        self.st.batch = 0;
        if diverged {
            out.stop = StopReason::Diverged;
            return Ok(Some(Outcome { stop: out.stop, reason: out.reason.take(), last_loss: out.last_loss }));
        }
        if early {
            // the decision travels with the checkpoint: a resumed run ends here too
            self.st.stopped = Some(StopReason::EarlyStop);
            out.stop = StopReason::EarlyStop;
        }
        self.save_checkpoint()?;
        if early {
            return Ok(Some(Outcome { stop: out.stop, reason: out.reason.take(), last_loss: out.last_loss }));
        }
        Ok(None)
    }

    /// The plain progress line of a finished epoch (when there is no terminal to draw on).
    fn epoch_line(&mut self, last_loss: f64, ev: &EvalResult) {
        use crate::console::duration;
        let now = self.wall();
        self.progress.line(&format!(
            "epoch {}/{} done in {} ({} in all): train loss {last_loss:.4}, test {} {:.4}, test loss {:.4}",
            self.st.epoch + 1,
            self.cfg.train.epochs,
            duration(now - self.epoch_mark),
            duration(now),
            ev.metric,
            ev.accuracy,
            ev.loss
        ));
        self.epoch_mark = now;
    }

    fn show_eval(&self, last_loss: f64, ev: &EvalResult) {
        self.pb.set_message(format!(
            "ep {}/{} loss {last_loss:.3} acc {:.3} (test loss {:.3})",
            self.st.epoch + 1,
            self.cfg.train.epochs,
            ev.accuracy,
            ev.loss
        ));
    }

    fn evaluate_and_record(&mut self, epochs_completed: usize) -> Result<EvalResult> {
        let ev = self
            .cfg
            .train
            .precision
            .autocast(self.rt.device, || evaluate(&self.model, &self.test_data, self.test_batch));
        let mut ev = ev;
        if let Some(p) = &self.probes {
            ev.metrics.extend(p.evaluate(&self.model, self.cfg.train.precision));
        }
        record_eval(ev, &mut self.st, epochs_completed, &self.cfg.train.solve_thresholds, &self.metrics_path)
    }

    /// summary.json's content.
    fn summary(&self, out: Outcome, resumed_stopped: bool) -> Summary {
        let (cfg, st) = (self.cfg, &self.st);
        let costs = crate::cost::lm_flops_of(
            &self.model,
            num_parameters(&self.vs),
            &crate::cost::step_shapes(&self.train_data.segments, cfg.data.batch_size),
            self.max_test_len.max(1),
        );
        let last = st.last_eval.clone().unwrap_or_default();
        let diverged = out.stop == StopReason::Diverged;
        Summary {
            status: if diverged { "diverged".into() } else { "done".into() },
            stop_reason: out.stop,
            reason: out.reason,
            mixer: cfg.model.mixer_name(),
            d_model: cfg.model.d_model,
            best_accuracy: st.best_accuracy,
            best_epoch: st.best_epoch,
            final_accuracy: last.accuracy,
            // a run that diverged before its first evaluation still names the metric it is scored by
            metric: if last.metric.is_empty() {
                metric::name_of(self.test_data.segments.iter().map(|s| s.metric))
            } else {
                last.metric.clone()
            },
            final_metrics: last.metrics.clone(),
            final_loss: if diverged { out.last_loss } else { last.loss },
            slices: last.slices.clone(),
            best_slices: st.best_slices.clone(),
            num_parameters: num_parameters(&self.vs),
            state_size: self.model.state_size(self.max_test_len),
            state_size_seq_len: self.max_test_len,
            flops_train_per_step: Some(costs.train_per_step),
            flops_prefill_per_seq: Some(costs.prefill_per_seq),
            flops_decode_per_token: Some(costs.decode_per_token),
            wall_time_s: if resumed_stopped { st.wall_time_s } else { self.wall() },
            train_tokens_per_s: (st.train_time_s > 0.0).then(|| st.tokens as f64 / st.train_time_s),
            train_gflops_per_s: (st.train_time_s > 0.0).then(|| st.train_flops / st.train_time_s / 1e9),
            epochs: st.epochs_done,
            steps: st.step,
            device: self.rt.name(),
            machine: Some(crate::device::machine()),
            solved: Some(st.solved.clone()),
        }
    }
}

/// The trainer state to start from: a checkpoint's when resuming from one (parameters and
/// optimiser restored, metrics.jsonl cut back to what that state had written), else fresh.
fn restore(
    opts: &TrainOptions,
    ckpt_path: &Path,
    metrics_path: &Path,
    identity: &checkpoint::Identity,
    named: &[(String, Tensor)],
    opt: &mut AdamW,
) -> Result<TrainerState> {
    if opts.resume && ckpt_path.exists() {
        let loaded = checkpoint::load(ckpt_path, identity)?;
        checkpoint::restore(&loaded, ckpt_path, named, opt)?;
        metrics::truncate_to(metrics_path, loaded.state.metrics_bytes)?;
        return Ok(loaded.state);
    } else if opts.resume {
        let _ = std::fs::remove_file(metrics_path);
    }
    Ok(TrainerState::default())
}

fn progress_bar(opts: &TrainOptions, total_steps: usize, position: usize) -> ProgressBar {
    let pb = if crate::console::Progress::detect(opts.quiet) != crate::console::Progress::Bars {
        ProgressBar::with_draw_target(Some(total_steps as u64), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(total_steps as u64)
    };
    pb.set_style(
        ProgressStyle::with_template("{prefix}[{elapsed_precise}<{eta_precise}] {bar:25.cyan/blue} {pos}/{len} {msg}")
            .unwrap()
            .progress_chars("=> "),
    );
    pb.set_prefix(if opts.label.is_empty() { String::new() } else { format!("{} ", opts.label) });
    pb.set_position(position as u64);
    pb
}

/// Records an evaluation: a metrics line (`epoch` = epochs completed, so an evaluation inside
/// epoch 3 says 2 and the one at its end 3), the best accuracy so far, the first crossing of
/// each solve threshold, and `st.last_eval`.
fn record_eval(
    ev: EvalResult,
    st: &mut TrainerState,
    epoch: usize,
    thresholds: &[f64],
    metrics_path: &Path,
) -> Result<EvalResult> {
    if ev.accuracy > st.best_accuracy || st.last_eval.is_none() {
        st.best_accuracy = ev.accuracy;
        st.best_epoch = st.epoch + 1;
        st.best_slices = ev.slices.clone();
    }
    for &threshold in thresholds {
        if ev.accuracy >= threshold && !st.solved.iter().any(|s| s.threshold == threshold) {
            st.solved.push(Solved {
                threshold,
                accuracy: ev.accuracy,
                step: st.step,
                examples: st.examples,
                tokens: st.tokens,
                wall_time_s: st.wall_time_s,
                train_flops: Some(st.train_flops),
            });
        }
    }
    st.metrics_bytes = metrics::append_line(
        metrics_path,
        &MetricLine::Eval { step: st.step, epoch, result: ev.clone(), elapsed_s: st.wall_time_s },
    )?;
    st.last_eval = Some(ev.clone());
    Ok(ev)
}

/// Default run directory for a config: `runs/<name or mixer>-<run id>`.
pub fn default_out_dir(cfg: &RunConfig) -> PathBuf {
    let stem = if cfg.name.is_empty() { cfg.model.mixer_name() } else { cfg.name.clone() };
    Path::new("runs").join(format!("{stem}-{}", rundir::run_id(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;
    use crate::tasks::mqar::MqarConfig;
    use crate::tasks::{Metric, Token};

    /// The trainer adds the mixers' auxiliary losses: with sigmoid_lookups' penalty at 1000 the
    /// first step's logged loss exceeds the same run's without it by about 1000·(mean gate − √L/L)
    /// per layer (gates start near 0.5, √L/L = 0.25 at L = 16).
    #[test]
    fn training_loss_includes_the_mixers_auxiliary_loss() {
        let root = std::env::temp_dir().join(format!("zoology-aux-{}", std::process::id()));
        let first_loss = |penalty: f64| {
            let task = "task = \"mqar\"\nseq_len = 16\nnum_kv_pairs = 2\n";
            let text = format!(
                "seed = 3\n[data]\nvocab_size = 32\nbatch_size = 8\n[[data.train]]\n{task}num_examples = 16\n[[data.test]]\n{task}num_examples = 8\n\
                 [model]\nd_model = 16\nn_layers = 1\nmixer = {{ name = \"sigmoid_lookups\", selection_penalty = {penalty:?} }}\n\
                 [train]\nepochs = 1\nlog_every_steps = 1\n"
            );
            let cfg = RunConfig::from_toml_str(&text, "test").unwrap();
            let out = root.join(format!("p{penalty}"));
            train(&cfg, &TrainOptions { out_dir: out.clone(), resume: false, quiet: true, label: String::new() })
                .unwrap();
            let lines = crate::train::metrics::read_lines(&out.join("metrics.jsonl")).unwrap();
            lines
                .iter()
                .find_map(|l| match l {
                    crate::train::metrics::MetricLine::Train { loss, .. } => Some(*loss),
                    _ => None,
                })
                .unwrap()
        };
        let (off, on) = (first_loss(0.0), first_loss(1000.0));
        let _ = std::fs::remove_dir_all(&root);
        assert!(on - off > 100.0 && on - off < 500.0, "penalty 1000: {on} vs 0: {off}");
    }

    #[test]
    fn sparse_head_loss_equals_full_head_loss() {
        for mixer in ["attention", "base_conv"] {
            let cfg: ModelConfig = toml::from_str(&format!(
                "d_model = 32\nmax_position_embeddings = 64\nmixer = {{ name = \"{mixer}\" }}"
            ))
            .unwrap();
            tch::manual_seed(3);
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let model = LanguageModel::new(&vs.root(), &cfg, 512, 64).unwrap();
            let seg = MqarConfig::new(64, 8, 16).generate(512, 5);
            let (x, y) = seg.to_tensors(tch::Device::Cpu);
            let (full, sparse) = crate::bench::sparse_equals_full(&model, &x, &y);
            assert!((full - sparse).abs() < 1e-5 * full.abs(), "{mixer}: full {full} vs sparse {sparse}");
            // and the two are not trivially equal: the loss is a real CE near ln(V)
            assert!(full > 1.0, "{full}");
        }
    }

    /// `evaluate` scores each segment with its task's metric and combines segments by sums:
    /// a model whose logits are fixed (every position predicts the same token) is right exactly
    /// where that token is the target, which makes every number computable by hand.
    #[test]
    fn evaluate_uses_each_segments_metric() {
        let cfg: ModelConfig = toml::from_str("d_model = 8\nn_layers = 1\nmixer = { name = \"attention\" }").unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = LanguageModel::new(&vs.root(), &cfg, 16, 8).unwrap();
        // bias the head to always predict token 3: tied embeddings, so make row 3 dominate LN_f outputs
        tch::no_grad(|| {
            for (name, t) in vs.variables() {
                if name.ends_with("embedding.weight") {
                    let _ = t.shallow_clone().fill_(0.0);
                    let _ = t.get(3).fill_(1.0);
                }
                if name.ends_with("ln_f.weight") {
                    let _ = t.shallow_clone().fill_(0.0);
                }
                if name.ends_with("ln_f.bias") {
                    let _ = t.shallow_clone().fill_(1.0);
                }
            }
        });
        let rt = Runtime::cpu();
        let seg = |targets: Vec<Vec<Token>>, metric: Metric, kv: &str| {
            let l = 8;
            let n = targets.len();
            let mut t = vec![IGNORE; n * l];
            for (i, row) in targets.iter().enumerate() {
                t[i * l..i * l + row.len()].copy_from_slice(row);
            }
            Segment {
                seq_len: l,
                n,
                inputs: vec![1; n * l],
                targets: t,
                slices: [("k".to_string(), kv.to_string())].into(),
                task: "t".into(),
                metric,
                split: crate::tasks::Split::Test,
            }
        };
        // segment A: example 0 has 1 target (3: right), example 1 has 3 (all wrong) → per-example 0.5, micro 0.25
        let a = seg(vec![vec![3], vec![5, 5, 5]], Metric::PerExample, "a");
        let data = DeviceData::new(vec![a.clone()], &rt);
        for b in [1, 2] {
            let ev = evaluate(&model, &data, b);
            assert!((ev.accuracy - 0.5).abs() < 1e-9 && (ev.accuracy_micro - 0.25).abs() < 1e-9, "batch {b}: {ev:?}");
            assert_eq!(ev.metric, "per_example_accuracy");
        }
        // the same data under MAD's macro: class 3 right (1/1), class 5 never (0/3) → 0.5; micro 0.25
        let m = seg(vec![vec![3], vec![5, 5, 5]], Metric::MadMacro { batch: 2 }, "a");
        let ev = evaluate(&model, &DeviceData::new(vec![m], &rt), 1);
        assert!((ev.accuracy - 0.5).abs() < 1e-9, "{ev:?}");
        assert!((ev.metrics["mad_macro_accuracy"] - 0.5).abs() < 1e-9);
        // micro on targets [3,5,5,5] then [3]: 2 of 5; per-example would be (0.25 + 1) / 2
        let u = seg(vec![vec![3, 5, 5, 5], vec![3]], Metric::Micro, "b");
        let ev = evaluate(&model, &DeviceData::new(vec![u], &rt), 2);
        assert!(
            (ev.accuracy - 0.4).abs() < 1e-9 && (ev.metrics["per_example_accuracy"] - 0.625).abs() < 1e-9,
            "{ev:?}"
        );
        // two per-example segments combine over all examples; slices keep their own values
        let b2 = seg(vec![vec![3], vec![3], vec![3], vec![5]], Metric::PerExample, "b");
        let ev = evaluate(&model, &DeviceData::new(vec![a, b2], &rt), 3);
        assert!((ev.accuracy - (1.0 + 0.0 + 3.0) / 6.0).abs() < 1e-9, "{ev:?}");
        assert!((ev.slices["k=a"] - 0.5).abs() < 1e-9 && (ev.slices["k=b"] - 0.75).abs() < 1e-9, "{ev:?}");
        assert!(ev.loss > 0.0);
    }

    #[test]
    fn lr_schedule_warms_up_then_anneals_to_min() {
        let t = crate::config::TrainConfig { lr: 1.0, warmup_steps: 10, min_lr_ratio: 0.1, ..Default::default() };
        assert!((lr_at(&t, 0, 110, 11) - 0.1).abs() < 1e-12);
        assert!((lr_at(&t, 9, 110, 11) - 1.0).abs() < 1e-12);
        assert!((lr_at(&t, 10, 110, 11) - 1.0).abs() < 1e-12);
        assert!((lr_at(&t, 60, 110, 11) - 0.55).abs() < 1e-9);
        assert!((lr_at(&t, 110, 110, 11) - 0.1).abs() < 1e-12);
    }

    /// `cosine_per_epoch` is Zoology's schedule: the lr of every optimiser step of Zoology's
    /// own `Trainer.fit` (recorded by scripts/zoology_fixtures.py) is reproduced; the per-step
    /// cosine (our default) is not, by design (docs/DECISIONS.md).
    #[test]
    fn cosine_per_epoch_matches_zoologys_trainer_at_every_step() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/zoology/lr_schedule.json");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let (epochs, spe) = (v["epochs"].as_u64().unwrap() as usize, v["steps_per_epoch"].as_u64().unwrap() as usize);
        let lrs: Vec<f64> = v["lrs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(lrs.len(), epochs * spe);
        let t = crate::config::TrainConfig {
            lr: v["lr"].as_f64().unwrap(),
            epochs,
            schedule: Schedule::CosinePerEpoch,
            ..Default::default()
        };
        for (step, &want) in lrs.iter().enumerate() {
            let got = lr_at(&t, step, lrs.len(), spe);
            assert!((got - want).abs() <= 1e-9 * want, "step {step}: {got} vs Zoology's {want}");
        }
        let per_step = crate::config::TrainConfig { schedule: Schedule::Cosine, ..t };
        let worst = lrs
            .iter()
            .enumerate()
            .map(|(s, &w)| (lr_at(&per_step, s, lrs.len(), spe) - w).abs() / w)
            .fold(0.0, f64::max);
        assert!(worst > 0.01, "the per-step cosine should differ from Zoology's per-epoch steps ({worst})");
    }
}
