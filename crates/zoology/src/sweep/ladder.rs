//! Ladders: a sweep that looks for the *smallest* value of one axis that solves a task, instead
//! of training every value.
//!
//! ```toml
//! [sweep.ladder]
//! axis = "model.d_model"   # a numeric product axis of [sweep]
//! threshold = 0.9          # best test accuracy that counts as solved
//! ```
//!
//! Runs that differ only in `axis` form one ladder; its rungs are climbed in ascending order of
//! the axis value. A rung is **skipped** (never trained, no run directory written) once a lower
//! rung of its ladder has finished with `best_accuracy >= threshold`. The local backend starts
//! a rung only after the lower rungs it queued have ended, so no worker trains a rung that would
//! have been skipped; `sweep run-one` checks the same rule before it trains, so a Slurm array
//! task started after a lower rung solved skips too (tasks that run at the same time cannot).
//!
//! Nothing is recorded for a skipped run: "skipped" is recomputed from the lower rungs'
//! summaries every time, so changing the threshold, removing the ladder, or retraining a lower
//! rung changes which runs are skipped, and the sweep's run ids do not depend on the ladder.
//! The cost: the accuracy-vs-width curve of a ladder ends at its first solving width (a run that
//! would have solved at a larger width anyway is not measured).
//!
//! **Harder settings** (optional `harder = "data.train.0.seq_len"`, a numeric key of `[sweep]`,
//! product or zipped): the key along which the task gets harder. A whole ladder is skipped when
//! a ladder of the same preset at a *smaller* value of that key (every other setting equal,
//! apart from the keys zipped with it) has finished every rung without solving: if no width up
//! to the largest solves L = 32, L = 64 is not trained. A failed (diverged) rung counts as
//! finished without solving. The local backend starts a ladder's first rung only after the
//! easier ladders' runs have ended, so the rule is decided on their results. Like the rung
//! rule, nothing is recorded and everything is recomputed from the summaries.

use super::grid::{RunSpec, Sweep};
use super::run_dir;
use crate::error::{config_err, Result};
use std::path::Path;

/// `[sweep.ladder]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ladder {
    /// The dotted key whose values are the rungs (a product axis of `[sweep]`).
    pub axis: String,
    /// Best test accuracy at or above which a rung counts as solved (0: every finished rung
    /// counts, i.e. only each ladder's lowest rung trains).
    pub threshold: f64,
    /// `harder`: the key along which the task gets harder, and the keys zipped with it (itself
    /// included); `None` without it.
    pub harder: Option<(String, Vec<String>)>,
}

/// Parses `[sweep.ladder]`; `axes` are the product axes of `[sweep]` (dotted key, values) and
/// `zips` the `[[sweep.zip]]` groups (each its columns: dotted key, values).
pub fn parse(
    v: &toml::Value,
    axes: &[(String, Vec<toml::Value>)],
    zips: &[Vec<(String, Vec<toml::Value>)>],
) -> Result<Ladder> {
    let t = v.as_table().ok_or_else(|| {
        config_err("sweep.ladder", "must be a table: [sweep.ladder] axis = \"model.d_model\" threshold = 0.9")
    })?;
    for k in t.keys() {
        if k != "axis" && k != "threshold" && k != "harder" {
            return Err(config_err(
                format!("sweep.ladder.{k}"),
                "unknown key; [sweep.ladder] takes axis, threshold and harder",
            ));
        }
    }
    let axis = t
        .get("axis")
        .ok_or_else(|| {
            config_err("sweep.ladder.axis", "is missing; name a numeric [sweep] axis, e.g. \"model.d_model\"")
        })?
        .as_str()
        .ok_or_else(|| {
            config_err("sweep.ladder.axis", "must be a string naming a [sweep] axis, e.g. \"model.d_model\"")
        })?
        .to_string();
    let threshold = match t.get("threshold") {
        None => {
            return Err(config_err(
                "sweep.ladder.threshold",
                "is missing; give the accuracy that counts as solved, e.g. 0.9",
            ))
        }
        Some(toml::Value::Float(x)) => *x,
        Some(toml::Value::Integer(x)) => *x as f64,
        Some(_) => return Err(config_err("sweep.ladder.threshold", "must be a number in [0, 1], e.g. 0.9")),
    };
    if !(0.0..=1.0).contains(&threshold) {
        return Err(config_err("sweep.ladder.threshold", format!("is {threshold}; it must be in [0, 1], e.g. 0.9")));
    }
    let Some((_, vals)) = axes.iter().find(|(k, _)| *k == axis) else {
        let names: Vec<&str> = axes.iter().map(|(k, _)| k.as_str()).collect();
        return Err(config_err(
            "sweep.ladder.axis",
            format!(
                "{axis:?} is not a product axis of [sweep] (those are: {}); zip groups and presets cannot be ladders",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ),
        ));
    };
    if vals.iter().any(|v| rung_value(v).is_none()) {
        return Err(config_err(
            "sweep.ladder.axis",
            format!("{axis:?} has non-numeric values; a ladder climbs numbers"),
        ));
    }
    let harder = t.get("harder").map(|h| parse_harder(h, &axis, axes, zips)).transpose()?;
    Ok(Ladder { axis, threshold, harder })
}

