//! The SQLite index of run directories: one row per run directory, keyed by its path (two
//! directories trained from one config share a run id and keep a row each; [`duplicate_ids`]
//! names them). The run
//! directories are the truth and the index a cache of them for other tools, built by one
//! process at a time (`zoology results index`, the local sweep parent when its children have
//! ended, `sweep run --backend slurm --wait`), never by the runs themselves. It is written
//! whole into a temporary file and renamed into place, so a reader sees the old index or the new
//! one, nothing needs SQLite's locking (which does not work over NFS and the like), and two
//! builders at once each leave a complete index. Readers of a read-only results directory get
//! the records without the index being rewritten.

use crate::config::RunConfig;
use crate::error::{io_err, Error, Result};
use crate::rundir::{self, float, RunState};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One run as the index stores it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub run_dir: String,
    pub sweep: String,
    pub label: String,
    /// Preset name in a sweep (else the mixer name): the "mixer" of tables and plots.
    pub preset: String,
    pub mixer: String,
    pub d_model: i64,
    pub n_layers: i64,
    #[serde(with = "float")]
    pub lr: f64,
    /// Longest training sequence and its number of kv pairs.
    pub seq_len: i64,
    pub num_kv_pairs: i64,
    pub vocab_size: i64,
    pub train_seq_lens: Vec<i64>,
    pub test_seq_lens: Vec<i64>,
    /// The whole resolved config, flattened to dotted keys.
    pub hparams: BTreeMap<String, serde_json::Value>,
    /// done | diverged | failed | interrupted | running | pending
    pub status: String,
    pub stop_reason: Option<String>,
    /// Why a failed or diverged run did not finish.
    pub error: Option<String>,
    #[serde(with = "float::opt")]
    pub best_accuracy: Option<f64>,
    #[serde(with = "float::opt")]
    pub final_accuracy: Option<f64>,
    pub best_epoch: Option<i64>,
    #[serde(with = "float::map")]
    pub slices: BTreeMap<String, f64>,
    #[serde(with = "float::map")]
    pub best_slices: BTreeMap<String, f64>,
    pub num_parameters: Option<i64>,
    pub state_size: Option<i64>,
    /// FLOPs per training step and per decoded token (summary.json; absent before issue 10).
    #[serde(default, with = "float::opt")]
    pub flops_train_per_step: Option<f64>,
    #[serde(default, with = "float::opt")]
    pub flops_decode_per_token: Option<f64>,
    #[serde(with = "float::opt")]
    pub wall_time_s: Option<f64>,
    pub epochs: Option<i64>,
    pub steps: Option<i64>,
}

