//! The interop verbs (issue 24): `zoology export RUN_DIR --format zoology --out FILE` and
//! `zoology import FILE --config ZOOLOGY_CONFIG.json --out RUN_DIR [--base CONFIG.toml]`.
//! The work is `zoology::interop`'s.

use anyhow::{anyhow, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// HazyResearch/zoology's `LanguageModel.state_dict()` (safetensors) + its `ModelConfig` (JSON).
    Zoology,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Run directory (config.toml + checkpoint.safetensors).
    pub run_dir: PathBuf,
    /// Target format.
    #[arg(long, value_enum, default_value = "zoology")]
    pub format: ExportFormat,
    /// Output state dict, FILE.safetensors; the model config goes to FILE.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the run's test data (as its evaluation saw them) to FILE.test.safetensors.
    #[arg(long)]
    pub test_data: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    /// A Zoology state dict as safetensors (`safetensors.torch.save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, FILE)`).
    pub file: PathBuf,
    /// Zoology's ModelConfig as JSON (the object itself, or an object with it under "model",
    /// as `zoology export` writes).
    #[arg(long)]
    pub config: PathBuf,
    /// zoology-rs config whose [data], [train] and seed the imported run uses (default: the
    /// one `zoology export` embedded in the JSON).
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// Run directory to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn cmd_export(a: ExportArgs) -> Result<()> {
    let ExportFormat::Zoology = a.format;
    let r = zoology::interop::export_run(&a.run_dir, &a.out, a.test_data).map_err(|e| anyhow!(e.to_string()))?;
    println!(
        "wrote {} ({} tensors, Zoology names) and {} (Zoology ModelConfig)",
        r.weights.display(),
        r.tensors,
        r.config.display()
    );
    if let Some(t) = r.test {
        println!("wrote {} (the run's test data)", t.display());
    }
    Ok(())
}

pub fn cmd_import(a: ImportArgs) -> Result<()> {
    let r = zoology::interop::import_run(&a.file, &a.config, a.base.as_deref(), &a.out)
        .map_err(|e| anyhow!(e.to_string()))?;
    println!(
        "wrote run directory {} ({} parameters); test accuracy ({}) {:.4}",
        a.out.display(),
        r.num_parameters,
        r.metric,
        r.accuracy
    );
    Ok(())
}