/// `harder = "KEY"`: a numeric `[sweep]` key other than the ladder's axis; returns it with the
/// keys that move with it (its zip group, or itself alone).
fn parse_harder(
    h: &toml::Value,
    axis: &str,
    axes: &[(String, Vec<toml::Value>)],
    zips: &[Vec<(String, Vec<toml::Value>)>],
) -> Result<(String, Vec<String>)> {
    let field = "sweep.ladder.harder";
    let key = h
        .as_str()
        .ok_or_else(|| config_err(field, "must be a string naming a [sweep] key, e.g. \"data.train.0.seq_len\""))?;
    if key == axis {
        return Err(config_err(
            field,
            format!("{key:?} is the ladder's axis; name the key the task gets harder along"),
        ));
    }
    let groups: Vec<Vec<(String, Vec<toml::Value>)>> =
        axes.iter().map(|(k, v)| vec![(k.clone(), v.clone())]).chain(zips.iter().cloned()).collect();
    let Some(group) = groups.iter().find(|g| g.iter().any(|(k, _)| k == key)) else {
        let mut names: Vec<&str> = groups.iter().flatten().map(|(k, _)| k.as_str()).filter(|k| *k != axis).collect();
        names.sort();
        return Err(config_err(
            field,
            format!(
                "{key:?} is not a [sweep] key (those are: {})",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ),
        ));
    };
    let (_, vals) = group.iter().find(|(k, _)| k == key).expect("found above");
    if vals.iter().any(|v| rung_value(v).is_none()) {
        return Err(config_err(field, format!("{key:?} has non-numeric values; harder needs numbers")));
    }
    Ok((key.to_string(), group.iter().map(|(k, _)| k.clone()).collect()))
}

fn rung_value(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    }
}

impl Ladder {
    /// The run's position: (its ladder's key, its rung value).
    fn place(&self, r: &RunSpec) -> (String, f64) {
        let mut key = r.preset.clone();
        let mut rung = f64::NAN;
        for (k, v) in &r.point {
            if *k == self.axis {
                rung = rung_value(v).unwrap_or(f64::NAN);
            } else {
                key.push_str(&format!("\u{1f}{k}={v}"));
            }
        }
        (key, rung)
    }

    /// With `harder`: the run's setting apart from the ladder's axis and the keys that move
    /// with `harder` (its preset included), and its value of `harder`.
    fn harder_place(&self, r: &RunSpec) -> Option<(String, f64)> {
        let (hk, tied) = self.harder.as_ref()?;
        let mut key = r.preset.clone();
        let mut value = f64::NAN;
        for (k, v) in &r.point {
            if k == hk {
                value = rung_value(v).unwrap_or(f64::NAN);
            }
            if *k != self.axis && !tied.contains(k) {
                key.push_str(&format!("\u{1f}{k}={v}"));
            }
        }
        Some((key, value))
    }
}

impl Sweep {
    /// The runs below run `i` on its ladder (empty without a ladder), lowest first.
    pub fn rungs_below(&self, i: usize) -> Vec<usize> {
        let Some(l) = &self.ladder else { return vec![] };
        let (key, rung) = l.place(&self.runs[i]);
        let mut below: Vec<(f64, usize)> = self
            .runs
            .iter()
            .filter_map(|r| {
                let (k, v) = l.place(r);
                (k == key && v < rung).then_some((v, r.index))
            })
            .collect();
        below.sort_by(|a, b| a.0.total_cmp(&b.0));
        below.into_iter().map(|x| x.1).collect()
    }

