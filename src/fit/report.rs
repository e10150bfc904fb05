//! `windtunnel fit law`: read points, fit the data-model law, bootstrap it, derive the
//! compute-optimal allocation at the budgets asked for, check it on held-out points, and report.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::bootstrap::{prediction_interval, resample_fits, Interval};
pub use super::definition::{Holdout, LawDefinition};
use super::filter::Filter;
use super::form::Form;
use super::input::{points, Points};
use super::law::{fit, FitSpec, Law, LawFit, Point};
use super::observation::Observations;
use crate::format::si;

#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub flops: f64,
    pub n_opt: f64,
    pub d_opt: f64,
    pub tokens_per_param: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_opt_interval: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_opt_interval: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_param_interval: Option<Interval>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BootstrapSummary {
    pub samples: usize,
    pub succeeded: usize,
    pub seed: u64,
    pub level: f64,
    pub full_grid: bool,
    /// Each parameter of the law, by its key ("alpha").
    #[serde(flatten)]
    pub parameters: std::collections::BTreeMap<String, Interval>,
    /// N_opt ∝ C^a.
    pub n_exponent: Interval,
    /// D_opt ∝ C^b.
    pub d_exponent: Interval,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeldOutPoint {
    pub n: f64,
    pub d: f64,
    pub loss: f64,
    pub predicted: f64,
    pub relative_error: f64,
    /// The prediction interval (with `--bootstrap`), and whether the loss fell inside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HoldoutReport {
    pub holdout: Holdout,
    pub fitted_points: usize,
    pub law: Law,
    pub points: Vec<HeldOutPoint>,
    pub mean_abs_relative_error: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LawReport {
    pub input: PathBuf,
    /// What was fitted and how: rerunning `fit_law` on it reproduces this report.
    pub definition: LawDefinition,
    pub points: usize,
    pub excluded_not_done: usize,
    pub dropped_highest: usize,
    pub fit: LawFit,
    /// N_opt ∝ C^a (Chinchilla: a = β/(α+β)).
    pub n_exponent: f64,
    /// D_opt ∝ C^b (Chinchilla: b = α/(α+β)).
    pub d_exponent: f64,
    /// N_opt at C/6 = 1: N_opt = G·(C/6)^a.
    pub g: f64,
    pub residual_rms: f64,
    /// Whether the fitted parameters are in a plausible range ([`crate::fit::form::LawForm::is_plausible`]); when
    /// false the points did not constrain the law and `export` refuses it.
    pub plausible: bool,
    pub budgets: Vec<Budget>,
    pub predictions: Vec<Prediction>,
    pub bootstrap: Option<BootstrapSummary>,
    pub holdout: Option<HoldoutReport>,
    /// `--predict-where`: the rows left out of the fit, predicted by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted: Option<PredictedSet>,
    /// `--form A,B,…`: every form fitted to the same points, the reported one first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comparison: Vec<FormFit>,
    /// `--rollout`: each step fits the smallest sizes and predicts the next one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollout: Vec<RolloutStep>,
    pub seconds: f64,
    /// When a sweep's outputs fitted a definition `fit law` saved that is not the default: which
    /// command saved it and when (`results::saved::SavedFitNote`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_fit: Option<String>,
    /// The fitted points (for plots; the table holds them).
    #[serde(skip)]
    pub data: Vec<Point>,
    /// Every bootstrap refit (for plots' bands; the intervals above summarise them).
    #[serde(skip)]
    pub bootstrap_laws: Vec<Law>,
}

/// The loss the law predicts at (N, D).
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub n: f64,
    pub d: f64,
    pub loss: f64,
    /// Where the law itself lies (bootstrap of the fit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// Where one new run's loss lies: the law's uncertainty and the runs' scatter about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_interval: Option<Interval>,
}

/// Run a fit definition on the observations read from `def.input`: the rows its filters keep,
/// the law fitted to them, and everything the definition asks of the law.
pub fn fit_law_on(def: &LawDefinition, table: &Observations) -> anyhow::Result<LawReport> {
    check_definition(def)?;
    let columns = def.columns();
    let parse = |flag: &str, e: &Option<String>| e.as_deref().map(|e| Filter::parse_flag(flag, e)).transpose();
    let (include, predict_set) = (parse("--where", &def.where_)?, parse("--predict-where", &def.predict_where)?);
    let included = include.as_ref().map(|f| f.rows(table)).transpose()?.unwrap_or_else(|| vec![true; table.rows.len()]);
    let to_predict = predict_set.as_ref().map(|f| f.rows(table)).transpose()?.unwrap_or_else(|| vec![false; table.rows.len()]);
    let fitted: Vec<bool> = included.iter().zip(&to_predict).map(|(&i, &p)| i && !p).collect();
    let read = points(table, &columns, def.drop_highest, Some(&fitted))?;
    let predicted = match &predict_set {
        Some(filter) => {
            let set = points(table, &columns, 0, Some(&to_predict))?.points;
            anyhow::ensure!(!set.is_empty(), "--predict-where `{}` keeps no finished row of {}", filter.expression, table.source.display());
            Some((filter.expression.clone(), set))
        }
        None => None,
    };
    fit_law_to(def, &table.source, read, predicted)
}

/// Run a fit definition on points computed rather than read (each curve's final point, the
/// decays a curve law predicts); `source` names where they came from.
pub fn fit_law_to_points(def: &LawDefinition, source: &Path, points: Vec<Point>) -> anyhow::Result<LawReport> {
    check_definition(def)?;
    fit_law_to(def, source, Points::of(source, points)?, None)
}

/// The settings a definition must have before anything is read.
fn check_definition(def: &LawDefinition) -> anyhow::Result<()> {
    anyhow::ensure!(def.delta > 0.0, "delta must be positive (got {})", def.delta);
    anyhow::ensure!(def.level > 0.0 && def.level < 1.0, "level must be in (0, 1)");
    anyhow::ensure!(
        def.bootstrap <= LawDefinition::MAX_BOOTSTRAP,
        "bootstrap {}: at most {} resamples (a 95% interval settles within a few thousand; 1000 is plenty)",
        def.bootstrap,
        LawDefinition::MAX_BOOTSTRAP
    );
    for &c in &def.budgets {
        anyhow::ensure!(c.is_finite() && c > 0.0, "budgets must be positive FLOP counts (got {c})");
    }
    Ok(())
}

/// Whether `points` can identify the law: more points than free parameters, over 2 or more
/// model sizes and token counts.
fn check_identifiable(def: &LawDefinition, source: &Path, points: &[Point]) -> anyhow::Result<()> {
    let parameters = def.form.law_form().parameters().len() - def.fix.len().min(def.form.law_form().parameters().len());
    anyhow::ensure!(
        points.len() > parameters,
        "{}: {} usable points; the law has {parameters} parameters and needs at least {} (more, over several N and D, to mean anything)",
        source.display(),
        points.len(),
        parameters + 1
    );
    let (sizes, token_counts) = (super::distinct_count(points.iter().map(|p| p.n)), super::distinct_count(points.iter().map(|p| p.d)));
    anyhow::ensure!(
        sizes >= 2 && token_counts >= 2,
        "{}: the points span {sizes} model size(s) and {token_counts} token count(s); the law needs at least 2 of each \
         (a WSD data-model grid gives several of both)",
        source.display()
    );
    Ok(())
}

/// The law fitted to `read`'s points, its bootstrap, and every check and answer `def` asks for;
/// `predicted`: the `--predict-where` expression and the points it left out of the fit.
fn fit_law_to(def: &LawDefinition, source: &Path, read: Points, predicted: Option<(String, Vec<Point>)>) -> anyhow::Result<LawReport> {
    let started = std::time::Instant::now();
    let pts = read.points;
    check_identifiable(def, source, &pts)?;
    let spec = FitSpec::new(def.form, &def.fix)?;
    let full = fit(spec.clone(), &pts, def.delta).context("no start of the fit converged to a finite law")?;
    let law = full.law.clone();
    let residual_rms = (full.log_residuals.iter().map(|r| r * r).sum::<f64>() / pts.len() as f64).sqrt();
    let bootstrap_laws = (def.bootstrap > 0).then(|| resample_fits(&spec, &pts, &law, def.delta, def.bootstrap, def.seed, def.bootstrap_full_grid));
    let laws = bootstrap_laws.as_deref().unwrap_or_default();
    let intervals = Intervals { laws: bootstrap_laws.as_deref(), level: def.level };
    let holdout = def.holdout.map(|h| holdout_check(def, &pts, h)).transpose()?;
    let predicted = predicted.map(|(expression, set)| {
        let (points, mean_abs_relative_error) = predict_all(&full, laws, &set, def.level, def.seed);
        PredictedSet { expression, points, mean_abs_relative_error }
    });
    let rollout = if def.rollout { rollout(&spec, &pts, def.delta)? } else { Vec::new() };
    let comparison = compare_forms(def, &spec, &full, &pts, holdout.as_ref())?;
    Ok(LawReport {
        saved_fit: None,
        input: source.to_path_buf(),
        points: pts.len(),
        excluded_not_done: read.excluded_not_done,
        dropped_highest: read.dropped_highest,
        n_exponent: law.n_exponent(),
        d_exponent: law.d_exponent(),
        g: law.compute_optimal(6.0).0,
        residual_rms,
        plausible: law.is_plausible(),
        budgets: def.budgets.iter().map(|&c| intervals.budget(&law, c)).collect(),
        predictions: def.predict.iter().map(|&[n, d]| intervals.prediction(def, &full, n, d)).collect(),
        bootstrap: intervals.summary(def, &law),
        fit: full,
        holdout,
        predicted,
        comparison,
        rollout,
        seconds: started.elapsed().as_secs_f64(),
        definition: def.clone(),
        data: pts,
        bootstrap_laws: bootstrap_laws.unwrap_or_default(),
    })
}

/// The bootstrap refits (when there are any) and the level of the intervals taken over them.
struct Intervals<'a> {
    laws: Option<&'a [Law]>,
    level: f64,
}

