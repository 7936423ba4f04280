//! Benchmarks behind `zoology bench`. Each prints absolute numbers *and* a ratio against a
//! baseline measured in the same process, because these machines are shared and noisy:
//! - `step`: one AdamW training step of a 2-layer attention LM (default d=128, L=256, B=64,
//!   V=8192) with the full vocabulary head vs the head applied only at supervised positions;
//! - `data`: MQAR generation rate (default 100,000 examples at L=512, kv=64, V=8192) vs a
//!   naive sequential generator (numpy-style sequential weighted choice, one thread).

use crate::device::Runtime;
use crate::error::Result;
use crate::model::{LanguageModel, ModelConfig};
use crate::tasks::mqar::MqarConfig;
use crate::tasks::IGNORE;
use crate::train::optim::AdamW;
use crate::train::trainer::sparse_head_loss;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct StepBench {
    pub d_model: i64,
    pub seq_len: usize,
    pub kv: usize,
    pub batch: usize,
    pub vocab: usize,
    pub iters: usize,
    pub mixer: String,
}

impl Default for StepBench {
    fn default() -> Self {
        StepBench { d_model: 128, seq_len: 256, kv: 16, batch: 64, vocab: 8192, iters: 5, mixer: "attention".into() }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Returns (full-head seconds/step, sparse-head seconds/step).
pub fn step_time(b: &StepBench, rt: &Runtime) -> Result<(f64, f64)> {
    let cfg: ModelConfig = toml::from_str(&format!(
        "d_model = {}\nn_layers = 2\nmax_position_embeddings = {}\nstate_mixer = \"identity\"\nmixer = {{ name = \"{}\" }}",
        b.d_model, b.seq_len, b.mixer
    ))
    .map_err(|e| crate::Error::Other(e.to_string()))?;
    cfg.validate(b.vocab as i64, b.seq_len as i64)?;
    let data = MqarConfig::new(b.seq_len, b.kv, b.batch).generate(b.vocab, 1);
    let (x, y) = data.to_tensors(rt.device);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(rt.device);
    let model = LanguageModel::new(&vs.root(), &cfg, b.vocab as i64, b.seq_len as i64)?;
    let mut opt = AdamW::new(vs.variables().into_iter().collect(), 0.1, 0.9, 0.999, 1e-8, false);
    let mut run = |full: bool| -> f64 {
        let t0 = Instant::now();
        opt.zero_grad();
        let loss = if full {
            let logits = model.logits(&x, true);
            logits.view([-1, b.vocab as i64]).cross_entropy_loss::<Tensor>(&y.view([-1]), None, tch::Reduction::Mean, IGNORE as i64, 0.0)
        } else {
            sparse_head_loss(&model, &x, &y, true).0
        };
        loss.backward();
        opt.step(1e-4);
        let _ = loss.double_value(&[]);
        t0.elapsed().as_secs_f64()
    };
    // warm up both paths, then interleave so that machine noise hits both alike
    run(true);
    run(false);
    let (mut full, mut sparse) = (vec![], vec![]);
    for _ in 0..b.iters {
        full.push(run(true));
        sparse.push(run(false));
    }
    Ok((median(full), median(sparse)))
}

/// Checks on one batch that the sparse head gives the same loss as the full head.
pub fn sparse_equals_full(model: &LanguageModel, x: &Tensor, y: &Tensor) -> (f64, f64) {
    tch::no_grad(|| {
        let v = model.vocab_size;
        let full = model.logits(x, false).view([-1, v]).cross_entropy_loss::<Tensor>(&y.view([-1]), None, tch::Reduction::Mean, IGNORE as i64, 0.0);
        let sparse = sparse_head_loss(model, x, y, false).0;
        (full.to_kind(Kind::Double).double_value(&[]), sparse.to_kind(Kind::Double).double_value(&[]))
    })
}

/// Naive MQAR generator as in numpy: sequential weighted choice without replacement, one thread.
fn naive_generate(l: usize, kv: usize, v: usize, n: usize, seed: u64) -> usize {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let space = (l - 2 * kv) / 2;
    let w: Vec<f64> = (0..space).map(|g| 0.01 * ((g + 1) as f64).powf(0.01 - 1.0)).collect();
    let mut checksum = 0usize;
    for _ in 0..n {
        let mut seq = vec![0i64; l];
        let mut keys: Vec<i64> = vec![];
        while keys.len() < kv {
            let k = rng.gen_range(1..v / 2) as i64;
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let mut avail = w.clone();
        for (j, k) in keys.iter().enumerate() {
            let tot: f64 = avail.iter().sum();
            let mut r = rng.gen::<f64>() * tot;
            let mut g = 0;
            while g + 1 < space && (r >= avail[g] || avail[g] == 0.0) {
                r -= avail[g];
                g += 1;
            }
            avail[g] = 0.0;
            seq[2 * kv + 2 * g] = *k;
            seq[2 * j] = *k;
        }
        checksum = checksum.wrapping_add(seq.iter().sum::<i64>() as usize);
    }
    checksum
}

/// Returns (our examples/s, naive examples/s).
pub fn gen_rate(l: usize, kv: usize, v: usize, n: usize) -> Result<(f64, f64)> {
    let c = MqarConfig::new(l, kv, n);
    c.validate(v, "bench")?;
    let t0 = Instant::now();
    let seg = c.generate(v, 1);
    let ours = t0.elapsed().as_secs_f64();
    assert_eq!(seg.n, n);
    let n_naive = (n / 10).max(100);
    let t1 = Instant::now();
    std::hint::black_box(naive_generate(l, kv, v, n_naive, 1));
    let naive = t1.elapsed().as_secs_f64();
    Ok((n as f64 / ours, n_naive as f64 / naive))
}
