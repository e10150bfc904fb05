//! The adaptive loop: a seed design, then rounds of fit → choose → run, until the target is known
//! well enough or the wind tunnel's own budget is spent.
//!
//! 1. **Seed design.** The law has p parameters (5 for Chinchilla's form), so the first round
//!    trains 2p runs spread as far apart as possible in (log N, log D) — a maximin design over the
//!    cheaper half of the candidates — so that every parameter is identified before any choice
//!    depends on the fit.
//! 2. **Round.** Fit the law to every run so far (the full start grid, as `fit law` does), refit
//!    it on bootstrap resamples, and summarise the target by its percentile interval. Stop when the
//!    interval's half-width is within `relative_interval` of the estimate (and stays so with five
//!    times the resamples: a stop is not a lucky draw of the bootstrap). Otherwise choose the
//!    next batch by the [`Strategy`] (those there are: [`super::strategy`]): `adaptive` by
//!    expected variance reduction of the target per FLOP ([`super::criterion`]); `random` and
//!    `cheapest` are the baselines any claim is measured against.
//! 3. **Budget.** A candidate is affordable while the FLOPs spent plus what it adds stay within
//!    `max_flops`; when none is, the loop ends.
//!
//! Every choice is a function of the observed losses and the seed (bootstrap resamples and the
//! random baseline draw from generators derived from it), so the same inputs make the same
//! choices; a recorded history ([`Settings::history`]) is followed as far as it goes, so a killed
//! adaptive sweep continues exactly where it stopped.

use serde::{Deserialize, Serialize};

use super::criterion::Pick;
use super::target::Target;
use crate::fit::bootstrap::{resample_fits, Interval};
use crate::fit::law::{fit, fit_from, FitSpec, Law, LawFit, Point};

/// How the next runs are chosen, each round after the seed design. One file each under
/// `adaptive/strategy/`, registered by one line in [`super::strategy::STRATEGIES`], whose names
/// `adapt --strategy` and `[adaptive] strategy` accept.
pub trait Strategy: Sync {
    /// Its name in flags, sweep files and reports ("adaptive").
    fn name(&self) -> &'static str;
    /// What it does, in a line of `--help`.
    fn help(&self) -> &'static str;
    /// At most `round.settings.batch` of the candidates [`Choosing::affordable`] prices, each
    /// priced as it was picked. The same inputs must make the same choices.
    fn choose(&self, round: &Choosing) -> Vec<Pick>;
}

/// A run the loop may choose: an id the lab knows it by, and its (N, D).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub id: String,
    pub n: f64,
    pub tokens: f64,
}

/// Where candidates are run: a table replayed ([`super::replay`]) or a sweep trained.
pub trait Lab {
    fn candidates(&self) -> &[Candidate];
    /// The FLOPs candidate `j` adds, given every run made so far and `batch` (chosen this round,
    /// not yet run): a branch of a trunk the batch already extends costs only its decay.
    fn cost(&self, j: usize, batch: &[usize]) -> f64;
    /// Run `batch` and return each run's final loss (`None`: it diverged or failed, and is not a
    /// point of the law). Runs already made are not made again.
    fn run(&mut self, round: usize, batch: &[usize]) -> anyhow::Result<Vec<Option<f64>>>;
}

/// What the loop is asked for (`adaptive::settings::AdaptiveSpec::settings` builds it from a sweep
/// file's `[adaptive]` block or `adapt`'s flags).
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: Target,
    pub strategy: &'static dyn Strategy,
    /// The wind tunnel's own budget, in FLOPs.
    pub max_flops: f64,
    /// Stop when the target's interval half-width is within this fraction of the estimate.
    pub relative_interval: Option<f64>,
    /// Runs chosen per round.
    pub batch: usize,
    pub bootstrap: usize,
    pub level: f64,
    pub seed: u64,
    pub spec: FitSpec,
    pub delta: f64,
    /// Rounds already decided (a resumed adaptive sweep): their choices are followed, not remade.
    pub history: Vec<Round>,
}

/// What the loop knows of a candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    NotRun,
    /// Run, but it diverged or failed: not a point of the law.
    Failed,
    /// Run, with this final loss.
    Loss(f64),
}

