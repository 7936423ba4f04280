//! The gap to the reference over training, and where its trend would reach a target (issue 21).
//!
//! Every evaluation of a text run records its mean loss on AR hits and on other tokens over the
//! training probe's validation windows (`ar_hit_loss`, `other_loss`; [`crate::train::probes`]).
//! For a model and the reference, at every number of training tokens both evaluated at, the
//! **perplexity ratio** on a slice is `exp(loss_model − loss_reference)`.
//!
//! When a budget ends before the gap the paper reports, the question is how far it got and what
//! it would take. [`fit_trend`] answers the second with a stated extrapolation: a least-squares
//! line of the AR-hit ratio against `log10(tokens)` over the evaluations from [`FIT_FROM`] of
//! the run on (the first fifth is the warm-up, where both models are still learning unigram
//! statistics), and the number of tokens at which that line reaches [`TARGET`] (`None` when it
//! does not rise). A learning-rate schedule bends real curves, and a phase change (an induction
//! head forming) would break the line at once: it is a trajectory, not a prediction.

use super::arhits_gap_plot::CurvePoint;
use super::plot::{
    draw_legend, house_mesh, log_label, mixer_color, mixer_lines, perr, render_both, Draw, Series, LEGEND_W,
};
use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The trend line is fitted to the evaluations from this fraction of the shared run on.
pub const FIT_FROM: f64 = 0.2;
/// The AR-hit ratio the issue asks for (issue 21: ≥ 2× attention on rare-bigram AR hits).
pub const TARGET: f64 = 2.0;

/// One evaluation of a text run: tokens seen and the mean loss per slice (nats).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalPoint {
    pub tokens: u64,
    pub ar_hit_loss: f64,
    pub other_loss: f64,
}

/// The ratios to the reference at one number of training tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryPoint {
    pub tokens: f64,
    pub ar_hit_ratio: f64,
    pub other_ratio: f64,
}

/// The least-squares line `ratio = intercept + slope · log10(tokens)` of the AR-hit ratio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrendFit {
    /// The first evaluation in the fit (tokens).
    pub from_tokens: f64,
    pub points: usize,
    pub intercept: f64,
    /// Change of the ratio per tenfold more tokens.
    pub slope_per_decade: f64,
    /// The line at the last evaluation.
    pub at_end: f64,
    pub target: f64,
    /// Where the line reaches `target` (`None` when its slope is not positive).
    pub tokens_to_target: Option<f64>,
}

/// One model's ratios to the reference over training, with the AR-hit trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapTrajectory {
    pub model: String,
    pub points: Vec<TrajectoryPoint>,
    pub fit: Option<TrendFit>,
}

/// A run's evaluations with both slice losses (its training curve, [`super::arhits::run_curve`])
/// at `tokens_per_step` tokens per optimizer step. A step logged twice (an evaluation redone
/// after a resume) keeps its last line.
pub fn eval_points(curve: &[CurvePoint], tokens_per_step: u64) -> Vec<EvalPoint> {
    let mut by_step: BTreeMap<u64, EvalPoint> = BTreeMap::new();
    for p in curve {
        if let (Some(a), Some(o)) = (p.ar_hit_loss, p.other_loss) {
            if a.is_finite() && o.is_finite() {
                let step = p.step as u64;
                by_step.insert(step, EvalPoint { tokens: step * tokens_per_step, ar_hit_loss: a, other_loss: o });
            }
        }
    }
    by_step.into_values().collect()
}

/// The ratios of `model` to `reference` at every token count both evaluated at (others are
/// left out), and the AR-hit trend fitted from `fit_from` of the last shared count on.
pub fn trajectory(
    name: &str,
    reference: &[EvalPoint],
    model: &[EvalPoint],
    fit_from: f64,
    target: f64,
) -> GapTrajectory {
    let refs: BTreeMap<u64, &EvalPoint> = reference.iter().map(|p| (p.tokens, p)).collect();
    let points: Vec<TrajectoryPoint> = model
        .iter()
        .filter(|p| p.tokens > 0)
        .filter_map(|p| {
            let r = refs.get(&p.tokens)?;
            Some(TrajectoryPoint {
                tokens: p.tokens as f64,
                ar_hit_ratio: (p.ar_hit_loss - r.ar_hit_loss).exp(),
                other_ratio: (p.other_loss - r.other_loss).exp(),
            })
        })
        .collect();
    let fit = fit_trend(&points, fit_from, target);
    GapTrajectory { model: name.to_string(), points, fit }
}