impl Intervals<'_> {
    /// The interval of the quantity `f` of a law, whose estimate is `estimate`.
    fn of(&self, estimate: f64, f: &dyn Fn(&Law) -> f64) -> Option<Interval> {
        self.laws.map(|ls| Interval::from_samples(estimate, &ls.iter().map(f).collect::<Vec<_>>(), self.level))
    }

    /// The compute-optimal N, D and D/N at `flops`.
    fn budget(&self, law: &Law, flops: f64) -> Budget {
        let (n_opt, d_opt) = law.compute_optimal(flops);
        Budget {
            flops,
            n_opt,
            d_opt,
            tokens_per_param: d_opt / n_opt,
            n_opt_interval: self.of(n_opt, &|l| l.compute_optimal(flops).0),
            d_opt_interval: self.of(d_opt, &|l| l.compute_optimal(flops).1),
            tokens_per_param_interval: self.of(d_opt / n_opt, &|l| {
                let (n, d) = l.compute_optimal(flops);
                d / n
            }),
        }
    }

    /// The loss at (n, d), where the law lies and where one new run would.
    fn prediction(&self, def: &LawDefinition, full: &LawFit, n: f64, d: f64) -> Prediction {
        let loss = full.law.loss(n, d);
        Prediction {
            n,
            d,
            loss,
            interval: self.of(loss, &|l| l.loss(n, d)),
            prediction_interval: prediction_interval(loss, self.laws.unwrap_or_default(), &full.log_residuals, n, d, def.level, def.seed),
        }
    }

    /// Every parameter's and exponent's interval.
    fn summary(&self, def: &LawDefinition, law: &Law) -> Option<BootstrapSummary> {
        let laws = self.laws?;
        let interval = |estimate: f64, f: &dyn Fn(&Law) -> f64| self.of(estimate, f).expect("bootstrap laws");
        Some(BootstrapSummary {
            samples: def.bootstrap,
            succeeded: laws.len(),
            seed: def.seed,
            level: def.level,
            full_grid: def.bootstrap_full_grid,
            parameters: law.named().into_iter().map(|(key, _, v)| (key.to_string(), interval(v, &|l| l.get(key).unwrap_or(f64::NAN)))).collect(),
            n_exponent: interval(law.n_exponent(), &|l| l.n_exponent()),
            d_exponent: interval(law.d_exponent(), &|l| l.d_exponent()),
        })
    }
}

