//! `zoology bench decode` (issue 10, "Inference cost, measured"): for each mixer and context
//! length, a 2-layer LM (identity state mixer, no positions, random weights) prefills a random
//! prompt of that length ([`LanguageModel::prefill`]) and then decodes greedily
//! ([`LanguageModel::step`], each step feeding the argmax of the previous logits). Measured:
//! prefill seconds, decode tokens/s (sequences × steps / seconds of the steps) and the bytes of
//! the tensors in the LM state after the prompt, per sequence ([`LmState::bytes_per_sequence`]:
//! attention's KV cache grows with the context, a recurrent mixer's state does not). Attention is
//! always measured too, in the same run, and every row carries its ratio to attention at the
//! same context.
//!
//! Each cell is repeated `reps` times on the same prompt; the medians of the prefill and decode
//! times are reported (the machines are shared: single runs were off by 10× under load).
//!
//! Prefill is each mixer's own `prefill`: a parallel form where the mixer has one (attention,
//! hyena, stripedhyena), otherwise its step form token by token (the trait's default), which is what
//! decoding that mixer costs today.

use crate::error::{config_err, Result};
use crate::model::decode::LmState;
use crate::model::{LanguageModel, ModelConfig};
use serde::Serialize;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// Settings of `zoology bench decode`.
#[derive(Debug, Clone)]
pub struct DecodeBench {
    /// Registry names (attention is added when missing: it is the baseline).
    pub mixers: Vec<String>,
    pub contexts: Vec<i64>,
    pub batch: i64,
    pub d_model: i64,
    /// Decode steps after the prompt.
    pub steps: i64,
    pub vocab: i64,
    pub n_layers: i64,
    /// Repetitions of each cell (prefill and decode); the medians are reported.
    pub reps: usize,
}

/// The defaults (small enough for a few minutes on 2 busy CPU cores).
pub const DEFAULT_MIXERS: &str = "attention,base_conv,based,mamba,rwkv,sliding_window";
pub const DEFAULT_CONTEXTS: &str = "256,1024,4096";

/// One measured (mixer, context) cell.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeRow {
    pub mixer: String,
    pub context: i64,
    pub prefill_s: f64,
    pub decode_tokens_per_s: f64,
    pub state_bytes_per_sequence: i64,
    /// Ratios to attention at the same context (None when attention's cell failed).
    pub prefill_vs_attention: Option<f64>,
    pub tokens_per_s_vs_attention: Option<f64>,
    pub state_vs_attention: Option<f64>,
}

/// A (mixer, context) that could not be measured, and why.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeSkip {
    pub mixer: String,
    pub context: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecodeResult {
    pub batch: i64,
    pub d_model: i64,
    pub n_layers: i64,
    pub steps: i64,
    pub vocab: i64,
    pub reps: usize,
    pub threads: i32,
    pub rows: Vec<DecodeRow>,
    pub skipped: Vec<DecodeSkip>,
}

impl DecodeBench {
    /// Checks the settings, naming the flag.
    pub fn validate(&self) -> Result<()> {
        let names = crate::mixers::names();
        for m in &self.mixers {
            if !names.contains(&m.as_str()) {
                return Err(config_err("--mixers", format!("unknown mixer {m:?}; one of: {}", names.join(", "))));
            }
        }
        if self.contexts.is_empty() || self.contexts.iter().any(|&c| !(1..=1 << 20).contains(&c)) {
            return Err(config_err(
                "--contexts",
                format!("give context lengths in [1, 1048576], e.g. 256,1024 (got {:?})", self.contexts),
            ));
        }
        if !(1..=4096).contains(&self.batch) {
            return Err(config_err("--batch", format!("must be in [1, 4096] (got {})", self.batch)));
        }
        if !(8..=8192).contains(&self.d_model) || self.d_model % 8 != 0 {
            return Err(config_err(
                "--d-model",
                format!("must be a multiple of 8 in [8, 8192] (got {})", self.d_model),
            ));
        }
        if !(1..=100_000).contains(&self.steps) {
            return Err(config_err("--steps", format!("must be in [1, 100000] (got {})", self.steps)));
        }
        if !(1..=100).contains(&self.reps) {
            return Err(config_err("--reps", format!("must be in [1, 100] (got {})", self.reps)));
        }
        Ok(())
    }

