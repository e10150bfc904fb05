//! The shape of a schedule-aware loss law: the extension point for curve-law forms, as
//! [`crate::fit::form::LawForm`] is for data-model laws. Both forms here share one frame,
//!
//! ```text
//! L(t) = L₀ + A·S₁(t)^(−α) − K·h_φ(t)
//! ```
//!
//! a power law in the area under the schedule S₁(t) = Σ_{τ≤t} η_τ (warmup included), less a decay
//! term h_φ that grows as the learning rate comes down. L₀, A and K enter linearly, α and the
//! form's own φ do not; a form says only what h_φ is, with its gradient. The fit (`fit.rs`) does
//! the rest, for every form alike.
//!
//! **Multi-power law** (Luo et al. 2025, arXiv 2503.12811, Eq. 5), K = B, φ = (C, β, γ):
//!
//! ```text
//! h(t) = Σ_{k=1}^{t} (η_{k−1} − η_k) · G(η_k^(−γ) · S_k(t)),   G(x) = 1 − (C·x + 1)^(−β),
//! S_k(t) = Σ_{τ=k}^{t} η_τ
//! ```
//!
//! Every decrement of the rate lowers the loss by an amount that saturates (a power law in the area
//! trained since, measured in steps at that smaller rate).
//!
//! **Annealing law** (Tissue et al. 2024, arXiv 2408.11029, Eq. 1), K = C, φ = (λ):
//!
//! ```text
//! h(t) = S₂(t) = Σ_{i=1}^{t} m_i,   m_i = λ·m_{i−1} + (η_{i−1} − η_i)
//!      = Σ_k (η_{k−1} − η_k) · (1 − λ^(t−k+1)) / (1 − λ)
//! ```
//!
//! the annealing area with momentum λ (the paper fixes λ between 0.99 and 0.999; here it is
//! fitted, as τ = 1/(1 − λ) steps, since a wind tunnel's runs are hundreds of steps, not tens of
//! thousands).
//!
//! In both, k runs over the steps after the warmup (η₀ is the peak rate), so the warmup only
//! enters through S₁.
//!
//! **Cost.** A form computes h_φ at every point of a fit at once ([`CurveForm::decay_terms`]), from
//! what [`super::decay`] built once: the annealing law by its momentum recursion, one pass over
//! each run's steps (exact, and as cheap as the run is long); the multi-power law by its sum over
//! each point's decrements, in blocks far from the point on long runs (with the bound stated in
//! `decay.rs`), the points in parallel.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::decay::Decays;
pub use super::decay::Decrement;

/// What a curve-law form must provide. φ is the form's own coordinates (what the fit moves in).
pub trait CurveForm: Sync {
    /// The form's name in options and reports ("multi-power").
    fn name(&self) -> &'static str;
    /// The formula of h_φ, for reports.
    fn formula(&self) -> &'static str;
    /// (key in JSON, symbol in text) of K, the decay term's scale.
    fn scale(&self) -> (&'static str, &'static str);
    /// (key, symbol) of φ's parameters as reported.
    fn shape_parameters(&self) -> &'static [(&'static str, &'static str)];
    /// The reported values of φ.
    fn shape_values(&self, phi: &[f64]) -> Vec<f64>;
    /// h_φ at every point of `decays` into `h`, and ∂h/∂φ into `grad` (point i's at
    /// `grad[i·n..(i + 1)·n]`, n the number of φ's parameters). Points of a run that `wanted` says
    /// is not needed (a bootstrap replicate that did not draw it) may be left as they are.
    fn decay_terms(&self, phi: &[f64], decays: &Decays, wanted: &[bool], h: &mut [f64], grad: &mut [f64]);
    /// The values of φ the fit's starts are drawn from.
    fn shape_starts(&self) -> Vec<Vec<f64>>;
    /// Whether φ is a law at all.
    fn admissible(&self, phi: &[f64]) -> bool;
    /// The largest h_φ can be for a rate brought from the peak to zero: a law whose K times this
    /// exceeds L₀ would predict a negative loss for a long enough decay, and is refused.
    fn largest_decay_term(&self, phi: &[f64]) -> f64;
    /// For each of φ's parameters: whether it sits at a bound of its range, or has run so far
    /// towards an end of it (a factor of e⁹ ≈ 8,000 from 1 in a log coordinate) that the fit
    /// has stopped pinning it: `fit curve` reports such a parameter as not identified.
    fn at_edge(&self, phi: &[f64]) -> Vec<bool>;
}

