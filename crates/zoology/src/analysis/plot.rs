//! Plots (plotters; PNG and SVG from the same drawing code):
//! 1. accuracy vs d_model (log2 x), one panel per sequence length, one line per mixer, best
//!    over lr — Zoology's Figure 2;
//! 2. accuracy vs recurrent state size (log x), best per (mixer, state size) — the Based
//!    paper's recall/memory trade-off;
//! 3. training loss and test accuracy curves of one run;
//! 4. per-task MAD scores as grouped bars ([`super::mad_plot`]);
//! 5. accuracy vs training FLOPs and the FLOPs-to-solve frontier ([`super::cost_plot`]);
//! 6. width needed vs sequence length, hand-set and trained ([`super::width_plot`]).
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

pub(crate) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font("sans-serif", style, FONT)
                .unwrap_or_else(|_| panic!("the bundled DejaVuSans.ttf is a valid font"));
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
        ("gla", (0, 0, 0)),
        ("delta_net", (120, 0, 120)),
        ("gated_delta_net", (200, 150, 0)),
        ("sliding_window", (0, 60, 160)),
        ("long_conv", (160, 60, 0)),
        ("mega", (60, 30, 90)),
        ("stripedhyena", (110, 170, 110)),
        ("performer", (255, 152, 150)),
        ("bigbird", (197, 176, 213)),
        ("nystromformer", (196, 156, 148)),
        ("scatterbrain", (247, 182, 210)),
        ("rwkv5", (90, 40, 160)),
        ("rwkv6", (180, 140, 230)),
        ("rwkv7", (60, 0, 100)),
        ("ttt_linear", (0, 128, 128)),
        ("ttt_mlp", (0, 90, 90)),
        ("selective_lookups", (255, 187, 120)),
        ("sigmoid_lookups", (210, 100, 0)),
        ("sma_lookups", (140, 70, 0)),
        ("native_sparse_attention", (100, 150, 220)),
        ("mamba2", (240, 60, 160)),
        ("s4", (152, 223, 138)),
        ("liquid_s4", (80, 120, 40)),
        ("gss", (219, 219, 141)),
        ("bigs", (158, 218, 229)),
        ("monarch_mixer", (255, 220, 0)),
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

pub(crate) fn perr<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Other(format!("plotting {what}: {e:?}"))
}

/// Which runs go into the accuracy plots: finished ones with an accuracy (not failed or
/// diverged ones; their curves are still drawn).
fn usable(recs: &[RunRecord]) -> Vec<RunRecord> {
    recs.iter().filter(|r| crate::results::is_result(r)).cloned().collect()
}

pub(crate) fn pow2_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 {
        format!("{}", 2f64.powf(x.round()) as i64)
    } else {
        String::new()
    }
}

pub(crate) fn compact(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}
/// A log axis over `lo..hi` whose ticks are 1, 2 and 5 times the powers of ten inside it, each
/// once, with light grid points at every integer multiple. (plotters' own log key points list
/// each decade's last light tick and the next decade's first bold one, the same value, so its
/// label was drawn twice, one over the other, and looked bold.)
pub(crate) fn log_axis(lo: f64, hi: f64) -> plotters::coord::combinators::WithKeyPoints<LogCoord<f64>> {
    let (lo, hi) = (lo.min(hi).max(f64::MIN_POSITIVE), hi.max(lo).max(f64::MIN_POSITIVE));
    let ticks = |ms: &[f64]| {
        let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let mut v = vec![];
        for k in k0..=k1 {
            for m in ms {
                let x = m * 10f64.powi(k);
                if (lo..=hi).contains(&x) {
                    v.push(x);
                }
            }
        }
        v
    };
    (lo..hi)
        .log_scale()
        .with_key_points(ticks(&[1.0, 2.0, 5.0]))
        .with_light_points(ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]))
}

