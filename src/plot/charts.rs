//! The charts researchers look at before they believe a wind tunnel, each built as a `Figure`
//! from a sweep's data (or a coordinate check). A chart the data cannot support returns the reason.

use plotters::style::RGBColor;

use super::figure::{category_color, ordered_color, Axis, Figure, LegendPosition, Panel, Series, Style, GREY};
use crate::fit::allocation::{AllocationReport, Frontier, Outcome};
use crate::fit::curve::report::CurveReport;
use crate::fit::law::{Law, Point};
use crate::fit::log_space;
use crate::fit::transfer::mean_loss_by_lr;
use crate::format::si3;
use crate::model::mup::Parameterization;
use crate::results::SweepResults;
use crate::sweep::plan::RunKind;
use crate::train::coord_check::{layer_names, CoordCheckResult};
use crate::train::log::RunState;

const PANEL: (u32, u32) = (620, 460);
const BLACK: RGBColor = RGBColor(0, 0, 0);
const RED: RGBColor = RGBColor(214, 39, 40);

/// The q-quantile of `values` (sorted in place; nearest rank).
fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// Distinct values, sorted.
fn distinct(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

/// (smallest, largest) of `values`.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Training compute of a fitted point, C = 6ND.
fn compute(p: &Point) -> f64 {
    6.0 * p.n * p.d
}

fn index_of(values: &[f64], x: f64) -> usize {
    values.iter().position(|&v| v == x).unwrap_or(0)
}

fn horizontal(label: String, color: RGBColor, y: f64, x0: f64, x1: f64) -> Series {
    Series::new(Some(label), color, Style::Dashed { width: 1 }, vec![(x0, y), (x1, y)])
}

fn figure(title: &str, panels: Vec<Panel>) -> Figure {
    Figure { title: title.to_string(), panels, panel_size: PANEL, share_y: false }
}

/// "N = 23.7k": three significant digits.
fn n_label(n: f64) -> String {
    format!("N = {}", si3(n))
}

/// An adaptive sweep's target against the FLOPs spent, round by round: the estimate and its 95%
/// interval, and the whole grid's interval once the grid has been trained too.
pub fn adaptive(data: &SweepResults) -> Result<Figure, String> {
    let record = data.adaptive.as_ref().ok_or("not an adaptive sweep (run it with `windtunnel run SWEEP --adaptive`)")?;
    let fitted: Vec<(f64, &crate::adaptive::design::Estimate)> = record.rounds.iter().filter_map(|r| Some((r.flops_spent, r.fit.as_ref()?))).collect();
    if fitted.is_empty() {
        return Err("no round has been fitted yet".into());
    }
    let x: Vec<f64> = fitted.iter().map(|(f, _)| *f).collect();
    let lower: Vec<f64> = fitted.iter().map(|(_, e)| e.lower).collect();
    let upper: Vec<f64> = fitted.iter().map(|(_, e)| e.upper).collect();
    let color = category_color(0);
    let mut series = vec![
        Series::band(Some("95% interval, adaptive".into()), color, &x, &lower, &upper),
        Series::new(Some("estimate, adaptive".into()), color, Style::LineMarkers { width: 2, size: 4 }, fitted.iter().map(|(f, e)| (*f, e.estimate)).collect()),
    ];
    let (x0, x1) = (x[0], record.grid_flops.max(x[x.len() - 1]));
    if let Some(full) = data.full_grid_target() {
        let grid = [x0, x1];
        series.push(Series::band(Some("95% interval, whole grid".into()), GREY, &grid, &[full.lower; 2], &[full.upper; 2]));
        series.push(Series::new(
            Some(format!("whole grid ({:.3e} FLOPs)", record.grid_flops)),
            GREY,
            Style::Markers { size: 6 },
            vec![(record.grid_flops, full.estimate)],
        ));
    }
    let panel = Panel {
        title: format!("{}; {} rounds", record.target.describe(), record.rounds.len()),
        x: Axis::log("FLOPs spent by the adaptive sweep"),
        y: match record.target {
            crate::adaptive::target::Target::Allocation { .. } => Axis::log("compute-optimal D/N"),
            crate::adaptive::target::Target::Loss { .. } => Axis::linear("predicted loss (nats/token)"),
        },
        series,
        legend: LegendPosition::UpperRight,
    };
    Ok(figure(&format!("{}: adaptive wind tunnel", data.plan.name), vec![panel]))
}

/// Eval loss against tokens for every run, one panel per sweep grid, coloured by model size;
/// decay branches are drawn from their branch point on their trunk's curve.
pub fn loss_curves(data: &SweepResults) -> Result<Figure, String> {
    let mut panels = Vec::new();
    for grid in data.plan.grids() {
        let runs: Vec<_> = data.runs.iter().filter(|r| r.run.grid == grid && !r.eval_points().is_empty()).collect();
        if runs.is_empty() {
            continue;
        }
        let sizes = distinct(runs.iter().map(|r| r.run.n as f64));
        let mut labelled = vec![false; sizes.len()];
        let mut series = Vec::new();
        let (mut x0, mut x1) = (f64::INFINITY, 0f64);
        for r in &runs {
            let i = index_of(&sizes, r.run.n as f64);
            let color = ordered_color(i, sizes.len());
            let mut points = r.eval_points();
            x0 = x0.min(points[0].0);
            x1 = x1.max(points[points.len() - 1].0);
            let label = (!labelled[i]).then(|| n_label(r.run.n as f64));
            labelled[i] = true;
            match r.run.kind {
                RunKind::Branch => {
                    // Start the decay where it leaves the trunk: the trunk's last evaluation at or
                    // before the branch point.
                    let trunk = r.run.trunk.as_deref().and_then(|t| data.runs.iter().find(|c| c.run.id == t));
                    let from = r.run.from_tokens.unwrap_or(0) as f64;
                    if let Some(start) = trunk.and_then(|t| t.eval_points().into_iter().rfind(|p| p.0 <= from)) {
                        points.insert(0, start);
                    }
                    let end = points[points.len() - 1];
                    series.push(Series::new(label, color, Style::Line { width: 1 }, points));
                    series.push(Series::new(None, color, Style::Markers { size: 3 }, vec![end]));
                }
                RunKind::Trunk | RunKind::Plain => {
                    let style = if r.state == Some(RunState::Diverged) { Style::Dashed { width: 1 } } else { Style::Line { width: 2 } };
                    series.push(Series::new(label, color, style, points));
                }
            }
        }
        if let Some(oracle) = data.oracle_loss {
            series.push(horizontal(format!("oracle loss {oracle:.3}"), BLACK, oracle, x0, x1));
        }
        let kinds = if runs.iter().any(|r| r.run.kind == RunKind::Branch) { " (WSD trunks, decay branches)" } else { "" };
        panels.push(Panel {
            title: format!("{grid}{kinds}"),
            x: Axis::log("tokens D"),
            y: Axis::log("eval loss (nats/token)"),
            series,
            legend: LegendPosition::LowerLeft,
        });
    }
    if panels.is_empty() {
        return Err("no run has evaluated yet".into());
    }
    Ok(figure(&format!("{}: eval loss during training", data.plan.name), panels))
}

/// Final loss against learning rate, one curve per width and its parabola optimum; one panel per
/// parameterization (µP and SP side by side when the sweep has both).
pub fn lr_transfer(data: &SweepResults) -> Result<Figure, String> {
    let report = data.lr().as_ref().map_err(|e| format!("no learning-rate scan to draw ({e})"))?;
    let mut panels = Vec::new();
    for (group, transfer) in &report.groups {
        // A run is in a group named by its parameterization, and by its depth rule where the
        // scans vary it ("mup, param.mup.depth_rule=completep").
        let in_group = |c: &crate::train::config::RunConfig| {
            let p = c.mup.parameterization.to_string();
            let rule = format!("depth_rule={}", c.mup.depth_rule);
            report.groups.len() == 1 || *group == p || group.starts_with(&format!("{p}, ")) && (!group.contains("depth_rule=") || group.contains(&rule))
        };
        // Curves per depth when the scans are at one width and several depths, else per width.
        let by_depth = transfer.depth_drift.is_some();
        let key = |width: f64, depth: f64| if by_depth { depth } else { width };
        let runs: Vec<_> = data
            .runs
            .iter()
            .filter(|r| r.run.kind == RunKind::Plain && r.state == Some(RunState::Done) && in_group(&r.run.config))
            .filter_map(|r| r.eval_points().last().map(|p| (key(r.run.width as f64, r.run.depth as f64), r.run.config.optimizer.lr, p.1)))
            .collect();
        let keys = distinct(transfer.optima.iter().map(|o| key(o.width, o.depth)));
        let mut series = Vec::new();
        for (i, &k) in keys.iter().enumerate() {
            let color = ordered_color(i, keys.len());
            let points: Vec<(f64, f64)> = runs.iter().filter(|r| r.0 == k).map(|r| (r.1, r.2)).collect();
            // Seeds are replicates: the line is their mean loss at each rate (what `fit lr` fits),
            // each seed a dot.
            let means = mean_loss_by_lr(points.iter().copied());
            if means.len() < points.len() {
                series.push(Series::new(None, color, Style::Markers { size: 2 }, points));
            }
            series.push(Series::new(Some(format!("{} {k}", if by_depth { "depth" } else { "width" })), color, Style::LineMarkers { width: 2, size: 3 }, means));
        }
        for o in &transfer.optima {
            let k = key(o.width, o.depth);
            let color = ordered_color(index_of(&keys, k), keys.len());
            let label = (k == keys[0]).then(|| "parabola optimum".to_string());
            series.push(Series::new(label, color, Style::Highlight { size: 6 }, vec![(o.lr_opt, o.loss_at_opt)]));
        }
        let name = match group.parse::<Parameterization>() {
            Ok(Parameterization::Mup) => "µP".to_string(),
            Ok(Parameterization::Sp) => "SP".to_string(),
            Err(_) => group.replace("param.mup.", "").replace("mup, ", "µP, "),
        };
        let drift = match (&transfer.depth_drift, &transfer.drift) {
            (Some(d), _) => format!(": d ln η*/d ln depth = {:+.2} [{:+.2}, {:+.2}]", d.slope, d.slope_lower, d.slope_upper),
            (None, Some(d)) => format!(": d ln η*/d ln width = {:+.2} [{:+.2}, {:+.2}]", d.slope, d.slope_lower, d.slope_upper),
            (None, None) => String::new(),
        };
        panels.push(Panel {
            title: format!("{name}{drift}"),
            x: Axis::log("base learning rate η"),
            y: Axis::linear("final eval loss (nats/token)"),
            series,
            legend: LegendPosition::UpperLeft,
        });
    }
    Ok(Figure { share_y: true, ..figure(&format!("{}: learning-rate transfer", data.plan.name), panels) })
}

fn law_report(data: &SweepResults) -> Result<&crate::fit::report::LawReport, String> {
    data.law().as_ref().map_err(|e| format!("no data-model law ({e})"))
}

/// The loss axis of a law chart: what the fitted column measures, in its unit.
fn law_loss_axis(report: &crate::fit::report::LawReport) -> String {
    match report.definition.loss.as_str() {
        "final_eval_loss" => "final eval loss (nats/token)".to_string(),
        "best_eval_loss" => "best eval loss (nats/token)".to_string(),
        "final_train_loss" => "final train loss (nats/token)".to_string(),
        "eval_bits_per_byte" => "final eval loss (bits/byte)".to_string(),
        other => other.replace('_', " "),
    }
}

/// The oracle line, drawn only when the law is fitted in its unit (nats per token).
fn oracle_for(data: &SweepResults, report: &crate::fit::report::LawReport) -> Option<f64> {
    data.oracle_loss.filter(|_| law_loss_axis(report).contains("nats/token"))
}

fn law_title(law: &Law) -> String {
    format!("{}{}", law.summary(), if !law.is_plausible() { " (unconstrained: too few points)" } else { "" })
}

/// Loss against D for each N with the fitted law's curves.
pub fn law_tokens(data: &SweepResults) -> Result<Figure, String> {
    let report = law_report(data)?;
    let law = &report.fit.law;
    let points = &report.data;
    let sizes = distinct(points.iter().map(|p| p.n));
    let (d0, d1) = span(points.iter().map(|p| p.d));
    let grid = log_space(d0 / 1.5, d1 * 1.5, 60);
    let mut series = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let color = ordered_color(i, sizes.len());
        let observed: Vec<(f64, f64)> = points.iter().filter(|p| p.n == n).map(|p| (p.d, p.loss)).collect();
        series.push(Series::new(Some(n_label(n)), color, Style::Markers { size: 4 }, observed));
        series.push(Series::new(None, color, Style::Line { width: 2 }, grid.iter().map(|&d| (d, law.loss(n, d))).collect()));
    }
    // E is drawn when it is a floor the data approach, not a degenerate 0 of an unconstrained fit.
    let lowest = points.iter().map(|p| p.loss).fold(f64::INFINITY, f64::min);
    if let Some(e) = law.irreducible_loss().filter(|&e| e > 0.3 * lowest) {
        series.push(horizontal(format!("fitted E {e:.3}"), GREY, e, grid[0], grid[grid.len() - 1]));
    }
    if let Some(oracle) = oracle_for(data, report) {
        series.push(horizontal(format!("oracle loss {oracle:.3}"), BLACK, oracle, grid[0], grid[grid.len() - 1]));
    }
    let panel = Panel { title: law_title(law), x: Axis::log("tokens D"), y: Axis::log(&law_loss_axis(report)), series, legend: LegendPosition::UpperRight };
    Ok(figure(&format!("{}: data-model law {}", data.plan.name, law.form().law_form().formula()), vec![panel]))
}

