//! Plots (plotters; PNG and SVG from the same drawing code):
//! 1. accuracy vs d_model (log2 x), one panel per sequence length, one line per mixer, best
//!    over lr — Zoology's Figure 2;
//! 2. accuracy vs recurrent state size (log x), best per (mixer, state size) — the Based
//!    paper's recall/memory trade-off;
//! 3. training loss and test accuracy curves of one run.
//!
//! PNG text is drawn with the DejaVu Sans font shipped in assets/fonts (no system fonts
//! needed); colours are fixed per mixer name so every plot agrees.

use crate::error::{io_err, Error, Result};
use crate::results::index::RunRecord;
use crate::results::{best_over, BestRow};
use crate::train::metrics::{read_lines, MetricLine};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

static FONT: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font("sans-serif", style, FONT).unwrap_or_else(|_| panic!("the bundled DejaVuSans.ttf is a valid font"));
        }
    });
}

/// The colour of a mixer (or preset) name, the same in every plot.
pub fn mixer_color(name: &str) -> RGBColor {
    const NAMED: &[(&str, (u8, u8, u8))] = &[
        ("attention", (31, 119, 180)),
        ("base_conv", (255, 127, 14)),
        ("hyena", (44, 160, 44)),
        ("h3", (214, 39, 40)),
        ("rwkv", (148, 103, 189)),
        ("based", (140, 86, 75)),
        ("mamba", (227, 119, 194)),
        ("hybrid", (127, 127, 127)),
        ("linear_attention", (188, 189, 34)),
        ("retnet", (23, 190, 207)),
    ];
    if let Some((_, c)) = NAMED.iter().find(|(n, _)| *n == name) {
        return RGBColor(c.0, c.1, c.2);
    }
    if let Some((_, c)) = NAMED.iter().find(|(n, _)| name.starts_with(n)) {
        return RGBColor(c.0, c.1, c.2);
    }
    const EXTRA: &[(u8, u8, u8)] = &[(0, 0, 0), (0, 90, 50), (120, 0, 120), (200, 150, 0), (0, 60, 160), (160, 60, 0)];
    let h = name.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    let c = EXTRA[h % EXTRA.len()];
    RGBColor(c.0, c.1, c.2)
}

fn perr<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Other(format!("plotting {what}: {e:?}"))
}

/// Which runs go into the plots: finished ones with an accuracy.
fn usable(recs: &[RunRecord]) -> Vec<RunRecord> {
    recs.iter().filter(|r| r.best_accuracy.is_some()).cloned().collect()
}

fn pow2_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 {
        format!("{}", 2f64.powf(x.round()) as i64)
    } else {
        String::new()
    }
}

fn compact(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}
fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Figure 2: accuracy vs model dimension, a panel per sequence length, best over lr.
pub struct Figure2 {
    pub rows: Vec<BestRow>,
}

trait Draw<DB: DrawingBackend> {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()>;
}

