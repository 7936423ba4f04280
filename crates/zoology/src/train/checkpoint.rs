//! Checkpoints that prove themselves: one safetensors file with the model's parameters
//! (`model/<name>`), AdamW's moments (`adam_m/<name>`, `adam_v/<name>`) and, in the header's
//! `__metadata__`, the trainer state (JSON), AdamW's step, what the checkpoint belongs to
//! (`config_hash` = the run id of the config, `seed`), its format and version, and a SHA-256 over
//! the tensors' bytes, their layout and the other metadata.
//!
//! Loading checks, in order, and says in words what is wrong, naming the file: that it is a
//! complete safetensors file, that it is a zoology-rs checkpoint of a format this build reads,
//! that the checksum matches (flipped bits, a truncated copy or an edited training state fail
//! here), and that it belongs to this run's config and seed (a checkpoint copied from another run
//! fails here). It is written to a temporary file, fsynced and renamed, so a crash leaves the
//! old or the new checkpoint, never a torn one.
//!
//! No RNG state is stored because none is needed: the dropout generator is reseeded from
//! (seed, step) before every step and the batch order is a function of (seed, epoch), so the
//! step counter determines every random draw that follows (see docs/DECISIONS.md).

use super::metrics::EvalResult;
use super::optim::AdamW;
use crate::error::{Error, Result};
use crate::rundir::{float, StopReason};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub const FILE: &str = crate::rundir::CHECKPOINT;
/// `__metadata__.format` of every zoology-rs checkpoint.
pub const FORMAT: &str = "zoology-checkpoint";
/// The version this build writes and reads. Version 1 (no metadata) had no way to verify itself.
pub const VERSION: u32 = 2;
/// Largest header we accept (the header is a few kB; anything this big is not ours).
const MAX_HEADER: u64 = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TrainerState {
    /// Optimiser steps taken.
    pub step: usize,
    /// Epoch in progress and the next batch within it.
    pub epoch: usize,
    pub batch: usize,
    #[serde(with = "float")]
    pub best_accuracy: f64,
    pub best_epoch: usize,
    #[serde(with = "float::map")]
    pub best_slices: BTreeMap<String, f64>,
    pub last_eval: Option<EvalResult>,
    /// Epochs whose evaluation has been done.
    pub epochs_done: usize,
    #[serde(with = "float")]
    pub wall_time_s: f64,
    /// Set once training has decided to stop (early stop): a run resumed from this checkpoint
    /// writes its summary instead of training on.
    #[serde(default)]
    pub stopped: Option<StopReason>,
    /// Length of metrics.jsonl when this state was saved: resuming cuts the file back to it.
    #[serde(default)]
    pub metrics_bytes: u64,
    /// Training examples and tokens (inputs) consumed so far.
    #[serde(default)]
    pub examples: u64,
    #[serde(default)]
    pub tokens: u64,
    /// Training FLOPs spent so far (forward + backward, [`crate::flops`]).
    #[serde(default, with = "float")]
    pub train_flops: f64,
    /// First crossings of `train.solve_thresholds` so far.
    #[serde(default)]
    pub solved: Vec<crate::rundir::Solved>,
    /// Seconds spent in training steps (data, forward, backward, optimiser; not evaluation or
    /// checkpoints) so far: the denominator of the summary's tokens/s and GFLOP/s.
    #[serde(default, with = "float")]
    pub train_time_s: f64,
}

/// What a checkpoint belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The run id of the config ([`crate::rundir::run_id`]).
    pub config_hash: String,
    pub seed: u64,
}

fn kind_name(k: Kind) -> Result<&'static str> {
    Ok(match k {
        Kind::Float => "F32",
        Kind::Double => "F64",
        Kind::Half => "F16",
        Kind::BFloat16 => "BF16",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        other => return Err(Error::Other(format!("checkpoint: cannot store tensors of kind {other:?}"))),
    })
}

