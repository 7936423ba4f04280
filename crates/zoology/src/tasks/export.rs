//! Export of generated data for use without the trainer (`zoology data TASK … --out FILE`).
//!
//! The extension of FILE picks the format; every format holds int64 arrays `[n, L]` that numpy
//! and PyTorch load as they are:
//! - `.safetensors`: tensors `inputs` and `targets` (`safetensors.torch.load_file`,
//!   `safetensors.numpy.load_file`);
//! - `.npz`: arrays `inputs` and `targets` (`np.load(FILE)["inputs"]`);
//! - `.npy`: one array `[2, n, L]`, `[0]` the inputs and `[1]` the targets (`np.load(FILE)`).
//!
//! Next to it, `<stem>.json` holds the resolved task config, the vocabulary size, the seed, the
//! split, the slices, the metric and the layout, so the data can be regenerated and read.

use super::{Segment, Split, TaskConfig, IGNORE};
use crate::error::{config_err, io_err, Error, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    Npz,
    Npy,
}

impl Format {
    /// The format of a path, from its extension; `flag` names the option in errors.
    pub fn of(path: &Path, flag: &str) -> Result<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Ok(Format::Safetensors),
            Some("npz") => Ok(Format::Npz),
            Some("npy") => Ok(Format::Npy),
            other => Err(config_err(
                flag,
                format!(
                    "{} has extension {:?}; use .safetensors, .npz or .npy (a JSON sidecar is written next to it)",
                    path.display(),
                    other.unwrap_or("")
                ),
            )),
        }
    }
}

/// The sidecar's path: FILE with the extension `.json`.
pub fn sidecar_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

/// What the sidecar says (also useful to tests).
pub fn sidecar(seg: &Segment, cfg: &TaskConfig, vocab_size: usize, seed: u64, format: Format) -> serde_json::Value {
    let mut config = serde_json::to_value(cfg).expect("task configs serialise");
    if let Some(o) = config.as_object_mut() {
        o.insert("num_examples".into(), json!(seg.n));
    }
    let layout = match format {
        Format::Safetensors | Format::Npz => "tensors `inputs` and `targets`, int64 [num_examples, seq_len]",
        Format::Npy => "one int64 array [2, num_examples, seq_len]: [0] = inputs, [1] = targets",
    };
    json!({
        "task": cfg.name(),
        "config": config,
        "vocab_size": vocab_size,
        "seed": seed,
        "split": seg.split.name(),
        "num_examples": seg.n,
        "seq_len": seg.seq_len,
        "slices": seg.slices,
        "metric": seg.metric.name(),
        "metric_about": seg.metric.about(),
        "supervision": cfg.entry().supervision,
        "ignore_index": IGNORE,
        "num_supervised": seg.num_supervised(),
        "layout": layout,
        "regenerate": format!("zoology data {} --seed {seed} --vocab-size {vocab_size} --split {} {}", cfg.name(), seg.split.name(), cfg.fields().iter().map(|(k, v)| format!("{k}={}", super::value_text(v))).collect::<Vec<_>>().join(" ")),
    })
}

/// Writes `seg` to `path` in the format of its extension and the JSON sidecar; returns the
/// paths written.
pub fn export(
    seg: &Segment,
    cfg: &TaskConfig,
    vocab_size: usize,
    seed: u64,
    path: &Path,
    flag: &str,
) -> Result<Vec<PathBuf>> {
    let format = Format::of(path, flag)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let shape = [seg.n as i64, seg.seq_len as i64];
    let inputs = Tensor::from_slice(&seg.inputs).view(shape).to_kind(Kind::Int64);
    let targets = Tensor::from_slice(&seg.targets).view(shape).to_kind(Kind::Int64);
    // open the file ourselves first: a read-only or missing target is an io error naming the
    // path (tch's writers report it as Rust debug text)
    std::fs::File::create(path).map_err(io_err(path))?;
    let werr = |e: tch::TchError| Error::Other(format!("writing {}: {e}", path.display()));
    match format {
        Format::Safetensors => {
            Tensor::write_safetensors(&[("inputs", &inputs), ("targets", &targets)], path).map_err(werr)?
        }
        Format::Npz => Tensor::write_npz(&[("inputs", &inputs), ("targets", &targets)], path).map_err(werr)?,
        Format::Npy => Tensor::stack(&[inputs, targets], 0).write_npy(path).map_err(werr)?,
    }
    let side = sidecar_path(path);
    let text = serde_json::to_string_pretty(&sidecar(seg, cfg, vocab_size, seed, format)).expect("json");
    std::fs::write(&side, text + "\n").map_err(io_err(&side))?;
    Ok(vec![path.to_path_buf(), side])
}

/// Split from its name (`train` / `test`); `flag` names the option in errors.
pub fn parse_split(s: &str, flag: &str) -> Result<Split> {
    match s {
        "train" => Ok(Split::Train),
        "test" => Ok(Split::Test),
        other => Err(config_err(flag, format!("must be train or test (got {other:?})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every format reads back (through tch's readers) as the generated data.
    #[test]
    fn formats_round_trip() {
        let cfg = TaskConfig::from_fields(
            "mqar",
            &toml::from_str("seq_len = 16\nnum_kv_pairs = 2\nnum_examples = 5").unwrap(),
            "t",
        )
        .unwrap();
        let seg = cfg.generate(64, 3);
        let dir = std::env::temp_dir().join(format!("zoology-export-{}", std::process::id()));
        let want_i = Tensor::from_slice(&seg.inputs).view([5, 16]).to_kind(Kind::Int64);
        let want_t = Tensor::from_slice(&seg.targets).view([5, 16]).to_kind(Kind::Int64);
        for ext in ["safetensors", "npz", "npy"] {
            let p = dir.join(format!("d.{ext}"));
            let files = export(&seg, &cfg, 64, 3, &p, "--out").unwrap();
            assert_eq!(files[1], dir.join("d.json"));
            let (i, t) = match ext {
                "safetensors" => {
                    let m: std::collections::HashMap<String, Tensor> =
                        Tensor::read_safetensors(&p).unwrap().into_iter().collect();
                    (m["inputs"].shallow_clone(), m["targets"].shallow_clone())
                }
                "npz" => {
                    let m: std::collections::HashMap<String, Tensor> =
                        Tensor::read_npz(&p).unwrap().into_iter().collect();
                    (m["inputs"].shallow_clone(), m["targets"].shallow_clone())
                }
                _ => {
                    let a = Tensor::read_npy(&p).unwrap();
                    (a.get(0), a.get(1))
                }
            };
            assert_eq!(i.kind(), Kind::Int64);
            assert!(i.equal(&want_i) && t.equal(&want_t), "{ext}");
            let side: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files[1]).unwrap()).unwrap();
            assert_eq!(side["config"]["num_kv_pairs"], 2);
            assert_eq!(side["slices"]["num_kv_pairs"], "2");
            assert_eq!(side["ignore_index"], -100);
        }
        let e = export(&seg, &cfg, 64, 3, &dir.join("d.csv"), "--out").unwrap_err().to_string();
        assert!(e.contains("--out") && e.contains(".safetensors"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