impl<DB: DrawingBackend> Draw<DB> for Figure2 {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("figure 2");
        root.fill(&WHITE).map_err(&e)?;
        let lens: BTreeSet<i64> = self.rows.iter().map(|r| r.seq_len).collect();
        let lens: Vec<i64> = lens.into_iter().collect();
        let root = root.titled("MQAR accuracy vs model dimension (best over learning rate)", ("sans-serif", 24)).map_err(&e)?;
        let panels = root.split_evenly((1, lens.len().max(1)));
        let dmin = self.rows.iter().map(|r| r.d_model).min().unwrap_or(16) as f64;
        let dmax = self.rows.iter().map(|r| r.d_model).max().unwrap_or(256) as f64;
        let (x0, x1) = (dmin.log2() - 0.4, dmax.log2() + 0.4);
        for (pi, (panel, &l)) in panels.iter().zip(&lens).enumerate() {
            let rows: Vec<&BestRow> = self.rows.iter().filter(|r| r.seq_len == l).collect();
            let kvs: BTreeSet<i64> = rows.iter().map(|r| r.num_kv_pairs).collect();
            let kv = kvs.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",");
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("Sequence length {l} ({kv} kv pairs)"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(48)
                .y_label_area_size(if pi == 0 { 62 } else { 44 })
                .build_cartesian_2d(x0..x1, 0.0..1.02)
                .map_err(&e)?;
            chart
                .configure_mesh()
                .x_labels(((x1 - x0).ceil() as usize + 1).max(2))
                .x_label_formatter(&pow2_label)
                .y_labels(6)
                .y_label_formatter(&|y| format!("{y:.1}"))
                .x_desc("Model dimension")
                .y_desc(if pi == 0 { "Accuracy" } else { "" })
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 17))
                .light_line_style(WHITE.mix(0.0))
                .bold_line_style(BLACK.mix(0.12))
                .draw()
                .map_err(&e)?;
            let mut by_mixer: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for r in &rows {
                by_mixer.entry(r.preset.clone()).or_default().push(((r.d_model as f64).log2(), r.best_accuracy));
            }
            mixer_lines(&mut chart, by_mixer, 3)?;
        }
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// One line with markers per mixer, in the mixer's colour, and the legend.
fn mixer_lines<'a, DB: DrawingBackend + 'a, X: Ranged<ValueType = f64>, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    by_mixer: BTreeMap<String, Vec<(f64, f64)>>,
    width: u32,
) -> Result<()> {
    let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("lines");
    for (m, mut pts) in by_mixer {
        pts.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        let c = mixer_color(&m);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(width)))
            .map_err(&e)?
            .label(m.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(3)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 5, c.filled()))).map_err(&e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(&e)?;
    Ok(())
}

/// Accuracy vs recurrent state size (log x), best per (mixer, state size).
pub struct StatePlot {
    /// (mixer, state size, accuracy)
    pub points: Vec<(String, f64, f64)>,
}