    /// `queue` (run indices) reordered **breadth-first**: every preset at the first setting of
    /// the sweep's other axes (the ladder's axis aside), then every preset at the next setting,
    /// and so on; index order within. A partial grid is then a complete table at its first
    /// settings (the short lengths of a width ladder) instead of a complete first mixer. Rungs
    /// still train lowest first: the local runner starts a rung only when the ones below it are
    /// done.
    pub fn breadth_first(&self, queue: &[usize]) -> Vec<usize> {
        let axis = self.ladder.as_ref().map(|l| l.axis.as_str());
        let setting = |r: &RunSpec| {
            r.point
                .iter()
                .filter(|(k, _)| k != "mixer" && Some(k.as_str()) != axis)
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\u{1f}")
        };
        let (mut settings, mut presets): (Vec<String>, Vec<&str>) = (vec![], vec![]);
        for r in &self.runs {
            let s = setting(r);
            if !settings.contains(&s) {
                settings.push(s);
            }
            if !presets.contains(&r.preset.as_str()) {
                presets.push(&r.preset);
            }
        }
        let key = |i: usize| {
            let r = &self.runs[i];
            let s = setting(r);
            (
                settings.iter().position(|x| *x == s).unwrap_or(usize::MAX),
                presets.iter().position(|p| *p == r.preset).unwrap_or(usize::MAX),
                i,
            )
        };
        let mut q = queue.to_vec();
        q.sort_by_cached_key(|&i| key(i));
        q
    }