/// How far a log coordinate of φ may run (|ln x| ≤ 9: x within 1.2e-4 and 8,100) before
/// [`CurveForm::at_edge`] calls it at the edge of its range.
pub const EDGE_OF_LOG_RANGE: f64 = 9.0;

/// The curve-law forms there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CurveFormKind {
    #[default]
    MultiPower,
    Annealing,
}

impl CurveFormKind {
    pub fn form(self) -> &'static dyn CurveForm {
        match self {
            Self::MultiPower => &MultiPower,
            Self::Annealing => &Annealing,
        }
    }
}

impl std::str::FromStr for CurveFormKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "multi-power" | "mpl" => Ok(Self::MultiPower),
            "annealing" => Ok(Self::Annealing),
            _ => Err(format!("unknown curve law `{s}`; use multi-power (Luo et al. 2025) or annealing (Tissue et al. 2024)")),
        }
    }
}

impl std::fmt::Display for CurveFormKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.form().name())
    }
}

/// The multi-power law's decay term; φ = (ln C, ln β, u) with γ = Γ·σ(u), σ the logistic
/// function: β is positive and γ between 0 and Γ = 2 (the paper fits γ ≈ 0.5–0.6; a negative γ
/// would make a smaller rate saturate *faster*, and lets a fit on few decays run away).
pub struct MultiPower;

impl MultiPower {
    /// The largest γ.
    pub const GAMMA_MAX: f64 = 2.0;

    fn gamma(u: f64) -> (f64, f64) {
        let s = 1.0 / (1.0 + (-u).exp());
        (Self::GAMMA_MAX * s, Self::GAMMA_MAX * s * (1.0 - s))
    }
}

impl CurveForm for MultiPower {
    fn name(&self) -> &'static str {
        "multi-power"
    }

    fn formula(&self) -> &'static str {
        "L(t) = L0 + A·S1^(−α) − B·Σ_k (η_{k−1} − η_k)·[1 − (C·η_k^(−γ)·S_k(t) + 1)^(−β)]"
    }

    fn scale(&self) -> (&'static str, &'static str) {
        ("b", "B")
    }

    fn shape_parameters(&self) -> &'static [(&'static str, &'static str)] {
        &[("c", "C"), ("beta", "β"), ("gamma", "γ")]
    }

    fn shape_values(&self, phi: &[f64]) -> Vec<f64> {
        vec![phi[0].exp(), phi[1].exp(), Self::gamma(phi[2]).0]
    }

    fn decay_terms(&self, phi: &[f64], decays: &Decays, wanted: &[bool], h: &mut [f64], grad: &mut [f64]) {
        let shape = MultiPowerShape::of(phi);
        h.par_iter_mut().zip(grad.par_chunks_mut(3)).enumerate().with_min_len(16).for_each(|(i, (h, grad))| {
            if wanted[decays.run_of(i)] {
                *h = shape.sum(decays.decrements(i), grad);
            }
        });
    }

    /// C ∈ {0.01, 0.1, 1, 10}, β ∈ {0.3, 0.6, 1.2}, γ ∈ {0.1, 0.5}: 24 starts.
    fn shape_starts(&self) -> Vec<Vec<f64>> {
        let mut starts = Vec::new();
        for c in [0.01f64, 0.1, 1.0, 10.0] {
            for beta in [0.3f64, 0.6, 1.2] {
                for gamma in [0.1, 0.5] {
                    let s: f64 = gamma / Self::GAMMA_MAX;
                    starts.push(vec![c.ln(), beta.ln(), (s / (1.0 - s)).ln()]);
                }
            }
        }
        starts
    }

    fn admissible(&self, phi: &[f64]) -> bool {
        phi.iter().all(|x| x.is_finite())
    }

    /// G < 1, so h < Σ (η_{k−1} − η_k) = 1 in units of the peak.
    fn largest_decay_term(&self, _phi: &[f64]) -> f64 {
        1.0
    }

    /// C and β in their log coordinates; γ within 2% of Γ of either bound (0 and Γ).
    fn at_edge(&self, phi: &[f64]) -> Vec<bool> {
        let gamma = Self::gamma(phi[2]).0 / Self::GAMMA_MAX;
        vec![phi[0].abs() > EDGE_OF_LOG_RANGE, phi[1].abs() > EDGE_OF_LOG_RANGE, !(0.02..=0.98).contains(&gamma)]
    }
}

