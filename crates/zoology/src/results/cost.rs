//! The cost to solve a task (Zoology's proposal: compare architectures by what it costs to
//! *solve* a task, not by one layer's asymptotic cost). For every run, the first evaluation at
//! or above an accuracy threshold and what training had spent up to it; per task setting and
//! mixer, the cheapest run that solved it.
//!
//! A run's solve record comes from summary.json `solved` (written by the trainer, at the
//! resolution of `train.eval_every_steps`); runs recorded before that field existed get it from
//! their metrics.jsonl evaluations (one per epoch), with the examples and tokens of the epochs
//! completed — exact at epoch ends. Training FLOPs to solve = examples up to it × the model's
//! training FLOPs per sequence of its training data (mean over segments, weighted by examples).

use super::index::RunRecord;
use super::{is_result, slice_values, task_of};
use crate::config::RunConfig;
use crate::error::Result;
use crate::rundir::Solved;
use crate::train::metrics::{read_lines, MetricLine};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// What a model costs, from its config (see [`crate::flops`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelCost {
    /// Training FLOPs (forward + backward) per training sequence, averaged over the training
    /// segments in proportion to their examples.
    pub train_flops_per_example: f64,
    /// Inference FLOPs per decoded token at the longest test length.
    pub decode_flops_per_token: f64,
    pub params: i64,
}

/// The cost of one run to reach `threshold`.
#[derive(Debug, Clone, Serialize)]
pub struct RunCost {
    pub run_dir: String,
    pub solved: Option<Solved>,
    /// Where the record came from: "summary" or "metrics" (an older run's epoch evaluations).
    pub source: &'static str,
}

/// The first evaluation of a run at or above `threshold`: from summary.json `solved` when the
/// run recorded that threshold, else from its metrics.jsonl at epoch ends (`None` when it
/// never got there). `train_flops` is filled from `cost` when the record lacks it.
pub fn solve_record(r: &RunRecord, cfg: &RunConfig, threshold: f64, cost: Option<&ModelCost>) -> Result<RunCost> {
    let dir = Path::new(&r.run_dir);
    let fill = |mut s: Solved| {
        if s.train_flops.is_none() {
            s.train_flops = cost.map(|c| c.train_flops_per_example * s.examples as f64);
        }
        s
    };
    if let Ok(sum) = crate::rundir::read_summary(dir) {
        if let (Some(solved), true) = (&sum.solved, cfg.train.solve_thresholds.contains(&threshold)) {
            // the run watched this threshold: its record (or its absence) is the answer
            let s = solved.iter().find(|s| s.threshold == threshold).cloned().map(fill);
            return Ok(RunCost { run_dir: r.run_dir.clone(), solved: s, source: "summary" });
        }
    }
    let (n, toks, steps_per_epoch) = epoch_shape(cfg);
    for l in read_lines(&dir.join(crate::rundir::METRICS))? {
        if let MetricLine::Eval { step, epoch, result, elapsed_s } = l {
            // only epoch-end evaluations give exact counts
            if result.accuracy >= threshold && step == epoch * steps_per_epoch {
                let s = Solved {
                    threshold,
                    accuracy: result.accuracy,
                    step,
                    examples: epoch as u64 * n,
                    tokens: epoch as u64 * toks,
                    wall_time_s: elapsed_s,
                    train_flops: None,
                };
                return Ok(RunCost { run_dir: r.run_dir.clone(), solved: Some(fill(s)), source: "metrics" });
            }
        }
    }
    Ok(RunCost { run_dir: r.run_dir.clone(), solved: None, source: "metrics" })
}

/// One task setting and mixer: the cheapest run that solved it, or the best that did not.
#[derive(Debug, Clone, Serialize)]
pub struct CostRow {
    pub preset: String,
    pub mixer: String,
    pub task: String,
    pub seq_len: i64,
    /// The task's other slices (key, value).
    pub slices: Vec<(String, String)>,
    pub threshold: f64,
    /// Runs in the group, and how many of them solved it.
    pub runs: usize,
    pub solved_runs: usize,
    /// The cheapest solving run (least training FLOPs to solve; steps when FLOPs are unknown).
    pub d_model: Option<i64>,
    pub lr: Option<f64>,
    pub step: Option<usize>,
    pub examples: Option<u64>,
    pub train_flops: Option<f64>,
    pub decode_flops_per_token: Option<f64>,
    pub state_size: Option<i64>,
    pub params: Option<i64>,
    pub run_dir: Option<String>,
    /// The best accuracy any run of the group reached (what an unsolved row shows).
    pub best_accuracy: f64,
}