impl Observation {
    fn of(loss: Option<f64>) -> Self {
        loss.map_or(Self::Failed, Self::Loss)
    }

    fn loss(self) -> Option<f64> {
        match self {
            Self::Loss(loss) => Some(loss),
            Self::NotRun | Self::Failed => None,
        }
    }

    fn is_run(self) -> bool {
        !matches!(self, Self::NotRun)
    }
}

/// One chosen run, priced as it was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    pub id: String,
    pub n: f64,
    pub tokens: f64,
    pub cost_flops: f64,
    /// Expected reduction of the target's variance (log scale) per FLOP; none for the seed design
    /// and the baselines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// The target as one fit saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    /// (upper − lower) / (2·estimate).
    pub relative_half_width: f64,
    /// For an allocation target: N_opt and D_opt at the budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_opt: Option<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_opt: Option<Interval>,
    /// The target fitted to the cheaper and the costlier half of the runs (with 4p runs or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    pub law: Law,
}

/// How the law changes with the scale of the runs it is fitted to: the target fitted to the cheaper
/// and to the costlier half of the runs (where the law holds across scales the two agree), and how
/// far each half's law misses the other half's runs. Where the law does not hold across scales, a
/// run far from the target says less about it than the bootstrap believes (see
/// [`super::criterion`]'s model discrepancy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub cheaper_half: f64,
    pub costlier_half: f64,
    /// τ²: the model discrepancy, the variance of a run's log loss about the law beyond one run's
    /// scatter, per unit of distance in scale (|Δ ln N| + |Δ ln D|).
    #[serde(default)]
    pub discrepancy_per_log_distance: f64,
}

impl Estimate {
    /// The interval within ± `relative` of the estimate, and the costlier half of the runs agreeing
    /// with it to that precision: an answer that still drifts with the scale of the runs is not
    /// yet known, however narrow its bootstrap interval.
    pub fn is_precise(&self, relative: f64) -> bool {
        self.relative_half_width <= relative && self.drift.as_ref().is_none_or(|d| (d.costlier_half / self.estimate - 1.0).abs() <= relative)
    }
}

/// One round: the fit on the runs so far (none before the seed design), and the runs it chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub round: usize,
    /// FLOPs spent on the runs this round's fit used.
    pub flops_spent: f64,
    /// Runs (points of the law) this round's fit used.
    pub points: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<Estimate>,
    pub chosen: Vec<Chosen>,
    /// Why the loop ended here, on the last round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl Round {
    /// What the round decided: "next 2 run(s), 3.277e10 FLOPs", or "stopped: why".
    pub fn decision(&self) -> String {
        match &self.stopped {
            Some(why) => format!("stopped: {why}"),
            None => format!("next {} run(s), {:.3e} FLOPs", self.chosen.len(), self.chosen.iter().map(|c| c.cost_flops).sum::<f64>()),
        }
    }
}

/// The whole loop's record.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub rounds: Vec<Round>,
    pub flops_spent: f64,
    /// The last fit (none when even the seed design could not be fitted).
    pub last: Option<Estimate>,
}

/// One round's fit: the target's estimate, the bootstrap laws behind its interval (the
/// criterion's ensemble), and the fit's log residuals (the runs' scatter about the law).
pub struct Fitted {
    pub estimate: Estimate,
    pub laws: Vec<Law>,
    pub log_residuals: Vec<f64>,
}

/// Fit the law to `points` (from the full start grid, or `warm`: from the last optimum and a
/// lattice of the grid) and summarise the target with a bootstrap; `None` when the law cannot be
/// fitted.
pub fn estimate(settings: &Settings, points: &[Point], round: usize, warm: Option<&Law>) -> Option<Fitted> {
    let full = match warm {
        Some(previous) => warm_fit(settings, points, previous)?,
        None => fit(settings.spec.clone(), points, settings.delta)?,
    };
    let laws =
        resample_fits(&settings.spec, points, &full.law, settings.delta, settings.bootstrap, crate::rng::mix_seed(&[settings.seed, round as u64]), false);
    let value = settings.target.value(&full.law);
    let values: Vec<f64> = laws.iter().map(|l| settings.target.value(l)).collect();
    let interval = Interval::from_samples(value, &values, settings.level);
    let (n_opt, d_opt) = match settings.target {
        Target::Allocation { budget_flops } => {
            let (n, d) = full.law.compute_optimal(budget_flops);
            let ns: Vec<f64> = laws.iter().map(|l| l.compute_optimal(budget_flops).0).collect();
            let ds: Vec<f64> = laws.iter().map(|l| l.compute_optimal(budget_flops).1).collect();
            (Some(Interval::from_samples(n, &ns, settings.level)), Some(Interval::from_samples(d, &ds, settings.level)))
        }
        Target::Loss { .. } => (None, None),
    };
    let relative_half_width = (interval.upper - interval.lower) / (2.0 * value);
    let drift = scale_drift(settings, points, &full);
    let estimate = Estimate { estimate: value, lower: interval.lower, upper: interval.upper, relative_half_width, n_opt, d_opt, drift, law: full.law };
    Some(Fitted { estimate, laws, log_residuals: full.log_residuals })
}