impl<DB: DrawingBackend> Draw<DB> for StatePlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("state plot");
        root.fill(&WHITE).map_err(&e)?;
        let smin = self.points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).max(1.0);
        let smax = self.points.iter().map(|p| p.1).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption("MQAR accuracy vs recurrent state size (best per mixer and state size)", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(62)
            .build_cartesian_2d((smin / 1.6..smax * 1.6).log_scale(), 0.0..1.02)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_labels(20)
            .x_label_formatter(&|x| compact(*x))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .x_desc("Recurrent state size (elements per sequence, all layers)")
            .y_desc("Accuracy")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(&e)?;
        let mut by_mixer: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (m, s, a) in &self.points {
            by_mixer.entry(m.clone()).or_default().push((*s, *a));
        }
        mixer_lines(&mut chart, by_mixer, 2)?;
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// Loss and accuracy curves of one run.
pub struct Curves {
    pub title: String,
    pub mixer: String,
    pub loss: Vec<(f64, f64)>,
    pub acc: Vec<(f64, f64)>,
}

impl<DB: DrawingBackend> Draw<DB> for Curves {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("curves");
        root.fill(&WHITE).map_err(&e)?;
        let root = root.titled(&self.title, ("sans-serif", 18)).map_err(&e)?;
        let panels = root.split_evenly((1, 2));
        let c = mixer_color(&self.mixer);
        let smax = self.loss.iter().chain(&self.acc).map(|p| p.0).fold(1.0, f64::max);
        let lmax = self.loss.iter().map(|p| p.1).filter(|v| v.is_finite()).fold(0.1, f64::max) * 1.05;
        let specs: [(&str, &Vec<(f64, f64)>, f64); 2] = [("Training loss", &self.loss, lmax), ("Test accuracy", &self.acc, 1.02)];
        for (panel, (name, pts, ymax)) in panels.iter().zip(specs) {
            let mut chart = ChartBuilder::on(panel)
                .caption(name, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(52)
                .build_cartesian_2d(0.0..smax, 0.0..ymax)
                .map_err(&e)?;
            chart
                .configure_mesh()
                .x_desc("Step")
                .x_label_formatter(&|x| compact(*x))
                .y_label_formatter(&|y| format!("{y:.2}"))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .light_line_style(WHITE.mix(0.0))
                .bold_line_style(BLACK.mix(0.12))
                .draw()
                .map_err(&e)?;
            let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.1.is_finite()).collect();
            chart.draw_series(LineSeries::new(pts.clone(), c.stroke_width(2))).map_err(&e)?;
            if name.starts_with("Test") {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(&e)?;
            }
        }
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// Draws `fig` into `stem.png` and `stem.svg`; returns the SVG text.
fn render_both<T>(stem: &Path, size: (u32, u32), fig: &T) -> Result<String>
where
    T: for<'a> Draw<SVGBackend<'a>> + for<'a> Draw<BitMapBackend<'a>>,
{
    register_font();
    if let Some(p) = stem.parent() {
        std::fs::create_dir_all(p).map_err(io_err(p))?;
    }
    let png = stem.with_extension("png");
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        Draw::<BitMapBackend>::draw(fig, root)?;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        Draw::<SVGBackend>::draw(fig, root)?;
    }
    std::fs::write(stem.with_extension("svg"), &svg).map_err(io_err(stem.with_extension("svg")))?;
    Ok(svg)
}

/// Paths and SVG text of the plots written for a results directory.
#[derive(Debug, Default)]
pub struct Plots {
    pub figure2: Option<(PathBuf, String)>,
    pub state: Option<(PathBuf, String)>,
    /// run dir → (png path, svg text)
    pub curves: BTreeMap<String, (PathBuf, String)>,
}

pub fn curves_of(r: &RunRecord) -> Curves {
    let lines = read_lines(&Path::new(&r.run_dir).join("metrics.jsonl")).unwrap_or_default();
    let mut loss = vec![];
    let mut acc = vec![];
    for l in lines {
        match l {
            MetricLine::Train { step, loss: x, .. } => loss.push((step as f64, x)),
            MetricLine::Eval { step, result, .. } => acc.push((step as f64, result.accuracy)),
        }
    }
    Curves { title: format!("{} ({})", if r.label.is_empty() { &r.preset } else { &r.label }, r.run_id), mixer: r.preset.clone(), loss, acc }
}

/// Writes every plot for these runs under `out` (`figure2.png/svg`, `state_size.png/svg`,
/// `curves/<run dir name>.png/svg`).
pub fn plot_all(recs: &[RunRecord], out: &Path, with_curves: bool) -> Result<Plots> {
    let recs = usable(recs);
    let mut plots = Plots::default();
    if recs.is_empty() {
        return Ok(plots);
    }
    let rows = best_over(&recs, &["lr".to_string()]);
    let n_lens = rows.iter().map(|r| r.seq_len).collect::<BTreeSet<_>>().len() as u32;
    let fig = Figure2 { rows };
    let stem = out.join("figure2");
    let svg = render_both(&stem, ((40 + 430 * n_lens.max(1)).max(820), 470), &fig)?;
    plots.figure2 = Some((stem.with_extension("png"), svg));

    // One line per (mixer, sequence length) when the runs span several lengths: accuracies at
    // different task settings are not points of one trade-off curve.
    let several = recs.iter().map(|r| r.seq_len).collect::<BTreeSet<_>>().len() > 1;
    let mut best: BTreeMap<(String, i64), f64> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.state_size.unwrap_or(0) > 0) {
        let series = if several { format!("{} L={}", r.preset, r.seq_len) } else { r.preset.clone() };
        let e = best.entry((series, r.state_size.unwrap())).or_insert(0.0);
        *e = e.max(r.best_accuracy.unwrap());
    }
    if !best.is_empty() {
        let fig = StatePlot { points: best.into_iter().map(|((m, s), a)| (m, s as f64, a)).collect() };
        let stem = out.join("state_size");
        let svg = render_both(&stem, (900, 560), &fig)?;
        plots.state = Some((stem.with_extension("png"), svg));
    }
    if with_curves {
        for r in &recs {
            let c = curves_of(r);
            let name = Path::new(&r.run_dir).file_name().and_then(|s| s.to_str()).unwrap_or(&r.run_id).to_string();
            let stem = out.join("curves").join(&name);
            let svg = render_both(&stem, (860, 330), &c)?;
            plots.curves.insert(r.run_dir.clone(), (stem.with_extension("png"), svg));
        }
    }
    Ok(plots)
}

