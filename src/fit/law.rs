//! The data-model scaling law `L(N, D) = E + A/N^α + B/D^β` (Chinchilla approach 3; MiniCPM
//! Eq. 2), fitted as Hoffmann et al. and Besiroglu et al. do:
//!
//! ```text
//! minimise  Σ_i Huber_δ( LSE(a − α·log N_i, b − β·log D_i, e) − log L_i ),   δ = 1e-3
//! A = e^a, B = e^b, E = e^e
//! ```
//!
//! by L-BFGS (argmin, More–Thuente line search) from every point of the grid α, β ∈ {0, 0.5, …, 2},
//! e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25} (4500 starts, run in parallel), keeping the best.
//! The machinery here is the form's, not Chinchilla's: the objective sums the Huber loss of any
//! [`LawForm`]'s log-space prediction, and starts from its grid.
//! The objective is the **sum** over points, not the mean: a mean shrinks the gradient by the
//! number of points and L-BFGS's tolerances then stop it early (Besiroglu et al. 2024 traced the
//! original paper's estimates to that).
//!
//! From the fit, with C = 6ND, the compute-optimal allocation:
//! `N_opt = G·(C/6)^a`, `D_opt = G⁻¹·(C/6)^b`, `G = (αA/(βB))^(1/(α+β))`, `a = β/(α+β)`,
//! `b = α/(α+β)`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::form::{Form, LawForm};
use super::lbfgs::{self, Smooth, Stopping};

/// One observation: non-embedding parameters, training tokens, final loss (nats).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub n: f64,
    pub d: f64,
    pub loss: f64,
}

/// A fitted law: its form and its parameters (in the form's order; see [`super::form`]). In JSON:
/// `{"form": "chinchilla", "e": …, "a": …, "b": …, "alpha": …, "beta": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LawRepr", into = "LawRepr")]
pub struct Law {
    form: Form,
    parameters: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
struct LawRepr {
    #[serde(default)]
    form: Form,
    #[serde(flatten)]
    values: std::collections::BTreeMap<String, f64>,
}

impl TryFrom<LawRepr> for Law {
    type Error = String;
    fn try_from(r: LawRepr) -> Result<Self, String> {
        let names = r.form.law_form().parameters();
        let parameters =
            names.iter().map(|(key, _)| r.values.get(*key).copied().ok_or_else(|| format!("the {:?} law has no `{key}`", r.form))).collect::<Result<_, _>>()?;
        Ok(Self { form: r.form, parameters })
    }
}

impl From<Law> for LawRepr {
    fn from(law: Law) -> Self {
        let values = law.named().into_iter().map(|(key, _, v)| (key.to_string(), v)).collect();
        Self { form: law.form, values }
    }
}

impl Law {
    /// Chinchilla's law E + A/N^α + B/D^β.
    pub fn chinchilla(e: f64, a: f64, b: f64, alpha: f64, beta: f64) -> Self {
        Self { form: Form::Chinchilla, parameters: vec![e, a, b, alpha, beta] }
    }

    /// A law of `form` from its parameters, in the form's order.
    pub fn new(form: Form, parameters: Vec<f64>) -> Self {
        assert_eq!(parameters.len(), form.law_form().parameters().len(), "the {form:?} law's parameters");
        Self { form, parameters }
    }

    /// From the fit's coordinates θ.
    pub fn from_theta(form: Form, theta: &[f64]) -> Self {
        Self { form, parameters: form.law_form().parameters_of(theta) }
    }

    pub fn theta(&self) -> Vec<f64> {
        self.shape().theta(&self.parameters)
    }

    pub fn form(&self) -> Form {
        self.form
    }

    fn shape(&self) -> &'static dyn LawForm {
        self.form.law_form()
    }

    /// (key, symbol, value) of every parameter, in the form's order.
    pub fn named(&self) -> Vec<(&'static str, &'static str, f64)> {
        self.shape().parameters().iter().zip(&self.parameters).map(|(&(key, symbol), &v)| (key, symbol, v)).collect()
    }