/// Tick label on a log axis: only 1, 2 and 5 times a power of ten are labelled (the other ticks
/// keep their grid line), so labels never run into each other.
pub(crate) fn log_label(v: f64) -> String {
    if v <= 0.0 {
        return String::new();
    }
    let lead = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0].iter().any(|d| (lead - d).abs() < 1e-6 * d) {
        compact(v)
    } else {
        String::new()
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Titles of the tasks of these runs (from the task registry), joined: "MQAR",
/// "In-context recall (MAD) + Compression (MAD)".
pub fn task_titles<'a>(tasks: impl Iterator<Item = &'a str>) -> String {
    let mut out: Vec<String> = vec![];
    for t in tasks.flat_map(|t| t.split('+')) {
        let title = crate::tasks::lookup(t).map(|e| e.title.to_string()).unwrap_or_else(|| t.to_string());
        if !out.contains(&title) {
            out.push(title);
        }
    }
    if out.is_empty() {
        "Task".into()
    } else {
        out.join(" + ")
    }
}

/// "4 kv pairs", "V 16, 0.2 noise fraction": the non-seq_len slices of some rows, values of
/// each slice joined, labels from the task registry.
pub fn slice_caption(rows: &[&BestRow]) -> String {
    let mut keys: Vec<&str> = vec![];
    for r in rows {
        for (k, _) in &r.slices {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
    }
    keys.iter()
        .map(|k| {
            let vals: BTreeSet<&str> =
                rows.iter().flat_map(|r| r.slices.iter().filter(|(x, _)| x == k).map(|(_, v)| v.as_str())).collect();
            let label = crate::tasks::find_slice(k).map(|s| s.label).unwrap_or(k);
            format!("{} {label}", vals.into_iter().collect::<Vec<_>>().join(","))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Figure 2: accuracy vs model dimension, a panel per sequence length, best over lr.
pub struct Figure2 {
    pub rows: Vec<BestRow>,
}

pub(crate) trait Draw<DB: DrawingBackend> {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()>;
}

impl<DB: DrawingBackend> Draw<DB> for Figure2 {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("figure 2");
        root.fill(&WHITE).map_err(&e)?;
        let lens: BTreeSet<i64> = self.rows.iter().map(|r| r.seq_len).collect();
        let lens: Vec<i64> = lens.into_iter().collect();
        let title = format!(
            "{} accuracy vs model dimension (best over learning rate)",
            task_titles(self.rows.iter().map(|r| r.task.as_str()))
        );
        let root = root.titled(&title, ("sans-serif", 24)).map_err(&e)?;
        let (plots, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(self.legend_w()));
        let panels = plots.split_evenly((1, lens.len().max(1)));
        let mixers: BTreeSet<&str> = self.rows.iter().map(|r| r.preset.as_str()).collect();
        let shapes = variant_shapes(mixers.iter().copied());
        draw_legend(&legend, &mixers.iter().map(|m| (m.to_string(), mixer_color(m), shapes[*m])).collect::<Vec<_>>())?;
        let dmin = self.rows.iter().map(|r| r.d_model).min().unwrap_or(16) as f64;
        let dmax = self.rows.iter().map(|r| r.d_model).max().unwrap_or(256) as f64;
        let (x0, x1) = (dmin.log2() - 0.4, dmax.log2() + 0.4);
        for (pi, (panel, &l)) in panels.iter().zip(&lens).enumerate() {
            let rows: Vec<&BestRow> = self.rows.iter().filter(|r| r.seq_len == l).collect();
            let sl = slice_caption(&rows);
            let caption =
                if sl.is_empty() { format!("Sequence length {l}") } else { format!("Sequence length {l} ({sl})") };
            let mut chart = ChartBuilder::on(panel)
                .caption(caption, ("sans-serif", 20))
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
            let series = by_mixer
                .into_iter()
                .map(|(m, pts)| Series { color: mixer_color(&m), shape: shapes[m.as_str()], pts })
                .collect();
            mixer_lines(&mut chart, series, 3)?;
        }
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// Marker shapes for presets drawn in their mixer's colour: the first preset of a colour gets a
/// circle (0), the next ones sharing it (variants such as `x` and `x_soft`) a triangle, then a
/// square, so that lines of one colour stay apart.
pub(crate) fn variant_shapes<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut seen: Vec<RGBColor> = vec![];
    names
        .map(|n| {
            let c = mixer_color(n);
            let k = seen.iter().filter(|s| **s == c).count();
            seen.push(c);
            (n, k % 3)
        })
        .collect()
}

/// The house style of a chart's mesh: fonts of the given sizes, no minor grid, a light major
/// grid (for new charts; the older ones above spell it out).
pub(crate) fn house_mesh<'a, 'b, 'c, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    m: &'c mut plotters::chart::MeshStyle<'a, 'b, X, Y, DB>,
    label: u32,
    desc: u32,
) -> &'c mut plotters::chart::MeshStyle<'a, 'b, X, Y, DB> {
    m.label_style(("sans-serif", label))
        .axis_desc_style(("sans-serif", desc))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
}

/// Width of the legend strip to the right of the plots: the legend never covers data.
pub(crate) const LEGEND_W: u32 = 190;

/// A legend strip wide enough for its longest label (at least [`LEGEND_W`]): the label starts 44
/// px in ([`draw_legend`]) and is measured in the bundled font at the legend's size, so a long
/// preset name (`native_sparse_attention_w4`) is not cut off where a shorter one differs from it.
pub(crate) fn legend_w<'a>(labels: impl IntoIterator<Item = &'a str>) -> u32 {
    register_font();
    let font = ("sans-serif", LEGEND_FONT).into_font();
    let width = |l: &str| font.box_size(l).map(|(w, _)| w).unwrap_or(10 * l.chars().count() as u32);
    labels.into_iter().map(|l| 44 + width(l) + 12).max().unwrap_or(0).max(LEGEND_W)
}

/// Font size of legend labels.
const LEGEND_FONT: f64 = 16.0;

impl Figure2 {
    fn legend_w(&self) -> u32 {
        legend_w(self.rows.iter().map(|r| r.preset.as_str()))
    }
}

/// One line of a plot: its colour (the mixer's), its marker shape and its points.
pub(crate) struct Series {
    pub(crate) color: RGBColor,
    /// See [`marker`].
    pub(crate) shape: usize,
    pub(crate) pts: Vec<(f64, f64)>,
}

/// One line with markers per series.
pub(crate) fn mixer_lines<'a, DB: DrawingBackend + 'a, X: Ranged<ValueType = f64>, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    series: Vec<Series>,
    width: u32,
) -> Result<()> {
    let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("lines");
    for Series { color: c, shape, mut pts } in series {
        pts.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        chart.draw_series(LineSeries::new(pts.clone(), c.stroke_width(width))).map_err(&e)?;
        for p in pts {
            marker(chart.plotting_area(), p, shape, c).map_err(&e)?;
        }
    }
    Ok(())
}