/// One form fitted to the points, for comparing forms.
#[derive(Debug, Clone, Serialize)]
pub struct FormFit {
    pub form: Form,
    /// Fitted (free) parameters.
    pub parameters: usize,
    pub objective: f64,
    pub residual_rms: f64,
    /// Akaike's criterion on the log residuals, n·ln(RSS/n) + 2k: lower is better; differences
    /// above ~10 are decisive.
    pub aic: f64,
    /// Mean |relative error| on the `--holdout` points, when there is a holdout.
    pub holdout_error: Option<f64>,
    pub law: Law,
}

impl FormFit {
    fn of(spec: &FitSpec, fit: &LawFit, holdout_error: Option<f64>) -> Self {
        let n = fit.log_residuals.len() as f64;
        let rss: f64 = fit.log_residuals.iter().map(|r| r * r).sum();
        let parameters = spec.form.law_form().parameters().len() - spec.fixed.len();
        Self {
            form: spec.form,
            parameters,
            objective: fit.objective,
            residual_rms: (rss / n).sqrt(),
            aic: n * (rss / n).max(f64::MIN_POSITIVE).ln() + 2.0 * parameters as f64,
            holdout_error,
            law: fit.law.clone(),
        }
    }
}

/// The reported fit and every `compare` form, fitted to the same points.
fn compare_forms(def: &LawDefinition, spec: &FitSpec, full: &LawFit, points: &[Point], holdout: Option<&HoldoutReport>) -> anyhow::Result<Vec<FormFit>> {
    if def.compare.is_empty() {
        return Ok(Vec::new());
    }
    let mut fits = vec![FormFit::of(spec, full, holdout.map(|h| h.mean_abs_relative_error))];
    for &form in &def.compare {
        let other = FitSpec::from(form);
        let fitted = fit(other.clone(), points, def.delta).with_context(|| format!("the {} form did not converge on these points", form.law_form().name()))?;
        let held = def.holdout.map(|h| holdout_check(&LawDefinition { form, fix: Default::default(), bootstrap: 0, ..def.clone() }, points, h)).transpose()?;
        fits.push(FormFit::of(&other, &fitted, held.map(|h| h.mean_abs_relative_error)));
    }
    Ok(fits)
}