    /// One parameter by its key ("alpha").
    pub fn get(&self, key: &str) -> Option<f64> {
        self.named().into_iter().find(|(k, _, _)| *k == key).map(|(_, _, v)| v)
    }

    /// Predicted loss at (N, D).
    pub fn loss(&self, n: f64, d: f64) -> f64 {
        self.shape().loss(&self.parameters, n, d)
    }

    /// Whether the parameters are in a plausible range (see [`LawForm::is_plausible`]).
    pub fn is_plausible(&self) -> bool {
        self.shape().is_plausible(&self.parameters)
    }

    /// N_opt ∝ C^a.
    pub fn n_exponent(&self) -> f64 {
        self.shape().allocation_exponents(&self.parameters).0
    }

    /// D_opt ∝ C^b.
    pub fn d_exponent(&self) -> f64 {
        self.shape().allocation_exponents(&self.parameters).1
    }

    /// The loss-minimising (N, D) for training compute C = 6ND.
    pub fn compute_optimal(&self, flops: f64) -> (f64, f64) {
        self.shape().compute_optimal(&self.parameters, flops)
    }

    /// The D at which `n` is compute-optimal.
    pub fn optimal_tokens_for(&self, n: f64) -> f64 {
        self.shape().optimal_tokens_for(&self.parameters, n)
    }

    pub fn irreducible_loss(&self) -> Option<f64> {
        self.shape().irreducible_loss(&self.parameters)
    }

    /// "E = 1.690, α = 0.340, β = 0.280".
    pub fn summary(&self) -> String {
        self.shape().summary(&self.parameters)
    }
}

/// What to fit: a form, and the coordinates of θ held at given values (`--fix e=2.485`). The
/// optimiser moves the free coordinates only.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSpec {
    pub form: Form,
    /// (θ index, value), sorted by index.
    pub fixed: Vec<(usize, f64)>,
}

impl From<Form> for FitSpec {
    fn from(form: Form) -> Self {
        Self { form, fixed: Vec::new() }
    }
}

impl FitSpec {
    /// Hold the parameters `fixed` (keys as in the form's JSON, values in the law's own units).
    pub fn new(form: Form, fixed: &std::collections::BTreeMap<String, f64>) -> anyhow::Result<Self> {
        let f = form.law_form();
        let keys: Vec<&str> = f.parameters().iter().map(|(k, _)| *k).collect();
        let mut held = Vec::new();
        for (key, &value) in fixed {
            let Some(index) = keys.iter().position(|k| k == key) else {
                anyhow::bail!("--fix {key}: the {} law has no parameter `{key}`; it has {}", f.name(), keys.join(", "))
            };
            let mut p = vec![1.0; keys.len()];
            p[index] = value;
            let theta_index = f.theta_index(index);
            let theta = f.theta(&p)[theta_index];
            anyhow::ensure!(theta.is_finite(), "--fix {key}={value}: not a value the {} law can take", f.name());
            held.push((theta_index, theta));
        }
        held.sort_by_key(|h| h.0);
        anyhow::ensure!(held.len() < keys.len(), "--fix holds every parameter of the law: nothing is left to fit");
        Ok(Self { form, fixed: held })
    }

    /// θ from the free coordinates.
    fn expand(&self, free: &[f64]) -> Vec<f64> {
        let mut theta = free.to_vec();
        for &(i, v) in &self.fixed {
            theta.insert(i, v);
        }
        theta
    }

    /// The free coordinates of θ.
    fn project(&self, theta: &[f64]) -> Vec<f64> {
        theta.iter().enumerate().filter(|(i, _)| !self.fixed.iter().any(|f| f.0 == *i)).map(|(_, &v)| v).collect()
    }
}

/// The summed Huber objective in log space, with its analytic gradient, for one law form.
pub struct Objective {
    form: &'static dyn LawForm,
    spec: FitSpec,
    log_n: Vec<f64>,
    log_d: Vec<f64>,
    log_loss: Vec<f64>,
    pub delta: f64,
    /// Divide the objective by the number of points (only to show why one must not).
    pub mean: bool,
}