/// C, β and γ of one φ, with dγ/du: what every point's sum reads.
struct MultiPowerShape {
    c: f64,
    beta: f64,
    gamma: f64,
    dgamma: f64,
}

impl MultiPowerShape {
    fn of(phi: &[f64]) -> Self {
        let (gamma, dgamma) = MultiPower::gamma(phi[2]);
        Self { c: phi[0].exp(), beta: phi[1].exp(), gamma, dgamma }
    }

    /// h at one point from its decrements, ∂h/∂φ into `grad`. With x = η_k^(−γ)·S_k,
    /// u = C·x + 1 and P = u^(−β): G = 1 − P, ∂G/∂ln C = β·P·C·x/u, ∂G/∂β = P·ln u,
    /// ∂G/∂γ = −β·P·C·x·ln η_k / u (then times β and dγ/du for the coordinates). A rate of zero
    /// has G = 1 (the limit for γ > 0), which no φ moves.
    fn sum(&self, decrements: &[Decrement], grad: &mut [f64]) -> f64 {
        let Self { c, beta, gamma, dgamma } = *self;
        grad.fill(0.0);
        let mut h = 0.0;
        for d in decrements {
            if d.ln_lr == f64::NEG_INFINITY {
                h += d.drop;
                continue;
            }
            let cx = c * (-gamma * d.ln_lr).exp() * d.area_since;
            let u = cx + 1.0;
            let ln_u = u.ln();
            let p = (-beta * ln_u).exp();
            h += d.drop * (1.0 - p);
            let common = d.drop * beta * p * cx / u;
            grad[0] += common;
            grad[1] += d.drop * p * ln_u * beta;
            grad[2] -= common * d.ln_lr * dgamma;
        }
        h
    }
}

/// The annealing law's decay term; φ = (ln τ), λ = 1 − 1/τ.
pub struct Annealing;

impl CurveForm for Annealing {
    fn name(&self) -> &'static str {
        "annealing"
    }

    fn formula(&self) -> &'static str {
        "L(t) = L0 + A·S1^(−α) − C·S2,  S2 = Σ_k (η_{k−1} − η_k)·(1 − λ^(t−k+1))/(1 − λ)"
    }

    fn scale(&self) -> (&'static str, &'static str) {
        ("c", "C")
    }

    fn shape_parameters(&self) -> &'static [(&'static str, &'static str)] {
        &[("lambda", "λ")]
    }

    fn shape_values(&self, phi: &[f64]) -> Vec<f64> {
        vec![1.0 - (-phi[0]).exp()]
    }

    /// The recursion of the paper over each run's steps, m_i = λ·m_{i−1} + (η_{i−1} − η_i) and
    /// S₂ = Σ m_i, with m′ = ∂m/∂λ = m_{i−1} + λ·m′_{i−1} beside it; ∂h/∂ln τ = (∂S₂/∂λ)/τ. A λ
    /// below 0 (τ < 1) is no law: NaN, as the closed form gives.
    fn decay_terms(&self, phi: &[f64], decays: &Decays, wanted: &[bool], h: &mut [f64], grad: &mut [f64]) {
        let tau = phi[0].exp();
        let lambda = 1.0 - 1.0 / tau;
        if lambda < 0.0 {
            h.fill(f64::NAN);
            grad.fill(f64::NAN);
            return;
        }
        decays.by_run(h, grad, 1).into_par_iter().enumerate().filter(|(r, _)| wanted[*r]).for_each(|(_, (run, h, grad))| {
            let (mut m, mut dm, mut s2, mut ds2) = (0.0, 0.0, 0.0, 0.0);
            let mut step = 0;
            for (i, &t) in run.steps.iter().enumerate() {
                if t < step {
                    (m, dm, s2, ds2, step) = (0.0, 0.0, 0.0, 0.0, 0);
                }
                for &drop in &run.drops[step..t] {
                    dm = m + lambda * dm;
                    m = lambda * m + drop;
                    s2 += m;
                    ds2 += dm;
                }
                step = t;
                h[i] = s2;
                grad[i] = ds2 / tau;
            }
        });
    }

    /// τ ∈ {2, 5, 20, 50, 200, 1000} steps.
    fn shape_starts(&self) -> Vec<Vec<f64>> {
        [2.0f64, 5.0, 20.0, 50.0, 200.0, 1000.0].iter().map(|t| vec![t.ln()]).collect()
    }

    fn admissible(&self, phi: &[f64]) -> bool {
        phi[0].is_finite() && phi[0] > 0.0
    }

    /// (1 − λⁿ)/(1 − λ) < τ, so h < τ in units of the peak.
    fn largest_decay_term(&self, phi: &[f64]) -> f64 {
        phi[0].exp()
    }

    /// τ = e^φ steps: past e⁹ ≈ 8,100 steps, or at its bound of one step (λ = 0).
    fn at_edge(&self, phi: &[f64]) -> Vec<bool> {
        vec![phi[0] > EDGE_OF_LOG_RANGE || phi[0] < 1e-3]
    }
}

