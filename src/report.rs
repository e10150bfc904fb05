//! `windtunnel report DIR`: one self-contained HTML page (inline SVG, inline CSS, no network
//! resources) with the sweep's summary, every chart its data supports and the fitted parameters.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::fit::bootstrap::Interval;
use crate::format::si;
use crate::layout::SweepDir;
use crate::results::SweepResults;
use crate::sweep::status::{files_view, SweepStatus};

#[derive(Debug, Clone, Serialize)]
pub struct ReportSummary {
    pub path: PathBuf,
    pub charts: Vec<String>,
    pub not_drawn: Vec<(String, String)>,
    /// The data-model law's definition (`LawDefinition::describe`), when there is a law.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub law_definition: Option<String>,
    /// A saved definition other than the default, and what saved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_fit: Option<String>,
}

impl std::fmt::Display for ReportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.charts.len() {
            0 => write!(f, "wrote {} (no charts)", self.path.display())?,
            n => write!(f, "wrote {} ({n} chart{}: {})", self.path.display(), if n == 1 { "" } else { "s" }, self.charts.join(", "))?,
        }
        for line in crate::plot::skipped_lines(self.not_drawn.iter().map(|(c, w)| (c.as_str(), w.as_str()))) {
            write!(f, "\n  {line}")?;
        }
        if let Some(d) = &self.law_definition {
            write!(f, "\n  the law's definition: {d}")?;
        }
        if let Some(note) = &self.saved_fit {
            write!(f, "\n  {note}")?;
        }
        Ok(())
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An SVG document as an inline element: no XML prolog, no namespace URL (HTML5 needs neither).
fn inline_svg(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    svg[start..].replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
}

/// The report's style sheet, shared with `windtunnel serve`'s pages.
pub const STYLE: &str = "body{font-family:'DejaVu Sans',Verdana,sans-serif;max-width:1900px;margin:24px auto;padding:0 24px;color:#222}\
h1{font-size:26px;margin-bottom:4px}h2{font-size:20px;margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ddd;padding:4px 10px;text-align:right}\
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.muted{color:#777}\
figure{margin:16px 0}figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:14px}";

fn interval_cells(estimate: f64, i: Option<&Interval>) -> String {
    match i {
        Some(i) if !i.is_identified() => {
            format!("<td>{estimate:.4}</td><td class=muted>not identified</td><td>[{:.4}, {:.4}]</td>", i.lower, i.upper)
        }
        Some(i) => format!("<td>{estimate:.4}</td><td>{:.4}</td><td>[{:.4}, {:.4}]</td>", i.std_error, i.lower, i.upper),
        None => format!("<td>{estimate:.4}</td><td class=muted>–</td><td class=muted>no bootstrap</td>"),
    }
}

/// Build the page and write it to `out`.
pub fn write_report(dir: &Path, out: &Path, law: crate::results::saved::LawChoice) -> anyhow::Result<ReportSummary> {
    let data = SweepResults::load(dir)?.with_law(law);
    let status = files_view(&SweepDir::new(dir))?;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>windtunnel: {name}</title><style>{STYLE}</style></head><body>\n\
         <h1>Wind tunnel <code>{name}</code></h1><p class=muted>{dir} · windtunnel {version}</p>\n",
        name = escape(&data.plan.name),
        dir = escape(&dir.display().to_string()),
        version = env!("CARGO_PKG_VERSION"),
    );
    summary_section(&mut html, &data, &status);
    html.push_str("<h2>Fits</h2>");
    adaptive_section(&mut html, &data);
    law_section(&mut html, &data);
    lr_section(&mut html, &data);
    batch_section(&mut html, &data);
    curve_section(&mut html, &data);
    let (charts, not_drawn) = charts_section(&mut html, &data)?;
    runs_section(&mut html, &data);
    if !not_drawn.is_empty() {
        html.push_str("<p class=muted>Not drawn:</p><ul class=muted>");
        for (name, why) in &not_drawn {
            let _ = write!(html, "<li>{name}: {}</li>", escape(why));
        }
        html.push_str("</ul>");
    }
    html.push_str("</body></html>\n");
    crate::fsutil::atomic_write(out, html.as_bytes())?;
    let (law_definition, saved_fit) = match data.law() {
        Ok(l) => (Some(l.definition.describe()), l.saved_fit.clone()),
        Err(_) => (None, None),
    };
    Ok(ReportSummary { path: out.to_path_buf(), charts, not_drawn, law_definition, saved_fit })
}

