//! `fit curve`: fit the curve law on some runs, predict the others and schedules never run, and
//! say how well it did, against a naive baseline ([`super::baseline`]: the trunk's loss where a
//! run's decay starts, less the fitted decays' mean drop).
//!
//! **Intervals** come from the bootstrap's refits: with fewer than 20 there are none (and a note
//! says so), and a prediction for a run more than [`FITTED_REACH`] times as long as the longest
//! run fitted has none either, with a note: that far out the law is extrapolated, and resampling
//! the runs it was fitted on says nothing of how it holds.
//!
//! **Schedule families.** Each run and schedule predicted carries its family (constant, cosine,
//! WSD by decay shape, other: [`crate::schedule::ScheduleFamily`], read from its rates); one
//! warning per family that no run its law was fitted on belongs to. The law itself reads any
//! schedule's rates, so a cosine or a constant run among the fitted runs is fitted like the rest.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Serialize;

use super::baseline::Baselines;
use super::data::Curve;
use super::fit::{bootstrap, fit_theta, laws_of, CurveLaw, FitData};
use super::form::CurveFormKind;
use super::progress::{Progress, Reporter};
use super::schedules::{decay_fractions, decay_shapes, GroupFrame, ScheduleRequest};
use crate::fit::bootstrap::Interval;
use crate::schedule::{DecayShape, ScheduleFamily};

/// What to fit and predict.
#[derive(Debug, Clone)]
pub struct CurveOptions {
    pub form: CurveFormKind,
    /// One law over all groups, sharing the schedule response (see `fit.rs`).
    pub joint: bool,
    /// Runs the law is fitted on (default: every run not predicted).
    pub fit_runs: Option<Regex>,
    /// Runs predicted without their data (default: none).
    pub predict_runs: Option<Regex>,
    pub bootstrap: usize,
    pub seed: u64,
    pub schedules: Vec<ScheduleRequest>,
    /// `--optimize-decay`: the run length, in tokens (or steps where runs logged no tokens).
    pub optimize_decay_tokens: Option<f64>,
    /// The decay the sweep used (shape and share of the run), for `--optimize-decay`'s gain.
    pub reference_decay: Option<(DecayShape, f64)>,
    /// What the fit says on stderr while it works.
    pub progress: Progress,
}

impl Default for CurveOptions {
    /// Every finished run fitted, one law per group, 100 bootstrap refits, nothing predicted,
    /// nothing said on stderr.
    fn default() -> Self {
        Self {
            form: CurveFormKind::default(),
            joint: false,
            fit_runs: None,
            predict_runs: None,
            bootstrap: 100,
            seed: 0,
            schedules: Vec::new(),
            optimize_decay_tokens: None,
            reference_decay: None,
            progress: Progress::Quiet,
        }
    }
}

/// One group's fit.
#[derive(Debug, Clone, Serialize)]
pub struct GroupFit {
    pub group: String,
    /// The model's size, when its runs say it (see [`Curve::n`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<f64>,
    /// The runs fitted.
    pub runs: Vec<String>,
    pub points: usize,
    pub params: BTreeMap<String, f64>,
    /// Over the fitted evaluations: the median and largest |L̂ − L| / L.
    pub fit_median_relative_error: f64,
    pub fit_max_relative_error: f64,
    /// Bootstrap replicates that refitted.
    pub bootstrap: usize,
    /// The parameters the fit does not pin, and why (see [`not_identified`]).
    pub not_identified: Vec<NotIdentified>,
    #[serde(skip)]
    pub law: CurveLaw,
    #[serde(skip)]
    pub replicates: Vec<CurveLaw>,
    /// The steps of the longest run fitted.
    #[serde(skip)]
    pub longest_run: u64,
}

/// A parameter the fit leaves free, as `fit law` marks one: its number says nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotIdentified {
    /// Its key, as in `params`.
    pub parameter: String,
    #[serde(skip)]
    pub symbol: &'static str,
    pub why: String,
}