    /// Every ladder's runs, lowest rung first; ladders in order of their first run's index
    /// (empty without a ladder).
    pub fn ladders(&self) -> Vec<Vec<usize>> {
        let Some(l) = &self.ladder else { return vec![] };
        let mut by: Vec<(String, Vec<(f64, usize)>)> = vec![];
        for r in &self.runs {
            let (key, rung) = l.place(r);
            match by.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push((rung, r.index)),
                None => by.push((key, vec![(rung, r.index)])),
            }
        }
        by.into_iter()
            .map(|(_, mut v)| {
                v.sort_by(|a, b| a.0.total_cmp(&b.0));
                v.into_iter().map(|x| x.1).collect()
            })
            .collect()
    }

    /// One line per ladder for `sweep status`: its runs' label without the axis, and where it
    /// stands: "solved at d=64 (0.961); 2 wider skipped", "climbing: d=128 running (best so far
    /// 0.526)", "not solved up to d=256 (best 0.550)", or "2 of 4 rungs done; next d=128".
    pub fn ladder_lines(&self, out: &Path) -> Vec<String> {
        let Some(l) = &self.ladder else { return vec![] };
        let item = |i: usize| {
            let r = &self.runs[i];
            r.point.iter().find(|(k, _)| *k == l.axis).map(|(k, v)| super::grid::point_item(k, v)).unwrap_or_default()
        };
        self.ladders()
            .into_iter()
            .map(|rungs| {
                let states: Vec<(usize, crate::rundir::RunState, Option<f64>)> = rungs
                    .iter()
                    .map(|&i| {
                        let dir = run_dir(out, &self.runs[i]);
                        let acc =
                            crate::rundir::read_summary(&dir).ok().filter(|s| s.is_done()).map(|s| s.best_accuracy);
                        (i, crate::rundir::run_state(&dir), acc)
                    })
                    .collect();
                let best =
                    states.iter().filter_map(|s| s.2).fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))));
                let best_txt = best.map(|b| format!("{b:.3}")).unwrap_or_else(|| "-".into());
                let harder =
                    states.iter().all(|s| !s.1.is_finished()).then(|| self.harder_skip(rungs[0], out)).flatten();
                let how = if let Some(why) = harder {
                    why
                } else if let Some(k) = states.iter().position(|s| s.2.is_some_and(|a| a >= l.threshold)) {
                    // wider rungs normally are skipped; those that ran anyway (before the ladder,
                    // or alongside it on Slurm) are listed with their accuracy
                    let wider = &states[k + 1..];
                    let ran: Vec<String> =
                        wider.iter().filter_map(|s| s.2.map(|a| format!("{} {a:.3}", item(s.0)))).collect();
                    let skipped = wider.len() - ran.len();
                    let ran = if ran.is_empty() { String::new() } else { format!("; wider ran: {}", ran.join(", ")) };
                    format!(
                        "solved at {} ({:.3}); {skipped} wider skipped{ran}",
                        item(states[k].0),
                        states[k].2.unwrap_or(0.0)
                    )
                } else if let Some(s) = states.iter().find(|s| s.1 == crate::rundir::RunState::Running) {
                    format!("climbing: {} running (best so far {best_txt})", item(s.0))
                } else if states.iter().all(|s| s.1.is_finished()) {
                    format!("not solved up to {} (best {best_txt})", item(states[states.len() - 1].0))
                } else {
                    let done = states.iter().filter(|s| s.1.is_finished()).count();
                    let next = states.iter().find(|s| !s.1.is_finished()).map(|s| item(s.0)).unwrap_or_default();
                    format!("{done} of {} rungs done; next {next}", states.len())
                };
                format!("{}: {how}", self.runs[rungs[0]].label_without(Some(&l.axis)))
            })
            .collect()
    }

    /// The runs of the same preset and setting at a smaller value of the ladder's `harder` key
    /// (every rung of those easier ladders; empty without `harder`), in index order.
    pub fn easier_runs(&self, i: usize) -> Vec<usize> {
        let Some(l) = &self.ladder else { return vec![] };
        let Some((key, h)) = l.harder_place(&self.runs[i]) else { return vec![] };
        self.runs
            .iter()
            .filter(|r| l.harder_place(r).is_some_and(|(k, v)| k == key && v < h))
            .map(|r| r.index)
            .collect()
    }

    /// The runs that must end before run `i` starts: the lower rungs of its ladder and the runs
    /// of its easier ladders ([`Sweep::easier_runs`]).
    pub fn waits_for(&self, i: usize) -> Vec<usize> {
        let mut v = self.rungs_below(i);
        v.extend(self.easier_runs(i));
        v
    }

    /// Why run `i` is skipped, when a lower rung of its ladder has finished solving: e.g.
    /// "skipped: [3] attention d=64 L=32 solved at best accuracy 0.998 (ladder threshold 0.9)";
    /// or, with `harder`, when an easier ladder finished every rung without solving.
    pub fn ladder_skip(&self, i: usize, out: &Path) -> Option<String> {
        self.rung_skip(i, out).or_else(|| self.harder_skip(i, out))
    }

    /// The `harder` rule of [`Sweep::ladder_skip`]: the first easier ladder (smallest `harder`
    /// value first) whose every rung finished (done or failed) below the threshold.
    fn harder_skip(&self, i: usize, out: &Path) -> Option<String> {
        let l = self.ladder.as_ref()?;
        let (hk, _) = l.harder.as_ref()?;
        let easier = self.easier_runs(i);
        let mut ladders: Vec<Vec<usize>> =
            self.ladders().into_iter().filter(|rungs| rungs.iter().all(|j| easier.contains(j))).collect();
        ladders.sort_by(|a, b| {
            let h = |j: usize| l.harder_place(&self.runs[j]).map_or(f64::NAN, |x| x.1);
            h(a[0]).total_cmp(&h(b[0]))
        });
        ladders.into_iter().find_map(|rungs| {
            let mut best: Option<f64> = None;
            for &j in &rungs {
                let dir = run_dir(out, &self.runs[j]);
                match crate::rundir::run_state(&dir) {
                    crate::rundir::RunState::Done => {
                        let a = crate::rundir::read_summary(&dir).ok()?.best_accuracy;
                        if a >= l.threshold {
                            return None;
                        }
                        best = Some(best.map_or(a, |b: f64| b.max(a)));
                    }
                    crate::rundir::RunState::Failed(_) => {}
                    _ => return None,
                }
            }
            let top = &self.runs[rungs[rungs.len() - 1]];
            let top_value = top.point.iter().find(|(k, _)| *k == l.axis).map(|(k, v)| super::grid::point_item(k, v));
            Some(format!(
                "skipped: {} did not solve up to {} (best {}; ladder threshold {}), and a larger {hk} is harder",
                self.runs[rungs[0]].label_without(Some(&l.axis)),
                top_value.unwrap_or_default(),
                best.map_or("-".to_string(), |b| format!("{b:.3}")),
                l.threshold
            ))
        })
    }

    /// The rung rule of [`Sweep::ladder_skip`].
    fn rung_skip(&self, i: usize, out: &Path) -> Option<String> {
        let l = self.ladder.as_ref()?;
        self.rungs_below(i).into_iter().find_map(|j| {
            let s = crate::rundir::read_summary(&run_dir(out, &self.runs[j])).ok()?;
            (s.is_done() && s.best_accuracy >= l.threshold).then(|| {
                format!(
                    "skipped: [{j}] {} solved at best accuracy {:.3} (ladder threshold {})",
                    self.runs[j].label(),
                    s.best_accuracy,
                    l.threshold
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
seed = 1
[data]
vocab_size = 32
batch_size = 8
[[data.train]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 16
[[data.test]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 8
[model]
d_model = 16
n_layers = 1
[model.mixer]
name = "base_conv"
[train]
epochs = 1
"#;

    fn sweep(extra: &str) -> Result<Sweep> {
        Sweep::parse(
            &format!("{BASE}\n[sweep]\n\"model.d_model\" = [32, 16, 64]\n\"train.lr\" = [1e-3, 3e-3]\n{extra}"),
            "t.toml",
            "t",
        )
    }

    #[test]
    fn rungs_are_the_same_point_at_smaller_axis_values() {
        let s = sweep("[sweep.ladder]\naxis = \"model.d_model\"\nthreshold = 0.9").unwrap();
        assert_eq!(s.runs.len(), 6);
        let find = |d: i64, lr: f64| {
            s.runs.iter().find(|r| r.config.model.d_model == d && r.config.train.lr == lr).unwrap().index
        };
        assert_eq!(s.rungs_below(find(64, 1e-3)), vec![find(16, 1e-3), find(32, 1e-3)]);
        assert_eq!(s.rungs_below(find(32, 3e-3)), vec![find(16, 3e-3)]);
        assert!(s.rungs_below(find(16, 3e-3)).is_empty());
        // the same file without a ladder: no rungs, and the same run ids
        let plain = sweep("").unwrap();
        assert!(plain.rungs_below(find(64, 1e-3)).is_empty());
        let ids = |s: &Sweep| s.runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&s), ids(&plain));
    }

    #[test]
    fn breadth_first_runs_every_preset_at_a_setting_before_the_next_setting() {
        let presets = "[sweep.mixers.a]\nmixer = { name = \"base_conv\" }\n[sweep.mixers.b]\nmixer = { name = \"attention\", num_heads = 1 }\n";
        let s = sweep(&format!("{presets}[sweep.ladder]\naxis = \"model.d_model\"\nthreshold = 0.9")).unwrap();
        assert_eq!(s.runs.len(), 12);
        let all: Vec<usize> = (0..12).collect();
        let order = s.breadth_first(&all);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, all, "a permutation of the queue");
        let lr = |i: usize| s.runs[i].config.train.lr;
        let preset = |i: usize| s.runs[i].preset.clone();
        // with the ladder on d: the setting is the learning rate; each preset's three widths at
        // the first lr, then both presets at the second
        let first_lr = lr(order[0]);
        assert!(order[..6].iter().all(|&i| lr(i) == first_lr), "{order:?}");
        assert!(order[..3].iter().all(|&i| preset(i) == "a") && order[3..6].iter().all(|&i| preset(i) == "b"));
        assert!(order[6..].iter().all(|&i| lr(i) != first_lr));
        // index order (preset-major) is not that
        assert!(all[..6].iter().any(|&i| lr(i) != first_lr));
        // without a ladder every (d, lr) is a setting: a, b, a, b, …
        let plain = sweep(presets).unwrap();
        let order = plain.breadth_first(&all);
        let names: Vec<String> = order.iter().map(|&i| plain.runs[i].preset.clone()).collect();
        assert_eq!(&names[..4], ["a", "b", "a", "b"]);
        // a partial queue keeps only its own runs
        assert_eq!(plain.breadth_first(&[11, 0]), vec![0, 11]);
    }

    /// A sweep over two lengths (zipped with their kv counts) and two widths, two presets.
    fn harder_sweep(ladder_extra: &str) -> Result<Sweep> {
        Sweep::parse(
            &format!(
                "{BASE}\n[sweep]\n\"model.d_model\" = [16, 32]\n[[sweep.zip]]\n\"data.train.0.seq_len\" = [24, 16]\n\"data.train.0.num_kv_pairs\" = [3, 2]\n[sweep.mixers.a]\nmixer = {{ name = \"base_conv\" }}\n[sweep.mixers.b]\nmixer = {{ name = \"attention\", num_heads = 1 }}\n[sweep.ladder]\naxis = \"model.d_model\"\nthreshold = 0.9\n{ladder_extra}"
            ),
            "t.toml",
            "t",
        )
    }

    #[test]
    fn harder_ladders_wait_for_the_easier_ladder_of_their_preset() {
        let s = harder_sweep("harder = \"data.train.0.seq_len\"").unwrap();
        let l = s.ladder.as_ref().unwrap();
        let (key, tied) = l.harder.as_ref().unwrap();
        assert_eq!(key, "data.train.0.seq_len");
        assert_eq!(tied, &["data.train.0.num_kv_pairs".to_string(), "data.train.0.seq_len".to_string()]);
        assert_eq!(s.runs.len(), 8);
        let find = |p: &str, len: i64, d: i64| {
            s.runs
                .iter()
                .find(|r| {
                    r.preset == p && r.config.data.train[0].seq_len() == len as usize && r.config.model.d_model == d
                })
                .unwrap()
                .index
        };
        // the L = 24 runs of preset a wait for both rungs of a's L = 16 ladder, not for b's
        let mut want = vec![find("a", 16, 16), find("a", 16, 32)];
        want.sort();
        assert_eq!(s.easier_runs(find("a", 24, 16)), want);
        assert_eq!(s.easier_runs(find("a", 24, 32)), want);
        assert_eq!(s.waits_for(find("a", 24, 32)), [vec![find("a", 24, 16)], want].concat());
        assert!(s.easier_runs(find("a", 16, 32)).is_empty());
        assert!(s.easier_runs(find("b", 16, 16)).is_empty());
        // with nothing run, nothing is skipped
        let out = std::env::temp_dir().join("zoology-harder-nothing-run");
        assert_eq!(s.ladder_skip(find("a", 24, 16), &out), None);
        // without `harder`: no easier runs, the same run ids
        let plain = harder_sweep("").unwrap();
        assert!(plain.easier_runs(find("a", 24, 16)).is_empty());
        let ids = |s: &Sweep| s.runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&s), ids(&plain));
    }

    #[test]
    fn bad_harder_keys_name_the_field() {
        for (extra, says) in [
            ("harder = \"model.d_model\"", "is the ladder's axis"),
            ("harder = \"data.test.0.seq_len\"", "not a [sweep] key"),
            ("harder = 3", "must be a string"),
        ] {
            let err = harder_sweep(extra).unwrap_err().to_string();
            assert!(err.contains("sweep.ladder.harder") && err.contains(says), "{extra}: {err}");
        }
        let err = sweep("[sweep.ladder]\naxis = \"model.d_model\"\nthreshold = 0.9\nharder = \"train.lr\"\n")
            .map(|_| ())
            .err();
        assert!(err.is_none(), "a product axis is a valid harder key: {err:?}");
    }

    #[test]
    fn bad_ladders_name_the_field() {
        for (extra, field, says) in [
            ("[sweep.ladder]\naxis = \"model.n_layers\"\nthreshold = 0.9", "sweep.ladder.axis", "not a product axis"),
            ("[sweep.ladder]\naxis = \"model.d_model\"\nthreshold = 1.5", "sweep.ladder.threshold", "[0, 1]"),
            ("[sweep.ladder]\naxis = \"model.d_model\"\nthreshold = -0.1", "sweep.ladder.threshold", "[0, 1]"),
            ("[sweep.ladder]\naxis = \"model.d_model\"\nthreshold = \"high\"", "sweep.ladder.threshold", "a number"),
            ("[sweep.ladder]\naxis = \"model.d_model\"", "sweep.ladder.threshold", "missing"),
            ("[sweep.ladder]\nthreshold = 0.9", "sweep.ladder.axis", "missing"),
            ("[sweep.ladder]\naxis = \"model.d_model\"\nthreshold = 0.9\nstop = 1", "sweep.ladder.stop", "unknown key"),
            ("ladder = 3", "sweep.ladder", "must be a table"),
        ] {
            let err = sweep(extra).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(says), "{extra}: {err}");
        }
    }
}