/// The least-squares line of the AR-hit ratio on log10(tokens) over the points from
/// `fit_from` × the last point's tokens on; `None` with fewer than three such points.
pub fn fit_trend(points: &[TrajectoryPoint], fit_from: f64, target: f64) -> Option<TrendFit> {
    let end = points.iter().map(|p| p.tokens).fold(0.0, f64::max);
    let used: Vec<&TrajectoryPoint> = points.iter().filter(|p| p.tokens >= fit_from * end).collect();
    if used.len() < 3 {
        return None;
    }
    let n = used.len() as f64;
    let xs: Vec<f64> = used.iter().map(|p| p.tokens.log10()).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, used.iter().map(|p| p.ar_hit_ratio).sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = xs.iter().zip(&used).map(|(x, p)| (x - mx) * (p.ar_hit_ratio - my)).sum::<f64>() / sxx;
    let intercept = my - slope * mx;
    Some(TrendFit {
        from_tokens: used.iter().map(|p| p.tokens).fold(f64::INFINITY, f64::min),
        points: used.len(),
        intercept,
        slope_per_decade: slope,
        at_end: intercept + slope * end.log10(),
        target,
        tokens_to_target: (slope > 0.0).then(|| 10f64.powf((target - intercept) / slope)),
    })
}

/// Tokens in the tables' style: 2.1e7 → "2.1·10⁷".
fn sci(t: f64) -> String {
    if !(t.is_finite() && t > 0.0) {
        return "–".into();
    }
    let mut e = t.log10().floor();
    let mut m = t / 10f64.powf(e);
    if m >= 9.95 {
        // 9.99…·10⁹ is written 1.0·10¹⁰, not 10.0·10⁹
        (m, e) = (m / 10.0, e + 1.0);
    }
    let sup: String = (e as i64)
        .to_string()
        .chars()
        .map(|c| match c {
            '-' => '⁻',
            d => "⁰¹²³⁴⁵⁶⁷⁸⁹".chars().nth(d.to_digit(10).unwrap_or(0) as usize).unwrap_or('?'),
        })
        .collect();
    format!("{m:.1}·10{sup}")
}

/// A multiple of the budget: "17×", "1.3·10⁴×".
fn times(k: f64) -> String {
    if !k.is_finite() {
        "–".into()
    } else if k < 1000.0 {
        format!("{k:.0}×")
    } else {
        format!("{}×", sci(k))
    }
}

/// The terminal table: per model, the ratios at its first and last shared evaluation, the
/// trend's slope and where it reaches its target.
pub fn trajectory_table(reference: &str, ts: &[GapTrajectory]) -> String {
    if ts.iter().all(|t| t.points.is_empty()) {
        return String::new();
    }
    let w = ts.iter().map(|t| t.model.chars().count()).max().unwrap_or(5).max(12);
    let target = ts.iter().find_map(|t| t.fit.map(|f| f.target)).unwrap_or(TARGET);
    let mut s = format!(
        "\nperplexity ratio to {reference} over training (the training probe's windows), AR hits | other tokens; trend: least squares of the AR-hit ratio on log10(tokens) from {:.0} % of the run on (an extrapolation)\n{:<w$}{:>8}{:>24}{:>24}{:>16}{:>28}\n",
        FIT_FROM * 100.0,
        "model",
        "evals",
        "first",
        "last",
        "trend per 10×",
        format!("AR {target}× at (× budget)"),
    );
    for t in ts {
        let cell = |p: Option<&TrajectoryPoint>| {
            p.map_or("–".to_string(), |p| format!("{}: {:.2} | {:.2}", sci(p.tokens), p.ar_hit_ratio, p.other_ratio))
        };
        let (slope, reach) = match t.fit {
            Some(f) => (
                format!("{:+.3}", f.slope_per_decade),
                f.tokens_to_target.map_or("never (falls)".to_string(), |x| {
                    let end = t.points.last().map_or(f64::NAN, |p| p.tokens);
                    format!("{} ({})", sci(x), times(x / end))
                }),
            ),
            None => ("–".into(), "– (< 3 evals)".into()),
        };
        s += &format!(
            "{:<w$}{:>8}{:>24}{:>24}{:>16}{:>28}\n",
            t.model,
            t.points.len(),
            cell(t.points.first()),
            cell(t.points.last()),
            slope,
            reach
        );
    }
    s
}

/// The ratios over training (log x), AR hits and other tokens in two panels, one line per
/// model; the AR-hit trend as a dashed line extended to where it reaches the target (at most
/// 100× the budget), the target as a grey line.
pub struct GapTrajectoryPlot {
    pub reference: String,
    pub trajectories: Vec<GapTrajectory>,
}