/// The bootstrap behind an answer the loop stops on has this many times the rounds' resamples:
/// with 200, the interval's half-width moves by a few points of percent from one seed to another,
/// and a stop should not be a lucky draw.
const CONFIRMING_RESAMPLES: usize = 5;

/// The answer the loop stops on: the law fitted from the full start grid, and an interval from
/// [`CONFIRMING_RESAMPLES`] times the resamples.
fn confirm(settings: &Settings, points: &[Point], round: usize) -> Option<Fitted> {
    let confirming = Settings { bootstrap: settings.bootstrap * CONFIRMING_RESAMPLES, ..settings.clone() };
    estimate(&confirming, points, round, None)
}

/// Between rounds the optimum moves little: the last one and a lattice of 1 in 30 of the form's
/// starts find it for a thirtieth of the full grid's cost.
fn warm_fit(settings: &Settings, points: &[Point], previous: &Law) -> Option<crate::fit::law::LawFit> {
    let grid = settings.spec.form.law_form().start_grid();
    let starts: Vec<Vec<f64>> = std::iter::once(previous.theta()).chain(grid.into_iter().step_by(30)).collect();
    fit_from(settings.spec.clone(), points, settings.delta, &starts)
}

/// Whether the law depends on the scale of the runs it is fitted to: the law fitted to the cheaper
/// and to the costlier half of the points (by 6ND), each of at least 2p points, its target, and
/// the model discrepancy τ² measured from how far each half's law misses the other half's runs.
fn scale_drift(settings: &Settings, points: &[Point], full: &LawFit) -> Option<Drift> {
    let p = full.law.named().len();
    if points.len() < 4 * p {
        return None;
    }
    let mut order: Vec<usize> = (0..points.len()).collect();
    let scale = |i: usize| (6.0 * points[i].n * points[i].d).ln();
    order.sort_by(|&a, &b| scale(a).total_cmp(&scale(b)).then(a.cmp(&b)));
    let (lower, upper) = order.split_at(points.len() / 2);
    let half = |rows: &[usize]| -> Option<Law> {
        let subset: Vec<Point> = rows.iter().map(|&i| points[i]).collect();
        Some(warm_fit(settings, &subset, &full.law)?.law)
    };
    let (low, high) = (half(lower)?, half(upper)?);
    let sigma2 = noise_variance(&full.log_residuals, p);
    let mut misses = extrapolation_misses(points, upper, lower, &low);
    misses.extend(extrapolation_misses(points, lower, upper, &high));
    let tau2 = discrepancy(&misses, sigma2);
    let (cheaper_half, costlier_half) = (settings.target.value(&low), settings.target.value(&high));
    (tau2.is_finite() && cheaper_half.is_finite() && costlier_half.is_finite()).then_some(Drift {
        cheaper_half,
        costlier_half,
        discrepancy_per_log_distance: tau2,
    })
}

/// (squared log residual, distance from the fitted runs' centre) of each run in `rows` under the
/// law fitted to the runs in `fitted_rows`.
fn extrapolation_misses(points: &[Point], rows: &[usize], fitted_rows: &[usize], law: &Law) -> Vec<(f64, f64)> {
    let mean_ln = |f: fn(&Point) -> f64| fitted_rows.iter().map(|&i| f(&points[i]).ln()).sum::<f64>() / fitted_rows.len() as f64;
    let centre = (mean_ln(|p| p.n).exp(), mean_ln(|p| p.d).exp());
    rows.iter()
        .map(|&i| {
            let p = &points[i];
            ((p.loss.ln() - law.loss(p.n, p.d).ln()).powi(2), log_distance((p.n, p.d), centre))
        })
        .collect()
}

