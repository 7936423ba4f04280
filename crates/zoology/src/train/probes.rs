//! Evaluation probes of text runs (issue 21): at every evaluation of a run whose test data
//! holds a `text` segment, measures of in-context copying are recorded beside the
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
//! - **Copy score on text**: the same, with the first half of each of the first `n` validation
//!   windows as the string (`copy_text_accuracy`, `copy_text_loss`, `copy_text_first_half_loss`):
//!   copying natural text the model knows, which a small model can learn long before it copies
//!   strings of rare tokens.
//! - **Copy score on text, short range**: a text chunk of [`NEAR`] = 16 tokens placed twice at
//!   the end of each of those validation windows ([`CopyProbe::text_at_distance`]; when
//!   L ≥ 32): `copy_near_accuracy`, `copy_near_loss` on the repeat, `copy_near_first_loss` on
//!   the first copy. Attention learns this long before it copies from L/2 back.
//! - **Validation loss by label**: the first `n` windows of the text test segment, each target
//!   labelled AR hit / first occurrence / other ([`crate::text::arhits::label_window`]);
//!   `ar_hit_loss`, `first_occurrence_loss`, `other_loss` (mean nats per label) and
//!   `ar_hit_fraction`.
//!
//! The probe sequences are fixed by the run's seed, so every evaluation and every model of the
//! same config sees the same tokens.
//!
//! [`CopyProbe`] is the copy score on its own, with the first half drawn from a
//! [`CopySource`]: `zoology arhits` scores every trained model on three (random tokens as
//! above; distinct tokens among the training split's most frequent, which a small model has
//! embeddings for; the start of a validation window, i.e. copying natural text), because a
//! model can copy text it knows long before it copies strings of rare tokens.

use crate::device::Precision;
use crate::model::LanguageModel;
use crate::tasks::{mix_seed, Segment, IGNORE};
use crate::text::arhits::{label_window, Label};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// Where the first half of a copy probe's sequences comes from (`zoology arhits` scores all
/// three; the training-time probe is [`CopySource::Uniform`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopySource {
    /// Distinct tokens drawn uniformly from the whole vocabulary (Olsson et al.'s test). Rare
    /// tokens, whose embeddings a small model has barely trained, make it the hardest form.
    Uniform,
    /// Distinct tokens drawn uniformly from the `4h` most frequent tokens of the training split:
    /// the same test on tokens the model knows.
    Frequent,
    /// The first `h` tokens of a validation window: copying natural text, as on AR hits.
    Text,
}

impl CopySource {
    pub const ALL: [CopySource; 3] = [CopySource::Uniform, CopySource::Frequent, CopySource::Text];
    pub fn describe(self) -> &'static str {
        match self {
            CopySource::Uniform => "random tokens",
            CopySource::Frequent => "frequent tokens",
            CopySource::Text => "repeated text",
        }
    }
}

/// What a copy probe measured (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CopyScore {
    /// Share of the repeat's copy targets the argmax gets right.
    pub accuracy: f64,
    /// Mean cross-entropy (nats) on the repeat's copy targets.
    pub loss: f64,
    /// The same on the first half's targets: the contrast (no copy can predict them).
    pub first_half_loss: f64,
}

/// Sequences made of a first half repeated once: `x_0 … x_{h−1} x_0 … x_{h−1}` (one more token
/// when L is odd), with the targets of the repeat that a copy predicts and those of the first
/// half (tensors on one device).
pub struct CopyProbe {
    x: Tensor,
    /// Targets of the scored positions of the repeat (IGNORE elsewhere).
    y: Tensor,
    /// Targets of the first half (IGNORE elsewhere).
    first_y: Tensor,
}

impl CopyProbe {
    /// One sequence of length `l` per first half (each `⌊l/2⌋` tokens); the padding token(s)
    /// after the repeat are drawn uniformly from `0..vocab`.
    pub fn from_halves(halves: &[Vec<i64>], l: usize, vocab: usize, rng: &mut ChaCha8Rng, device: Device) -> Self {
        let mut it = halves.iter();
        Self::build(halves.len(), l, device, |_| it.next().expect("one half per sequence").clone(), vocab, rng)
    }