/// The parameters of `law` that its fit leaves free: α and φ when the fit ended at its starting
/// values (`at_start`: no refinement ended admissible, so they are the start grid's), φ's
/// parameters at the edge of their range ([`super::form::CurveForm::at_edge`]), and, with enough
/// refits, any whose bootstrap standard error exceeds ten times its value (`fit law`'s rule).
pub fn not_identified(law: &CurveLaw, replicates: &[CurveLaw], at_start: bool) -> Vec<NotIdentified> {
    let named = law.named();
    let edge = law.form.form().at_edge(&law.phi);
    let mut out = Vec::new();
    for (i, &(key, symbol, value)) in named.iter().enumerate() {
        let shape = i.checked_sub(4);
        let why = if at_start && (key == "alpha" || shape.is_some()) {
            Some("the fit ended at its starting values (no refinement from the best starts ended admissible)".to_string())
        } else if shape.is_some_and(|j| edge[j]) {
            Some(format!("{} is at the edge of its range, where the runs fitted stop pinning it", crate::format::sig(value)))
        } else if replicates.len() >= REFITS_FOR_AN_INTERVAL {
            let samples: Vec<f64> = replicates.iter().map(|r| r.named()[i].2).collect();
            let interval = Interval::from_samples(value, &samples, 0.95);
            (!interval.is_identified()).then(|| format!("the bootstrap refits leave it free (± {})", crate::format::sig(interval.std_error)))
        } else {
            None
        };
        out.extend(why.map(|why| NotIdentified { parameter: key.to_string(), symbol, why }));
    }
    out
}

/// One point of a predicted curve.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CurvePoint {
    pub step: u64,
    pub tokens: f64,
    pub lr: f64,
    pub predicted: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<f64>,
}

/// A run's final loss, predicted and actual.
#[derive(Debug, Clone, Serialize)]
pub struct RunPrediction {
    pub run: String,
    pub group: String,
    /// Predicted without its own data (`--predict-runs`), or fitted.
    pub held_out: bool,
    /// Its schedule's family, read from its rates.
    pub family: ScheduleFamily,
    pub predicted_final: f64,
    /// `None` while the run has not ended: the prediction is where it is heading.
    pub actual_final: Option<f64>,
    pub relative_error: Option<f64>,
    pub baseline_final: Option<f64>,
    pub baseline_relative_error: Option<f64>,
    pub curve: Vec<CurvePoint>,
}

/// A schedule that was not run, predicted for one group.
#[derive(Debug, Clone, Serialize)]
pub struct SchedulePrediction {
    pub schedule: String,
    pub group: String,
    pub family: ScheduleFamily,
    pub steps: u64,
    pub predicted_final: f64,
    /// 95% bootstrap interval over runs (none with fewer than 20 refits, or past [`FITTED_REACH`]).
    pub interval: Option<Interval>,
    pub curve: Vec<CurvePoint>,
}

/// `--optimize-decay` for one group.
#[derive(Debug, Clone, Serialize)]
pub struct DecayOptimum {
    pub group: String,
    pub tokens: f64,
    /// The best of each shape: (shape, decay fraction of the run, predicted final loss).
    pub best_per_shape: Vec<(String, f64, f64)>,
    pub best_shape: String,
    pub best_fraction: f64,
    pub best_final: f64,
    /// The sweep's own decay at this length, and what the best gains over it (95% interval).
    pub reference: Option<(String, f64, f64)>,
    pub gain: Option<Interval>,
}

/// Everything `fit curve` reports.
#[derive(Debug, Clone, Serialize)]
pub struct CurveReport {
    pub form: CurveFormKind,
    pub formula: &'static str,
    pub joint: bool,
    pub groups: Vec<GroupFit>,
    /// The predicted runs (`--predict-runs`), else every fitted run.
    pub runs: Vec<RunPrediction>,
    /// With `--predict-runs`: the fitted runs, in-sample.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fitted: Vec<RunPrediction>,
    /// Over `runs` with an actual final loss: median and largest |relative error|.
    pub median_relative_error: Option<f64>,
    pub max_relative_error: Option<f64>,
    pub baseline_median_relative_error: Option<f64>,
    pub baseline_max_relative_error: Option<f64>,
    pub schedules: Vec<SchedulePrediction>,
    pub decay_optima: Vec<DecayOptimum>,
    /// Predictions the fit cannot vouch for: a schedule family asked for that no fitted run of
    /// its law belongs to.
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    /// Where the chart was written.
    pub chart: Option<std::path::PathBuf>,
}