/// Loss against compute C = 6ND: iso-N curves of the law, the observed points and the
/// compute-optimal frontier L(N_opt(C), D_opt(C)).
pub fn law_compute(data: &SweepResults) -> Result<Figure, String> {
    let report = law_report(data)?;
    let law = &report.fit.law;
    let points = &report.data;
    let sizes = distinct(points.iter().map(|p| p.n));
    let (c0, c1) = span(points.iter().map(compute));
    let grid = log_space(c0 / 2.0, c1 * 30.0, 80);
    // Each size's curve over the token counts the sweep measured (from half the fewest): at a few
    // tokens the law runs to tens of nats and would squash the measured region into a line.
    let (d0, _) = span(points.iter().map(|p| p.d));
    let mut series = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let color = ordered_color(i, sizes.len());
        let observed: Vec<(f64, f64)> = points.iter().filter(|p| p.n == n).map(|p| (compute(p), p.loss)).collect();
        series.push(Series::new(Some(n_label(n)), color, Style::Markers { size: 4 }, observed));
        let curve = grid.iter().filter(|&&cc| cc / (6.0 * n) >= d0 / 2.0).map(|&cc| (cc, law.loss(n, cc / (6.0 * n)))).collect();
        series.push(Series::new(None, color, Style::Line { width: 1 }, curve));
    }
    let frontier = grid
        .iter()
        .map(|&cc| {
            let (n, d) = law.compute_optimal(cc);
            (cc, law.loss(n, d))
        })
        .collect();
    series.push(Series::new(Some("compute-optimal frontier".into()), BLACK, Style::Line { width: 3 }, frontier));
    if let Some(oracle) = oracle_for(data, report) {
        series.push(horizontal(format!("oracle loss {oracle:.3}"), GREY, oracle, grid[0], grid[grid.len() - 1]));
    }
    let panel = Panel {
        title: format!("N_opt ∝ C^{:.3}, D_opt ∝ C^{:.3}", report.n_exponent, report.d_exponent),
        x: Axis::log("training compute C = 6ND (FLOPs)"),
        y: Axis::log(&law_loss_axis(report)),
        series,
        legend: LegendPosition::UpperRight,
    };
    Ok(figure(&format!("{}: data-model law, loss vs compute", data.plan.name), vec![panel]))
}

