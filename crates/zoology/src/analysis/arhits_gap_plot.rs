//! Plots of the attention–gated-convolution gap on real text (issue 21), in the style of
//! [`super::plot`]:
//! 1. [`GapByFrequencyPlot`]: each model's perplexity over the reference's (log axis) by
//!    training-bigram frequency bucket, a panel for AR hits and one for the other tokens: "a gap
//!    on rare AR hits, none on frequent ones" reads off it;
//! 2. [`GapByRecallsPlot`]: the gap per token (nats) on AR hits and on the other tokens of
//!    windows grouped by how many AR hits they hold: does the gap grow with the recalls a
//!    sequence needs?
//! 3. [`GapBarsPlot`]: Zoology's Figure 1: per model, its log-perplexity gap to the reference
//!    split into what AR hits and what the other tokens contribute;
//! 4. [`TrainingCurvesPlot`]: per model over training steps, the copy score and the validation
//!    loss on AR hits and on other tokens ([`crate::train::probes`]).

use super::arhits_plot::{category, CategoryPanel};
use super::plot::{
    draw_legend, house_mesh, log_label, mixer_color, mixer_lines, perr, render_both, Draw, Series, LEGEND_W,
};
use crate::error::{Error, Result};
use crate::text::arhits::{ArHitReport, SliceStats};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// First occurrences and other tokens together: everything that is not an AR hit.
pub fn non_ar(first_occurrence: &SliceStats, other: &SliceStats) -> SliceStats {
    let mut s = *first_occurrence;
    s.merge(other);
    s
}

