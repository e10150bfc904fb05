//! Fitting a curve law: the objective, its starts, L-BFGS, and the bootstrap over runs.
//!
//! The coordinates are θ = (ln K, φ, then L₀, ln A and α of each group). A separate fit has one
//! group; a joint fit (`--joint`) has one per model size, which share the response to the decay
//! (K and φ: how much the loss drops as the learning rate comes down, and how fast) and keep
//! their own power law in the area (L₀, A, α: where the size's loss goes with unbounded training
//! at the peak rate, and how it gets there).
//!
//! ```text
//! minimise  Σ_i w_i · Huber_δ((L̂_i − L_i) / L_i),   δ = 1e-3
//! ```
//!
//! over every evaluation after the warmup (the relative residual is the log residual of
//! `fit law` to first order, and stays defined where a trial L̂ is not positive). w_i counts how
//! often point i's run was drawn (1 in the fit itself).
//!
//! **Starts.** L₀, A and K enter linearly. For every α in {0.2, 0.35, 0.5, 0.75, 1, 1.5} (the
//! same in every group) and every φ of the form's start grid, weighted least squares gives the
//! best L₀, A (per group) and K at once; the four best of those starts are refined by L-BFGS (argmin, More–Thuente
//! line search) in all coordinates, and the best admissible end point is the fit.
//!
//! **Bootstrap.** Each replicate draws, within every group, as many runs as it has, with
//! replacement, and refits from the fit's optimum: the spread of the replicates' predictions is
//! the uncertainty from which runs were trained, the interval `--predict-schedule` reports.

use rayon::prelude::*;
use serde::Serialize;

use super::data::{warmup_steps, Curve, Points};
use super::decay::{Decays, Schedule};
use super::form::{CurveForm, CurveFormKind};
use super::progress::Reporter;
use crate::fit::law::huber;
use crate::fit::lbfgs::{self, Smooth, Stopping};
use crate::rng::Rng;

/// The Huber threshold on relative residuals.
pub const DELTA: f64 = 1e-3;
const ALPHA_STARTS: [f64; 6] = [0.2, 0.35, 0.5, 0.75, 1.0, 1.5];
const REFINED_STARTS: usize = 4;

/// A fitted curve law for one group of runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveLaw {
    pub form: CurveFormKind,
    /// Rates enter the law as η / `lr_ref` (the group's largest peak rate), so S₁ counts steps
    /// at that rate and A, K, φ are in those units.
    pub lr_ref: f64,
    pub l0: f64,
    pub a: f64,
    pub alpha: f64,
    /// K: the decay term's scale (B of the multi-power law, C of the annealing law).
    pub k: f64,
    /// φ, the form's own coordinates (see [`CurveForm`]).
    pub phi: Vec<f64>,
}

impl CurveLaw {
    fn form(&self) -> &'static dyn CurveForm {
        self.form.form()
    }

    /// (key, symbol, value) of every parameter, as reported.
    pub fn named(&self) -> Vec<(&'static str, &'static str, f64)> {
        let f = self.form();
        let (k_key, k_symbol) = f.scale();
        let mut out = vec![("l0", "L0", self.l0), ("a", "A", self.a), ("alpha", "α", self.alpha), (k_key, k_symbol, self.k)];
        out.extend(f.shape_parameters().iter().zip(f.shape_values(&self.phi)).map(|(&(k, s), v)| (k, s, v)));
        out
    }

    /// The predicted loss after each of `steps` (1-based, at most T) of a run whose step rates
    /// are `lr`.
    pub fn predict(&self, lr: &[f64], steps: &[u64]) -> Vec<f64> {
        let schedule = Schedule::new(lr, self.lr_ref, warmup_steps(lr));
        let steps: Vec<usize> = steps.iter().map(|&t| (t as usize).clamp(1, lr.len())).collect();
        let areas: Vec<f64> = steps.iter().map(|&t| schedule.area(t)).collect();
        let mut decays = Decays::default();
        decays.push_run(schedule, steps);
        let mut h = vec![0.0; areas.len()];
        let mut scratch = vec![0.0; areas.len() * self.phi.len()];
        self.form().decay_terms(&self.phi, &decays, &[true], &mut h, &mut scratch);
        areas.iter().zip(h).map(|(area, h)| self.l0 + self.a * area.powf(-self.alpha) - self.k * h).collect()
    }

    /// The predicted loss at a run's last step.
    pub fn predict_final(&self, lr: &[f64]) -> f64 {
        self.predict(lr, &[lr.len() as u64])[0]
    }
}