pub(crate) fn huber(r: f64, delta: f64) -> (f64, f64) {
    if r.abs() <= delta {
        (0.5 * r * r, r)
    } else {
        (delta * (r.abs() - 0.5 * delta), delta * r.signum())
    }
}

impl Objective {
    pub fn new(spec: impl Into<FitSpec>, points: &[Point], delta: f64) -> Self {
        let spec = spec.into();
        Self {
            form: spec.form.law_form(),
            spec,
            log_n: points.iter().map(|p| p.n.ln()).collect(),
            log_d: points.iter().map(|p| p.d.ln()).collect(),
            log_loss: points.iter().map(|p| p.loss.ln()).collect(),
            delta,
            mean: false,
        }
    }

    /// Objective and gradient at the free coordinates of θ (all of θ when nothing is fixed).
    pub fn evaluate(&self, free: &[f64]) -> (f64, Vec<f64>) {
        if self.spec.fixed.is_empty() {
            return self.evaluate_theta(free);
        }
        let (cost, grad) = self.evaluate_theta(&self.spec.expand(free));
        (cost, self.spec.project(&grad))
    }

    /// Objective and gradient at θ in one pass.
    fn evaluate_theta(&self, t: &[f64]) -> (f64, Vec<f64>) {
        let mut cost = 0.0;
        let mut grad = vec![0.0; t.len()];
        let mut point_grad = vec![0.0; t.len()];
        for i in 0..self.log_n.len() {
            let log_loss = self.form.log_loss(t, self.log_n[i], self.log_d[i], &mut point_grad);
            let (h, dh) = huber(log_loss - self.log_loss[i], self.delta);
            cost += h;
            grad.iter_mut().zip(&point_grad).for_each(|(g, p)| *g += dh * p);
        }
        if self.mean {
            let n = self.log_n.len() as f64;
            cost /= n;
            grad.iter_mut().for_each(|g| *g /= n);
        }
        (cost, grad)
    }
}

impl Smooth for Objective {
    fn value_and_gradient(&self, free: &[f64]) -> (f64, Vec<f64>) {
        self.evaluate(free)
    }
}

