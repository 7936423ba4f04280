//! `zoology bench step`: where the time of a training step goes, per mixer. For one model (from
//! a run config, or the built-in MQAR shape) and one batch shape, the step is timed in its
//! phases as the trainer runs them — data (the batch's `index_select` onto the device),
//! forward (model and sparse-head loss), backward, optimiser (gradient norm and AdamW) — plus
//! one evaluation batch; tokens/s; the achieved GFLOP/s by the project's own FLOP count
//! ([`crate::cost`]); and that as a fraction of this machine's matmul peak in the same
//! precision, measured by a micro-benchmark in the same run ([`matmul_peak`]). Medians over
//! `iters` steps after `warmup` steps.

use crate::config::RunConfig;
use crate::device::{Precision, Runtime};
use crate::error::Result;
use crate::model::{num_parameters, LanguageModel};
use crate::tasks::Segment;
use crate::train::optim::AdamW;
use crate::train::trainer::{evaluate, sparse_head_loss, DeviceData};
use serde::Serialize;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// What one profile measured (seconds are medians per step).
#[derive(Debug, Clone, Serialize)]
pub struct StepProfile {
    pub label: String,
    pub precision: Precision,
    pub batch: i64,
    pub seq_len: i64,
    pub parameters: i64,
    pub data_s: f64,
    pub forward_s: f64,
    pub backward_s: f64,
    pub optimiser_s: f64,
    /// The whole step (the sum of the phases, each step's own).
    pub step_s: f64,
    /// One evaluation batch of the same shape (no gradients, metric included).
    pub eval_batch_s: f64,
    pub tokens_per_s: f64,
    /// Forward + backward FLOPs of the step by [`crate::cost`]'s count.
    pub flops_per_step: f64,
    pub gflops_per_s: f64,
    /// This machine's matmul peak in the same precision (GFLOP/s, same run).
    pub peak_gflops_per_s: f64,
}

