//! AR hits: which tokens of real text an associative-recall mechanism could predict, and how a
//! model's loss splits over them (Zoology, Arora et al. 2023, section 3).
//!
//! # Definitions (per window; nothing crosses a window boundary)
//! A window is the `L + 1` tokens `s_0 … s_L` whose first `L` are the inputs and last `L` the
//! targets (see [`crate::text::dataset`]). Target `t` is the prediction of `s_{t+1}` from
//! `s_0 … s_t`; its **bigram** is `(s_t, s_{t+1})`. Every target has a bigram, so every target
//! gets exactly one label:
//! - **AR hit**: the bigram occurred earlier in the window, i.e. `(s_j, s_{j+1}) = (s_t,
//!   s_{t+1})` for some `j < t`. The earlier occurrence lies wholly in the visible context
//!   (`j + 1 ≤ t`); overlapping occurrences count (`a a a`: the second `(a, a)` is a hit).
//! - **First occurrence**: the bigram does not occur earlier but occurs again later in the
//!   window: the "write" that later AR hits "read". Exactly the earliest occurrence of each
//!   bigram that occurs two or more times.
//! - **Other**: the bigram occurs only once in the window.
//!
//! The **distance** of an AR hit is `t − j` for the most recent earlier occurrence `j`: the
//! number of tokens between the two occurrences' second tokens (1 for `a a a`).
//!
//! **Bigram frequency** is the number of times the bigram occurs in the training split's token
//! stream (all consecutive pairs). Buckets are built from the training split only, so they are
//! the same for every model (see [`FreqBuckets`]).
//!
//! # Perplexity by slice
//! A slice keeps `Σ nll` and its token count; its perplexity is `exp(Σ nll / n)`. Slices that
//! partition the tokens recombine exactly: `mean_nll(all) = Σ_s (n_s / n) · mean_nll(s)`, so
//! `ppl(all) = Π_s ppl(s)^(n_s / n)` (a token-weighted geometric mean, not an arithmetic one).
//!
//! # Share of a gap explained by a slice
//! For a reference model R (attention) and a model M evaluated on the same windows, with
//! per-token losses `ℓ_R(t)`, `ℓ_M(t)`:
//! `share(S) = Σ_{t∈S} (ℓ_M(t) − ℓ_R(t)) / Σ_{all t} (ℓ_M(t) − ℓ_R(t))`.
//! The denominator is `n · ln(ppl_M / ppl_R)`: the whole log-perplexity gap in nats summed
//! over tokens. Shares of the three labels sum to 1; a share above 1 (or below 0) means the
//! other slices together favour M. This is the reading of the paper's "82% of the gap is AR":
//! the fraction of the total loss difference that comes from AR-hit tokens.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{Error, Result};

/// The label of one target position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    ArHit,
    FirstOccurrence,
    Other,
}

impl Label {
    pub const ALL: [Label; 3] = [Label::ArHit, Label::FirstOccurrence, Label::Other];
    pub fn name(self) -> &'static str {
        match self {
            Label::ArHit => "AR hits",
            Label::FirstOccurrence => "first occurrences",
            Label::Other => "other",
        }
    }
    /// The label as a metric-name stem (`ar_hit`, `first_occurrence`, `other`).
    pub fn key(self) -> &'static str {
        match self {
            Label::ArHit => "ar_hit",
            Label::FirstOccurrence => "first_occurrence",
            Label::Other => "other",
        }
    }
}

/// A target's label and, for an AR hit, the distance back to the most recent earlier
/// occurrence of its bigram (0 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetLabel {
    pub label: Label,
    pub distance: u32,
}

/// A multiplicative hash for packed bigram keys (the std SipHash is 3x slower here).
#[derive(Default)]
pub struct U64Hasher(u64);
impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        self.0 ^= self.0 >> 32;
    }
}
type FastMap<V> = HashMap<u64, V, BuildHasherDefault<U64Hasher>>;

fn key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// Labels the targets of one window (`seq` = the window's `L + 1` tokens; returns `L` labels).
/// Reuses its hash map across calls.
#[derive(Default)]
pub struct Labeler {
    seen: FastMap<(u32, u32)>, // bigram → (first target index, most recent target index)
}

impl Labeler {
    pub fn label(&mut self, seq: &[u32], out: &mut Vec<TargetLabel>) {
        self.seen.clear();
        out.clear();
        for t in 0..seq.len().saturating_sub(1) {
            let k = key(seq[t], seq[t + 1]);
            match self.seen.get_mut(&k) {
                Some((first, last)) => {
                    out.push(TargetLabel { label: Label::ArHit, distance: (t as u32) - *last });
                    out[*first as usize].label = Label::FirstOccurrence;
                    *last = t as u32;
                }
                None => {
                    self.seen.insert(k, (t as u32, t as u32));
                    out.push(TargetLabel { label: Label::Other, distance: 0 });
                }
            }
        }
    }
}

/// Labels of one window's targets (see the module docs).
pub fn label_window(seq: &[u32]) -> Vec<TargetLabel> {
    let mut out = vec![];
    Labeler::default().label(seq, &mut out);
    out
}

/// Counts of every bigram of a token stream (the training split).
#[derive(Debug, Clone, Default)]
pub struct BigramCounts {
    map: FastMap<u32>,
    /// Number of bigram occurrences (stream length − 1).
    pub total: u64,
}

impl BigramCounts {
    pub fn from_tokens(tokens: &[u32]) -> Self {
        let mut map: FastMap<u32> = FastMap::default();
        for w in tokens.windows(2) {
            *map.entry(key(w[0], w[1])).or_insert(0) += 1;
        }
        BigramCounts { map, total: tokens.len().saturating_sub(1) as u64 }
    }
    /// Occurrences of `(a, b)`.
    pub fn get(&self, a: u32, b: u32) -> u64 {
        self.map.get(&key(a, b)).copied().unwrap_or(0) as u64
    }
    /// Number of distinct bigrams.
    pub fn distinct(&self) -> usize {
        self.map.len()
    }
    /// The count of every distinct bigram (unordered).
    pub fn counts(&self) -> impl Iterator<Item = u64> + '_ {
        self.map.values().map(|&c| c as u64)
    }
}