/// Fit, predict, and compare (see the module doc).
pub fn fit_curves(curves: &[Curve], options: &CurveOptions) -> anyhow::Result<CurveReport> {
    let fit = runs_to_fit(curves, options)?;
    let mut groups: Vec<String> = Vec::new();
    for c in &fit {
        if !groups.contains(&c.group) {
            groups.push(c.group.clone());
        }
    }
    let mut notes = Vec::new();
    let reporter = Reporter::new("fit curve", options.progress);
    let fits = fit_groups(&fit, &groups, options, &mut notes, &reporter)?;
    let held_out: Vec<&Curve> = curves.iter().filter(|c| is_predicted(c, options) && !is_fitted(c, options)).collect();
    // Without --predict-runs: the fitted runs, and every run still training (where it is heading).
    let running = curves.iter().filter(|c| !c.finished && options.fit_runs.as_ref().is_none_or(|r| r.is_match(&c.run)));
    let shown: Vec<&Curve> = if options.predict_runs.is_some() { held_out } else { fit.iter().copied().chain(running).collect() };
    reporter.begin("predictions".into(), shown.len());
    let baselines = Baselines::of(&fit);
    let runs = predict_runs(&shown, &fits, &baselines, options.predict_runs.is_some(), &mut notes, &reporter);
    let fitted_runs: Vec<RunPrediction> = if options.predict_runs.is_some() {
        fit.iter().filter_map(|c| fits.iter().find(|g| g.group == c.group).map(|g| predict_run(c, g, &baselines, false))).collect()
    } else {
        Vec::new()
    };
    let errors: Vec<f64> = runs.iter().filter_map(|r| r.relative_error.map(f64::abs)).collect();
    let baseline: Vec<f64> = runs.iter().filter_map(|r| r.baseline_relative_error.map(f64::abs)).collect();
    let (schedules, decay_optima) = not_run(&fits, &fit, options, &mut notes)?;
    let warnings = unfitted_families(&fit, &runs, &schedules, options.joint);
    reporter.end();
    Ok(CurveReport {
        form: options.form,
        formula: options.form.form().formula(),
        joint: options.joint,
        groups: fits,
        runs,
        fitted: fitted_runs,
        median_relative_error: median(&errors),
        max_relative_error: errors.iter().copied().reduce(f64::max),
        baseline_median_relative_error: median(&baseline),
        baseline_max_relative_error: baseline.iter().copied().reduce(f64::max),
        schedules,
        decay_optima,
        warnings,
        notes,
        chart: None,
    })
}

fn is_predicted(c: &Curve, options: &CurveOptions) -> bool {
    options.predict_runs.as_ref().is_some_and(|r| r.is_match(&c.run))
}

/// Whether the law is fitted on `c`: a finished run that --fit-runs matches (without it: that is
/// not predicted).
fn is_fitted(c: &Curve, options: &CurveOptions) -> bool {
    c.finished && options.fit_runs.as_ref().map_or(!is_predicted(c, options), |r| r.is_match(&c.run))
}

/// The runs the law is fitted on, or why there are none.
fn runs_to_fit<'a>(curves: &'a [Curve], options: &CurveOptions) -> anyhow::Result<Vec<&'a Curve>> {
    let fit: Vec<&Curve> = curves.iter().filter(|c| is_fitted(c, options)).collect();
    if fit.is_empty() {
        let why = match &options.predict_runs {
            _ if options.fit_runs.is_some() => "no finished run matches --fit-runs".to_string(),
            _ if !curves.iter().any(|c| c.finished) => "no run has finished yet, and the law is fitted on finished runs".to_string(),
            Some(p) => format!(
                "--predict-runs `{p}` matches every finished run, which leaves none to fit the law on; narrow it, or name the runs to fit with --fit-runs"
            ),
            None => "no run to fit".to_string(),
        };
        anyhow::bail!("{why}; the runs are:\n  {}", names(curves));
    }
    Ok(fit)
}

/// The final loss and curve of each run `shown`, by its group's law; one note for the runs with
/// no law, and one for those past [`FITTED_REACH`] (not one per run: 10,000 runs would bury the
/// report).
fn predict_runs(
    shown: &[&Curve],
    fits: &[GroupFit],
    baselines: &Baselines,
    held_out: bool,
    notes: &mut Vec<String>,
    reporter: &Reporter,
) -> Vec<RunPrediction> {
    let mut runs = Vec::new();
    let (mut lawless, mut groups_lawless, mut far) = (Vec::new(), Vec::new(), Vec::new());
    for c in shown {
        match fits.iter().find(|g| g.group == c.group) {
            Some(g) => {
                runs.push(predict_run(c, g, baselines, held_out));
                let factor = c.steps() as f64 / g.longest_run as f64;
                if factor > FITTED_REACH {
                    far.push(format!("{} ({} steps, {factor:.1}× its law's longest, {} steps)", c.run, c.steps(), g.longest_run));
                }
            }
            None => {
                lawless.push(c.run.as_str());
                if !groups_lawless.contains(&format!("`{}`", c.group)) {
                    groups_lawless.push(format!("`{}`", c.group));
                }
            }
        }
        reporter.done_one();
    }
    if !lawless.is_empty() {
        notes.push(format!(
            "{} run(s) have no law, none of the runs of their group(s) {} being fitted: {}",
            lawless.len(),
            groups_lawless.join(", "),
            listed(&lawless)
        ));
    }
    if !far.is_empty() {
        let far: Vec<&str> = far.iter().map(String::as_str).collect();
        notes.push(format!(
            "{} run(s) are more than {FITTED_REACH}× as long as the longest run their group's law was fitted on: extrapolations: {}",
            far.len(),
            listed(&far)
        ));
    }
    runs
}

