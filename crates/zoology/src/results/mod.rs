//! Results: the SQLite index of run directories ([`index`]) and the aggregations the paper
//! plots use: best over a set of keys (default: learning rate, as Zoology's Figure 2) and the
//! MAD score (per task, the mean over its settings of the best accuracy over the optimiser
//! grid; then the mean over tasks). Task names, slice columns and their labels come from the
//! task registry (`tasks::registry`), so nothing here is specific to one task.
//!
//! Layer 9 of 11, **uses of trained models** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

pub mod cost;
pub mod index;

use index::RunRecord;
use serde::Serialize;
use std::collections::BTreeMap;

/// File name of the index inside a results directory.
pub const INDEX_FILE: &str = "results.sqlite";

/// Resolves a short key (`lr`, `d_model`, `seq_len`, ...) to the dotted config key.
pub fn config_key(k: &str) -> String {
    match k {
        "lr" => "train.lr".into(),
        "weight_decay" | "epochs" | "warmup_steps" | "beta1" | "beta2" => format!("train.{k}"),
        "d_model" | "n_layers" => format!("model.{k}"),
        other => other.into(),
    }
}

/// Keeps records whose field `k` equals `v` (`--where mixer=attention --where d_model=64`).
/// A key that no record has (not a column, short name or config key) is an error naming the
/// keys there are, not a silently empty table.
pub fn filter(recs: Vec<RunRecord>, wheres: &[(String, String)]) -> crate::Result<Vec<RunRecord>> {
    for (k, _) in wheres {
        if !recs.iter().any(|r| r.get(k).or_else(|| r.get(&config_key(k))).is_some()) {
            let mut known: Vec<String> = recs
                .first()
                .and_then(|r| serde_json::to_value(r).ok())
                .and_then(|v| v.as_object().map(|o| o.keys().filter(|k| *k != "hparams").cloned().collect()))
                .unwrap_or_default();
            let mut keys: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
            for r in &recs {
                keys.extend(r.hparams.keys().cloned());
            }
            known.extend(keys);
            return Err(crate::Error::Config {
                field: format!("--where {k}"),
                msg: format!("no run has a field {k:?}; use a column ({}), a short name (lr, d_model, n_layers, epochs, ...) or a dotted config key", known.join(", ")),
            });
        }
    }
    Ok(recs
        .into_iter()
        .filter(|r| {
            wheres.iter().all(|(k, v)| match r.get(k).or_else(|| r.get(&config_key(k))) {
                Some(serde_json::Value::String(s)) => &s == v,
                Some(serde_json::Value::Number(n)) => match (n.as_f64(), v.parse::<f64>()) {
                    (Some(a), Ok(b)) => (a - b).abs() <= 1e-12 * a.abs().max(b.abs()),
                    _ => false,
                },
                Some(other) => other.to_string() == *v,
                None => false,
            })
        })
        .collect())
}

/// Runs that count as results: finished normally with an accuracy. Failed and diverged runs
/// are listed with their reasons, never averaged or plotted as if they were results.
pub fn is_result(r: &RunRecord) -> bool {
    r.status == "done" && r.best_accuracy.map(|a| a.is_finite()).unwrap_or(false)
}

/// Failed and diverged runs with their reasons (for tables and reports).
pub fn failures(recs: &[RunRecord]) -> Vec<(&RunRecord, String)> {
    recs.iter()
        .filter(|r| r.status == "failed" || r.status == "diverged")
        .map(|r| (r, r.error.clone().unwrap_or_else(|| r.status.clone())))
        .collect()
}

/// The task(s) a run trains on (`data.train.*.task`, distinct, joined by "+").
pub fn task_of(r: &RunRecord) -> String {
    let mut tasks: Vec<String> = vec![];
    for i in 0.. {
        match r.hparams.get(&format!("data.train.{i}.task")).and_then(|v| v.as_str()) {
            Some(t) => {
                if !tasks.iter().any(|x| x == t) {
                    tasks.push(t.to_string());
                }
            }
            None => break,
        }
    }
    tasks.join("+")
}