/// Buckets of training-split bigram count. Bucket 0 is "unseen in training" (count 0); bucket
/// `j ≥ 1` holds counts in `(upper[j−2], upper[j−1]]` (with `upper[−1] = 0`); the last upper
/// bound is `u64::MAX`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FreqBuckets {
    /// Inclusive upper count of buckets 1..; strictly increasing, last = `u64::MAX`.
    pub upper: Vec<u64>,
    /// Bigram occurrences in the training split (for relative frequencies).
    pub train_bigrams: u64,
    /// How the edges were chosen, for tables and plots.
    pub scheme: String,
}

impl FreqBuckets {
    /// `k` buckets of equal training mass: sort the training bigrams by count; bucket 1 holds
    /// the rarest bigrams that together make up (about) the first `1/k` of all training bigram
    /// occurrences, bucket k the most frequent. Edges fall on whole counts, so ties can make
    /// buckets unequal (equal edges are merged); [`FreqBuckets::train_share`] gives the exact
    /// shares.
    pub fn quantiles(counts: &BigramCounts, k: usize) -> Result<Self> {
        if k == 0 {
            return Err(Error::Other("frequency buckets: k must be ≥ 1".into()));
        }
        if counts.total == 0 {
            return Err(Error::Data("frequency buckets: the training split has no bigrams".into()));
        }
        let mut c: Vec<u64> = counts.counts().collect();
        c.sort_unstable();
        let mut upper = vec![];
        let (mut cum, mut j) = (0u64, 1usize);
        for &x in &c {
            cum += x;
            while j < k && cum as f64 >= j as f64 * counts.total as f64 / k as f64 {
                if upper.last() != Some(&x) {
                    upper.push(x);
                }
                j += 1;
            }
        }
        if upper.last() == Some(c.last().unwrap()) {
            upper.pop(); // the top edge would leave the last bucket empty
        }
        upper.push(u64::MAX);
        Ok(FreqBuckets {
            upper,
            train_bigrams: counts.total,
            scheme: format!("{k} quantile buckets of training bigram occurrences"),
        })
    }

    /// Buckets by relative frequency: edges in occurrences per million training bigrams
    /// (`[1, 10, 100]` → unseen, (0, 1], (1, 10], (10, 100], > 100 per million).
    pub fn per_million(counts: &BigramCounts, edges: &[f64]) -> Result<Self> {
        if edges.windows(2).any(|w| w[0] >= w[1]) || edges.iter().any(|&e| !(e > 0.0 && e.is_finite())) {
            return Err(Error::Other(format!(
                "frequency buckets: per-million edges must be positive and increasing (got {edges:?})"
            )));
        }
        let mut upper: Vec<u64> =
            edges.iter().map(|e| (e * counts.total as f64 / 1e6).floor() as u64).filter(|&u| u > 0).collect();
        upper.dedup();
        upper.push(u64::MAX);
        Ok(FreqBuckets {
            upper,
            train_bigrams: counts.total,
            scheme: format!("relative frequency per million training bigrams, edges {edges:?}"),
        })
    }

    /// Log-spaced buckets with the rare end resolved: training counts `1, 2–3, 4–7, …` (powers
    /// of two), then adjacent buckets merged, rarest first, until each holds at least
    /// `min_ar_hits` AR hits among the evaluated windows `windows` (so that every bucket's
    /// perplexity rests on enough tokens); a remainder too small is merged into the bucket below
    /// it. "Unseen in training" stays its own bucket whatever it holds.
    pub fn log_spaced<'w>(
        counts: &BigramCounts,
        windows: impl Iterator<Item = &'w [u32]>,
        min_ar_hits: u64,
    ) -> Result<Self> {
        if counts.total == 0 {
            return Err(Error::Data("frequency buckets: the training split has no bigrams".into()));
        }
        let max = counts.counts().max().unwrap_or(1);
        let mut fine = vec![];
        let mut u = 1u64;
        while u < max {
            fine.push(u);
            u = u.saturating_mul(2).saturating_add(1); // 1, 3, 7, 15, …: buckets 1, 2–3, 4–7, …
        }
        fine.push(u64::MAX);
        let fine = FreqBuckets { upper: fine, train_bigrams: counts.total, scheme: String::new() };
        // AR hits per fine bucket in the evaluated windows
        let mut hits = vec![0u64; fine.len()];
        let (mut labeler, mut labels) = (Labeler::default(), vec![]);
        for w in windows {
            labeler.label(w, &mut labels);
            for (t, l) in labels.iter().enumerate() {
                if l.label == Label::ArHit {
                    hits[fine.bucket(counts.get(w[t], w[t + 1]))] += 1;
                }
            }
        }
        let mut upper = vec![];
        let mut acc = 0u64;
        for b in 1..fine.len() {
            acc += hits[b];
            if acc >= min_ar_hits && b + 1 < fine.len() {
                upper.push(fine.upper[b - 1]);
                acc = 0;
            }
        }
        if acc < min_ar_hits && !upper.is_empty() {
            upper.pop(); // the remainder joins the bucket below
        }
        upper.push(u64::MAX);
        Ok(FreqBuckets {
            upper,
            train_bigrams: counts.total,
            scheme: format!("log-spaced training counts (powers of two), merged to ≥ {min_ar_hits} AR hits per bucket"),
        })
    }

    /// Number of buckets including "unseen".
    pub fn len(&self) -> usize {
        self.upper.len() + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn bucket(&self, count: u64) -> usize {
        if count == 0 {
            return 0;
        }
        1 + self.upper.partition_point(|&u| u < count)
    }
    /// `(lo, hi)` inclusive count range of bucket `b` (`hi = u64::MAX` for the last).
    pub fn range(&self, b: usize) -> (u64, u64) {
        match b {
            0 => (0, 0),
            _ => (if b == 1 { 1 } else { self.upper[b - 2] + 1 }, self.upper[b - 1]),
        }
    }
    /// Short labels: `unseen`, `1–4`, `5–37`, `≥38`.
    pub fn labels(&self) -> Vec<String> {
        (0..self.len())
            .map(|b| match self.range(b) {
                (0, 0) => "unseen".to_string(),
                (lo, u64::MAX) => format!("≥{lo}"),
                (lo, hi) if lo == hi => format!("{lo}"),
                (lo, hi) => format!("{lo}–{hi}"),
            })
            .collect()
    }
    /// Share of training bigram occurrences in each bucket (bucket 0 is 0).
    pub fn train_share(&self, counts: &BigramCounts) -> Vec<f64> {
        let mut s = vec![0u64; self.len()];
        for c in counts.counts() {
            s[self.bucket(c)] += c;
        }
        s.iter().map(|&x| x as f64 / counts.total.max(1) as f64).collect()
    }
}