/// `--predict-schedule` and `--optimize-decay` for every group; a note where a group's bootstrap
/// gave too few refits for an interval.
fn not_run(fits: &[GroupFit], fit: &[&Curve], options: &CurveOptions, notes: &mut Vec<String>) -> anyhow::Result<(Vec<SchedulePrediction>, Vec<DecayOptimum>)> {
    let mut schedules = Vec::new();
    let mut decay_optima = Vec::new();
    for g in fits {
        let members: Vec<&Curve> = fit.iter().copied().filter(|c| c.group == g.group).collect();
        let frame = GroupFrame::of(&members);
        for request in &options.schedules {
            schedules.push(predict_schedule(request, g, &frame, notes).map_err(|e| anyhow::anyhow!("--predict-schedule {e}"))?);
        }
        if let Some(tokens) = options.optimize_decay_tokens {
            decay_optima.push(optimize_decay(tokens, g, &frame, options.reference_decay, notes).map_err(|e| anyhow::anyhow!("--optimize-decay: {e}"))?);
        }
        let asked = !options.schedules.is_empty() || options.optimize_decay_tokens.is_some();
        if asked && options.bootstrap > 0 && g.bootstrap < REFITS_FOR_AN_INTERVAL {
            notes.push(format!(
                "{}: no 95% interval: {} bootstrap refits, and an interval needs {REFITS_FOR_AN_INTERVAL} (give --bootstrap {REFITS_FOR_AN_INTERVAL} or more)",
                g.group, g.bootstrap
            ));
        }
    }
    Ok((schedules, decay_optima))
}

/// The bootstrap refits an interval needs.
const REFITS_FOR_AN_INTERVAL: usize = 20;

/// A prediction for a run more than this many times as long as the longest run its law was
/// fitted on gets a note, and no interval: resampling the fitted runs says nothing of how the law
/// holds that far out.
pub const FITTED_REACH: f64 = 2.0;

/// A note for a prediction of `steps` steps by `g`'s law past [`FITTED_REACH`]; `interval`: the
/// prediction would have had one, and has none.
fn extrapolated(what: &str, steps: u64, g: &GroupFit, interval: bool) -> Option<String> {
    let factor = steps as f64 / g.longest_run as f64;
    (factor > FITTED_REACH).then(|| {
        format!(
            "{what}: {steps} steps is {factor:.1}× the longest run the law of {} was fitted on ({} steps): an extrapolation{}",
            g.group,
            g.longest_run,
            if interval { ", without an interval" } else { "" }
        )
    })
}

/// One warning per schedule family that a held-out run or a `--predict-schedule` asks for and
/// that no run its law was fitted on belongs to (the runs of its group, or of every group of a
/// joint fit): nothing the law saw vouches for its response to that schedule.
fn unfitted_families(fit: &[&Curve], runs: &[RunPrediction], schedules: &[SchedulePrediction], joint: bool) -> Vec<String> {
    let fitted: Vec<(&str, ScheduleFamily)> = fit.iter().map(|c| (c.group.as_str(), ScheduleFamily::of_rates(&c.lr))).collect();
    let seen = |group: &str, family: ScheduleFamily| fitted.iter().any(|&(g, f)| f == family && (joint || g == group));
    let asked = runs.iter().filter(|r| r.held_out).map(|r| (&r.run, &r.group, r.family)).chain(schedules.iter().map(|s| (&s.schedule, &s.group, s.family)));
    let mut missing: Vec<(ScheduleFamily, Vec<&str>)> = Vec::new();
    for (what, _, family) in asked.filter(|(_, g, f)| !seen(g, *f)) {
        match missing.iter_mut().find(|m| m.0 == family) {
            Some(m) if !m.1.contains(&what.as_str()) => m.1.push(what),
            Some(_) => {}
            None => missing.push((family, vec![what])),
        }
    }
    let mut families_fitted: Vec<String> = Vec::new();
    for (_, f) in &fitted {
        if !families_fitted.contains(&f.to_string()) {
            families_fitted.push(f.to_string());
        }
    }
    missing
        .into_iter()
        .map(|(family, what)| {
            format!(
                "{family} schedules predicted ({}), and no run the law was fitted on {} is one: it saw {} only, so these predictions extrapolate in schedule (fit one such run with --fit-runs to check them)",
                listed(&what),
                if joint { "in any group" } else { "in their group" },
                families_fitted.join(", ")
            )
        })
        .collect()
}