/// N_opt, D_opt and D_opt/N_opt against compute, with the bootstrap's 95% band.
pub fn allocation(data: &SweepResults) -> Result<Figure, String> {
    let report = law_report(data)?;
    let law = &report.fit.law;
    let (c0, c1) = span(report.data.iter().map(compute));
    // The observed compute range, then three decades of extrapolation, drawn dashed.
    let grid: Vec<f64> = log_space(c0, c1, 20).into_iter().chain(log_space(c1, c1 * 1e3, 31).into_iter().skip(1)).collect();
    let band = |f: &dyn Fn(&Law, f64) -> f64| -> Option<(Vec<f64>, Vec<f64>)> {
        (report.bootstrap_laws.len() >= 20).then(|| {
            grid.iter()
                .map(|&c| {
                    let mut v: Vec<f64> = report.bootstrap_laws.iter().map(|l| f(l, c)).filter(|v| v.is_finite() && *v > 0.0).collect();
                    if v.is_empty() {
                        return (f64::NAN, f64::NAN);
                    }
                    (quantile(&mut v, 0.025), quantile(&mut v, 0.975))
                })
                .unzip()
        })
    };
    let n_opt = |l: &Law, c: f64| l.compute_optimal(c).0;
    let d_opt = |l: &Law, c: f64| l.compute_optimal(c).1;
    let ratio = |l: &Law, c: f64| {
        let (n, d) = l.compute_optimal(c);
        d / n
    };
    let level = report.bootstrap.as_ref().map_or(95.0, |b| b.level * 100.0);
    let mut panes: [Vec<Series>; 2] = [Vec::new(), Vec::new()];
    for (f, name, color, pane, band_label) in [
        (&n_opt as &dyn Fn(&Law, f64) -> f64, "N_opt (parameters)", category_color(0), 0, true),
        (&d_opt, "D_opt (tokens)", category_color(1), 0, false),
        (&ratio, "D_opt / N_opt", category_color(2), 1, true),
    ] {
        if let Some((lo, hi)) = band(f) {
            panes[pane].push(Series::band(band_label.then(|| format!("{level:.0}% bootstrap band")), color, &grid, &lo, &hi));
        }
        let line = |keep: &dyn Fn(f64) -> bool| grid.iter().filter(|&&c| keep(c)).map(|&c| (c, f(law, c))).collect();
        panes[pane].push(Series::new(Some(name.to_string()), color, Style::Line { width: 2 }, line(&|c| c <= c1)));
        let extrapolated = (pane == 1 || name.starts_with("D_opt")).then(|| "extrapolated past the sweep's compute".to_string());
        panes[pane].push(Series::new(extrapolated, color, Style::Dashed { width: 2 }, line(&|c| c >= c1)));
    }
    let [left, right] = panes;
    let observed = format!("measured up to C = {:.1e} FLOPs, dashed beyond", c1);
    let panels = vec![
        Panel {
            title: format!("compute-optimal allocation ({observed})"),
            x: Axis::log("compute C (FLOPs)"),
            y: Axis::log("N_opt, D_opt"),
            series: left,
            legend: LegendPosition::UpperLeft,
        },
        Panel {
            title: format!("tokens per parameter D_opt/N_opt = (C/6)^(b−a)/G², G = {:.3}", report.g),
            x: Axis::log("compute C (FLOPs)"),
            y: Axis::log("D_opt / N_opt"),
            series: right,
            legend: LegendPosition::UpperLeft,
        },
    ];
    Ok(figure(&format!("{}: compute-optimal N and D", data.plan.name), panels))
}