/// The marker of `shape` (0 circle, 1 triangle, 2 square, 3 diamond; cycles) at `at`, in
/// whatever coordinates `area` uses: data points in a chart, pixels in the legend.
pub(crate) fn marker<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    at: CT::From,
    shape: usize,
    c: RGBColor,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    CT::From: Clone,
{
    match shape % 4 {
        0 => area.draw(&Circle::new(at, 5, c.filled())),
        1 => area.draw(&TriangleMarker::new(at, 7, c.filled())),
        2 => area.draw(&(EmptyElement::at(at) + Rectangle::new([(-5, -5), (5, 5)], c.filled()))),
        _ => area.draw(&(EmptyElement::at(at) + Polygon::new(vec![(0, -7), (6, 0), (0, 7), (-6, 0)], c.filled()))),
    }
}

/// The legend, one entry per (label, colour, marker shape), in a strip of its own.
pub(crate) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor, usize)],
) -> Result<()> {
    let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("legend");
    let (x0, mut y) = (8i32, 60i32);
    for (label, c, shape) in entries {
        let c = *c;
        area.draw(&PathElement::new(vec![(x0, y), (x0 + 28, y)], c.stroke_width(3))).map_err(&e)?;
        marker(area, (x0 + 14, y), *shape, c).map_err(&e)?;
        area.draw(&Text::new(label.clone(), (x0 + 36, y - 9), ("sans-serif", LEGEND_FONT))).map_err(&e)?;
        y += 26;
    }
    Ok(())
}

