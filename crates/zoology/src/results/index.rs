//! The SQLite index of run directories: one row per run, keyed by run id (upserts, so a
//! re-index or a second writer never duplicates a row). WAL journal, `BEGIN IMMEDIATE`
//! transactions, a busy timeout and a retry loop let several processes (sweep workers, Slurm
//! tasks) write at once.

use crate::error::{io_err, Error, Result};
use crate::sweep::{run_state, RunState, SweepMeta};
use crate::train::config::RunConfig;
use crate::train::metrics::read_summary;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
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
    pub error: Option<String>,
    pub best_accuracy: Option<f64>,
    pub final_accuracy: Option<f64>,
    pub best_epoch: Option<i64>,
    pub slices: BTreeMap<String, f64>,
    pub best_slices: BTreeMap<String, f64>,
    pub num_parameters: Option<i64>,
    pub state_size: Option<i64>,
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
    /// Reads a run directory (config.toml, summary.json, sweep.json, failed.json).
    pub fn from_dir(dir: &Path) -> Result<RunRecord> {
        let cfg = RunConfig::load(&dir.join("config.toml"))?;
        let meta: Option<SweepMeta> = std::fs::read_to_string(dir.join("sweep.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
        let id = crate::sweep::grid::stable_id(&cfg);
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
        let state = run_state(dir);
        let summary = read_summary(dir).ok();
        let (status, error) = match (&state, &summary) {
            (_, Some(s)) => (s.status.clone(), None),
            (RunState::Failed(why), None) => ("failed".to_string(), Some(why.clone())),
            (other, None) => (other.word().to_string(), None),
        };
        Ok(RunRecord {
            run_id: id,
            run_dir: dir.display().to_string(),
            sweep: meta.as_ref().map(|m| m.sweep.clone()).unwrap_or_default(),
            label: meta.as_ref().map(|m| m.label.clone()).unwrap_or_else(|| cfg.name.clone()),
            preset: meta.as_ref().map(|m| m.preset.clone()).filter(|p| !p.is_empty()).unwrap_or_else(|| cfg.model.mixer_name()),
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
            stop_reason: summary.as_ref().map(|s| serde_json::to_value(s.stop_reason).unwrap().as_str().unwrap_or("").to_string()),
            error,
            best_accuracy: summary.as_ref().map(|s| s.best_accuracy),
            final_accuracy: summary.as_ref().map(|s| s.final_accuracy),
            best_epoch: summary.as_ref().map(|s| s.best_epoch as i64),
            slices: summary.as_ref().map(|s| s.slices.clone()).unwrap_or_default(),
            best_slices: summary.as_ref().map(|s| s.best_slices.clone()).unwrap_or_default(),
            num_parameters: summary.as_ref().map(|s| s.num_parameters),
            state_size: summary.as_ref().map(|s| s.state_size),
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
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY,
  run_dir TEXT NOT NULL,
  sweep TEXT, label TEXT, preset TEXT, mixer TEXT,
  d_model INTEGER, n_layers INTEGER, lr REAL, seq_len INTEGER, num_kv_pairs INTEGER, vocab_size INTEGER,
  train_seq_lens TEXT, test_seq_lens TEXT,
  hparams TEXT,
  status TEXT, stop_reason TEXT, error TEXT,
  best_accuracy REAL, final_accuracy REAL, best_epoch INTEGER,
  slices TEXT, best_slices TEXT,
  num_parameters INTEGER, state_size INTEGER, wall_time_s REAL, epochs INTEGER, steps INTEGER,
  record TEXT NOT NULL,
  updated_at REAL
);
";

pub struct Index {
    conn: Connection,
    pub path: PathBuf,
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::Other(format!("{}: sqlite: {e}", path.display()))
}

/// Retries `f` while SQLite reports the database busy (another writer), up to ~60 s.
fn retry<T>(path: &Path, mut f: impl FnMut() -> rusqlite::Result<T>) -> Result<T> {
    let mut wait = Duration::from_millis(5);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(db_err(path)(e)),
        }
    }
}

impl Index {
    pub fn open(path: &Path) -> Result<Index> {
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(io_err(p))?;
        }
        let conn = Connection::open(path).map_err(db_err(path))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_err(path))?;
        retry(path, || conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)))?;
        retry(path, || conn.execute_batch(SCHEMA))?;
        Ok(Index { conn, path: path.to_path_buf() })
    }

    /// Inserts or replaces the rows of these records, in one transaction.
    pub fn upsert_all(&self, recs: &[RunRecord]) -> Result<()> {
        retry(&self.path, || {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            let res = (|| {
                let mut st = self.conn.prepare_cached(
                    "INSERT INTO runs (run_id, run_dir, sweep, label, preset, mixer, d_model, n_layers, lr, seq_len, num_kv_pairs, vocab_size,
                       train_seq_lens, test_seq_lens, hparams, status, stop_reason, error, best_accuracy, final_accuracy, best_epoch,
                       slices, best_slices, num_parameters, state_size, wall_time_s, epochs, steps, record, updated_at)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,?29,?30)
                     ON CONFLICT(run_id) DO UPDATE SET run_dir=excluded.run_dir, sweep=excluded.sweep, label=excluded.label,
                       preset=excluded.preset, mixer=excluded.mixer, d_model=excluded.d_model, n_layers=excluded.n_layers, lr=excluded.lr,
                       seq_len=excluded.seq_len, num_kv_pairs=excluded.num_kv_pairs, vocab_size=excluded.vocab_size,
                       train_seq_lens=excluded.train_seq_lens, test_seq_lens=excluded.test_seq_lens, hparams=excluded.hparams,
                       status=excluded.status, stop_reason=excluded.stop_reason, error=excluded.error, best_accuracy=excluded.best_accuracy,
                       final_accuracy=excluded.final_accuracy, best_epoch=excluded.best_epoch, slices=excluded.slices,
                       best_slices=excluded.best_slices, num_parameters=excluded.num_parameters, state_size=excluded.state_size,
                       wall_time_s=excluded.wall_time_s, epochs=excluded.epochs, steps=excluded.steps, record=excluded.record,
                       updated_at=excluded.updated_at",
                )?;
                for r in recs {
                    let j = |v: &dyn erased::Ser| v.json();
                    st.execute(params![
                        r.run_id, r.run_dir, r.sweep, r.label, r.preset, r.mixer, r.d_model, r.n_layers, r.lr, r.seq_len, r.num_kv_pairs,
                        r.vocab_size, j(&r.train_seq_lens), j(&r.test_seq_lens), j(&r.hparams), r.status, r.stop_reason, r.error,
                        r.best_accuracy, r.final_accuracy, r.best_epoch, j(&r.slices), j(&r.best_slices), r.num_parameters,
                        r.state_size, r.wall_time_s, r.epochs, r.steps, j(r), crate::sweep::now()
                    ])?;
                }
                Ok(())
            })();
            match res {
                Ok(()) => self.conn.execute_batch("COMMIT"),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
    }

    pub fn upsert(&self, r: &RunRecord) -> Result<()> {
        self.upsert_all(std::slice::from_ref(r))
    }

    /// Deletes rows whose run directory is gone.
    pub fn prune_missing(&self) -> Result<usize> {
        let dirs: Vec<(String, String)> = retry(&self.path, || {
            let mut st = self.conn.prepare("SELECT run_id, run_dir FROM runs")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let mut n = 0;
        for (id, d) in dirs {
            if !Path::new(&d).join("config.toml").exists() {
                n += retry(&self.path, || self.conn.execute("DELETE FROM runs WHERE run_id = ?1", [&id]))?;
            }
        }
        Ok(n)
    }

    pub fn all(&self) -> Result<Vec<RunRecord>> {
        let texts: Vec<String> = retry(&self.path, || {
            let mut st = self.conn.prepare("SELECT record FROM runs ORDER BY run_dir")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        texts.iter().map(|t| serde_json::from_str(t).map_err(|e| Error::Other(format!("{}: bad record: {e}", self.path.display())))).collect()
    }

    pub fn count(&self) -> Result<i64> {
        retry(&self.path, || self.conn.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0)))
    }

    pub fn get(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let t: Option<String> = retry(&self.path, || self.conn.query_row("SELECT record FROM runs WHERE run_id = ?1", [run_id], |r| r.get(0)).optional())?;
        Ok(t.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

mod erased {
    pub trait Ser {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap()
        }
    }
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

/// Builds or refreshes `root/results.sqlite` from the run directories under `root`.
pub fn index_dir(root: &Path) -> Result<(Index, Vec<RunRecord>)> {
    let idx = Index::open(&root.join(super::INDEX_FILE))?;
    let mut recs = vec![];
    for d in find_run_dirs(root) {
        match RunRecord::from_dir(&d) {
            Ok(r) => recs.push(r),
            Err(e) => eprintln!("warning: skipping {}: {e}", d.display()),
        }
    }
    idx.upsert_all(&recs)?;
    idx.prune_missing()?;
    Ok((idx, recs))
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
            wall_time_s: Some(1.0),
            epochs: Some(1),
            steps: Some(10),
        }
    }

    #[test]
    fn upsert_replaces_by_run_id() {
        let dir = std::env::temp_dir().join(format!("zoology-idx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let idx = Index::open(&dir.join("r.sqlite")).unwrap();
        idx.upsert(&rec("a", "attention", 64, 64, 1e-3, 0.5)).unwrap();
        idx.upsert(&rec("a", "attention", 64, 64, 1e-3, 0.9)).unwrap();
        idx.upsert(&rec("b", "attention", 64, 64, 1e-2, 0.7)).unwrap();
        assert_eq!(idx.count().unwrap(), 2);
        assert_eq!(idx.get("a").unwrap().unwrap().best_accuracy, Some(0.9));
        assert_eq!(idx.all().unwrap().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_writers_lose_and_duplicate_nothing() {
        let dir = std::env::temp_dir().join(format!("zoology-idx-conc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("r.sqlite");
        Index::open(&path).unwrap();
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let idx = Index::open(&path).unwrap(); // own connection per writer
                    for i in 0..40 {
                        // every writer writes every id: upserts must not duplicate
                        idx.upsert(&rec(&format!("run{i}"), "attention", 64, 64, 1e-3, (t * 100 + i) as f64)).unwrap();
                        idx.upsert(&rec(&format!("own{t}-{i}"), "base_conv", 64, 64, 1e-3, 0.1)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let idx = Index::open(&path).unwrap();
        assert_eq!(idx.count().unwrap(), 40 + 6 * 40);
        let all = idx.all().unwrap();
        let ids: std::collections::HashSet<_> = all.iter().map(|r| r.run_id.clone()).collect();
        assert_eq!(ids.len(), all.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