/// The cost table: one row per (task setting, mixer) — runs grouped by preset, task and every
/// slice, over all widths and learning rates — with the cheapest run that reached `threshold`.
/// `cost_of` gives a run's model cost from its record and config (`None` when it cannot be
/// computed); [`model_cost`] for a fresh count.
pub fn cost_rows(
    recs: &[RunRecord],
    threshold: f64,
    cost_of: &dyn Fn(&RunRecord, &RunConfig) -> Option<ModelCost>,
) -> Result<Vec<CostRow>> {
    type Key = (String, String, i64, Vec<(String, String)>);
    let mut groups: BTreeMap<Key, Vec<(&RunRecord, RunCost, Option<ModelCost>)>> = BTreeMap::new();
    for r in recs.iter().filter(|r| is_result(r)) {
        let cfg = RunConfig::load(&Path::new(&r.run_dir).join(crate::rundir::CONFIG))?;
        let mc = cost_of(r, &cfg);
        let rc = solve_record(r, &cfg, threshold, mc.as_ref())?;
        let slices: Vec<(String, String)> = slice_values(r).into_iter().filter(|(k, _)| k != "seq_len").collect();
        groups.entry((r.preset.clone(), task_of(r), r.seq_len, slices)).or_default().push((r, rc, mc));
    }
    let mut rows = vec![];
    for ((preset, task, seq_len, slices), g) in groups {
        let key = |s: &Solved| s.train_flops.unwrap_or(f64::INFINITY);
        let best = g
            .iter()
            .filter_map(|(r, rc, mc)| rc.solved.as_ref().map(|s| (r, s, mc)))
            .min_by(|a, b| key(a.1).total_cmp(&key(b.1)).then(a.1.step.cmp(&b.1.step)));
        let best_accuracy = g.iter().filter_map(|(r, _, _)| r.best_accuracy).fold(f64::NEG_INFINITY, f64::max);
        let mut row = CostRow {
            preset,
            mixer: g[0].0.mixer.clone(),
            task,
            seq_len,
            slices,
            threshold,
            runs: g.len(),
            solved_runs: g.iter().filter(|x| x.1.solved.is_some()).count(),
            d_model: None,
            lr: None,
            step: None,
            examples: None,
            train_flops: None,
            decode_flops_per_token: None,
            state_size: None,
            params: None,
            run_dir: None,
            best_accuracy,
        };
        if let Some((r, s, mc)) = best {
            row.d_model = Some(r.d_model);
            // a constructed model (solved before any training) has no learning rate to show
            row.lr = (s.examples > 0).then_some(r.lr);
            row.step = Some(s.step);
            row.examples = Some(s.examples);
            row.train_flops = s.train_flops;
            row.decode_flops_per_token = mc.map(|m| m.decode_flops_per_token);
            row.state_size = r.state_size;
            row.params = mc.map(|m| m.params).or(r.num_parameters);
            row.run_dir = Some(r.run_dir.clone());
        }
        rows.push(row);
    }
    rows.sort_by(|a, b| (&a.task, a.seq_len, &a.slices, &a.preset).cmp(&(&b.task, b.seq_len, &b.slices, &b.preset)));
    Ok(rows)
}

/// Scientific notation with three significant digits ("1.23e12"), "-" for none.
pub fn sci(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.2e}"),
        _ => "-".into(),
    }
}

