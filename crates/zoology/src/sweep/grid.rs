//! Sweep files and their expansion into resolved run configs.
//!
//! A sweep file is a run config (the base) plus a `[sweep]` table:
//!
//! ```toml
//! [sweep]
//! name = "figure2"                           # default: the file stem
//! "model.d_model" = [64, 128, 256]           # dotted key → list: one axis of the product
//! "train.lr" = [1e-4, 1e-3]
//! [[sweep.zip]]                              # lists that move together (equal lengths)
//! "data.train.0.seq_len" = [64, 128]
//! "data.train.0.num_kv_pairs" = [4, 8]
//! [sweep.mixers.attention]                   # named mixer presets: one more product axis
//! mixer = { name = "attention", num_heads = 1 }
//! "model.max_position_embeddings" = 512      # any other key: a dotted override for this preset
//! [sweep.mixers.h3]
//! mixer = { name = "h3", d_state = "${data.train.0.seq_len}" }
//! [sweep.ladder]                             # optional: smallest solving d_model only
//! axis = "model.d_model"                     # (see super::ladder)
//! threshold = 0.9
//! ```
//!
//! A string value that is exactly `"${dotted.key}"` is replaced, after all overrides, by the
//! value at that key of the resolved config (e.g. a state size equal to the sequence length).
//! Expansion order: presets (outer) × zip groups (file order) × product keys (sorted), so run
//! indices are stable for a given file. Every run is validated before anything runs; errors name
//! the run and the field.

use crate::config::{set_path, RunConfig};
use crate::error::{config_err, io_err, Error, Result};
use crate::rundir::run_id;
use std::path::Path;

/// One expanded run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub index: usize,
    pub id: String,
    /// Mixer preset name (or the mixer name when the sweep has no presets).
    pub preset: String,
    /// The values this run sets, in expansion order: (dotted key, value).
    pub point: Vec<(String, toml::Value)>,
    pub config: RunConfig,
}

impl RunSpec {
    /// Short human label: `attention d_model=64 seq_len=128 lr=0.001`.
    pub fn label(&self) -> String {
        self.label_without(None)
    }
    /// The label with the setting of one dotted key left out (a ladder's axis).
    pub fn label_without(&self, key: Option<&str>) -> String {
        let mut s = self.preset.clone();
        let mut shown: Vec<String> = vec![];
        for (k, v) in &self.point {
            if k == "mixer" || Some(k.as_str()) == key {
                continue;
            }
            let item = point_item(k, v);
            if !shown.contains(&item) {
                s.push(' ');
                s.push_str(&item);
                shown.push(item);
            }
        }
        s
    }
    /// Run directory name inside the sweep's output directory.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", sanitize(&self.preset), self.id)
    }
}

/// How a label shows one setting: `d=64`, `L=128` (a task slice's short name), `lr=0.001`, or a
/// whole task entry's name and slices.
pub fn point_item(k: &str, v: &toml::Value) -> String {
    match v {
        // a whole task entry (`"data.train.0" = [{ task = "...", ... }]`): its name and slices
        toml::Value::Table(t) if t.contains_key("task") => crate::tasks::describe_entry(t),
        _ => {
            let last = k.rsplit('.').next().unwrap_or(k);
            let short = if last == "d_model" {
                "d".to_string()
            } else {
                crate::tasks::find_slice(last).map(|s| s.short.to_string()).unwrap_or_else(|| last.to_string())
            };
            format!("{short}={}", fmt_value(v))
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

pub fn fmt_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => {
            let s = format!("{f:.3e}");
            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
            let m = if m.contains('.') { m.trim_end_matches('0').trim_end_matches('.') } else { m };
            if e == "0" {
                m.to_string()
            } else {
                format!("{m}e{e}")
            }
        }
        other => other.to_string(),
    }
}

/// `[slurm]` options of a sweep file (all optional; CLI flags override).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub gpus: Option<u32>,
    pub cpus_per_task: Option<u32>,
    pub mem: Option<String>,
    /// Array concurrency limit (the `%N` of `--array`).
    pub max_parallel: Option<u32>,
    pub account: Option<String>,
    /// Extra `#SBATCH` lines, verbatim (e.g. "--qos=short").
    #[serde(default)]
    pub extra: Vec<String>,
}