/// Accuracy vs recurrent state size (log x), best per (mixer, state size).
pub struct StatePlot {
    /// (mixer, sequence length, state size, accuracy)
    pub points: Vec<(String, i64, f64, f64)>,
    /// Task title(s) for the caption.
    pub title: String,
}

impl<DB: DrawingBackend> Draw<DB> for StatePlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("state plot");
        root.fill(&WHITE).map_err(&e)?;
        let smin = self.points.iter().map(|p| p.2).fold(f64::INFINITY, f64::min).max(1.0);
        let smax = self.points.iter().map(|p| p.2).fold(1.0, f64::max);
        // one line per (mixer, L): colour = mixer, marker = L (accuracies at different task
        // settings are not points of one trade-off curve)
        let lens: Vec<i64> = self.points.iter().map(|p| p.1).collect::<BTreeSet<_>>().into_iter().collect();
        let shape = |l: i64| lens.iter().position(|&x| x == l).unwrap_or(0);
        let mut by_series: BTreeMap<(String, i64), Vec<(f64, f64)>> = BTreeMap::new();
        for (m, l, st, a) in &self.points {
            by_series.entry((m.clone(), *l)).or_default().push((*st, *a));
        }
        let label = |m: &str, l: i64| if lens.len() > 1 { format!("{m} L={l}") } else { m.to_string() };
        let (plot, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        draw_legend(
            &legend,
            &by_series.keys().map(|(m, l)| (label(m, *l), mixer_color(m), shape(*l))).collect::<Vec<_>>(),
        )?;
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                format!("{} accuracy vs recurrent state size (best per mixer and state size)", self.title),
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(62)
            .build_cartesian_2d(log_axis(smin / 1.6, smax * 1.6), 0.0..1.02)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_labels(30)
            .x_label_formatter(&|x| log_label(*x))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .x_desc("Recurrent state size (elements per sequence, all layers)")
            .y_desc("Accuracy")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(&e)?;
        let series = by_series
            .into_iter()
            .map(|((m, l), pts)| Series { color: mixer_color(&m), shape: shape(l), pts })
            .collect();
        mixer_lines(&mut chart, series, 2)?;
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
        let specs: [(&str, &Vec<(f64, f64)>, f64); 2] =
            [("Training loss", &self.loss, lmax), ("Test accuracy", &self.acc, 1.02)];
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
pub(crate) fn render_both<T>(stem: &Path, size: (u32, u32), fig: &T) -> Result<String>
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
    /// Per-task MAD scores (when the runs cover two or more tasks).
    pub mad: Option<(PathBuf, String)>,
    /// Accuracy vs training FLOPs and the FLOPs-to-solve frontier ([`super::cost_plot`]).
    pub accuracy_vs_flops: Option<(PathBuf, String)>,
    pub frontier: Option<(PathBuf, String)>,
    /// The cost-to-solve rows at accuracy 0.9 behind the frontier (for the report's table).
    pub cost_rows: Vec<crate::results::cost::CostRow>,
    /// Width needed vs sequence length, constructed and trained ([`super::width_plot`]).
    pub width: Option<(PathBuf, String)>,
    /// run dir → (png path, svg text)
    pub curves: BTreeMap<String, (PathBuf, String)>,
    /// `zoology arhits --out DIR` output found in the results directory, with its plots' SVG
    /// ([`attach_arhits`]).
    pub arhits: Option<(crate::analysis::arhits::ArHitsOutput, Vec<String>)>,
}

