//! Evaluation probes of text runs (issue 21): at every evaluation of a run whose test data
//! holds a `text` segment, two measures of in-context copying are recorded beside the
//! validation loss, so that the training curves show when (and whether) a model learns to copy
//! and when the AR-hit gap opens. Both go into the evaluation's `metrics` (metrics.jsonl, and
//! summary.json's `final_metrics`):
//!
//! - **Copy score** (Olsson et al. 2022, "repeated random tokens"): `n` sequences of `L` tokens,
//!   each a string of `h = ⌊L/2⌋` distinct tokens drawn uniformly from the vocabulary (with
//!   replacement only if V < h), then repeated
//!   (`r_0 … r_{h−1} r_0 … r_{h−1}`, one more random token when L is odd). Scored on the targets
//!   of the repeat that a copy of the first half predicts: `r_1 … r_{h−1}` of the second half
//!   (predicted at positions `h … 2h−2`, each preceded by its trigger `r_{i−1}`). `copy_accuracy`
//!   is the share of those targets the argmax gets right (chance ≈ 1/V; a model that copies is
//!   near 1), `copy_loss` their mean cross-entropy in nats (chance `ln V`), `copy_first_half_loss`
//!   the same on the first half's targets, which no model can predict (the contrast).
//! - **Validation loss by label**: the first `n` windows of the text test segment, each target
//!   labelled AR hit / first occurrence / other ([`crate::text::arhits::label_window`]);
//!   `ar_hit_loss`, `first_occurrence_loss`, `other_loss` (mean nats per label) and
//!   `ar_hit_fraction`.
//!
//! The probe sequences are fixed by the run's seed, so every evaluation and every model of the
//! same config sees the same tokens.

use crate::device::Precision;
use crate::model::LanguageModel;
use crate::tasks::{mix_seed, Segment, IGNORE};
use crate::text::arhits::{label_window, Label};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// The probes of one run (tensors on the run's device).
pub struct TextProbes {
    copy_x: Tensor,
    /// Targets of the copy probe's scored positions (IGNORE elsewhere).
    copy_y: Tensor,
    /// Targets of the first half (IGNORE elsewhere): the unpredictable contrast.
    first_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    /// Label of every validation target, row-major `[n, L]`.
    labels: Vec<Label>,
}