/// N_opt against compute by Chinchilla's three approaches: the envelope's and the IsoFLOP
/// profiles' optima with their power laws, and the fitted law's closed form.
pub fn allocation_approaches(sweep: &str, report: &AllocationReport) -> Result<Figure, String> {
    let outcomes = [(1, &report.approach_1), (2, &report.approach_2), (3, &report.approach_3)];
    let fitted: Vec<(usize, &Frontier)> = outcomes.iter().filter_map(|&(k, o)| o.frontier().map(|f| (k, f))).collect();
    if fitted.is_empty() {
        let why: Vec<String> = outcomes
            .iter()
            .filter_map(|(k, o)| match o {
                Outcome::Unavailable { unavailable } => Some(format!("approach {k}: {unavailable}")),
                Outcome::Fitted(_) => None,
            })
            .collect();
        return Err(format!("no approach gave an allocation ({})", why.join("; ")));
    }
    let (lo, hi) = report.compute_range;
    let around = fitted.iter().flat_map(|(_, f)| f.optima.iter().chain(&f.budgets).map(|o| o.flops));
    let (c0, c1) = span(around.chain([lo, hi]).filter(|c| c.is_finite() && *c > 0.0));
    if !(c0 > 0.0 && c1.is_finite()) {
        return Err("no compute range to draw".into());
    }
    let grid = log_space(c0, c1.max(c0 * 10.0), 40);
    let mut series = Vec::new();
    for (i, (k, f)) in fitted.iter().enumerate() {
        let color = category_color(i);
        let interval = f.n_interval.map(|iv| format!(" [{:.2}, {:.2}]", iv.lower, iv.upper)).unwrap_or_default();
        let label = format!("{k}: {}, a = {:.3}{interval}", f.method, f.n_exponent);
        series.push(Series::new(Some(label), color, Style::Line { width: 2 }, grid.iter().map(|&c| (c, f.n_opt(c))).collect()));
        if !f.optima.is_empty() {
            series.push(Series::new(None, color, Style::Markers { size: 4 }, f.optima.iter().map(|o| (o.flops, o.n)).collect()));
        }
    }
    let panel = Panel {
        title: "N_opt ∝ C^a by Chinchilla's three approaches".into(),
        x: Axis::log("compute C (FLOPs)"),
        y: Axis::log("N_opt (parameters)"),
        series,
        legend: LegendPosition::UpperLeft,
    };
    Ok(figure(&format!("{sweep}: compute-optimal model size, three ways"), vec![panel]))
}