/// Flattens a JSON value to dotted keys (`data.train.0.seq_len`).
pub fn flatten(v: &serde_json::Value, prefix: &str, out: &mut BTreeMap<String, serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                flatten(x, &if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, out);
            }
        }
        serde_json::Value::Array(a) if a.iter().any(|x| x.is_object()) => {
            for (i, x) in a.iter().enumerate() {
                flatten(x, &format!("{prefix}.{i}"), out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

impl RunRecord {
    /// Reads a run directory (config.toml, summary.json, sweep.json, failed.json). The
    /// config's device is not checked (a results machine need not have the run's GPU).
    pub fn from_dir(dir: &Path) -> Result<RunRecord> {
        let path = dir.join(rundir::CONFIG);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| Error::Data(format!("{}: not valid TOML: {e}", path.display())))?;
        table.insert("device".into(), toml::Value::String("cpu".into()));
        let cfg = RunConfig::from_table(table).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        let meta = rundir::read_sweep_meta(dir);
        let id = rundir::run_id(&cfg);
        let mut c = cfg.clone();
        c.threads = 0;
        let mut hparams = BTreeMap::new();
        let mut j = serde_json::to_value(&c).map_err(|e| Error::Other(e.to_string()))?;
        if let Some(o) = j.as_object_mut() {
            o.remove("threads");
            o.remove("device");
        }
        flatten(&j, "", &mut hparams);
        let kv = hparams
            .iter()
            .filter(|(k, _)| k.starts_with("data.train.") && k.ends_with(".num_kv_pairs"))
            .filter_map(|(_, v)| v.as_i64())
            .max()
            .unwrap_or(0);
        let state = rundir::run_state(dir);
        let summary = rundir::read_summary(dir).ok();
        let (status, error) = match (&state, &summary) {
            (_, Some(s)) => (s.status.clone(), s.failure()),
            (RunState::Failed(why), None) => ("failed".to_string(), Some(why.clone())),
            (other, None) => (other.word().to_string(), None),
        };
        Ok(RunRecord {
            run_id: id,
            run_dir: dir.display().to_string(),
            sweep: meta.as_ref().map(|m| m.sweep.clone()).unwrap_or_default(),
            label: meta.as_ref().map(|m| m.label.clone()).unwrap_or_else(|| cfg.name.clone()),
            // a hand-set model (`zoology construct --out`, named construct-<mixer>) is its own
            // preset, never pooled with trained runs of the same mixer
            preset: meta.as_ref().map(|m| m.preset.clone()).filter(|p| !p.is_empty()).unwrap_or_else(|| {
                if cfg.name.starts_with("construct-") {
                    cfg.name.clone()
                } else {
                    cfg.model.mixer_name()
                }
            }),
            mixer: cfg.model.mixer_name(),
            d_model: cfg.model.d_model,
            n_layers: cfg.model.n_layers,
            lr: cfg.train.lr,
            seq_len: cfg.data.train.iter().map(|t| t.seq_len()).max().unwrap_or(0) as i64,
            num_kv_pairs: kv,
            vocab_size: cfg.data.vocab_size as i64,
            train_seq_lens: cfg.data.train.iter().map(|t| t.seq_len() as i64).collect(),
            test_seq_lens: cfg.data.test.iter().map(|t| t.seq_len() as i64).collect(),
            hparams,
            status,
            stop_reason: summary.as_ref().map(|s| s.stop_reason.word().to_string()),
            error,
            best_accuracy: summary.as_ref().map(|s| s.best_accuracy),
            final_accuracy: summary.as_ref().map(|s| s.final_accuracy),
            best_epoch: summary.as_ref().map(|s| s.best_epoch as i64),
            slices: summary.as_ref().map(|s| s.slices.clone()).unwrap_or_default(),
            best_slices: summary.as_ref().map(|s| s.best_slices.clone()).unwrap_or_default(),
            num_parameters: summary.as_ref().map(|s| s.num_parameters),
            state_size: summary.as_ref().map(|s| s.state_size),
            flops_train_per_step: summary.as_ref().and_then(|s| s.flops_train_per_step),
            flops_decode_per_token: summary.as_ref().and_then(|s| s.flops_decode_per_token),
            wall_time_s: summary.as_ref().map(|s| s.wall_time_s),
            epochs: summary.as_ref().map(|s| s.epochs as i64),
            steps: summary.as_ref().map(|s| s.steps as i64),
        })
    }

    /// A field by name for `--where` filters and grouping: a column name, or a dotted config key.
    pub fn get(&self, key: &str) -> Option<serde_json::Value> {
        let j = serde_json::to_value(self).ok()?;
        if let Some(v) = j.get(key) {
            return Some(v.clone());
        }
        let alias = match key {
            "lr" => "train.lr",
            "seed" => "seed",
            "epochs" => "train.epochs",
            k => k,
        };
        self.hparams.get(alias).cloned()
    }
}

const SCHEMA: &str = "
CREATE TABLE runs (
  run_dir TEXT PRIMARY KEY,
  run_id TEXT NOT NULL,
  sweep TEXT, label TEXT, preset TEXT, mixer TEXT,
  d_model INTEGER, n_layers INTEGER, lr REAL, seq_len INTEGER, num_kv_pairs INTEGER, vocab_size INTEGER,
  train_seq_lens TEXT, test_seq_lens TEXT,
  hparams TEXT,
  status TEXT, stop_reason TEXT, error TEXT,
  best_accuracy REAL, final_accuracy REAL, best_epoch INTEGER,
  slices TEXT, best_slices TEXT,
  num_parameters INTEGER, state_size INTEGER, flops_train_per_step REAL, flops_decode_per_token REAL, wall_time_s REAL, epochs INTEGER, steps INTEGER,
  record TEXT NOT NULL,
  updated_at REAL
);
CREATE INDEX runs_by_id ON runs (run_id);
";

/// A read-only handle on an index file.
pub struct Index {
    conn: Connection,
    pub path: PathBuf,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::Other(format!("{}: sqlite: {e}", path.display()))
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Writes a complete index of `recs` to `path`: into a temporary file next to it, then renamed
/// over it (so readers and concurrent builders never see a partial index). One row per run
/// directory: a directory listed twice keeps its last record; two directories with one run id
/// (the same config trained twice) keep one row each.
pub fn write_index(path: &Path, recs: &[RunRecord]) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("results.sqlite");
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let res = (|| -> rusqlite::Result<()> {
        let mut conn = Connection::open(&tmp)?;
        conn.execute_batch(SCHEMA)?;
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare(
                "INSERT OR REPLACE INTO runs (run_id, run_dir, sweep, label, preset, mixer, d_model, n_layers, lr, seq_len, num_kv_pairs, vocab_size,
                   train_seq_lens, test_seq_lens, hparams, status, stop_reason, error, best_accuracy, final_accuracy, best_epoch,
                   slices, best_slices, num_parameters, state_size, flops_train_per_step, flops_decode_per_token, wall_time_s, epochs, steps, record, updated_at)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,?29,?30,?31,?32)",
            )?;
            // SQLite stores NaN as NULL; the record JSON keeps the value
            let real = |x: Option<f64>| x.filter(|v| v.is_finite());
            for r in recs {
                st.execute(params![
                    r.run_id,
                    r.run_dir,
                    r.sweep,
                    r.label,
                    r.preset,
                    r.mixer,
                    r.d_model,
                    r.n_layers,
                    real(Some(r.lr)),
                    r.seq_len,
                    r.num_kv_pairs,
                    r.vocab_size,
                    json(&r.train_seq_lens),
                    json(&r.test_seq_lens),
                    json(&r.hparams),
                    r.status,
                    r.stop_reason,
                    r.error,
                    real(r.best_accuracy),
                    real(r.final_accuracy),
                    r.best_epoch,
                    json(&r.slices),
                    json(&r.best_slices),
                    r.num_parameters,
                    r.state_size,
                    real(r.flops_train_per_step),
                    real(r.flops_decode_per_token),
                    real(r.wall_time_s),
                    r.epochs,
                    r.steps,
                    json(r),
                    rundir::now()
                ])?;
            }
        }
        tx.commit()?;
        conn.close().map_err(|(_, e)| e)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(db_err(path)(e));
    }
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err(&tmp))?;
    // an index written by an older version in WAL mode may have these beside it
    for ext in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(path.with_file_name(format!("{name}{ext}")));
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

