//! `fit mixture` from runs to report: the objective, every form's cross-validated ρ and RMSE, the
//! chosen form (the best by cross-validation unless named), its optimum under the constraints with
//! a bootstrap interval, the best tried mixture, and across model sizes the rank agreement and
//! each size's optimum.

use rayon::prelude::*;
use serde::Serialize;

use super::cv::{folds, rmse, spearman};
use super::data::MixtureRuns;
use super::mixing_law::MixingLaw;
use super::model::{MixtureForm, ObjectiveModel, SetModel};
use super::optimum::{optimise, Bounds, ConstraintSpec};
use crate::fit::bootstrap::Interval;
use crate::fit::progress::{Progress, Reporter};
use crate::rng::Rng;

/// Below this rank correlation between sizes, a proxy's ranking may not carry to the target.
pub const SIZE_AGREEMENT: f64 = 0.9;

/// How `fit mixture` fits and chooses.
#[derive(Debug, Clone)]
pub struct MixtureOptions {
    /// The form to use [default: the best by cross-validation].
    pub form: Option<MixtureForm>,
    /// (evaluation set, weight) [default: every set, weighted equally].
    pub objective: Vec<(String, f64)>,
    pub constraints: ConstraintSpec,
    pub folds: usize,
    pub bootstrap: usize,
    /// Sampled candidate mixtures for the optimum.
    pub candidates: usize,
    pub seed: u64,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Default for MixtureOptions {
    fn default() -> Self {
        Self {
            form: None,
            objective: Vec::new(),
            constraints: ConstraintSpec { max_epochs: ConstraintSpec::DEFAULT_MAX_EPOCHS, ..Default::default() },
            folds: 5,
            bootstrap: 100,
            candidates: 20_000,
            seed: 0,
            progress: false,
        }
    }
}

/// One form's cross-validation.
#[derive(Debug, Clone, Serialize)]
pub struct FormScore {
    pub form: MixtureForm,
    /// Spearman's ρ between the held-out runs' objective and its prediction.
    pub spearman: Option<f64>,
    pub rmse: Option<f64>,
    /// Why it was not cross-validated, when it was not.
    pub note: Option<String>,
}

/// One evaluation set's fitted model, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SetFit {
    pub set: String,
    /// Its weight in the objective.
    pub weight: f64,
    /// Linear: one coefficient per domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coefficients: Option<Vec<f64>>,
    /// Mixing law: c, k and t, with bootstrap intervals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub law: Option<MixingLaw>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub law_intervals: Option<LawIntervals>,
    /// Trees: how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trees: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LawIntervals {
    pub c: Interval,
    pub k: Interval,
    pub t: Vec<Interval>,
}

/// A mixture with its (predicted or actual) objective.
#[derive(Debug, Clone, Serialize)]
pub struct Mixture {
    pub weights: Vec<f64>,
    pub predicted: f64,
}

/// The best of the runs themselves.
#[derive(Debug, Clone, Serialize)]
pub struct BestTried {
    pub key: String,
    pub weights: Vec<f64>,
    pub actual: f64,
    pub predicted: f64,
}

/// One model size's runs.
#[derive(Debug, Clone, Serialize)]
pub struct SizeResult {
    pub non_embedding_params: f64,
    /// The runs' training tokens (a decay sweep's branch point), when the table has them.
    pub tokens: Option<f64>,
    pub runs: usize,
    /// This size's optimum by the chosen form, when it has enough runs.
    pub optimum: Option<Mixture>,
    pub best_tried: BestTried,
}

/// The rank agreement of two sizes on the mixtures both ran.
#[derive(Debug, Clone, Serialize)]
pub struct SizeAgreement {
    /// N of the smaller scale, and its tokens.
    pub smaller: f64,
    pub smaller_tokens: Option<f64>,
    /// N of the larger scale, and its tokens.
    pub larger: f64,
    pub larger_tokens: Option<f64>,
    pub mixtures: usize,
    pub spearman: f64,
}

