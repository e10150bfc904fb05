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

use super::data::{prefix_area, schedule_at, warmup_steps, Curve, Points};
use super::form::{CurveForm, CurveFormKind, Decrement};
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

    /// L̂ at one point.
    fn at(&self, area: f64, decrements: &[Decrement]) -> f64 {
        let mut scratch = vec![0.0; self.phi.len()];
        self.l0 + self.a * area.powf(-self.alpha) - self.k * self.form().decay_term(&self.phi, decrements, &mut scratch)
    }

    /// The predicted loss after each of `steps` (1-based, rising, at most T) of a run whose step
    /// rates are `lr`.
    pub fn predict(&self, lr: &[f64], steps: &[u64]) -> Vec<f64> {
        let prefix = prefix_area(lr, self.lr_ref);
        let warmup = warmup_steps(lr);
        let mut decrements = Vec::new();
        steps
            .iter()
            .map(|&t| {
                decrements.clear();
                let area = schedule_at(lr, &prefix, warmup, self.lr_ref, (t as usize).clamp(1, lr.len()), &mut decrements);
                self.at(area, &decrements)
            })
            .collect()
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
}

/// Where group g's L₀, ln A and α sit in θ.
fn group_index(form: &dyn CurveForm, g: usize) -> usize {
    1 + form.shape_parameters().len() + 3 * g
}

impl Smooth for Objective<'_> {
    fn value_and_gradient(&self, t: &[f64]) -> (f64, Vec<f64>) {
        let np = self.form.shape_parameters().len();
        let k = t[0].exp();
        let phi = &t[1..1 + np];
        let mut grad = vec![0.0; t.len()];
        let mut dh = vec![0.0; np];
        let mut cost = 0.0;
        for p in &self.points.points {
            let w = self.weight[p.curve];
            if w == 0.0 {
                continue;
            }
            let gi = group_index(self.form, p.group);
            let (l0, a, alpha) = (t[gi], t[gi + 1].exp(), t[gi + 2]);
            let f = p.area.powf(-alpha);
            let h = self.form.decay_term(phi, self.points.decrements(p), &mut dh);
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
fn linear_start(form: &'static dyn CurveForm, data: &FitData, weight: &[f64], alpha: f64, phi: &[f64]) -> Option<(Vec<f64>, f64)> {
    let g = data.groups;
    let size = 2 * g + 1;
    let mut m = vec![0.0; size * size];
    let mut rhs = vec![0.0; size];
    let mut scratch = vec![0.0; phi.len()];
    for p in &data.points.points {
        let w = weight[p.curve] / (p.loss * p.loss);
        if w == 0.0 {
            continue;
        }
        let mut x = vec![0.0; size];
        x[2 * p.group] = 1.0;
        x[2 * p.group + 1] = p.area.powf(-alpha);
        x[2 * g] = -form.decay_term(phi, data.points.decrements(p), &mut scratch);
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
    let cost = Objective { form, points: &data.points, weight }.value_and_gradient(&theta).0;
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
fn refine(form: &'static dyn CurveForm, data: &FitData, weight: &[f64], start: &[f64]) -> Option<(Vec<f64>, f64)> {
    let objective = Objective { form, points: &data.points, weight };
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
pub(crate) fn fit_theta(form: CurveFormKind, data: &FitData, weight: &[f64]) -> Option<(Vec<f64>, f64)> {
    let f = form.form();
    let combos: Vec<(f64, Vec<f64>)> = ALPHA_STARTS.iter().flat_map(|&a| f.shape_starts().into_iter().map(move |phi| (a, phi))).collect();
    let mut starts: Vec<(Vec<f64>, f64)> = combos.par_iter().filter_map(|(a, phi)| linear_start(f, data, weight, *a, phi)).collect();
    starts.sort_by(|a, b| a.1.total_cmp(&b.1));
    let refined: Vec<(Vec<f64>, f64)> =
        starts.par_iter().take(REFINED_STARTS).filter_map(|(theta, _)| refine(f, data, weight, theta)).filter(|(t, _)| admissible(f, t, data.groups)).collect();
    refined.into_iter().chain(starts.into_iter().filter(|(t, _)| admissible(f, t, data.groups))).min_by(|a, b| a.1.total_cmp(&b.1))
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
pub(crate) fn bootstrap(form: CurveFormKind, data: &FitData, theta: &[f64], curves: usize, samples: usize, seed: u64) -> Vec<Vec<f64>> {
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
            refine(f, data, &weight, theta).filter(|(t, _)| admissible(f, t, data.groups)).map(|(t, _)| t)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::curve::form::MultiPower;
    use crate::schedule::{DecayShape, ScheduleSpec};

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
            let (theta, _) = fit_theta(truth.form, &data, &[1.0; 3]).expect("a fit");
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
    fn a_fit_is_deterministic() {
        let truth = CurveLaw { form: CurveFormKind::MultiPower, lr_ref: 0.02, l0: 2.0, a: 1.0, alpha: 0.5, k: 0.3, phi: vec![0.0, (0.5f64).ln(), 0.0] };
        let curves = curves_of(&truth);
        let refs: Vec<&Curve> = curves.iter().collect();
        let data = FitData::new(&refs, &[0, 0, 0], 1);
        let a = fit_theta(truth.form, &data, &[1.0; 3]).unwrap();
        let b = fit_theta(truth.form, &data, &[1.0; 3]).unwrap();
        assert_eq!(a, b);
        assert_eq!(bootstrap(truth.form, &data, &a.0, 3, 4, 7), bootstrap(truth.form, &data, &a.0, 3, 4, 7));
    }
}