/// The registry's slices of a run's training tasks other than `seq_len` (which has its own
/// column), in registry order: `(key, value)`, values of several segments joined by ",".
pub fn slice_values(r: &RunRecord) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![];
    for name in task_of(r).split('+') {
        let Some(e) = crate::tasks::lookup(name) else { continue };
        for s in e.slices.iter().filter(|s| s.key != "seq_len") {
            if out.iter().any(|(k, _)| k == s.key) {
                continue;
            }
            let mut vals: Vec<String> = vec![];
            if s.key == "vocab_size" {
                vals.push(r.vocab_size.to_string());
            } else {
                for i in 0.. {
                    let Some(v) = r.hparams.get(&format!("data.train.{i}.{}", s.key)) else {
                        if r.hparams.get(&format!("data.train.{i}.task")).is_none() {
                            break;
                        }
                        continue;
                    };
                    let t = match v {
                        serde_json::Value::String(x) => x.clone(),
                        other => other.to_string(),
                    };
                    if !vals.contains(&t) {
                        vals.push(t);
                    }
                }
            }
            out.push((s.key.to_string(), vals.join(",")));
        }
    }
    out
}

/// Column header of a slice key: its short label from the registry.
pub fn slice_short(key: &str) -> String {
    crate::tasks::find_slice(key).map(|s| s.short.to_string()).unwrap_or_else(|| key.to_string())
}

/// Slice keys of these rows, in first-seen order.
fn slice_keys<'a>(rows: impl Iterator<Item = &'a Vec<(String, String)>>) -> Vec<String> {
    let mut keys: Vec<String> = vec![];
    for r in rows {
        for (k, _) in r {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys
}

fn slice_cell(r: &[(String, String)], key: &str) -> String {
    r.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| "-".into())
}

/// One group of runs that differ only in the best-over keys, and its best run.
#[derive(Debug, Clone, Serialize)]
pub struct BestRow {
    pub preset: String,
    pub mixer: String,
    pub d_model: i64,
    pub seq_len: i64,
    /// Training task(s).
    pub task: String,
    /// The tasks' slices other than seq_len: (key, value).
    pub slices: Vec<(String, String)>,
    pub state_size: Option<i64>,
    pub best_accuracy: f64,
    /// Values of the best-over keys in the best run.
    pub best_at: BTreeMap<String, serde_json::Value>,
    pub runs: usize,
    pub run_id: String,
    pub run_dir: String,
}

fn group_key(r: &RunRecord, drop: &[String]) -> String {
    let mut parts: Vec<String> = vec![format!("preset={}", r.preset)];
    for (k, v) in &r.hparams {
        if k == "name" || drop.iter().any(|d| d == k) {
            continue;
        }
        parts.push(format!("{k}={v}"));
    }
    parts.join(";")
}

/// Best accuracy over `keys` (e.g. `["lr"]`): one row per group of runs that agree on every
/// other config value. Only [`is_result`] runs count (pending, failed, diverged are left out).
pub fn best_over(recs: &[RunRecord], keys: &[String]) -> Vec<BestRow> {
    let drop: Vec<String> = keys.iter().map(|k| config_key(k)).collect();
    let mut groups: BTreeMap<String, Vec<&RunRecord>> = BTreeMap::new();
    for r in recs.iter().filter(|r| is_result(r)) {
        groups.entry(group_key(r, &drop)).or_default().push(r);
    }
    let mut rows: Vec<BestRow> = groups
        .values()
        .map(|g| {
            let best = g.iter().max_by(|a, b| a.best_accuracy.partial_cmp(&b.best_accuracy).unwrap()).unwrap();
            BestRow {
                preset: best.preset.clone(),
                mixer: best.mixer.clone(),
                d_model: best.d_model,
                seq_len: best.seq_len,
                task: task_of(best),
                slices: slice_values(best),
                state_size: best.state_size,
                best_accuracy: best.best_accuracy.unwrap(),
                best_at: drop
                    .iter()
                    .map(|k| (k.clone(), best.hparams.get(k).cloned().unwrap_or(serde_json::Value::Null)))
                    .collect(),
                runs: g.len(),
                run_id: best.run_id.clone(),
                run_dir: best.run_dir.clone(),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.preset, &a.task, a.seq_len, a.d_model, &a.slices)
            .cmp(&(&b.preset, &b.task, b.seq_len, b.d_model, &b.slices))
    });
    rows
}

/// The MAD score of one model configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub preset: String,
    /// The model.* values of this configuration (backbone excluded: MAD's compression runs
    /// the same layers in its autoencoder), `key=value` joined by spaces.
    pub model: String,
    /// Mean over tasks of the per-task scores.
    pub score: f64,
    /// Task → (mean over its settings of the best accuracy over the optimiser grid, settings).
    pub tasks: BTreeMap<String, (f64, usize)>,
    pub task_settings: usize,
    pub runs: usize,
}