/// A parsed sweep file.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub name: String,
    pub path: std::path::PathBuf,
    pub runs: Vec<RunSpec>,
    pub slurm: SlurmOptions,
    /// `[sweep.ladder]`: climb one axis and skip the rungs above the first that solves
    /// ([`super::ladder`]).
    pub ladder: Option<super::ladder::Ladder>,
}

type Axis = Vec<Vec<(String, toml::Value)>>;

impl Sweep {
    pub fn load(path: &Path) -> Result<Sweep> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("sweep").to_string();
        let mut s = Sweep::parse(&text, &path.display().to_string(), &stem)?;
        s.path = path.to_path_buf();
        Ok(s)
    }

    /// Parses and expands sweep text; `origin` names the file in errors. Phases: the `[sweep]`
    /// table's keys become axes (zip groups, one axis per other key) and mixer presets, then
    /// every preset × point of the axes' product is resolved into a validated [`RunConfig`].
    pub fn parse(text: &str, origin: &str, default_name: &str) -> Result<Sweep> {
        let mut base: toml::Table =
            toml::from_str(text).map_err(|e| config_err(origin, format!("not valid TOML: {e}")))?;
        let sweep = match base.remove("sweep") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(config_err("sweep", "must be a table ([sweep])")),
            None => toml::Table::new(),
        };
        let slurm: SlurmOptions = match base.remove("slurm") {
            Some(v) => serde_path_to_error::deserialize(v)
                .map_err(|e| config_err(format!("slurm.{}", e.path()), e.into_inner().to_string()))?,
            None => SlurmOptions::default(),
        };
        let mut name = default_name.to_string();
        let mut axes: Vec<Axis> = vec![];
        let mut presets: Vec<Preset> = vec![];
        let mut product: Vec<(String, Vec<toml::Value>)> = vec![];
        let mut ladder = None;
        for (k, v) in sweep {
            match k.as_str() {
                "name" => {
                    name = v.as_str().ok_or_else(|| config_err("sweep.name", "must be a string"))?.to_string();
                }
                "zip" => axes.extend(zip_axes(&v)?),
                "mixers" => presets = mixer_presets(&v)?,
                "ladder" => ladder = Some(v),
                key => product.push((key.to_string(), list_of(&v, &format!("sweep.\"{key}\""))?)),
            }
        }
        crate::limits::check_path_part(&name, "sweep.name")?;
        let zips: Vec<Vec<(String, Vec<toml::Value>)>> = axes
            .iter()
            .map(|a| {
                let keys: Vec<String> =
                    a.first().map(|p| p.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
                keys.iter().enumerate().map(|(c, k)| (k.clone(), a.iter().map(|p| p[c].1.clone()).collect())).collect()
            })
            .collect();
        let ladder = ladder.map(|v| super::ladder::parse(&v, &product, &zips)).transpose()?;
        for (k, vals) in product {
            axes.push(vals.into_iter().map(|v| vec![(k.clone(), v)]).collect());
        }
        if presets.is_empty() {
            presets.push((String::new(), vec![]));
        }
        check_run_count(&presets, &axes)?;
        let runs = expand(&base, &presets, &axes, origin)?;
        Ok(Sweep { name, path: origin.into(), runs, slurm, ladder })
    }
}

/// The number of runs a grid expands to (presets × the product of the axes' lengths), counted
/// before anything is expanded; `None` when it does not fit in a `u128` (far above any limit).
pub fn run_count(presets: usize, axis_lens: &[usize]) -> Option<u128> {
    axis_lens.iter().try_fold(presets as u128, |n, &k| n.checked_mul(k as u128))
}