/// What `fit mixture` prints and saves.
#[derive(Debug, Clone, Serialize)]
pub struct MixtureReport {
    pub source: String,
    pub runs: usize,
    pub left_out: usize,
    pub domains: Vec<String>,
    pub sets: Vec<String>,
    /// (set, weight).
    pub objective: Vec<(String, f64)>,
    /// With runs at several sizes: the size the model is fitted on (the largest).
    pub fitted_size: Option<f64>,
    /// With runs at several token counts (a decay sweep's branch points): the tokens of the runs
    /// the model is fitted on (the most).
    pub fitted_tokens: Option<f64>,
    pub folds: usize,
    pub forms: Vec<FormScore>,
    pub form: MixtureForm,
    /// "cross-validation" or "--form".
    pub chosen_by: String,
    pub fits: Vec<SetFit>,
    pub bounds: Bounds,
    pub optimum: Mixture,
    /// Bootstrap over runs of the optimum's predicted objective.
    pub interval: Option<Interval>,
    pub bootstrap: usize,
    pub best_tried: BestTried,
    pub sizes: Vec<SizeResult>,
    pub agreement: Vec<SizeAgreement>,
    pub warnings: Vec<String>,
    /// `--predict`: (key, weights, predicted objective).
    pub predictions: Vec<Prediction>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub key: String,
    /// As the table has them.
    pub weights: Vec<f64>,
    pub predicted: f64,
}

/// The objective's (set index, weight) pairs, and each run's actual objective.
type ObjectiveOfRuns = (Vec<(usize, f64)>, Vec<f64>);