#[cfg(test)]
mod tests {
    use super::super::decay::{Schedule, BLOCK_WIDTH};
    use super::*;

    /// Warmup over 3 steps, stable, a linear decay with a rise in it, and a rate that reaches 0.
    fn rates() -> Vec<f64> {
        let mut lr = vec![0.2, 0.6, 1.0, 1.0, 1.0];
        lr.extend((1..=12).map(|k| 1.0 - 0.07 * k as f64));
        lr.extend([0.3, 0.1, 0.0, 0.0]);
        lr
    }

    fn decays_of(lr: &[f64], steps: &[usize]) -> Decays {
        let mut decays = Decays::default();
        decays.push_run(Schedule::new(lr, 1.0, super::super::data::warmup_steps(lr)), steps.to_vec());
        decays
    }

    /// h and ∂h/∂φ at every point.
    fn terms(kind: CurveFormKind, phi: &[f64], decays: &Decays) -> (Vec<f64>, Vec<f64>) {
        let mut h = vec![0.0; decays.len()];
        let mut grad = vec![0.0; decays.len() * phi.len()];
        kind.form().decay_terms(phi, decays, &vec![true; decays.runs().len()], &mut h, &mut grad);
        (h, grad)
    }

    /// ∂h/∂φ of every form against central differences, at every point.
    #[test]
    fn every_form_has_the_gradient_of_its_decay_term() {
        let decays = decays_of(&rates(), &[2, 5, 8, 13, 17, 19, 21]);
        for (kind, phi) in [(CurveFormKind::MultiPower, vec![-0.7, -0.2, 0.4]), (CurveFormKind::Annealing, vec![2.3])] {
            let (_, grad) = terms(kind, &phi, &decays);
            for k in 0..phi.len() {
                let step = 1e-6;
                let (mut up, mut down) = (phi.clone(), phi.clone());
                up[k] += step;
                down[k] -= step;
                let (h_up, h_down) = (terms(kind, &up, &decays).0, terms(kind, &down, &decays).0);
                for i in 0..decays.len() {
                    let fd = (h_up[i] - h_down[i]) / (2.0 * step);
                    let analytic = grad[i * phi.len() + k];
                    assert!((fd - analytic).abs() < 1e-6 * (1.0 + fd.abs()), "{kind:?} point {i} ∂h/∂φ{k}: analytic {analytic}, numeric {fd}");
                }
            }
        }
    }

    /// The paper's closed form of S₂ at step t, summed over every decrement.
    fn annealing_closed_form(lr: &[f64], t: usize, tau: f64) -> f64 {
        let lambda: f64 = 1.0 - 1.0 / tau;
        let first = (super::super::data::warmup_steps(lr) + 1).max(2);
        (first..=t).map(|k| (lr[k - 2] - lr[k - 1]) * (1.0 - lambda.powi((t - k + 1) as i32)) / (1.0 - lambda)).sum()
    }