    /// `n` sequences whose first halves are `⌊l/2⌋` distinct tokens drawn uniformly from `pool`
    /// (with replacement only when the pool is smaller than a half).
    pub fn random(pool: &[i64], n: usize, l: usize, vocab: usize, rng: &mut ChaCha8Rng, device: Device) -> Self {
        let h = l / 2;
        let draw = |rng: &mut ChaCha8Rng| -> Vec<i64> {
            if pool.len() >= h {
                rand::seq::index::sample(rng, pool.len(), h).into_iter().map(|i| pool[i]).collect()
            } else {
                (0..h).map(|_| pool[rng.gen_range(0..pool.len())]).collect()
            }
        };
        Self::build(n, l, device, draw, vocab, rng)
    }

    /// A text chunk repeated at distance `p` at the end of natural context: in each window
    /// (`L + 1` tokens), the last `2p` tokens are replaced by a chunk of `p` tokens twice (the
    /// chunk: the start of `chunks[i]`, text from elsewhere). Scored on the second copy's
    /// targets after its first token (`p − 1` of them: predicting chunk[j] from chunk[j − 1] seen
    /// `p` tokens earlier), against the same targets of the first copy, which follow natural
    /// context just as the second does: a model that copies at distance `p` gains on the repeat,
    /// one that does not gains nothing. Needs `2 ≤ p` and `2p ≤ L`.
    pub fn text_at_distance(windows: &[&[u32]], chunks: &[&[u32]], p: usize, device: Device) -> Self {
        let l = windows[0].len() - 1;
        assert!(p >= 2 && 2 * p <= l, "a repeat at distance {p} needs 2 ≤ p ≤ L/2 (L = {l})");
        let a = l + 1 - p; // the second copy's first position in the window
        let (mut x, mut y, mut y1) = (vec![], vec![], vec![]);
        for (w, c) in windows.iter().zip(chunks) {
            let mut s: Vec<i64> = w.iter().map(|&t| t as i64).collect();
            for j in 0..p {
                s[a - p + j] = c[j] as i64;
                s[a + j] = c[j] as i64;
            }
            for t in 0..l {
                x.push(s[t]);
                y.push(if t >= a { s[t + 1] } else { IGNORE as i64 });
                y1.push(if t >= a - p && t + 1 < a { s[t + 1] } else { IGNORE as i64 });
            }
        }
        let shape = [windows.len().min(chunks.len()) as i64, l as i64];
        let t = |v: &[i64]| Tensor::from_slice(v).view(shape).to_device(device);
        CopyProbe { x: t(&x), y: t(&y), first_y: t(&y1) }
    }

    /// `n` sequences, each `half(rng)` repeated then padded from `0..vocab`, drawn in that
    /// order sequence by sequence (so the training probe's tokens stay fixed by the run's seed).
    fn build(
        n: usize,
        l: usize,
        device: Device,
        mut half: impl FnMut(&mut ChaCha8Rng) -> Vec<i64>,
        vocab: usize,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let h = l / 2;
        let (mut x, mut y, mut y1) = (vec![], vec![], vec![]);
        for _ in 0..n {
            let first = half(rng);
            assert_eq!(first.len(), h, "a copy probe's first half has ⌊L/2⌋ tokens");
            let mut s: Vec<i64> = first.iter().chain(first.iter()).copied().collect();
            while s.len() < l + 1 {
                s.push(rng.gen_range(0..vocab as i64));
            }
            for t in 0..l {
                x.push(s[t]);
                let copyable = t >= h && t + 1 < 2 * h; // targets x_1 … x_{h−1} of the repeat
                y.push(if copyable { s[t + 1] } else { IGNORE as i64 });
                y1.push(if t + 1 < h { s[t + 1] } else { IGNORE as i64 });
            }
        }
        let shape = [n as i64, l as i64];
        let t = |v: &[i64]| Tensor::from_slice(v).view(shape).to_device(device);
        CopyProbe { x: t(&x), y: t(&y), first_y: t(&y1) }
    }

    /// The score of any predictor `logits: [n, L] tokens → [n, L, V]`.
    pub fn evaluate_with(&self, logits: impl Fn(&Tensor) -> Tensor) -> CopyScore {
        let _g = tch::no_grad_guard();
        // the two target sets are disjoint: one pass scores both
        let mask = self.y.ne(IGNORE as i64);
        let both = self.y.where_self(&mask, &self.first_y);
        let (nll, pred) = nll_and_argmax(&logits(&self.x), &both);
        let scored = mask.sum(Kind::Float).double_value(&[]).max(1.0);
        let correct = pred.eq_tensor(&self.y).logical_and(&mask).sum(Kind::Float).double_value(&[]);
        let loss = (&nll * mask.to_kind(Kind::Float)).sum(Kind::Float).double_value(&[]) / scored;
        let m1 = self.first_y.ne(IGNORE as i64).to_kind(Kind::Float);
        let first = (&nll * &m1).sum(Kind::Float).double_value(&[]) / m1.sum(Kind::Float).double_value(&[]).max(1.0);
        CopyScore { accuracy: correct / scored, loss, first_half_loss: first }
    }
}