/// Adds `dir/arhits.json` and its plots (written by `zoology arhits … --out DIR`) to `plots`.
pub fn attach_arhits(plots: &mut Plots, dir: &Path) -> Result<()> {
    if let Some(o) = crate::analysis::arhits::read_output(dir)? {
        let svgs = ["arhits_frequency.svg", "arhits_ar_vs_other.svg"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .collect();
        plots.arhits = Some((o, svgs));
    }
    Ok(())
}

pub fn curves_of(r: &RunRecord) -> Curves {
    let lines = read_lines(&Path::new(&r.run_dir).join("metrics.jsonl")).unwrap_or_default();
    let mut loss = vec![];
    let mut acc = vec![];
    for l in lines {
        match l {
            MetricLine::Train { step, loss: x, .. } if x.is_finite() => loss.push((step as f64, x)),
            MetricLine::Eval { step, result, .. } if result.accuracy.is_finite() => {
                acc.push((step as f64, result.accuracy))
            }
            _ => {}
        }
    }
    Curves {
        title: format!("{} ({})", if r.label.is_empty() { &r.preset } else { &r.label }, r.run_id),
        mixer: r.preset.clone(),
        loss,
        acc,
    }
}

/// Writes every plot for these runs under `out` (`figure2.png/svg`, `state_size.png/svg`,
/// `curves/<run dir name>.png/svg`).
pub fn plot_all(all: &[RunRecord], out: &Path, with_curves: bool) -> Result<Plots> {
    let recs = usable(all);
    let mut plots = Plots::default();
    if with_curves {
        for r in all.iter().filter(|r| r.best_accuracy.is_some()) {
            let c = curves_of(r);
            let name = Path::new(&r.run_dir).file_name().and_then(|s| s.to_str()).unwrap_or(&r.run_id).to_string();
            let stem = out.join("curves").join(&name);
            let svg = render_both(&stem, (860, 330), &c)?;
            plots.curves.insert(r.run_dir.clone(), (stem.with_extension("png"), svg));
        }
    }
    if recs.is_empty() {
        return Ok(plots);
    }
    let rows = best_over(&recs, &["lr".to_string()]);
    let n_lens = rows.iter().map(|r| r.seq_len).collect::<BTreeSet<_>>().len() as u32;
    let fig = Figure2 { rows };
    let stem = out.join("figure2");
    let svg = render_both(&stem, ((40 + 430 * n_lens.max(1)).max(820) + fig.legend_w(), 470), &fig)?;
    plots.figure2 = Some((stem.with_extension("png"), svg));

    let mut best: BTreeMap<(String, i64, i64), f64> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.state_size.unwrap_or(0) > 0) {
        let e = best.entry((r.preset.clone(), r.seq_len, r.state_size.unwrap())).or_insert(0.0);
        *e = e.max(r.best_accuracy.unwrap());
    }
    if !best.is_empty() {
        let title = task_titles(
            recs.iter()
                .map(|r| r.hparams.get("data.train.0.task").and_then(|v| v.as_str()).unwrap_or(""))
                .filter(|t| !t.is_empty()),
        );
        let fig = StatePlot { points: best.into_iter().map(|((m, l, s), a)| (m, l, s as f64, a)).collect(), title };
        let stem = out.join("state_size");
        let svg = render_both(&stem, (900 + LEGEND_W, 560), &fig)?;
        plots.state = Some((stem.with_extension("png"), svg));
    }
    if let Some(fig) = super::mad_plot::MadPlot::of(&crate::results::mad_scores(&recs)) {
        let stem = out.join("mad_scores");
        let w = 160 + 40 * (fig.groups.len() * fig.bars.len().max(1)) as u32;
        let svg = render_both(&stem, (w.clamp(900, 2400) + LEGEND_W, 480), &fig)?;
        plots.mad = Some((stem.with_extension("png"), svg));
    }
    let (acc, frontier, rows) = super::cost_plot::cost_plots(&recs, out)?;
    plots.accuracy_vs_flops = acc;
    plots.frontier = frontier;
    plots.cost_rows = rows;
    if let Some(fig) = super::width_plot::WidthPlot::of(&recs) {
        let stem = out.join("width_vs_length");
        let svg = render_both(&stem, (900 + fig.legend_w(), 540), &fig)?;
        plots.width = Some((stem.with_extension("png"), svg));
    }
    Ok(plots)
}

#[cfg(test)]
mod tests {