/// Refuses a grid of more than [`crate::limits::MAX_SWEEP_RUNS`] runs before it is expanded.
fn check_run_count(presets: &[Preset], axes: &[Axis]) -> Result<()> {
    let max = crate::limits::MAX_SWEEP_RUNS;
    let lens: Vec<usize> = axes.iter().map(|a| a.len()).collect();
    let n = run_count(presets.len(), &lens);
    if n.map_or(true, |n| n > max as u128) {
        let shown = n.map(|n| n.to_string()).unwrap_or_else(|| "more than 2^128".into());
        let mut factors: Vec<String> = lens.iter().map(|l| l.to_string()).collect();
        if presets.len() > 1 {
            factors.insert(0, format!("{} presets", presets.len()));
        }
        return Err(config_err(
            "sweep",
            format!(
                "this grid expands to {shown} runs ({}), more than the limit of {max} runs per sweep; split it into several sweep files or shorten its lists",
                factors.join(" × ")
            ),
        ));
    }
    Ok(())
}

/// A mixer preset of `[sweep.mixers.NAME]`: its name and the `key = value` settings it applies.
type Preset = (String, Vec<(String, toml::Value)>);

/// `[[sweep.zip]]` groups: each is one axis whose points set every key of the group at once.
fn zip_axes(v: &toml::Value) -> Result<Vec<Axis>> {
    let groups = v.as_array().ok_or_else(|| config_err("sweep.zip", "must be an array of tables ([[sweep.zip]])"))?;
    let mut axes = vec![];
    for (gi, g) in groups.iter().enumerate() {
        let field = format!("sweep.zip[{gi}]");
        let t = g.as_table().ok_or_else(|| config_err(&field, "must be a table of key = [values]"))?;
        if t.is_empty() {
            return Err(config_err(&field, "is empty; give at least one key = [values]"));
        }
        let mut len = None;
        let mut cols = vec![];
        for (key, vals) in t {
            let vals = list_of(vals, &format!("{field}.\"{key}\""))?;
            if let Some(n) = len {
                if n != vals.len() {
                    return Err(config_err(
                        format!("{field}.\"{key}\""),
                        format!("has {} values but other keys of this zip group have {n}; zipped lists must have equal lengths", vals.len()),
                    ));
                }
            }
            len = Some(vals.len());
            cols.push((key.clone(), vals));
        }
        let n = len.unwrap();
        axes.push((0..n).map(|i| cols.iter().map(|(k, vs)| (k.clone(), vs[i].clone())).collect()).collect());
    }
    Ok(axes)
}

/// `[sweep.mixers.NAME]` presets: each needs a `mixer = { name = … }` table.
fn mixer_presets(v: &toml::Value) -> Result<Vec<Preset>> {
    let t =
        v.as_table().ok_or_else(|| config_err("sweep.mixers", "must be a table of presets ([sweep.mixers.NAME])"))?;
    if t.is_empty() {
        return Err(config_err("sweep.mixers", "has no presets; add [sweep.mixers.NAME] tables or remove it"));
    }
    let mut presets = vec![];
    for (pname, p) in t {
        let field = format!("sweep.mixers.{pname}");
        let p = p.as_table().ok_or_else(|| config_err(&field, "must be a table"))?;
        let mut sets = vec![];
        for (key, val) in p {
            if key == "mixer" {
                if !val.is_table() {
                    return Err(config_err(format!("{field}.mixer"), "must be a table { name = \"...\", ... }"));
                }
                sets.push(("model.mixer".to_string(), val.clone()));
            } else {
                sets.push((key.clone(), val.clone()));
            }
        }
        if !sets.iter().any(|(k, _)| k == "model.mixer") {
            return Err(config_err(&field, "needs mixer = { name = \"...\", ... }"));
        }
        presets.push((pname.clone(), sets));
    }
    Ok(presets)
}