impl TextProbes {
    /// The probes for a run whose test segments include a `text` one (else `None`): `n`
    /// sequences each (capped by the segment's size), built from `seed`.
    pub fn new(test: &[Segment], vocab: usize, n: usize, seed: u64, device: Device) -> Option<Self> {
        let seg = test.iter().find(|s| s.task == "text")?;
        let n_val = n.min(seg.n);
        if n == 0 || n_val == 0 || seg.seq_len < 4 {
            return None;
        }
        let l = seg.seq_len;
        // copy probe
        let h = l / 2;
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, 31_000_000));
        let (mut x, mut y, mut y1) = (vec![], vec![], vec![]);
        for _ in 0..n {
            // distinct tokens when the vocabulary allows, so that every copy target has exactly
            // one earlier occurrence of its trigger
            let half: Vec<i64> = if vocab >= h {
                rand::seq::index::sample(&mut rng, vocab, h).into_iter().map(|v| v as i64).collect()
            } else {
                (0..h).map(|_| rng.gen_range(0..vocab as i64)).collect()
            };
            let mut s: Vec<i64> = half.iter().chain(half.iter()).copied().collect();
            while s.len() < l + 1 {
                s.push(rng.gen_range(0..vocab as i64));
            }
            for t in 0..l {
                x.push(s[t]);
                let copyable = t >= h && t + 1 < 2 * h; // targets r_1 … r_{h−1} of the repeat
                y.push(if copyable { s[t + 1] } else { IGNORE as i64 });
                y1.push(if t + 1 < h { s[t + 1] } else { IGNORE as i64 });
            }
        }
        let shape = [n as i64, l as i64];
        let t = |v: &[i64]| Tensor::from_slice(v).view(shape).to_device(device);
        // validation windows: inputs s_0 … s_{L−1}, targets s_1 … s_L
        let mut labels = Vec::with_capacity(n_val * l);
        for i in 0..n_val {
            let (inp, tgt) = seg.example(i);
            let window: Vec<u32> = inp.iter().chain(tgt.last()).map(|&v| v as u32).collect();
            labels.extend(label_window(&window).into_iter().map(|tl| tl.label));
        }
        let (vx, vy) = seg.first(n_val).to_tensors(device);
        Some(TextProbes { copy_x: t(&x), copy_y: t(&y), first_y: t(&y1), val_x: vx, val_y: vy, labels })
    }

    /// The probes' metrics for `model` (evaluation mode, no gradients, in `precision`).
    pub fn evaluate(&self, model: &LanguageModel, precision: Precision) -> BTreeMap<String, f64> {
        let device = self.copy_x.device();
        self.evaluate_with(|x| precision.autocast(device, || model.logits(x, false)))
    }

    /// The probes' metrics for any predictor `logits: [n, L] tokens → [n, L, V]`.
    pub fn evaluate_with(&self, logits: impl Fn(&Tensor) -> Tensor) -> BTreeMap<String, f64> {
        let _g = tch::no_grad_guard();
        let nll_of = |x: &Tensor, y: &Tensor| {
            let logits = logits(x).to_kind(Kind::Float);
            let logp = logits.log_softmax(-1, Kind::Float);
            let safe = y.clamp_min(0);
            let nll = logp.gather(2, &safe.unsqueeze(-1), false).squeeze_dim(-1).neg();
            (nll, logits.argmax(-1, false))
        };
        let mut out = BTreeMap::new();
        let (nll, pred) = nll_of(&self.copy_x, &self.copy_y);
        let mask = self.copy_y.ne(IGNORE as i64);
        let scored = mask.sum(Kind::Float).double_value(&[]).max(1.0);
        let correct = pred.eq_tensor(&self.copy_y).logical_and(&mask).sum(Kind::Float).double_value(&[]);
        out.insert("copy_accuracy".into(), correct / scored);
        out.insert("copy_loss".into(), (&nll * mask.to_kind(Kind::Float)).sum(Kind::Float).double_value(&[]) / scored);
        let m1 = self.first_y.ne(IGNORE as i64).to_kind(Kind::Float);
        let first = (&nll * &m1).sum(Kind::Float).double_value(&[]) / m1.sum(Kind::Float).double_value(&[]).max(1.0);
        out.insert("copy_first_half_loss".into(), first);

        let (vnll, _) = nll_of(&self.val_x, &self.val_y);
        let vnll = Vec::<f32>::try_from(&vnll.view([-1]).to_device(Device::Cpu)).expect("f32 losses");
        let mut sums: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for (l, &v) in self.labels.iter().zip(&vnll) {
            let e = sums.entry(l.key()).or_insert((0.0, 0));
            e.0 += v as f64;
            e.1 += 1;
        }
        for (name, (s, k)) in &sums {
            out.insert(format!("{name}_loss"), s / *k as f64);
        }
        let hits = sums.get(Label::ArHit.key()).map_or(0, |e| e.1);
        out.insert("ar_hit_fraction".into(), hits as f64 / self.labels.len().max(1) as f64);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;
    use crate::tasks::{Split, TaskConfig};

    fn text_segment(n: usize, l: usize) -> Segment {
        let t: toml::Table =
            toml::from_str(&format!("seq_len = {l}\nnum_examples = {n}\ncorpus = \"fixture\"\ntokenizer = \"bpe300\""))
                .unwrap();
        TaskConfig::from_fields("text", &t, "test").unwrap().generate_split(300, 3, Split::Test)
    }

    fn model(cfg: &str, vocab: i64, l: i64) -> (tch::nn::VarStore, LanguageModel) {
        let cfg: ModelConfig = toml::from_str(cfg).unwrap();
        tch::manual_seed(0);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let m = LanguageModel::new(&vs.root(), &cfg, vocab, l).unwrap();
        (vs, m)
    }

    /// A model that cannot see its context (every position's output is a function of its own
    /// token only: a sliding window of one token never reaches back) scores at chance on the copy probe.
    #[test]
    fn a_model_blind_to_its_context_copies_at_chance() {
        let seg = text_segment(16, 32);
        let p = TextProbes::new(&[seg], 300, 32, 1, Device::Cpu).unwrap();
        let (_vs, m) = model("d_model = 16\nn_layers = 1\nstate_mixer = \"mlp\"\nmixer = { name = \"sliding_window\", window = 1, window_convention = \"exact\" }", 300, 32);
        let r = p.evaluate(&m, Precision::Fp32);
        assert!(r["copy_accuracy"] < 0.05, "{r:?}");
        assert!((r["copy_loss"] - r["copy_first_half_loss"]).abs() < 0.5, "no benefit from the repeat: {r:?}");
        for k in ["ar_hit_loss", "first_occurrence_loss", "other_loss", "ar_hit_fraction"] {
            assert!(r.contains_key(k), "{k} missing: {r:?}");
        }
    }

    /// A hand-built model that copies scores high: its logits put all mass on the induction
    /// rule's prediction (find the previous occurrence of the current token in the row and
    /// predict the token that followed it; uniform when there is none). It gets every copy
    /// target right, at near-zero loss, while the first half stays at chance (`ln V`).
    #[test]
    fn a_hand_built_copying_model_scores_high() {
        let seg = text_segment(4, 32);
        let p = TextProbes::new(&[seg], 300, 8, 5, Device::Cpu).unwrap();
        let induction = |x: &Tensor| {
            let (n, l) = x.size2().unwrap();
            let xs = Vec::<i64>::try_from(&x.view([-1])).unwrap();
            let mut out = vec![0f32; (n * l * 300) as usize];
            for row in 0..n as usize {
                for t in 0..l as usize {
                    let cell = &mut out[(row * l as usize + t) * 300..][..300];
                    let cur = xs[row * l as usize + t];
                    match (0..t).rev().find(|&j| xs[row * l as usize + j] == cur) {
                        Some(j) => cell[xs[row * l as usize + j + 1] as usize] = 30.0,
                        None => {}
                    }
                }
            }
            Tensor::from_slice(&out).view([n, l, 300])
        };
        let r = p.evaluate_with(induction);
        assert!(r["copy_accuracy"] > 0.99, "{r:?}");
        assert!(r["copy_loss"] < 1e-3, "{r:?}");
        assert!((r["copy_first_half_loss"] - (300f64).ln()).abs() < 0.05, "{r:?}");
    }
}