    /// Variants of one mixer share its colour and get successive markers; other mixers keep circles.
    #[test]
    fn variants_of_a_mixer_get_their_own_markers() {
        let s =
            variant_shapes(["attention", "sma_lookups", "sma_lookups_soft", "base_conv", "sma_lookups_x"].into_iter());
        assert_eq!((s["attention"], s["base_conv"], s["sma_lookups"]), (0, 0, 0));
        assert_eq!((s["sma_lookups_soft"], s["sma_lookups_x"]), (1, 2));
    }

    /// Every registered mixer has its own colour (two mixers in one plot must never share one).
    #[test]
    fn registered_mixers_have_distinct_colours() {
        let names = crate::mixers::names();
        let mut seen = std::collections::HashMap::new();
        for n in &names {
            let c = mixer_color(n);
            if let Some(other) = seen.insert((c.0, c.1, c.2), *n) {
                panic!("{n} and {other} share colour {:?}", (c.0, c.1, c.2));
            }
        }
    }
    use super::*;

    #[test]
    fn log_axis_labels_only_one_two_five() {
        let got: Vec<String> =
            [100.0, 300.0, 500.0, 1000.0, 2000.0, 3000.0, 9000.0, 10000.0, 20000.0, 50000.0, 70000.0, 1e6]
                .iter()
                .map(|&v| log_label(v))
                .collect();
        assert_eq!(got, ["100", "", "500", "1k", "2k", "", "", "10k", "20k", "50k", "", "1M"]);
    }

    /// Every text a plot draws, as (x, y, content) from plotters' SVG (the content is on the
    /// line after its `<text …>` tag).
    fn svg_texts(svg: &str) -> Vec<(String, String, String)> {
        let lines: Vec<&str> = svg.lines().collect();
        let attr = |l: &str, a: &str| {
            l.split(&format!(" {a}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_string()
        };
        lines
            .windows(2)
            .filter(|w| w[0].trim_start().starts_with("<text"))
            .map(|w| (attr(w[0], "x"), attr(w[0], "y"), w[1].trim().to_string()))
            .collect()
    }

    /// No label of the state-size plot's log axis is drawn twice at the same place (its last
    /// label was: plotters' log key points repeat every decade boundary).
    #[test]
    fn log_axis_labels_are_drawn_once() {
        register_font();
        for (lo, hi) in [(100.0, 5000.0), (300.0, 2.0e5), (1.0, 10.0), (4096.0, 4096.0)] {
            let fig = StatePlot {
                points: vec![("attention".into(), 64, lo, 0.2), ("base_conv".into(), 64, hi, 0.9)],
                title: "MQAR".into(),
            };
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (900, 400)).into_drawing_area();
                Draw::<SVGBackend>::draw(&fig, root).unwrap();
            }
            let texts = svg_texts(&svg);
            let mut seen = std::collections::HashSet::new();
            let twice: Vec<_> = texts.iter().filter(|t| !t.2.is_empty() && !seen.insert((*t).clone())).collect();
            assert!(twice.is_empty(), "{lo}..{hi}: drawn twice: {twice:?}");
            // the axis is labelled at all
            assert!(texts.iter().any(|t| t.2.ends_with('k') || t.2.chars().all(|c| c.is_ascii_digit())), "{lo}..{hi}");
        }
        let axis = log_axis(100.0, 5000.0);
        assert_eq!(axis.bold_points(), &[100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]);
    }