    fn model(&self, mixer: &str, max_len: i64) -> Result<(nn::VarStore, LanguageModel)> {
        let text = format!(
            "d_model = {}\nn_layers = {}\nstate_mixer = \"identity\"\nmixer = {{ name = \"{mixer}\" }}\n",
            self.d_model, self.n_layers
        );
        let cfg: ModelConfig = toml::from_str(&text).map_err(|e| config_err("--mixers", e.to_string()))?;
        cfg.validate(self.vocab, max_len)?;
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = LanguageModel::new(&vs.root(), &cfg, self.vocab, max_len)?;
        Ok((vs, m))
    }

    /// Prefill seconds, decode tokens/s and the state after the prompt, for one cell.
    fn measure(&self, mixer: &str, context: i64) -> Result<(f64, f64, i64)> {
        let (_vs, m) = self.model(mixer, context + self.steps)?;
        let prompt = Tensor::randint(self.vocab, [self.batch, context], (Kind::Int64, Device::Cpu));
        tch::no_grad(|| {
            // warm-up on a short prompt (allocator, kernels), not timed
            let (_, mut w) = m.prefill(&prompt.narrow(1, 0, context.min(8)))?;
            let _ = m.step(&mut w, &prompt.select(1, 0))?;
            let (mut prefill, mut decode, mut bytes) = (vec![], vec![], 0);
            for _ in 0..self.reps {
                let t0 = Instant::now();
                let (logits, mut st): (Tensor, LmState) = m.prefill(&prompt)?;
                let mut next = logits.select(1, context - 1).argmax(-1, false);
                let _ = next.int64_value(&[0]);
                prefill.push(t0.elapsed().as_secs_f64());
                bytes = st.bytes_per_sequence();
                let t1 = Instant::now();
                for _ in 0..self.steps {
                    next = m.step(&mut st, &next)?.argmax(-1, false);
                }
                let _ = next.int64_value(&[0]);
                decode.push(t1.elapsed().as_secs_f64());
            }
            let decode_s = super::median(decode);
            Ok((super::median(prefill), (self.batch * self.steps) as f64 / decode_s.max(1e-12), bytes))
        })
    }

    /// Runs every (mixer, context), attention first; `progress` gets a line per cell.
    pub fn run(&self, mut progress: impl FnMut(&str)) -> Result<DecodeResult> {
        self.validate()?;
        let mut mixers = vec!["attention".to_string()];
        mixers.extend(self.mixers.iter().filter(|m| *m != "attention").cloned());
        let mut contexts = self.contexts.clone();
        contexts.sort_unstable();
        contexts.dedup();
        let mut rows: Vec<DecodeRow> = vec![];
        let mut skipped = vec![];
        for mixer in &mixers {
            for &c in &contexts {
                match super::catching(|| self.measure(mixer, c)) {
                    Ok((p, tps, bytes)) => {
                        progress(&format!(
                            "  {mixer:<16} context {c:<7} prefill {:9.1} ms  decode {tps:10.1} tok/s  state {}",
                            p * 1e3,
                            human_bytes(bytes)
                        ));
                        rows.push(DecodeRow {
                            mixer: mixer.clone(),
                            context: c,
                            prefill_s: p,
                            decode_tokens_per_s: tps,
                            state_bytes_per_sequence: bytes,
                            prefill_vs_attention: None,
                            tokens_per_s_vs_attention: None,
                            state_vs_attention: None,
                        });
                    }
                    Err(why) => {
                        progress(&format!("  {mixer:<16} context {c:<7} skipped: {why}"));
                        skipped.push(DecodeSkip { mixer: mixer.clone(), context: c, reason: why });
                    }
                }
            }
        }
        let base: Vec<(i64, f64, f64, i64)> = rows
            .iter()
            .filter(|r| r.mixer == "attention")
            .map(|r| (r.context, r.prefill_s, r.decode_tokens_per_s, r.state_bytes_per_sequence))
            .collect();
        for r in &mut rows {
            if let Some(&(_, p, t, b)) = base.iter().find(|x| x.0 == r.context) {
                r.prefill_vs_attention = Some(r.prefill_s / p);
                r.tokens_per_s_vs_attention = Some(r.decode_tokens_per_s / t);
                r.state_vs_attention = (b > 0).then(|| r.state_bytes_per_sequence as f64 / b as f64);
            }
        }
        Ok(DecodeResult {
            batch: self.batch,
            d_model: self.d_model,
            n_layers: self.n_layers,
            steps: self.steps,
            vocab: self.vocab,
            reps: self.reps,
            threads: tch::get_num_threads(),
            rows,
            skipped,
        })
    }
}

