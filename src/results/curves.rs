//! A sweep's runs as loss curves for the curve law ([`crate::fit::curve`]): each run's learning
//! rate at every step, rebuilt from its config exactly as the trainer computes it
//! (`lr · schedule.factor(tokens after the step, run tokens)`), and its evaluations. A branch
//! holds only the evaluations of its decay (those before belong to its trunk, which is a curve
//! of its own); its schedule runs from step 1, warmup and stable phase included, as trained.
//!
//! Runs are grouped by model size and peak learning rate (and batch size, where the sweep varies
//! it): one law per group, or one joint law over groups with `--joint`. Each run is named
//! `ID wWIDTH GRID/KIND@TOKENS` (a branch: `@` its branch point; a plain run: its schedule's kind
//! and its tokens), which is what `--fit-runs` and `--predict-runs` match.

use serde::Serialize;

use super::{RunCurve, SweepResults};
use crate::fit::bootstrap::Interval;
use crate::fit::curve::data::Curve;
use crate::fit::curve::fit::CurveLaw;
use crate::fit::curve::form::CurveFormKind;
use crate::fit::curve::report::{fit_curves, CurveOptions, CurveReport, GroupFit};
use crate::fit::law::{Law, Point};
use crate::fit::report::LawReport;
use crate::format::si;
use crate::schedule::{DecayShape, ScheduleSpec};
use crate::sweep::plan::{PlannedRun, RunKind};
use crate::train::log::RunState;

/// The learning rate of every step of a planned run, as its trainer sets it.
pub fn planned_rates(run: &PlannedRun) -> Vec<f64> {
    let c = &run.config;
    let tps = c.training.tokens_per_step();
    let total = c.training.steps() * tps;
    (1..=c.training.steps()).map(|k| c.optimizer.lr * c.schedule.factor(k * tps, total)).collect()
}

/// What `--fit-runs` and `--predict-runs` match: `ID wWIDTH GRID/KIND@TOKENS`.
pub fn run_name(run: &PlannedRun) -> String {
    let kind = match (run.kind, &run.config.schedule) {
        (RunKind::Plain, ScheduleSpec::Cosine { .. }) => "cosine".to_string(),
        (RunKind::Plain, ScheduleSpec::Wsd { .. }) => "wsd".to_string(),
        (RunKind::Plain, ScheduleSpec::Constant { .. }) => "constant".to_string(),
        (kind, _) => kind.to_string(),
    };
    format!("{} w{} {}/{kind}@{}", run.id, run.width, run.grid, run.from_tokens.unwrap_or(run.tokens))
}

impl SweepResults {
    /// Every run with an evaluation as a curve (see the module doc); runs not done are marked
    /// unfinished.
    pub fn loss_curves(&self) -> Vec<Curve> {
        self.loss_curves_with_trunks_to(None)
    }

    /// [`Self::loss_curves`], with every trunk's curve as if it had been trained to
    /// `trunk_tokens` only (its rates and evaluations after that left out): the same numbers a
    /// trunk stopped there gives, since a trunk's constant rate does not depend on its length.
    /// Branches that start later are left out: they would not exist.
    fn loss_curves_with_trunks_to(&self, trunk_tokens: Option<u64>) -> Vec<Curve> {
        let mut batches: Vec<u64> = self.runs.iter().map(|r| r.run.config.training.tokens_per_step()).collect();
        batches.sort_unstable();
        batches.dedup();
        self.runs
            .iter()
            .filter(|r| trunk_tokens.is_none_or(|t| r.run.from_tokens.is_none_or(|from| from <= t)))
            .filter_map(|r| {
                let mut curve = curve_of(r, batches.len() > 1)?;
                if let Some(tokens) = trunk_tokens.filter(|_| r.run.kind == RunKind::Trunk) {
                    let steps = tokens / r.run.config.training.tokens_per_step();
                    curve.lr.truncate(steps as usize);
                    curve.evals.retain(|e| e.0 <= steps);
                    (!curve.evals.is_empty()).then_some(curve)
                } else {
                    Some(curve)
                }
            })
            .collect()
    }
}