/// Up to three names, and how many more.
fn listed(names: &[&str]) -> String {
    let shown = names.iter().take(3).copied().collect::<Vec<_>>().join(", ");
    match names.len() {
        n if n > 3 => format!("{shown} and {} more", n - 3),
        _ => shown,
    }
}

fn names(curves: &[Curve]) -> String {
    curves.iter().map(|c| c.run.as_str()).collect::<Vec<_>>().join("\n  ")
}

pub(crate) fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => None,
        n if n % 2 == 1 => Some(s[n / 2]),
        n => Some(0.5 * (s[n / 2 - 1] + s[n / 2])),
    }
}

/// The law of every group (jointly or one by one), with bootstrap replicates.
fn fit_groups(fit: &[&Curve], groups: &[String], options: &CurveOptions, notes: &mut Vec<String>, reporter: &Reporter) -> anyhow::Result<Vec<GroupFit>> {
    let sets: Vec<Vec<&String>> = if options.joint { vec![groups.iter().collect()] } else { groups.iter().map(|g| vec![g]).collect() };
    let mut out = Vec::new();
    for set in sets {
        let members: Vec<&Curve> = fit.iter().copied().filter(|c| set.contains(&&c.group)).collect();
        out.extend(fit_set(&set, &members, options, notes, reporter).unwrap_or_default());
    }
    anyhow::ensure!(!out.is_empty(), "no group could be fitted:\n  {}", notes.join("\n  "));
    Ok(out)
}

/// One fit (a group, or the groups of `set` jointly) on its runs `members`: the fit of each group,
/// or a note saying why there is none.
fn fit_set(set: &[&String], members: &[&Curve], options: &CurveOptions, notes: &mut Vec<String>, reporter: &Reporter) -> Option<Vec<GroupFit>> {
    let set_names = set.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let group_of: Vec<usize> = members.iter().map(|c| set.iter().position(|g| **g == c.group).unwrap_or(0)).collect();
    reporter.begin(format!("{set_names}: the points of {} runs", members.len()), 0);
    let data = FitData::new(members, &group_of, set.len());
    reporter.end();
    let needed = 4 + options.form.form().shape_parameters().len() + 3 * (set.len() - 1);
    if data.points.points.len() <= needed {
        notes.push(format!("{set_names}: {} evaluations after the warmup, too few for the law's {needed} parameters; not fitted", data.points.points.len()));
        return None;
    }
    reporter.begin(format!("{set_names}: fitting {} points", data.points.points.len()), 0);
    let Some((theta, _)) = fit_theta(options.form, &data, &vec![1.0; members.len()], reporter) else {
        notes.push(format!("{set_names}: the fit did not converge"));
        return None;
    };
    reporter.end();
    let laws = laws_of(options.form, &data, &theta);
    let at_start = super::fit::at_a_start(options.form, &theta);
    if let Some(gamma) = laws.first().filter(|l| l.form == CurveFormKind::MultiPower).map(|l| l.named()[6].2) {
        if gamma > 0.98 * super::form::MultiPower::GAMMA_MAX {
            notes.push(format!(
                "{set_names}: γ = {gamma:.3} is at its bound ({}): the decays fitted do not pin it, and predictions for other decay shapes lean on the bound",
                super::form::MultiPower::GAMMA_MAX
            ));
        }
    }
    reporter.begin(format!("{set_names}: bootstrap"), options.bootstrap);
    let replicates: Vec<Vec<CurveLaw>> = bootstrap(options.form, &data, &theta, members.len(), options.bootstrap, options.seed, reporter)
        .iter()
        .map(|t| laws_of(options.form, &data, t))
        .collect();
    if options.bootstrap > 0 {
        reporter.end();
    }
    Some(
        set.iter()
            .zip(laws)
            .enumerate()
            .map(|(g, (name, law))| group_fit(name, law, members, replicates.iter().map(|r| r[g].clone()).collect(), at_start))
            .collect(),
    )
}

