//! Plots of the cost to solve ([`crate::results::cost`]):
//! 1. accuracy vs training FLOPs, a panel per sequence length, one line per mixer: the best
//!    test accuracy any of the mixer's runs (any width, any lr) had reached after spending at
//!    most x training FLOPs (the running maximum over their evaluations);
//! 2. the frontier: training FLOPs to solve (the cheapest solving run) vs sequence length, one
//!    line per mixer; a mixer that solved no run at a length has no point there.
//!
//! An evaluation at step s is placed at the training FLOPs of the examples seen up to it
//! (s × the mean batch, exact at epoch ends) × the model's training FLOPs per sequence.

use super::plot::{
    draw_legend, house_mesh, log_axis, mixer_color, mixer_lines, perr, pow2_label, Draw, Series, LEGEND_W,
};
use crate::error::Result;
use crate::results::cost::CostRow;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Accuracy vs training FLOPs: (mixer, sequence length) → the running-maximum points.
pub struct AccFlopsPlot {
    pub title: String,
    pub series: BTreeMap<(String, i64), Vec<(f64, f64)>>,
}

impl AccFlopsPlot {
    /// From every run's evaluations as (mixer, sequence length, training FLOPs, accuracy): the
    /// running maximum of accuracy over FLOPs, per mixer and length.
    pub fn from_points(title: String, pts: Vec<(String, i64, f64, f64)>) -> AccFlopsPlot {
        let mut by: BTreeMap<(String, i64), Vec<(f64, f64)>> = BTreeMap::new();
        for (m, l, f, a) in pts.into_iter().filter(|p| p.2 > 0.0 && p.2.is_finite() && p.3.is_finite()) {
            by.entry((m, l)).or_default().push((f, a));
        }
        let series = by.into_iter().map(|(k, v)| (k, running_max(v))).collect();
        AccFlopsPlot { title, series }
    }
}

/// Sorted by x; keeps only the points that raise the maximum (a staircase of records).
pub fn running_max(mut v: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut out: Vec<(f64, f64)> = vec![];
    for (x, y) in v {
        if out.last().map_or(true, |&(_, best)| y > best) {
            out.push((x, y));
        }
    }
    out
}

fn log_range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in vals.filter(|v| *v > 0.0 && v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (1.0, 10.0);
    }
    (lo / 1.6, hi * 1.6)
}