/// The objective over the points of one fit (one or more groups).
struct Objective<'a> {
    form: &'static dyn CurveForm,
    points: &'a Points,
    /// Per curve: how many times it was drawn.
    weight: &'a [f64],
    /// Per curve: whether it was drawn at all (the decay terms of the others are not computed).
    drawn: Vec<bool>,
    reporter: &'a Reporter,
}

impl<'a> Objective<'a> {
    fn new(form: &'static dyn CurveForm, points: &'a Points, weight: &'a [f64], reporter: &'a Reporter) -> Self {
        Self { form, points, weight, drawn: weight.iter().map(|&w| w != 0.0).collect(), reporter }
    }

    /// h_φ and ∂h/∂φ at every point (see [`CurveForm::decay_terms`]).
    fn decay_terms(&self, phi: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let n = self.points.points.len();
        let mut h = vec![0.0; n];
        let mut grad = vec![0.0; n * phi.len()];
        self.form.decay_terms(phi, &self.points.decays, &self.drawn, &mut h, &mut grad);
        (h, grad)
    }

    /// The objective at θ from the decay terms at its φ.
    fn value_and_gradient_with(&self, t: &[f64], hs: &[f64], dhs: &[f64]) -> (f64, Vec<f64>) {
        let np = self.form.shape_parameters().len();
        let k = t[0].exp();
        let mut grad = vec![0.0; t.len()];
        let mut cost = 0.0;
        for (i, p) in self.points.points.iter().enumerate() {
            let w = self.weight[p.curve];
            if w == 0.0 {
                continue;
            }
            let gi = group_index(self.form, p.group);
            let (l0, a, alpha) = (t[gi], t[gi + 1].exp(), t[gi + 2]);
            let f = p.area.powf(-alpha);
            let (h, dh) = (hs[i], &dhs[i * np..(i + 1) * np]);
            let predicted = l0 + a * f - k * h;
            let (hub, dhub) = huber((predicted - p.loss) / p.loss, DELTA);
            cost += w * hub;
            let c = w * dhub / p.loss;
            grad[0] -= c * k * h;
            for j in 0..np {
                grad[1 + j] -= c * k * dh[j];
            }
            grad[gi] += c;
            grad[gi + 1] += c * a * f;
            grad[gi + 2] -= c * a * f * p.area.ln();
        }
        (cost, grad)
    }
}

impl Smooth for Objective<'_> {
    fn value_and_gradient(&self, t: &[f64]) -> (f64, Vec<f64>) {
        self.reporter.evaluated();
        let (hs, dhs) = self.decay_terms(&t[1..1 + self.form.shape_parameters().len()]);
        self.value_and_gradient_with(t, &hs, &dhs)
    }
}

/// Where group g's L₀, ln A and α sit in θ.
fn group_index(form: &dyn CurveForm, g: usize) -> usize {
    1 + form.shape_parameters().len() + 3 * g
}

/// A fit's data: its curves' points, the group of each curve, and the reference rate.
pub(crate) struct FitData {
    pub points: Points,
    pub groups: usize,
    /// Curves per group (for the bootstrap's draws).
    pub curves_of_group: Vec<Vec<usize>>,
    pub lr_ref: f64,
}

impl FitData {
    pub fn new(curves: &[&Curve], group_of: &[usize], groups: usize) -> Self {
        let lr_ref = curves.iter().map(|c| c.peak_lr()).fold(0.0, f64::max);
        let points = Points::of(curves, group_of, lr_ref);
        let mut curves_of_group = vec![Vec::new(); groups];
        for (c, &g) in group_of.iter().enumerate() {
            curves_of_group[g].push(c);
        }
        Self { points, groups, curves_of_group, lr_ref }
    }
}