    /// The recursion over steps gives the closed form at every point (also at steps given out of
    /// order), on a short run and on a cosine of 3,000 steps.
    #[test]
    fn annealing_recursion_is_the_closed_form() {
        let cosine: Vec<f64> = (1..=3000).map(|k| 0.55 + 0.45 * (std::f64::consts::PI * k as f64 / 3000.0).cos()).collect();
        for (lr, steps) in [(rates(), vec![1, 6, 9, 17, 21, 12]), (cosine, vec![10, 700, 2999, 3000, 1500])] {
            let decays = decays_of(&lr, &steps);
            for tau in [1.5, 20.0, 800.0] {
                let (h, _) = terms(CurveFormKind::Annealing, &[f64::ln(tau)], &decays);
                for (&t, h) in steps.iter().zip(h) {
                    let want = annealing_closed_form(&lr, t, tau);
                    assert!((h - want).abs() <= 1e-12 * (1.0 + want.abs()), "τ {tau} step {t}: recursion {h}, closed form {want}");
                }
            }
        }
    }

    /// What the blocks' error bound (decay.rs) rests on: as a function of v = ln x,
    /// G = 1 − (C·e^v + 1)^(−β) has |G′| < 1/e and |G″| < 1/3 for every C and β. With
    /// w = C·x/(C·x + 1): G′ = β·w·(1 − w)^β and G″ = G′·(1 − (β + 1)·w).
    #[test]
    fn the_multi_power_terms_slope_and_curvature_are_bounded() {
        let (mut slope, mut curvature) = (0.0f64, 0.0f64);
        for i in 0..=600 {
            let beta = 10f64.powf(-3.0 + 7.0 * i as f64 / 600.0);
            for j in 1..4000 {
                let w = j as f64 / 4000.0;
                let g1 = beta * w * (1.0 - w).powf(beta);
                slope = slope.max(g1);
                curvature = curvature.max((g1 * (1.0 - (beta + 1.0) * w)).abs());
            }
        }
        assert!(slope < 1.0 / std::f64::consts::E && curvature < 1.0 / 3.0, "|G′| ≤ {slope}, |G″| ≤ {curvature}");
    }

    /// On long runs (a cosine logged at every step, a WSD decay to zero logged every 50 steps and
    /// read linearly between), the multi-power term in blocks is within the stated bound of the sum over
    /// every decrement, for C, β and γ across their range.
    #[test]
    fn multi_power_blocks_are_within_their_bound_of_the_direct_sum() {
        let n = 20_000;
        let cosine: Vec<f64> = (1..=n).map(|k| 0.1 + 0.45 * (1.0 + (std::f64::consts::PI * k as f64 / n as f64).cos())).collect();
        // 1-sqrt to zero over the last 6,000 steps, logged every 50 steps.
        let logged = |k: usize| 1.0 - (k.saturating_sub(14_000).min(6_000) as f64 / 6_000.0).sqrt();
        let wsd: Vec<f64> = (1..=n).map(|k| logged(k / 50 * 50) + (logged(k / 50 * 50 + 50) - logged(k / 50 * 50)) * (k % 50) as f64 / 50.0).collect();
        let bound = BLOCK_WIDTH * BLOCK_WIDTH / 10.0;
        for lr in [cosine, wsd] {
            let schedule = Schedule::new(&lr, 1.0, super::super::data::warmup_steps(&lr));
            let declined: f64 = (2..=n).map(|k| (lr[k - 2] - lr[k - 1]).abs()).sum();
            for t in [7_000, 15_000, n] {
                let (mut direct, mut blocks) = (Vec::new(), Vec::new());
                schedule.direct(t, &mut direct);
                schedule.decrements_before(t, &mut blocks);
                for (c, beta, gamma) in [(0.01, 0.3, 0.1), (1.0, 0.6, 0.5), (10.0, 1.2, 1.9), (0.3, 8.0, 1.0), (100.0, 0.05, 0.02)] {
                    let s: f64 = gamma / MultiPower::GAMMA_MAX;
                    let shape = MultiPowerShape::of(&[f64::ln(c), f64::ln(beta), (s / (1.0 - s)).ln()]);
                    let (exact, grouped) = (shape.sum(&direct, &mut [0.0; 3]), shape.sum(&blocks, &mut [0.0; 3]));
                    assert!((exact - grouped).abs() <= bound * declined, "step {t}, C {c} β {beta} γ {gamma}: {grouped} against {exact}");
                }
            }
        }
    }
}