/// Group `name`'s fit: its law, how well it fits the group's runs among `members`, its bootstrap
/// replicates, and what it leaves free (`at_start`: the fit ended at a start).
fn group_fit(name: &str, law: CurveLaw, members: &[&Curve], replicates: Vec<CurveLaw>, at_start: bool) -> GroupFit {
    let group_curves: Vec<&Curve> = members.iter().copied().filter(|c| c.group == name).collect();
    let residuals: Vec<f64> = group_curves
        .iter()
        .flat_map(|c| {
            let steps: Vec<u64> = c.evals.iter().filter(|e| e.0 as usize > c.warmup_steps()).map(|e| e.0).collect();
            let predicted = law.predict(&c.lr, &steps);
            c.evals.iter().filter(|e| e.0 as usize > c.warmup_steps()).zip(predicted).map(|((_, l), p)| ((p - l) / l).abs()).collect::<Vec<_>>()
        })
        .collect();
    GroupFit {
        group: name.to_string(),
        n: group_curves.iter().find_map(|c| c.n),
        runs: group_curves.iter().map(|c| c.run.clone()).collect(),
        points: residuals.len(),
        params: law.named().into_iter().map(|(k, _, v)| (k.to_string(), v)).collect(),
        fit_median_relative_error: median(&residuals).unwrap_or(f64::NAN),
        fit_max_relative_error: residuals.iter().copied().fold(0.0, f64::max),
        bootstrap: replicates.len(),
        not_identified: not_identified(&law, &replicates, at_start),
        law,
        replicates,
        longest_run: group_curves.iter().map(|c| c.steps()).max().unwrap_or(0),
    }
}

/// Every evaluation step, and about 150 steps between, from the end of the warmup to the last.
fn drawn_steps(last: u64, warmup: usize, evals: &[(u64, f64)]) -> Vec<u64> {
    let stride = (last / 150).max(1);
    let after_warmup = |s: &u64| *s as usize > warmup;
    let mut steps: Vec<u64> = (1..=last).filter(|s| s % stride == 0).chain(evals.iter().map(|e| e.0)).chain([last]).filter(after_warmup).collect();
    steps.sort_unstable();
    steps.dedup();
    steps
}

fn curve_points(law: &CurveLaw, lr: &[f64], tokens_per_step: Option<f64>, evals: &[(u64, f64)]) -> Vec<CurvePoint> {
    let steps = drawn_steps(lr.len() as u64, super::data::warmup_steps(lr), evals);
    let predicted = law.predict(lr, &steps);
    steps
        .iter()
        .zip(predicted)
        .map(|(&step, predicted)| CurvePoint {
            step,
            tokens: step as f64 * tokens_per_step.unwrap_or(1.0),
            lr: lr[step as usize - 1],
            predicted,
            actual: evals.iter().find(|e| e.0 == step).map(|e| e.1),
        })
        .collect()
}

/// Run `c`'s final loss by its group's law and by the baseline, against its own, and its curve.
fn predict_run(c: &Curve, g: &GroupFit, baselines: &Baselines, held_out: bool) -> RunPrediction {
    let predicted_final = g.law.predict_final(&c.lr);
    let actual_final = c.final_loss();
    let baseline_final = baselines.predict(c);
    let rel = |p: f64| actual_final.map(|a| (p - a) / a);
    RunPrediction {
        run: c.run.clone(),
        group: c.group.clone(),
        held_out,
        family: ScheduleFamily::of_rates(&c.lr),
        predicted_final,
        actual_final,
        relative_error: rel(predicted_final),
        baseline_final,
        baseline_relative_error: baseline_final.and_then(rel),
        curve: curve_points(&g.law, &c.lr, c.tokens_per_step, &c.evals),
    }
}

/// A schedule not run, in `g`'s frame: its final loss and curve, with its interval (withheld, with
/// a note, past [`FITTED_REACH`]).
fn predict_schedule(request: &ScheduleRequest, g: &GroupFit, frame: &GroupFrame, notes: &mut Vec<String>) -> Result<SchedulePrediction, String> {
    let lr = request.rates(frame)?;
    let predicted_final = g.law.predict_final(&lr);
    let extrapolation = extrapolated(&request.text, lr.len() as u64, g, true);
    let withheld = extrapolation.is_some();
    notes.extend(extrapolation);
    let samples: Vec<f64> = if withheld { Vec::new() } else { g.replicates.iter().map(|l| l.predict_final(&lr)).collect() };
    Ok(SchedulePrediction {
        schedule: request.text.clone(),
        group: g.group.clone(),
        family: ScheduleFamily::of_rates(&lr),
        steps: lr.len() as u64,
        predicted_final,
        interval: (samples.len() >= REFITS_FOR_AN_INTERVAL).then(|| Interval::from_samples(predicted_final, &samples, 0.95)),
        curve: curve_points(&g.law, &lr, frame.tokens_per_step, &[]),
    })
}

