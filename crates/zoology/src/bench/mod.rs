//! Benchmarks behind `zoology bench`. Each prints absolute numbers *and* a ratio against a
//! baseline measured in the same process, because these machines are shared and noisy:
//! - `step`: one AdamW training step of a 2-layer attention LM (default d=128, L=256, B=64,
//!   V=8192) with the full vocabulary head vs the head applied only at supervised positions;
//! - `data`: a task's generation rate (default MQAR, 100,000 examples at L=512, kv=64,
//!   V=8192) vs the task's plain sequential generator (`Task::naive`) on the same segment;
//! - `mixers`: forward+backward time of each registered mixer alone across sequence lengths,
//!   with the ratio t(L_max)/t(L_min) that shows linear vs quadratic scaling.
//!
//! Layer 9 of 11, **uses of trained models** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

pub mod decode;
pub mod step;

use crate::device::Runtime;
use crate::error::Result;
use crate::model::{LanguageModel, ModelConfig};
use crate::tasks::mqar::MqarConfig;
use crate::tasks::{Split, TaskConfig, IGNORE};
use crate::train::optim::AdamW;
use crate::train::trainer::sparse_head_loss;
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
            logits.view([-1, b.vocab as i64]).cross_entropy_loss::<Tensor>(
                &y.view([-1]),
                None,
                tch::Reduction::Mean,
                IGNORE as i64,
                0.0,
            )
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
        let full = model.logits(x, false).view([-1, v]).cross_entropy_loss::<Tensor>(
            &y.view([-1]),
            None,
            tch::Reduction::Mean,
            IGNORE as i64,
            0.0,
        );
        let sparse = sparse_head_loss(model, x, y, false).0;
        (full.to_kind(Kind::Double).double_value(&[]), sparse.to_kind(Kind::Double).double_value(&[]))
    })
}

/// One row of `zoology bench data`: a task's generator against its plain sequential
/// generator (`Task::naive`), both generating the whole segment of `n` examples.
#[derive(Debug, Clone)]
pub struct GenRow {
    pub task: String,
    pub seq_len: usize,
    pub n: usize,
    /// Median seconds of the task's generator and of the naive one.
    pub ours_s: f64,
    pub naive_s: f64,
}

impl GenRow {
    pub fn ratio(&self) -> f64 {
        self.naive_s / self.ours_s
    }
}

/// Times `task`'s generator and its naive generator on the same segment (`reps` interleaved
/// repetitions each, medians), after validating the config.
pub fn gen_rate(task: &TaskConfig, vocab_size: usize, split: Split, reps: usize) -> Result<GenRow> {
    task.validate(vocab_size, "bench")?;
    let (mut ours, mut naive) = (vec![], vec![]);
    for r in 0..reps.max(1) {
        let t0 = Instant::now();
        let seg = task.generate_split(vocab_size, r as u64, split);
        ours.push(t0.elapsed().as_secs_f64());
        std::hint::black_box(&seg);
        let t1 = Instant::now();
        let nv = task.generate_naive(vocab_size, r as u64, split);
        naive.push(t1.elapsed().as_secs_f64());
        std::hint::black_box(&nv);
        assert_eq!((seg.n, seg.seq_len), (nv.n, nv.seq_len));
    }
    Ok(GenRow {
        task: task.name().to_string(),
        seq_len: task.seq_len(),
        n: task.num_examples(),
        ours_s: median(ours),
        naive_s: median(naive),
    })
}

/// The sizes `bench data --all` measures for a task: its default config at `n` examples, and
/// the same with the sequence 4× and 16× longer where that config is valid.
pub fn gen_sizes(entry: &crate::tasks::TaskEntry, n: usize) -> Vec<TaskConfig> {
    let base = (entry.defaults)();
    let l = base.fields().get("seq_len").and_then(|v| v.as_integer()).unwrap_or(0);
    let mut out = vec![];
    for mul in [1, 4, 16] {
        let mut f = base.fields();
        f.insert("seq_len".into(), toml::Value::Integer(l * mul));
        if let Ok(mut c) = TaskConfig::from_fields(entry.name, &f, "bench") {
            c.set_num_examples((n / mul as usize).max(100));
            if c.validate(entry.default_vocab, "bench").is_ok() {
                out.push(c);
            }
        }
    }
    out
}

