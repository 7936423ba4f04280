//! Checkpoints: one safetensors file with the model's parameters (`model/<name>`), AdamW's
//! moments (`adam_m/<name>`, `adam_v/<name>`) and the trainer state as a JSON byte tensor
//! (`trainer_state`). Written to a temporary file and renamed, so a crash leaves either the old
//! or the new checkpoint, never a torn one.
//!
//! No RNG state is stored because none is needed: the dropout generator is reseeded from
//! (seed, step) before every step and the batch order is a function of (seed, epoch), so the
//! step counter determines every random draw that follows (see docs/DECISIONS.md).

use super::metrics::EvalResult;
use super::optim::AdamW;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TrainerState {
    /// Optimiser steps taken.
    pub step: usize,
    /// Epoch in progress and the next batch within it.
    pub epoch: usize,
    pub batch: usize,
    pub best_accuracy: f64,
    pub best_epoch: usize,
    pub best_slices: BTreeMap<String, f64>,
    pub last_eval: Option<EvalResult>,
    /// Epochs whose evaluation has been done.
    pub epochs_done: usize,
    pub wall_time_s: f64,
}

pub const FILE: &str = "checkpoint.safetensors";

pub fn save(path: &Path, model: &[(String, Tensor)], opt: &AdamW, state: &TrainerState) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = Vec::new();
    for (n, t) in model {
        named.push((format!("model/{n}"), t.detach().to_device(Device::Cpu).contiguous()));
    }
    for (i, (n, _)) in opt.params.iter().enumerate() {
        named.push((format!("adam_m/{n}"), opt.m[i].to_device(Device::Cpu).contiguous()));
        named.push((format!("adam_v/{n}"), opt.v[i].to_device(Device::Cpu).contiguous()));
    }
    let json = serde_json::to_vec(state).expect("trainer state serialises");
    named.push(("trainer_state".into(), Tensor::from_slice(&json).to_kind(Kind::Uint8)));
    named.push(("adam_t".into(), Tensor::from_slice(&[opt.t])));
    let tmp = path.with_extension("safetensors.tmp");
    Tensor::write_safetensors(&named, &tmp)?;
    std::fs::rename(&tmp, path).map_err(crate::error::io_err(path))?;
    Ok(())
}

pub struct Loaded {
    pub tensors: HashMap<String, Tensor>,
    pub state: TrainerState,
    pub adam_t: i64,
}

pub fn load(path: &Path) -> Result<Loaded> {
    let list = Tensor::read_safetensors(path)?;
    let mut tensors: HashMap<String, Tensor> = list.into_iter().collect();
    let bytes = tensors
        .remove("trainer_state")
        .ok_or_else(|| Error::Data(format!("{}: no trainer_state in checkpoint", path.display())))?;
    let v: Vec<u8> = Vec::<u8>::try_from(&bytes.to_kind(Kind::Uint8)).map_err(Error::Torch)?;
    let state: TrainerState =
        serde_json::from_slice(&v).map_err(|e| Error::Data(format!("{}: bad trainer_state: {e}", path.display())))?;
    let adam_t = tensors.remove("adam_t").map(|t| t.int64_value(&[0])).unwrap_or(0);
    Ok(Loaded { tensors, state, adam_t })
}

/// Copies checkpointed values into the live model parameters and optimiser state.
pub fn restore(loaded: &Loaded, model: &[(String, Tensor)], opt: &mut AdamW) -> Result<()> {
    let get = |k: String| -> Result<&Tensor> {
        loaded.tensors.get(&k).ok_or_else(|| Error::Data(format!("checkpoint lacks {k}; was it written by a different model config?")))
    };
    tch::no_grad(|| -> Result<()> {
        for (n, t) in model {
            let src = get(format!("model/{n}"))?;
            if src.size() != t.size() {
                return Err(Error::Data(format!("checkpoint tensor model/{n} has shape {:?}, model has {:?}", src.size(), t.size())));
            }
            let mut dst = t.shallow_clone();
            dst.copy_(src);
        }
        for i in 0..opt.params.len() {
            let n = opt.params[i].0.clone();
            opt.m[i].copy_(get(format!("adam_m/{n}"))?);
            opt.v[i].copy_(get(format!("adam_v/{n}"))?);
        }
        Ok(())
    })?;
    opt.t = loaded.adam_t;
    Ok(())
}