    #[test]
    fn state_plot_has_one_legend_entry_and_marker_per_mixer_and_length() {
        let fig = StatePlot {
            points: vec![
                ("rwkv".into(), 64, 512.0, 0.2),
                ("rwkv".into(), 64, 1024.0, 0.5),
                ("rwkv".into(), 128, 512.0, 0.1),
                ("h3".into(), 128, 4096.0, 0.3),
            ],
            title: "MQAR".into(),
        };
        register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (900, 400)).into_drawing_area();
            Draw::<SVGBackend>::draw(&fig, root).unwrap();
        }
        // plotters writes each text's content on a line of its own
        let texts = |label: &str| svg.lines().filter(|l| l.trim() == label).count();
        for label in ["rwkv L=64", "rwkv L=128", "h3 L=128"] {
            assert_eq!(texts(label), 1, "legend entry {label}");
        }
        assert_eq!(texts("h3 L=64"), 0);
    }

    /// A Figure-2 row of `preset` at d = 64, accuracy 0.5.
    fn best_row(preset: &str, task: &str, l: i64, slices: Vec<(&str, &str)>) -> BestRow {
        BestRow {
            preset: preset.into(),
            mixer: preset.into(),
            d_model: 64,
            seq_len: l,
            task: task.into(),
            slices: slices.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            state_size: None,
            best_accuracy: 0.5,
            best_at: Default::default(),
            runs: 1,
            run_id: "x".into(),
            run_dir: "x".into(),
        }
    }

    /// A long preset name fits its legend: the strip grows to the longest label measured in the
    /// bundled font, and Figure 2's canvas grows with it (at the old fixed 190 px,
    /// `native_sparse_attention` and `native_sparse_attention_w4` were both cut to
    /// "native_sparse_attenti").
    #[test]
    fn legend_strip_fits_the_longest_label() {
        register_font();
        assert_eq!(legend_w(["attention", "base_conv"]), LEGEND_W);
        let long = "native_sparse_attention_w4";
        let (text_w, _) = ("sans-serif", LEGEND_FONT).into_font().box_size(long).unwrap();
        assert!(text_w > LEGEND_W - 44, "the test name must be too long for the old strip: {text_w} px");
        assert!(legend_w(["attention", long]) >= 44 + text_w, "{} < {}", legend_w(["attention", long]), 44 + text_w);
        // the rendered SVG: the label starts 44 px into a strip at the canvas's right edge
        let fig = Figure2 { rows: vec![best_row("attention", "mqar", 64, vec![]), best_row(long, "mqar", 64, vec![])] };
        let canvas = 820 + fig.legend_w();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (canvas, 470)).into_drawing_area();
            Draw::<SVGBackend>::draw(&fig, root).unwrap();
        }
        let lines: Vec<&str> = svg.lines().collect();
        let at = lines.iter().position(|l| l.trim() == long).expect("legend entry");
        let x: f64 = lines[at - 1].split("x=\"").nth(1).and_then(|r| r.split('"').next()).unwrap().parse().unwrap();
        assert!(x + text_w as f64 <= canvas as f64, "label ends at {} > canvas {canvas}", x + text_w as f64);
    }

    /// Titles and panel captions come from the task registry: MQAR's "kv pairs", MAD's noise
    /// fraction, no slice words for a task without extra slices.
    #[test]
    fn figure2_captions_come_from_the_task_registry() {
        let row = |task: &str, l: i64, slices: Vec<(&str, &str)>| best_row("attention", task, l, slices);
        register_font();
        let draw = |rows: Vec<BestRow>| {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (1200, 400)).into_drawing_area();
                Draw::<SVGBackend>::draw(&Figure2 { rows }, root).unwrap();
            }
            svg
        };
        let svg =
            draw(vec![row("mqar", 64, vec![("num_kv_pairs", "4")]), row("mqar", 128, vec![("num_kv_pairs", "8")])]);
        assert!(
            svg.contains("MQAR accuracy vs model dimension")
                && svg.contains("Sequence length 64 (4 kv pairs)")
                && svg.contains("Sequence length 128 (8 kv pairs)"),
            "{svg}"
        );
        let svg = draw(vec![row("noisy_recall", 128, vec![("vocab_size", "32"), ("frac_noise", "0.2")])]);
        assert!(
            svg.contains("Noisy recall (MAD) accuracy")
                && svg.contains("Sequence length 128 (32 vocabulary size, 0.2 noise fraction)"),
            "{svg}"
        );
        let svg = draw(vec![row("parity", 16, vec![])]);
        assert!(svg.contains(">Sequence length 16<") || svg.lines().any(|l| l.trim() == "Sequence length 16"), "{svg}");
        assert!(!svg.contains("kv pairs"));
    }
}