/// Distance buckets `1, 2–3, 4–7, …` (powers of two) up to `max` (the context length).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistanceBuckets {
    /// `(lo, hi)` inclusive.
    pub ranges: Vec<(u32, u32)>,
}

impl DistanceBuckets {
    pub fn powers_of_two(max: u32) -> Self {
        let mut ranges = vec![];
        let mut lo = 1u32;
        while lo <= max.max(1) {
            let hi = (lo.saturating_mul(2) - 1).min(max.max(1));
            ranges.push((lo, hi));
            lo = lo.saturating_mul(2);
        }
        DistanceBuckets { ranges }
    }
    pub fn bucket(&self, d: u32) -> usize {
        self.ranges.partition_point(|&(_, hi)| hi < d).min(self.ranges.len() - 1)
    }
    pub fn labels(&self) -> Vec<String> {
        self.ranges.iter().map(|&(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}–{hi}") }).collect()
    }
}

/// Total loss and token count of a slice of target positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "SliceJson", from = "SliceJson")]
pub struct SliceStats {
    pub tokens: u64,
    /// Σ of per-token negative log-likelihood (nats), accumulated in f64.
    pub nll_sum: f64,
}

#[derive(Serialize, Deserialize)]
struct SliceJson {
    tokens: u64,
    nll_sum: f64,
    #[serde(default, skip_deserializing)]
    mean_nll: Option<f64>,
    #[serde(default, skip_deserializing)]
    perplexity: Option<f64>,
}
impl From<SliceStats> for SliceJson {
    fn from(s: SliceStats) -> Self {
        SliceJson { tokens: s.tokens, nll_sum: s.nll_sum, mean_nll: s.mean_nll(), perplexity: s.perplexity() }
    }
}
impl From<SliceJson> for SliceStats {
    fn from(j: SliceJson) -> Self {
        SliceStats { tokens: j.tokens, nll_sum: j.nll_sum }
    }
}

impl SliceStats {
    pub fn add(&mut self, nll: f64) {
        self.tokens += 1;
        self.nll_sum += nll;
    }
    pub fn merge(&mut self, o: &SliceStats) {
        self.tokens += o.tokens;
        self.nll_sum += o.nll_sum;
    }
    /// Token-weighted mean NLL, `None` for an empty slice.
    pub fn mean_nll(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.nll_sum / self.tokens as f64)
    }
    /// `exp(mean NLL)`, `None` for an empty slice.
    pub fn perplexity(&self) -> Option<f64> {
        self.mean_nll().map(f64::exp)
    }
}

/// One frequency bucket's slices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FreqRow {
    pub bucket: String,
    /// Inclusive training-count range.
    pub lo: u64,
    pub hi: u64,
    pub ar_hit: SliceStats,
    pub first_occurrence: SliceStats,
    pub other: SliceStats,
}

/// One distance bucket's AR hits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistanceRow {
    pub bucket: String,
    pub lo: u32,
    pub hi: u32,
    pub ar_hit: SliceStats,
}

/// Windows grouped by how many AR hits they hold (their number of recalls): the loss on those
/// windows' AR hits and on their other tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallRow {
    pub bucket: String,
    /// Inclusive range of AR hits per window.
    pub lo: u32,
    pub hi: u32,
    pub windows: u64,
    pub ar_hit: SliceStats,
    /// First occurrences and other tokens of the same windows.
    pub rest: SliceStats,
}

/// A model's loss on every slice of the evaluated windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArHitReport {
    pub windows: u64,
    pub seq_len: usize,
    pub all: SliceStats,
    pub ar_hit: SliceStats,
    pub first_occurrence: SliceStats,
    pub other: SliceStats,
    /// Bucket scheme (bucket 0 = unseen in training).
    pub freq_scheme: String,
    pub by_frequency: Vec<FreqRow>,
    pub ar_hit_by_distance: Vec<DistanceRow>,
    /// Windows by their AR-hit count (`0, 1, 2–3, 4–7, …`); absent in reports written before.
    #[serde(default)]
    pub by_recalls: Vec<RecallRow>,
}

impl ArHitReport {
    pub fn label(&self, l: Label) -> &SliceStats {
        match l {
            Label::ArHit => &self.ar_hit,
            Label::FirstOccurrence => &self.first_occurrence,
            Label::Other => &self.other,
        }
    }
}

/// Accumulates an [`ArHitReport`] window by window.
pub struct ArHitAnalyzer<'a> {
    counts: &'a BigramCounts,
    buckets: &'a FreqBuckets,
    dist: DistanceBuckets,
    labeler: Labeler,
    labels: Vec<TargetLabel>,
    report: ArHitReport,
}

impl<'a> ArHitAnalyzer<'a> {
    /// `counts` and `buckets` come from the training split; `seq_len` is the window's L.
    pub fn new(counts: &'a BigramCounts, buckets: &'a FreqBuckets, seq_len: usize) -> Self {
        let dist = DistanceBuckets::powers_of_two(seq_len as u32);
        let blabels = buckets.labels();
        let by_frequency = (0..buckets.len())
            .map(|b| {
                let (lo, hi) = buckets.range(b);
                FreqRow {
                    bucket: blabels[b].clone(),
                    lo,
                    hi,
                    ar_hit: Default::default(),
                    first_occurrence: Default::default(),
                    other: Default::default(),
                }
            })
            .collect();
        let ar_hit_by_distance = dist
            .ranges
            .iter()
            .zip(dist.labels())
            .map(|(&(lo, hi), bucket)| DistanceRow { bucket, lo, hi, ar_hit: Default::default() })
            .collect();
        let report = ArHitReport {
            windows: 0,
            seq_len,
            all: Default::default(),
            ar_hit: Default::default(),
            first_occurrence: Default::default(),
            other: Default::default(),
            freq_scheme: buckets.scheme.clone(),
            by_frequency,
            ar_hit_by_distance,
            by_recalls: recall_rows(seq_len as u32),
        };
        ArHitAnalyzer { counts, buckets, dist, labeler: Labeler::default(), labels: vec![], report }
    }

