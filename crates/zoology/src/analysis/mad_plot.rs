//! The MAD score plot: grouped bars, one group per task (registry order) and one for the MAD
//! score (the mean over tasks), one bar per mixer, each bar the task's score as
//! [`crate::results::mad_scores`] computes it (the mean over the task's settings of the best
//! final accuracy over the optimiser grid). Drawn only when the runs cover two or more tasks.

use super::plot::{draw_legend, mixer_color, perr, Draw, LEGEND_W};
use crate::error::Result;
use crate::results::Score;
use plotters::coord::Shift;
use plotters::prelude::*;

pub struct MadPlot {
    /// Group labels (task titles, then "MAD score") and, per mixer, one value per group
    /// (`None` where the mixer has no result for that task).
    pub groups: Vec<String>,
    pub bars: Vec<(String, Vec<Option<f64>>)>,
}

impl MadPlot {
    /// The plot of these scores, or `None` when no model covers two or more tasks.
    pub fn of(scores: &[Score]) -> Option<MadPlot> {
        if !scores.iter().any(|s| s.tasks.len() >= 2) {
            return None;
        }
        let mut tasks: Vec<String> = crate::tasks::names()
            .into_iter()
            .map(String::from)
            .filter(|t| scores.iter().any(|s| s.tasks.contains_key(t)))
            .collect();
        for s in scores {
            for t in s.tasks.keys() {
                if !tasks.contains(t) {
                    tasks.push(t.clone()); // mixed-task keys ("a+b") after the registry's
                }
            }
        }
        let title = |t: &str| {
            crate::tasks::lookup(t)
                .map(|e| e.title.trim_end_matches(" (MAD)").to_string())
                .unwrap_or_else(|| t.to_string())
        };
        let mut groups: Vec<String> = tasks.iter().map(|t| title(t)).collect();
        groups.push("MAD score".into());
        let mut bars: Vec<(String, Vec<Option<f64>>)> = vec![];
        for s in scores {
            let label = if scores.iter().filter(|o| o.preset == s.preset).count() > 1 {
                format!("{} ({})", s.preset, s.model)
            } else {
                s.preset.clone()
            };
            let mut v: Vec<Option<f64>> = tasks.iter().map(|t| s.tasks.get(t).map(|x| x.0)).collect();
            v.push(Some(s.score));
            bars.push((label, v));
        }
        bars.sort_by(|a, b| a.0.cmp(&b.0));
        Some(MadPlot { groups, bars })
    }
}

impl<DB: DrawingBackend> Draw<DB> for MadPlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("MAD plot");
        root.fill(&WHITE).map_err(&e)?;
        let (plot, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        let entries: Vec<(String, RGBColor, usize)> =
            self.bars.iter().map(|(m, _)| (m.clone(), mixer_color(m.split(' ').next().unwrap_or(m)), 0)).collect();
        draw_legend(&legend, &entries)?;
        let ng = self.groups.len();
        let groups = self.groups.clone();
        let mut chart = ChartBuilder::on(&plot)
            .caption("MAD: per-task score and the MAD score (mean over tasks)", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(62)
            .build_cartesian_2d(-0.5f64..ng as f64 - 0.5, 0.0..1.02)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(ng.max(2) * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < groups.len() {
                    groups[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.1}"))
            .y_desc("Accuracy (the task's metric)")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 17))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(&e)?;
        let nb = self.bars.len().max(1) as f64;
        let w = 0.8 / nb;
        for (bi, (m, vals)) in self.bars.iter().enumerate() {
            let c = mixer_color(m.split(' ').next().unwrap_or(m));
            for (gi, v) in vals.iter().enumerate() {
                let Some(v) = v.filter(|v| v.is_finite()) else { continue };
                let x0 = gi as f64 - 0.4 + bi as f64 * w;
                chart
                    .draw_series(std::iter::once(Rectangle::new([(x0, 0.0), (x0 + w * 0.92, v)], c.filled())))
                    .map_err(&e)?;
            }
        }
        // the MAD score group is set apart by a rule
        let sep = ng as f64 - 1.5;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(sep, 0.0), (sep, 1.02)],
                BLACK.mix(0.4).stroke_width(1),
            )))
            .map_err(&e)?;
        root.present().map_err(&e)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn score(preset: &str, tasks: &[(&str, f64)]) -> Score {
        let t: BTreeMap<String, (f64, usize)> = tasks.iter().map(|(k, v)| (k.to_string(), (*v, 1))).collect();
        Score {
            preset: preset.into(),
            model: "d_model=64".into(),
            score: tasks.iter().map(|x| x.1).sum::<f64>() / tasks.len() as f64,
            task_settings: tasks.len(),
            runs: tasks.len(),
            tasks: t,
        }
    }

    #[test]
    fn groups_follow_the_registry_and_end_with_the_score() {
        assert!(MadPlot::of(&[score("attention", &[("mqar", 0.5)])]).is_none(), "one task: no MAD plot");
        let p = MadPlot::of(&[
            score("mamba", &[("memorization", 0.9), ("in_context_recall", 0.5)]),
            score("attention", &[("in_context_recall", 1.0)]),
        ])
        .unwrap();
        assert_eq!(p.groups, ["In-context recall", "Memorization", "MAD score"]);
        assert_eq!(p.bars[0].0, "attention");
        assert_eq!(p.bars[0].1, [Some(1.0), None, Some(1.0)]);
        assert_eq!(p.bars[1].1, [Some(0.5), Some(0.9), Some(0.7)]);
        super::super::plot::register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (1000, 400)).into_drawing_area();
            Draw::<SVGBackend>::draw(&p, root).unwrap();
        }
        // 5 bars: attention's 2 (its missing memorization is left out) and mamba's 3
        let bars = svg.matches("<rect").count();
        let mut empty = String::new();
        {
            let root = SVGBackend::with_string(&mut empty, (1000, 400)).into_drawing_area();
            Draw::<SVGBackend>::draw(&MadPlot { groups: p.groups.clone(), bars: vec![] }, root).unwrap();
        }
        assert_eq!(bars - empty.matches("<rect").count(), 5, "{svg}");
    }
}