/// MAD's score (`mad/analysis.py: compute_model_mad_scores`): runs are grouped by model
/// (preset + `model.*` keys other than `backbone`); within a model, by task
/// (`data.train.0.task`) and task setting (all `data.*` keys); the best **final** test accuracy
/// over everything else (the optimiser grid: lr, weight decay, …) is the setting's result,
/// as MAD takes `test_acc` from the model at the end of training; a task's score is the mean
/// over its settings, the model's score the mean over tasks.
pub fn mad_scores(recs: &[RunRecord]) -> Vec<Score> {
    type Settings = BTreeMap<String, (f64, usize)>;
    let mut models: BTreeMap<(String, String), BTreeMap<String, Settings>> = BTreeMap::new();
    for r in recs.iter().filter(|r| is_result(r) && r.final_accuracy.is_some()) {
        let model: Vec<String> = r
            .hparams
            .iter()
            .filter(|(k, _)| k.starts_with("model.") && k.as_str() != "model.backbone")
            .map(|(k, v)| format!("{}={v}", &k[6..]))
            .collect();
        let setting: Vec<String> =
            r.hparams.iter().filter(|(k, _)| k.starts_with("data.")).map(|(k, v)| format!("{k}={v}")).collect();
        let e = models
            .entry((r.preset.clone(), model.join(" ")))
            .or_default()
            .entry(task_of(r))
            .or_default()
            .entry(setting.join(";"))
            .or_insert((f64::NEG_INFINITY, 0));
        e.0 = e.0.max(r.final_accuracy.unwrap());
        e.1 += 1;
    }
    let mut out: Vec<Score> = models
        .into_iter()
        .map(|((preset, model), tasks)| {
            let per: BTreeMap<String, (f64, usize)> = tasks
                .iter()
                .map(|(t, s)| (t.clone(), (s.values().map(|x| x.0).sum::<f64>() / s.len() as f64, s.len())))
                .collect();
            Score {
                preset,
                model,
                score: per.values().map(|x| x.0).sum::<f64>() / per.len() as f64,
                task_settings: per.values().map(|x| x.1).sum(),
                runs: tasks.values().flat_map(|s| s.values().map(|x| x.1)).sum(),
                tasks: per,
            }
        })
        .collect();
    out.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap());
    out
}

/// The MAD score table: mixer, one column per task (registry order), the mean, then counts and
/// the model keys.
pub fn mad_table(scores: &[Score]) -> Vec<Vec<String>> {
    let mut tasks: Vec<String> = vec![];
    for s in scores {
        for t in s.tasks.keys() {
            if !tasks.contains(t) {
                tasks.push(t.clone());
            }
        }
    }
    let order = crate::tasks::names();
    tasks.sort_by_key(|t| (order.iter().position(|n| n == t).unwrap_or(usize::MAX), t.clone()));
    let mut head = vec!["mixer".to_string()];
    head.extend(tasks.iter().cloned());
    head.extend(["score", "settings", "runs", "model"].iter().map(|s| s.to_string()));
    let mut t = vec![head];
    for s in scores {
        let mut row = vec![s.preset.clone()];
        row.extend(tasks.iter().map(|k| s.tasks.get(k).map(|x| format!("{:.3}", x.0)).unwrap_or_else(|| "-".into())));
        row.extend([format!("{:.4}", s.score), s.task_settings.to_string(), s.runs.to_string(), s.model.clone()]);
        t.push(row);
    }
    t
}