impl SweepResults {
    /// The decay the sweep's branches use (the first branch's): its shape, and the share of the
    /// branch's whole run it takes.
    pub fn branch_decay(&self) -> Option<(DecayShape, f64)> {
        self.runs.iter().find_map(|r| match r.run.config.schedule {
            ScheduleSpec::Wsd { decay, decay_tokens, .. } if r.run.kind == RunKind::Branch => Some((decay, decay_tokens as f64 / r.run.tokens as f64)),
            _ => None,
        })
    }
}

fn curve_of(r: &RunCurve, name_batch: bool) -> Option<Curve> {
    let tps = r.run.config.training.tokens_per_step();
    let from_step = r.run.from_tokens.map_or(0, |t| t.div_ceil(tps));
    let evals: Vec<(u64, f64)> =
        r.metrics.iter().filter(|m| m.step > from_step).filter_map(|m| m.eval_loss.filter(|l| l.is_finite()).map(|l| (m.step, l))).collect();
    if evals.is_empty() {
        return None;
    }
    let lr = r.run.config.optimizer.lr;
    let batch = if name_batch { format!(" batch={}", si(tps as f64)) } else { String::new() };
    Some(Curve {
        run: run_name(&r.run),
        group: format!("N={} lr={lr}{batch}", si(r.run.n as f64)),
        n: Some(r.run.n as f64),
        lr: planned_rates(&r.run),
        tokens_per_step: Some(tps as f64),
        evals,
        finished: r.state == Some(RunState::Done),
    })
}

/// `fit law --from-curves`: what the curve law is fitted on, and the budgets to report.
#[derive(Debug, Clone)]
pub struct FromCurvesOptions {
    /// The runs the curve law is fitted on [default: every finished trunk and branch].
    pub curve_runs: Option<regex::Regex>,
    pub form: CurveFormKind,
    pub joint: bool,
    pub bootstrap: usize,
    pub seed: u64,
    pub budgets: Vec<f64>,
    /// Use the trunks as if trained to this many tokens only: what shorter trunks would have given.
    pub trunk_tokens: Option<u64>,
}

/// D/N at one budget, from the law on predicted points and from the law on real branches.
#[derive(Debug, Clone, Serialize)]
pub struct RatioAtBudget {
    pub flops: f64,
    pub tokens_per_param: Interval,
    /// The same from `fit law` on the real branches, when it could be fitted.
    pub branches_tokens_per_param: Option<Interval>,
    /// Whether the curves' estimate lies in the branches' 95% interval.
    pub inside_branches_interval: Option<bool>,
}

/// The data-model law from trunks' curves (see [`SweepResults::law_from_curves`]).
#[derive(Debug, Clone, Serialize)]
pub struct FromCurvesReport {
    pub curve: CurveReport,
    /// The points the law was fitted to: each trunk evaluation's predicted decay.
    pub points: Vec<Point>,
    pub law: LawReport,
    pub budgets: Vec<RatioAtBudget>,
    /// The law on the real branches (`fit law`'s), for comparison.
    pub branches_law: Option<Law>,
    /// The definition the law on the real branches was fitted with (`fit law`'s flags given with
    /// `--from-curves`, 200 bootstrap resamples), in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branches_definition: Option<String>,
    /// Training FLOPs of the runs the curve law used, and of the trunks and the branches the law
    /// on branches used.
    pub flops: f64,
    pub branches_flops: f64,
    /// The tokens the trunks were taken to stop at (`--trunk-tokens`), when not their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trunk_tokens: Option<u64>,
}

