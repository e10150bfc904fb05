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

use serde::{Deserialize, Serialize};

/// One decrement of the learning rate after the warmup, seen from a later step t.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decrement {
    /// η_{k−1} − η_k (relative to the fit's reference rate).
    pub drop: f64,
    /// ln η_k; −∞ where the rate reached zero.
    pub ln_lr: f64,
    /// S_k(t) = Σ_{τ=k}^{t} η_τ.
    pub area_since: f64,
    /// t − k + 1: the steps taken at or after the decrement.
    pub steps_since: f64,
}

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
    /// h_φ at a step from the decrements before it, with ∂h/∂φ written into `grad`.
    fn decay_term(&self, phi: &[f64], decrements: &[Decrement], grad: &mut [f64]) -> f64;
    /// The values of φ the fit's starts are drawn from.
    fn shape_starts(&self) -> Vec<Vec<f64>>;
    /// Whether φ is a law at all.
    fn admissible(&self, phi: &[f64]) -> bool;
    /// The largest h_φ can be for a rate brought from the peak to zero: a law whose K times this
    /// exceeds L₀ would predict a negative loss for a long enough decay, and is refused.
    fn largest_decay_term(&self, phi: &[f64]) -> f64;
}

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

    /// With x = η_k^(−γ)·S_k, u = C·x + 1 and P = u^(−β): G = 1 − P,
    /// ∂G/∂ln C = β·P·C·x/u, ∂G/∂β = P·ln u, ∂G/∂γ = −β·P·C·x·ln η_k / u (then times β and
    /// dγ/du for the coordinates). A rate of zero has G = 1 (the limit for γ > 0), which no φ moves.
    fn decay_term(&self, phi: &[f64], decrements: &[Decrement], grad: &mut [f64]) -> f64 {
        let (c, beta) = (phi[0].exp(), phi[1].exp());
        let (gamma, dgamma) = Self::gamma(phi[2]);
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

    /// (1 − λⁿ)/(1 − λ) = τ·(1 − λⁿ), and with dλ/dτ = 1/τ²: ∂/∂ln τ = τ·(1 − λⁿ) − n·λ^(n−1).
    fn decay_term(&self, phi: &[f64], decrements: &[Decrement], grad: &mut [f64]) -> f64 {
        let tau = phi[0].exp();
        let lambda = 1.0 - 1.0 / tau;
        let ln_lambda = lambda.ln();
        let mut h = 0.0;
        let mut dh = 0.0;
        for d in decrements {
            let n = d.steps_since;
            let lambda_n = (n * ln_lambda).exp();
            let memory = tau * (1.0 - lambda_n);
            h += d.drop * memory;
            let lambda_n1 = if lambda > 0.0 {
                lambda_n / lambda
            } else if n == 1.0 {
                1.0
            } else {
                0.0
            };
            dh += d.drop * (memory - n * lambda_n1);
        }
        grad[0] = dh;
        h
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decrements() -> Vec<Decrement> {
        (1..=6)
            .map(|k| {
                let lr: f64 = 1.0 - 0.12 * k as f64;
                Decrement { drop: 0.12, ln_lr: lr.ln(), area_since: 3.0 + 0.7 * k as f64, steps_since: (8 - k) as f64 }
            })
            .collect()
    }

    /// ∂h/∂φ of every form against central differences.
    #[test]
    fn every_form_has_the_gradient_of_its_decay_term() {
        for (kind, phi) in [(CurveFormKind::MultiPower, vec![-0.7, -0.2, 0.4]), (CurveFormKind::Annealing, vec![2.3])] {
            let f = kind.form();
            let ds = decrements();
            let mut grad = vec![0.0; phi.len()];
            f.decay_term(&phi, &ds, &mut grad);
            for k in 0..phi.len() {
                let h = 1e-6;
                let (mut up, mut down) = (phi.clone(), phi.clone());
                up[k] += h;
                down[k] -= h;
                let mut scratch = vec![0.0; phi.len()];
                let fd = (f.decay_term(&up, &ds, &mut scratch) - f.decay_term(&down, &ds, &mut scratch)) / (2.0 * h);
                assert!((fd - grad[k]).abs() < 1e-6 * (1.0 + fd.abs()), "{kind:?} ∂h/∂φ{k}: analytic {}, numeric {fd}", grad[k]);
            }
        }
    }

    /// The annealing term's closed form equals the paper's momentum recursion.
    #[test]
    fn annealing_area_is_the_momentum_recursion() {
        let lr = [1.0, 1.0, 0.8, 0.5, 0.5, 0.2, 0.1];
        let tau = 4.0f64;
        let lambda = 1.0 - 1.0 / tau;
        let (mut m, mut s2) = (0.0, 0.0);
        for i in 1..lr.len() {
            m = lambda * m + (lr[i - 1] - lr[i]);
            s2 += m;
        }
        let t = lr.len() - 1;
        let ds: Vec<Decrement> =
            (1..lr.len()).map(|k| Decrement { drop: lr[k - 1] - lr[k], ln_lr: f64::ln(lr[k]), area_since: 0.0, steps_since: (t - k + 1) as f64 }).collect();
        let h = Annealing.decay_term(&[tau.ln()], &ds, &mut [0.0]);
        assert!((h - s2).abs() < 1e-12, "{h} vs {s2}");
    }
}
