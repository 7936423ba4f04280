//! Plots of the AR-hit analysis ([`crate::text::arhits`]), in the style of [`super::plot`]
//! (same font, mixer colours, legend strip, PNG + SVG from one drawing):
//! 1. perplexity vs training-bigram frequency bucket, a panel for AR hits and one for other
//!    tokens, one line per model;
//! 2. perplexity on AR hits vs other tokens, a pair of bars per model;
//! 3. the corpus's distribution of AR-hit distances (log-log) against MQAR's power law.

use super::plot::{
    compact, draw_legend, house_mesh, log_axis, log_label, mixer_color, mixer_lines, perr, render_both, Draw, Series,
    LEGEND_W,
};
use crate::error::{Error, Result};
use crate::text::arhits::{power_law_pmf, ArHitReport, GapHistogram, SliceStats};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

fn ppl(s: &SliceStats) -> Option<f64> {
    s.perplexity().filter(|p| p.is_finite())
}

/// `(lo, hi)` of a log axis that holds `vals` with some room.
fn log_range(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) =
        vals.filter(|v| *v > 0.0 && v.is_finite()).fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    (hi > 0.0).then(|| (lo / 1.3, hi * 1.3))
}

/// A log axis's tick label: powers of ten as [`log_label`] writes them, other whole ticks
/// compactly, the rest none.
pub(crate) fn log_axis_label(y: f64) -> String {
    let s = log_label(y);
    if s.is_empty() && (y - y.round()).abs() < 1e-9 {
        compact(y)
    } else {
        s
    }
}

/// The label of category `x` on an axis whose categories sit at 0, 1, 2, …; with more than
/// seven categories only every k-th is labelled (k = ⌈n/7⌉, from the first), so that long
/// bucket labels such as "16384–32767" do not overprint each other.
pub(crate) fn category(labels: &[String], x: f64) -> String {
    let i = x.round();
    let every = labels.len().div_ceil(7).max(1);
    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) % every == 0 {
        labels.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// One panel with categories along x (0, 1, 2, …, labelled by [`category`]) and a log y over
/// `ys`: a line at `unit` if given (the reference of a ratio) and one line per `(model,
/// values)`, a missing value leaving a gap.
pub(crate) struct CategoryPanel<'a> {
    pub caption: &'a str,
    pub labels: &'a [String],
    pub ys: (f64, f64),
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    /// Room for the y tick labels (wider on a row's first panel).
    pub y_label_area: u32,
    pub unit: Option<f64>,
}

impl CategoryPanel<'_> {
    pub(crate) fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        rows: &[(String, Vec<Option<f64>>)],
    ) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("category panel");
        let n = self.labels.len();
        let mut chart = ChartBuilder::on(area)
            .caption(self.caption, ("sans-serif", 19))
            .margin(12)
            .x_label_area_size(58)
            .y_label_area_size(self.y_label_area)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), (self.ys.0..self.ys.1).log_scale())
            .map_err(&e)?;
        house_mesh(&mut chart.configure_mesh(), 14, 16)
            .x_labels(n)
            .x_label_formatter(&|x| category(self.labels, *x))
            .y_labels(12)
            .y_label_formatter(&|y| log_axis_label(*y))
            .x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .draw()
            .map_err(&e)?;
        if let Some(u) = self.unit {
            chart
                .draw_series(LineSeries::new([(-0.5, u), (n as f64 - 0.5, u)], BLACK.mix(0.5).stroke_width(1)))
                .map_err(&e)?;
        }
        let series = rows
            .iter()
            .map(|(m, v)| Series {
                color: mixer_color(m),
                shape: 0,
                pts: v.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as f64, v))).collect(),
            })
            .collect();
        mixer_lines(&mut chart, series, 3)
    }
}

/// Perplexity by bigram-frequency bucket, one line per model.
pub struct FrequencyPlot {
    pub models: Vec<(String, ArHitReport)>,
}