/// Log residuals of the fit against compute, coloured by N.
pub fn residuals(data: &SweepResults) -> Result<Figure, String> {
    let report = law_report(data)?;
    let sizes = distinct(report.data.iter().map(|p| p.n));
    let mut series = Vec::new();
    let (c0, c1) = span(report.data.iter().map(compute));
    for (i, &n) in sizes.iter().enumerate() {
        let points: Vec<(f64, f64)> = report.data.iter().zip(&report.fit.log_residuals).filter(|(p, _)| p.n == n).map(|(p, r)| (compute(p), *r)).collect();
        series.push(Series::new(Some(n_label(n)), ordered_color(i, sizes.len()), Style::LineMarkers { width: 1, size: 4 }, points));
    }
    series.push(Series::new(None, GREY, Style::Dashed { width: 1 }, vec![(c0, 0.0), (c1, 0.0)]));
    let panel = Panel {
        title: format!("{} points, rms {:.4}", report.points, report.residual_rms),
        x: Axis::log("training compute C = 6ND (FLOPs)"),
        y: Axis::linear("log residual ln L − ln L̂"),
        series,
        legend: LegendPosition::UpperRight,
    };
    Ok(figure(&format!("{}: residuals of the data-model fit", data.plan.name), vec![panel]))
}

/// Predicted against observed loss for a fit without the held-out points.
pub fn holdout(data: &SweepResults) -> Result<Figure, String> {
    let report = law_report(data)?;
    let h = report.holdout.as_ref().ok_or_else(|| format!("no held-out check; run `windtunnel fit law --input {} --holdout largest`", data.dir.display()))?;
    let held = |p: &Point| h.points.iter().any(|q| q.n == p.n && q.d == p.d);
    let fitted: Vec<(f64, f64)> = report.data.iter().filter(|p| !held(p)).map(|p| (p.loss, h.law.loss(p.n, p.d))).collect();
    let tested: Vec<(f64, f64)> = h.points.iter().map(|p| (p.loss, p.predicted)).collect();
    let all: Vec<f64> = fitted.iter().chain(&tested).flat_map(|p| [p.0, p.1]).collect();
    let (lo, hi) = span(all.into_iter());
    let series = vec![
        Series::new(Some("predicted = observed".into()), GREY, Style::Dashed { width: 1 }, vec![(lo, lo), (hi, hi)]),
        Series::new(Some(format!("fitted ({} points)", h.fitted_points)), category_color(0), Style::Markers { size: 4 }, fitted),
        Series::new(Some(format!("held out ({:?})", h.holdout).to_lowercase()), RED, Style::Highlight { size: 5 }, tested),
    ];
    let panel = Panel {
        title: format!("held-out mean |relative error| {:.2}%", h.mean_abs_relative_error * 100.0),
        x: Axis::linear(&format!("observed {}", law_loss_axis(report))),
        y: Axis::linear("predicted by the law fitted without them"),
        series,
        legend: LegendPosition::UpperLeft,
    };
    Ok(figure(&format!("{}: held-out prediction", data.plan.name), vec![panel]))
}