/// Weighted least squares for L₀, A per group and K at fixed α and φ; the start θ and its cost.
fn linear_start(form: &'static dyn CurveForm, data: &FitData, weight: &[f64], alpha: f64, phi: &[f64], reporter: &Reporter) -> Option<(Vec<f64>, f64)> {
    let g = data.groups;
    let size = 2 * g + 1;
    let mut m = vec![0.0; size * size];
    let mut rhs = vec![0.0; size];
    let objective = Objective::new(form, &data.points, weight, reporter);
    reporter.evaluated();
    let (hs, dhs) = objective.decay_terms(phi);
    let mut x = vec![0.0; size];
    for (p, &h) in data.points.points.iter().zip(&hs) {
        let w = weight[p.curve] / (p.loss * p.loss);
        if w == 0.0 {
            continue;
        }
        x.fill(0.0);
        x[2 * p.group] = 1.0;
        x[2 * p.group + 1] = p.area.powf(-alpha);
        x[2 * g] = -h;
        for i in 0..size {
            rhs[i] += w * x[i] * p.loss;
            for j in 0..size {
                m[i * size + j] += w * x[i] * x[j];
            }
        }
    }
    // A little ridge: a group without decays leaves K free.
    let trace: f64 = (0..size).map(|i| m[i * size + i]).sum();
    for i in 0..size {
        m[i * size + i] += 1e-12 * trace.max(1e-300);
    }
    let solution = solve(&mut m, &mut rhs, size)?;
    let mut theta = vec![solution[2 * g].max(1e-9).ln()];
    theta.extend_from_slice(phi);
    for group in 0..g {
        theta.extend([solution[2 * group], solution[2 * group + 1].max(1e-9).ln(), alpha]);
    }
    let cost = objective.value_and_gradient_with(&theta, &hs, &dhs).0;
    cost.is_finite().then_some((theta, cost))
}