/// Settings of `zoology bench mixers`.
#[derive(Debug, Clone)]
pub struct MixerBench {
    /// Registry names to run (empty: every registered mixer).
    pub mixers: Vec<String>,
    pub d_model: i64,
    pub batch: i64,
    /// Sequence lengths, run in increasing order.
    pub lengths: Vec<i64>,
    pub warmup: usize,
    pub iters: usize,
    /// Skip a (mixer, L) whose predicted peak resident memory exceeds this many bytes (CPU only).
    pub max_mem_bytes: f64,
}

/// One (mixer, L) cell: median seconds per forward+backward, or why it was skipped.
pub type Cell = std::result::Result<f64, String>;

/// A bench row: the mixer and one cell per length.
#[derive(Debug)]
pub struct MixerRow {
    pub name: String,
    pub cells: Vec<(i64, Cell)>,
}

impl MixerRow {
    /// t(L_last)/t(L_first) over the requested lengths, when both were measured.
    pub fn ratio(&self) -> Option<f64> {
        match (self.cells.first(), self.cells.last()) {
            (Some((_, Ok(a))), Some((_, Ok(b)))) if self.cells.len() > 1 => Some(b / a),
            _ => None,
        }
    }
}

/// Resident and peak resident memory of this process in bytes (`VmRSS`, `VmHWM`), Linux only.
fn rss_and_peak() -> Option<(f64, f64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |key: &str| -> Option<f64> {
        let line = s.lines().find(|l| l.starts_with(key))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak-RSS mark (`VmHWM`) to the current RSS; false when the kernel refuses.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Memory available to new allocations (`MemAvailable`), in bytes.
pub fn mem_available() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? * 1024.0)
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    let msg = if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "panic".into()
    };
    // libtorch messages carry a C++ backtrace; the first line says what went wrong
    msg.lines().next().unwrap_or("").chars().take(160).collect()
}

/// Builds one mixer at length `l` and times forward+backward. Returns (median seconds, growth of
/// peak RSS over the RSS before the first pass, in bytes, when measurable).
fn time_mixer(table: &toml::Table, b: &MixerBench, l: i64, rt: &Runtime, iters: usize) -> Result<(f64, Option<f64>)> {
    let ctx = crate::mixers::BuildCtx::new(0, 2, l);
    crate::mixers::validate_table(table, b.d_model, &ctx, "--mixers")?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(rt.device);
    let m = crate::mixers::build_table(vs.root() / "mixer", table, b.d_model, &ctx, "--mixers")?;
    let x = Tensor::randn([b.batch, l, b.d_model], (rt.kind, rt.device));
    let w = Tensor::randn([b.batch, l, b.d_model], (rt.kind, rt.device));
    let pass = || {
        let xg = x.copy().set_requires_grad(true);
        let t0 = Instant::now();
        let y = m.forward(&xg, true);
        (y * &w).sum(rt.kind).backward();
        let _ = xg.grad().sum(Kind::Float).double_value(&[]); // waits for the device
        t0.elapsed().as_secs_f64()
    };
    let before = if rt.device == tch::Device::Cpu && reset_peak() { rss_and_peak().map(|r| r.0) } else { None };
    pass();
    let peak = before.and_then(|b0| rss_and_peak().map(|(_, hwm)| (hwm - b0).max(0.0)));
    for _ in 1..b.warmup {
        pass();
    }
    let times: Vec<f64> = (0..iters.max(1)).map(|_| pass()).collect();
    Ok((median(times), peak))
}

/// Runs `f`, turning a panic (e.g. a libtorch allocation failure) into an error message.
fn catching<T>(f: impl FnOnce() -> Result<T>) -> std::result::Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => Err(format!("failed: {}", panic_message(p))),
    }
}