/// MiniCPM's batch-size law: the optimal batch size against the loss it reaches, bs = k / L^γ.
pub fn batch_size(data: &SweepResults) -> Result<Figure, String> {
    let report = data.batch().as_ref().map_err(|e| format!("no batch-size law ({e})"))?;
    let law = report.minicpm.as_ref().ok_or("the batch-size curves do not cross enough common loss levels for the law")?;
    let levels: Vec<f64> = law.optima.iter().map(|o| o.0).collect();
    let (l0, l1) = span(levels.into_iter());
    let fitted = log_space(l0 * 0.97, l1 * 1.03, 40).into_iter().map(|l| (l, law.k / l.powf(law.gamma))).collect();
    let series = vec![
        Series::new(Some("optimum per loss level".into()), category_color(0), Style::Markers { size: 5 }, law.optima.clone()),
        Series::new(Some(format!("bs = {:.3e} / L^{:.2}", law.k, law.gamma)), BLACK, Style::Line { width: 2 }, fitted),
    ];
    let panel = Panel {
        title: format!("{} batch sizes", report.batch_sizes),
        x: Axis::log("eval loss L (nats/token)"),
        y: Axis::log("optimal batch size (tokens)"),
        series,
        legend: LegendPosition::UpperRight,
    };
    Ok(figure(&format!("{}: batch-size law", data.plan.name), vec![panel]))
}