fn ratio(m: &SliceStats, r: &SliceStats) -> Option<f64> {
    match (m.perplexity(), r.perplexity()) {
        (Some(a), Some(b)) if a.is_finite() && b.is_finite() && b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn gap_nats(m: &SliceStats, r: &SliceStats) -> Option<f64> {
    Some(m.mean_nll()? - r.mean_nll()?)
}

/// Perplexity ratio to the reference by frequency bucket (log y), AR hits | other tokens.
pub struct GapByFrequencyPlot {
    pub reference: (String, ArHitReport),
    pub models: Vec<(String, ArHitReport)>,
}

impl GapByFrequencyPlot {
    /// `(bucket labels, per model: (name, AR-hit ratios, other-token ratios))`; a bucket with no
    /// tokens of a slice has no point.
    #[allow(clippy::type_complexity)]
    pub fn ratios(&self) -> (Vec<String>, Vec<(String, Vec<Option<f64>>, Vec<Option<f64>>)>) {
        let r = &self.reference.1;
        let labels = r.by_frequency.iter().map(|b| b.bucket.clone()).collect();
        let rows = self
            .models
            .iter()
            .map(|(name, m)| {
                let ar = m.by_frequency.iter().zip(&r.by_frequency).map(|(a, b)| ratio(&a.ar_hit, &b.ar_hit)).collect();
                let other = m
                    .by_frequency
                    .iter()
                    .zip(&r.by_frequency)
                    .map(|(a, b)| ratio(&non_ar(&a.first_occurrence, &a.other), &non_ar(&b.first_occurrence, &b.other)))
                    .collect();
                (name.clone(), ar, other)
            })
            .collect();
        (labels, rows)
    }
}

impl<DB: DrawingBackend> Draw<DB> for GapByFrequencyPlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("gap-by-frequency plot");
        root.fill(&WHITE).map_err(&e)?;
        let (labels, rows) = self.ratios();
        if rows.is_empty() {
            return Err(Error::Other("gap-by-frequency plot: no model besides the reference".into()));
        }
        let root = root
            .titled(
                &format!("Perplexity over {}'s, by training frequency of the bigram", self.reference.0),
                ("sans-serif", 22),
            )
            .map_err(&e)?;
        let (plots, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        draw_legend(&legend, &rows.iter().map(|(m, _, _)| (m.clone(), mixer_color(m), 0)).collect::<Vec<_>>())?;
        let vals = rows.iter().flat_map(|(_, a, o)| a.iter().chain(o.iter()).flatten().copied());
        let (lo, hi) = vals.fold((1.0f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = (lo / 1.15, hi * 1.15);
        for (pi, (panel, name)) in plots.split_evenly((1, 2)).iter().zip(["AR hits", "Other tokens"]).enumerate() {
            let pick: Vec<(String, Vec<Option<f64>>)> =
                rows.iter().map(|(m, a, o)| (m.clone(), if pi == 0 { a.clone() } else { o.clone() })).collect();
            CategoryPanel {
                caption: name,
                labels: &labels,
                ys: (lo, hi),
                x_desc: "Training count of the bigram",
                y_desc: if pi == 0 { "Perplexity / reference's (log)" } else { "" },
                y_label_area: if pi == 0 { 62 } else { 44 },
                unit: Some(1.0),
            }
            .draw(panel, &pick)?;
        }
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// Gap per token (nats) on AR hits and on other tokens, by AR hits per window.
pub struct GapByRecallsPlot {
    pub reference: (String, ArHitReport),
    pub models: Vec<(String, ArHitReport)>,
}

impl GapByRecallsPlot {
    /// `(bucket labels, per model: (name, AR-hit gaps, other-token gaps))`, buckets with windows.
    #[allow(clippy::type_complexity)]
    pub fn gaps(&self) -> (Vec<String>, Vec<(String, Vec<Option<f64>>, Vec<Option<f64>>)>) {
        let r = &self.reference.1;
        let keep: Vec<usize> = (0..r.by_recalls.len()).filter(|&i| r.by_recalls[i].windows > 0).collect();
        let labels = keep.iter().map(|&i| r.by_recalls[i].bucket.clone()).collect();
        let rows = self
            .models
            .iter()
            .map(|(name, m)| {
                let pick = |f: fn(&crate::text::arhits::RecallRow) -> &SliceStats| {
                    keep.iter()
                        .map(|&i| m.by_recalls.get(i).and_then(|row| gap_nats(f(row), f(&r.by_recalls[i]))))
                        .collect()
                };
                (name.clone(), pick(|x| &x.ar_hit), pick(|x| &x.rest))
            })
            .collect();
        (labels, rows)
    }
}

impl<DB: DrawingBackend> Draw<DB> for GapByRecallsPlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("gap-by-recalls plot");
        root.fill(&WHITE).map_err(&e)?;
        let (labels, rows) = self.gaps();
        if rows.is_empty() || labels.is_empty() {
            return Err(Error::Other("gap-by-recalls plot: nothing to draw".into()));
        }
        let root = root
            .titled(&format!("Gap to {} per token, by AR hits in the window", self.reference.0), ("sans-serif", 22))
            .map_err(&e)?;
        let (plots, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        draw_legend(&legend, &rows.iter().map(|(m, _, _)| (m.clone(), mixer_color(m), 0)).collect::<Vec<_>>())?;
        let vals: Vec<f64> = rows.iter().flat_map(|(_, a, o)| a.iter().chain(o.iter()).flatten().copied()).collect();
        let lo = vals.iter().copied().fold(0.0f64, f64::min);
        let hi = vals.iter().copied().fold(0.0f64, f64::max);
        let pad = (hi - lo).max(0.05) * 0.1;
        let n = labels.len();
        for (pi, (panel, name)) in plots.split_evenly((1, 2)).iter().zip(["AR hits", "Other tokens"]).enumerate() {
            let mut chart = ChartBuilder::on(panel)
                .caption(name, ("sans-serif", 19))
                .margin(12)
                .x_label_area_size(58)
                .y_label_area_size(if pi == 0 { 62 } else { 44 })
                .build_cartesian_2d(-0.5..(n as f64 - 0.5), (lo - pad)..(hi + pad))
                .map_err(&e)?;
            house_mesh(&mut chart.configure_mesh(), 14, 16)
                .x_labels(n)
                .x_label_formatter(&|x| category(&labels, *x))
                .y_labels(8)
                .y_label_formatter(&|y| format!("{y:.2}"))
                .x_desc("AR hits in the window")
                .y_desc(if pi == 0 { "Loss gap per token (nats)" } else { "" })
                .draw()
                .map_err(&e)?;
            chart
                .draw_series(LineSeries::new([(-0.5, 0.0), (n as f64 - 0.5, 0.0)], BLACK.mix(0.5).stroke_width(1)))
                .map_err(&e)?;
            let series = rows
                .iter()
                .map(|(m, a, o)| Series {
                    color: mixer_color(m),
                    shape: 0,
                    pts: (if pi == 0 { a } else { o })
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.map(|v| (i as f64, v)))
                        .collect(),
                })
                .collect();
            mixer_lines(&mut chart, series, 3)?;
        }
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// AR-hit perplexity over the reference's by distance back to the earlier occurrence of the
/// bigram (log y): where in the context a model's AR-hit gap sits.
pub struct GapByDistancePlot {
    pub reference: (String, ArHitReport),
    pub models: Vec<(String, ArHitReport)>,
}

impl GapByDistancePlot {
    /// The distance buckets where the reference has AR hits, and per model the perplexity ratio
    /// to the reference in each (`None` where the model has no AR hit there).
    #[allow(clippy::type_complexity)]
    pub fn ratios(&self) -> (Vec<String>, Vec<(String, Vec<Option<f64>>)>) {
        let r = &self.reference.1.ar_hit_by_distance;
        let keep: Vec<usize> = (0..r.len()).filter(|&i| r[i].ar_hit.tokens > 0).collect();
        let labels = keep.iter().map(|&i| r[i].bucket.clone()).collect();
        let rows = self
            .models
            .iter()
            .map(|(name, m)| {
                let v = keep
                    .iter()
                    .map(|&i| m.ar_hit_by_distance.get(i).and_then(|row| ratio(&row.ar_hit, &r[i].ar_hit)))
                    .collect();
                (name.clone(), v)
            })
            .collect();
        (labels, rows)
    }
}

impl<DB: DrawingBackend> Draw<DB> for GapByDistancePlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("gap-by-distance plot");
        root.fill(&WHITE).map_err(&e)?;
        let (labels, rows) = self.ratios();
        if rows.is_empty() || labels.is_empty() {
            return Err(Error::Other("gap-by-distance plot: nothing to draw".into()));
        }
        let (plot, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        draw_legend(&legend, &rows.iter().map(|(m, _)| (m.clone(), mixer_color(m), 0)).collect::<Vec<_>>())?;
        let vals = rows.iter().flat_map(|(_, v)| v.iter().flatten().copied());
        let (lo, hi) = vals.fold((1.0f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let plot = plot
            .titled(
                &format!("AR-hit perplexity over {}'s, by distance back to the earlier occurrence", self.reference.0),
                ("sans-serif", 20),
            )
            .map_err(&e)?;
        CategoryPanel {
            caption: "AR hits",
            labels: &labels,
            ys: (lo / 1.15, hi * 1.15),
            x_desc: "Distance back to the bigram's earlier occurrence (tokens)",
            y_desc: "Perplexity / reference's (log)",
            y_label_area: 62,
            unit: Some(1.0),
        }
        .draw(&plot, &rows)?;
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// Zoology's Figure 1: per model, `ln(ppl_M / ppl_R)` split into the AR hits' and the other
/// tokens' contributions (nats per token of the whole set; the two parts sum to the gap).
pub struct GapBarsPlot {
    pub reference: (String, ArHitReport),
    pub models: Vec<(String, ArHitReport)>,
}

impl GapBarsPlot {
    /// Per model: (name, AR-hit part, other part) in nats per token.
    pub fn parts(&self) -> Vec<(String, f64, f64)> {
        let r = &self.reference.1;
        self.models
            .iter()
            .map(|(name, m)| {
                let n = m.all.tokens.max(1) as f64;
                let rest = |x: &ArHitReport| non_ar(&x.first_occurrence, &x.other).nll_sum;
                (name.clone(), (m.ar_hit.nll_sum - r.ar_hit.nll_sum) / n, (rest(m) - rest(r)) / n)
            })
            .collect()
    }
}

impl<DB: DrawingBackend> Draw<DB> for GapBarsPlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("gap bars");
        root.fill(&WHITE).map_err(&e)?;
        let parts = self.parts();
        if parts.is_empty() {
            return Err(Error::Other("gap bars: no model besides the reference".into()));
        }
        let (plot, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        let lo = parts.iter().map(|p| p.1.min(0.0) + p.2.min(0.0)).fold(0.0f64, f64::min);
        let hi = parts.iter().map(|p| p.1.max(0.0) + p.2.max(0.0)).fold(0.0f64, f64::max);
        let pad = (hi - lo).max(0.02) * 0.12;
        let names: Vec<String> = parts.iter().map(|p| p.0.clone()).collect();
        let n = names.len();
        let mut chart = ChartBuilder::on(&plot)
            .caption(format!("Gap to {} split into AR hits and other tokens", self.reference.0), ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(66)
            .build_cartesian_2d(-0.6..(n as f64 - 0.4), (lo - pad)..(hi + pad))
            .map_err(&e)?;
        house_mesh(&mut chart.configure_mesh(), 15, 17)
            .x_labels(n.max(2))
            .x_label_formatter(&|x| category(&names, *x))
            .y_label_formatter(&|y| format!("{y:.3}"))
            .y_desc("ln(ppl / reference ppl), nats per token")
            .disable_x_mesh()
            .draw()
            .map_err(&e)?;
        for (i, (m, ar, other)) in parts.iter().enumerate() {
            let c = mixer_color(m);
            let x = i as f64;
            // stack positive parts upwards and negative parts downwards from 0
            let (mut up, mut down) = (0.0, 0.0);
            for (v, style) in [(*ar, c.filled()), (*other, c.mix(0.35).filled())] {
                let (a, b) = if v >= 0.0 {
                    up += v;
                    (up - v, up)
                } else {
                    down += v;
                    (down, down - v)
                };
                chart.draw_series(std::iter::once(Rectangle::new([(x - 0.3, a), (x + 0.3, b)], style))).map_err(&e)?;
            }
            let total = ar + other;
            // a model ahead of the reference has no gap to share out (as in the arhits table)
            let share = if total > 0.0 { format!(" ({:.0}% AR)", 100.0 * ar / total) } else { " (ahead)".to_string() };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{total:.3}{share}"),
                    (x - 0.3, up.max(0.0) + pad * 0.3),
                    ("sans-serif", 13),
                )))
                .map_err(&e)?;
        }
        let le = perr::<DrawingAreaErrorKind<DB::ErrorType>>("legend");
        for (k, (label, alpha)) in [("AR hits", 1.0), ("other tokens", 0.35)].into_iter().enumerate() {
            let y = 60 + 26 * k as i32;
            legend.draw(&Rectangle::new([(8, y - 7), (36, y + 7)], BLACK.mix(alpha).filled())).map_err(&le)?;
            legend.draw(&Text::new(label, (44, y - 9), ("sans-serif", 16))).map_err(&le)?;
        }
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// One evaluation of a text run: its probes (absent where the run did not record them).
#[derive(Debug, Clone, Copy, Default)]
pub struct CurvePoint {
    pub step: f64,
    /// Copy accuracy on repeated random tokens.
    pub copy: Option<f64>,
    /// Copy accuracy on repeated natural text.
    pub copy_text: Option<f64>,
    pub ar_hit_loss: Option<f64>,
    pub other_loss: Option<f64>,
}

/// One model's evaluations over training.
pub type Curve = (String, Vec<CurvePoint>);

/// Copy score, AR-hit loss and other-token loss over training steps, one line per model.
pub struct TrainingCurvesPlot {
    pub curves: Vec<Curve>,
}

impl<DB: DrawingBackend> Draw<DB> for TrainingCurvesPlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("training curves");
        root.fill(&WHITE).map_err(&e)?;
        let pts = |k: usize| -> Vec<(String, Vec<(f64, f64)>)> {
            self.curves
                .iter()
                .map(|(m, c)| {
                    let v = c
                        .iter()
                        .filter_map(|p| {
                            let y = [p.copy, p.ar_hit_loss, p.other_loss, p.copy_text][k]?;
                            (y.is_finite() && p.step > 0.0).then_some((p.step, y))
                        })
                        .collect();
                    (m.clone(), v)
                })
                .collect()
        };
        // panels: copy (random tokens, and text as index 3), AR-hit loss, other loss
        let all: Vec<Vec<(String, Vec<(f64, f64)>)>> = (0..4).map(pts).collect();
        let xs = all.iter().flatten().flat_map(|(_, v)| v.iter().map(|p| p.0));
        let (x0, x1) = xs.fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
        if !(x1 > 0.0) {
            return Err(Error::Other("training curves: no evaluation with probes (train.text_probes)".into()));
        }
        let root = root.titled("Copying and the AR-hit gap over training", ("sans-serif", 22)).map_err(&e)?;
        let (plots, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        draw_legend(&legend, &self.curves.iter().map(|(m, _)| (m.clone(), mixer_color(m), 0)).collect::<Vec<_>>())?;
        let titles = ["Copy accuracy (● random tokens, ▲ text)", "Loss on AR hits", "Loss on other tokens"];
        let (lmin, lmax) = all[1..3]
            .iter()
            .flatten()
            .flat_map(|(_, v)| v.iter().map(|p| p.1))
            .fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
        for (k, panel) in plots.split_evenly((1, 3)).iter().enumerate() {
            let (y0, y1) = if k == 0 { (0.0, 1.02) } else { ((lmin * 0.95).max(0.0), lmax * 1.05) };
            let mut chart = ChartBuilder::on(panel)
                .caption(titles[k], ("sans-serif", 17))
                .margin(10)
                .x_label_area_size(50)
                .y_label_area_size(54)
                .build_cartesian_2d((x0.max(1.0)..x1 * 1.05).log_scale(), y0..y1.max(y0 + 1e-3))
                .map_err(&e)?;
            house_mesh(&mut chart.configure_mesh(), 13, 15)
                .x_labels(10)
                .x_label_formatter(&|x| log_label(*x))
                .y_labels(8)
                .y_label_formatter(&|y| format!("{y:.2}"))
                .x_desc("Training step (log)")
                .y_desc(if k == 0 { "Accuracy on the repeat" } else { "nats" })
                .draw()
                .map_err(&e)?;
            let mut series: Vec<Series> =
                all[k].iter().map(|(m, v)| Series { color: mixer_color(m), shape: 0, pts: v.clone() }).collect();
            if k == 0 {
                series.extend(all[3].iter().map(|(m, v)| Series { color: mixer_color(m), shape: 1, pts: v.clone() }));
            }
            mixer_lines(&mut chart, series, 2)?;
        }
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// Writes the gap-by-frequency plot (`stem.png`, `stem.svg`); returns the SVG.
pub fn plot_gap_by_frequency(p: &GapByFrequencyPlot, stem: &Path) -> Result<String> {
    render_both(stem, (1100 + LEGEND_W, 500), p)
}
/// Writes the gap-by-recalls plot; returns the SVG.
pub fn plot_gap_by_recalls(p: &GapByRecallsPlot, stem: &Path) -> Result<String> {
    render_both(stem, (1100 + LEGEND_W, 500), p)
}
/// Writes the gap-by-distance plot; returns the SVG.
pub fn plot_gap_by_distance(p: &GapByDistancePlot, stem: &Path) -> Result<String> {
    render_both(stem, (900 + LEGEND_W, 480), p)
}
/// Writes the Figure-1 bars; returns the SVG.
pub fn plot_gap_bars(p: &GapBarsPlot, stem: &Path) -> Result<String> {
    render_both(stem, ((150 * p.models.len() as u32).max(640) + LEGEND_W, 480), p)
}
/// Writes the training curves; returns the SVG.
pub fn plot_training_curves(p: &TrainingCurvesPlot, stem: &Path) -> Result<String> {
    render_both(stem, (1300 + LEGEND_W, 460), p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::arhits::{ArHitAnalyzer, BigramCounts, FreqBuckets};
    use crate::text::dataset::window_sequences;

    /// Two models on the same windows: "gconv" is worse than "attention" by `ar` nats on AR
    /// hits and `other` nats elsewhere.
    fn reports(ar: f32, other: f32) -> ((String, ArHitReport), (String, ArHitReport)) {
        let tokens: Vec<u32> = (0..801u32).map(|i| (i * 7 + i / 13) % 11).collect();
        let counts = BigramCounts::from_tokens(&tokens[..300]);
        let buckets = FreqBuckets::quantiles(&counts, 3).unwrap();
        let run = |extra_ar: f32, extra_other: f32| {
            let mut a = ArHitAnalyzer::new(&counts, &buckets, 20);
            for seq in window_sequences(&tokens, 20) {
                let labels = crate::text::arhits::label_window(seq);
                let nll: Vec<f32> = labels
                    .iter()
                    .map(|l| 1.0 + if l.label == crate::text::arhits::Label::ArHit { extra_ar } else { extra_other })
                    .collect();
                a.add_window(seq, &nll).unwrap();
            }
            a.finish()
        };
        (("attention".into(), run(0.0, 0.0)), ("gconv".into(), run(ar, other)))
    }

    #[test]
    fn the_bars_split_the_gap_into_its_ar_and_other_parts() {
        let (r, m) = reports(0.5, 0.1);
        let p = GapBarsPlot { reference: r, models: vec![m.clone()] };
        let (_, ar, other) = p.parts()[0].clone();
        let share = m.1.ar_hit.tokens as f64 / m.1.all.tokens as f64;
        assert!((ar - 0.5 * share).abs() < 1e-6, "{ar} vs {}", 0.5 * share);
        assert!((other - 0.1 * (1.0 - share)).abs() < 1e-6);
        // the parts sum to ln(ppl_M / ppl_R)
        let total = (m.1.all.perplexity().unwrap() / p.reference.1.all.perplexity().unwrap()).ln();
        assert!((ar + other - total).abs() < 1e-6);
    }

    #[test]
    fn frequency_ratios_and_recall_gaps_are_what_the_losses_say() {
        let (r, m) = reports(0.5, 0.0);
        let f = GapByFrequencyPlot { reference: r.clone(), models: vec![m.clone()] };
        let (labels, rows) = f.ratios();
        assert_eq!(labels.len(), r.1.by_frequency.len());
        for v in rows[0].1.iter().flatten() {
            assert!((v - 0.5f64.exp()).abs() < 1e-6, "AR ratio {v}");
        }
        for v in rows[0].2.iter().flatten() {
            assert!((v - 1.0).abs() < 1e-9, "other ratio {v}");
        }
        let d = GapByDistancePlot { reference: r.clone(), models: vec![m.clone()] };
        let (labels, rows) = d.ratios();
        assert!(!labels.is_empty());
        assert!(rows[0].1.iter().flatten().all(|v| (v - 0.5f64.exp()).abs() < 1e-6), "distance ratios {rows:?}");
        let g = GapByRecallsPlot { reference: r, models: vec![m] };
        let (labels, rows) = g.gaps();
        assert!(!labels.is_empty());
        for v in rows[0].1.iter().flatten() {
            assert!((v - 0.5).abs() < 1e-6, "AR gap {v}");
        }
        assert!(rows[0].2.iter().flatten().all(|v| v.abs() < 1e-9));
    }

    #[test]
    fn the_plots_render_with_their_labels() {
        let (r, m) = reports(0.5, 0.1);
        let dir = std::env::temp_dir().join(format!("zoology-gap-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg =
            plot_gap_bars(&GapBarsPlot { reference: r.clone(), models: vec![m.clone()] }, &dir.join("bars")).unwrap();
        assert!(svg.contains("gconv") && svg.contains("% AR)"), "bars");
        // a model ahead of the reference: its (negative) gap, no share of it
        let (r2, ahead) = reports(-0.2, -0.1);
        let svg = plot_gap_bars(&GapBarsPlot { reference: r2, models: vec![ahead] }, &dir.join("bars-ahead")).unwrap();
        assert!(svg.contains("(ahead)") && !svg.contains("% AR)"), "bars of a model ahead");
        let svg = plot_gap_by_frequency(
            &GapByFrequencyPlot { reference: r.clone(), models: vec![m.clone()] },
            &dir.join("freq"),
        )
        .unwrap();
        assert!(svg.contains("AR hits") && svg.contains("Other tokens"));
        let svg = plot_gap_by_distance(
            &GapByDistancePlot { reference: r.clone(), models: vec![m.clone()] },
            &dir.join("distance"),
        )
        .unwrap();
        assert!(svg.contains("Distance back") && svg.contains("gconv"));
        let svg =
            plot_gap_by_recalls(&GapByRecallsPlot { reference: r, models: vec![m] }, &dir.join("recalls")).unwrap();
        assert!(svg.contains("AR hits in the window"));
        let pt = |step, copy, copy_text, ar, other| CurvePoint {
            step,
            copy: Some(copy),
            copy_text,
            ar_hit_loss: Some(ar),
            other_loss: Some(other),
        };
        let curves = vec![
            ("attention".to_string(), vec![pt(10.0, 0.01, Some(0.2), 5.0, 5.5), pt(1000.0, 0.9, Some(0.95), 1.0, 4.0)]),
            // a run from before the text probe: no triangles
            ("gconv".to_string(), vec![pt(10.0, 0.01, None, 5.0, 5.5), pt(1000.0, 0.2, None, 3.0, 4.1)]),
        ];
        let svg = plot_training_curves(&TrainingCurvesPlot { curves }, &dir.join("curves")).unwrap();
        assert!(svg.contains("Copy accuracy") && svg.contains("gconv"));
        // triangles: the text probe's two points, for the run that recorded it only
        assert_eq!(svg.matches("<polygon").count(), 2, "text-copy markers");
        for f in ["bars", "freq", "distance", "recalls", "curves"] {
            assert!(dir.join(format!("{f}.png")).exists(), "{f}.png");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