impl SweepResults {
    /// `fit law --from-curves`: fit the curve law on the trunks and the runs `curve_runs` picks;
    /// predict, for every trunk evaluation from its first branch point on, the loss a decay from
    /// there would reach (the sweep's own decay: its shape, and its length as a share of the
    /// branch point); fit the data-model law to those points. Its interval carries the curve law's
    /// uncertainty and the law's own: each bootstrap replicate of the curve law gives its own
    /// points, resampled before its law is fitted.
    ///
    /// With `trunk_tokens`, the trunks count as trained that far only: their curves stop there,
    /// decays are predicted from their evaluations up to there, their FLOPs are counted up to
    /// there, and the curve law may use no branch that starts later.
    pub fn law_from_curves(&self, options: &FromCurvesOptions) -> anyhow::Result<FromCurvesReport> {
        self.refuse_late_branches(options)?;
        let curves = self.loss_curves_with_trunks_to(options.trunk_tokens);
        self.refuse_empty_fit(&curves, options)?;
        let curve = fit_curves(&curves, &options.curve_options())?;
        // The decays are the same for every law: build their schedules once, predict per law.
        let decays: Vec<Decay> =
            self.runs.iter().filter(|r| r.run.kind == RunKind::Trunk).flat_map(|trunk| self.decays_of(trunk, options.trunk_tokens)).collect();
        let points = predicted_points(&decays, &curve, &|g: &GroupFit| Some(&g.law));
        anyhow::ensure!(
            points.len() >= 6,
            "{}: {} predicted points from the trunks; the law needs trunks with branches and evaluations past their first branch point",
            self.dir.display(),
            points.len()
        );
        let mut def = crate::fit::report::LawDefinition::for_table(self.dir.clone());
        (def.n, def.tokens, def.loss, def.bootstrap, def.seed, def.budgets) =
            ("n".into(), Some("tokens".into()), "loss".into(), 0, options.seed, options.budgets.clone());
        let law = crate::fit::report::fit_law_to_points(&def, &self.dir, points.clone())?;
        let replicate_laws = replicate_laws(&def, &decays, &curve, &law.fit.law);
        let branches = self.law().as_ref().ok();
        let budgets = options.budgets.iter().map(|&c| ratio_at_budget(c, &law.fit.law, &replicate_laws, branches)).collect();
        let (flops, branches_flops) = self.flops_compared(&curve, options.trunk_tokens, branches);
        Ok(FromCurvesReport {
            curve,
            points,
            law,
            budgets,
            branches_law: branches.map(|b| b.fit.law.clone()),
            branches_definition: branches.map(|b| format!("{}; {} bootstrap resamples", b.definition.describe(), b.definition.bootstrap)),
            flops,
            branches_flops,
            trunk_tokens: options.trunk_tokens,
        })
    }

    /// With `--trunk-tokens`, a branch past the trunks' end asked for by name is an error (by
    /// default it is left out).
    fn refuse_late_branches(&self, options: &FromCurvesOptions) -> anyhow::Result<()> {
        let Some(t) = options.trunk_tokens else { return Ok(()) };
        let late = self
            .runs
            .iter()
            .find(|r| r.run.from_tokens.is_some_and(|from| from > t) && options.curve_runs.as_ref().is_some_and(|re| re.is_match(&run_name(&r.run))));
        if let Some(late) = late {
            anyhow::bail!(
                "--trunk-tokens {t}: the curve law would use {}, which branches at {} tokens, after the trunks stop; pick branches at or before {t} with --curve-runs",
                run_name(&late.run),
                late.run.from_tokens.unwrap_or(0)
            );
        }
        Ok(())
    }

    /// `--trunk-tokens` before every trunk's first evaluation, or `--curve-runs` matching no
    /// finished run: an error naming the option (the curve law's own would name `--fit-runs`).
    fn refuse_empty_fit(&self, curves: &[Curve], options: &FromCurvesOptions) -> anyhow::Result<()> {
        let trunks = self.runs.iter().filter(|r| r.run.kind == RunKind::Trunk);
        let first = trunks.filter_map(|r| r.eval_points().first().map(|p| p.0 as u64)).min();
        if let (Some(t), Some(first)) = (options.trunk_tokens, first) {
            anyhow::ensure!(
                t >= first,
                "--trunk-tokens {t}: the trunks' first evaluation is at {first} tokens, so trunks stopped at {t} would have none to fit; give at least {first}"
            );
        }
        if let Some(re) = &options.curve_runs {
            let names: Vec<&str> = curves.iter().map(|c| c.run.as_str()).collect();
            anyhow::ensure!(
                curves.iter().any(|c| c.finished && re.is_match(&c.run)),
                "--curve-runs `{re}` matches no finished run{}; the runs are:\n  {}",
                options.trunk_tokens.map_or(String::new(), |t| format!(" of the trunks stopped at {t} tokens")),
                names.join("\n  ")
            );
        }
        Ok(())
    }

