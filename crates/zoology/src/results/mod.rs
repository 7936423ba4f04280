//! Results: the SQLite index of run directories ([`index`]) and the aggregations the paper
//! plots use: best over a set of keys (default: learning rate, as Zoology's Figure 2) and a
//! MAD-style score (mean over task settings of the best accuracy over the optimiser grid).

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
            let mut known: Vec<String> = recs.first().and_then(|r| serde_json::to_value(r).ok()).and_then(|v| v.as_object().map(|o| o.keys().filter(|k| *k != "hparams").cloned().collect())).unwrap_or_default();
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
    Ok(recs.into_iter()
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
    recs.iter().filter(|r| r.status == "failed" || r.status == "diverged").map(|r| (r, r.error.clone().unwrap_or_else(|| r.status.clone()))).collect()
}

/// One group of runs that differ only in the best-over keys, and its best run.
#[derive(Debug, Clone, Serialize)]
pub struct BestRow {
    pub preset: String,
    pub mixer: String,
    pub d_model: i64,
    pub seq_len: i64,
    pub num_kv_pairs: i64,
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
                num_kv_pairs: best.num_kv_pairs,
                state_size: best.state_size,
                best_accuracy: best.best_accuracy.unwrap(),
                best_at: drop.iter().map(|k| (k.clone(), best.hparams.get(k).cloned().unwrap_or(serde_json::Value::Null))).collect(),
                runs: g.len(),
                run_id: best.run_id.clone(),
                run_dir: best.run_dir.clone(),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.preset, a.seq_len, a.d_model, a.num_kv_pairs).cmp(&(&b.preset, b.seq_len, b.d_model, b.num_kv_pairs)));
    rows
}

/// MAD-style score of one model configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub preset: String,
    /// The model.* values of this configuration, `key=value` joined by spaces.
    pub model: String,
    /// Mean over task settings of the best accuracy over the optimiser grid.
    pub score: f64,
    pub task_settings: usize,
    pub runs: usize,
}

/// Groups runs by model (preset + `model.*` keys); within each, by task setting (`data.*`
/// keys), takes the best accuracy over everything else (the optimiser grid: lr, weight decay,
/// ...), and averages over task settings.
pub fn mad_scores(recs: &[RunRecord]) -> Vec<Score> {
    let mut models: BTreeMap<(String, String), BTreeMap<String, (f64, usize)>> = BTreeMap::new();
    for r in recs.iter().filter(|r| is_result(r)) {
        let model: Vec<String> = r.hparams.iter().filter(|(k, _)| k.starts_with("model.")).map(|(k, v)| format!("{}={v}", &k[6..])).collect();
        let task: Vec<String> = r.hparams.iter().filter(|(k, _)| k.starts_with("data.")).map(|(k, v)| format!("{k}={v}")).collect();
        let e = models.entry((r.preset.clone(), model.join(" "))).or_default().entry(task.join(";")).or_insert((f64::NEG_INFINITY, 0));
        e.0 = e.0.max(r.best_accuracy.unwrap());
        e.1 += 1;
    }
    let mut out: Vec<Score> = models
        .into_iter()
        .map(|((preset, model), tasks)| Score {
            preset,
            model,
            score: tasks.values().map(|t| t.0).sum::<f64>() / tasks.len() as f64,
            task_settings: tasks.len(),
            runs: tasks.values().map(|t| t.1).sum(),
        })
        .collect();
    out.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap());
    out
}

fn opt_f(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "-".into())
}
fn opt_i(v: Option<i64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

/// Rows of a table as strings (header first).
pub fn runs_table(recs: &[RunRecord]) -> Vec<Vec<String>> {
    let mut t = vec![["mixer", "d_model", "seq_len", "kv", "lr", "status", "best_acc", "final_acc", "params", "state", "wall_s", "epochs", "run_id"]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
    for r in recs {
        t.push(vec![
            r.preset.clone(),
            r.d_model.to_string(),
            r.seq_len.to_string(),
            r.num_kv_pairs.to_string(),
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
    }
    t
}

pub fn best_table(rows: &[BestRow]) -> Vec<Vec<String>> {
    let over: Vec<String> = rows.first().map(|r| r.best_at.keys().cloned().collect()).unwrap_or_default();
    let mut head: Vec<String> = ["mixer", "d_model", "seq_len", "kv", "best_acc"].iter().map(|s| s.to_string()).collect();
    head.extend(over.iter().map(|k| format!("best {}", k.rsplit('.').next().unwrap_or(k))));
    head.extend(["runs", "state", "run_id"].iter().map(|s| s.to_string()));
    let mut t = vec![head];
    for r in rows {
        let mut row = vec![r.preset.clone(), r.d_model.to_string(), r.seq_len.to_string(), r.num_kv_pairs.to_string(), format!("{:.4}", r.best_accuracy)];
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
    let w: Vec<usize> = (0..n).map(|c| t.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
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
    let esc = |x: &str| if x.contains([',', '"', '\n']) { format!("\"{}\"", x.replace('"', "\"\"")) } else { x.to_string() };
    t.iter().map(|r| r.iter().map(|x| esc(x)).collect::<Vec<_>>().join(",") + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::index::tests::rec;
    use super::*;

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

    #[test]
    fn mad_score_is_mean_over_tasks_of_best_over_optimiser() {
        let recs = vec![
            rec("a1", "attention", 64, 64, 1e-3, 0.5),
            rec("a2", "attention", 64, 64, 1e-2, 1.0),
            rec("a3", "attention", 64, 128, 1e-3, 0.6),
            rec("a4", "attention", 64, 128, 1e-2, 0.4),
            rec("b1", "base_conv", 64, 64, 1e-3, 0.2),
        ];
        let s = mad_scores(&recs);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].preset, "attention");
        assert!((s[0].score - 0.8).abs() < 1e-12, "{}", s[0].score); // (1.0 + 0.6) / 2
        assert_eq!((s[0].task_settings, s[0].runs), (2, 4));
        assert!((s[1].score - 0.2).abs() < 1e-12);
    }

    #[test]
    fn where_filters_by_column_or_config_key() {
        let recs = vec![rec("a1", "attention", 64, 64, 1e-3, 0.5), rec("a2", "attention", 128, 64, 1e-2, 0.9), rec("b", "base_conv", 64, 64, 1e-3, 0.1)];
        assert_eq!(filter(recs.clone(), &[("preset".into(), "attention".into())]).unwrap().len(), 2);
        assert_eq!(filter(recs.clone(), &[("d_model".into(), "64".into())]).unwrap().len(), 2);
        assert_eq!(filter(recs.clone(), &[("lr".into(), "0.001".into())]).unwrap().len(), 2);
        assert_eq!(filter(recs.clone(), &[("model.mixer.name".into(), "base_conv".into())]).unwrap().len(), 1);
        // a key no run has is an error, not an empty table
        let e = filter(recs, &[("d_modle".into(), "64".into())]).unwrap_err().to_string();
        assert!(e.contains("d_modle") && e.contains("model.d_model"), "{e}");
    }
}