/// Predicts peak memory growth at `l` from earlier (L, bytes) measurements by a power law
/// through the last two points (exponent clamped to [1, 3]); None without two points.
fn predict_mem(points: &[(i64, f64)], l: i64) -> Option<f64> {
    let n = points.len();
    if n < 2 {
        return None;
    }
    let ((l1, m1), (l2, m2)) = (points[n - 2], points[n - 1]);
    let p = if m1 > 0.0 && m2 > 0.0 && l2 > l1 {
        ((m2 / m1).ln() / (l2 as f64 / l1 as f64).ln()).clamp(1.0, 3.0)
    } else {
        2.0
    };
    Some(m2.max(1.0) * (l as f64 / l2 as f64).powf(p))
}

/// `zoology bench mixers`: for each mixer and length, the median forward+backward time of the
/// mixer alone on `[batch, L, d_model]` inputs. A (mixer, L) is skipped, with the reason, when
/// its config does not fit L, when its predicted peak memory exceeds the budget, or when the
/// pass fails (errors and panics are caught; nothing aborts the whole bench). Memory is
/// predicted from the growth of peak RSS at the shorter lengths (plus an untimed probe at half
/// the shortest), so a quadratic mixer is stopped before it exhausts the machine.
pub fn mixer_scaling(b: &MixerBench, rt: &Runtime, mut progress: impl FnMut(&str)) -> Result<Vec<MixerRow>> {
    let names = crate::mixers::names();
    let chosen: Vec<String> =
        if b.mixers.is_empty() { names.iter().map(|s| s.to_string()).collect() } else { b.mixers.clone() };
    for m in &chosen {
        if !names.contains(&m.as_str()) {
            return Err(crate::error::config_err(
                "--mixers",
                format!("unknown mixer {m:?}; one of: {}", names.join(", ")),
            ));
        }
    }
    let mut lengths = b.lengths.clone();
    lengths.sort_unstable();
    lengths.dedup();
    if lengths.is_empty() || lengths[0] < 1 {
        return Err(crate::error::config_err("--lengths", "give one or more positive lengths, e.g. 256,1024,4096"));
    }
    let mut rows = vec![];
    for name in chosen {
        let mut table = toml::Table::new();
        table.insert("name".into(), toml::Value::String(name.clone()));
        let mut mem_points: Vec<(i64, f64)> = vec![];
        let probe = lengths[0] / 2;
        if probe >= 8 {
            if let Ok((_, Some(mem))) = catching(|| time_mixer(&table, b, probe, rt, 0)) {
                mem_points.push((probe, mem));
            }
        }
        let mut cells = vec![];
        let mut failed_before: Option<i64> = None;
        for &l in &lengths {
            let cell: Cell = if let Some(prev) = failed_before {
                Err(format!("skipped: failed at L={prev}"))
            } else {
                match predict_mem(&mem_points, l) {
                    Some(need) if need > b.max_mem_bytes => Err(format!(
                        "skipped: predicted peak memory {:.1} GB > budget {:.1} GB (--max-mem-gb)",
                        need / 1e9,
                        b.max_mem_bytes / 1e9
                    )),
                    _ => catching(|| time_mixer(&table, b, l, rt, b.iters)).map(|(t, mem)| {
                        if let Some(mem) = mem {
                            mem_points.push((l, mem));
                        }
                        t
                    }),
                }
            };
            match &cell {
                Ok(t) => progress(&format!("  {name:<12} L={l:<6} {:10.1} ms", t * 1e3)),
                Err(why) => {
                    if !why.starts_with("skipped") {
                        failed_before = Some(l);
                    }
                    progress(&format!("  {name:<12} L={l:<6} {why}"))
                }
            }
            cells.push((l, cell));
        }
        rows.push(MixerRow { name, cells });
    }
    Ok(rows)
}