    /// The training FLOPs of the runs the curve law used (a trunk's up to where it is taken to
    /// stop), and of the trunks and the branches of the grid the law on branches was fitted to.
    fn flops_compared(&self, curve: &CurveReport, trunk_tokens: Option<u64>, branches: Option<&LawReport>) -> (f64, f64) {
        let used: std::collections::HashSet<&str> = curve.groups.iter().flat_map(|g| g.runs.iter().map(String::as_str)).collect();
        // FLOPs per token are the same throughout a run.
        let own_flops = |r: &RunCurve| match trunk_tokens.filter(|_| r.run.kind == RunKind::Trunk) {
            Some(t) => r.run.own_flops * (t as f64 / r.run.tokens as f64).min(1.0),
            None => r.run.own_flops,
        };
        let flops = self.runs.iter().filter(|r| used.contains(run_name(&r.run).as_str())).map(own_flops).sum();
        let grid = branches.and_then(|b| b.definition.grid.clone());
        let counted = |r: &&RunCurve| r.run.kind == RunKind::Trunk || r.run.kind == RunKind::Branch && grid.as_ref().is_none_or(|g| *g == r.run.grid);
        let branches_flops = self.runs.iter().filter(|r| r.state == Some(RunState::Done)).filter(counted).map(|r| r.run.own_flops).sum();
        (flops, branches_flops)
    }

    /// A trunk's decays to predict: one per evaluation from its first branch point on (up to
    /// `trunk_tokens`, where given).
    fn decays_of(&self, trunk: &RunCurve, trunk_tokens: Option<u64>) -> Vec<Decay> {
        let branches: Vec<&RunCurve> = self.runs.iter().filter(|r| r.run.trunk.as_deref() == Some(&trunk.run.id)).collect();
        let (Some(template), Some(first)) = (branches.first(), branches.iter().filter_map(|b| b.run.from_tokens).min()) else {
            return Vec::new();
        };
        let Some(c) = curve_of(trunk, false) else { return Vec::new() };
        let tps = trunk.run.config.training.tokens_per_step();
        c.evals
            .iter()
            .filter(|(step, _)| step * tps >= first && trunk_tokens.is_none_or(|t| step * tps <= t))
            .filter_map(|&(step, _)| {
                let (tokens, lr) = decay_from(&template.run, step * tps)?;
                Some(Decay { group: c.group.clone(), n: trunk.run.n as f64, tokens: tokens as f64, lr })
            })
            .collect()
    }
}

/// A decay branched at one trunk evaluation: its group, N, tokens and step rates.
struct Decay {
    group: String,
    n: f64,
    tokens: f64,
    lr: Vec<f64>,
}

impl FromCurvesOptions {
    /// The curve law's own options: fitted on `curve_runs`, nothing predicted.
    fn curve_options(&self) -> CurveOptions {
        CurveOptions {
            form: self.form,
            joint: self.joint,
            fit_runs: self.curve_runs.clone(),
            predict_runs: None,
            bootstrap: self.bootstrap,
            seed: self.seed,
            schedules: Vec::new(),
            optimize_decay_tokens: None,
            reference_decay: None,
            progress: Default::default(),
        }
    }
}

/// The final loss of every decay, by the curve law `pick` takes from its group's fit.
fn predicted_points(decays: &[Decay], curve: &CurveReport, pick: &dyn Fn(&GroupFit) -> Option<&CurveLaw>) -> Vec<Point> {
    decays
        .iter()
        .filter_map(|d| {
            let law = curve.groups.iter().find(|g| g.group == d.group).and_then(pick)?;
            Some(Point { n: d.n, d: d.tokens, loss: law.predict_final(&d.lr) })
        })
        .collect()
}

/// The law's bootstrap over both sources of uncertainty: each replicate of the curve law (runs
/// resampled) predicts its own points, and those points are resampled in turn (the law's own
/// bootstrap, as on real branches) before the law is fitted to them from `law`'s optimum.
fn replicate_laws(def: &crate::fit::report::LawDefinition, decays: &[Decay], curve: &CurveReport, law: &Law) -> Vec<Law> {
    let theta = law.theta();
    (0..curve.groups.first().map_or(0, |g| g.replicates.len()))
        .filter_map(|b| {
            let pts = predicted_points(decays, curve, &|g: &GroupFit| g.replicates.get(b));
            let sample = crate::rng::Rng::derive(def.seed, &[0xF0C5, b as u64]).resample(&pts);
            crate::fit::law::minimise(def.form, &sample, def.delta, false, &theta, 1000).map(|(t, _, _)| Law::from_theta(def.form, &t))
        })
        .collect()
}