/// The fits as the report shows them (parameters, intervals, held-out errors) with their charts:
/// what `windtunnel serve` shows live, so the page and the report never disagree.
pub fn fits_html(data: &SweepResults) -> String {
    let mut html = String::new();
    adaptive_section(&mut html, data);
    law_section(&mut html, data);
    lr_section(&mut html, data);
    batch_section(&mut html, data);
    curve_section(&mut html, data);
    let fit_charts = ["adaptive", "law-tokens", "law-compute", "allocation", "allocation-approaches", "lr-transfer", "holdout", "batch-size", "curve-law"];
    match draw_charts(&mut html, data, |name| fit_charts.contains(&name)) {
        Ok((_, not_drawn)) if !not_drawn.is_empty() => {
            html.push_str("<ul class=muted>");
            for (name, why) in &not_drawn {
                let _ = write!(html, "<li>no {name} chart: {}</li>", escape(why));
            }
            html.push_str("</ul>");
        }
        Ok(_) => {}
        Err(e) => {
            let _ = write!(html, "<p class=muted>charts not drawn: {}</p>", escape(&format!("{e:#}")));
        }
    }
    html
}

/// Run counts and the compute planned, spent, and saved by WSD branching.
fn summary_section(html: &mut String, data: &SweepResults, st: &SweepStatus) {
    let plan = &data.plan;
    let _ = writeln!(
        html,
        "<h2>Summary</h2><table><tr><th>runs</th><th>done</th><th>running</th><th>pending</th><th>interrupted</th><th>diverged</th><th>failed</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>\
         <table><tr><th>compute</th><th>FLOPs</th></tr>\
         <tr><td>planned (the sweep as run, WSD branches reusing their trunks)</td><td>{:.3e}</td></tr>\
         <tr><td>spent so far</td><td>{:.3e}</td></tr>\
         <tr><td>one from-scratch run per (model, tokens) point instead</td><td>{:.3e}</td></tr>\
         <tr><td>WSD saving</td><td>{:.2}×</td></tr>\
         <tr><td>tokens trained</td><td>{} of {}</td></tr></table>",
        st.runs,
        st.done,
        st.running,
        st.pending + st.unknown,
        st.interrupted,
        st.diverged,
        st.failed,
        plan.total_flops,
        st.flops_done,
        plan.from_scratch_flops,
        plan.wsd_saving(),
        si(st.tokens_done as f64),
        si(st.tokens_total as f64)
    );
}

/// The data-model law's parameters with their bootstrap intervals.
/// An adaptive sweep's rounds: what each fit said, what it chose, and the FLOPs spent.
fn adaptive_section(html: &mut String, data: &SweepResults) {
    let Some(record) = &data.adaptive else { return };
    let _ = write!(
        html,
        "<h3>Adaptive rounds: {}</h3><p>Grid <code>{}</code>, at most {:.3e} FLOPs ({:.1}% of the whole grid's {:.3e}){}.</p>\
         <table><tr><th>round</th><th>runs fitted</th><th>FLOPs spent</th><th>estimate</th><th>95% interval</th><th>decided</th></tr>",
        escape(&record.target.describe()),
        escape(&record.grid),
        record.max_flops,
        100.0 * record.max_flops / record.grid_flops.max(1.0),
        record.grid_flops,
        record.relative_interval.map(|r| format!("; stops within ±{:.0}%", 100.0 * r)).unwrap_or_default()
    );
    for r in &record.rounds {
        let (estimate, interval) = match &r.fit {
            Some(e) => (format!("{:.4}", e.estimate), format!("[{:.4}, {:.4}] (±{:.1}%)", e.lower, e.upper, 100.0 * e.relative_half_width)),
            None => ("seed design".into(), String::new()),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.3e}</td><td>{estimate}</td><td>{interval}</td><td>{}</td></tr>",
            r.round,
            r.points,
            r.flops_spent,
            escape(&r.decision())
        );
    }
    html.push_str("</table>");
    if let Some(full) = data.full_grid_target() {
        let _ = write!(html, "<p>The whole grid, every run trained: {:.4} [{:.4}, {:.4}].</p>", full.estimate, full.lower, full.upper);
    }
}