/// The cost table for the terminal / CSV.
pub fn cost_table(rows: &[CostRow]) -> Vec<Vec<String>> {
    let mut t = vec![[
        "task",
        "seq_len",
        "slices",
        "mixer",
        "solved",
        "d_model",
        "lr",
        "step",
        "train FLOPs to solve",
        "decode FLOPs/token",
        "state",
        "params",
        "best acc",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for r in rows {
        let sl = r.slices.iter().map(|(k, v)| format!("{}={v}", super::slice_short(k))).collect::<Vec<_>>().join(" ");
        let opt = |x: Option<String>| x.unwrap_or_else(|| "-".into());
        t.push(vec![
            r.task.clone(),
            r.seq_len.to_string(),
            if sl.is_empty() { "-".into() } else { sl },
            r.preset.clone(),
            format!("{}/{}", r.solved_runs, r.runs),
            opt(r.d_model.map(|x| x.to_string())),
            opt(r.lr.map(|x| format!("{x:e}"))),
            opt(r.step.map(|x| x.to_string())),
            sci(r.train_flops),
            sci(r.decode_flops_per_token),
            opt(r.state_size.map(|x| x.to_string())),
            opt(r.params.map(|x| x.to_string())),
            format!("{:.4}", r.best_accuracy),
        ]);
    }
    t
}

/// One epoch of a run's training data: examples, tokens (inputs) and optimiser steps.
pub fn epoch_shape(cfg: &RunConfig) -> (u64, u64, usize) {
    let t = &cfg.data.train;
    let n = t.iter().map(|t| t.num_examples() as u64).sum();
    let toks = t.iter().map(|t| (t.num_examples() * t.seq_len()) as u64).sum();
    let steps = t.iter().map(|t| t.num_examples().div_ceil(cfg.data.batch_size)).sum();
    (n, toks, steps)
}

/// The model cost of a run's config, as the trainer counts it ([`crate::cost::run_flops`]:
/// regenerates the training data to count the supervised positions); `None` when the config
/// cannot be costed. Training FLOPs per example = one epoch's FLOPs / its examples.
pub fn model_cost(cfg: &RunConfig) -> Option<ModelCost> {
    let f = crate::cost::run_flops(cfg).ok()?;
    let (n, _, steps_per_epoch) = epoch_shape(cfg);
    if n == 0 {
        return None;
    }
    Some(ModelCost {
        train_flops_per_example: f.train_per_step * steps_per_epoch as f64 / n as f64,
        decode_flops_per_token: f.decode_per_token,
        params: f.params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "seed = 1\n[data]\nvocab_size = 64\nbatch_size = 32\n[[data.train]]\ntask = \"mqar\"\nseq_len = 16\nnum_kv_pairs = 2\nnum_examples = 100\n[[data.test]]\ntask = \"mqar\"\nseq_len = 16\nnum_kv_pairs = 2\nnum_examples = 10\n[model]\nd_model = 16\nmax_position_embeddings = 16\nmixer = { name = \"attention\" }\n";

    fn summary(solved: Option<serde_json::Value>, best: f64) -> serde_json::Value {
        let mut s = serde_json::json!({
            "status": "done", "stop_reason": "max_epochs", "mixer": "attention", "d_model": 16,
            "best_accuracy": best, "best_epoch": 3, "final_accuracy": best, "metric": "per_example_accuracy",
            "final_metrics": {}, "final_loss": 0.1, "slices": {}, "best_slices": {}, "num_parameters": 10,
            "state_size": 0, "state_size_seq_len": 16, "wall_time_s": 1.0, "epochs": 3, "steps": 12, "device": "cpu"
        });
        if let Some(v) = solved {
            s["solved"] = v;
        }
        s
    }

    fn eval(step: usize, epoch: usize, acc: f64) -> String {
        format!("{{\"kind\":\"eval\",\"step\":{step},\"epoch\":{epoch},\"accuracy\":{acc},\"accuracy_micro\":{acc},\"loss\":1.0,\"slices\":{{}},\"elapsed_s\":{}}}\n", epoch as f64)
    }

    /// An old run (no `solved`: from its epoch evaluations), a new run (from its summary) and a
    /// new run that never solved: the cheapest solver wins, counts are right, and a threshold
    /// the new run did not watch falls back to its evaluations.
    #[test]
    fn cost_rows_pick_the_cheapest_solver_from_either_record() {
        let root = std::env::temp_dir().join(format!("zoology-cost-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // 100 examples in batches of 32: 4 steps per epoch
        let runs = [
            (
                "old",
                format!("{CFG}[train]\nlr = 0.001\n"),
                eval(4, 1, 0.5) + &eval(8, 2, 0.95) + &eval(12, 3, 0.995),
                summary(None, 0.995),
            ),
            (
                "new",
                format!("{CFG}[train]\nlr = 0.003\n"),
                eval(4, 1, 0.92),
                summary(
                    Some(
                        serde_json::json!([{"threshold": 0.9, "accuracy": 0.92, "step": 3, "examples": 96, "tokens": 1536, "wall_time_s": 0.5, "train_flops": 5000.0}]),
                    ),
                    0.92,
                ),
            ),
            ("never", format!("{CFG}[train]\nlr = 0.01\n"), eval(4, 1, 0.2), summary(Some(serde_json::json!([])), 0.2)),
        ];
        for (name, cfg, metrics, sum) in &runs {
            let d = root.join("runs").join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("config.toml"), cfg).unwrap();
            std::fs::write(d.join("metrics.jsonl"), metrics).unwrap();
            std::fs::write(d.join("summary.json"), serde_json::to_string(sum).unwrap()).unwrap();
        }
        let (recs, _) = super::super::index::index_dir(&root).unwrap();
        assert_eq!(recs.len(), 3);
        let cost = |_: &RunRecord, _: &RunConfig| {
            Some(ModelCost { train_flops_per_example: 10.0, decode_flops_per_token: 7.0, params: 99 })
        };
        let rows = cost_rows(&recs, 0.9, &cost).unwrap();
        assert_eq!(rows.len(), 1, "one task setting and mixer: {rows:?}");
        let r = &rows[0];
        assert_eq!((r.runs, r.solved_runs), (3, 2));
        // the old run's 2 epochs × 100 examples × 10 FLOPs = 2000 beat the new run's 5000
        assert_eq!(r.train_flops, Some(2000.0), "{r:?}");
        assert_eq!((r.step, r.examples, r.lr), (Some(8), Some(200), Some(0.001)));
        assert_eq!((r.decode_flops_per_token, r.params), (Some(7.0), Some(99)));
        // at 0.99 only the old run solved (at epoch 3); the new runs watched 0.99 (the default
        // thresholds) and did not reach it
        let rows = cost_rows(&recs, 0.99, &cost).unwrap();
        assert_eq!((rows[0].solved_runs, rows[0].train_flops, rows[0].step), (1, Some(3000.0), Some(12)));
        // a threshold nobody watched: every run from its evaluations (the new run's 0.92 at its
        // epoch-1 evaluation solves 0.91)
        let rows = cost_rows(&recs, 0.91, &cost).unwrap();
        assert_eq!((rows[0].solved_runs, rows[0].train_flops), (2, Some(1000.0)), "{:?}", rows[0]);
        let t = cost_table(&rows);
        assert_eq!(t[1][4], "2/3");
        assert_eq!(t[1][8], "1.00e3");
        let _ = std::fs::remove_dir_all(&root);
    }
}