/// Every preset × point of the axes' product, as validated run configs with their ids; two
/// points that resolve to the same config are an error.
fn expand(base: &toml::Table, presets: &[Preset], axes: &[Axis], origin: &str) -> Result<Vec<RunSpec>> {
    let mut runs = vec![];
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let points: usize = axes.iter().map(|a| a.len()).product();
    for (pname, psets) in presets {
        for combo in (0..points).map(|i| point_at(axes, i)) {
            let index = runs.len();
            let mut table = base.clone();
            let mut point = vec![];
            if !pname.is_empty() {
                point.push(("mixer".to_string(), toml::Value::String(pname.clone())));
            }
            let ctx = if pname.is_empty() { format!("run {index}") } else { format!("run {index} (preset {pname})") };
            for (k, v) in psets.iter() {
                set_path(&mut table, k, v.clone()).map_err(|e| wrap(&ctx, e))?;
            }
            for (k, v) in combo {
                set_path(&mut table, &k, v.clone()).map_err(|e| wrap(&ctx, e))?;
                point.push((k, v));
            }
            resolve_refs(&mut table).map_err(|e| wrap(&ctx, e))?;
            let config = RunConfig::from_table(table).map_err(|e| wrap(&ctx, e))?;
            let id = run_id(&config);
            if let Some(prev) = seen.insert(id.clone(), index) {
                return Err(Error::Other(format!(
                    "{origin}: runs {prev} and {index} resolve to the same config (id {id}); remove the duplicate values from [sweep]"
                )));
            }
            let preset = if pname.is_empty() { config.model.mixer_name() } else { pname.clone() };
            runs.push(RunSpec { index, id, preset, point, config });
        }
    }
    Ok(runs)
}

fn wrap(ctx: &str, e: Error) -> Error {
    match e {
        Error::Config { field, msg } => Error::Config { field: format!("{ctx}: {field}"), msg },
        other => Error::Other(format!("{ctx}: {other}")),
    }
}

fn list_of(v: &toml::Value, field: &str) -> Result<Vec<toml::Value>> {
    let a = v.as_array().ok_or_else(|| config_err(field, "must be a list of values, e.g. [1, 2]"))?;
    if a.is_empty() {
        return Err(config_err(field, "is an empty list; give at least one value or remove the key"));
    }
    Ok(a.clone())
}

/// Point `i` of the axes' product (the last axis varies fastest), built alone: a grid is never
/// materialised whole.
fn point_at(axes: &[Axis], mut i: usize) -> Vec<(String, toml::Value)> {
    let mut picks = vec![0; axes.len()];
    for (k, axis) in axes.iter().enumerate().rev() {
        picks[k] = i % axis.len();
        i /= axis.len();
    }
    axes.iter().zip(picks).flat_map(|(axis, j)| axis[j].iter().cloned()).collect()
}