    /// Adds one window: its `L + 1` tokens and the model's `L` per-target losses (nats).
    pub fn add_window(&mut self, seq: &[u32], nll: &[f32]) -> Result<()> {
        if seq.len() != self.report.seq_len + 1 || nll.len() != self.report.seq_len {
            return Err(Error::Data(format!(
                "AR-hit analysis: a window of L = {} needs {} tokens and {} losses (got {} and {})",
                self.report.seq_len,
                self.report.seq_len + 1,
                self.report.seq_len,
                seq.len(),
                nll.len()
            )));
        }
        if let Some(t) = nll.iter().position(|x| !x.is_finite()) {
            return Err(Error::Data(format!(
                "AR-hit analysis: loss at target {t} is {} (the model diverged?)",
                nll[t]
            )));
        }
        self.labeler.label(seq, &mut self.labels);
        let r = &mut self.report;
        r.windows += 1;
        let recalls = self.labels.iter().filter(|l| l.label == Label::ArHit).count() as u32;
        let rb = r.by_recalls.partition_point(|row| row.hi < recalls).min(r.by_recalls.len() - 1);
        r.by_recalls[rb].windows += 1;
        for (lab, &l) in self.labels.iter().zip(nll) {
            let row = &mut r.by_recalls[rb];
            if lab.label == Label::ArHit {
                row.ar_hit.add(l as f64);
            } else {
                row.rest.add(l as f64);
            }
        }
        for (t, (lab, &l)) in self.labels.iter().zip(nll).enumerate() {
            let l = l as f64;
            r.all.add(l);
            let row = &mut r.by_frequency[self.buckets.bucket(self.counts.get(seq[t], seq[t + 1]))];
            match lab.label {
                Label::ArHit => {
                    r.ar_hit.add(l);
                    row.ar_hit.add(l);
                    r.ar_hit_by_distance[self.dist.bucket(lab.distance)].ar_hit.add(l);
                }
                Label::FirstOccurrence => {
                    r.first_occurrence.add(l);
                    row.first_occurrence.add(l);
                }
                Label::Other => {
                    r.other.add(l);
                    row.other.add(l);
                }
            }
        }
        Ok(())
    }

    pub fn finish(self) -> ArHitReport {
        self.report
    }
}

/// Recall-count buckets `0, 1, 2–3, 4–7, …` up to `max` AR hits per window.
fn recall_rows(max: u32) -> Vec<RecallRow> {
    let mut ranges = vec![(0u32, 0u32)];
    ranges.extend(DistanceBuckets::powers_of_two(max.max(1)).ranges);
    ranges
        .into_iter()
        .map(|(lo, hi)| RecallRow {
            bucket: if lo == hi { lo.to_string() } else { format!("{lo}–{hi}") },
            lo,
            hi,
            windows: 0,
            ar_hit: Default::default(),
            rest: Default::default(),
        })
        .collect()
}

/// Token counts of every slice of a split cut into windows, without a model (every loss 0; only
/// the `tokens` fields mean anything): how many AR hits each frequency and distance bucket holds.
pub fn slice_counts(
    tokens: &[u32],
    seq_len: usize,
    counts: &BigramCounts,
    buckets: &FreqBuckets,
) -> Result<ArHitReport> {
    let mut a = ArHitAnalyzer::new(counts, buckets, seq_len);
    let zeros = vec![0f32; seq_len];
    for seq in crate::text::dataset::window_sequences(tokens, seq_len) {
        a.add_window(seq, &zeros)?;
    }
    Ok(a.finish())
}

/// Shares of the reference-vs-model loss gap by label (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GapShare {
    /// `Σ_t (ℓ_M − ℓ_R)` over all targets, nats.
    pub total_gap_nats: f64,
    /// `ln(ppl_M / ppl_R)`: the gap per token.
    pub mean_gap_nats: f64,
    pub ar_hit: f64,
    pub first_occurrence: f64,
    pub other: f64,
}

/// The share of `model`'s loss gap to `reference` that each label explains. Both reports must
/// come from the same windows (checked by token counts per slice). `None` when the total gap is
/// exactly zero.
pub fn gap_share(reference: &ArHitReport, model: &ArHitReport) -> Result<Option<GapShare>> {
    for l in Label::ALL {
        if reference.label(l).tokens != model.label(l).tokens {
            return Err(Error::Data(format!(
                "gap share: the two reports cover different tokens ({} {} vs {}): evaluate both models on the same windows",
                l.name(),
                reference.label(l).tokens,
                model.label(l).tokens
            )));
        }
    }
    let total = model.all.nll_sum - reference.all.nll_sum;
    if total == 0.0 {
        return Ok(None);
    }
    let share = |l: Label| (model.label(l).nll_sum - reference.label(l).nll_sum) / total;
    Ok(Some(GapShare {
        total_gap_nats: total,
        mean_gap_nats: total / model.all.tokens.max(1) as f64,
        ar_hit: share(Label::ArHit),
        first_occurrence: share(Label::FirstOccurrence),
        other: share(Label::Other),
    }))
}

/// The distribution of AR-hit distances in a token stream cut into windows of `seq_len`: the
/// corpus statistic MQAR's power law imitates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapHistogram {
    pub seq_len: usize,
    /// `counts[g]` = AR hits at distance g (index 0 unused).
    pub counts: Vec<u64>,
    pub targets: u64,
    pub ar_hits: u64,
    pub first_occurrences: u64,
}