/// D/N at `flops` by the law on predicted points, with its interval over `replicates`, beside the
/// law on the real branches' (when it has a bootstrap).
fn ratio_at_budget(flops: f64, law: &Law, replicates: &[Law], branches: Option<&LawReport>) -> RatioAtBudget {
    let ratio = |l: &Law| {
        let (n, d) = l.compute_optimal(flops);
        d / n
    };
    let estimate = ratio(law);
    let tokens_per_param = Interval::from_samples(estimate, &replicates.iter().map(ratio).collect::<Vec<_>>(), 0.95);
    let branches_tokens_per_param = branches
        .filter(|b| b.bootstrap_laws.len() >= 20)
        .map(|b| Interval::from_samples(ratio(&b.fit.law), &b.bootstrap_laws.iter().map(ratio).collect::<Vec<_>>(), 0.95));
    RatioAtBudget { flops, tokens_per_param, inside_branches_interval: branches_tokens_per_param.map(|i| i.contains(estimate)), branches_tokens_per_param }
}

/// The learning rates of a branch like `template` (its decay's shape and its length as a share
/// of the branch point) branched at `point` tokens, as the plan would make it; with its tokens.
fn decay_from(template: &PlannedRun, point: u64) -> Option<(u64, Vec<f64>)> {
    let ScheduleSpec::Wsd { warmup_tokens, decay, decay_tokens, half_life_tokens, final_lr_fraction } = template.config.schedule else { return None };
    let tps = template.config.training.tokens_per_step();
    let fraction = decay_tokens as f64 / template.from_tokens? as f64;
    let new_decay = ((point as f64 * fraction).round() as u64).div_ceil(tps) * tps;
    let mut run = template.clone();
    run.config.training.tokens = point + new_decay;
    let half_life_tokens = half_life_tokens.map(|h| ((h as f64 * new_decay as f64 / decay_tokens as f64).round() as u64).max(1));
    run.config.schedule = ScheduleSpec::Wsd { warmup_tokens, decay, decay_tokens: new_decay, half_life_tokens, final_lr_fraction };
    Some((point + new_decay, planned_rates(&run)))
}

impl std::fmt::Display for FromCurvesReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runs: usize = self.curve.groups.iter().map(|g| g.runs.len()).sum();
        writeln!(
            f,
            "the data-model law from trunk curves: the {} curve law on {runs} runs predicts the decay from {} trunk evaluations",
            self.curve.form,
            self.points.len()
        )?;
        writeln!(f, "  law: {}", self.law.fit.law.summary())?;
        if let Some(b) = &self.branches_law {
            writeln!(f, "  on the real branches (fit law): {}", b.summary())?;
        }
        if let Some(d) = &self.branches_definition {
            writeln!(f, "    the real branches' law: {d}")?;
        }
        for b in &self.budgets {
            let i = &b.tokens_per_param;
            let interval = if i.lower.is_finite() {
                format!(" [{:.2}, {:.2}]", i.lower, i.upper)
            } else {
                " (no interval: --bootstrap N refits the curve law N times)".to_string()
            };
            write!(f, "  D/N at {:.1e} FLOPs: {:.2}{interval}", b.flops, i.estimate)?;
            match &b.branches_tokens_per_param {
                Some(r) => writeln!(
                    f,
                    "; on the real branches {:.2} [{:.2}, {:.2}]: {} its interval",
                    r.estimate,
                    r.lower,
                    r.upper,
                    if r.contains(i.estimate) { "inside" } else { "outside" }
                )?,
                None => writeln!(f)?,
            }
        }
        for note in &self.curve.notes {
            writeln!(f, "  note: {note}")?;
        }
        let trunks = self.trunk_tokens.map(|t| format!(" (the trunks to {} tokens)", si(t as f64))).unwrap_or_default();
        // The curve law may use more than the law on branches (cosine runs among its --curve-runs).
        let saving = 1.0 - self.flops / self.branches_flops;
        let change = if saving >= 0.0 { format!("{:.0}% fewer", 100.0 * saving) } else { format!("{:.0}% more", -100.0 * saving) };
        writeln!(
            f,
            "  training FLOPs: {:.3e} for the runs the curve law used{trunks}, {:.3e} for the trunks and the branches of the law on branches ({change})",
            self.flops, self.branches_flops
        )
    }
}