/// The rows `--predict-where` chose, predicted by the law fitted without them.
#[derive(Debug, Clone, Serialize)]
pub struct PredictedSet {
    pub expression: String,
    pub points: Vec<HeldOutPoint>,
    pub mean_abs_relative_error: f64,
}

/// One step of a rollout: fitted on every point of the `fitted_sizes` smallest N, predicting
/// every point of the next N.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutStep {
    pub fitted_sizes: usize,
    pub fitted_points: usize,
    /// The N predicted.
    pub predicted_n: f64,
    pub points: Vec<HeldOutPoint>,
    pub mean_abs_relative_error: f64,
}

/// OLMo's validation of a ladder: for k = 2, 3, …, fit the k smallest model sizes and predict
/// the next. Steps with too few points for the form's parameters are skipped.
pub fn rollout(spec: &FitSpec, points: &[Point], delta: f64) -> anyhow::Result<Vec<RolloutStep>> {
    let mut sizes: Vec<f64> = points.iter().map(|p| p.n).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    anyhow::ensure!(sizes.len() >= 3, "--rollout needs at least 3 model sizes (it fits 2 and predicts the third); the points have {}", sizes.len());
    let parameters = spec.form.law_form().parameters().len() - spec.fixed.len();
    let mut steps = Vec::new();
    for k in 2..sizes.len() {
        let train: Vec<Point> = points.iter().copied().filter(|p| p.n <= sizes[k - 1]).collect();
        if train.len() <= parameters {
            continue;
        }
        let fitted = fit(spec.clone(), &train, delta).with_context(|| format!("the rollout fit on the {k} smallest sizes did not converge"))?;
        let next: Vec<Point> = points.iter().copied().filter(|p| p.n == sizes[k]).collect();
        let (held, mean_abs_relative_error) = predict_all(&fitted, &[], &next, 0.95, 0);
        steps.push(RolloutStep { fitted_sizes: k, fitted_points: train.len(), predicted_n: sizes[k], points: held, mean_abs_relative_error });
    }
    anyhow::ensure!(!steps.is_empty(), "--rollout: no step has more points than the law's {parameters} parameters; add token counts per size");
    Ok(steps)
}