fn law_section(html: &mut String, data: &SweepResults) {
    match data.law() {
        Ok(r) => {
            let l = &r.fit.law;
            let b = r.bootstrap.as_ref();
            let _ = write!(
                html,
                "<h3>Data-model law {}</h3>\
                 <p>{} points; Huber δ = {}; {} L-BFGS starts ({} in the best basin); rms log residual {:.4}{}</p>\
                 <table><tr><th>parameter</th><th>estimate</th><th>s.e.</th><th>{}% interval</th></tr>",
                escape(l.form().law_form().formula()),
                r.points,
                r.fit.delta,
                r.fit.starts,
                r.fit.starts_in_best_basin,
                r.residual_rms,
                data.oracle_loss.map(|o| format!("; exact oracle loss of the synthetic language {o:.4}")).unwrap_or_default(),
                b.map_or(95.0, |b| b.level * 100.0)
            );
            let parameters = l.named().into_iter().map(|(key, symbol, v)| (symbol.to_string(), v, b.and_then(|b| b.parameters.get(key))));
            let allocation = [
                ("a: N_opt ∝ C^a".to_string(), r.n_exponent, b.map(|b| &b.n_exponent)),
                ("b: D_opt ∝ C^b".to_string(), r.d_exponent, b.map(|b| &b.d_exponent)),
            ];
            for (name, v, i) in parameters.chain(allocation) {
                let _ = write!(html, "<tr><td>{}</td>{}</tr>", escape(&name), interval_cells(v, i));
            }
            html.push_str("</table>");
            let _ = write!(html, "<p>Definition: {}</p>", escape(&r.definition.describe()));
            if let Some(note) = &r.saved_fit {
                let _ = write!(html, "<p><strong>Note:</strong> {}</p>", escape(note));
            }
            if !l.is_plausible() {
                html.push_str(
                    "<p><strong>Warning:</strong> the law's parameters are outside any plausible range: these points do not \
                     constrain the law. It needs several model sizes, each decayed at several token counts well above the loss floor.</p>",
                );
            }
            if let Some(h) = &r.holdout {
                let _ = write!(
                    html,
                    "<p>Held out ({:?}): mean |relative error| of the predictions {:.2}% over {} points.</p>",
                    h.holdout,
                    h.mean_abs_relative_error * 100.0,
                    h.points.len()
                );
            }
        }
        Err(e) => {
            let _ = write!(html, "<p class=muted>No data-model law: {}</p>", escape(e.reason()));
        }
    }
}

/// The learning-rate optimum per width and its drift.
fn lr_section(html: &mut String, data: &SweepResults) {
    match data.lr() {
        Ok(r) => {
            html.push_str(
                "<h3>Learning-rate transfer</h3><table><tr><th>group</th><th>width</th><th>runs</th><th>η*</th><th>95% interval</th><th>loss at η*</th></tr>",
            );
            for (group, t) in &r.groups {
                for o in &t.optima {
                    let _ = write!(
                        html,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3e}</td><td>[{:.3e}, {:.3e}]</td><td>{:.4}{}</td></tr>",
                        escape(group),
                        o.width,
                        o.points,
                        o.lr_opt,
                        o.lr_lower,
                        o.lr_upper,
                        o.loss_at_opt,
                        o.caveat().map(|c| format!(" ({c})")).unwrap_or_default()
                    );
                }
                if let Some(d) = &t.drift {
                    let _ = write!(
                        html,
                        "<tr><td>{}</td><td colspan=5>drift d ln η*/d ln width = {:+.3} [{:+.3}, {:+.3}] (µP ≈ 0, SP ≈ −1)</td></tr>",
                        escape(group),
                        d.slope,
                        d.slope_lower,
                        d.slope_upper
                    );
                }
            }
            html.push_str("</table>");
        }
        Err(e) => {
            let _ = write!(html, "<p class=muted>No learning-rate transfer fit: {}</p>", escape(e.reason()));
        }
    }
}

/// The curve law: each group's parameters and fit, and where every run still training is heading.
fn curve_section(html: &mut String, data: &SweepResults) {
    match data.curve() {
        Ok(c) => {
            let _ = write!(html, "<h3>Curve law</h3><p>The {} law, <code>{}</code>, on every evaluation:</p><table><tr><th>group</th><th>runs</th><th>parameters</th><th>median |error|</th><th>largest</th></tr>", c.form, escape(c.formula));
            for g in &c.groups {
                let params: Vec<String> = g.law.named().iter().map(|(_, s, v)| format!("{s} = {}", crate::format::sig(*v))).collect();
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}%</td><td>{:.3}%</td></tr>",
                    escape(&g.group),
                    g.runs.len(),
                    escape(&params.join(", ")),
                    100.0 * g.fit_median_relative_error,
                    100.0 * g.fit_max_relative_error
                );
            }
            html.push_str("</table>");
            let heading: Vec<_> = c.runs.iter().filter(|r| r.actual_final.is_none()).collect();
            if !heading.is_empty() {
                html.push_str(
                    "<p>Runs still training, and the final loss the curve law says each is heading for:</p><table><tr><th>run</th><th>final loss</th></tr>",
                );
                for r in heading {
                    let _ = write!(html, "<tr><td>{}</td><td>{:.4}</td></tr>", escape(&r.run), r.predicted_final);
                }
                html.push_str("</table>");
            }
        }
        Err(e) => {
            let _ = write!(html, "<p class=muted>No curve law: {}</p>", escape(e.reason()));
        }
    }
}

