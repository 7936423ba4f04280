//! `zoology report DIR`: one self-contained HTML file (no external assets): the Figure-2 plot
//! and the state-size plot as inline SVG, the best-over-lr table, MAD-style scores, the table
//! of every run, and each run's curves and resolved config.

use super::plot::Plots;
use crate::error::{io_err, Result};
use crate::results::index::RunRecord;
use crate::results::{best_over, best_table, mad_scores, mad_table, runs_table};
use std::path::Path;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html_table(t: &[Vec<String>]) -> String {
    let mut s = String::from("<table>\n");
    for (i, row) in t.iter().enumerate() {
        let tag = if i == 0 { "th" } else { "td" };
        s.push_str("<tr>");
        for c in row {
            s.push_str(&format!("<{tag}>{}</{tag}>", esc(c)));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    s
}

/// Strips the XML prolog so the SVG can be inlined.
fn inline_svg(svg: &str) -> &str {
    svg.find("<svg").map(|i| &svg[i..]).unwrap_or(svg)
}

/// The self-contained HTML report: the header (runs, tasks and how each is scored, failures),
/// the plots and their tables, then every run with its curves and config.
pub fn write_report(recs: &[RunRecord], plots: &Plots, title: &str, path: &Path) -> Result<()> {
    let mut h = String::new();
    report_header(&mut h, recs, title);
    report_plots(&mut h, recs, plots)?;
    report_runs(&mut h, recs, plots);
    h.push_str("</body></html>\n");
    std::fs::write(path, h).map_err(io_err(path))?;
    Ok(())
}

/// The page head, the title and what the runs are: counts, tasks and their metrics, failures.
fn report_header(h: &mut String, recs: &[RunRecord], title: &str) {
    h.push_str(&format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
body{{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:2em;color:#222}}\
table{{border-collapse:collapse;font-size:13px;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
th{{background:#f0f0f0}}td:first-child,th:first-child{{text-align:left}}pre{{background:#f7f7f7;padding:8px;font-size:12px}}\
svg{{max-width:100%;height:auto}}details{{margin:0.4em 0}}summary{{cursor:pointer}}</style></head><body>\n",
        esc(title)
    ));
    h.push_str(&format!("<h1>{}</h1>\n", esc(title)));
    let done = recs.iter().filter(|r| r.status == "done").count();
    let failed = crate::results::failures(recs);
    h.push_str(&format!(
        "<p>{} runs: {done} done, {} failed or diverged, {} unfinished. Failed and diverged runs are left out of the plots and tables of results. Accuracy is each task's own metric on its test set (best over epochs in the tables; the MAD score uses the final accuracy, as MAD does):</p>\n<ul>\n",
        recs.len(),
        failed.len(),
        recs.len() - done - failed.len()
    ));
    let tasks: std::collections::BTreeSet<String> = recs.iter().map(crate::results::task_of).collect();
    for t in tasks
        .iter()
        .flat_map(|t| t.split('+').map(str::to_string).collect::<Vec<_>>())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if let Some(e) = crate::tasks::lookup(&t) {
            h.push_str(&format!(
                "<li><b>{}</b> ({}): {}; scored positions: {}</li>\n",
                esc(e.title),
                esc(&t),
                esc(&e.metric().about()),
                esc(e.supervision)
            ));
        }
    }
    h.push_str("</ul>\n");
    if !failed.is_empty() {
        h.push_str("<h2>Failed and diverged runs</h2>\n");
        let mut t = vec![vec!["run".to_string(), "status".into(), "reason".into(), "run_id".into()]];
        for (r, why) in &failed {
            t.push(vec![
                if r.label.is_empty() { r.preset.clone() } else { r.label.clone() },
                r.status.clone(),
                why.clone(),
                r.run_id.clone(),
            ]);
        }
        h.push_str(&html_table(&t));
    }
}

/// The result plots with their tables: Figure 2, best over lr, state size, cost to solve, width
/// vs length, MAD score, AR hits.
fn report_plots(h: &mut String, recs: &[RunRecord], plots: &Plots) -> Result<()> {
    if let Some((_, svg)) = &plots.figure2 {
        h.push_str("<h2>Accuracy vs model dimension (best over learning rate)</h2>\n");
        h.push_str(inline_svg(svg));
    }
    let rows = best_over(recs, &["lr".to_string()]);
    h.push_str("<h2>Best over learning rate</h2>\n");
    h.push_str(&html_table(&best_table(&rows)));
    if let Some((_, svg)) = &plots.state {
        h.push_str("<h2>Accuracy vs recurrent state size</h2>\n");
        h.push_str(inline_svg(svg));
    }
    if plots.accuracy_vs_flops.is_some() || plots.frontier.is_some() {
        h.push_str("<h2>Cost to solve</h2>\n<p>Training FLOPs spent until the first evaluation at or above accuracy 0.9 (the cheapest run per task setting and mixer); FLOPs convention in the README.</p>\n");
        h.push_str(&html_table(&crate::results::cost::cost_table(&plots.cost_rows)));
        for (_, svg) in [&plots.frontier, &plots.accuracy_vs_flops].into_iter().flatten() {
            h.push_str(inline_svg(svg));
        }
    }
    if let Some((_, svg)) = &plots.width {
        h.push_str("<h2>Width needed vs sequence length</h2>\n");
        h.push_str(inline_svg(svg));
    }
    let scores = mad_scores(recs);
    if !scores.is_empty() {
        h.push_str("<h2>MAD score</h2>\n<p>Per task: the mean over its settings of the best final test accuracy over the optimiser grid; score: the mean over tasks (MAD's <code>compute_model_mad_scores</code>).</p>\n");
        h.push_str(&html_table(&mad_table(&scores)));
        if let Some((_, svg)) = &plots.mad {
            h.push_str(inline_svg(svg));
        }
    }
    if let Some((o, svgs)) = &plots.arhits {
        h.push_str("<h2>Real text: perplexity on AR hits</h2>\n<p>Validation-split perplexity of each text model on all tokens, on AR hits (the token completes a bigram seen earlier in the same window), first occurrences and other tokens, and by frequency of the bigram in the training split (<code>zoology arhits</code>; README \"Real text\").</p>\n");
        h.push_str(&format!("<pre>{}</pre>\n", esc(&o.tables()?)));
        for svg in svgs {
            h.push_str(inline_svg(svg));
        }
    }
    Ok(())
}

/// Every run: the table, then per run its status, curves and config.
fn report_runs(h: &mut String, recs: &[RunRecord], plots: &Plots) {
    h.push_str("<h2>All runs</h2>\n");
    h.push_str(&html_table(&runs_table(recs)));
    h.push_str("<h2>Runs</h2>\n");
    for r in recs {
        let acc = r.best_accuracy.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into());
        h.push_str(&format!(
            "<details><summary>{} — {} — best acc {acc} — {}</summary>\n",
            esc(&r.label),
            esc(&r.status),
            esc(&r.run_dir)
        ));
        if let Some(e) = &r.error {
            h.push_str(&format!("<p>error: {}</p>\n", esc(e)));
        }
        if let Some((_, svg)) = plots.curves.get(&r.run_dir) {
            h.push_str(inline_svg(svg));
        }
        let cfg = std::fs::read_to_string(Path::new(&r.run_dir).join("config.toml")).unwrap_or_default();
        h.push_str(&format!("<pre>{}</pre></details>\n", esc(&cfg)));
    }
}