/// The best decay shape and length for runs of `tokens` by `g`'s law, and its gain over the sweep's
/// own decay (its interval withheld, with a note, past [`FITTED_REACH`]).
fn optimize_decay(
    tokens: f64,
    g: &GroupFit,
    frame: &GroupFrame,
    reference: Option<(DecayShape, f64)>,
    notes: &mut Vec<String>,
) -> Result<DecayOptimum, String> {
    let length = |shape, fraction| ScheduleRequest::wsd(tokens, frame.tokens_per_step.is_none(), shape, fraction);
    let mut best_per_shape = Vec::new();
    let mut best: Option<(DecayShape, f64, f64)> = None;
    for shape in decay_shapes() {
        let mut shape_best: Option<(f64, f64)> = None;
        for fraction in decay_fractions() {
            let loss = g.law.predict_final(&length(shape, fraction).rates(frame)?);
            if shape_best.is_none_or(|b| loss < b.1) {
                shape_best = Some((fraction, loss));
            }
        }
        let (fraction, loss) = shape_best.ok_or("no decay fraction to try")?;
        best_per_shape.push((shape.to_string(), fraction, loss));
        if best.is_none_or(|b| loss < b.2) {
            best = Some((shape, fraction, loss));
        }
    }
    let (shape, fraction, loss) = best.ok_or("no decay shape to try")?;
    let best_lr = length(shape, fraction).rates(frame)?;
    let extrapolation = extrapolated(&format!("--optimize-decay at {} tokens", crate::format::si(tokens)), best_lr.len() as u64, g, reference.is_some());
    let withheld = extrapolation.is_some();
    notes.extend(extrapolation);
    let (reference, gain) = match reference {
        Some((ref_shape, ref_fraction)) => {
            let ref_lr = length(ref_shape, ref_fraction).rates(frame)?;
            let ref_loss = g.law.predict_final(&ref_lr);
            let replicates = if withheld { &[][..] } else { &g.replicates[..] };
            let gains: Vec<f64> = replicates.iter().map(|l| l.predict_final(&ref_lr) - l.predict_final(&best_lr)).collect();
            let gain = (gains.len() >= REFITS_FOR_AN_INTERVAL).then(|| Interval::from_samples(ref_loss - loss, &gains, 0.95));
            (Some((ref_shape.to_string(), ref_fraction, ref_loss)), gain)
        }
        None => (None, None),
    };
    Ok(DecayOptimum {
        group: g.group.clone(),
        tokens,
        best_per_shape,
        best_shape: shape.to_string(),
        best_fraction: fraction,
        best_final: loss,
        reference,
        gain,
    })
}