/// τ² in E[e²] = σ² + τ²·distance, by least squares over the extrapolated runs' squared misses
/// (σ² known), never negative.
fn discrepancy(misses: &[(f64, f64)], sigma2: f64) -> f64 {
    let (num, den) = misses.iter().fold((0.0, 0.0), |(num, den), &(e2, d)| (num + (e2 - sigma2) * d, den + d * d));
    if den > 0.0 {
        (num / den).max(0.0)
    } else {
        0.0
    }
}

/// How far apart two runs are in scale: |Δ ln N| + |Δ ln D|. Along a line of fixed D/N this is
/// their distance in log FLOPs; off it, a run is also as far as its shape (D/N) is from the other's.
pub(crate) fn log_distance((n1, d1): (f64, f64), (n2, d2): (f64, f64)) -> f64 {
    (n1.ln() - n2.ln()).abs() + (d1.ln() - d2.ln()).abs()
}

/// σ² of one run about the law: the residuals' mean square, widened for the parameters fitted,
/// never below (10⁻³)².
pub(crate) fn noise_variance(log_residuals: &[f64], parameters: usize) -> f64 {
    let n = log_residuals.len() as f64;
    let ss: f64 = log_residuals.iter().map(|r| r * r).sum();
    (ss / (n - parameters as f64).max(1.0)).max(1e-6)
}

/// Run the loop in `lab`.
pub fn run(lab: &mut dyn Lab, settings: &Settings, on_round: &mut dyn FnMut(&Round) -> anyhow::Result<()>) -> anyhow::Result<Outcome> {
    let candidates = lab.candidates().to_vec();
    let parameters = settings.spec.form.law_form().parameters().len() - settings.spec.fixed.len();
    let mut observed = vec![Observation::NotRun; candidates.len()];
    let mut spent = 0.0;
    let mut rounds: Vec<Round> = Vec::new();
    let mut last = None;
    for round in 0.. {
        let points: Vec<Point> =
            observed.iter().enumerate().filter_map(|(j, o)| o.loss().map(|loss| Point { n: candidates[j].n, d: candidates[j].tokens, loss })).collect();
        let precise = |fitted: &Option<Fitted>| fitted.as_ref().zip(settings.relative_interval).is_some_and(|(f, r)| f.estimate.is_precise(r));
        let mut fitted = if round == 0 { None } else { estimate(settings, &points, round, last.as_ref().map(|e: &Estimate| &e.law)) };
        if precise(&fitted) {
            fitted = confirm(settings, &points, round);
        }
        let picks = match settings.history.get(round) {
            Some(decided) => decided.chosen.iter().map(|c| recorded_pick(&candidates, c)).collect::<anyhow::Result<Vec<_>>>()?,
            None if precise(&fitted) => Vec::new(),
            None => choose(lab, settings, &observed, spent, round, parameters, fitted.as_ref()),
        };
        if picks.is_empty() && round > 0 && !precise(&fitted) {
            // Out of budget or candidates: the last answer is confirmed too.
            fitted = confirm(settings, &points, round);
        }
        let precise = precise(&fitted);
        let record_fit = fitted.map(|f| f.estimate);
        let mut record = Round { round, flops_spent: spent, points: points.len(), fit: record_fit, chosen: Vec::new(), stopped: None };
        if let Some(e) = &record.fit {
            last = Some(e.clone());
        }
        if picks.is_empty() {
            record.stopped = Some(match () {
                _ if precise => format!("the target's interval is within ±{:.1}%", 100.0 * settings.relative_interval.unwrap_or(0.0)),
                _ if observed.iter().all(|o| o.is_run()) => "every candidate has been run".to_string(),
                _ => format!("no candidate fits in what is left of max_flops ({:.3e} of {:.3e} spent)", spent, settings.max_flops),
            });
            on_round(&record)?;
            rounds.push(record);
            break;
        }
        let batch: Vec<usize> = picks.iter().map(|p| p.candidate).collect();
        record.chosen = picks.iter().map(|p| chosen(&candidates[p.candidate], p)).collect();
        on_round(&record)?;
        let losses = lab.run(round, &batch)?;
        for (pick, loss) in picks.iter().zip(losses) {
            observed[pick.candidate] = Observation::of(loss);
            spent += pick.cost_flops;
        }
        rounds.push(record);
    }
    Ok(Outcome { rounds, flops_spent: spent, last })
}

