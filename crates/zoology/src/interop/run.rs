//! `zoology import`: a Zoology state dict becomes a run directory.

use super::{import_model, read_zoology_json};
use crate::config::RunConfig;
use crate::device::Runtime;
use crate::error::{config_err, Result};
use crate::rundir::{self, StopReason, Summary};
use crate::train::checkpoint::{self, TrainerState};
use crate::train::trainer::{evaluate, DeviceData};
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

/// What `import_run` wrote and measured.
pub struct ImportReport {
    pub accuracy: f64,
    pub metric: String,
    pub num_parameters: i64,
}

/// `zoology import FILE --config ZOOLOGY_CONFIG.json --out RUN_DIR [--base CONFIG.toml]`.
pub fn import_run(file: &Path, config: &Path, base: Option<&Path>, out: &Path) -> Result<ImportReport> {
    if out.join(rundir::CONFIG).exists() || out.join(rundir::CHECKPOINT).exists() || out.join(rundir::SUMMARY).exists()
    {
        return Err(config_err(
            "--out",
            format!("{} already holds a run; choose another --out or delete it", out.display()),
        ));
    }
    let (model, embedded) = read_zoology_json(config)?;
    let base_cfg = match (base, embedded) {
        (Some(p), _) => RunConfig::load(p)?,
        (None, Some(text)) => RunConfig::from_toml_str(&text, "--config zoology_rs.config_toml")?,
        (None, None) => {
            return Err(config_err(
                "--base",
                "the config JSON carries no zoology-rs config (a Zoology ModelConfig has no data settings): give --base CONFIG.toml, whose [data], [train] and seed the imported run uses",
            ))
        }
    };
    let state: HashMap<String, Tensor> = Tensor::read_safetensors(file)
        .map_err(|e| config_err("FILE", format!("{} is not a readable safetensors file: {e}", file.display())))?
        .into_iter()
        .collect();
    let (cfg, vs, lm) = import_model(&model, &base_cfg, &state, &file.display().to_string())?;
    std::fs::create_dir_all(out).map_err(crate::error::io_err(out))?;
    rundir::write_atomic(&out.join(rundir::CONFIG), cfg.to_toml().as_bytes())?;
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let t = &cfg.train;
    let opt = crate::train::optim::AdamW::new(
        named.iter().map(|(n, p)| (n.clone(), p.shallow_clone())).collect(),
        t.weight_decay,
        t.beta1,
        t.beta2,
        t.eps,
        t.no_decay_norms_biases,
    );
    let st = TrainerState { stopped: Some(StopReason::MaxEpochs), ..Default::default() };
    let id = checkpoint::Identity { config_hash: rundir::run_id(&cfg), seed: cfg.seed };
    checkpoint::save(&out.join(rundir::CHECKPOINT), &named, &opt, &st, &id)?;
    let batch = cfg.data.test_batch_size.unwrap_or(cfg.data.batch_size);
    let ev = evaluate(&lm, &DeviceData::new(cfg.generate_test(), &Runtime::cpu()), batch);
    let seq_len = cfg.max_seq_len() as i64;
    let flops = lm.flops(seq_len);
    let num_parameters = crate::model::num_parameters(&vs);
    let summary = Summary {
        status: "done".into(),
        stop_reason: StopReason::MaxEpochs,
        reason: Some(format!(
            "imported from the Zoology state dict {} (`zoology import`); not trained here",
            file.display()
        )),
        mixer: cfg.model.mixer_name(),
        d_model: cfg.model.d_model,
        best_accuracy: ev.accuracy,
        best_epoch: 0,
        final_accuracy: ev.accuracy,
        metric: ev.metric.clone(),
        final_metrics: ev.metrics.clone(),
        final_loss: ev.loss,
        slices: ev.slices.clone(),
        best_slices: ev.slices.clone(),
        num_parameters,
        state_size: lm.state_size(seq_len),
        state_size_seq_len: seq_len,
        flops_train_per_step: None,
        flops_prefill_per_seq: Some(flops.body.prefill_per_seq + flops.head_per_position),
        flops_decode_per_token: Some(flops.body.decode_per_token + flops.head_per_position),
        wall_time_s: 0.0,
        train_tokens_per_s: None,
        train_gflops_per_s: None,
        epochs: 0,
        steps: 0,
        device: "cpu".into(),
        machine: Some(crate::device::machine()),
        solved: None,
    };
    rundir::write_summary(out, &summary)?;
    Ok(ImportReport { accuracy: ev.accuracy, metric: ev.metric, num_parameters })
}
