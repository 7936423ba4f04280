//! The plot of `zoology bench decode` ([`crate::bench::decode`]), in the style of
//! [`super::plot`] (same font, mixer colours, legend strip, PNG + SVG from one drawing): decode
//! tokens/s vs context length and LM-state bytes per sequence vs context length (log-log), one
//! line per mixer.

use super::plot::{
    draw_legend, house_mesh, log_axis, log_label, mixer_color, mixer_lines, perr, render_both, Draw, Series, LEGEND_W,
};
use crate::bench::decode::DecodeResult;
use crate::error::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

pub struct DecodePlot {
    pub result: DecodeResult,
}

impl DecodePlot {
    /// (mixer → (context, value)) for one measured quantity, mixers in the order measured.
    fn series(&self, f: impl Fn(&crate::bench::decode::DecodeRow) -> f64) -> Vec<(String, Vec<(f64, f64)>)> {
        let mut order: Vec<String> = vec![];
        let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for r in &self.result.rows {
            if !order.contains(&r.mixer) {
                order.push(r.mixer.clone());
            }
            let v = f(r);
            if v > 0.0 && v.is_finite() {
                by.entry(r.mixer.clone()).or_default().push((r.context as f64, v));
            }
        }
        order.into_iter().map(|m| (m.clone(), by.remove(&m).unwrap_or_default())).collect()
    }
}

fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        vals.filter(|v| *v > 0.0 && v.is_finite()).fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    if hi > 0.0 {
        (lo / 1.5, hi * 1.5)
    } else {
        (0.5, 2.0)
    }
}

impl<DB: DrawingBackend> Draw<DB> for DecodePlot {
    fn draw(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        let e = perr::<DrawingAreaErrorKind<DB::ErrorType>>("decode plot");
        root.fill(&WHITE).map_err(&e)?;
        let r = &self.result;
        let title = format!(
            "Recurrent decoding: {}-layer LM, d={}, batch {}, {} greedy steps after the prompt",
            r.n_layers, r.d_model, r.batch, r.steps
        );
        let root = root.titled(&title, ("sans-serif", 20)).map_err(&e)?;
        let (plots, legend) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(LEGEND_W));
        let tps = self.series(|x| x.decode_tokens_per_s);
        let bytes = self.series(|x| x.state_bytes_per_sequence as f64);
        draw_legend(&legend, &tps.iter().map(|(m, _)| (m.clone(), mixer_color(m), 0)).collect::<Vec<_>>())?;
        let (x0, x1) = range(r.rows.iter().map(|x| x.context as f64));
        let panels: [(&str, &str, &Vec<(String, Vec<(f64, f64)>)>); 2] = [
            ("Decode throughput", "Tokens / s (all sequences)", &tps),
            ("State after the prompt", "Bytes per sequence", &bytes),
        ];
        for (panel, (name, ydesc, series)) in plots.split_evenly((1, 2)).iter().zip(panels) {
            let (y0, y1) = range(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)));
            let mut chart = ChartBuilder::on(panel)
                .caption(name, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(48)
                .y_label_area_size(62)
                .build_cartesian_2d(log_axis(x0, x1), log_axis(y0, y1))
                .map_err(&e)?;
            house_mesh(&mut chart.configure_mesh(), 14, 16)
                .x_labels(30)
                .y_labels(30)
                .x_label_formatter(&|x| log_label(*x))
                .y_label_formatter(&|y| log_label(*y))
                .x_desc("Context length (prompt tokens)")
                .y_desc(ydesc)
                .draw()
                .map_err(&e)?;
            let s =
                series.iter().map(|(m, pts)| Series { color: mixer_color(m), shape: 0, pts: pts.clone() }).collect();
            mixer_lines(&mut chart, s, 2)?;
        }
        root.present().map_err(&e)?;
        Ok(())
    }
}

/// Writes `stem.png` and `stem.svg`; returns the SVG text.
pub fn plot_decode(result: &DecodeResult, stem: &Path) -> Result<String> {
    render_both(stem, (1100 + LEGEND_W, 480), &DecodePlot { result: result.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::decode::DecodeRow;

    #[test]
    fn decode_plot_has_a_legend_entry_per_mixer() {
        let row = |m: &str, c: i64, t: f64, b: i64| DecodeRow {
            mixer: m.into(),
            context: c,
            prefill_s: 0.1,
            decode_tokens_per_s: t,
            state_bytes_per_sequence: b,
            prefill_vs_attention: None,
            tokens_per_s_vs_attention: None,
            state_vs_attention: None,
        };
        let result = DecodeResult {
            batch: 2,
            d_model: 16,
            n_layers: 2,
            steps: 4,
            vocab: 32,
            reps: 1,
            threads: 1,
            rows: vec![
                row("attention", 128, 100.0, 1000),
                row("attention", 1024, 50.0, 8000),
                row("mamba", 128, 80.0, 500),
                row("mamba", 1024, 80.0, 500),
            ],
            skipped: vec![],
        };
        let dir = std::env::temp_dir().join(format!("zoology-decode-plot-{}", std::process::id()));
        let svg = plot_decode(&result, &dir.join("decode")).unwrap();
        assert!(dir.join("decode.png").exists());
        for label in ["attention", "mamba"] {
            assert_eq!(svg.lines().filter(|l| l.trim() == label).count(), 1, "legend entry {label}");
        }
        assert!(svg.contains("Decode throughput") && svg.contains("Bytes per sequence"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