/// Mean |activation| against width, one line per layer, one panel per training step.
pub fn coord_check(result: &CoordCheckResult) -> Result<Figure, String> {
    let steps = distinct(result.records.iter().map(|r| r.step as f64));
    if steps.is_empty() {
        return Err("the coordinate check has no records".into());
    }
    let layers = layer_names(&result.records);
    let panels = steps
        .iter()
        .map(|&step| {
            let series = layers
                .iter()
                .enumerate()
                .map(|(i, layer)| {
                    let points = result.records.iter().filter(|r| r.step as f64 == step && &r.layer == layer).map(|r| (r.width as f64, r.mean_abs)).collect();
                    Series::new(Some(layer.clone()), category_color(i), Style::LineMarkers { width: 2, size: 3 }, points)
                })
                .collect();
            Panel {
                title: format!("after {} step{}", step, if step == 1.0 { "" } else { "s" }),
                x: Axis::log("width"),
                y: Axis::log("mean |x|"),
                series,
                legend: if step == steps[0] { LegendPosition::UpperLeft } else { LegendPosition::None },
            }
        })
        .collect();
    let name = match result.parameterization {
        Parameterization::Mup => "µP",
        Parameterization::Sp => "SP",
    };
    Ok(Figure { share_y: true, ..figure(&format!("coordinate check ({name}): flat lines = width-stable activations"), panels) })
}