/// `fit`'s predictions of `points`, each with its prediction interval when `laws` (the fit's
/// bootstrap) has enough laws, and their mean |relative error|.
fn predict_all(fit: &LawFit, laws: &[Law], points: &[Point], level: f64, seed: u64) -> (Vec<HeldOutPoint>, f64) {
    let predicted: Vec<HeldOutPoint> = points
        .iter()
        .map(|p| {
            let predicted = fit.law.loss(p.n, p.d);
            HeldOutPoint {
                n: p.n,
                d: p.d,
                loss: p.loss,
                predicted,
                relative_error: (predicted - p.loss) / p.loss,
                interval: prediction_interval(predicted, laws, &fit.log_residuals, p.n, p.d, level, seed),
            }
        })
        .collect();
    let mean_abs_relative_error = predicted.iter().map(|p| p.relative_error.abs()).sum::<f64>() / predicted.len().max(1) as f64;
    (predicted, mean_abs_relative_error)
}

impl std::fmt::Display for HeldOutPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "N {} D {}: loss {:.4}, predicted {:.4} ({:+.2}%)", si(self.n), si(self.d), self.loss, self.predicted, 100.0 * self.relative_error)?;
        if let Some(i) = &self.interval {
            write!(f, " [{:.4}, {:.4}]{}", i.lower, i.upper, if i.contains(self.loss) { "" } else { " outside" })?;
        }
        Ok(())
    }
}

/// Fit without the held-out points and predict them: the honest test of a scaling law.
/// With a bootstrap in `def`, each predicted point gets a prediction interval from the held-out
/// fit's own bootstrap.
pub fn holdout_check(def: &LawDefinition, points: &[Point], holdout: Holdout) -> anyhow::Result<HoldoutReport> {
    let (spec, delta) = (FitSpec::new(def.form, &def.fix)?, def.delta);
    let held = |p: &Point| match holdout {
        Holdout::Largest => {
            let max_n = points.iter().map(|p| p.n).fold(0.0, f64::max);
            p.n >= max_n * (1.0 - 1e-9)
        }
        Holdout::LargestBudget => {
            let max_c = points.iter().map(|p| p.n * p.d).fold(0.0, f64::max);
            p.n * p.d >= 0.9 * max_c
        }
    };
    let (test, train): (Vec<Point>, Vec<Point>) = points.iter().partition(|p| held(p));
    anyhow::ensure!(train.len() >= 6, "--holdout leaves {} points to fit; at least 6 are needed", train.len());
    let held_fit = fit(spec.clone(), &train, delta).context("the held-out fit did not converge")?;
    let laws =
        if def.bootstrap > 0 { resample_fits(&spec, &train, &held_fit.law, delta, def.bootstrap, def.seed, def.bootstrap_full_grid) } else { Vec::new() };
    let (points, mean_abs_relative_error) = predict_all(&held_fit, &laws, &test, def.level, def.seed);
    Ok(HoldoutReport { holdout, fitted_points: train.len(), law: held_fit.law, points, mean_abs_relative_error })
}

/// The text of `fit law`: one section after another, each left out when it has nothing to say.
impl std::fmt::Display for LawReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.write_header(f)?;
        self.write_parameters(f)?;
        self.write_allocation(f)?;
        self.write_predictions(f)?;
        self.write_holdout(f)?;
        self.write_predicted_set(f)?;
        self.write_comparison(f)?;
        self.write_rollout(f)?;
        write!(f, "fitted in {:.2}s", self.seconds)
    }
}