impl GapHistogram {
    /// Labels every window `tokens[kL .. kL + L + 1]` (the packing of [`crate::text::dataset`]).
    pub fn from_stream(tokens: &[u32], seq_len: usize) -> Self {
        let mut h =
            GapHistogram { seq_len, counts: vec![0; seq_len + 1], targets: 0, ar_hits: 0, first_occurrences: 0 };
        let mut lab = Labeler::default();
        let mut out = vec![];
        for seq in crate::text::dataset::window_sequences(tokens, seq_len) {
            lab.label(seq, &mut out);
            for t in &out {
                h.targets += 1;
                match t.label {
                    Label::ArHit => {
                        h.ar_hits += 1;
                        h.counts[t.distance as usize] += 1;
                    }
                    Label::FirstOccurrence => h.first_occurrences += 1,
                    Label::Other => {}
                }
            }
        }
        h
    }
    /// Fraction of targets that are AR hits.
    pub fn ar_hit_share(&self) -> f64 {
        self.ar_hits as f64 / self.targets.max(1) as f64
    }
    /// `P(distance ≤ g)` among AR hits.
    pub fn cdf(&self, g: usize) -> f64 {
        self.counts[..=g.min(self.seq_len)].iter().sum::<u64>() as f64 / self.ar_hits.max(1) as f64
    }
    /// Median distance of AR hits.
    pub fn median(&self) -> usize {
        (1..=self.seq_len).find(|&g| self.cdf(g) >= 0.5).unwrap_or(self.seq_len)
    }
    /// Probability of each distance, `(g, P(g))` for g = 1..=L.
    pub fn pmf(&self) -> Vec<(usize, f64)> {
        (1..=self.seq_len).map(|g| (g, self.counts[g] as f64 / self.ar_hits.max(1) as f64)).collect()
    }
    /// Maximum-likelihood exponent β of a discrete power law `P(g) ∝ g^(−β)` on
    /// `gmin ..= gmax` (golden-section search on β ∈ [0, 5]; the log-likelihood is concave).
    /// MQAR's `P ∝ (g' + 1)^(a − 1)` over slots g' = g − 1 ≥ 0 is β = 1 − a.
    ///
    /// With `edge_corrected`, each count is divided by `L − g`, the number of targets of a
    /// window that can have distance g: in a stationary stream the count at g is the
    /// distance's rate times `L − g`, so this undoes the window edge, which otherwise bends the
    /// tail down near L.
    pub fn fit_exponent(&self, gmin: usize, gmax: usize, edge_corrected: bool) -> Option<f64> {
        if self.seq_len < 2 {
            return None;
        }
        let gmax = gmax.min(self.seq_len - 1);
        if gmin < 1 || gmin >= gmax {
            return None;
        }
        let w = |g: usize| {
            if edge_corrected {
                self.counts[g] as f64 / (self.seq_len - g) as f64
            } else {
                self.counts[g] as f64
            }
        };
        let n: f64 = (gmin..=gmax).map(w).sum();
        if n == 0.0 {
            return None;
        }
        let slog: f64 = (gmin..=gmax).map(|g| w(g) * (g as f64).ln()).sum();
        let ll = |b: f64| -b * slog - n * (gmin..=gmax).map(|g| (g as f64).powf(-b)).sum::<f64>().ln();
        Some(golden_max(ll, 0.0, 5.0))
    }
    /// The most frequent distance.
    pub fn mode(&self) -> usize {
        (1..=self.seq_len).max_by_key(|&g| (self.counts[g], std::cmp::Reverse(g))).unwrap_or(1)
    }
}

fn golden_max(f: impl Fn(f64) -> f64, mut a: f64, mut b: f64) -> f64 {
    let r = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - r * (b - a), a + r * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..100 {
        if fc > fd {
            b = d;
            d = c;
            fd = fc;
            c = b - r * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + r * (b - a);
            fd = f(d);
        }
    }
    (a + b) / 2.0
}

/// MQAR's query-gap law on distances 1..=max: `P(g) ∝ g^(a − 1)` (MQAR draws slot g' ≥ 0 with
/// `P ∝ a·(g' + 1)^(a − 1)`; g = g' + 1), normalised on this support.
pub fn power_law_pmf(a: f64, max: usize) -> Vec<(usize, f64)> {
    let w: Vec<f64> = (1..=max).map(|g| (g as f64).powf(a - 1.0)).collect();
    let z: f64 = w.iter().sum();
    w.into_iter().enumerate().map(|(i, x)| (i + 1, x / z)).collect()
}

fn fmt_ppl(s: &SliceStats) -> String {
    s.perplexity().map(|p| format!("{p:.2}")).unwrap_or_else(|| "–".into())
}

/// The terminal table: per model, perplexity on all tokens, AR hits, first occurrences and
/// other tokens, the AR-hit token share and, when `reference` names a model, the share of its
/// gap to the reference that AR hits explain.
pub fn format_table(models: &[(String, ArHitReport)], reference: Option<&str>) -> Result<String> {
    let refrep = match reference {
        Some(r) => Some(
            &models
                .iter()
                .find(|(n, _)| n == r)
                .ok_or_else(|| Error::Other(format!("reference model `{r}` is not among the reports")))?
                .1,
        ),
        None => None,
    };
    let w = models.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(5).max(5);
    let mut s = format!(
        "{:<w$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>7}{}\n",
        "model",
        "all",
        "AR hits",
        "first",
        "other",
        "AR tok%",
        if refrep.is_some() { "  gap(nats/tok)  AR share of gap" } else { "" }
    );
    for (name, r) in models {
        s += &format!(
            "{:<w$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>6.1}%",
            name,
            fmt_ppl(&r.all),
            fmt_ppl(&r.ar_hit),
            fmt_ppl(&r.first_occurrence),
            fmt_ppl(&r.other),
            100.0 * r.ar_hit.tokens as f64 / r.all.tokens.max(1) as f64
        );
        if let Some(rr) = refrep {
            match gap_share(rr, r)? {
                // a share of a gap is defined only when there is one: a model ahead of the
                // reference (or level with it) shows its gap and no share
                Some(g) if !std::ptr::eq(rr, r) && g.mean_gap_nats <= 0.0 => {
                    s += &format!("  {:>14.4}  {:>15}", g.mean_gap_nats, "– (ahead)")
                }
                Some(g) if !std::ptr::eq(rr, r) => {
                    s += &format!("  {:>14.4}  {:>14.1}%", g.mean_gap_nats, 100.0 * g.ar_hit)
                }
                _ => s += &format!("  {:>14}  {:>15}", "–", "–"),
            }
        }
        s.push('\n');
    }
    Ok(s)
}