fn kind_of(s: &str) -> Option<Kind> {
    Some(match s {
        "F32" => Kind::Float,
        "F64" => Kind::Double,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "I64" => Kind::Int64,
        "I32" => Kind::Int,
        "U8" => Kind::Uint8,
        "BOOL" => Kind::Bool,
        _ => return None,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Info {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// SHA-256 over the metadata (without `sha256`), the tensor layout and the data bytes.
fn digest(meta: &BTreeMap<String, String>, infos: &BTreeMap<String, Info>, data: &[u8]) -> String {
    let mut h = Sha256::new();
    for (k, v) in meta.iter().filter(|(k, _)| k.as_str() != "sha256") {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    for (name, i) in infos {
        h.update(format!("{name}\0{}\0{:?}\0{:?}\0", i.dtype, i.shape, i.data_offsets).as_bytes());
    }
    h.update(data);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn save(path: &Path, model: &[(String, Tensor)], opt: &AdamW, state: &TrainerState, id: &Identity) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = Vec::new();
    for (n, t) in model {
        named.push((format!("model/{n}"), t.detach().to_device(Device::Cpu).contiguous()));
    }
    for (i, (n, _)) in opt.params.iter().enumerate() {
        named.push((format!("adam_m/{n}"), opt.m[i].to_device(Device::Cpu).contiguous()));
        named.push((format!("adam_v/{n}"), opt.v[i].to_device(Device::Cpu).contiguous()));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut data: Vec<u8> = vec![];
    let mut infos = BTreeMap::new();
    for (n, t) in &named {
        let numel = t.numel();
        let len = numel * t.kind().elt_size_in_bytes();
        let start = data.len();
        data.resize(start + len, 0);
        t.f_copy_data_u8(&mut data[start..], numel)?;
        let shape = t.size().iter().map(|&x| x as usize).collect();
        infos.insert(n.clone(), Info { dtype: kind_name(t.kind())?.into(), shape, data_offsets: [start, start + len] });
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("format_version".into(), VERSION.to_string());
    meta.insert("config_hash".into(), id.config_hash.clone());
    meta.insert("seed".into(), id.seed.to_string());
    meta.insert("step".into(), state.step.to_string());
    meta.insert("adam_t".into(), opt.t.to_string());
    meta.insert(
        "trainer_state".into(),
        serde_json::to_string(state).map_err(|e| Error::Other(format!("trainer state does not serialise: {e}")))?,
    );
    meta.insert("sha256".into(), digest(&meta, &infos, &data));
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(&meta).unwrap_or_default());
    for (n, i) in &infos {
        header.insert(n.clone(), serde_json::to_value(i).unwrap_or_default());
    }
    let mut h = serde_json::to_vec(&header).map_err(|e| Error::Other(format!("checkpoint header: {e}")))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let tmp = path.with_file_name(format!(".{}.tmp-{}", FILE, std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(&(h.len() as u64).to_le_bytes())?;
        f.write_all(&h)?;
        f.write_all(&data)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(crate::error::io_err(&tmp)(e));
    }
    crate::rundir::fault_before_rename(path);
    std::fs::rename(&tmp, path).map_err(crate::error::io_err(path))?;
    Ok(())
}

pub struct Loaded {
    pub tensors: HashMap<String, Tensor>,
    pub state: TrainerState,
    pub adam_t: i64,
    pub identity: Identity,
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), msg: msg.into() }
}

const RESTART: &str = "delete it (and metrics.jsonl) to train the run from the start, or rerun the sweep with --retry-failed, which does that for runs whose checkpoint cannot be used";

/// Reads and verifies a checkpoint's integrity and format (not yet whom it belongs to).
pub fn read_verified(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(crate::error::io_err(path))?;
    let n = bytes.len() as u64;
    if n < 8 {
        return Err(bad(
            path,
            format!("is {n} bytes long, too short to be a checkpoint: it is empty or was cut off; {RESTART}"),
        ));
    }
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    if hlen > MAX_HEADER || hlen > n - 8 {
        return Err(bad(
            path,
            format!("its first 8 bytes announce a {hlen}-byte header but {} bytes follow: the file was cut off or is not a safetensors checkpoint; {RESTART}", n - 8),
        ));
    }
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + hlen as usize])
        .map_err(|e| bad(path, format!("its header is not readable JSON ({e}): the file is damaged or is not a safetensors checkpoint; {RESTART}")))?;
    let meta: BTreeMap<String, String> = match header.get("__metadata__") {
        Some(m) => serde_json::from_value(m.clone()).map_err(|_| {
            bad(path, format!("its metadata is not a table of strings: the file is damaged; {RESTART}"))
        })?,
        None => BTreeMap::new(),
    };
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(
            path,
            format!("is not a zoology-rs checkpoint of a known format (no \"format\": \"{FORMAT}\" in its metadata): it was written by zoology-rs before checkpoints carried a version and a checksum (format 1), or by another program, so it cannot be verified; {RESTART}"),
        ));
    }
    let version: u32 = meta.get("format_version").and_then(|v| v.parse().ok()).unwrap_or(0);
    if version != VERSION {
        let who = if version > VERSION { "a newer zoology-rs" } else { "an older zoology-rs" };
        return Err(bad(
            path,
            format!("was written by {who} (checkpoint format {version}); this build reads format {VERSION}"),
        ));
    }
    let data = &bytes[8 + hlen as usize..];
    let mut infos = BTreeMap::new();
    for (name, v) in &header {
        if name == "__metadata__" {
            continue;
        }
        let i: Info = serde_json::from_value(v.clone()).map_err(|_| {
            bad(path, format!("tensor {name:?} has an unreadable entry in the header: the file is damaged; {RESTART}"))
        })?;
        infos.insert(name.clone(), i);
    }
    let want = meta.get("sha256").cloned().unwrap_or_default();
    let got = digest(&meta, &infos, data);
    if got != want {
        return Err(bad(
            path,
            format!("its contents do not match its checksum (SHA-256 {} recorded, {} now): bytes changed after it was written (a damaged disk or copy, or an edited training state), so it cannot be trusted; {RESTART}", short(&want), short(&got)),
        ));
    }
    let mut tensors = HashMap::new();
    for (name, i) in &infos {
        let kind =
            kind_of(&i.dtype).ok_or_else(|| bad(path, format!("tensor {name:?} has unknown dtype {:?}", i.dtype)))?;
        let [a, b] = i.data_offsets;
        let numel: usize = i.shape.iter().product();
        if a > b || b > data.len() || b - a != numel * kind.elt_size_in_bytes() {
            return Err(bad(path, format!("tensor {name:?}: its byte range {a}..{b} does not fit its shape {:?} or the file: the file is damaged; {RESTART}", i.shape)));
        }
        let shape: Vec<i64> = i.shape.iter().map(|&x| x as i64).collect();
        tensors.insert(name.clone(), Tensor::f_from_data_size(&data[a..b], &shape, kind)?);
    }
    let state: TrainerState = serde_json::from_str(meta.get("trainer_state").map(String::as_str).unwrap_or(""))
        .map_err(|e| bad(path, format!("its trainer state is unreadable ({e}); {RESTART}")))?;
    let adam_t =
        meta.get("adam_t").and_then(|v| v.parse().ok()).ok_or_else(|| bad(path, "has no AdamW step count (adam_t)"))?;
    let identity = Identity {
        config_hash: meta.get("config_hash").cloned().unwrap_or_default(),
        seed: meta.get("seed").and_then(|v| v.parse().ok()).unwrap_or(0),
    };
    Ok(Loaded { tensors, state, adam_t, identity })
}

fn short(h: &str) -> String {
    if h.is_empty() {
        "(none)".into()
    } else {
        h.chars().take(12).collect::<String>() + "…"
    }
}

/// Reads, verifies, and checks that the checkpoint belongs to the run `expect` describes.
pub fn load(path: &Path, expect: &Identity) -> Result<Loaded> {
    let l = read_verified(path)?;
    if l.identity != *expect {
        return Err(bad(
            path,
            format!(
                "belongs to another run: it was written for config {} (seed {}), but this run directory's config.toml is config {} (seed {}). It was copied from another run directory, or config.toml was edited after the run started; restore the matching config.toml, or delete the checkpoint (and metrics.jsonl) to train this config from the start",
                l.identity.config_hash, l.identity.seed, expect.config_hash, expect.seed
            ),
        ));
    }
    Ok(l)
}

/// Copies checkpointed values into the live model parameters and optimiser state.
pub fn restore(loaded: &Loaded, path: &Path, model: &[(String, Tensor)], opt: &mut AdamW) -> Result<()> {
    let get = |k: String| -> Result<&Tensor> {
        loaded
            .tensors
            .get(&k)
            .ok_or_else(|| bad(path, format!("has no tensor {k}: it was written by a different model")))
    };
    let expected = model.len() + 2 * opt.params.len();
    if loaded.tensors.len() != expected {
        return Err(bad(
            path,
            format!(
                "has {} tensors, this model needs {expected}: it was written by a different model",
                loaded.tensors.len()
            ),
        ));
    }
    tch::no_grad(|| -> Result<()> {
        for (n, t) in model {
            let src = get(format!("model/{n}"))?;
            if src.size() != t.size() || src.kind() != t.kind() {
                return Err(bad(
                    path,
                    format!(
                        "tensor model/{n} is {:?} {:?}, the model's is {:?} {:?}: it was written by a different model",
                        src.kind(),
                        src.size(),
                        t.kind(),
                        t.size()
                    ),
                ));
            }
            let mut dst = t.shallow_clone();
            dst.f_copy_(src)?;
        }
        for i in 0..opt.params.len() {
            let n = opt.params[i].0.clone();
            for (which, dst) in [("adam_m", &mut opt.m[i]), ("adam_v", &mut opt.v[i])] {
                let src = get(format!("{which}/{n}"))?;
                if src.size() != dst.size() {
                    return Err(bad(
                        path,
                        format!("tensor {which}/{n} has shape {:?}, the optimiser's is {:?}", src.size(), dst.size()),
                    ));
                }
                dst.f_copy_(src)?;
            }
        }
        Ok(())
    })?;
    opt.t = loaded.adam_t;
    Ok(())
}

/// Copies a checkpoint's model parameters (only) into `model`, for evaluating or decoding a
/// run: every `model/<name>` tensor must exist with the model's shape and kind, and the
/// checkpoint must hold no model tensor the model lacks.
pub fn restore_model(loaded: &Loaded, path: &Path, model: &[(String, Tensor)]) -> Result<()> {
    let stored = loaded.tensors.keys().filter(|k| k.starts_with("model/")).count();
    if stored != model.len() {
        return Err(bad(
            path,
            format!("has {stored} model tensors, this model has {}: it was written by a different model", model.len()),
        ));
    }
    tch::no_grad(|| -> Result<()> {
        for (n, t) in model {
            let k = format!("model/{n}");
            let src = loaded
                .tensors
                .get(&k)
                .ok_or_else(|| bad(path, format!("has no tensor {k}: it was written by a different model")))?;
            if src.size() != t.size() || src.kind() != t.kind() {
                return Err(bad(
                    path,
                    format!(
                        "tensor {k} is {:?} {:?}, the model's is {:?} {:?}: it was written by a different model",
                        src.kind(),
                        src.size(),
                        t.kind(),
                        t.size()
                    ),
                ));
            }
            t.shallow_clone().f_copy_(src)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("zoology-ckpt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The trainer state's floats survive the checkpoint's JSON bit for bit, so that a run
    /// resumed from a checkpoint that had already decided to stop writes the summary the
    /// uninterrupted run writes (its `final_loss` was 1 ULP off: serde_json parsed some floats
    /// to the neighbouring double until its `float_roundtrip` feature was turned on).
    #[test]
    fn trainer_state_floats_round_trip_bit_for_bit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(25);
        let mut off = vec![];
        for _ in 0..20_000 {
            // doubles with random mantissas between about 1e-3 and 16 (losses, accuracies, seconds)
            let x = f64::from_bits(rng.gen_range(0x3f50_0000_0000_0000u64..0x4030_0000_0000_0000));
            let st = TrainerState {
                best_accuracy: x,
                wall_time_s: x,
                last_eval: Some(EvalResult { loss: x, accuracy: x, ..Default::default() }),
                ..Default::default()
            };
            let text = serde_json::to_string(&st).unwrap();
            let back: TrainerState = serde_json::from_str(&text).unwrap();
            if back != st {
                off.push(x);
            }
        }
        assert!(
            off.is_empty(),
            "{} of 20000 floats changed in the JSON round trip, e.g. {:?}",
            off.len(),
            &off[..off.len().min(3)]
        );
    }

    fn tiny() -> (nn::VarStore, Vec<(String, Tensor)>, AdamW) {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3, 4], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let b = vs.root().var("b", &[4], nn::Init::Const(0.5));
        let named = vec![("b".to_string(), b), ("w".to_string(), w)];
        let mut opt = AdamW::new(
            named.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
            0.1,
            0.9,
            0.999,
            1e-8,
            false,
        );
        opt.t = 7;
        (vs, named, opt)
    }

    fn id() -> Identity {
        Identity { config_hash: "0123456789ab".into(), seed: 5 }
    }

    fn err(path: &Path, expect: &Identity) -> String {
        match load(path, expect) {
            Ok(_) => panic!("{} loaded", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn round_trip_restores_parameters_state_and_identity() {
        let d = tmp("ok");
        let p = d.join(FILE);
        let (_vs, named, opt) = tiny();
        let st = TrainerState {
            step: 42,
            epoch: 3,
            best_accuracy: 0.5,
            stopped: Some(StopReason::EarlyStop),
            metrics_bytes: 123,
            last_eval: Some(EvalResult { loss: f64::NAN, ..Default::default() }),
            ..Default::default()
        };
        save(&p, &named, &opt, &st, &id()).unwrap();
        let l = load(&p, &id()).unwrap();
        assert_eq!(
            (l.state.step, l.state.stopped, l.state.metrics_bytes, l.adam_t),
            (42, Some(StopReason::EarlyStop), 123, 7)
        );
        assert!(l.state.last_eval.as_ref().unwrap().loss.is_nan(), "a NaN in the trainer state reads back");
        let (_vs2, named2, mut opt2) = tiny();
        let _ = tch::no_grad(|| named2[1].1.shallow_clone().zero_());
        restore(&l, &p, &named2, &mut opt2).unwrap();
        assert!(named2[1].1.equal(&named[1].1));
        assert_eq!(opt2.t, 7);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn damaged_foreign_edited_and_old_checkpoints_are_refused_in_words() {
        let d = tmp("bad");
        let p = d.join(FILE);
        let (_vs, named, opt) = tiny();
        let st = TrainerState { step: 42, ..Default::default() };
        save(&p, &named, &opt, &st, &id()).unwrap();
        let good = std::fs::read(&p).unwrap();
        let all_errors = std::cell::RefCell::new(vec![]);
        let check = |bytes: &[u8], expect: &Identity, want: &str| {
            std::fs::write(&p, bytes).unwrap();
            let e = err(&p, expect);
            assert!(e.contains(want), "want {want:?} in: {e}");
            assert!(e.contains(&p.display().to_string()), "the error names the file: {e}");
            all_errors.borrow_mut().push(e);
        };
        // another run's config or seed
        check(&good, &Identity { config_hash: "ffffffffffff".into(), seed: 5 }, "belongs to another run");
        check(&good, &Identity { config_hash: id().config_hash, seed: 6 }, "belongs to another run");
        // one flipped bit in the last tensor byte
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 0x10;
        check(&flipped, &id(), "do not match its checksum");
        // an edited training state in the header (same length, still valid JSON)
        let text = String::from_utf8_lossy(&good).to_string();
        let edited = text.replacen("\\\"step\\\":42", "\\\"step\\\":43", 1);
        assert_ne!(edited, text, "the trainer state is in the header");
        check(edited.as_bytes(), &id(), "do not match its checksum");
        // cut off, empty, garbage
        check(&good[..good.len() / 2], &id(), "cut off");
        check(&[], &id(), "too short");
        check(b"this is not a checkpoint at all", &id(), "cut off");
        let mut garbage = (20u64).to_le_bytes().to_vec();
        garbage.extend(b"{not json at all!!!}");
        check(&garbage, &id(), "not readable JSON");
        // written by tch's own safetensors writer (format 1 had no metadata)
        Tensor::write_safetensors(&[("model/w", &named[1].1)], &p).unwrap();
        check(&std::fs::read(&p).unwrap(), &id(), "before checkpoints carried a version");
        // a newer format
        let newer = text.replacen("\"format_version\":\"2\"", "\"format_version\":\"9\"", 1);
        check(newer.as_bytes(), &id(), "newer zoology-rs");
        for e in all_errors.borrow().iter() {
            assert!(
                !e.contains("HeaderTooSmall") && !e.contains("InvalidHeader"),
                "library enum names are not messages: {e}"
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