/// The objective's (set index, weight) pairs and each run's actual objective.
fn objective_of(runs: &MixtureRuns, spec: &[(String, f64)]) -> anyhow::Result<ObjectiveOfRuns> {
    let pairs: Vec<(usize, f64)> = if spec.is_empty() {
        (0..runs.sets.len()).map(|s| (s, 1.0 / runs.sets.len() as f64)).collect()
    } else {
        spec.iter()
            .map(|(name, w)| {
                let s = runs.sets.iter().position(|x| x == name).ok_or_else(|| {
                    anyhow::anyhow!("--objective {name}: {} has no evaluation set `{name}`; its sets are: {}", runs.source.display(), runs.sets.join(", "))
                })?;
                anyhow::ensure!(w.is_finite() && *w > 0.0, "--objective {name}={w}: a set's weight is a positive number");
                Ok((s, *w))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let actual = (0..runs.weights.len()).map(|i| pairs.iter().map(|&(s, w)| w * runs.losses[s][i]).sum()).collect();
    Ok((pairs, actual))
}

/// The model of `form` on `runs`, one per objective set.
pub fn fit_model(form: MixtureForm, runs: &MixtureRuns, pairs: &[(usize, f64)], seed: u64) -> Option<ObjectiveModel> {
    let losses: Vec<Vec<f64>> = pairs.iter().map(|&(s, _)| runs.losses[s].clone()).collect();
    let weights: Vec<f64> = pairs.iter().map(|&(_, w)| w).collect();
    ObjectiveModel::fit(form, &runs.weights, &losses, &weights, seed)
}

/// k-fold cross-validation of `form`: Spearman's ρ and RMSE of the held-out predictions.
fn cross_validate(form: MixtureForm, runs: &MixtureRuns, pairs: &[(usize, f64)], actual: &[f64], k: usize, seed: u64, reporter: &Reporter) -> FormScore {
    let n = runs.weights.len();
    let fold = folds(n, k, seed);
    let smallest_train = n - fold.iter().filter(|&&f| f == 0).count();
    let need = form.min_runs(runs.domains.len());
    if smallest_train < need {
        let note = format!("not cross-validated: {k} folds leave {smallest_train} runs to fit on, and {form} needs {need}");
        return FormScore { form, spearman: None, rmse: None, note: Some(note) };
    }
    reporter.begin(format!("cross-validating {form}"), k);
    let held_out: Vec<Option<Vec<(usize, f64)>>> = (0..k)
        .into_par_iter()
        .map(|f| {
            let train: Vec<usize> = (0..n).filter(|&i| fold[i] != f).collect();
            let test: Vec<usize> = (0..n).filter(|&i| fold[i] == f).collect();
            let model = fit_model(form, &runs.subset(&train), pairs, seed)?;
            let predicted = model.predict_many(&test.iter().map(|&i| runs.weights[i].clone()).collect::<Vec<_>>());
            reporter.done_one();
            Some(test.into_iter().zip(predicted).collect())
        })
        .collect();
    let Some(held_out) = held_out.into_iter().collect::<Option<Vec<_>>>() else {
        return FormScore { form, spearman: None, rmse: None, note: Some("not cross-validated: a fold's fit failed".into()) };
    };
    let mut predicted = vec![f64::NAN; n];
    held_out.into_iter().flatten().for_each(|(i, p)| predicted[i] = p);
    FormScore { form, spearman: Some(spearman(actual, &predicted)), rmse: Some(rmse(actual, &predicted)), note: None }
}

/// The form to use: the one named (with enough runs), else the best cross-validated ρ (then RMSE).
fn choose(scores: &[FormScore], options: &MixtureOptions, runs: &MixtureRuns) -> anyhow::Result<(MixtureForm, String)> {
    let (n, d) = (runs.weights.len(), runs.domains.len());
    let needs = MixtureForm::ALL.iter().map(|f| format!("{f} {}", f.min_runs(d))).collect::<Vec<_>>().join(", ");
    if let Some(form) = options.form {
        anyhow::ensure!(
            n >= form.min_runs(d),
            "{}: {n} runs are fewer than {form} needs on {d} domains ({}: one more than its parameters per evaluation set); add runs, \
             or choose a form that needs fewer (runs needed: {needs})",
            runs.source.display(),
            form.min_runs(d)
        );
        return Ok((form, "--form".into()));
    }
    let rho = |s: &FormScore| s.spearman.filter(|r| r.is_finite()).unwrap_or(f64::NEG_INFINITY);
    let best = scores
        .iter()
        .filter(|s| s.spearman.is_some_and(f64::is_finite))
        .max_by(|a, b| rho(a).total_cmp(&rho(b)).then_with(|| b.rmse.unwrap_or(f64::INFINITY).total_cmp(&a.rmse.unwrap_or(f64::INFINITY))));
    match best {
        Some(s) => Ok((s.form, "cross-validation".into())),
        None => anyhow::bail!(
            "{}: {n} runs on {d} domains are too few to cross-validate any form with {} folds: each fold fits on the other folds' runs, \
             and the forms need at least {needs} runs; add runs, use fewer --folds, or name a form with --form",
            runs.source.display(),
            options.folds
        ),
    }
}

/// Fit, cross-validate, choose and optimise on `runs`.
pub fn fit_mixture(runs: &MixtureRuns, options: &MixtureOptions) -> anyhow::Result<(MixtureReport, ObjectiveModel)> {
    let reporter = Reporter::new("fit mixture", if options.progress { Progress::Lines } else { Progress::Quiet });
    let bounds = options.constraints.bounds(runs)?;
    let (all_pairs, _) = objective_of(runs, &options.objective)?;
    let (fitted, fitted_scale) = largest_scale(runs);
    let (fitted_size, fitted_tokens) = fitted_scale.map_or((None, None), |(n, d)| (Some(n), runs.tokens.as_ref().map(|_| d)));
    let (pairs, actual) = objective_of(&fitted, &options.objective)?;
    let k = options.folds.clamp(2, fitted.weights.len().max(2));
    let d = runs.domains.len();
    let scores: Vec<FormScore> = MixtureForm::ALL
        .iter()
        .map(|&f| {
            if fitted.weights.len() < f.min_runs(d) {
                return FormScore { form: f, spearman: None, rmse: None, note: Some(format!("needs {} runs", f.min_runs(d))) };
            }
            cross_validate(f, &fitted, &pairs, &actual, k, options.seed, &reporter)
        })
        .collect();
    let (form, chosen_by) = choose(&scores, options, &fitted)?;
    let model =
        fit_model(form, &fitted, &pairs, options.seed).ok_or_else(|| anyhow::anyhow!("{}: the {form} fit failed on every start", runs.source.display()))?;
    let (weights, predicted) = optimise(&model, &fitted.weights, &bounds, options.candidates, options.seed);
    let replicates = bootstrap(&model, &fitted, &pairs, options, &reporter);
    let samples: Vec<f64> = replicates.iter().map(|m| m.predict(&weights)).collect();
    let interval = (samples.len() >= 20).then(|| Interval::from_samples(predicted, &samples, 0.95));
    let fits = set_fits(&model, &replicates, &fitted, &pairs);
    let best_tried = best_tried(&fitted, &actual, &model);
    let (sizes, agreement) = across_sizes(runs, &all_pairs, form, &bounds, options)?;
    let mut report = MixtureReport {
        source: runs.source.display().to_string(),
        runs: fitted.weights.len(),
        left_out: runs.left_out,
        domains: runs.domains.clone(),
        sets: runs.sets.clone(),
        objective: pairs.iter().map(|&(s, w)| (runs.sets[s].clone(), w)).collect(),
        fitted_size,
        fitted_tokens,
        folds: k,
        forms: scores,
        form,
        chosen_by,
        fits,
        bounds,
        optimum: Mixture { weights, predicted },
        interval,
        bootstrap: options.bootstrap,
        best_tried,
        sizes,
        agreement,
        warnings: Vec::new(),
        predictions: Vec::new(),
    };
    report.warnings = warnings(&report, runs, &options.constraints);
    Ok((report, model))
}

/// The distinct scales (N, tokens) of the runs, smallest first.
fn distinct_scales(scales: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut distinct = scales.to_vec();
    distinct.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    distinct.dedup();
    distinct
}

/// With runs at several scales (sizes, or token counts such as a decay sweep's branch points),
/// the largest scale's runs (and that scale); else all of them.
fn largest_scale(runs: &MixtureRuns) -> (MixtureRuns, Option<(f64, f64)>) {
    let Some(scales) = runs.scales() else { return (runs.clone(), None) };
    let distinct = distinct_scales(&scales);
    let [.., largest] = distinct.as_slice() else { return (runs.clone(), None) };
    if distinct.len() < 2 {
        return (runs.clone(), None);
    }
    let rows: Vec<usize> = (0..scales.len()).filter(|&i| scales[i] == *largest).collect();
    (runs.subset(&rows), Some(*largest))
}

/// Refits of the model on resamples of the runs (those that succeeded).
fn bootstrap(model: &ObjectiveModel, runs: &MixtureRuns, pairs: &[(usize, f64)], options: &MixtureOptions, reporter: &Reporter) -> Vec<ObjectiveModel> {
    reporter.begin(format!("bootstrap of {}", model.form), options.bootstrap);
    let n = runs.weights.len();
    let losses: Vec<Vec<f64>> = pairs.iter().map(|&(s, _)| runs.losses[s].clone()).collect();
    let out = (0..options.bootstrap)
        .into_par_iter()
        .filter_map(|b| {
            let mut rng = Rng::derive(options.seed, &[0xB007, b as u64]);
            let rows: Vec<usize> = (0..n).map(|_| rng.below(n as u64) as usize).collect();
            let weights: Vec<Vec<f64>> = rows.iter().map(|&i| runs.weights[i].clone()).collect();
            let l: Vec<Vec<f64>> = losses.iter().map(|s| rows.iter().map(|&i| s[i]).collect()).collect();
            let refit = model.refit(&weights, &l, options.seed);
            reporter.done_one();
            refit
        })
        .collect();
    out
}

/// Each set's fitted model, with the mixing law's bootstrap intervals.
fn set_fits(model: &ObjectiveModel, replicates: &[ObjectiveModel], runs: &MixtureRuns, pairs: &[(usize, f64)]) -> Vec<SetFit> {
    model
        .sets
        .iter()
        .enumerate()
        .map(|(i, (w, m))| {
            let mut fit = SetFit { set: runs.sets[pairs[i].0].clone(), weight: *w, coefficients: None, law: None, law_intervals: None, trees: None };
            match m {
                SetModel::Linear(l) => fit.coefficients = Some(l.coefficients.clone()),
                SetModel::Trees(t) => fit.trees = Some(t.trees()),
                SetModel::MixingLaw(law) => {
                    let laws: Vec<&MixingLaw> =
                        replicates.iter().filter_map(|r| if let SetModel::MixingLaw(l) = &r.sets[i].1 { Some(l) } else { None }).collect();
                    let interval = |estimate: f64, get: &dyn Fn(&MixingLaw) -> f64| {
                        Interval::from_samples(estimate, &laws.iter().map(|l| get(l)).collect::<Vec<_>>(), 0.95)
                    };
                    if laws.len() >= 20 {
                        fit.law_intervals = Some(LawIntervals {
                            c: interval(law.c, &|l| l.c),
                            k: interval(law.k, &|l| l.k),
                            t: (0..law.t.len()).map(|j| interval(law.t[j], &|l| l.t[j])).collect(),
                        });
                    }
                    fit.law = Some(law.clone());
                }
            }
            fit
        })
        .collect()
}

fn best_tried(runs: &MixtureRuns, actual: &[f64], model: &ObjectiveModel) -> BestTried {
    let i = (0..actual.len()).min_by(|&a, &b| actual[a].total_cmp(&actual[b])).expect("at least one run");
    BestTried { key: runs.keys[i].clone(), weights: runs.weights[i].clone(), actual: actual[i], predicted: model.predict(&runs.weights[i]) }
}

/// Per size: its optimum and best run; between consecutive sizes: ρ of the objective on the
/// mixtures both ran (matched by key, else by weights).
fn across_sizes(
    runs: &MixtureRuns,
    pairs: &[(usize, f64)],
    form: MixtureForm,
    bounds: &Bounds,
    options: &MixtureOptions,
) -> anyhow::Result<(Vec<SizeResult>, Vec<SizeAgreement>)> {
    let Some(scales) = runs.scales() else { return Ok((Vec::new(), Vec::new())) };
    let distinct = distinct_scales(&scales);
    let tokens_of = |scale: (f64, f64)| runs.tokens.as_ref().map(|_| scale.1);
    if distinct.len() < 2 {
        return Ok((Vec::new(), Vec::new()));
    }
    let spec: Vec<(String, f64)> = pairs.iter().map(|&(s, w)| (runs.sets[s].clone(), w)).collect();
    let mut results = Vec::new();
    let mut by_mixture: Vec<std::collections::HashMap<String, f64>> = Vec::new();
    for &scale in &distinct {
        let rows: Vec<usize> = (0..scales.len()).filter(|&i| scales[i] == scale).collect();
        let sub = runs.subset(&rows);
        let (p, actual) = objective_of(&sub, &spec)?;
        let model = (sub.weights.len() >= form.min_runs(runs.domains.len())).then(|| fit_model(form, &sub, &p, options.seed)).flatten();
        let optimum = model.as_ref().map(|m| {
            let (weights, predicted) = optimise(m, &sub.weights, bounds, options.candidates, options.seed);
            Mixture { weights, predicted }
        });
        let i = (0..actual.len()).min_by(|&a, &b| actual[a].total_cmp(&actual[b])).expect("a size has a run");
        let best = BestTried {
            key: sub.keys[i].clone(),
            weights: sub.weights[i].clone(),
            actual: actual[i],
            predicted: model.as_ref().map_or(f64::NAN, |m| m.predict(&sub.weights[i])),
        };
        by_mixture.push((0..sub.weights.len()).map(|i| (mixture_id(&sub, i), actual[i])).collect());
        results.push(SizeResult { non_embedding_params: scale.0, tokens: tokens_of(scale), runs: sub.weights.len(), optimum, best_tried: best });
    }
    let agreement = distinct
        .windows(2)
        .zip(by_mixture.windows(2))
        .map(|(s, m)| {
            let common: Vec<(&f64, f64)> = m[0].iter().filter_map(|(k, a)| m[1].get(k).map(|b| (a, *b))).collect();
            let (a, b): (Vec<f64>, Vec<f64>) = common.iter().map(|(a, b)| (**a, *b)).unzip();
            SizeAgreement {
                smaller: s[0].0,
                smaller_tokens: tokens_of(s[0]),
                larger: s[1].0,
                larger_tokens: tokens_of(s[1]),
                mixtures: a.len(),
                spearman: spearman(&a, &b),
            }
        })
        .collect();
    Ok((results, agreement))
}

/// What names a mixture across sizes: its key, when the table names mixtures; else its weights.
fn mixture_id(runs: &MixtureRuns, i: usize) -> String {
    if runs.keys[i].starts_with("line ") {
        runs.weights[i].iter().map(|w| format!("{w:.6}")).collect::<Vec<_>>().join(",")
    } else {
        runs.keys[i].clone()
    }
}

/// `N = 1.000e6` or `N = 1.000e6, D = 8.192e4`.
pub fn scale_text(n: f64, tokens: Option<f64>) -> String {
    match tokens {
        Some(d) => format!("N = {n:.3e}, D = {d:.3e}"),
        None => format!("N = {n:.3e}"),
    }
}

/// Weak rank agreement between scales, and repetition beyond what any proxy saw.
fn warnings(report: &MixtureReport, runs: &MixtureRuns, constraints: &ConstraintSpec) -> Vec<String> {
    let mut out = Vec::new();
    for a in &report.agreement {
        if a.spearman.is_nan() || a.spearman < SIZE_AGREEMENT {
            out.push(format!(
                "the ranking of mixtures changes with scale: ρ = {:.3} between {} and {} over {} mixtures (below {SIZE_AGREEMENT}); \
                 a proxy's best mixture may not be the target's",
                a.spearman,
                scale_text(a.smaller, a.smaller_tokens),
                scale_text(a.larger, a.larger_tokens),
                a.mixtures
            ));
        }
    }
    let (Some(target), Some(tokens)) = (constraints.target_tokens, &runs.tokens) else { return out };
    for (name, &available) in &constraints.available {
        let Some(j) = runs.domains.iter().position(|d| d == name) else { continue };
        let chosen = report.optimum.weights[j] * target / available;
        let proxies = (0..runs.weights.len()).map(|i| runs.weights[i][j] * tokens[i] / available).fold(0.0, f64::max);
        if chosen > proxies && chosen > 1.0 {
            out.push(format!(
                "the chosen mixture repeats `{name}` {chosen:.2} times at {target:e} tokens, more than any proxy did ({proxies:.2}); \
                 repetition's effect grows with it, so the proxies did not measure this"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::mixture::optimum::candidates;

    /// Two evaluation sets, each helped most by its own domain: the even objective's optimum is
    /// inside the simplex.
    fn truth() -> [MixingLaw; 2] {
        [MixingLaw { c: 2.0, k: 1.0, t: vec![-1.5, 0.2, -0.3] }.centred(), MixingLaw { c: 1.5, k: 1.2, t: vec![0.3, -2.0, 0.1] }.centred()]
    }

    fn runs(noise: f64) -> MixtureRuns {
        let weights = candidates(&[], &Bounds::free(3), 47, 3);
        let mut rng = Rng::new(5);
        let losses = truth().iter().map(|law| weights.iter().map(|r| law.predict(r) * (noise * rng.normal()).exp()).collect()).collect();
        MixtureRuns {
            source: "synthetic".into(),
            domains: vec!["web".into(), "code".into(), "books".into()],
            sets: vec!["web".into(), "code".into()],
            keys: (0..weights.len()).map(|i| i.to_string()).collect(),
            weights,
            losses,
            sizes: None,
            tokens: None,
            left_out: 0,
        }
    }

    /// The true objective's minimum over a fine grid of the simplex.
    fn true_optimum() -> (Vec<f64>, f64) {
        let objective = |r: &[f64]| truth().iter().map(|l| 0.5 * l.predict(r)).sum::<f64>();
        let steps = 500;
        let mut best = (vec![], f64::INFINITY);
        for a in 0..=steps {
            for b in 0..=steps - a {
                let r = [a as f64 / steps as f64, b as f64 / steps as f64, (steps - a - b) as f64 / steps as f64];
                let v = objective(&r);
                if v < best.1 {
                    best = (r.to_vec(), v);
                }
            }
        }
        best
    }

    #[test]
    fn a_known_mixing_law_is_recovered_within_its_intervals_and_its_optimum_found() {
        let options = MixtureOptions { form: Some(MixtureForm::MixingLaw), bootstrap: 200, ..Default::default() };
        let (report, _) = fit_mixture(&runs(0.003), &options).unwrap();
        assert_eq!(report.objective, vec![("web".to_string(), 0.5), ("code".to_string(), 0.5)]);
        for (fit, law) in report.fits.iter().zip(truth()) {
            let i = fit.law_intervals.as_ref().unwrap();
            assert!(i.c.contains(law.c) && i.k.contains(law.k), "{}: c {:?} k {:?} vs {law:?}", fit.set, i.c, i.k);
            for (j, t) in law.t.iter().enumerate() {
                assert!(i.t[j].contains(*t), "{}: t{j} {:?} vs {t}", fit.set, i.t[j]);
            }
        }
        let (weights, value) = true_optimum();
        for (got, want) in report.optimum.weights.iter().zip(&weights) {
            assert!((got - want).abs() < 0.02, "optimum {:?} vs the true {weights:?}", report.optimum.weights);
        }
        let interval = report.interval.unwrap();
        assert!(interval.contains(value), "the true optimum's objective {value} outside {interval:?}");
        // The mixing law is the truth here: cross-validation ranks it first.
        let rho = |f: MixtureForm| report.forms.iter().find(|s| s.form == f).unwrap().spearman.unwrap();
        assert!(rho(MixtureForm::MixingLaw) > 0.99 && rho(MixtureForm::MixingLaw) > rho(MixtureForm::Trees), "{:?}", report.forms);
    }

    #[test]
    fn the_default_form_is_the_best_by_cross_validation_and_constraints_hold() {
        let mut options = MixtureOptions::default();
        options.constraints.max.insert("web".into(), 0.2);
        options.bootstrap = 0;
        let (report, _) = fit_mixture(&runs(0.003), &options).unwrap();
        assert_eq!(report.chosen_by, "cross-validation");
        let best = report.forms.iter().max_by(|a, b| a.spearman.unwrap().total_cmp(&b.spearman.unwrap())).unwrap();
        assert_eq!(report.form, best.form);
        assert!(report.optimum.weights[0] <= 0.2 + 1e-9, "{:?}", report.optimum.weights);
        assert!((report.optimum.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