/// MiniCPM's batch-size law.
fn batch_section(html: &mut String, data: &SweepResults) {
    match data.batch().as_ref().map(|b| b.minicpm.as_ref()) {
        Ok(Some(b)) => {
            let _ = write!(
                html,
                "<h3>Batch-size law</h3><p>bs<sub>opt</sub> = {:.4e} / L<sup>{:.3}</sup> tokens, from {} loss levels.</p>",
                b.k,
                b.gamma,
                b.optima.len()
            );
        }
        Ok(None) => html.push_str("<p class=muted>No batch-size law: the curves do not reach enough common loss levels.</p>"),
        Err(e) => {
            let _ = write!(html, "<p class=muted>No batch-size law: {}</p>", escape(e.reason()));
        }
    }
}

/// Charts left out, each with the reason.
type NotDrawn = Vec<(String, String)>;

/// Every chart the data supports, inline; returns those drawn and those not, with the reason.
fn charts_section(html: &mut String, data: &SweepResults) -> anyhow::Result<(Vec<String>, NotDrawn)> {
    html.push_str("<h2>Charts</h2>\n");
    draw_charts(html, data, |_| true)
}

/// The charts `wanted` keeps, as inline SVG figures; those the data cannot support, with why.
fn draw_charts(html: &mut String, data: &SweepResults, wanted: impl Fn(&str) -> bool) -> anyhow::Result<(Vec<String>, NotDrawn)> {
    let mut charts = Vec::new();
    let mut not_drawn = Vec::new();
    for (name, figure) in crate::plot::sweep_charts(data).into_iter().filter(|(name, _)| wanted(name)) {
        match figure {
            Ok(figure) => {
                let svg = figure.to_svg()?;
                let _ = writeln!(html, "<figure id=\"{name}\">{}<figcaption>{}</figcaption></figure>", inline_svg(&svg), escape(&figure.title));
                charts.push(name.to_string());
            }
            Err(why) => not_drawn.push((name.to_string(), why)),
        }
    }
    Ok((charts, not_drawn))
}

/// Every run, folded away: what the charts are drawn from.
fn runs_section(html: &mut String, data: &SweepResults) {
    let _ = write!(
        html,
        "<h2>Runs</h2><details><summary>{} runs (click to show)</summary><table>\
         <tr><th>run</th><th>kind</th><th>grid</th><th>state</th><th>width</th><th>depth</th><th>N</th><th>D</th><th>lr</th><th>final eval loss</th></tr>",
        data.runs.len()
    );
    for r in &data.runs {
        let p = &r.run;
        let loss = r.eval_points().last().map(|e| format!("{:.4}", e.1)).unwrap_or_else(|| "–".into());
        let state = r.state.map(|s| s.to_string()).unwrap_or_else(|| "pending".into());
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3e}</td><td>{loss}</td></tr>",
            escape(&p.id),
            p.kind,
            escape(&p.grid),
            p.width,
            p.depth,
            si(p.n as f64),
            si(p.tokens as f64),
            p.config.optimizer.lr
        );
    }
    html.push_str("</table></details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "(0 charts: )" is "(no charts)", and one chart is not "1 charts".
    #[test]
    fn the_summary_counts_charts_in_words() {
        let summary = |charts: &[&str]| {
            ReportSummary {
                path: "r.html".into(),
                charts: charts.iter().map(|c| c.to_string()).collect(),
                not_drawn: Vec::new(),
                law_definition: None,
                saved_fit: None,
            }
            .to_string()
        };
        assert!(summary(&[]).starts_with("wrote r.html (no charts)"), "{}", summary(&[]));
        assert!(summary(&["loss-curves"]).starts_with("wrote r.html (1 chart: loss-curves)"));
        assert!(summary(&["a", "b"]).starts_with("wrote r.html (2 charts: a, b)"));
    }
}