impl StepProfile {
    /// Achieved over peak.
    pub fn utilisation(&self) -> f64 {
        self.gflops_per_s / self.peak_gflops_per_s
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The best GFLOP/s of a square `n × n` matmul in `precision` over a few sizes (each the median
/// of `reps` after one warm-up): what "peak" means in the utilisation column.
pub fn matmul_peak(precision: Precision, device: Device, reps: usize) -> f64 {
    let kind = match precision {
        Precision::Fp32 => Kind::Float,
        Precision::Bf16 => Kind::BFloat16,
    };
    let mut best: f64 = 0.0;
    for n in [256i64, 512, 1024, 2048] {
        let a = Tensor::randn([n, n], (kind, device));
        let b = Tensor::randn([n, n], (kind, device));
        let _ = a.matmul(&b);
        sync(device);
        let mut ts = vec![];
        for _ in 0..reps.max(1) {
            let t0 = Instant::now();
            let c = a.matmul(&b);
            sync(device);
            ts.push(t0.elapsed().as_secs_f64());
            std::hint::black_box(&c);
        }
        best = best.max(2.0 * (n * n * n) as f64 / median(ts) / 1e9);
    }
    best
}

/// Profiles the training step of `cfg`'s model on batches of `cfg.data.batch_size` sequences of
/// its first training segment, with AdamW as the trainer sets it up.
pub fn profile_step(cfg: &RunConfig, label: &str, iters: usize, warmup: usize, peak: f64) -> Result<StepProfile> {
    let rt = Runtime::new(cfg.device.resolve("device")?);
    let mut first = cfg.clone();
    first.data.train.truncate(1);
    let batch = cfg.data.batch_size.min(first.data.train[0].num_examples()).max(1);
    let (train, _) = first.generate_data();
    let data = DeviceData::new(train, &rt);
    let seg: &Segment = &data.segments[0];
    tch::manual_seed(0);
    let vs = nn::VarStore::new(rt.device);
    let model = LanguageModel::new(&vs.root(), &cfg.model, cfg.data.vocab_size as i64, cfg.max_seq_len() as i64)?;
    let t = &cfg.train;
    let mut opt = AdamW::new(
        vs.variables().into_iter().collect(),
        t.weight_decay,
        t.beta1,
        t.beta2,
        t.eps,
        t.no_decay_norms_biases,
    );
    let idx: Vec<i64> = (0..batch as i64).collect();
    let shape =
        crate::cost::step_shapes(&[seg.clone()], batch).into_iter().next().expect("a segment has at least one batch");
    let flops = crate::cost::lm_flops_of(&model, num_parameters(&vs), &[shape], seg.seq_len as i64).train_per_step;
    let precision = cfg.train.precision;
    let (mut d, mut f, mut b, mut o, mut s) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..warmup + iters {
        let t0 = Instant::now();
        let it = Tensor::from_slice(&idx).to_device(rt.device);
        let x = data.inputs[0].index_select(0, &it);
        let y = data.targets[0].index_select(0, &it);
        sync(rt.device);
        let t1 = Instant::now();
        opt.zero_grad();
        let loss = precision.autocast(rt.device, || sparse_head_loss(&model, &x, &y, true).0);
        let _ = loss.double_value(&[]);
        sync(rt.device);
        let t2 = Instant::now();
        loss.backward();
        sync(rt.device);
        let t3 = Instant::now();
        let _ = opt.clip_grad_norm(t.grad_clip);
        opt.step(1e-4);
        sync(rt.device);
        let t4 = Instant::now();
        if i >= warmup {
            d.push((t1 - t0).as_secs_f64());
            f.push((t2 - t1).as_secs_f64());
            b.push((t3 - t2).as_secs_f64());
            o.push((t4 - t3).as_secs_f64());
            s.push((t4 - t0).as_secs_f64());
        }
    }
    let eval_data = DeviceData {
        segments: vec![seg.first(batch)],
        inputs: vec![data.inputs[0].narrow(0, 0, batch as i64)],
        targets: vec![data.targets[0].narrow(0, 0, batch as i64)],
    };
    let mut e = vec![];
    for _ in 0..iters.max(1) {
        let t0 = Instant::now();
        let _ = precision.autocast(rt.device, || evaluate(&model, &eval_data, batch));
        sync(rt.device);
        e.push(t0.elapsed().as_secs_f64());
    }
    let step_s = median(s);
    Ok(StepProfile {
        label: label.to_string(),
        precision,
        batch: batch as i64,
        seq_len: seg.seq_len as i64,
        parameters: num_parameters(&vs),
        data_s: median(d),
        forward_s: median(f),
        backward_s: median(b),
        optimiser_s: median(o),
        step_s,
        eval_batch_s: median(e),
        tokens_per_s: (batch * seg.seq_len) as f64 / step_s,
        flops_per_step: flops,
        gflops_per_s: flops / step_s / 1e9,
        peak_gflops_per_s: peak,
    })
}

/// The profiles as a table (times in ms).
pub fn format_profiles(rows: &[StepProfile]) -> String {
    let mut s = format!(
        "{:<24}{:>6}{:>9}{:>9}{:>9}{:>9}{:>9}{:>10}{:>10}{:>11}{:>9}{:>9}{:>8}\n",
        "model",
        "prec",
        "step ms",
        "data",
        "fwd",
        "bwd",
        "optim",
        "eval/bat",
        "tok/s",
        "GFLOP/stp",
        "GFLOP/s",
        "peak",
        "util"
    );
    for r in rows {
        s += &format!(
            "{:<24}{:>6}{:>9.1}{:>9.1}{:>9.1}{:>9.1}{:>9.1}{:>10.1}{:>10.0}{:>11.2}{:>9.1}{:>9.0}{:>7.1}%\n",
            r.label,
            r.precision.name(),
            r.step_s * 1e3,
            r.data_s * 1e3,
            r.forward_s * 1e3,
            r.backward_s * 1e3,
            r.optimiser_s * 1e3,
            r.eval_batch_s * 1e3,
            r.tokens_per_s,
            r.flops_per_step / 1e9,
            r.gflops_per_s,
            r.peak_gflops_per_s,
            100.0 * r.utilisation()
        );
    }
    s
}