fn chosen(candidate: &Candidate, pick: &Pick) -> Chosen {
    Chosen { id: candidate.id.clone(), n: candidate.n, tokens: candidate.tokens, cost_flops: pick.cost_flops, score: pick.score }
}

/// A recorded choice as the pick it was: its candidate, its price and its score.
fn recorded_pick(candidates: &[Candidate], chosen: &Chosen) -> anyhow::Result<Pick> {
    let id = &chosen.id;
    let candidate = candidates.iter().position(|c| c.id == *id).ok_or_else(|| {
        anyhow::anyhow!(
            "the recorded adaptive rounds name run `{id}`, which is no longer a candidate: the sweep file changed; start the adaptive sweep in a new folder"
        )
    })?;
    Ok(Pick { candidate, cost_flops: chosen.cost_flops, score: chosen.score })
}

/// The next batch: the seed design in round 0, then the strategy's choice.
fn choose(lab: &dyn Lab, settings: &Settings, observed: &[Observation], spent: f64, round: usize, parameters: usize, fit: Option<&Fitted>) -> Vec<Pick> {
    let choosing = Choosing { candidates: lab.candidates(), settings, round, parameters, fit, lab, observed, budget_left: settings.max_flops - spent };
    match round {
        0 => choosing.spread(2 * parameters),
        _ => settings.strategy.choose(&choosing),
    }
}

/// What a [`Strategy`] chooses from: the candidates, the settings, this round's fit, and what
/// each candidate would cost.
pub struct Choosing<'a> {
    pub candidates: &'a [Candidate],
    pub settings: &'a Settings,
    /// The round being chosen (1 and on: round 0 is the seed design).
    pub round: usize,
    /// The law's free parameters.
    pub parameters: usize,
    /// This round's fit; none where the law could not be fitted.
    pub fit: Option<&'a Fitted>,
    lab: &'a dyn Lab,
    observed: &'a [Observation],
    /// FLOPs left of `max_flops`.
    budget_left: f64,
}