impl LawReport {
    /// The law's formula and input; the points fitted and how the fit went.
    fn write_header(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "data-model law  {}   ({})", self.fit.law.form().law_form().formula(), self.input.display())?;
        write!(f, "  points {}", self.points)?;
        if self.dropped_highest > 0 {
            write!(f, " ({} highest-loss dropped)", self.dropped_highest)?;
        }
        if self.excluded_not_done > 0 {
            write!(f, " ({} runs not done left out)", self.excluded_not_done)?;
        }
        writeln!(
            f,
            "; Huber δ = {}, summed; {} L-BFGS starts, {} in the best basin; objective {:.6}; rms log residual {:.4}",
            self.fit.delta, self.fit.starts, self.fit.starts_in_best_basin, self.fit.objective, self.residual_rms
        )?;
        writeln!(f, "  definition: {}", self.definition.describe())?;
        if let Some(note) = &self.saved_fit {
            writeln!(f, "  {note}")?;
        }
        Ok(())
    }

    /// The parameters table: each parameter's estimate with its bootstrap interval, or `(fixed)`;
    /// and a warning when the estimates are not plausible.
    fn write_parameters(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(b) = &self.bootstrap {
            writeln!(
                f,
                "  {:<6} {:>12}   {:<12} {:.0}% interval ({} of {} bootstrap fits{})",
                "",
                "estimate",
                "± s.e.",
                b.level * 100.0,
                b.succeeded,
                b.samples,
                if b.full_grid { ", full grid each" } else { "" }
            )?;
        }
        for (key, symbol, value) in self.fit.law.named() {
            if self.definition.fix.contains_key(key) {
                writeln!(f, "  {symbol:<6} {}   (fixed)", parameter_number(value, 12))?;
            } else {
                parameter_row(f, symbol, value, self.bootstrap.as_ref().and_then(|b| b.parameters.get(key)))?;
            }
        }
        if !self.plausible {
            writeln!(
                f,
                "  warning: the law's parameters are outside any plausible range: the points do not constrain the law \
                 (it needs several model sizes, each at several token counts, well above the loss floor)"
            )?;
        }
        Ok(())
    }

    /// The compute-optimal allocation: its exponents (with their intervals), and N_opt, D_opt and
    /// D/N at each budget.
    fn write_allocation(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "compute-optimal (C = 6ND): N_opt = G·(C/6)^{0:.4}, D_opt = (C/6)^{1:.4}/G, with G = (αA/(βB))^(1/(α+β)) = {2:.4}",
            self.n_exponent, self.d_exponent, self.g
        )?;
        if let Some(b) = &self.bootstrap {
            writeln!(f, "  a in [{:.4}, {:.4}], b in [{:.4}, {:.4}]", b.n_exponent.lower, b.n_exponent.upper, b.d_exponent.lower, b.d_exponent.upper)?;
        }
        for c in &self.budgets {
            write!(f, "  C = {:.3e}: N_opt = {}, D_opt = {}, D/N = {:.1}", c.flops, si(c.n_opt), si(c.d_opt), c.tokens_per_param)?;
            if let Some(i) = &c.tokens_per_param_interval {
                write!(f, " [{:.1}, {:.1}]", i.lower, i.upper)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }

    /// The loss at each `--predict` point, with where the law lies and where a new run would.
    fn write_predictions(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.predictions {
            write!(f, "  predicted loss at N = {}, D = {}: {:.4}", si(p.n), si(p.d), p.loss)?;
            if let Some(i) = &p.interval {
                write!(f, "; the law in [{:.4}, {:.4}]", i.lower, i.upper)?;
            }
            if let Some(i) = &p.prediction_interval {
                write!(f, "; a new run in [{:.4}, {:.4}]", i.lower, i.upper)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }

    /// `--holdout`: the points left out, as the law fitted without them predicts them.
    fn write_holdout(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(h) = &self.holdout else { return Ok(()) };
        writeln!(
            f,
            "held out ({:?}): fitted on {} points, predicted {} with mean |relative error| {:.2}%",
            h.holdout,
            h.fitted_points,
            h.points.len(),
            100.0 * h.mean_abs_relative_error
        )?;
        h.points.iter().try_for_each(|p| writeln!(f, "  {p}"))
    }

    /// `--predict-where`: the rows left out of the fit, as it predicts them.
    fn write_predicted_set(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(s) = &self.predicted else { return Ok(()) };
        writeln!(f, "predicted where {}: {} points, mean |relative error| {:.2}%", s.expression, s.points.len(), 100.0 * s.mean_abs_relative_error)?;
        s.points.iter().try_for_each(|p| writeln!(f, "  {p}"))
    }

    /// `--form A,B,…`: every form on the same points, by AIC and held-out error.
    fn write_comparison(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.comparison.is_empty() {
            return Ok(());
        }
        let best = self.comparison.iter().map(|c| c.aic).fold(f64::INFINITY, f64::min);
        writeln!(f, "forms compared on the same {} points (lower AIC is better):", self.points)?;
        writeln!(f, "  {:<11} {:>6} {:>12} {:>10} {:>8} {:>10}", "form", "params", "rms log res.", "AIC", "ΔAIC", "held out")?;
        for c in &self.comparison {
            let held = c.holdout_error.map(|e| format!("{:.2}%", 100.0 * e)).unwrap_or_else(|| "–".into());
            writeln!(f, "  {:<11} {:>6} {:>12.4} {:>10.1} {:>8.1} {:>10}", c.form.law_form().name(), c.parameters, c.residual_rms, c.aic, c.aic - best, held)?;
        }
        Ok(())
    }

    /// `--rollout`: each step's fit on the smallest sizes and its error on the next size.
    fn write_rollout(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rollout.is_empty() {
            return Ok(());
        }
        writeln!(f, "rollout: fit the smallest sizes, predict the next")?;
        writeln!(f, "  {:>6} {:>7} {:>12} {:>18} {:>16}", "sizes", "points", "predicted N", "mean |rel. error|", "worst")?;
        for s in &self.rollout {
            let worst = s.points.iter().map(|p| p.relative_error).max_by(|a, b| a.abs().total_cmp(&b.abs())).unwrap_or(0.0);
            writeln!(
                f,
                "  {:>6} {:>7} {:>12} {:>17.2}% {:>+15.2}%",
                s.fitted_sizes,
                s.fitted_points,
                si(s.predicted_n),
                100.0 * s.mean_abs_relative_error,
                100.0 * worst
            )?;
        }
        Ok(())
    }
}

/// A number of the parameters table, `width` wide: scales like Kaplan's N_c ≈ 10^13 in scientific
/// notation, the rest as they are.
fn parameter_number(v: f64, width: usize) -> String {
    if v != 0.0 && !(1e-3..1e6).contains(&v.abs()) {
        format!("{v:>width$.4e}")
    } else {
        format!("{v:>width$.4}")
    }
}

/// One row of the parameters table: the estimate and, with a bootstrap, its standard error and
/// interval, or why it has none.
fn parameter_row(f: &mut std::fmt::Formatter<'_>, name: &str, v: f64, interval: Option<&Interval>) -> std::fmt::Result {
    let number = parameter_number;
    match interval {
        Some(i) if i.lower.is_nan() => writeln!(f, "  {name:<6} {}   (no bootstrap fit gave a finite value)", number(v, 12)),
        Some(i) if !i.is_identified() => {
            writeln!(
                f,
                "  {name:<6} {}   ± {:<10} [{}, {}]  not identified: these points leave it free",
                number(v, 12),
                "—",
                number(i.lower, 0),
                number(i.upper, 0)
            )
        }
        Some(i) => writeln!(f, "  {name:<6} {}   ± {:<10} [{}, {}]", number(v, 12), number(i.std_error, 0), number(i.lower, 0), number(i.upper, 0)),
        None => writeln!(f, "  {name:<6} {}", number(v, 12)),
    }
}