impl<DB: DrawingBackend> Draw<DB> for AccFlopsPlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("accuracy vs FLOPs");
        root.fill(&WHITE).map_err(&e)?;
        let lens: Vec<i64> = self.series.keys().map(|k| k.1).collect::<BTreeSet<_>>().into_iter().collect();
        let root = root
            .titled(
                &format!("{}: best accuracy reached vs training FLOPs spent (any width, any lr)", self.title),
                ("sans-serif", 22),
            )
            .map_err(&e)?;
        let (plots, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        let mixers: BTreeSet<&str> = self.series.keys().map(|k| k.0.as_str()).collect();
        draw_legend(&legend, &mixers.iter().map(|m| (m.to_string(), mixer_color(m), 0)).collect::<Vec<_>>())?;
        let (x0, x1) = log_range(self.series.values().flat_map(|v| v.iter().map(|p| p.0)));
        let panels = plots.split_evenly((1, lens.len().max(1)));
        for (pi, (panel, &l)) in panels.iter().zip(&lens).enumerate() {
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("Sequence length {l}"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(48)
                .y_label_area_size(if pi == 0 { 62 } else { 44 })
                .build_cartesian_2d(log_axis(x0, x1), 0.0..1.02)
                .map_err(&e)?;
            house_mesh(
                chart
                    .configure_mesh()
                    .x_labels(30)
                    .x_label_formatter(&|x| sci_label(*x))
                    .y_labels(6)
                    .y_label_formatter(&|y| format!("{y:.1}"))
                    .x_desc("Training FLOPs")
                    .y_desc(if pi == 0 { "Accuracy" } else { "" }),
                14,
                17,
            )
            .draw()
            .map_err(&e)?;
            for ((m, _), pts) in self.series.iter().filter(|(k, _)| k.1 == l) {
                // a staircase: the record holds until the next one
                let mut stair: Vec<(f64, f64)> = vec![];
                for (i, &(x, y)) in pts.iter().enumerate() {
                    if i > 0 {
                        stair.push((x, pts[i - 1].1));
                    }
                    stair.push((x, y));
                }
                if let Some(&(_, y)) = pts.last() {
                    stair.push((x1, y));
                }
                let c = mixer_color(m);
                chart.draw_series(LineSeries::new(stair, c.stroke_width(2))).map_err(&e)?;
            }
        }
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// "1e12"-style labels on a log axis: 1, 2 and 5 times a power of ten are labelled ("2e11").
fn sci_label(v: f64) -> String {
    if v <= 0.0 {
        return String::new();
    }
    let p = v.log10().floor();
    let lead = v / 10f64.powf(p);
    match [1.0, 2.0, 5.0, 10.0].iter().find(|d| (lead - *d).abs() < 1e-6 * *d) {
        Some(&d) if d == 10.0 => format!("1e{}", p as i64 + 1),
        Some(&d) => format!("{}e{}", d as i64, p as i64),
        None => String::new(),
    }
}

/// Training FLOPs to solve vs sequence length, one line per mixer.
pub struct FrontierPlot {
    pub title: String,
    pub threshold: f64,
    /// (mixer, sequence length, training FLOPs to solve)
    pub points: Vec<(String, i64, f64)>,
}

impl FrontierPlot {
    pub fn of(title: String, rows: &[CostRow]) -> FrontierPlot {
        let threshold = rows.first().map(|r| r.threshold).unwrap_or(0.9);
        let points = rows
            .iter()
            .filter_map(|r| r.train_flops.filter(|f| *f > 0.0).map(|f| (r.preset.clone(), r.seq_len, f)))
            .collect();
        FrontierPlot { title, threshold, points }
    }
}

impl<DB: DrawingBackend> Draw<DB> for FrontierPlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("frontier");
        root.fill(&WHITE).map_err(&e)?;
        let (plot, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        let mixers: BTreeSet<&str> = self.points.iter().map(|p| p.0.as_str()).collect();
        draw_legend(&legend, &mixers.iter().map(|m| (m.to_string(), mixer_color(m), 0)).collect::<Vec<_>>())?;
        // x: log2 of the length on a linear axis, so every power of two gets its label
        let lmin = (self.points.iter().map(|p| p.1).min().unwrap_or(64) as f64).log2();
        let lmax = (self.points.iter().map(|p| p.1).max().unwrap_or(64) as f64).log2();
        let (y0, y1) = log_range(self.points.iter().map(|p| p.2));
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                format!(
                    "{}: training FLOPs to reach accuracy {} (cheapest run; no point = not solved)",
                    self.title, self.threshold
                ),
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(lmin - 0.5..lmax + 0.5, log_axis(y0, y1))
            .map_err(&e)?;
        house_mesh(
            chart
                .configure_mesh()
                .x_labels(((lmax - lmin).ceil() as usize + 2).max(2))
                .x_label_formatter(&pow2_label)
                .y_labels(30)
                .y_label_formatter(&|y| sci_label(*y))
                .x_desc("Sequence length")
                .y_desc("Training FLOPs to solve"),
            15,
            17,
        )
        .draw()
        .map_err(&e)?;
        let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (m, l, f) in &self.points {
            by.entry(m.clone()).or_default().push(((*l as f64).log2(), *f));
        }
        let series = by.into_iter().map(|(m, pts)| Series { color: mixer_color(&m), shape: 0, pts }).collect();
        mixer_lines(&mut chart, series, 3)?;
        root.present().map_err(&e)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_max_keeps_only_records() {
        let v = vec![(3.0, 0.2), (1.0, 0.1), (2.0, 0.05), (4.0, 0.5), (5.0, 0.4), (4.0, 0.3)];
        assert_eq!(running_max(v), vec![(1.0, 0.1), (3.0, 0.2), (4.0, 0.5)]);
    }

    #[test]
    fn sci_labels_only_one_two_five() {
        let got: Vec<String> = [1e9, 2e9, 1e12, 5e11, 3e11, 9.999999999999e11].iter().map(|&v| sci_label(v)).collect();
        assert_eq!(got, ["1e9", "2e9", "1e12", "5e11", "", "1e12"]);
    }
}

/// Writes `accuracy_vs_flops` and `frontier` (PNG and SVG) under `out` for these runs, when the
/// FLOPs of their models can be counted; returns (accuracy vs FLOPs, frontier), each `None`
/// when there is nothing to draw, and the cost rows at accuracy 0.9 behind the frontier.
#[allow(clippy::type_complexity)]
pub fn cost_plots(
    recs: &[crate::results::index::RunRecord],
    out: &std::path::Path,
) -> Result<(Option<(std::path::PathBuf, String)>, Option<(std::path::PathBuf, String)>, Vec<CostRow>)> {
    use crate::config::RunConfig;
    use crate::results::cost::{cost_rows, epoch_shape, model_cost};
    use crate::train::metrics::{read_lines, MetricLine};
    let recs: Vec<_> = recs.iter().filter(|r| crate::results::is_result(r)).cloned().collect();
    // each run's model cost once (it regenerates the training data): the points here and the
    // frontier's rows both use it
    let mut costs: BTreeMap<String, Option<crate::results::cost::ModelCost>> = BTreeMap::new();
    let mut pts = vec![];
    for r in &recs {
        let dir = std::path::Path::new(&r.run_dir);
        let Ok(cfg) = RunConfig::load(&dir.join(crate::rundir::CONFIG)) else { continue };
        let mc = model_cost(&cfg);
        costs.insert(r.run_dir.clone(), mc);
        let Some(mc) = mc else { continue };
        let (n, _, spe) = epoch_shape(&cfg);
        for l in read_lines(&dir.join(crate::rundir::METRICS)).unwrap_or_default() {
            if let MetricLine::Eval { step, result, .. } = l {
                let examples = step as f64 * n as f64 / spe.max(1) as f64;
                pts.push((r.preset.clone(), r.seq_len, examples * mc.train_flops_per_example, result.accuracy));
            }
        }
    }
    let title = super::plot::task_titles(
        recs.iter()
            .map(|r| r.hparams.get("data.train.0.task").and_then(|v| v.as_str()).unwrap_or(""))
            .filter(|t| !t.is_empty()),
    );
    let mut acc = None;
    if !pts.is_empty() {
        let fig = AccFlopsPlot::from_points(title.clone(), pts);
        let n_lens = fig.series.keys().map(|k| k.1).collect::<BTreeSet<_>>().len() as u32;
        let stem = out.join("accuracy_vs_flops");
        let svg = super::plot::render_both(&stem, ((40 + 430 * n_lens.max(1)).max(820) + LEGEND_W, 470), &fig)?;
        acc = Some((stem.with_extension("png"), svg));
    }
    let rows = cost_rows(&recs, 0.9, &|r, _| costs.get(&r.run_dir).copied().flatten())?;
    let fig = FrontierPlot::of(title, &rows);
    let mut frontier = None;
    if !fig.points.is_empty() {
        let stem = out.join("frontier");
        let svg = super::plot::render_both(&stem, (900 + LEGEND_W, 520), &fig)?;
        frontier = Some((stem.with_extension("png"), svg));
    }
    Ok((acc, frontier, rows))
}