impl Choosing<'_> {
    /// What candidate `j` adds given `batch` (picked before it this round), if it has not been run
    /// and the batch with it still fits in the budget left.
    pub fn affordable(&self, j: usize, batch: &[usize]) -> Option<f64> {
        if self.observed[j].is_run() {
            return None;
        }
        let cost = self.lab.cost(j, batch);
        let batch_cost: f64 = batch.iter().enumerate().map(|(k, &b)| self.lab.cost(b, &batch[..k])).sum();
        (batch_cost + cost <= self.budget_left).then_some(cost)
    }

    /// What candidate `j` costs alone, with nothing else picked this round.
    pub fn cost_alone(&self, j: usize) -> f64 {
        self.lab.cost(j, &[])
    }

    /// The first `settings.batch` affordable candidates of `order`.
    pub fn first_affordable(&self, order: impl IntoIterator<Item = usize>) -> Vec<Pick> {
        let mut picked: Vec<usize> = Vec::new();
        let mut out = Vec::new();
        for j in order {
            if out.len() == self.settings.batch {
                break;
            }
            if let Some(cost) = self.affordable(j, &picked) {
                picked.push(j);
                out.push(Pick::unscored(j, cost));
            }
        }
        out
    }

    /// `count` candidates spread in (log N, log D), each coordinate scaled to [0, 1] over all
    /// candidates: greedy maximin over the cheaper half (by what each costs alone), starting from
    /// the cheapest. Ties go to the lower index. The seed design, and a strategy's fallback.
    pub fn spread(&self, count: usize) -> Vec<Pick> {
        let candidates = self.candidates;
        let scaled = |f: &dyn Fn(&Candidate) -> f64| -> Vec<f64> {
            let v: Vec<f64> = candidates.iter().map(|c| f(c).ln()).collect();
            let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
            v.iter().map(|x| if hi > lo { (x - lo) / (hi - lo) } else { 0.0 }).collect()
        };
        let (x, y) = (scaled(&|c| c.n), scaled(&|c| c.tokens));
        let costs: Vec<f64> = (0..candidates.len()).map(|j| self.cost_alone(j)).collect();
        let mut sorted = costs.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted.get(sorted.len().saturating_sub(1) / 2).copied().unwrap_or(0.0);
        let pool: Vec<usize> = (0..candidates.len()).filter(|&j| costs[j] <= median).collect();
        let mut picked: Vec<usize> = Vec::new();
        let mut out = Vec::new();
        while out.len() < count {
            let distance = |j: usize| picked.iter().map(|&k| (x[j] - x[k]).hypot(y[j] - y[k])).fold(f64::INFINITY, f64::min);
            // The best pick so far, and its merit: the first is the cheapest, then the farthest
            // from those picked.
            let mut best: Option<(Pick, f64)> = None;
            for &j in &pool {
                if picked.contains(&j) {
                    continue;
                }
                let Some(cost) = self.affordable(j, &picked) else { continue };
                let merit = if picked.is_empty() { -costs[j] } else { distance(j) };
                if best.is_none_or(|(_, m)| merit > m) {
                    best = Some((Pick::unscored(j, cost), merit));
                }
            }
            let Some((pick, _)) = best else { break };
            picked.push(pick.candidate);
            out.push(pick);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A lab whose runs' losses come from a known law, each costing 6ND.
    struct LawLab {
        law: Law,
        candidates: Vec<Candidate>,
        runs: usize,
    }

    impl LawLab {
        fn new(law: Law) -> Self {
            let mut candidates = Vec::new();
            for i in 0..6 {
                let n = 1e7 * 2.5f64.powi(i);
                for j in 0..6 {
                    let tokens = n * 4.0 * 2.2f64.powi(j);
                    candidates.push(Candidate { id: format!("{i}-{j}"), n, tokens });
                }
            }
            Self { law, candidates, runs: 0 }
        }
    }

    impl Lab for LawLab {
        fn candidates(&self) -> &[Candidate] {
            &self.candidates
        }
        fn cost(&self, j: usize, _batch: &[usize]) -> f64 {
            6.0 * self.candidates[j].n * self.candidates[j].tokens
        }
        fn run(&mut self, _round: usize, batch: &[usize]) -> anyhow::Result<Vec<Option<f64>>> {
            self.runs += batch.len();
            Ok(batch.iter().map(|&j| Some(self.law.loss(self.candidates[j].n, self.candidates[j].tokens))).collect())
        }
    }

    fn settings(history: Vec<Round>) -> Settings {
        Settings {
            target: Target::Allocation { budget_flops: 1e22 },
            strategy: crate::adaptive::strategy::named("adaptive").unwrap(),
            max_flops: f64::INFINITY,
            relative_interval: Some(0.01),
            batch: 3,
            bootstrap: 40,
            level: 0.95,
            seed: 5,
            spec: crate::fit::form::Form::Chinchilla.into(),
            delta: 1e-3,
            history,
        }
    }

    /// τ² is the slope of the squared misses over σ² against distance.
    #[test]
    fn the_discrepancy_is_the_slope_of_the_misses() {
        let misses: Vec<(f64, f64)> = (1..=6).map(|d| (1e-4 + 2e-3 * d as f64, d as f64)).collect();
        assert!((discrepancy(&misses, 1e-4) - 2e-3).abs() < 1e-12);
        // Misses smaller than one run's scatter say the law holds: no discrepancy.
        assert_eq!(discrepancy(&[(1e-5, 2.0), (2e-5, 3.0)], 1e-4), 0.0);
        assert!((log_distance((1e6, 2e7), (1e6 * 2f64.exp(), 2e7 / 3f64.exp())) - 5.0).abs() < 1e-12);
    }

    /// Where every run follows the law, the halves agree and τ² is nil; where the short runs sit
    /// 3% above it, τ² is positive and the halves' targets part.
    #[test]
    fn the_discrepancy_measures_a_law_that_misses_the_short_runs() {
        let truth = Law::chinchilla(1.8, 400.0, 1500.0, 0.34, 0.30);
        let lab = LawLab::new(truth.clone());
        let s = settings(Vec::new());
        let exact: Vec<Point> = lab.candidates.iter().map(|c| Point { n: c.n, d: c.tokens, loss: truth.loss(c.n, c.tokens) }).collect();
        let drift = scale_drift(&s, &exact, &fit(s.spec.clone(), &exact, s.delta).unwrap()).unwrap();
        assert!(drift.discrepancy_per_log_distance < 1e-9, "{drift:?}");
        let shortest = exact.iter().map(|p| p.d / p.n).fold(f64::INFINITY, f64::min);
        let off: Vec<Point> = exact.iter().map(|p| Point { loss: p.loss * if p.d / p.n < 2.0 * shortest { 1.03 } else { 1.0 }, ..*p }).collect();
        let drift = scale_drift(&s, &off, &fit(s.spec.clone(), &off, s.delta).unwrap()).unwrap();
        assert!(drift.discrepancy_per_log_distance > 1e-5, "{drift:?}");
    }

    /// On an exact law the first fit after the seed design already pins the target, and the loop
    /// stops there; the seed design spans three or more sizes and token counts.
    #[test]
    fn an_exact_law_stops_after_the_seed_design() {
        let truth = Law::chinchilla(1.8, 400.0, 1500.0, 0.34, 0.30);
        let mut lab = LawLab::new(truth.clone());
        let outcome = run(&mut lab, &settings(Vec::new()), &mut |_| Ok(())).unwrap();
        let seed = &outcome.rounds[0].chosen;
        assert_eq!(seed.len(), 10);
        let distinct = |f: fn(&Chosen) -> f64| crate::fit::distinct_count(seed.iter().map(f));
        assert!(distinct(|c| c.n) >= 3 && distinct(|c| c.tokens) >= 3, "{seed:?}");
        let last = outcome.last.unwrap();
        let want = Target::Allocation { budget_flops: 1e22 }.value(&truth);
        assert!((last.estimate / want - 1.0).abs() < 1e-3, "{} vs {want}", last.estimate);
        assert!(outcome.rounds.last().unwrap().stopped.as_ref().unwrap().contains("within ±1.0%"));
    }

    /// Noisy losses: the same seed makes the same choices, a recorded history is followed, and a
    /// budget ends the loop.
    #[test]
    fn choices_are_deterministic_and_a_history_is_followed() {
        struct Noisy(LawLab);
        impl Lab for Noisy {
            fn candidates(&self) -> &[Candidate] {
                self.0.candidates()
            }
            fn cost(&self, j: usize, b: &[usize]) -> f64 {
                self.0.cost(j, b)
            }
            fn run(&mut self, round: usize, batch: &[usize]) -> anyhow::Result<Vec<Option<f64>>> {
                let clean = self.0.run(round, batch)?;
                Ok(clean.into_iter().zip(batch).map(|(l, &j)| l.map(|l| l * (0.01 * Rng::derive(9, &[j as u64]).normal()).exp())).collect())
            }
        }
        let truth = Law::chinchilla(1.8, 400.0, 1500.0, 0.34, 0.30);
        let mut s = settings(Vec::new());
        s.max_flops = 5e20;
        let a = run(&mut Noisy(LawLab::new(truth.clone())), &s, &mut |_| Ok(())).unwrap();
        let b = run(&mut Noisy(LawLab::new(truth.clone())), &s, &mut |_| Ok(())).unwrap();
        assert_eq!(a.rounds, b.rounds);
        assert!(a.rounds.len() > 2, "{:?}", a.rounds.len());
        assert!(a.flops_spent <= 5e20);
        let stopped = a.rounds.last().unwrap().stopped.clone().unwrap();
        assert!(stopped.contains("max_flops") || stopped.contains("within"), "{stopped}");
        assert!(a.rounds[1].chosen.iter().all(|c| c.score.is_some_and(|s| s >= 0.0)));
        // Resuming after two rounds follows them and decides the rest the same way.
        let mut resumed = s.clone();
        resumed.history = a.rounds[..2].to_vec();
        let c = run(&mut Noisy(LawLab::new(truth)), &resumed, &mut |_| Ok(())).unwrap();
        assert_eq!(a.rounds, c.rounds);
    }
}