impl<DB: DrawingBackend> Draw<DB> for FrequencyPlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("frequency plot");
        root.fill(&WHITE).map_err(&e)?;
        let first = &self.models.first().ok_or_else(|| Error::Other("frequency plot: no models".into()))?.1;
        let labels: Vec<String> = first.by_frequency.iter().map(|r| r.bucket.clone()).collect();
        let root = root
            .titled("Perplexity by frequency of the bigram in the training split", ("sans-serif", 22))
            .map_err(&e)?;
        let (plots, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        draw_legend(&legend, &self.models.iter().map(|(m, _)| (m.clone(), mixer_color(m), 0)).collect::<Vec<_>>())?;
        let all = self
            .models
            .iter()
            .flat_map(|(_, r)| r.by_frequency.iter().flat_map(|row| [ppl(&row.ar_hit), ppl(&row.other)]))
            .flatten();
        // log y: perplexities by bucket span three decades (unseen bigrams ~10³, frequent ~3)
        let (y0, y1) =
            all.filter(|v| *v > 0.0 && v.is_finite()).fold((f64::INFINITY, 1.0f64), |(a, b), v| (a.min(v), b.max(v)));
        let (y0, y1) = (y0.min(y1) / 1.3, y1 * 1.3);
        let x_desc = format!(
            "Training count of the bigram ({})",
            if first.freq_scheme.contains("quantile") { "quantile buckets" } else { "relative buckets" }
        );
        for (pi, (panel, name)) in plots.split_evenly((1, 2)).iter().zip(["AR hits", "Other tokens"]).enumerate() {
            let rows: Vec<(String, Vec<Option<f64>>)> = self
                .models
                .iter()
                .map(|(m, r)| {
                    (
                        m.clone(),
                        r.by_frequency.iter().map(|row| ppl(if pi == 0 { &row.ar_hit } else { &row.other })).collect(),
                    )
                })
                .collect();
            CategoryPanel {
                caption: name,
                labels: &labels,
                ys: (y0, y1),
                x_desc: &x_desc,
                y_desc: if pi == 0 { "Perplexity (log)" } else { "" },
                y_label_area: if pi == 0 { 62 } else { 44 },
                unit: None,
            }
            .draw(panel, &rows)?;
        }
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// Perplexity on AR hits (solid) and other tokens (light) per model.
pub struct ArVsOtherPlot {
    pub models: Vec<(String, ArHitReport)>,
}

impl<DB: DrawingBackend> Draw<DB> for ArVsOtherPlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("AR vs other plot");
        root.fill(&WHITE).map_err(&e)?;
        let (plot, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        let n = self.models.len();
        let ymax =
            self.models.iter().flat_map(|(_, r)| [ppl(&r.ar_hit), ppl(&r.other)]).flatten().fold(1.0f64, f64::max)
                * 1.15;
        let names: Vec<String> = self.models.iter().map(|m| m.0.clone()).collect();
        let mut chart = ChartBuilder::on(&plot)
            .caption("Perplexity on AR hits and on other tokens", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(62)
            .build_cartesian_2d(-0.6..(n as f64 - 0.4), 0.0..ymax)
            .map_err(&e)?;
        house_mesh(&mut chart.configure_mesh(), 15, 17)
            .x_labels(n.max(2))
            .x_label_formatter(&|x| category(&names, *x))
            .y_label_formatter(&|y| compact(*y))
            .y_desc("Perplexity")
            .disable_x_mesh()
            .draw()
            .map_err(&e)?;
        for (i, (m, r)) in self.models.iter().enumerate() {
            let c = mixer_color(m);
            let x = i as f64;
            for (lo, hi, v, style) in [
                (x - 0.36, x - 0.02, ppl(&r.ar_hit), c.filled()),
                (x + 0.02, x + 0.36, ppl(&r.other), c.mix(0.35).filled()),
            ] {
                if let Some(v) = v {
                    chart.draw_series(std::iter::once(Rectangle::new([(lo, 0.0), (hi, v)], style))).map_err(&e)?;
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!("{v:.2}"),
                            ((lo + hi) / 2.0 - 0.12, v + ymax * 0.035),
                            ("sans-serif", 13),
                        )))
                        .map_err(&e)?;
                }
            }
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

/// Distribution of AR-hit distances per window length, with MQAR's power law.
pub struct GapPlot {
    pub hists: Vec<GapHistogram>,
    /// MQAR's `power_a` (0.01 in Zoology).
    pub power_a: f64,
}

/// Average of `pmf` over log-spaced bins (4 per octave): `(geometric centre, mean P)`.
fn log_binned(pmf: &[(usize, f64)]) -> Vec<(f64, f64)> {
    let mut out = vec![];
    let mut lo = 1.0f64;
    let max = pmf.last().map(|p| p.0).unwrap_or(0) as f64;
    while lo <= max {
        let hi = (lo * 2f64.powf(0.25)).max(lo + 1.0);
        let inside: Vec<f64> = pmf.iter().filter(|(g, _)| (*g as f64) >= lo && (*g as f64) < hi).map(|p| p.1).collect();
        if !inside.is_empty() {
            let first = pmf.iter().find(|(g, _)| (*g as f64) >= lo).map(|p| p.0 as f64).unwrap_or(lo);
            let last = first + inside.len() as f64 - 1.0;
            let mean = inside.iter().sum::<f64>() / inside.len() as f64;
            if mean > 0.0 {
                out.push(((first * last).sqrt(), mean));
            }
        }
        lo = hi.ceil();
    }
    out
}

impl<DB: DrawingBackend> Draw<DB> for GapPlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("gap plot");
        root.fill(&WHITE).map_err(&e)?;
        let (plot, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W + 40));
        let lines: Vec<(String, RGBColor, Vec<(f64, f64)>, Vec<(f64, f64)>)> = self
            .hists
            .iter()
            .enumerate()
            .map(|(i, h)| {
                const C: [(u8, u8, u8); 4] = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)];
                let c = C[i % C.len()];
                (
                    format!("L = {}", h.seq_len),
                    RGBColor(c.0, c.1, c.2),
                    log_binned(&h.pmf()),
                    log_binned(&power_law_pmf(self.power_a, h.seq_len)),
                )
            })
            .collect();
        let xmax = self.hists.iter().map(|h| h.seq_len).max().unwrap_or(2) as f64;
        let (y0, y1) = log_range(lines.iter().flat_map(|l| l.2.iter().chain(&l.3).map(|p| p.1))).unwrap_or((1e-6, 1.0));
        let mut chart = ChartBuilder::on(&plot)
            .caption("Distance back to the earlier occurrence of an AR hit's bigram", ("sans-serif", 21))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(log_axis(0.8, xmax * 1.25), log_axis(y0, y1))
            .map_err(&e)?;
        house_mesh(&mut chart.configure_mesh(), 15, 17)
            .x_labels(30)
            .x_label_formatter(&|x| log_label(*x))
            .y_labels(30)
            .y_label_formatter(&|y| {
                let l = y.log10();
                if (l - l.round()).abs() < 1e-6 {
                    format!("1e{}", l.round())
                } else {
                    String::new()
                }
            })
            .x_desc("Distance (tokens)")
            .y_desc("P(distance), mean over log bins")
            .draw()
            .map_err(&e)?;
        let mut entries = vec![];
        for (label, c, emp, law) in &lines {
            chart.draw_series(LineSeries::new(emp.clone(), c.stroke_width(3))).map_err(&e)?;
            chart.draw_series(emp.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(&e)?;
            chart.draw_series(DashedLineSeries::new(law.clone(), 8, 6, c.stroke_width(2))).map_err(&e)?;
            entries.push((format!("corpus, {label}"), *c, 0));
        }
        draw_legend(&legend, &entries)?;
        let le = perr::<DrawingAreaErrorKind<DB::ErrorType>>("legend");
        let y = 60 + 26 * entries.len() as i32;
        legend.draw(&PathElement::new(vec![(8, y), (20, y)], BLACK.stroke_width(2))).map_err(&le)?;
        legend.draw(&PathElement::new(vec![(26, y), (36, y)], BLACK.stroke_width(2))).map_err(&le)?;
        legend.draw(&Text::new(format!("MQAR a = {}", self.power_a), (44, y - 9), ("sans-serif", 16))).map_err(&le)?;
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// Writes `stem.png` and `stem.svg` of the frequency plot; returns the SVG.
pub fn plot_frequency(models: &[(String, ArHitReport)], stem: &Path) -> Result<String> {
    render_both(stem, (1100 + LEGEND_W, 500), &FrequencyPlot { models: models.to_vec() })
}

/// Writes `stem.png` and `stem.svg` of the AR-hits-vs-other plot; returns the SVG.
pub fn plot_ar_vs_other(models: &[(String, ArHitReport)], stem: &Path) -> Result<String> {
    render_both(
        stem,
        ((160 * models.len() as u32).max(640) + LEGEND_W, 480),
        &ArVsOtherPlot { models: models.to_vec() },
    )
}

/// Writes `stem.png` and `stem.svg` of the gap-distribution plot; returns the SVG.
pub fn plot_gaps(hists: &[GapHistogram], power_a: f64, stem: &Path) -> Result<String> {
    render_both(stem, (860 + LEGEND_W + 40, 540), &GapPlot { hists: hists.to_vec(), power_a })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::arhits::{ArHitAnalyzer, BigramCounts, FreqBuckets};
    use crate::text::dataset::window_sequences;

    /// Up to seven categories are all labelled; 18 get every third label, from the first.
    #[test]
    fn long_category_axes_are_thinned() {
        let labels = |n: usize| (0..n).map(|i| format!("b{i}")).collect::<Vec<_>>();
        let shown = |l: &[String]| (0..l.len()).filter(|&i| !category(l, i as f64).is_empty()).collect::<Vec<_>>();
        assert_eq!(shown(&labels(7)), (0..7).collect::<Vec<_>>());
        assert_eq!(shown(&labels(18)), (0..18).step_by(3).collect::<Vec<_>>());
        assert_eq!(category(&labels(18), 6.0), "b6");
        assert_eq!(category(&labels(18), 4.4), "");
    }

    fn svg_of<T: for<'a> Draw<SVGBackend<'a>>>(fig: &T) -> String {
        super::super::plot::register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (1000, 480)).into_drawing_area();
            fig.draw(root).unwrap();
        }
        svg
    }
    fn texts(svg: &str, label: &str) -> usize {
        svg.lines().filter(|l| l.trim() == label).count()
    }

    fn reports() -> Vec<(String, ArHitReport)> {
        let tokens: Vec<u32> = (0..401u32).map(|i| (i * 7 + i / 13) % 11).collect();
        let counts = BigramCounts::from_tokens(&tokens[..150]);
        let buckets = FreqBuckets::quantiles(&counts, 3).unwrap();
        ["attention", "hyena"]
            .iter()
            .enumerate()
            .map(|(m, name)| {
                let mut a = ArHitAnalyzer::new(&counts, &buckets, 20);
                for seq in window_sequences(&tokens, 20) {
                    let nll: Vec<f32> = (0..20).map(|t| 1.0 + m as f32 + (t % 3) as f32 * 0.1).collect();
                    a.add_window(seq, &nll).unwrap();
                }
                (name.to_string(), a.finish())
            })
            .collect()
    }

    #[test]
    fn frequency_and_bar_plots_have_a_legend_entry_per_model_and_bucket_labels() {
        let r = reports();
        let svg = svg_of(&FrequencyPlot { models: r.clone() });
        for m in ["attention", "hyena"] {
            assert_eq!(texts(&svg, m), 1, "legend entry {m}");
        }
        for b in r[0].1.by_frequency.iter().map(|b| b.bucket.clone()) {
            assert_eq!(texts(&svg, &b), 2, "bucket label {b} under both panels");
        }
        let svg = svg_of(&ArVsOtherPlot { models: r.clone() });
        // one bar label per (model, slice); the hyena run is worse by one nat everywhere
        let hyena_ar = r[1].1.ar_hit.perplexity().unwrap();
        assert_eq!(texts(&svg, &format!("{hyena_ar:.2}")), 1, "{svg}");
        assert_eq!(texts(&svg, "AR hits"), 1);
    }

    #[test]
    fn gap_plot_shows_each_length_and_the_power_law() {
        let tokens: Vec<u32> = (0..5000u64).map(|i| ((i * 2654435761) >> 7) as u32 % 23).collect();
        let hists: Vec<GapHistogram> = [64, 256].iter().map(|&l| GapHistogram::from_stream(&tokens, l)).collect();
        assert!(hists.iter().all(|h| h.ar_hits > 0));
        let svg = svg_of(&GapPlot { hists, power_a: 0.01 });
        assert_eq!(texts(&svg, "corpus, L = 64"), 1);
        assert_eq!(texts(&svg, "corpus, L = 256"), 1);
        assert_eq!(texts(&svg, "MQAR a = 0.01"), 1);
    }

    #[test]
    fn plots_are_written_as_png_and_svg() {
        let dir = std::env::temp_dir().join(format!("zoology-arhits-plot-{}", std::process::id()));
        let r = reports();
        plot_frequency(&r, &dir.join("freq")).unwrap();
        plot_ar_vs_other(&r, &dir.join("bars")).unwrap();
        for f in ["freq.png", "freq.svg", "bars.png", "bars.svg"] {
            assert!(std::fs::metadata(dir.join(f)).unwrap().len() > 1000, "{f}");
        }
        if std::env::var_os("ZOOLOGY_KEEP_PLOTS").is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    #[test]
    fn log_bins_average_the_pmf() {
        let pmf: Vec<(usize, f64)> = (1..=16).map(|g| (g, 1.0 / 16.0)).collect();
        let b = log_binned(&pmf);
        assert!(b.iter().all(|p| (p.1 - 1.0 / 16.0).abs() < 1e-12));
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(b[0], (1.0, 1.0 / 16.0));
    }
}