/// The scaling table as text: ms per length, then t(L_max)/t(L_min) next to the linear and
/// quadratic references.
pub fn format_mixer_table(rows: &[MixerRow], lengths: &[i64]) -> String {
    let mut lengths = lengths.to_vec();
    lengths.sort_unstable();
    lengths.dedup();
    let (lo, hi) = (lengths[0], *lengths.last().unwrap());
    let mut s = format!("{:<14}", "mixer");
    for l in &lengths {
        s += &format!("{:>12}", format!("L={l} ms"));
    }
    s += &format!("{:>16}\n", format!("t({hi})/t({lo})"));
    let mut notes = vec![];
    for r in rows {
        s += &format!("{:<14}", r.name);
        for (l, c) in &r.cells {
            match c {
                Ok(t) => s += &format!("{:>12.1}", t * 1e3),
                Err(why) => {
                    s += &format!("{:>12}", "—");
                    notes.push(format!("{} L={l}: {why}", r.name));
                }
            }
        }
        s += &match r.ratio() {
            Some(x) => format!("{:>15.1}x\n", x),
            None => format!("{:>16}\n", "—"),
        };
    }
    let f = hi as f64 / lo as f64;
    s += &format!("(length ratio {f:.0}: linear scaling gives ≈{f:.0}x, quadratic ≈{:.0}x)\n", f * f);
    for n in notes {
        s += &format!("  {n}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_prediction_follows_the_measured_power_law() {
        assert!(predict_mem(&[(128, 1e6)], 256).is_none());
        let quad = predict_mem(&[(128, 1e6), (256, 4e6)], 1024).unwrap();
        assert!((quad / 64e6 - 1.0).abs() < 1e-9, "{quad}");
        let lin = predict_mem(&[(128, 1e6), (256, 2e6)], 1024).unwrap();
        assert!((lin / 8e6 - 1.0).abs() < 1e-9, "{lin}");
    }

    #[test]
    fn mixer_bench_runs_and_rejects_unknown_names() {
        let rt = Runtime::cpu();
        let b = MixerBench {
            mixers: vec!["attention".into(), "rwkv".into()],
            d_model: 8,
            batch: 1,
            lengths: vec![32, 16],
            warmup: 1,
            iters: 1,
            max_mem_bytes: 1e12,
        };
        let rows = mixer_scaling(&b, &rt, |_| {}).unwrap();
        assert_eq!(rows.len(), 2);
        for r in &rows {
            assert_eq!(r.cells.iter().map(|c| c.0).collect::<Vec<_>>(), vec![16, 32]);
            assert!(r.cells.iter().all(|c| c.1.is_ok()), "{r:?}");
            assert!(r.ratio().unwrap() > 0.0);
        }
        let table = format_mixer_table(&rows, &b.lengths);
        assert!(table.contains("rwkv") && table.contains("t(32)/t(16)"), "{table}");
        // a tiny budget skips the second length with a reason instead of running it
        let tight =
            MixerBench { max_mem_bytes: 1.0, lengths: vec![16, 32], mixers: vec!["attention".into()], ..b.clone() };
        let rows = mixer_scaling(&tight, &rt, |_| {}).unwrap();
        if rss_and_peak().is_some() && reset_peak() {
            assert!(
                rows[0].cells[0].1.is_ok() && matches!(&rows[0].cells[1].1, Err(w) if w.contains("memory")),
                "{rows:?}"
            );
        }
        let bad = MixerBench { mixers: vec!["nope".into()], ..b };
        let err = mixer_scaling(&bad, &rt, |_| {}).unwrap_err().to_string();
        assert!(err.contains("--mixers") && err.contains("attention"), "{err}");
    }
}

/// One row of `zoology bench flops`: a mixer's training FLOPs for one batch
/// ([`crate::mixers::Mixer::flops`]) and its measured forward+backward time.
#[derive(Debug)]
pub struct FlopsRow {
    pub name: String,
    /// Forward + backward FLOPs of one batch, or why the mixer could not be built.
    pub flops: Cell,
    pub seconds: Cell,
}

impl FlopsRow {
    /// Measured seconds per counted FLOP.
    pub fn seconds_per_flop(&self) -> Option<f64> {
        match (&self.flops, &self.seconds) {
            (Ok(f), Ok(t)) if *f > 0.0 => Some(t / f),
            _ => None,
        }
    }
}

/// `zoology bench flops`: each mixer alone (default config) on `[batch, L, d_model]`, its
/// median forward+backward time (as `bench mixers`) against its counted training FLOPs, so
/// that a formula far off (or a form far from the hardware's rate) stands out. `attention` is
/// always measured first, as the baseline of the ratios. `b.lengths` must hold one length.
pub fn flops_bench(b: &MixerBench, rt: &Runtime, mut progress: impl FnMut(&str)) -> Result<Vec<FlopsRow>> {
    let names = crate::mixers::names();
    for m in &b.mixers {
        if !names.contains(&m.as_str()) {
            return Err(crate::error::config_err(
                "--mixers",
                format!("unknown mixer {m:?}; one of: {}", names.join(", ")),
            ));
        }
    }
    let l = match b.lengths.as_slice() {
        [l] if (1..=crate::cost::MAX_TABLE_SEQ_LEN).contains(l) => *l,
        _ => {
            return Err(crate::error::config_err(
                "--seq-len",
                format!("give one length in [1, {}]", crate::cost::MAX_TABLE_SEQ_LEN),
            ))
        }
    };
    if !(1..=crate::limits::MAX_D_MODEL).contains(&b.d_model) || b.batch < 1 {
        return Err(crate::error::config_err(
            "--d-model / --batch",
            format!("must be ≥ 1 (got d_model {}, batch {})", b.d_model, b.batch),
        ));
    }
    let mut chosen = vec!["attention".to_string()];
    let rest: Vec<String> =
        if b.mixers.is_empty() { names.iter().map(|s| s.to_string()).collect() } else { b.mixers.clone() };
    chosen.extend(rest.into_iter().filter(|m| m != "attention"));
    let mut rows = vec![];
    for name in chosen {
        let mut table = toml::Table::new();
        table.insert("name".into(), toml::Value::String(name.clone()));
        let flops = catching(|| {
            let ctx = crate::mixers::BuildCtx::new(0, 2, l);
            crate::mixers::validate_table(&table, b.d_model, &ctx, "--mixers")?;
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let m =
                tch::no_grad(|| crate::mixers::build_table(vs.root() / "mixer", &table, b.d_model, &ctx, "--mixers"))?;
            Ok(m.flops(l).train(b.batch))
        });
        let seconds = if flops.is_ok() {
            catching(|| time_mixer(&table, b, l, rt, b.iters)).map(|(t, _)| t)
        } else {
            Err("not built".into())
        };
        let row = FlopsRow { name, flops, seconds };
        match row.seconds_per_flop() {
            Some(spf) => progress(&format!(
                "  {:<16} {:10.1} ms {:10.3} ps/FLOP",
                row.name,
                row.seconds.as_ref().unwrap() * 1e3,
                spf * 1e12
            )),
            None => progress(&format!(
                "  {:<16} {}",
                row.name,
                row.flops.as_ref().err().or(row.seconds.as_ref().err()).cloned().unwrap_or_default()
            )),
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The `bench flops` table: GFLOP per step, ms, ps per FLOP and that ratio over attention's.
pub fn format_flops_table(rows: &[FlopsRow]) -> String {
    let base = rows.iter().find(|r| r.name == "attention").and_then(|r| r.seconds_per_flop());
    let mut s = format!("{:<16}{:>14}{:>12}{:>12}{:>16}\n", "mixer", "GFLOP/step", "ms/step", "ps/FLOP", "× attention");
    for r in rows {
        let gf = r.flops.as_ref().map(|f| format!("{:.3}", f / 1e9)).unwrap_or_else(|_| "—".into());
        let ms = r.seconds.as_ref().map(|t| format!("{:.1}", t * 1e3)).unwrap_or_else(|_| "—".into());
        let (ps, ratio) = match (r.seconds_per_flop(), base) {
            (Some(x), Some(b0)) => (format!("{:.3}", x * 1e12), format!("{:.2}", x / b0)),
            (Some(x), None) => (format!("{:.3}", x * 1e12), "—".into()),
            _ => ("—".into(), "—".into()),
        };
        s += &format!("{:<16}{gf:>14}{ms:>12}{ps:>12}{ratio:>16}\n", r.name);
    }
    for r in rows {
        if let Err(why) = r.flops.as_ref().and(r.seconds.as_ref()) {
            s += &format!("  {}: {why}\n", r.name);
        }
    }
    s += "ps/FLOP = measured seconds per counted FLOP; × attention = that over attention's in this run (≫ 1: the form is slow for its FLOPs, or its formula undercounts).\n";
    s
}