impl std::fmt::Display for CurveReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |x: f64| format!("{:+.2}%", 100.0 * x);
        writeln!(
            f,
            "{} law{}: {}",
            self.form,
            if self.joint { " (joint over sizes: L0, A, α per size; the decay response shared)" } else { "" },
            self.formula
        )?;
        for g in &self.groups {
            let params: Vec<String> = g.law.named().iter().map(|(_, s, v)| format!("{s} = {}", crate::format::sig(*v))).collect();
            writeln!(f, "\n{}: {} runs, {} evaluations; {}", g.group, g.runs.len(), g.points, params.join(", "))?;
            writeln!(
                f,
                "  fit: median |error| {:.3}%, largest {:.3}%{}",
                100.0 * g.fit_median_relative_error,
                100.0 * g.fit_max_relative_error,
                if g.bootstrap > 0 { format!("; {} bootstrap refits over runs", g.bootstrap) } else { String::new() }
            )?;
            // Parameters with the same reason share it: "α, C, β, γ: the fit ended at …".
            let mut free: Vec<(Vec<&str>, &str)> = Vec::new();
            for p in &g.not_identified {
                match free.last_mut().filter(|(_, why)| *why == p.why) {
                    Some((symbols, _)) => symbols.push(p.symbol),
                    None => free.push((vec![p.symbol], &p.why)),
                }
            }
            if !free.is_empty() {
                let free: Vec<String> = free.iter().map(|(symbols, why)| format!("{}: {why}", symbols.join(", "))).collect();
                writeln!(f, "  not identified: {}", free.join("; "))?;
            }
        }
        if !self.runs.is_empty() {
            let held_out = self.runs.iter().any(|r| r.held_out);
            writeln!(f, "\n{} final losses:", if held_out { "predicted (held out)" } else { "fitted" })?;
            writeln!(f, "  {:<44} {:>9} {:>9} {:>9}   {:>9} {:>9}", "run", "predicted", "actual", "error", "baseline", "error")?;
            for r in &self.runs {
                let actual = r.actual_final.map_or("running".to_string(), |a| format!("{a:.4}"));
                let err = r.relative_error.map_or(String::new(), pct);
                let base = r.baseline_final.map_or("-".to_string(), |b| format!("{b:.4}"));
                let base_err = r.baseline_relative_error.map_or(String::new(), pct);
                writeln!(f, "  {:<44} {:>9.4} {:>9} {:>9}   {:>9} {:>9}", r.run, r.predicted_final, actual, err, base, base_err)?;
            }
            if let (Some(m), Some(x)) = (self.median_relative_error, self.max_relative_error) {
                write!(f, "  median |error| {:.3}%, largest {:.3}%", 100.0 * m, 100.0 * x)?;
                match (self.baseline_median_relative_error, self.baseline_max_relative_error) {
                    (Some(bm), Some(bx)) => {
                        writeln!(f, "; baseline (trunk at the decay start − mean drop): median {:.3}%, largest {:.3}%", 100.0 * bm, 100.0 * bx)?
                    }
                    _ => writeln!(f)?,
                }
            }
        }
        if !self.schedules.is_empty() {
            let interval = if self.schedules.iter().any(|s| s.interval.is_some()) { " (95% interval: bootstrap over runs)" } else { "" };
            writeln!(f, "\nschedules not run{interval}:")?;
            for s in &self.schedules {
                let interval = s.interval.map_or(String::new(), |i| format!(" [{:.4}, {:.4}]", i.lower, i.upper));
                writeln!(f, "  {:<22} {:<56} {} steps: final loss {:.4}{interval}", s.group, s.schedule, s.steps, s.predicted_final)?;
            }
        }
        for d in &self.decay_optima {
            writeln!(f, "\nbest decay for {} at {} tokens:", d.group, crate::format::si(d.tokens))?;
            for (shape, fraction, loss) in &d.best_per_shape {
                writeln!(f, "  {shape:<12} over {:>3.0}% of the run: {loss:.4}", 100.0 * fraction)?;
            }
            write!(f, "  best: {} over {:.0}% ({:.4})", d.best_shape, 100.0 * d.best_fraction, d.best_final)?;
            match (&d.reference, &d.gain) {
                (Some((shape, fraction, loss)), gain) => {
                    let interval = gain.map_or(String::new(), |g| format!(" [{:.4}, {:.4}]", g.lower, g.upper));
                    writeln!(f, "; the sweep's {shape} over {:.0}%: {loss:.4}, so the best gains {:.4} nats{interval}", 100.0 * fraction, loss - d.best_final)?
                }
                (None, _) => writeln!(f)?,
            }
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        if let Some(chart) = &self.chart {
            writeln!(f, "\nchart: {}", chart.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn law(l0: f64, a: f64, phi: Vec<f64>) -> CurveLaw {
        CurveLaw { form: CurveFormKind::MultiPower, lr_ref: 0.02, l0, a, alpha: 0.5, k: 0.3, phi }
    }

    fn flagged(free: &[NotIdentified]) -> Vec<&str> {
        free.iter().map(|p| p.parameter.as_str()).collect()
    }

    /// As `fit law` marks them: parameters at their starting values, at the edge of their range,
    /// or left free by the bootstrap; and nothing for a law the data pin.
    #[test]
    fn parameters_the_fit_leaves_free_are_not_identified() {
        let inside = vec![(0.5f64).ln(), (0.6f64).ln(), 0.0];
        assert!(not_identified(&law(2.0, 1.0, inside.clone()), &[], false).is_empty());
        assert_eq!(flagged(&not_identified(&law(2.0, 1.0, inside.clone()), &[], true)), ["alpha", "c", "beta", "gamma"]);
        let ran_away = not_identified(&law(2.0, 1.0, vec![-29.0, 27.0, 0.0]), &[], false);
        assert_eq!(flagged(&ran_away), ["c", "beta"]);
        assert!(ran_away[0].why.starts_with("2.544e-13 is at the edge of its range"), "{ran_away:?}");
        let at_bound = not_identified(&law(2.0, 1.0, vec![0.0, 0.0, 6.0]), &[], false);
        assert_eq!(flagged(&at_bound), ["gamma"], "γ = 1.995, within 2% of its bound 2");
        // Refits that scatter A over six orders of magnitude, and agree on everything else.
        let refits: Vec<CurveLaw> = (0..REFITS_FOR_AN_INTERVAL).map(|i| law(2.0, 10f64.powi(i as i32 % 7 - 1), inside.clone())).collect();
        let free = not_identified(&law(2.0, 1.0, inside.clone()), &refits, false);
        assert_eq!(flagged(&free), ["a"]);
        assert!(free[0].why.starts_with("the bootstrap refits leave it free (± "), "{free:?}");
        // Too few refits to judge: nothing said.
        assert!(not_identified(&law(2.0, 1.0, inside), &refits[..REFITS_FOR_AN_INTERVAL - 1], false).is_empty());
    }
}
