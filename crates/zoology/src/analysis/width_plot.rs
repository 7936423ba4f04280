//! Width needed vs sequence length: the hand-set solutions (`zoology construct … --out`) next
//! to the trained runs, on the same axes (both log2). A constructed run is one whose config
//! name is `construct-<mixer>` and that took no training steps; its point is the width it was
//! built at when its accuracy on its own test data is ≥ 0.99. A trained mixer's point at a
//! length is the smallest width whose best-over-lr accuracy reached 0.9; a length where no width
//! did is drawn as a hollow marker at the widest width tried ("not solved up to here"). Drawn
//! when the runs include a constructed one, or when the trained runs are a width-trend grid (two
//! or more lengths, and two or more widths at some mixer and length).

use super::plot::{
    draw_legend, house_mesh, legend_w, marker, mixer_color, perr, pow2_label, variant_shapes, Draw, LEGEND_W,
};
use crate::error::Result;
use crate::results::index::RunRecord;
use crate::results::{best_over, is_result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// Accuracy a constructed model must reach to count, and a trained one.
pub const CONSTRUCTED_BAR: f64 = 0.99;
pub const TRAINED_BAR: f64 = 0.9;

/// One line: label, colour key (mixer), whether constructed, and points (L, width, solved).
#[derive(Debug, Clone, PartialEq)]
pub struct WidthLine {
    pub label: String,
    pub mixer: String,
    pub constructed: bool,
    pub pts: Vec<(i64, i64, bool)>,
}

pub struct WidthPlot {
    pub lines: Vec<WidthLine>,
}

/// The mixer a constructed run was built for (`construct-<mixer>`, no training steps).
pub fn constructed_mixer(r: &RunRecord) -> Option<String> {
    let name = r.hparams.get("name").and_then(|v| v.as_str()).unwrap_or(&r.label);
    let m = name.strip_prefix("construct-")?;
    (r.steps == Some(0)).then(|| m.to_string())
}

/// Trained runs that span at least two lengths with at least two widths at some (mixer, length):
/// a grid from which "the smallest width that solves, per length" can be read.
fn is_width_trend(recs: &[RunRecord]) -> bool {
    let trained = || recs.iter().filter(|r| constructed_mixer(r).is_none());
    let lens: std::collections::BTreeSet<i64> = trained().map(|r| r.seq_len).collect();
    let mut widths: BTreeMap<(&str, i64), std::collections::BTreeSet<i64>> = BTreeMap::new();
    for r in trained() {
        widths.entry((r.preset.as_str(), r.seq_len)).or_default().insert(r.d_model);
    }
    lens.len() >= 2 && widths.values().any(|w| w.len() >= 2)
}

impl WidthPlot {
    /// `None` when no run is a constructed one and the trained runs are not a width-trend grid.
    pub fn of(recs: &[RunRecord]) -> Option<WidthPlot> {
        let recs: Vec<RunRecord> = recs.iter().filter(|r| is_result(r)).cloned().collect();
        let mut built: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
        for r in &recs {
            if let (Some(m), Some(acc)) = (constructed_mixer(r), r.best_accuracy) {
                if acc >= CONSTRUCTED_BAR {
                    let e = built.entry(m).or_default().entry(r.seq_len).or_insert(r.d_model);
                    *e = (*e).min(r.d_model);
                }
            }
        }
        if !recs.iter().any(|r| constructed_mixer(r).is_some()) && !is_width_trend(&recs) {
            return None;
        }
        let mut lines: Vec<WidthLine> = built
            .into_iter()
            .map(|(m, pts)| WidthLine {
                label: format!("{m} (constructed)"),
                mixer: m,
                constructed: true,
                pts: pts.into_iter().map(|(l, d)| (l, d, true)).collect(),
            })
            .collect();
        let trained: Vec<RunRecord> = recs.iter().filter(|r| constructed_mixer(r).is_none()).cloned().collect();
        let mut need: BTreeMap<String, BTreeMap<i64, (Option<i64>, i64)>> = BTreeMap::new();
        for row in best_over(&trained, &["lr".to_string()]) {
            let e = need.entry(row.preset.clone()).or_default().entry(row.seq_len).or_insert((None, 0));
            e.1 = e.1.max(row.d_model);
            if row.best_accuracy >= TRAINED_BAR {
                e.0 = Some(e.0.map_or(row.d_model, |d: i64| d.min(row.d_model)));
            }
        }
        for (m, by_len) in need {
            let pts = by_len.into_iter().map(|(l, (d, widest))| (l, d.unwrap_or(widest), d.is_some())).collect();
            lines.push(WidthLine { label: format!("{m} (trained)"), mixer: m, constructed: false, pts });
        }
        Some(WidthPlot { lines })
    }
}

impl WidthPlot {
    /// The legend strip: 60 px wider than the shared minimum (constructed lines' labels are
    /// longer), and wide enough for the longest label.
    pub(crate) fn legend_w(&self) -> u32 {
        let any_constructed = self.lines.iter().any(|l| l.constructed);
        let labels = self.lines.iter().map(|l| if any_constructed { l.label.as_str() } else { l.mixer.as_str() });
        legend_w(labels).max(LEGEND_W + 60)
    }
}

impl<DB: DrawingBackend> Draw<DB> for WidthPlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("width plot");
        root.fill(&WHITE).map_err(&e)?;
        let (plot, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(self.legend_w()));
        // constructed lines are diamonds; a trained line whose colour an earlier trained line
        // already has (variants of one mixer, e.g. `x` and `x_soft`) gets the next marker and a
        // dashed line, so that the two stay apart
        let variants = variant_shapes(self.lines.iter().filter(|l| !l.constructed).map(|l| l.mixer.as_str()));
        let shapes: Vec<usize> =
            self.lines.iter().map(|l| if l.constructed { 3 } else { variants[l.mixer.as_str()] }).collect();
        let any_constructed = self.lines.iter().any(|l| l.constructed);
        draw_legend(
            &legend,
            &self
                .lines
                .iter()
                .zip(&shapes)
                .map(|(l, &sh)| {
                    let label = if any_constructed { l.label.clone() } else { l.mixer.clone() };
                    (label, mixer_color(&l.mixer), sh)
                })
                .collect::<Vec<_>>(),
        )?;
        let all = || self.lines.iter().flat_map(|l| l.pts.iter());
        let l2 = |v: i64| (v.max(1) as f64).log2();
        let (x0, x1) = (
            all().map(|p| l2(p.0)).fold(f64::INFINITY, f64::min),
            all().map(|p| l2(p.0)).fold(f64::NEG_INFINITY, f64::max),
        );
        let (y0, y1) = (
            all().map(|p| l2(p.1)).fold(f64::INFINITY, f64::min),
            all().map(|p| l2(p.1)).fold(f64::NEG_INFINITY, f64::max),
        );
        let mut chart = ChartBuilder::on(&plot)
            .caption(format!("Width needed vs L: ◆ constructed (≥ {CONSTRUCTED_BAR}), ● trained (≥ {TRAINED_BAR}), ○ unsolved up to there"), ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(62)
            .build_cartesian_2d(x0 - 0.5..x1 + 0.5, y0 - 0.7..y1 + 0.7)
            .map_err(&e)?;
        house_mesh(
            chart
                .configure_mesh()
                .x_labels(((x1 - x0).ceil() as usize + 2).max(2))
                .y_labels(((y1 - y0).ceil() as usize + 3).max(2))
                .x_label_formatter(&pow2_label)
                .y_label_formatter(&pow2_label)
                .x_desc("Sequence length")
                .y_desc("Model width d"),
            15,
            17,
        )
        .draw()
        .map_err(&e)?;
        // trained lines that share points (several mixers solving at the same width) are spread
        // a little along x, so that each marker stays visible
        let n_trained = self.lines.iter().filter(|l| !l.constructed).count();
        let step = if n_trained > 1 { (0.5 / n_trained as f64).min(0.06) } else { 0.0 };
        let mut k_trained = 0usize;
        for (l, &sh) in self.lines.iter().zip(&shapes) {
            let c = mixer_color(&l.mixer);
            let dx = if l.constructed {
                0.0
            } else {
                k_trained += 1;
                (k_trained as f64 - 1.0 - (n_trained as f64 - 1.0) / 2.0) * step
            };
            let mut pts: Vec<(f64, f64, bool)> = l.pts.iter().map(|p| (l2(p.0) + dx, l2(p.1), p.2)).collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let style = if l.constructed { c.stroke_width(2) } else { c.stroke_width(3) };
            // lines join solved points only; an unsolved length is a hollow marker on its own
            let solved: Vec<(f64, f64)> = pts.iter().filter(|p| p.2).map(|p| (p.0, p.1)).collect();
            if l.constructed || sh > 0 {
                chart.draw_series(DashedLineSeries::new(solved, 8, 5, style)).map_err(&e)?;
            } else {
                chart.draw_series(LineSeries::new(solved, style)).map_err(&e)?;
            }
            for p in pts {
                if p.2 {
                    marker(chart.plotting_area(), (p.0, p.1), sh, c).map_err(&e)?;
                } else {
                    chart.plotting_area().draw(&Circle::new((p.0, p.1), 6, c.stroke_width(2))).map_err(&e)?;
                }
            }
        }
        root.present().map_err(&e)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::index::tests::rec;

    #[test]
    fn constructed_and_trained_widths() {
        let mut runs = vec![
            rec("a", "attention", 64, 64, 1e-3, 0.95),
            rec("b", "attention", 128, 64, 1e-3, 0.5),
            rec("c", "attention", 64, 128, 1e-3, 0.3),
            rec("d", "attention", 128, 128, 1e-3, 0.4),
        ];
        assert!(WidthPlot::of(&runs[..2]).is_none(), "one length, no constructed run: no plot");
        // a trained width-trend grid (two lengths, two widths each) is plotted on its own
        let trend = WidthPlot::of(&runs).unwrap();
        assert_eq!(trend.lines.len(), 1);
        assert_eq!(trend.lines[0].pts, vec![(64, 64, true), (128, 128, false)]);
        for (id, d, l, acc) in [("e", 256, 64, 0.995), ("f", 2048, 256, 0.999), ("g", 1024, 256, 0.5)] {
            let mut r = rec(id, "base_conv", d, l, 0.0, acc);
            r.hparams.insert("name".into(), serde_json::json!("construct-base_conv"));
            r.steps = Some(0);
            runs.push(r);
        }
        let p = WidthPlot::of(&runs).unwrap();
        assert_eq!(p.lines.len(), 2);
        // constructed: the smallest width that reached 0.99 per length (1024 at L=256 did not)
        assert_eq!(
            p.lines[0],
            WidthLine {
                label: "base_conv (constructed)".into(),
                mixer: "base_conv".into(),
                constructed: true,
                pts: vec![(64, 256, true), (256, 2048, true)]
            }
        );
        // trained: 64 solves L=64; nothing solves L=128 (hollow at the widest tried, 128)
        assert_eq!(p.lines[1].pts, vec![(64, 64, true), (128, 128, false)]);
    }
}