impl Index {
    /// Opens an existing index read-only.
    pub fn open(path: &Path) -> Result<Index> {
        if !path.is_file() {
            return Err(Error::Other(format!(
                "{}: no index here; build it with `zoology results index DIR`",
                path.display()
            )));
        }
        let conn =
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db_err(path))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_err(path))?;
        Ok(Index { conn, path: path.to_path_buf() })
    }

    pub fn all(&self) -> Result<Vec<RunRecord>> {
        let mut st = self.conn.prepare("SELECT record FROM runs ORDER BY run_dir").map_err(db_err(&self.path))?;
        let texts: Vec<String> =
            st.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(db_err(&self.path))?;
        texts
            .iter()
            .map(|t| {
                serde_json::from_str(t).map_err(|e| Error::Other(format!("{}: bad record: {e}", self.path.display())))
            })
            .collect()
    }

    pub fn count(&self) -> Result<i64> {
        self.conn.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0)).map_err(db_err(&self.path))
    }

    /// The record of `run_id` (the first by directory when several directories share it).
    pub fn get(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let t: Option<String> = self
            .conn
            .query_row("SELECT record FROM runs WHERE run_id = ?1 ORDER BY run_dir LIMIT 1", [run_id], |r| r.get(0))
            .optional()
            .map_err(db_err(&self.path))?;
        Ok(t.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

/// Run ids that more than one run directory carries (the same config trained twice), each with
/// its directories: the index keeps a row per directory, and readers say which are duplicates.
pub fn duplicate_ids(recs: &[RunRecord]) -> Vec<(String, Vec<String>)> {
    let mut by_id: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in recs {
        by_id.entry(&r.run_id).or_default().push(r.run_dir.clone());
    }
    by_id.into_iter().filter(|(_, d)| d.len() > 1).map(|(id, d)| (id.to_string(), d)).collect()
}

/// One line per shared run id (empty when none): "run id X is shared by N directories (the same
/// config trained twice): a, b".
pub fn describe_duplicates(recs: &[RunRecord]) -> Vec<String> {
    duplicate_ids(recs)
        .into_iter()
        .map(|(id, dirs)| {
            format!(
                "run id {id} is shared by {} run directories (the same config trained more than once): {}",
                dirs.len(),
                dirs.join(", ")
            )
        })
        .collect()
}

/// Finds run directories (those with a config.toml) under `root`, sorted.
pub fn find_run_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    fn walk(d: &Path, out: &mut Vec<PathBuf>, depth: usize) {
        if depth > 6 {
            return;
        }
        if d.join("config.toml").is_file() {
            out.push(d.to_path_buf());
            return;
        }
        if let Ok(rd) = std::fs::read_dir(d) {
            let mut subs: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
            subs.sort();
            for s in subs {
                walk(&s, out, depth + 1);
            }
        }
    }
    walk(root, &mut out, 0);
    out
}

/// The records of every run directory under `root`, sorted by directory. A missing `root` is an
/// error (not an empty result); an unreadable run directory is skipped with a warning.
pub fn records(root: &Path) -> Result<Vec<RunRecord>> {
    if !root.is_dir() {
        return Err(Error::Other(format!(
            "{}: no such results directory (give a sweep's output directory, or a directory with run directories)",
            root.display()
        )));
    }
    let mut recs = vec![];
    for d in find_run_dirs(root) {
        match RunRecord::from_dir(&d) {
            Ok(r) => recs.push(r),
            Err(e) => eprintln!("warning: skipping {}: {e}", d.display()),
        }
    }
    Ok(recs)
}

/// Builds `root/results.sqlite` from the run directories under `root` (`zoology results index`).
pub fn build_index(root: &Path) -> Result<(PathBuf, Vec<RunRecord>)> {
    let recs = records(root)?;
    let path = root.join(super::INDEX_FILE);
    write_index(&path, &recs)?;
    Ok((path, recs))
}

/// The records under `root`, refreshing the index when the directory can be written: a
/// read-only results directory still gives its records, with the reason the index was not
/// refreshed as the second value.
pub fn index_dir(root: &Path) -> Result<(Vec<RunRecord>, Option<String>)> {
    let recs = records(root)?;
    let path = root.join(super::INDEX_FILE);
    match write_index(&path, &recs) {
        Ok(()) => Ok((recs, None)),
        Err(e) => Ok((recs, Some(format!("the index {} was not refreshed: {e}", path.display())))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn rec(id: &str, preset: &str, d: i64, l: i64, lr: f64, acc: f64) -> RunRecord {
        let mut hparams = BTreeMap::new();
        hparams.insert("train.lr".into(), serde_json::json!(lr));
        hparams.insert("model.d_model".into(), serde_json::json!(d));
        hparams.insert("model.mixer.name".into(), serde_json::json!(preset));
        hparams.insert("data.train.0.seq_len".into(), serde_json::json!(l));
        hparams.insert("data.test.0.seq_len".into(), serde_json::json!(l));
        RunRecord {
            run_id: id.into(),
            run_dir: format!("/nonexistent/{id}"),
            sweep: "t".into(),
            label: id.into(),
            preset: preset.into(),
            mixer: preset.into(),
            d_model: d,
            n_layers: 2,
            lr,
            seq_len: l,
            num_kv_pairs: 4,
            vocab_size: 256,
            train_seq_lens: vec![l],
            test_seq_lens: vec![l],
            hparams,
            status: "done".into(),
            stop_reason: Some("max_epochs".into()),
            error: None,
            best_accuracy: Some(acc),
            final_accuracy: Some(acc),
            best_epoch: Some(1),
            slices: BTreeMap::new(),
            best_slices: BTreeMap::new(),
            num_parameters: Some(100),
            state_size: Some(d * l),
            flops_train_per_step: Some(1e9),
            flops_decode_per_token: Some(1e6),
            wall_time_s: Some(1.0),
            epochs: Some(1),
            steps: Some(10),
        }
    }

    #[test]
    fn index_is_rebuilt_whole_and_replaces_the_old_one() {
        let dir = std::env::temp_dir().join(format!("zoology-idx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.sqlite");
        write_index(&p, &[rec("a", "attention", 64, 64, 1e-3, 0.5), rec("b", "attention", 64, 64, 1e-2, 0.7)]).unwrap();
        assert_eq!(Index::open(&p).unwrap().count().unwrap(), 2);
        let mut nan = rec("a", "attention", 64, 64, 1e-3, 0.9);
        nan.final_accuracy = Some(f64::NAN);
        write_index(&p, &[nan.clone(), nan]).unwrap();
        let idx = Index::open(&p).unwrap();
        assert_eq!(idx.count().unwrap(), 1);
        let a = idx.get("a").unwrap().unwrap();
        assert_eq!(a.best_accuracy, Some(0.9));
        assert!(a.final_accuracy.unwrap().is_nan(), "the record keeps a NaN");
        // no temporary files are left behind
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("r.sqlite")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Two directories trained from one config have one run id: the index keeps both rows
    /// (it used to keep one, so `results index` said "2 runs indexed (1 rows)"), and says which
    /// ids are shared.
    #[test]
    fn two_directories_with_one_run_id_keep_a_row_each() {
        let dir = std::env::temp_dir().join(format!("zoology-idx-dup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.sqlite");
        let a = rec("same", "attention", 64, 64, 1e-3, 0.5);
        let mut b = a.clone();
        b.run_dir = "/nonexistent/copy-of-same".into();
        b.best_accuracy = Some(0.6);
        write_index(&p, &[a.clone(), b.clone(), rec("other", "attention", 64, 64, 1e-2, 0.7)]).unwrap();
        let idx = Index::open(&p).unwrap();
        assert_eq!(idx.count().unwrap(), 3);
        let dirs: Vec<String> = idx.all().unwrap().into_iter().map(|r| r.run_dir).collect();
        assert_eq!(dirs, ["/nonexistent/copy-of-same", "/nonexistent/other", "/nonexistent/same"]);
        assert_eq!(idx.get("same").unwrap().unwrap().run_dir, "/nonexistent/copy-of-same");
        let dups = describe_duplicates(&[a, b]);
        assert_eq!(dups.len(), 1);
        assert!(dups[0].contains("run id same is shared by 2 run directories"), "{dups:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_builders_each_leave_a_complete_index() {
        let dir = std::env::temp_dir().join(format!("zoology-idx-conc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.sqlite");
        let recs: Vec<RunRecord> = (0..60).map(|i| rec(&format!("run{i}"), "attention", 64, 64, 1e-3, 0.1)).collect();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (path, recs) = (path.clone(), recs.clone());
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        write_index(&path, &recs).unwrap();
                        // a reader in between always sees a whole index
                        assert_eq!(Index::open(&path).unwrap().count().unwrap(), 60);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(Index::open(&path).unwrap().all().unwrap().len(), 60);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