/// Reads a dotted path (numeric components index arrays).
pub fn get_path<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut cur = table.get(parts.next()?)?;
    for p in parts {
        cur = match cur {
            toml::Value::Table(t) => t.get(p)?,
            toml::Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Replaces every string `"${dotted.key}"` by the value at that key.
fn resolve_refs(table: &mut toml::Table) -> Result<()> {
    fn walk(v: &mut toml::Value, root: &toml::Table, path: &str) -> Result<()> {
        match v {
            toml::Value::String(s) if s.starts_with("${") && s.ends_with('}') => {
                let key = &s[2..s.len() - 1];
                let val = get_path(root, key)
                    .ok_or_else(|| config_err(path, format!("refers to {key:?}, which the config does not set")))?;
                if matches!(val, toml::Value::String(x) if x.starts_with("${")) {
                    return Err(config_err(path, "refers to another reference; refer to a plain value"));
                }
                *v = val.clone();
            }
            toml::Value::Table(t) => {
                for (k, x) in t.iter_mut() {
                    walk(x, root, &format!("{path}.{k}"))?;
                }
            }
            toml::Value::Array(a) => {
                for (i, x) in a.iter_mut().enumerate() {
                    walk(x, root, &format!("{path}.{i}"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let root = table.clone();
    for (k, v) in table.iter_mut() {
        walk(v, &root, k)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[data]
vocab_size = 256
batch_size = 16
[[data.train]]
task = "mqar"
seq_len = 32
num_kv_pairs = 4
num_examples = 10
[[data.test]]
task = "mqar"
seq_len = 32
num_kv_pairs = 4
num_examples = 10
[model]
d_model = 32
max_position_embeddings = 64
mixer = { name = "attention", num_heads = 1 }
"#;

    fn parse(extra: &str) -> Result<Sweep> {
        Sweep::parse(&format!("{BASE}\n{extra}"), "t.toml", "t")
    }

    #[test]
    fn product_zip_and_presets_expand_in_order() {
        let s = parse(
            r#"
[sweep]
"model.d_model" = [16, 32]
"train.lr" = [1e-3, 3e-3, 1e-2]
[[sweep.zip]]
"data.train.0.seq_len" = [32, 64]
"data.train.0.num_kv_pairs" = [4, 8]
"data.test.0.seq_len" = [32, 64]
[sweep.mixers.attn]
mixer = { name = "attention", num_heads = 2 }
[sweep.mixers.conv]
mixer = { name = "base_conv", kernel_size = [3, -1] }
"model.max_position_embeddings" = 0
"#,
        )
        .unwrap();
        assert_eq!(s.runs.len(), 2 * 2 * 3 * 2);
        // presets outermost, then zip, then sorted product keys
        let r0 = &s.runs[0];
        assert_eq!(r0.preset, "attn");
        assert_eq!(r0.config.model.mixer["num_heads"].as_integer(), Some(2));
        assert_eq!(r0.config.data.train[0].seq_len(), 32);
        let r6 = &s.runs[6];
        assert_eq!(r6.config.data.train[0].seq_len(), 64);
        assert_eq!(r6.config.data.test[0].seq_len(), 64);
        assert_eq!(s.runs[1].config.train.lr, 3e-3);
        assert_eq!(s.runs[3].config.model.d_model, 32);
        let conv = &s.runs[12];
        assert_eq!(conv.preset, "conv");
        assert_eq!(conv.config.model.mixer_name(), "base_conv");
        assert_eq!(conv.config.model.max_position_embeddings, 0);
        // ids are unique and stable
        let again = parse(&"[sweep]\n\"model.d_model\" = [16, 32]\n".to_string()).unwrap();
        let again2 = parse(&"[sweep]\n\"model.d_model\" = [16, 32]\n".to_string()).unwrap();
        assert_eq!(again.runs[1].id, again2.runs[1].id);
        let ids: std::collections::HashSet<_> = s.runs.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids.len(), s.runs.len());
        assert!(r0.label().starts_with("attn "), "{}", r0.label());
    }

    #[test]
    fn references_resolve_after_overrides() {
        let s = parse(
            r#"
[sweep]
"data.train.0.seq_len" = [32, 64]
[sweep.mixers.attn]
mixer = { name = "attention", num_heads = 1 }
"model.max_position_embeddings" = "${data.train.0.seq_len}"
"#,
        )
        .unwrap();
        assert_eq!(s.runs[1].config.model.max_position_embeddings, 64);
    }

    #[test]
    fn invalid_grids_name_the_run_and_field() {
        let e = parse("[sweep]\n\"model.d_model\" = []\n").unwrap_err().to_string();
        assert!(e.contains("model.d_model") && e.contains("empty"), "{e}");
        let e = parse("[sweep]\n\"model.widht\" = [1, 2]\n").unwrap_err().to_string();
        assert!(e.contains("run 0") && e.contains("widht"), "{e}");
        let e = parse("[sweep]\n\"model.mixer.num_heads\" = [1, 3]\n").unwrap_err().to_string();
        assert!(e.contains("run 1") && e.contains("model.mixer.num_heads"), "{e}");
        let e = parse("[sweep]\n\"train.lr\" = 3\n").unwrap_err().to_string();
        assert!(e.contains("train.lr") && e.contains("list"), "{e}");
        let e = parse("[[sweep.zip]]\n\"model.d_model\" = [16, 32]\n\"train.lr\" = [1e-3]\n").unwrap_err().to_string();
        assert!(e.contains("sweep.zip[0]") && e.contains("equal lengths"), "{e}");
        let e = parse("[sweep.mixers.x]\n\"model.d_model\" = 16\n").unwrap_err().to_string();
        assert!(e.contains("sweep.mixers.x") && e.contains("mixer"), "{e}");
        let e = parse("[sweep.mixers.x]\nmixer = { name = \"nope\" }\n").unwrap_err().to_string();
        assert!(e.contains("preset x") && e.contains("model.mixer.name"), "{e}");
        let e = parse("[sweep]\n\"train.lr\" = [1e-3, 1e-3]\n").unwrap_err().to_string();
        assert!(e.contains("same config"), "{e}");
        let e = parse("[sweep]\n\"model.d_model\" = [16]\n[slurm]\npartiton = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("slurm") && e.contains("partiton"), "{e}");
    }

    /// A grid is counted before it is expanded: above the limit it is refused at once with its
    /// size and the limit (10⁹ points used to abort in an allocation; 10⁶ ran for minutes).
    #[test]
    fn grids_above_the_limit_are_refused_before_expansion() {
        let list = |n: usize| format!("[{}]", (0..n).map(|i| (i + 1).to_string()).collect::<Vec<_>>().join(", "));
        let max = crate::limits::MAX_SWEEP_RUNS;
        // just above the limit: two lists whose product is max + something
        let a = 101;
        let b = max / 100;
        let t0 = std::time::Instant::now();
        let text = format!("[sweep]\n\"train.epochs\" = {}\n\"seed\" = {}\n", list(a), list(b));
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("`sweep`") && e.contains(&format!("{} runs", a * b)) && e.contains(&max.to_string()), "{e}");
        // 10^9 and astronomically many points: counted without overflow, refused as fast
        let keys: String = (0..9).map(|k| format!("\"train.solve_thresholds.{k}\" = {}\n", list(10))).collect();
        let e = parse(&format!("[sweep]\n{keys}")).unwrap_err().to_string();
        assert!(e.contains("1000000000 runs"), "{e}");
        let keys: String = (0..60).map(|k| format!("\"x{k}\" = {}\n", list(10))).collect();
        let e = parse(&format!("[sweep]\n{keys}")).unwrap_err().to_string();
        assert!(e.contains("more than 2^128"), "{e}");
        assert!(t0.elapsed().as_secs_f64() < 30.0, "refusing took {:?}", t0.elapsed());
        assert_eq!(run_count(3, &[2, 5]), Some(30));
        assert_eq!(run_count(1, &[usize::MAX, usize::MAX, usize::MAX]), None);
        // points are expanded one at a time in the same order as before
        let s = parse("[sweep]\n\"model.d_model\" = [16, 32]\n\"train.lr\" = [1e-3, 3e-3, 1e-2]\n").unwrap();
        let got: Vec<(i64, f64)> = s.runs.iter().map(|r| (r.config.model.d_model, r.config.train.lr)).collect();
        assert_eq!(got, [(16, 1e-3), (16, 3e-3), (16, 1e-2), (32, 1e-3), (32, 3e-3), (32, 1e-2)]);
    }

    /// A sweep's name is a directory (`sweeps/<name>`): names that would leave it are refused.
    #[test]
    fn sweep_names_that_are_not_one_directory_are_refused() {
        for bad in ["../../x", "/tmp/x", "a/b", "..", ".", "", "a\\b", "x\ny"] {
            let e = parse(&format!("[sweep]\nname = {bad:?}\n\"model.d_model\" = [16]\n")).unwrap_err().to_string();
            assert!(e.contains("`sweep.name`"), "{bad:?}: {e}");
        }
        let s = parse("[sweep]\nname = \"figure2.v2_b-c\"\n\"model.d_model\" = [16]\n").unwrap();
        assert_eq!(crate::sweep::default_out(&s), std::path::Path::new("sweeps/figure2.v2_b-c"));
        // a run config's name is a directory name too (`runs/<name>-<id>`)
        let text = format!("name = \"../../y\"\n{BASE}\n[sweep]\n\"model.d_model\" = [16]\n");
        let e = Sweep::parse(&text, "t.toml", "t").unwrap_err().to_string();
        assert!(e.contains(": name`") && e.contains("separator"), "{e}");
    }

    /// Mixer names a sweep file's presets use (`name = "..."` on `mixer = ...` lines).
    fn mixer_names(text: &str) -> Vec<String> {
        let mut out = vec![];
        for line in text.lines().filter(|l| l.trim_start().starts_with("mixer =")) {
            for part in line.split("name = \"").skip(1) {
                out.push(part.split('"').next().unwrap().to_string());
            }
        }
        out
    }

    #[test]
    fn shipped_sweep_configs_expand() {
        let s = Sweep::parse(crate::sweep::QUICKSTART, "configs/quickstart.toml", "quickstart").unwrap();
        assert_eq!(s.runs.len(), 12);
        assert_eq!(s.name, "quickstart");
        let known: Vec<&str> = crate::mixers::registry().iter().map(|e| e.name).collect();
        let cpu = include_str!("../../../../configs/zoology-figure2-cpu.toml");
        let cpu_mamba = include_str!("../../../../configs/zoology-figure2-cpu-mamba.toml");
        // the Mamba add-on must keep the CPU figure's base settings (and so its run ids)
        let base = |t: &'static str| &t[t.find("name = ").unwrap()..t.find("[sweep]").unwrap()];
        assert_eq!(
            base(cpu),
            base(cpu_mamba),
            "zoology-figure2-cpu-mamba.toml's base settings differ from zoology-figure2-cpu.toml's"
        );
        let files: [(&str, &str, usize); 7] = [
            ("zoology-figure2", include_str!("../../../../configs/zoology-figure2.toml"), 448),
            ("zoology-figure2-cpu", cpu, 48),
            ("zoology-figure2-cpu-mamba", cpu_mamba, 8),
            (
                "zoology-figure2-cpu-filter-init",
                include_str!("../../../../configs/zoology-figure2-cpu-filter-init.toml"),
                2,
            ),
            ("mqar-width-trend-cpu", include_str!("../../../../configs/mqar-width-trend-cpu.toml"), 24),
            ("based-figure2", include_str!("../../../../configs/based-figure2.toml"), 108),
            // 22 presets × 3 lengths × 4 widths
            ("mqar-zoo-cpu", include_str!("../../../../configs/mqar-zoo-cpu.toml"), 264),
        ];
        for (name, text, n) in files {
            let missing: Vec<String> = mixer_names(text).into_iter().filter(|m| !known.contains(&m.as_str())).collect();
            if !missing.is_empty() {
                println!("skipping configs/{name}.toml: mixers {missing:?} are not registered on this branch");
                continue;
            }
            let s = Sweep::parse(text, name, name).unwrap_or_else(|e| panic!("configs/{name}.toml: {e}"));
            assert_eq!(s.runs.len(), n, "configs/{name}.toml");
        }
    }

    /// The quickstart is documented (README, docs/results/mqar-width-trend-cpu.md) as the
    /// L <= 32, d <= 128 corner of configs/mqar-width-trend-cpu.toml: every quickstart run must be
    /// a run of that grid with the same settings, only the label differing.
    #[test]
    fn quickstart_is_a_corner_of_the_width_trend_grid() {
        let quick = Sweep::parse(crate::sweep::QUICKSTART, "configs/quickstart.toml", "quickstart").unwrap();
        let trend = Sweep::parse(
            include_str!("../../../../configs/mqar-width-trend-cpu.toml"),
            "mqar-width-trend-cpu",
            "mqar-width-trend-cpu",
        )
        .unwrap();
        let unlabelled = |r: &RunSpec| {
            let mut c = r.config.clone();
            c.name.clear();
            c
        };
        let trend_configs: Vec<(String, RunConfig)> = trend.runs.iter().map(|r| (r.label(), unlabelled(r))).collect();
        for q in &quick.runs {
            let c = unlabelled(q);
            assert!(
                trend_configs.iter().any(|(_, t)| *t == c),
                "quickstart run `{}` is not a run of mqar-width-trend-cpu.toml: its settings differ from every run there (trend runs: {:?})",
                q.label(),
                trend_configs.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>()
            );
        }
    }
}