/// Perplexity by frequency bucket, one row per (model, label), one column per bucket.
pub fn format_frequency_table(models: &[(String, ArHitReport)]) -> String {
    let Some((_, first)) = models.first() else { return String::new() };
    let w = models.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(5).max(5) + 12;
    let mut s = format!("perplexity by training-bigram count ({})\n{:<w$}", first.freq_scheme, "model / slice");
    // column width: the widest cell (perplexity and token count), at least the bucket label
    let cw = models
        .iter()
        .flat_map(|(_, r)| {
            r.by_frequency.iter().flat_map(|row| {
                [&row.ar_hit, &row.other].map(|st| format!("{} ({})", fmt_ppl(st), st.tokens).chars().count())
            })
        })
        .chain(first.by_frequency.iter().map(|row| row.bucket.chars().count()))
        .max()
        .unwrap_or(12)
        .max(12);
    for row in &first.by_frequency {
        s += &format!("  {:>cw$}", row.bucket);
    }
    s.push('\n');
    for (name, r) in models {
        for (lab, get) in [("AR hits", 0usize), ("other", 2)] {
            s += &format!("{:<w$}", format!("{name} {lab}"));
            for row in &r.by_frequency {
                let st = [&row.ar_hit, &row.first_occurrence, &row.other][get];
                s += &format!("  {:>cw$}", format!("{} ({})", fmt_ppl(st), st.tokens));
            }
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use Label::*;

    fn labels(seq: &[u32]) -> Vec<(Label, u32)> {
        label_window(seq).into_iter().map(|t| (t.label, t.distance)).collect()
    }

    #[test]
    fn repeated_bigram_is_a_hit_and_its_first_occurrence_is_marked() {
        // a b c a b: targets (a,b) (b,c) (c,a) (a,b)
        assert_eq!(labels(&[1, 2, 3, 1, 2]), [(FirstOccurrence, 0), (Other, 0), (Other, 0), (ArHit, 3)]);
    }

    #[test]
    fn a_repeated_token_with_a_new_predecessor_is_not_a_hit() {
        // a b c b: b repeats but (c, b) is new
        assert_eq!(labels(&[1, 2, 3, 2]), [(Other, 0), (Other, 0), (Other, 0)]);
    }

    #[test]
    fn overlapping_repeats_count() {
        assert_eq!(labels(&[7, 7]), [(Other, 0)]);
        assert_eq!(labels(&[7, 7, 7]), [(FirstOccurrence, 0), (ArHit, 1)]);
        assert_eq!(labels(&[7, 7, 7, 7]), [(FirstOccurrence, 0), (ArHit, 1), (ArHit, 1)]);
    }

    #[test]
    fn distance_is_to_the_most_recent_occurrence() {
        // a b a b a b: (a,b)@0 (b,a)@1 (a,b)@2 (b,a)@3 (a,b)@4
        assert_eq!(
            labels(&[1, 2, 1, 2, 1, 2]),
            [(FirstOccurrence, 0), (FirstOccurrence, 0), (ArHit, 2), (ArHit, 2), (ArHit, 2)]
        );
    }

    #[test]
    fn degenerate_windows() {
        assert!(labels(&[]).is_empty());
        assert!(labels(&[5]).is_empty());
    }

    #[test]
    fn repeats_across_window_boundaries_are_not_counted() {
        // stream a b x a b, L = 2: windows [a b x] and [x a b]; the whole stream would have a hit
        let stream = [1, 2, 9, 1, 2];
        assert_eq!(labels(&stream)[3], (ArHit, 3));
        let h = GapHistogram::from_stream(&stream, 2);
        assert_eq!((h.targets, h.ar_hits, h.first_occurrences), (4, 0, 0));
        // L = 4 keeps the whole stream in one window
        let h = GapHistogram::from_stream(&stream, 4);
        assert_eq!((h.targets, h.ar_hits, h.counts[3]), (4, 1, 1));
    }

    fn counts_of(pairs: &[((u32, u32), usize)]) -> BigramCounts {
        // a stream in which each listed bigram occurs the given number of times, separated by
        // a token (0) whose bigrams are then also counted
        let mut s = vec![];
        for &((a, b), n) in pairs {
            for _ in 0..n {
                s.extend([0, a, b]);
            }
        }
        BigramCounts::from_tokens(&s)
    }

    #[test]
    fn quantile_buckets_split_training_mass() {
        // counts: (1,2)×1, (3,4)×2, (5,6)×3, (7,8)×10 plus separator bigrams
        let c = BigramCounts::from_tokens(&[1, 2, 99, 3, 4, 99, 3, 4, 99]);
        assert_eq!(c.total, 8);
        assert_eq!(c.get(3, 4), 2);
        assert_eq!(c.get(4, 99), 2);
        assert_eq!(c.get(4, 3), 0);
        // hand-made: 10 bigrams with counts 1,1,1,1,2,2,3,3,6,10 (total 30)
        let mut b = BigramCounts::default();
        for (i, n) in [1u32, 1, 1, 1, 2, 2, 3, 3, 6, 10].into_iter().enumerate() {
            b.map.insert(key(i as u32, 0), n);
        }
        b.total = 30;
        let q = FreqBuckets::quantiles(&b, 3).unwrap();
        // cumulative by sorted count: 1,2,3,4,6,8,11,14,20,30; thirds at 10 and 20 → edges 3 and 6
        assert_eq!(q.upper, vec![3, 6, u64::MAX]);
        assert_eq!(q.labels(), ["unseen", "1–3", "4–6", "≥7"]);
        assert_eq!([0, 1, 3, 4, 6, 7, 1000].map(|c| q.bucket(c)), [0, 1, 1, 2, 2, 3, 3]);
        let share = q.train_share(&b);
        assert_eq!(share, vec![0.0, 14.0 / 30.0, 6.0 / 30.0, 10.0 / 30.0]);
        // ties merge edges rather than making empty buckets
        let q = FreqBuckets::quantiles(&counts_of(&[((1, 2), 5)]), 4).unwrap();
        assert!(q.upper.windows(2).all(|w| w[0] < w[1]), "{:?}", q.upper);
        // relative buckets: total 30 → 1e5 per million = 3 counts
        let r = FreqBuckets::per_million(&b, &[1e5, 2e5]).unwrap();
        assert_eq!(r.upper, vec![3, 6, u64::MAX]);
        assert!(FreqBuckets::per_million(&b, &[10.0, 1.0]).is_err());
    }

    #[test]
    fn distance_buckets_are_powers_of_two() {
        let d = DistanceBuckets::powers_of_two(10);
        assert_eq!(d.ranges, vec![(1, 1), (2, 3), (4, 7), (8, 10)]);
        assert_eq!([1, 2, 3, 4, 7, 8, 10].map(|x| d.bucket(x)), [0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(d.labels(), ["1", "2–3", "4–7", "8–10"]);
    }

    /// A stream with a tiny vocabulary so that windows contain every label, and losses that
    /// differ per position.
    fn fixture(seq_len: usize, n_windows: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
        let mut x = 12345u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let tokens: Vec<u32> = (0..seq_len * n_windows + 1).map(|_| (next() % 6) as u32).collect();
        let nll = (0..n_windows).map(|_| (0..seq_len).map(|_| (next() % 1000) as f32 / 250.0).collect()).collect();
        (tokens, nll)
    }

    fn report(
        tokens: &[u32],
        nll: &[Vec<f32>],
        seq_len: usize,
        counts: &BigramCounts,
        buckets: &FreqBuckets,
    ) -> ArHitReport {
        let mut a = ArHitAnalyzer::new(counts, buckets, seq_len);
        for (seq, l) in crate::text::dataset::window_sequences(tokens, seq_len).zip(nll) {
            a.add_window(seq, l).unwrap();
        }
        a.finish()
    }

    #[test]
    fn slices_recombine_into_the_overall_perplexity() {
        let (l, n) = (16, 40);
        let (tokens, nll) = fixture(l, n);
        let counts = BigramCounts::from_tokens(&tokens[..20]);
        let buckets = FreqBuckets::quantiles(&counts, 3).unwrap();
        let r = report(&tokens, &nll, l, &counts, &buckets);
        assert_eq!(r.all.tokens, (l * n) as u64);
        let direct: f64 = nll.iter().flatten().map(|&x| x as f64).sum();
        assert!((r.all.nll_sum - direct).abs() < 1e-9);
        for l in Label::ALL {
            assert!(r.label(l).tokens > 0, "{l:?} is represented");
        }
        // labels partition the tokens: token-weighted mean NLL recombines exactly
        let parts = [&r.ar_hit, &r.first_occurrence, &r.other];
        let n_all: u64 = parts.iter().map(|s| s.tokens).sum();
        assert_eq!(n_all, r.all.tokens);
        let mean: f64 = parts.iter().map(|s| s.tokens as f64 / n_all as f64 * s.mean_nll().unwrap()).sum();
        assert!((mean - r.all.mean_nll().unwrap()).abs() < 1e-12);
        let geo: f64 = parts.iter().map(|s| s.perplexity().unwrap().powf(s.tokens as f64 / n_all as f64)).product();
        assert!((geo / r.all.perplexity().unwrap() - 1.0).abs() < 1e-12);
        // frequency buckets partition each label; distance buckets partition AR hits
        let mut by_label = [SliceStats::default(); 3];
        for row in &r.by_frequency {
            by_label[0].merge(&row.ar_hit);
            by_label[1].merge(&row.first_occurrence);
            by_label[2].merge(&row.other);
        }
        for (got, want) in by_label.iter().zip(parts) {
            assert_eq!(got.tokens, want.tokens);
            assert!((got.nll_sum - want.nll_sum).abs() < 1e-9);
        }
        let mut d = SliceStats::default();
        r.ar_hit_by_distance.iter().for_each(|row| d.merge(&row.ar_hit));
        assert_eq!(d.tokens, r.ar_hit.tokens);
        assert!(
            r.by_frequency[0].other.tokens + r.by_frequency[0].ar_hit.tokens > 0,
            "some bigrams unseen in the counted prefix"
        );
        // JSON round trip keeps the sums and writes perplexities
        let j = serde_json::to_string(&r).unwrap();
        assert!(j.contains("\"perplexity\""));
        let back: ArHitReport = serde_json::from_str(&j).unwrap();
        assert_eq!(
            (back.windows, back.by_frequency.len(), back.ar_hit.tokens),
            (r.windows, r.by_frequency.len(), r.ar_hit.tokens)
        );
        assert!(
            (back.other.nll_sum / r.other.nll_sum - 1.0).abs() < 1e-14,
            "JSON keeps the sums (to the last bit or two)"
        );
    }

    #[test]
    fn gap_share_is_the_fraction_of_summed_loss_difference() {
        let (l, n) = (16, 20);
        let (tokens, nll) = fixture(l, n);
        let counts = BigramCounts::from_tokens(&tokens);
        let buckets = FreqBuckets::quantiles(&counts, 2).unwrap();
        let reference = report(&tokens, &nll, l, &counts, &buckets);
        // the model is worse by exactly 1 nat on AR hits and 0.25 on others
        let mut worse = nll.clone();
        for (seq, w) in crate::text::dataset::window_sequences(&tokens, l).zip(worse.iter_mut()) {
            for (t, lab) in label_window(seq).iter().enumerate() {
                w[t] += if lab.label == ArHit { 1.0 } else { 0.25 };
            }
        }
        let model = report(&tokens, &worse, l, &counts, &buckets);
        let g = gap_share(&reference, &model).unwrap().unwrap();
        let (h, f, o) =
            (reference.ar_hit.tokens as f64, reference.first_occurrence.tokens as f64, reference.other.tokens as f64);
        let total = h + 0.25 * (f + o);
        assert!((g.total_gap_nats - total).abs() < 1e-3);
        assert!((g.ar_hit - h / total).abs() < 1e-6, "{} vs {}", g.ar_hit, h / total);
        assert!((g.ar_hit + g.first_occurrence + g.other - 1.0).abs() < 1e-12);
        assert!(
            (g.mean_gap_nats - (model.all.perplexity().unwrap() / reference.all.perplexity().unwrap()).ln()).abs()
                < 1e-9
        );
        assert_eq!(gap_share(&reference, &reference).unwrap(), None);
        let other = report(&tokens[..l * 5 + 1], &nll[..5], l, &counts, &buckets);
        assert!(gap_share(&reference, &other).unwrap_err().to_string().contains("same windows"));
        let t = format_table(
            &[("attention".into(), reference.clone()), ("hyena".into(), model.clone())],
            Some("attention"),
        )
        .unwrap();
        assert!(t.contains(&format!("{:.1}%", 100.0 * g.ar_hit)), "{t}");
        // the other way round the model is ahead: its gap is negative and it has no share
        let t =
            format_table(&[("hyena".into(), model.clone()), ("attention".into(), reference.clone())], Some("hyena"))
                .unwrap();
        let row = t.lines().find(|l| l.starts_with("attention")).unwrap();
        assert!(row.trim_end().ends_with("– (ahead)") && row.matches('%').count() == 1 && row.contains(" -0."), "{t}");
    }

    #[test]
    fn bad_windows_are_errors() {
        let counts = BigramCounts::from_tokens(&[1, 2, 3]);
        let buckets = FreqBuckets::quantiles(&counts, 2).unwrap();
        let mut a = ArHitAnalyzer::new(&counts, &buckets, 4);
        assert!(a.add_window(&[1, 2, 3, 4], &[0.0; 4]).unwrap_err().to_string().contains("needs 5 tokens"));
        assert!(a.add_window(&[1, 2, 3, 4, 5], &[0.0, f32::NAN, 0.0, 0.0]).unwrap_err().to_string().contains("NaN"));
    }

    #[test]
    fn power_law_fit_recovers_the_exponent() {
        // expected counts of P ∝ g^-1.3 on 1..=256
        let pmf = power_law_pmf(-0.3, 256);
        let mut h = GapHistogram { seq_len: 256, counts: vec![0; 257], targets: 0, ar_hits: 0, first_occurrences: 0 };
        for (g, p) in &pmf {
            h.counts[*g] = (p * 1e7).round() as u64;
            h.ar_hits += h.counts[*g];
        }
        assert!(h.cdf(256) > 0.999 && h.median() == 1 + (1..256).take_while(|&g| h.cdf(g) < 0.5).count());
        let b = h.fit_exponent(1, 255, false).unwrap();
        assert!((b - 1.3).abs() < 1e-3, "{b}");
        // the same law seen through windows: counts thinned by L − g; the correction undoes it
        for g in 1..256 {
            h.counts[g] = (pmf[g - 1].1 * 1e9 * (256 - g) as f64 / 256.0).round() as u64;
        }
        let raw = h.fit_exponent(8, 200, false).unwrap();
        let fixed = h.fit_exponent(8, 200, true).unwrap();
        assert!(raw > 1.35 && (fixed - 1.3).abs() < 1e-3, "raw {raw}, corrected {fixed}");
        assert_eq!(h.mode(), 1);
        let empty = GapHistogram::from_stream(&[1, 2, 1, 2], 0);
        assert_eq!((empty.targets, empty.fit_exponent(1, 8, true), empty.median()), (0, None, 0));
        let pl = power_law_pmf(0.01, 100);
        assert!((pl.iter().map(|p| p.1).sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((pl[0].1 / pl[1].1 - 2f64.powf(0.99)).abs() < 1e-12);
    }

    /// Windows bucketed by their AR-hit count: a window with no repeat, one with one AR hit,
    /// one with three; each window's AR-hit and other losses land in its own row.
    #[test]
    fn windows_are_bucketed_by_their_number_of_recalls() {
        let counts = BigramCounts::from_tokens(&[1, 2, 3, 4]);
        let buckets = FreqBuckets::quantiles(&counts, 1).unwrap();
        let mut a = ArHitAnalyzer::new(&counts, &buckets, 6);
        // no AR hit: all distinct
        a.add_window(&[1, 2, 3, 4, 5, 6, 7], &[1.0; 6]).unwrap();
        // one AR hit: (1,2) again at the end (targets: (1,2) (2,9) (9,8) (8,7) (7,1) (1,2))
        a.add_window(&[1, 2, 9, 8, 7, 1, 2], &[2.0, 2.0, 2.0, 2.0, 2.0, 0.5]).unwrap();
        // three AR hits: a b a b a b a (targets (a,b) (b,a) (a,b)h (b,a)h (a,b)h (b,a)h): 4 hits
        a.add_window(&[1, 2, 1, 2, 1, 2, 1], &[3.0, 3.0, 0.25, 0.25, 0.25, 0.25]).unwrap();
        let r = a.finish();
        let row = |lo: u32| r.by_recalls.iter().find(|x| x.lo <= lo && lo <= x.hi).unwrap();
        assert_eq!(r.by_recalls[0].bucket, "0");
        assert_eq!((row(0).windows, row(0).ar_hit.tokens, row(0).rest.tokens), (1, 0, 6));
        assert_eq!((row(1).windows, row(1).ar_hit.tokens, row(1).rest.tokens), (1, 1, 5));
        assert_eq!(row(1).ar_hit.mean_nll(), Some(0.5));
        assert_eq!(row(1).rest.mean_nll(), Some(2.0));
        assert_eq!(row(4).bucket, "4–6");
        assert_eq!((row(4).windows, row(4).ar_hit.tokens, row(4).rest.tokens), (1, 4, 2));
        assert_eq!(row(4).ar_hit.mean_nll(), Some(0.25));
        assert_eq!(r.by_recalls.iter().map(|x| x.windows).sum::<u64>(), 3);
    }

    /// Log-spaced frequency buckets: powers of two of the training count, merged rarest first
    /// until each bucket holds the asked number of AR hits in the evaluated windows.
    #[test]
    fn log_spaced_buckets_merge_until_each_has_enough_ar_hits() {
        // training stream: bigram (1,2) 40 times, (3,4) 5 times, (5,6) once, (7,8) 12 times
        let mut train = vec![];
        for (pair, n) in [((1u32, 2u32), 40), ((3, 4), 5), ((5, 6), 1), ((7, 8), 12)] {
            for _ in 0..n {
                train.extend([pair.0, pair.1, 99]);
            }
        }
        let counts = BigramCounts::from_tokens(&train);
        assert_eq!((counts.get(1, 2), counts.get(3, 4), counts.get(5, 6), counts.get(7, 8)), (40, 5, 1, 12));
        // no merging needed: each fine bucket that holds a hit keeps its own edges
        let fine = FreqBuckets::log_spaced(&counts, std::iter::empty(), 0).unwrap();
        assert_eq!(fine.bucket(1), 1);
        assert_eq!((fine.bucket(2), fine.bucket(3)), (2, 2));
        assert_eq!((fine.bucket(4), fine.bucket(7)), (3, 3));
        // windows with AR hits on (5,6) ×2 [count 1], (3,4) ×1 [count 5], (1,2) ×3 [count 40]
        let w1: Vec<u32> = vec![5, 6, 5, 6, 5, 6, 0];
        let w2: Vec<u32> = vec![3, 4, 3, 4, 1, 2, 1, 2, 1, 2, 1, 2];
        let b = FreqBuckets::log_spaced(&counts, [&w1[..], &w2[..]].into_iter(), 3).unwrap();
        // the rare end: count 1 (2 hits) merges with 2–3 and 4–7 (1 hit) to reach 3: one bucket
        // 1–7; everything above is the last bucket (3 hits)
        assert_eq!(b.labels(), ["unseen", "1–7", "≥8"]);
        assert!(b.scheme.contains("≥ 3 AR hits"), "{}", b.scheme);
    }
}