/// 1234 → "1.2 kB" (powers of 1000), bytes below 1000 as "512 B".
pub fn human_bytes(b: i64) -> String {
    let b = b as f64;
    if b < 1e3 {
        format!("{b:.0} B")
    } else if b < 1e6 {
        format!("{:.1} kB", b / 1e3)
    } else if b < 1e9 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.2} GB", b / 1e9)
    }
}

/// A ratio with two significant digits at least: 1605x, 3.26x, 0.51x, 0.0024x.
fn ratio(x: Option<f64>) -> String {
    x.map(|v| {
        if v >= 100.0 {
            format!("{v:.0}x")
        } else if v >= 0.01 || v == 0.0 {
            format!("{v:.2}x")
        } else {
            let digits = (1 - v.log10().floor() as i64).clamp(2, 12) as usize;
            format!("{v:.digits$}x")
        }
    })
    .unwrap_or_else(|| "—".into())
}

/// The result as a Markdown table: absolute numbers and ratios to attention at the same context.
pub fn format_table(r: &DecodeResult) -> String {
    let mut s = String::from("| mixer | context | prefill ms | decode tok/s | state / sequence | prefill vs attn | tok/s vs attn | state vs attn |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for x in &r.rows {
        s += &format!(
            "| {} | {} | {:.1} | {:.1} | {} | {} | {} | {} |\n",
            x.mixer,
            x.context,
            x.prefill_s * 1e3,
            x.decode_tokens_per_s,
            human_bytes(x.state_bytes_per_sequence),
            ratio(x.prefill_vs_attention),
            ratio(x.tokens_per_s_vs_attention),
            ratio(x.state_vs_attention)
        );
    }
    for k in &r.skipped {
        s += &format!("\n{} at context {}: {}", k.mixer, k.context, k.reason);
    }
    if !r.skipped.is_empty() {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_bench_measures_every_cell_with_ratios_to_attention() {
        let b = DecodeBench {
            mixers: vec!["gla".into()],
            contexts: vec![32, 8],
            batch: 2,
            d_model: 16,
            steps: 3,
            vocab: 32,
            n_layers: 2,
            reps: 2,
        };
        let r = b.run(|_| {}).unwrap();
        assert!(r.skipped.is_empty(), "{:?}", r.skipped);
        let cells: Vec<(&str, i64)> = r.rows.iter().map(|x| (x.mixer.as_str(), x.context)).collect();
        assert_eq!(
            cells,
            [("attention", 8), ("attention", 32), ("gla", 8), ("gla", 32)],
            "attention is always the baseline"
        );
        for x in &r.rows {
            assert!(x.prefill_s > 0.0 && x.decode_tokens_per_s > 0.0, "{x:?}");
            assert!(x.tokens_per_s_vs_attention.is_some() && x.state_vs_attention.is_some());
        }
        // attention's cache: 2 layers × (K, V) × context × d × 4 bytes; gla's does not grow
        assert_eq!(r.rows[0].state_bytes_per_sequence, 2 * 2 * 8 * 16 * 4);
        assert_eq!(r.rows[1].state_bytes_per_sequence, 2 * 2 * 32 * 16 * 4);
        assert_eq!(r.rows[2].state_bytes_per_sequence, r.rows[3].state_bytes_per_sequence);
        assert_eq!(r.rows[0].state_vs_attention, Some(1.0));
        assert_eq!(
            (ratio(Some(1605.2)), ratio(Some(0.514)), ratio(Some(0.00244)), ratio(None)),
            ("1605x".into(), "0.51x".into(), "0.0024x".into(), "—".into())
        );
        let t = format_table(&r);
        assert!(t.contains("| gla | 32 |"), "{t}");
        let bad = DecodeBench { mixers: vec!["nope".into()], ..b.clone() };
        assert!(bad.run(|_| {}).unwrap_err().to_string().contains("--mixers"));
        let bad = DecodeBench { contexts: vec![0], ..b };
        assert!(bad.validate().unwrap_err().to_string().contains("--contexts"));
    }
}