/// Gaussian elimination with partial pivoting; `None` when singular.
fn solve(m: &mut [f64], rhs: &mut [f64], n: usize) -> Option<Vec<f64>> {
    for col in 0..n {
        let pivot = (col..n).max_by(|&a, &b| m[a * n + col].abs().total_cmp(&m[b * n + col].abs()))?;
        if m[pivot * n + col].abs() < 1e-300 {
            return None;
        }
        for j in 0..n {
            m.swap(col * n + j, pivot * n + j);
        }
        rhs.swap(col, pivot);
        for row in col + 1..n {
            let factor = m[row * n + col] / m[col * n + col];
            for j in col..n {
                m[row * n + j] -= factor * m[col * n + j];
            }
            rhs[row] -= factor * rhs[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|j| m[row * n + j] * x[j]).sum();
        x[row] = (rhs[row] - s) / m[row * n + row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// L-BFGS from `start`; (θ, cost).
fn refine(form: &'static dyn CurveForm, data: &FitData, weight: &[f64], start: &[f64], reporter: &Reporter) -> Option<(Vec<f64>, f64)> {
    let objective = Objective::new(form, &data.points, weight, reporter);
    let stopping = Stopping { tolerance_grad: 1e-12, tolerance_cost: 1e-14, max_iters: 400, max_evaluations: 20_000 };
    lbfgs::minimise(&objective, start.to_vec(), stopping).map(|(theta, cost, _)| (theta, cost))
}

/// Finite, α positive in every group, φ admissible, and no decay able to take the loss below 0.
fn admissible(form: &dyn CurveForm, theta: &[f64], groups: usize) -> bool {
    let np = form.shape_parameters().len();
    let phi = &theta[1..1 + np];
    let deepest = theta[0].exp() * form.largest_decay_term(phi);
    theta.iter().all(|x| x.is_finite())
        && form.admissible(phi)
        && (0..groups).all(|g| theta[group_index(form, g) + 2] > 0.0 && theta[group_index(form, g)] > deepest)
}

/// The fitted θ of one fit: the best admissible end point of L-BFGS from the best linear starts.
pub(crate) fn fit_theta(form: CurveFormKind, data: &FitData, weight: &[f64], reporter: &Reporter) -> Option<(Vec<f64>, f64)> {
    let grid: Vec<(f64, Vec<f64>)> = ALPHA_STARTS.iter().flat_map(|&a| form.form().shape_starts().into_iter().map(move |phi| (a, phi))).collect();
    fit_theta_from(form, data, weight, &grid, reporter)
}

/// [`fit_theta`] from the linear starts at each (α, φ) of `grid`.
fn fit_theta_from(form: CurveFormKind, data: &FitData, weight: &[f64], grid: &[(f64, Vec<f64>)], reporter: &Reporter) -> Option<(Vec<f64>, f64)> {
    let f = form.form();
    let mut starts: Vec<(Vec<f64>, f64)> = grid.par_iter().filter_map(|(a, phi)| linear_start(f, data, weight, *a, phi, reporter)).collect();
    starts.sort_by(|a, b| a.1.total_cmp(&b.1));
    let refined: Vec<(Vec<f64>, f64)> = starts
        .par_iter()
        .take(REFINED_STARTS)
        .filter_map(|(theta, _)| refine(f, data, weight, theta, reporter))
        .filter(|(t, _)| admissible(f, t, data.groups))
        .collect();
    refined.into_iter().chain(starts.into_iter().filter(|(t, _)| admissible(f, t, data.groups))).min_by(|a, b| a.1.total_cmp(&b.1))
}

/// Whether θ's α and φ are a start of [`fit_theta`]'s grid, to the bit: no refinement ended
/// admissible and better, so they are where the search began, not what the data say.
pub(crate) fn at_a_start(form: CurveFormKind, theta: &[f64]) -> bool {
    let np = form.form().shape_parameters().len();
    let same = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
    let alpha = theta[group_index(form.form(), 0) + 2];
    ALPHA_STARTS.iter().any(|a| a.to_bits() == alpha.to_bits()) && form.form().shape_starts().iter().any(|phi| same(phi, &theta[1..1 + np]))
}

/// The laws of each group from a fit's θ.
pub(crate) fn laws_of(form: CurveFormKind, data: &FitData, theta: &[f64]) -> Vec<CurveLaw> {
    let np = form.form().shape_parameters().len();
    (0..data.groups)
        .map(|g| {
            let gi = group_index(form.form(), g);
            CurveLaw {
                form,
                lr_ref: data.lr_ref,
                l0: theta[gi],
                a: theta[gi + 1].exp(),
                alpha: theta[gi + 2],
                k: theta[0].exp(),
                phi: theta[1..1 + np].to_vec(),
            }
        })
        .collect()
}

/// `samples` bootstrap refits over runs (drawn within each group), each from `theta`; the
/// replicates whose refit succeeded.
pub(crate) fn bootstrap(form: CurveFormKind, data: &FitData, theta: &[f64], curves: usize, samples: usize, seed: u64, reporter: &Reporter) -> Vec<Vec<f64>> {
    let f = form.form();
    (0..samples)
        .into_par_iter()
        .filter_map(|b| {
            let mut rng = Rng::derive(seed, &[0xC0A5E, b as u64]);
            let mut weight = vec![0.0; curves];
            for members in &data.curves_of_group {
                for _ in 0..members.len() {
                    weight[members[rng.below(members.len() as u64) as usize]] += 1.0;
                }
            }
            let refit = refine(f, data, &weight, theta, reporter).filter(|(t, _)| admissible(f, t, data.groups)).map(|(t, _)| t);
            reporter.done_one();
            refit
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::curve::form::MultiPower;
    use crate::fit::curve::progress::Progress;
    use crate::schedule::{DecayShape, ScheduleSpec};

    fn quiet() -> Reporter {
        Reporter::new("fit curve", Progress::Quiet)
    }

    fn logit(p: f64) -> f64 {
        (p / (1.0 - p)).ln()
    }

    fn rates(schedule: &ScheduleSpec, steps: u64) -> Vec<f64> {
        (1..=steps).map(|k| 0.02 * schedule.factor(k * 100, steps * 100)).collect()
    }

    /// Curves drawn from a known law: a trunk and two decays of different shapes.
    fn curves_of(law: &CurveLaw) -> Vec<Curve> {
        let wsd = |decay: &str, decay_tokens, steps| {
            let decay: DecayShape = decay.parse().unwrap();
            rates(&ScheduleSpec::Wsd { warmup_tokens: 1000, decay, decay_tokens, half_life_tokens: None, final_lr_fraction: 0.0 }, steps)
        };
        let schedules = [rates(&ScheduleSpec::Constant { warmup_tokens: 1000 }, 600), wsd("linear", 12_000, 240), wsd("1-sqrt", 8_000, 400)];
        schedules
            .into_iter()
            .enumerate()
            .map(|(i, lr)| {
                let steps: Vec<u64> = (1..=lr.len() as u64 / 8).map(|k| 8 * k).collect();
                let losses = law.predict(&lr, &steps);
                Curve {
                    run: format!("r{i}"),
                    group: "g".into(),
                    n: None,
                    lr,
                    tokens_per_step: Some(100.0),
                    evals: steps.into_iter().zip(losses).collect(),
                    finished: true,
                }
            })
            .collect()
    }

    #[test]
    fn parameters_of_curves_drawn_from_the_law_are_recovered() {
        let truths = [
            CurveLaw {
                form: CurveFormKind::MultiPower,
                lr_ref: 0.02,
                l0: 2.2,
                a: 1.3,
                alpha: 0.45,
                k: 0.35,
                phi: vec![(0.3f64).ln(), (0.6f64).ln(), logit(0.4 / MultiPower::GAMMA_MAX)],
            },
            CurveLaw { form: CurveFormKind::Annealing, lr_ref: 0.02, l0: 2.2, a: 1.3, alpha: 0.45, k: 0.004, phi: vec![(30.0f64).ln()] },
        ];
        for truth in truths {
            let curves = curves_of(&truth);
            let refs: Vec<&Curve> = curves.iter().collect();
            let data = FitData::new(&refs, &[0, 0, 0], 1);
            let (theta, _) = fit_theta(truth.form, &data, &[1.0; 3], &quiet()).expect("a fit");
            let law = &laws_of(truth.form, &data, &theta)[0];
            for ((key, _, want), (_, _, got)) in truth.named().into_iter().zip(law.named()) {
                assert!((got / want - 1.0).abs() < 0.02, "{:?} {key}: fitted {got}, true {want}", truth.form);
            }
            // And the curves themselves, to far better than the data would ever need.
            for c in &curves {
                let steps: Vec<u64> = c.evals.iter().map(|e| e.0).collect();
                for (p, (_, l)) in law.predict(&c.lr, &steps).iter().zip(&c.evals) {
                    assert!((p / l - 1.0).abs() < 1e-5, "{:?}: {p} vs {l}", truth.form);
                }
            }
        }
    }

    #[test]
    fn a_theta_at_a_start_of_the_grid_is_told_apart() {
        let form = CurveFormKind::MultiPower;
        let phi = form.form().shape_starts()[5].clone();
        let theta: Vec<f64> = [vec![0.1], phi, vec![2.0, 0.3, ALPHA_STARTS[2]]].concat();
        assert!(at_a_start(form, &theta));
        let mut moved = theta.clone();
        moved[2] += 1e-12;
        assert!(!at_a_start(form, &moved), "φ off the grid");
        let mut moved = theta;
        moved[6] = 0.5000001;
        assert!(!at_a_start(form, &moved), "α off the grid");
    }

    #[test]
    fn a_fit_is_deterministic() {
        let truth = CurveLaw { form: CurveFormKind::MultiPower, lr_ref: 0.02, l0: 2.0, a: 1.0, alpha: 0.5, k: 0.3, phi: vec![0.0, (0.5f64).ln(), 0.0] };
        let curves = curves_of(&truth);
        let refs: Vec<&Curve> = curves.iter().collect();
        let data = FitData::new(&refs, &[0, 0, 0], 1);
        let a = fit_theta(truth.form, &data, &[1.0; 3], &quiet()).unwrap();
        let b = fit_theta(truth.form, &data, &[1.0; 3], &quiet()).unwrap();
        assert_eq!(a, b);
        assert_eq!(bootstrap(truth.form, &data, &a.0, 3, 4, 7, &quiet()), bootstrap(truth.form, &data, &a.0, 3, 4, 7, &quiet()));
    }

    /// h at step t of `lr` (in units of its peak) by the papers' sums over every decrement.
    fn direct_decay_term(law: &CurveLaw, lr: &[f64], t: usize) -> f64 {
        let peak = lr.iter().copied().fold(0.0, f64::max);
        let eta = |k: usize| lr[k - 1] / peak;
        let first = (warmup_steps(lr) + 1).max(2);
        let values = law.form.form().shape_values(&law.phi);
        (first..=t)
            .map(|k| {
                let drop = eta(k - 1) - eta(k);
                match law.form {
                    // A rate of zero: G = 1, its limit.
                    CurveFormKind::MultiPower if eta(k) == 0.0 => drop,
                    CurveFormKind::MultiPower => {
                        let (c, beta, gamma) = (values[0], values[1], values[2]);
                        let area_since: f64 = (k..=t).map(eta).sum();
                        drop * (1.0 - (c * eta(k).powf(-gamma) * area_since + 1.0).powf(-beta))
                    }
                    CurveFormKind::Annealing => drop * (1.0 - values[0].powi((t - k + 1) as i32)) / (1.0 - values[0]),
                }
            })
            .sum()
    }

    /// The objective of a law on `curves` (one group) by the direct sums.
    fn direct_objective(law: &CurveLaw, curves: &[Curve]) -> f64 {
        let mut cost = 0.0;
        for c in curves {
            for &(step, loss) in c.evals.iter().filter(|e| e.0 as usize > warmup_steps(&c.lr)) {
                let t = step as usize;
                let area: f64 = c.lr[..t].iter().map(|x| x / law.lr_ref).sum();
                let predicted = law.l0 + law.a * area.powf(-law.alpha) - law.k * direct_decay_term(law, &c.lr, t);
                cost += huber((predicted - loss) / loss, DELTA).0;
            }
        }
        cost
    }

    /// The fast path (the annealing recursion, the multi-power sums over `Decays`, the points in
    /// parallel) against the papers' direct sums, on runs short enough to compute both: the
    /// objective within 1e-9 (relative) at the fitted θ and around it, and the predictions.
    #[test]
    fn the_fast_path_is_the_direct_sum_on_short_runs() {
        let truths = [
            CurveLaw { form: CurveFormKind::MultiPower, lr_ref: 0.02, l0: 2.2, a: 1.3, alpha: 0.45, k: 0.35, phi: vec![(0.3f64).ln(), (0.6f64).ln(), 0.3] },
            CurveLaw { form: CurveFormKind::Annealing, lr_ref: 0.02, l0: 2.2, a: 1.3, alpha: 0.45, k: 0.004, phi: vec![(30.0f64).ln()] },
        ];
        for truth in truths {
            let mut curves = curves_of(&truth);
            // Noise, so that the objective is not zero at the optimum.
            let mut rng = Rng::derive(3, &[]);
            for c in &mut curves {
                c.evals.iter_mut().for_each(|e| e.1 *= 1.0 + 0.003 * (rng.next_f64() - 0.5));
            }
            let refs: Vec<&Curve> = curves.iter().collect();
            let data = FitData::new(&refs, &[0, 0, 0], 1);
            let (theta, _) = fit_theta(truth.form, &data, &[1.0; 3], &quiet()).expect("a fit");
            let reporter = quiet();
            let objective = Objective::new(truth.form.form(), &data.points, &[1.0; 3], &reporter);
            for shift in [0.0, 0.01, -0.02] {
                let moved: Vec<f64> = theta.iter().map(|x| x + shift).collect();
                let law = &laws_of(truth.form, &data, &moved)[0];
                let (fast, direct) = (objective.value_and_gradient(&moved).0, direct_objective(law, &curves));
                assert!((fast / direct - 1.0).abs() < 1e-9, "{:?} at θ + {shift}: {fast} against {direct}", truth.form);
            }
            let law = &laws_of(truth.form, &data, &theta)[0];
            for c in &curves {
                let steps: Vec<u64> = (1..=c.lr.len() as u64).step_by(7).collect();
                for (&t, fast) in steps.iter().zip(law.predict(&c.lr, &steps)) {
                    let area: f64 = c.lr[..t as usize].iter().map(|x| x / law.lr_ref).sum();
                    let direct = law.l0 + law.a * area.powf(-law.alpha) - law.k * direct_decay_term(law, &c.lr, t as usize);
                    assert!((fast / direct - 1.0).abs() < 1e-12, "{:?} {} step {t}: {fast} against {direct}", truth.form, c.run);
                }
            }
        }
    }

    /// A 100,000-step cosine with the rate at every step, beside a constant run and a WSD run as
    /// long, evaluated every 500 steps: fitted by both forms (from a small start grid) in bounded
    /// time, with at most a few hundred decay terms per point.
    #[test]
    fn a_run_of_100000_steps_is_fitted_in_bounded_time_and_memory() {
        let steps = 100_000u64;
        let truth =
            CurveLaw { form: CurveFormKind::MultiPower, lr_ref: 0.003, l0: 2.0, a: 1.6, alpha: 0.35, k: 0.3, phi: vec![(0.05f64).ln(), (0.8f64).ln(), 0.0] };
        let long = |schedule: ScheduleSpec| rates(&schedule, steps).iter().map(|x| x * 0.15).collect::<Vec<f64>>();
        let schedules = [
            long(ScheduleSpec::Constant { warmup_tokens: 100_000 }),
            long(ScheduleSpec::Cosine { warmup_tokens: 100_000, final_lr_fraction: 0.1 }),
            long(ScheduleSpec::Wsd {
                warmup_tokens: 100_000,
                decay: DecayShape::named("1-sqrt").expect("a decay shape"),
                decay_tokens: 2_000_000,
                half_life_tokens: None,
                final_lr_fraction: 0.0,
            }),
        ];
        let curves: Vec<Curve> = schedules
            .into_iter()
            .enumerate()
            .map(|(i, lr)| {
                let at: Vec<u64> = (1..=steps / 500).map(|k| 500 * k).collect();
                let losses = truth.predict(&lr, &at);
                Curve {
                    run: format!("r{i}"),
                    group: "g".into(),
                    n: None,
                    lr,
                    tokens_per_step: None,
                    evals: at.into_iter().zip(losses).collect(),
                    finished: true,
                }
            })
            .collect();
        let refs: Vec<&Curve> = curves.iter().collect();
        let started = std::time::Instant::now();
        let data = FitData::new(&refs, &[0, 0, 0], 1);
        let terms: usize = (0..data.points.decays.len()).map(|i| data.points.decays.decrements(i).len()).sum();
        assert!(terms < 600 * data.points.points.len(), "{terms} decay terms for {} points", data.points.points.len());
        for form in [CurveFormKind::MultiPower, CurveFormKind::Annealing] {
            let grid: Vec<(f64, Vec<f64>)> =
                [0.35, 0.75].iter().flat_map(|&a| form.form().shape_starts().into_iter().step_by(5).map(move |phi| (a, phi))).collect();
            let (theta, _) = fit_theta_from(form, &data, &[1.0; 3], &grid, &quiet()).expect("a fit");
            let law = &laws_of(form, &data, &theta)[0];
            for c in &curves {
                let last = law.predict_final(&c.lr);
                assert!((last / c.evals.last().unwrap().1 - 1.0).abs() < 0.01, "{form:?} {}: {last} against {:?}", c.run, c.evals.last());
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        assert!(seconds < 60.0, "{seconds:.1} s");
    }
}