fn opt_f(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "-".into())
}
fn opt_i(v: Option<i64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

/// Rows of a table as strings (header first). Slice columns (short labels from the task
/// registry) and a task column (when the runs have several tasks) follow `seq_len`.
pub fn runs_table(recs: &[RunRecord]) -> Vec<Vec<String>> {
    let slices: Vec<Vec<(String, String)>> = recs.iter().map(slice_values).collect();
    let keys = slice_keys(slices.iter());
    let tasks: std::collections::BTreeSet<String> = recs.iter().map(task_of).collect();
    let with_task = tasks.len() > 1;
    let mut head: Vec<String> = vec!["mixer".into()];
    if with_task {
        head.push("task".into());
    }
    head.extend(["d_model".into(), "seq_len".into()]);
    head.extend(keys.iter().map(|k| slice_short(k)));
    head.extend(
        ["lr", "status", "best_acc", "final_acc", "params", "state", "wall_s", "epochs", "run_id"]
            .iter()
            .map(|s| s.to_string()),
    );
    let mut t = vec![head];
    for (r, sl) in recs.iter().zip(&slices) {
        let mut row = vec![r.preset.clone()];
        if with_task {
            row.push(task_of(r));
        }
        row.extend([r.d_model.to_string(), r.seq_len.to_string()]);
        row.extend(keys.iter().map(|k| slice_cell(sl, k)));
        row.extend([
            format!("{:.2e}", r.lr),
            r.status.clone(),
            opt_f(r.best_accuracy, 4),
            opt_f(r.final_accuracy, 4),
            opt_i(r.num_parameters),
            opt_i(r.state_size),
            opt_f(r.wall_time_s, 1),
            opt_i(r.epochs),
            r.run_id.clone(),
        ]);
        t.push(row);
    }
    t
}

pub fn best_table(rows: &[BestRow]) -> Vec<Vec<String>> {
    let over: Vec<String> = rows.first().map(|r| r.best_at.keys().cloned().collect()).unwrap_or_default();
    let keys = slice_keys(rows.iter().map(|r| &r.slices));
    let with_task = rows.iter().map(|r| &r.task).collect::<std::collections::BTreeSet<_>>().len() > 1;
    let mut head: Vec<String> = vec!["mixer".into()];
    if with_task {
        head.push("task".into());
    }
    head.extend(["d_model".into(), "seq_len".into()]);
    head.extend(keys.iter().map(|k| slice_short(k)));
    head.push("best_acc".into());
    head.extend(over.iter().map(|k| format!("best {}", k.rsplit('.').next().unwrap_or(k))));
    head.extend(["runs", "state", "run_id"].iter().map(|s| s.to_string()));
    let mut t = vec![head];
    for r in rows {
        let mut row = vec![r.preset.clone()];
        if with_task {
            row.push(r.task.clone());
        }
        row.extend([r.d_model.to_string(), r.seq_len.to_string()]);
        row.extend(keys.iter().map(|k| slice_cell(&r.slices, k)));
        row.push(format!("{:.4}", r.best_accuracy));
        row.extend(r.best_at.values().map(|v| match v.as_f64() {
            Some(f) if v.is_f64() => format!("{f:.2e}"),
            _ => v.to_string(),
        }));
        row.extend([r.runs.to_string(), opt_i(r.state_size), r.run_id.clone()]);
        t.push(row);
    }
    t
}

/// Fixed-width text rendering.
pub fn render_text(t: &[Vec<String>]) -> String {
    let n = t.iter().map(|r| r.len()).max().unwrap_or(0);
    let w: Vec<usize> =
        (0..n).map(|c| t.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut s = String::new();
    for (i, r) in t.iter().enumerate() {
        let line: Vec<String> = r.iter().enumerate().map(|(c, x)| format!("{x:<w$}", w = w[c])).collect();
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
        if i == 0 {
            s.push_str(&w.iter().map(|&k| "-".repeat(k)).collect::<Vec<_>>().join("  "));
            s.push('\n');
        }
    }
    s
}

pub fn render_csv(t: &[Vec<String>]) -> String {
    let esc =
        |x: &str| if x.contains([',', '"', '\n']) { format!("\"{}\"", x.replace('"', "\"\"")) } else { x.to_string() };
    t.iter().map(|r| r.iter().map(|x| esc(x)).collect::<Vec<_>>().join(",") + "\n").collect()
}

/// Accuracy at which a width counts as solving the task in [`trend_summary`].
pub const SOLVED: f64 = 0.9;

/// One sentence on what the accuracy-vs-width figure shows: per mixer (preset), per sequence
/// length, the smallest width whose best-over-lr accuracy reaches [`SOLVED`], and whether that
/// width grows with L (the paper's finding for gated convolutions). Built from the rows alone,
/// so it says "does not solve" when no width does.
pub fn trend_summary(rows: &[BestRow]) -> String {
    let mut by: BTreeMap<String, BTreeMap<i64, Vec<(i64, f64)>>> = BTreeMap::new();
    for r in rows {
        by.entry(r.preset.clone()).or_default().entry(r.seq_len).or_default().push((r.d_model, r.best_accuracy));
    }
    let mut parts = vec![];
    for (preset, lens) in &by {
        let mut per_len = vec![];
        let mut needed: Vec<Option<i64>> = vec![];
        for (l, widths) in lens {
            let mut w = widths.clone();
            w.sort_by_key(|x| x.0);
            let solved = w.iter().find(|x| x.1 >= SOLVED).map(|x| x.0);
            let all = w.iter().all(|x| x.1 >= SOLVED);
            needed.push(solved);
            per_len.push(match solved {
                Some(_) if all => format!("every width at L={l}"),
                Some(d) => format!("d ≥ {d} at L={l}"),
                None => format!("no width at L={l} (best {:.2})", w.iter().map(|x| x.1).fold(0.0, f64::max)),
            });
        }
        let grows = needed.windows(2).any(|p| match (p[0], p[1]) {
            (Some(a), Some(b)) => b > a,
            (Some(_), None) => true,
            _ => false,
        }) && needed.first().map_or(false, |x| x.is_some());
        let tail = if grows { " — the width it needs grows with L" } else { "" };
        parts.push(format!("{preset} solves MQAR (≥ {SOLVED}) at {}{tail}", per_len.join(", ")));
    }
    if parts.is_empty() {
        return "no finished runs to summarise".into();
    }
    format!("{}.", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::index::tests::rec;
    use super::*;

    #[test]
    fn trend_summary_names_the_width_each_mixer_needs_per_length() {
        let recs = vec![
            rec("a1", "attention", 32, 64, 1e-3, 0.95),
            rec("a2", "attention", 64, 64, 1e-3, 0.99),
            rec("a3", "attention", 32, 128, 1e-3, 0.93),
            rec("a4", "attention", 64, 128, 1e-3, 0.99),
            rec("b1", "base_conv", 32, 64, 1e-3, 0.5),
            rec("b2", "base_conv", 64, 64, 1e-3, 0.92),
            rec("b3", "base_conv", 32, 128, 1e-3, 0.2),
            rec("b4", "base_conv", 64, 128, 1e-3, 0.4),
        ];
        let s = trend_summary(&best_over(&recs, &["lr".into()]));
        assert_eq!(
            s,
            "attention solves MQAR (≥ 0.9) at every width at L=64, every width at L=128; base_conv solves MQAR (≥ 0.9) at d ≥ 64 at L=64, no width at L=128 (best 0.40) — the width it needs grows with L."
        );
        // no growth claimed when the longer length is solved at the same width
        let flat = vec![rec("b1", "base_conv", 64, 64, 1e-3, 0.95), rec("b2", "base_conv", 64, 128, 1e-3, 0.95)];
        assert!(!trend_summary(&best_over(&flat, &["lr".into()])).contains("grows"));
    }

    #[test]
    fn best_over_lr_picks_the_best_per_setting() {
        let recs = vec![
            rec("a1", "attention", 64, 64, 1e-3, 0.5),
            rec("a2", "attention", 64, 64, 1e-2, 0.9),
            rec("a3", "attention", 128, 64, 1e-3, 0.7),
            rec("b1", "base_conv", 64, 64, 1e-3, 0.3),
            rec("b2", "base_conv", 64, 64, 1e-2, 0.2),
        ];
        let rows = best_over(&recs, &["lr".into()]);
        assert_eq!(rows.len(), 3);
        let a64 = rows.iter().find(|r| r.preset == "attention" && r.d_model == 64).unwrap();
        assert_eq!(a64.best_accuracy, 0.9);
        assert_eq!(a64.runs, 2);
        assert_eq!(a64.best_at["train.lr"], serde_json::json!(1e-2));
        let b = rows.iter().find(|r| r.preset == "base_conv").unwrap();
        assert_eq!((b.best_accuracy, b.run_id.as_str()), (0.3, "b1"));
        // best over lr and d_model: one row per mixer
        let rows = best_over(&recs, &["lr".into(), "d_model".into()]);
        assert_eq!(rows.len(), 2);
        // pending runs are left out, and so are diverged ones (even with an accuracy)
        let mut p = rec("p", "attention", 64, 64, 3e-3, 0.0);
        p.best_accuracy = None;
        let mut dv = rec("d", "attention", 64, 64, 1e-1, 0.95);
        dv.status = "diverged".into();
        assert_eq!(best_over(&[p, dv.clone()], &["lr".into()]).len(), 0);
        assert_eq!(best_over(&[recs[0].clone(), dv.clone()], &["lr".into()])[0].best_accuracy, 0.5);
        assert!(mad_scores(&[dv]).is_empty());
    }

    /// MAD's aggregation by hand: per task, the mean over settings of the best final accuracy
    /// over the optimiser grid; then the mean over tasks (not over all settings).
    #[test]
    fn mad_score_is_mean_over_tasks_of_mean_over_settings_of_best_final() {
        let run = |id: &str, preset: &str, task: &str, l: i64, lr: f64, best: f64, fin: f64| {
            let mut r = rec(id, preset, 64, l, lr, best);
            r.final_accuracy = Some(fin);
            r.hparams.insert("data.train.0.task".into(), serde_json::json!(task));
            r
        };
        let mut comp = run("c1", "attention", "compression", 32, 1e-3, 0.9, 0.3);
        comp.hparams.insert("model.backbone".into(), serde_json::json!("autoencoder"));
        let recs = vec![
            // task A, setting L=64: best final over lr is 1.0 (the best-epoch 0.95 run is not it)
            run("a1", "attention", "in_context_recall", 64, 1e-3, 0.95, 0.5),
            run("a2", "attention", "in_context_recall", 64, 1e-2, 1.0, 1.0),
            // task A, setting L=128: 0.6
            run("a3", "attention", "in_context_recall", 128, 1e-3, 0.6, 0.6),
            run("a4", "attention", "in_context_recall", 128, 1e-2, 0.4, 0.4),
            // task B, one setting: 0.3 (the autoencoder backbone does not split the model)
            comp,
            run("b1", "base_conv", "in_context_recall", 64, 1e-3, 0.2, 0.2),
        ];
        let s = mad_scores(&recs);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].preset, "attention");
        // task A = (1.0 + 0.6)/2 = 0.8, task B = 0.3 → (0.8 + 0.3)/2 = 0.55, not (1.0+0.6+0.3)/3
        assert!((s[0].tasks["in_context_recall"].0 - 0.8).abs() < 1e-12, "{s:?}");
        assert!((s[0].score - 0.55).abs() < 1e-12, "{}", s[0].score);
        assert_eq!((s[0].task_settings, s[0].runs), (3, 5));
        assert!((s[1].score - 0.2).abs() < 1e-12);
        let t = mad_table(&s);
        assert_eq!(t[0], vec!["mixer", "in_context_recall", "compression", "score", "settings", "runs", "model"]);
    }

    #[test]
    fn tables_take_slice_columns_from_the_registry() {
        let mut a = rec("a1", "attention", 64, 64, 1e-3, 0.5);
        a.hparams.insert("data.train.0.task".into(), serde_json::json!("mqar"));
        a.hparams.insert("data.train.0.num_kv_pairs".into(), serde_json::json!(4));
        let t = runs_table(&[a.clone()]);
        assert_eq!(&t[0][..4], &["mixer", "d_model", "seq_len", "kv"]);
        assert_eq!(t[1][3], "4");
        let mut b = rec("b1", "attention", 64, 64, 1e-3, 0.5);
        b.hparams.insert("data.train.0.task".into(), serde_json::json!("noisy_recall"));
        b.hparams.insert("data.train.0.frac_noise".into(), serde_json::json!(0.4));
        let t = runs_table(&[a, b]);
        assert_eq!(&t[0][..7], &["mixer", "task", "d_model", "seq_len", "kv", "V", "noise"], "{:?}", t[0]);
        assert_eq!(&t[2][4..7], &["-", "256", "0.4"]);
    }

    #[test]
    fn where_filters_by_column_or_config_key() {
        let recs = vec![
            rec("a1", "attention", 64, 64, 1e-3, 0.5),
            rec("a2", "attention", 128, 64, 1e-2, 0.9),
            rec("b", "base_conv", 64, 64, 1e-3, 0.1),
        ];
        assert_eq!(filter(recs.clone(), &[("preset".into(), "attention".into())]).unwrap().len(), 2);
        assert_eq!(filter(recs.clone(), &[("d_model".into(), "64".into())]).unwrap().len(), 2);
        assert_eq!(filter(recs.clone(), &[("lr".into(), "0.001".into())]).unwrap().len(), 2);
        assert_eq!(filter(recs.clone(), &[("model.mixer.name".into(), "base_conv".into())]).unwrap().len(), 1);
        // a key no run has is an error, not an empty table
        let e = filter(recs, &[("d_modle".into(), "64".into())]).unwrap_err().to_string();
        assert!(e.contains("d_modle") && e.contains("model.d_model"), "{e}");
    }
}