/// The curve law (`fit curve`): per group, smallest model first (where the runs give N), the
/// evaluations of every run with the law's curve through the fitted runs (solid) and its
/// predictions for the held-out runs and the requested schedules (dashed), and a last panel of
/// the relative residuals at every evaluation, titled with the final losses' errors (held-out, or
/// fitted when no run was held out).
pub fn curve_law(name: &str, report: &CurveReport) -> Result<Figure, String> {
    const BLUE: RGBColor = RGBColor(31, 119, 180);
    let mut panels = Vec::new();
    let mut residuals: Vec<Series> = Vec::new();
    let mut groups: Vec<&crate::fit::curve::report::GroupFit> = report.groups.iter().collect();
    groups.sort_by(|a, b| a.n.unwrap_or(f64::INFINITY).total_cmp(&b.n.unwrap_or(f64::INFINITY)));
    for g in groups {
        let mut series = Vec::new();
        let mut labelled = [false; 4];
        let mut label = |i: usize, text: &str| (!std::mem::replace(&mut labelled[i], true)).then(|| text.to_string());
        let runs = report.fitted.iter().chain(&report.runs).filter(|r| r.group == g.group);
        for r in runs {
            let observed: Vec<(f64, f64)> = r.curve.iter().filter_map(|p| p.actual.map(|a| (p.tokens, a))).collect();
            let predicted: Vec<(f64, f64)> = r.curve.iter().map(|p| (p.tokens, p.predicted)).collect();
            let (color, style, text) =
                if r.held_out { (RED, Style::Dashed { width: 1 }, "predicted (held out)") } else { (BLUE, Style::Line { width: 1 }, "fitted law") };
            series.push(Series::new(label(if r.held_out { 0 } else { 1 }, text), color, style, predicted));
            series.push(Series::new(label(2, "evaluations"), BLACK, Style::Markers { size: 2 }, observed));
            let rel: Vec<(f64, f64)> = r.curve.iter().filter_map(|p| p.actual.map(|a| (p.tokens, 100.0 * (p.predicted - a) / a))).collect();
            residuals.push(Series::new(None, if r.held_out { RED } else { BLUE }, Style::Markers { size: 2 }, rel));
        }
        for s in report.schedules.iter().filter(|s| s.group == g.group) {
            let points = s.curve.iter().map(|p| (p.tokens, p.predicted)).collect();
            series.push(Series::new(label(3, "schedules not run"), GREY, Style::Dashed { width: 1 }, points));
        }
        if series.is_empty() {
            continue;
        }
        panels.push(Panel { title: g.group.clone(), x: Axis::log("tokens"), y: Axis::linear("eval loss (nats)"), series, legend: LegendPosition::UpperRight });
    }
    if panels.is_empty() {
        return Err("no run to draw".into());
    }
    if !residuals.is_empty() {
        let (x0, x1) = span(residuals.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
        residuals.push(Series::new(None, GREY, Style::Dashed { width: 1 }, vec![(x0, 0.0), (x1, 0.0)]));
        let title = match (report.median_relative_error, report.max_relative_error) {
            (Some(m), Some(x)) => {
                let finals = if report.runs.iter().any(|r| r.held_out) { "held-out" } else { "fitted" };
                format!("every evaluation; {finals} finals: median |error| {:.2}%, largest {:.2}%", 100.0 * m, 100.0 * x)
            }
            _ => "residuals".to_string(),
        };
        panels.push(Panel { title, x: Axis::log("tokens"), y: Axis::linear("(L̂ − L) / L  (%)"), series: residuals, legend: LegendPosition::None });
    }
    Ok(figure(&format!("{name}: the {} curve law", report.form), panels))
}