/// One L-BFGS run from `start` (a full θ; its fixed coordinates are ignored); returns (θ,
/// objective, iterations).
pub fn minimise(spec: impl Into<FitSpec>, points: &[Point], delta: f64, mean: bool, start: &[f64], max_iters: u64) -> Option<(Vec<f64>, f64, u64)> {
    let spec = spec.into();
    let mut objective = Objective::new(spec.clone(), points, delta);
    objective.mean = mean;
    let stopping = Stopping { tolerance_grad: 1e-9, tolerance_cost: 1e-12, max_iters, max_evaluations: 50_000 };
    let (free, cost, iterations) = lbfgs::minimise(&objective, spec.project(start), stopping)?;
    Some((spec.expand(&free), cost, iterations))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LawFit {
    pub law: Law,
    /// The summed Huber objective at the optimum.
    pub objective: f64,
    pub starts: usize,
    /// Starts that ended within 1e-6 (relative) of the best objective.
    pub starts_in_best_basin: usize,
    pub points: usize,
    pub delta: f64,
    /// log L_i − log L̂_i, in the order of the points.
    pub log_residuals: Vec<f64>,
}

/// Fit from every start of `starts` (full θ; with fixed coordinates, the distinct free parts), in
/// parallel; keep the best.
pub fn fit_from(spec: impl Into<FitSpec>, points: &[Point], delta: f64, starts: &[Vec<f64>]) -> Option<LawFit> {
    let spec = spec.into();
    let form = spec.form;
    let mut starts: Vec<Vec<f64>> = starts.iter().map(|s| spec.expand(&spec.project(s))).collect();
    if !spec.fixed.is_empty() {
        // Starts that differed only in a fixed coordinate are one start now.
        starts.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        starts.dedup();
    }
    let results: Vec<(Vec<f64>, f64)> =
        starts.par_iter().filter_map(|s| minimise(spec.clone(), points, delta, false, s, 1000).map(|(t, c, _)| (t, c))).collect();
    let (theta, objective) = results.iter().filter(|(t, _)| form.law_form().admissible(t)).min_by(|x, y| x.1.total_cmp(&y.1))?;
    let objective = *objective;
    let in_basin = results.iter().filter(|(_, c)| (c - objective).abs() <= 1e-6 * objective.abs().max(1e-12)).count();
    let law = Law::from_theta(form, theta);
    let log_residuals = points.iter().map(|p| p.loss.ln() - law.loss(p.n, p.d).ln()).collect();
    Some(LawFit { law, objective, starts: starts.len(), starts_in_best_basin: in_basin, points: points.len(), delta, log_residuals })
}

/// Fit from the form's full start grid.
pub fn fit(spec: impl Into<FitSpec>, points: &[Point], delta: f64) -> Option<LawFit> {
    let spec = spec.into();
    let starts = spec.form.law_form().start_grid();
    fit_from(spec, points, delta, &starts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn synthetic(law: &Law, noise: f64, seed: u64) -> Vec<Point> {
        let mut rng = Rng::new(seed);
        let mut points = Vec::new();
        for i in 0..8 {
            let n = 1e7 * 2f64.powi(i);
            for j in 0..6 {
                let d = n * 5.0 * 2f64.powi(j);
                let loss = law.loss(n, d) * (noise * rng.normal()).exp();
                points.push(Point { n, d, loss });
            }
        }
        points
    }

    #[test]
    fn recovers_known_laws_exactly_without_noise() {
        for truth in
            [Law::chinchilla(1.69, 406.4, 410.7, 0.34, 0.28), Law::chinchilla(1.82, 482.0, 2085.4, 0.35, 0.37), Law::chinchilla(2.5, 50.0, 900.0, 0.25, 0.45)]
        {
            let points = synthetic(&truth, 0.0, 0);
            let fit = fit(Form::Chinchilla, &points, 1e-3).unwrap();
            let l = fit.law;
            for ((_, name, got), (_, _, want)) in l.named().into_iter().zip(truth.named()) {
                assert!((got - want).abs() / want < 1e-3, "{name}: fitted {got}, true {want}");
            }
            assert!(fit.starts_in_best_basin > 1);
        }
    }

    #[test]
    fn the_summed_objective_converges_where_the_mean_stops_early() {
        let truth = Law::chinchilla(1.69, 406.4, 410.7, 0.34, 0.28);
        let points = synthetic(&truth, 0.0, 0);
        let start = [5.0, 5.0, 0.5, 0.5, 0.5];
        let (sum_theta, _, _) = minimise(Form::Chinchilla, &points, 1e-3, false, &start, 1000).unwrap();
        let (mean_theta, _, _) = minimise(Form::Chinchilla, &points, 1e-3, true, &start, 1000).unwrap();
        let objective = Objective::new(Form::Chinchilla, &points, 1e-3);
        let (sum_cost, _) = objective.evaluate(&sum_theta);
        let (mean_cost, _) = objective.evaluate(&mean_theta);
        assert!(sum_cost < 1e-6, "summed objective should reach the exact law: {sum_cost}");
        assert!(mean_cost > 10.0 * sum_cost.max(1e-9), "mean-scaled fit should stop early: {mean_cost} vs {sum_cost}");
        let alpha_err = |t: &[f64]| (t[3] - truth.get("alpha").unwrap()).abs();
        assert!(alpha_err(&sum_theta) < alpha_err(&mean_theta));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let truth = Law::chinchilla(1.8, 400.0, 2000.0, 0.35, 0.36);
        let points = synthetic(&truth, 0.05, 3);
        let objective = Objective::new(Form::Chinchilla, &points, 0.05);
        let t = [6.0, 7.5, 0.5, 0.33, 0.38];
        let (_, g) = objective.evaluate(&t);
        for k in 0..5 {
            let h = 1e-6;
            let (mut up, mut down) = (t.to_vec(), t.to_vec());
            up[k] += h;
            down[k] -= h;
            let fd = (objective.evaluate(&up).0 - objective.evaluate(&down).0) / (2.0 * h);
            assert!((fd - g[k]).abs() < 1e-4 * (1.0 + fd.abs()), "∂/∂θ{k}: analytic {}, numeric {fd}", g[k]);
        }
    }

    #[test]
    fn compute_optimal_matches_brute_force_minimisation_at_fixed_compute() {
        let law = Law::chinchilla(1.82, 482.0, 2085.4, 0.348, 0.366);
        for flops in [1e21, 5.76e23] {
            let (n_opt, d_opt) = law.compute_optimal(flops);
            assert!((6.0 * n_opt * d_opt / flops - 1.0).abs() < 1e-9);
            // Scan log N finely at fixed C.
            let best_n = (0..200_000)
                .map(|i| 10f64.powf(6.0 + 8.0 * i as f64 / 200_000.0))
                .min_by(|x, y| law.loss(*x, flops / (6.0 * x)).total_cmp(&law.loss(*y, flops / (6.0 * y))))
                .unwrap();
            assert!((best_n / n_opt - 1.0).abs() < 1e-3, "C = {flops:e}: scan {best_n:e}, formula {n_opt:e}");
        }
    }

    #[test]
    fn recovers_a_kaplan_law_too() {
        // Kaplan et al.'s published constants, on the same (N, D) grid.
        let truth = Law::new(Form::Kaplan, vec![8.8e13, 5.4e13, 0.076, 0.095]);
        let mut points = Vec::new();
        for i in 0..8 {
            let n = 1e7 * 2f64.powi(i);
            for j in 0..6 {
                let d = n * 5.0 * 2f64.powi(j);
                points.push(Point { n, d, loss: truth.loss(n, d) });
            }
        }
        let fit = fit(Form::Kaplan, &points, 1e-3).unwrap();
        for ((_, name, got), (_, _, want)) in fit.law.named().into_iter().zip(truth.named()) {
            assert!((got / want - 1.0).abs() < 0.02, "{name}: fitted {got}, true {want}");
        }
        assert!(fit.log_residuals.iter().all(|r| r.abs() < 1e-6));
    }

    #[test]
    fn a_fixed_parameter_stays_fixed_and_the_rest_are_fitted() {
        let truth = Law::chinchilla(2.485, 300.0, 900.0, 0.3, 0.4);
        let points = synthetic(&truth, 0.0, 0);
        // The exact floor: the other four are recovered.
        let spec = FitSpec::new(Form::Chinchilla, &[("e".to_string(), 2.485)].into()).unwrap();
        let fit = fit(spec, &points, 1e-3).unwrap();
        assert_eq!(fit.law.get("e"), Some(2.485));
        for key in ["a", "b", "alpha", "beta"] {
            let (got, want) = (fit.law.get(key).unwrap(), truth.get(key).unwrap());
            assert!((got / want - 1.0).abs() < 1e-3, "{key}: fitted {got}, true {want}");
        }
        assert_eq!(fit.starts, 900, "the 4500 starts differ in e in 5 ways");
        // A wrong floor is held all the same, and the fit is worse.
        let wrong = fit_law_with_e(&points, 1.5);
        assert_eq!(wrong.law.get("e"), Some(1.5));
        assert!(wrong.objective > 10.0 * fit.objective.max(1e-12));
        let e = FitSpec::new(Form::Chinchilla, &[("E".to_string(), 1.0)].into()).unwrap_err().to_string();
        assert!(e.contains("no parameter `E`") && e.contains("e, a, b, alpha, beta"), "{e}");
    }

    fn fit_law_with_e(points: &[Point], e: f64) -> LawFit {
        fit(FitSpec::new(Form::Chinchilla, &[("e".to_string(), e)].into()).unwrap(), points, 1e-3).unwrap()
    }
}