/// Per-target negative log-likelihood `[n, L]` of `y` (IGNORE targets read token 0) and the
/// argmax prediction.
fn nll_and_argmax(logits: &Tensor, y: &Tensor) -> (Tensor, Tensor) {
    let logits = logits.to_kind(Kind::Float);
    let logp = logits.log_softmax(-1, Kind::Float);
    let nll = logp.gather(2, &y.clamp_min(0).unsqueeze(-1), false).squeeze_dim(-1).neg();
    (nll, logits.argmax(-1, false))
}

/// The distance of the training-time short-range text-repeat probe (`copy_near_*`).
pub const NEAR: usize = 16;

/// The probes of one run (tensors on the run's device).
pub struct TextProbes {
    copy: CopyProbe,
    /// The copy probe on natural text: the first half of each validation window, repeated.
    copy_text: CopyProbe,
    /// A text chunk repeated [`NEAR`] tokens later at the end of each validation window (when
    /// L ≥ 2·NEAR): short-range copying, which a small model learns first.
    copy_near: Option<CopyProbe>,
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
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, 31_000_000));
        let pool: Vec<i64> = (0..vocab as i64).collect();
        let copy = CopyProbe::random(&pool, n, l, vocab, &mut rng, device);
        // validation windows: inputs s_0 … s_{L−1}, targets s_1 … s_L
        let mut labels = Vec::with_capacity(n_val * l);
        let mut windows: Vec<Vec<u32>> = Vec::with_capacity(n_val);
        for i in 0..n_val {
            let (inp, tgt) = seg.example(i);
            let window: Vec<u32> = inp.iter().chain(tgt.last()).map(|&v| v as u32).collect();
            labels.extend(label_window(&window).into_iter().map(|tl| tl.label));
            windows.push(window);
        }
        let ctx: Vec<&[u32]> = windows.iter().map(|w| w.as_slice()).collect();
        let chunks: Vec<&[u32]> = ctx.iter().rev().copied().collect();
        let copy_near = (2 * NEAR <= l).then(|| CopyProbe::text_at_distance(&ctx, &chunks, NEAR, device));
        let (vx, vy) = seg.first(n_val).to_tensors(device);
        // its own stream, so that the random probe's tokens stay those of the first form
        let mut text_rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, 31_000_001));
        let halves: Vec<Vec<i64>> =
            (0..n_val).map(|i| seg.example(i).0[..l / 2].iter().map(|&t| t as i64).collect()).collect();
        let copy_text = CopyProbe::from_halves(&halves, l, vocab, &mut text_rng, device);
        Some(TextProbes { copy, copy_text, copy_near, val_x: vx, val_y: vy, labels })
    }

    /// The probes' metrics for `model` (evaluation mode, no gradients, in `precision`).
    pub fn evaluate(&self, model: &LanguageModel, precision: Precision) -> BTreeMap<String, f64> {
        let device = self.val_x.device();
        self.evaluate_with(|x| precision.autocast(device, || model.logits(x, false)))
    }

    /// The probes' metrics for any predictor `logits: [n, L] tokens → [n, L, V]`.
    pub fn evaluate_with(&self, logits: impl Fn(&Tensor) -> Tensor) -> BTreeMap<String, f64> {
        let _g = tch::no_grad_guard();
        let mut out = BTreeMap::new();
        let c = self.copy.evaluate_with(&logits);
        out.insert("copy_accuracy".into(), c.accuracy);
        out.insert("copy_loss".into(), c.loss);
        out.insert("copy_first_half_loss".into(), c.first_half_loss);
        let c = self.copy_text.evaluate_with(&logits);
        out.insert("copy_text_accuracy".into(), c.accuracy);
        out.insert("copy_text_loss".into(), c.loss);
        out.insert("copy_text_first_half_loss".into(), c.first_half_loss);
        if let Some(p) = &self.copy_near {
            let c = p.evaluate_with(&logits);
            out.insert("copy_near_accuracy".into(), c.accuracy);
            out.insert("copy_near_loss".into(), c.loss);
            out.insert("copy_near_first_loss".into(), c.first_half_loss);
        }

        let (vnll, _) = nll_and_argmax(&logits(&self.val_x), &self.val_y);
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
        assert!((r["copy_text_loss"] - r["copy_text_first_half_loss"]).abs() < 0.5, "nor from text's: {r:?}");
        assert!((r["copy_near_loss"] - r["copy_near_first_loss"]).abs() < 0.5, "nor at short range: {r:?}");
        for k in ["ar_hit_loss", "first_occurrence_loss", "other_loss", "ar_hit_fraction"] {
            assert!(r.contains_key(k), "{k} missing: {r:?}");
        }
    }

    /// The induction rule as logits over `v` tokens: find the previous occurrence of the current
    /// token in the row and add `sure` to the logit of the token that followed it (uniform when
    /// there is none).
    fn induction_logits(x: &Tensor, v: usize, sure: f32) -> Tensor {
        let (n, l) = x.size2().unwrap();
        let (n, l) = (n as usize, l as usize);
        let xs = Vec::<i64>::try_from(&x.view([-1])).unwrap();
        let mut out = vec![0f32; n * l * v];
        for row in 0..n {
            let r = &xs[row * l..(row + 1) * l];
            for t in 0..l {
                if let Some(j) = (0..t).rev().find(|&j| r[j] == r[t]) {
                    out[(row * l + t) * v + r[j + 1] as usize] = sure;
                }
            }
        }
        Tensor::from_slice(&out).view([n as i64, l as i64, v as i64])
    }

    /// A hand-built model that copies scores high: its logits follow the induction rule. It
    /// gets every copy target right, at near-zero loss, while the first half stays at chance
    /// (`ln V`).
    #[test]
    fn a_hand_built_copying_model_scores_high() {
        let seg = text_segment(4, 32);
        let p = TextProbes::new(&[seg], 300, 8, 5, Device::Cpu).unwrap();
        let r = p.evaluate_with(|x| induction_logits(x, 300, 30.0));
        // on text (tokens repeat within a half) a less sure copier: the repeat is far easier
        let r5 = p.evaluate_with(|x| induction_logits(x, 300, 5.0));
        assert!(r5["copy_text_loss"] < r5["copy_text_first_half_loss"] - 2.0, "{r5:?}");
        assert!(r5["copy_near_loss"] < r5["copy_near_first_loss"] - 1.0, "{r5:?}");
        assert!(r["copy_accuracy"] > 0.99, "{r:?}");
        assert!(r["copy_loss"] < 1e-3, "{r:?}");
        assert!((r["copy_first_half_loss"] - (300f64).ln()).abs() < 0.05, "{r:?}");
    }

    /// Each half is scored on its own targets: a predictor sure of token 0 everywhere (never a
    /// target here: the vocabulary from 1) is ≈ 30 nats wrong on both halves. (The first form
    /// scored the first half against the repeat's masked targets, i.e. token 0, and reported
    /// ≈ 0 here.)
    #[test]
    fn the_first_half_is_scored_on_its_own_targets() {
        let (v, l) = (300usize, 32usize);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let pool: Vec<i64> = (1..v as i64).collect();
        let p = CopyProbe::random(&pool, 4, l, v, &mut rng, Device::Cpu);
        let sure_of_zero = |x: &Tensor| {
            let (n, l) = x.size2().unwrap();
            Tensor::zeros([n, l, v as i64], (Kind::Float, Device::Cpu)).index_fill(2, &Tensor::from(0i64), 30.0)
        };
        let c = p.evaluate_with(sure_of_zero);
        assert!(c.first_half_loss > 29.0 && c.loss > 29.0 && c.accuracy == 0.0, "{c:?}");
    }

    /// The repeat at distance p: the rule-based copier gains on the second copy at every p, a
    /// model blind to its context gains nothing; both copies score p − 1 targets per window,
    /// and the window outside the last 2p tokens is untouched.
    #[test]
    fn a_text_repeat_at_distance_p_separates_a_copier_from_a_blind_model() {
        let (v, l) = (300usize, 32usize);
        let seg = text_segment(16, l);
        let wins: Vec<Vec<u32>> = (0..8)
            .map(|i| {
                let (inp, tgt) = seg.example(i);
                inp.iter().chain(tgt.last()).map(|&t| t as u32).collect()
            })
            .collect();
        let w: Vec<&[u32]> = wins.iter().map(|v| v.as_slice()).collect();
        let chunks: Vec<&[u32]> = wins.iter().rev().map(|v| v.as_slice()).collect();
        let (_vs, blind) = model("d_model = 16\nn_layers = 1\nstate_mixer = \"mlp\"\nmixer = { name = \"sliding_window\", window = 1, window_convention = \"exact\" }", v as i64, l as i64);
        for p in [2usize, 4, 8, 16] {
            let probe = CopyProbe::text_at_distance(&w, &chunks, p, Device::Cpu);
            let n_scored = |t: &Tensor| t.ne(IGNORE as i64).sum(Kind::Int64).int64_value(&[]);
            assert_eq!(n_scored(&probe.y), 8 * (p as i64 - 1), "p = {p}");
            assert_eq!(n_scored(&probe.first_y), 8 * (p as i64 - 1), "p = {p}");
            let x0 = Vec::<i64>::try_from(&probe.x.get(0)).unwrap();
            assert!(x0[..l + 1 - 2 * p].iter().zip(&wins[0]).all(|(a, &b)| *a == b as i64), "context kept, p = {p}");
            assert_eq!(x0[l + 1 - 2 * p..l - p], x0[l + 1 - p..l], "the chunk twice (inputs), p = {p}");
            let c = probe.evaluate_with(|x| induction_logits(x, v, 5.0));
            assert!(c.loss < c.first_half_loss - 1.0 && c.accuracy > 0.5, "copier, p = {p}: {c:?}");
            let b = probe.evaluate_with(|x| blind.logits(x, false));
            assert!((b.loss - b.first_half_loss).abs() < 0.5, "blind, p = {p}: {b:?}");
        }
    }

    /// The training probe's tokens are those of its first form (half, padding, half, padding,
    /// … from one stream), so that runs resumed by a newer binary keep scoring the same
    /// sequences: rebuilt here without [`CopyProbe`].
    #[test]
    fn the_training_probe_keeps_its_tokens() {
        let (v, n, l, seed) = (300usize, 5usize, 33usize, 9u64);
        let seg = text_segment(4, l);
        let p = TextProbes::new(&[seg], v, n, seed, Device::Cpu).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, 31_000_000));
        let mut x = vec![];
        for _ in 0..n {
            let half: Vec<i64> = rand::seq::index::sample(&mut rng, v, l / 2).into_iter().map(|t| t as i64).collect();
            let mut s: Vec<i64> = half.iter().chain(half.iter()).copied().collect();
            while s.len() < l + 1 {
                s.push(rng.gen_range(0..v as i64));
            }
            x.extend_from_slice(&s[..l]);
        }
        assert_eq!(Vec::<i64>::try_from(&p.copy.x.view([-1])).unwrap(), x);
    }

    /// Every source: the copier's repeat is far easier than its first half (text repeats
    /// tokens within a half, so the rule is not always right there); a model blind to its
    /// context gains nothing from the repeat. Frequent-token halves come from the pool only.
    #[test]
    fn every_copy_source_separates_a_copier_from_a_blind_model() {
        let (v, l) = (300usize, 32usize);
        let seg = text_segment(16, l);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let pool: Vec<i64> = (100..164).collect();
        let frequent = CopyProbe::random(&pool, 8, l, v, &mut rng, Device::Cpu);
        let fx = Vec::<i64>::try_from(&frequent.x.narrow(1, 0, 2 * (l as i64 / 2)).reshape([-1])).unwrap();
        assert!(fx.iter().all(|t| pool.contains(t)), "a frequent-token half outside the pool");
        let halves: Vec<Vec<i64>> =
            (0..8).map(|i| seg.example(i).0[..l / 2].iter().map(|&t| t as i64).collect()).collect();
        let text = CopyProbe::from_halves(&halves, l, v, &mut rng, Device::Cpu);
        let (_vs, blind) = model("d_model = 16\nn_layers = 1\nstate_mixer = \"mlp\"\nmixer = { name = \"sliding_window\", window = 1, window_convention = \"exact\" }", v as i64, l as i64);
        for (name, p) in [("frequent", &frequent), ("text", &text)] {
            // not over-sure: text repeats tokens within a half, where the rule can be wrong
            let c = p.evaluate_with(|x| induction_logits(x, v, 5.0));
            assert!(c.accuracy > 0.6 && c.loss < c.first_half_loss - 2.0, "{name}: {c:?}");
            let b = p.evaluate_with(|x| blind.logits(x, false));
            assert!(b.accuracy < 0.2 && (b.loss - b.first_half_loss).abs() < 0.5, "{name}, blind: {b:?}");
        }
    }
}
