//! `fit curve`: fit the curve law on some runs, predict the others and schedules never run, and
//! say how well it did, against a naive baseline ([`super::baseline`]: the trunk's loss where a
//! run's decay starts, less the fitted decays' mean drop).
//!
//! **Intervals** come from the bootstrap's refits: with fewer than 20 there are none (and a note
//! says so), and a prediction for a run more than [`FITTED_REACH`] times as long as the longest
//! run fitted has none either, with a note: that far out the law is extrapolated, and resampling
//! the runs it was fitted on says nothing of how it holds.

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
use crate::schedule::DecayShape;

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
    /// The runs fitted.
    pub runs: Vec<String>,
    pub points: usize,
    pub params: BTreeMap<String, f64>,
    /// Over the fitted evaluations: the median and largest |L̂ − L| / L.
    pub fit_median_relative_error: f64,
    pub fit_max_relative_error: f64,
    /// Bootstrap replicates that refitted.
    pub bootstrap: usize,
    #[serde(skip)]
    pub law: CurveLaw,
    #[serde(skip)]
    pub replicates: Vec<CurveLaw>,
    /// The steps of the longest run fitted.
    #[serde(skip)]
    pub longest_run: u64,
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
    let reporter = Reporter::new(options.progress);
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

/// The final loss and curve of each run `shown`, by its group's law; a note for a run with no law,
/// and for one past [`FITTED_REACH`].
fn predict_runs(
    shown: &[&Curve],
    fits: &[GroupFit],
    baselines: &Baselines,
    held_out: bool,
    notes: &mut Vec<String>,
    reporter: &Reporter,
) -> Vec<RunPrediction> {
    let mut runs = Vec::new();
    for c in shown {
        match fits.iter().find(|g| g.group == c.group) {
            Some(g) => {
                runs.push(predict_run(c, g, baselines, held_out));
                notes.extend(extrapolated(&c.run, c.steps(), g, false));
            }
            None => notes.push(format!("{}: no law for its group `{}` (none of its runs were fitted)", c.run, c.group)),
        }
        reporter.done_one();
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
    Some(set.iter().zip(laws).enumerate().map(|(g, (name, law))| group_fit(name, law, members, replicates.iter().map(|r| r[g].clone()).collect())).collect())
}

/// Group `name`'s fit: its law, how well it fits the group's runs among `members`, and its
/// bootstrap replicates.
fn group_fit(name: &str, law: CurveLaw, members: &[&Curve], replicates: Vec<CurveLaw>) -> GroupFit {
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
        runs: group_curves.iter().map(|c| c.run.clone()).collect(),
        points: residuals.len(),
        params: law.named().into_iter().map(|(k, _, v)| (k.to_string(), v)).collect(),
        fit_median_relative_error: median(&residuals).unwrap_or(f64::NAN),
        fit_max_relative_error: residuals.iter().copied().fold(0.0, f64::max),
        bootstrap: replicates.len(),
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
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        if let Some(chart) = &self.chart {
            writeln!(f, "\nchart: {}", chart.display())?;
        }
        Ok(())
    }
}