impl GapTrajectoryPlot {
    /// The dashed trend of one model: from its first fitted point to the target crossing, or to
    /// 100× the last evaluation when the crossing is further or never comes.
    pub fn trend_line(t: &GapTrajectory) -> Option<Vec<(f64, f64)>> {
        let f = t.fit?;
        let end = t.points.last()?.tokens;
        let x1 = f.tokens_to_target.filter(|&x| x > f.from_tokens).unwrap_or(f64::INFINITY).min(100.0 * end);
        let (l0, l1) = (f.from_tokens.log10(), x1.log10());
        Some(
            (0..=24)
                .map(|i| {
                    let lx = l0 + (l1 - l0) * i as f64 / 24.0;
                    (10f64.powf(lx), f.intercept + f.slope_per_decade * lx)
                })
                .collect(),
        )
    }
}

impl<DB: DrawingBackend> Draw<DB> for GapTrajectoryPlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("gap trajectory");
        root.fill(&WHITE).map_err(&e)?;
        let ts: Vec<&GapTrajectory> = self.trajectories.iter().filter(|t| !t.points.is_empty()).collect();
        if ts.is_empty() {
            return Err(Error::Other("gap trajectory: no evaluation shared with the reference".into()));
        }
        let trends: Vec<Option<Vec<(f64, f64)>>> = ts.iter().map(|t| GapTrajectoryPlot::trend_line(t)).collect();
        let target = ts.iter().find_map(|t| t.fit.map(|f| f.target)).unwrap_or(TARGET);
        let all_x = ts
            .iter()
            .flat_map(|t| t.points.iter().map(|p| p.tokens))
            .chain(trends.iter().flatten().flatten().map(|p| p.0));
        let (x0, x1) = all_x.fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
        let all_y = ts
            .iter()
            .flat_map(|t| t.points.iter().flat_map(|p| [p.ar_hit_ratio, p.other_ratio]))
            .chain(trends.iter().flatten().flatten().map(|p| p.1))
            .chain([1.0, target]);
        let (y0, y1) = all_y.filter(|y| y.is_finite()).fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
        let root = root
            .titled(&format!("Perplexity ratio to {} over training", self.reference), ("sans-serif", 22))
            .map_err(&e)?;
        let (plots, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        draw_legend(&legend, &ts.iter().map(|t| (t.model.clone(), mixer_color(&t.model), 0)).collect::<Vec<_>>())?;
        let titles = ["AR hits (dashed: trend, extrapolated)", "Other tokens"];
        for (k, panel) in plots.split_evenly((1, 2)).iter().enumerate() {
            let mut chart = ChartBuilder::on(panel)
                .caption(titles[k], ("sans-serif", 17))
                .margin(10)
                .x_label_area_size(50)
                .y_label_area_size(54)
                .build_cartesian_2d((x0 * 0.8..x1 * 1.25).log_scale(), (y0 - 0.05).max(0.0)..y1 + 0.05)
                .map_err(&e)?;
            house_mesh(&mut chart.configure_mesh(), 13, 15)
                .x_labels(10)
                .x_label_formatter(&|x| log_label(*x))
                .y_labels(8)
                .y_label_formatter(&|y| format!("{y:.2}×"))
                .x_desc("Training tokens (log)")
                .y_desc("Perplexity / reference's")
                .draw()
                .map_err(&e)?;
            for y in [1.0, target] {
                chart
                    .draw_series(LineSeries::new([(x0 * 0.8, y), (x1 * 1.25, y)], BLACK.mix(0.35).stroke_width(1)))
                    .map_err(&e)?;
            }
            let series = ts
                .iter()
                .map(|t| Series {
                    color: mixer_color(&t.model),
                    shape: 0,
                    pts: t
                        .points
                        .iter()
                        .map(|p| (p.tokens, if k == 0 { p.ar_hit_ratio } else { p.other_ratio }))
                        .collect(),
                })
                .collect();
            mixer_lines(&mut chart, series, 2)?;
            if k == 0 {
                for (t, line) in ts.iter().zip(&trends) {
                    if let Some(line) = line {
                        let c = mixer_color(&t.model);
                        chart.draw_series(DashedLineSeries::new(line.clone(), 8, 6, c.stroke_width(2))).map_err(&e)?;
                    }
                }
            }
        }
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// Writes the trajectory plot (`stem.png`, `stem.svg`); returns the SVG.
pub fn plot_gap_trajectory(p: &GapTrajectoryPlot, stem: &Path) -> Result<String> {
    render_both(stem, (1200 + LEGEND_W, 480), p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model whose AR-hit ratio to the reference is `1 + 0.25·log10(tokens / 10⁶)` and whose
    /// other-token ratio is 1.1, evaluated at 10⁶ … 10⁸ tokens (and once where the reference was
    /// not evaluated).
    fn pair() -> (Vec<EvalPoint>, Vec<EvalPoint>) {
        let ts: Vec<u64> = (0..=8).map(|i| (1e6 * 10f64.powf(i as f64 / 4.0)).round() as u64).collect();
        let reference: Vec<EvalPoint> =
            ts.iter().map(|&t| EvalPoint { tokens: t, ar_hit_loss: 2.0, other_loss: 4.0 }).collect();
        let mut model: Vec<EvalPoint> = ts
            .iter()
            .map(|&t| EvalPoint {
                tokens: t,
                ar_hit_loss: 2.0 + (1.0 + 0.25 * (t as f64 / 1e6).log10()).ln(),
                other_loss: 4.0 + 1.1f64.ln(),
            })
            .collect();
        model.push(EvalPoint { tokens: 123, ar_hit_loss: 9.0, other_loss: 9.0 });
        (reference, model)
    }

    #[test]
    fn ratios_are_taken_at_shared_token_counts_and_the_trend_reaches_its_target_where_the_line_does() {
        let (r, m) = pair();
        let t = trajectory("gconv", &r, &m, FIT_FROM, 2.0);
        assert_eq!(t.points.len(), 9, "the unshared evaluation is left out");
        for p in &t.points {
            let want = 1.0 + 0.25 * (p.tokens / 1e6).log10();
            assert!((p.ar_hit_ratio - want).abs() < 1e-9, "{} vs {want}", p.ar_hit_ratio);
            assert!((p.other_ratio - 1.1).abs() < 1e-9);
        }
        let f = t.fit.expect("a fit");
        // from 20 % of 10⁸ = 2·10⁷ on: 10^7.5, 10^7.75, 10^8
        assert_eq!(f.points, 3);
        assert!((f.slope_per_decade - 0.25).abs() < 1e-9, "{f:?}");
        assert!((f.at_end - 1.5).abs() < 1e-9);
        // 1 + 0.25·log10(x/10⁶) = 2 at x = 10¹⁰
        let x = f.tokens_to_target.unwrap();
        assert!((x.log10() - 10.0).abs() < 1e-9, "{x}");
        let table = trajectory_table("attention", &[t.clone()]);
        assert!(table.contains("gconv") && table.contains("1.0·10¹⁰ (100×)") && table.contains("+0.250"), "{table}");
        // the dashed trend ends at the crossing (here exactly 100× the budget, where it is clipped)
        let line = GapTrajectoryPlot::trend_line(&t).unwrap();
        assert!((line.last().unwrap().0 - 1e10).abs() / 1e10 < 1e-9);
    }

    #[test]
    fn a_closing_gap_never_reaches_the_target_and_short_runs_get_no_fit() {
        let (r, _) = pair();
        let closing: Vec<EvalPoint> = r
            .iter()
            .map(|p| EvalPoint {
                tokens: p.tokens,
                ar_hit_loss: p.ar_hit_loss + 0.5 / (p.tokens as f64).log10(),
                other_loss: p.other_loss,
            })
            .collect();
        let t = trajectory("h3", &r, &closing, FIT_FROM, 2.0);
        let f = t.fit.unwrap();
        assert!(f.slope_per_decade < 0.0 && f.tokens_to_target.is_none(), "{f:?}");
        assert!(trajectory_table("attention", &[t]).contains("never (falls)"));
        let short = trajectory("x", &r[..2], &closing[..2], FIT_FROM, 2.0);
        assert_eq!(short.points.len(), 2);
        assert!(short.fit.is_none());
    }

    #[test]
    fn the_trajectory_plot_renders_a_dashed_trend_per_fitted_model() {
        let (r, m) = pair();
        let p = GapTrajectoryPlot {
            reference: "attention".into(),
            trajectories: vec![
                trajectory("gconv", &r, &m, FIT_FROM, 2.0),
                trajectory("h3", &r[..2], &m[..2], FIT_FROM, 2.0),
            ],
        };
        let dir = std::env::temp_dir().join(format!("zoology-trajectory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg = plot_gap_trajectory(&p, &dir.join("t")).unwrap();
        assert!(svg.contains("AR hits") && svg.contains("Other tokens") && svg.contains("h3"));
        assert!(dir.join("t.png").exists());
        // the dashed trend (gconv; h3 has no fit) is many short segments of gconv's colour:
        // the same plot without the fit has far fewer elements of that colour
        let c = mixer_color("gconv");
        let colour = format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
        let mut bare = p.trajectories.clone();
        bare[0].fit = None;
        let without = plot_gap_trajectory(
            &GapTrajectoryPlot { reference: "attention".into(), trajectories: bare },
            &dir.join("u"),
        )
        .unwrap();
        let (n, n0) = (svg.matches(&colour).count(), without.matches(&colour).count());
        assert!(n0 > 0, "colour {colour} not found: the count below would prove nothing");
        assert!(n > n0 + 10, "no dashed trend drawn: {n} vs {n0} elements of {colour}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
