//! The shape of a data-model law: the extension point for law forms. A form says how to predict
//! log L from (N, D) and fitted coordinates θ, with the gradient; where the fit starts; what its
//! parameters are called; and how it allocates compute. Everything else — the Huber objective and
//! L-BFGS in `law.rs`, the bootstrap, the held-out check, the report, the charts and the export —
//! goes through this trait, so a new form is one implementation here and one variant of [`Form`].
//!
//! Chinchilla's form (Hoffmann et al. 2022, approach 3; MiniCPM Eq. 2) is the first:
//!
//! ```text
//! L(N, D) = E + A/N^α + B/D^β,   fitted as   log L = LSE(a − α·log N, b − β·log D, e)
//! θ = (a, b, e, α, β) = (log A, log B, log E, α, β)
//! N_opt = G·(C/6)^(β/(α+β)),  D_opt = G⁻¹·(C/6)^(α/(α+β)),  G = (αA/(βB))^(1/(α+β))   (C = 6ND)
//! ```

use serde::{Deserialize, Serialize};

/// What a law form must provide. `p` is the law's parameters as reported (in the order of
/// [`LawForm::parameters`]); `theta` the coordinates the fit moves in.
pub trait LawForm: Sync {
    /// The form's name in definitions and reports ("chinchilla").
    fn name(&self) -> &'static str;
    /// The formula, for reports.
    fn formula(&self) -> &'static str;
    /// The reported parameters: (key in JSON, symbol in text), in order.
    fn parameters(&self) -> &'static [(&'static str, &'static str)];
    /// θ from the reported parameters, and back.
    fn theta(&self, p: &[f64]) -> Vec<f64>;
    fn parameters_of(&self, theta: &[f64]) -> Vec<f64>;
    /// log L̂ at (log N, log D), with ∂ log L̂ / ∂θ written into `grad`.
    fn log_loss(&self, theta: &[f64], log_n: f64, log_d: f64, grad: &mut [f64]) -> f64;
    /// The grid of starts the fit runs L-BFGS from.
    fn start_grid(&self) -> Vec<Vec<f64>>;
    /// Whether a fitted θ is a law at all (its exponents positive).
    fn admissible(&self, theta: &[f64]) -> bool;
    /// Whether the parameters are in a plausible range; outside it the points did not constrain
    /// the law (too few sizes or token counts, or too near the floor).
    fn is_plausible(&self, p: &[f64]) -> bool;
    /// The loss-minimising (N, D) for training compute C = 6ND.
    fn compute_optimal(&self, p: &[f64], flops: f64) -> (f64, f64);
    /// The exponents (a, b) of N_opt ∝ C^a and D_opt ∝ C^b.
    fn allocation_exponents(&self, p: &[f64]) -> (f64, f64);
    /// The D at which `n` is compute-optimal.
    fn optimal_tokens_for(&self, p: &[f64], n: f64) -> f64;
    /// The loss no model or data removes (E), when the form has one.
    fn irreducible_loss(&self, p: &[f64]) -> Option<f64>;
    /// A one-line summary for chart titles and messages.
    fn summary(&self, p: &[f64]) -> String;

    /// L̂(N, D).
    fn loss(&self, p: &[f64], n: f64, d: f64) -> f64 {
        let theta = self.theta(p);
        let mut grad = vec![0.0; theta.len()];
        self.log_loss(&theta, n.ln(), d.ln(), &mut grad).exp()
    }
}

/// The law forms there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// L = E + A/N^α + B/D^β.
    #[default]
    Chinchilla,
}

impl Form {
    pub fn law_form(self) -> &'static dyn LawForm {
        match self {
            Self::Chinchilla => &Chinchilla,
        }
    }
}

/// L = E + A/N^α + B/D^β (see the module doc).
pub struct Chinchilla;

impl Chinchilla {
    fn unpack(p: &[f64]) -> (f64, f64, f64, f64, f64) {
        (p[0], p[1], p[2], p[3], p[4])
    }

    /// `G = (αA/(βB))^(1/(α+β))`.
    fn g(p: &[f64]) -> f64 {
        let (_, a, b, alpha, beta) = Self::unpack(p);
        (alpha * a / (beta * b)).powf(1.0 / (alpha + beta))
    }
}

impl LawForm for Chinchilla {
    fn name(&self) -> &'static str {
        "chinchilla"
    }

    fn formula(&self) -> &'static str {
        "L(N, D) = E + A/N^α + B/D^β"
    }

    fn parameters(&self) -> &'static [(&'static str, &'static str)] {
        &[("e", "E"), ("a", "A"), ("b", "B"), ("alpha", "α"), ("beta", "β")]
    }

    fn theta(&self, p: &[f64]) -> Vec<f64> {
        let (e, a, b, alpha, beta) = Self::unpack(p);
        vec![a.ln(), b.ln(), e.ln(), alpha, beta]
    }

    fn parameters_of(&self, t: &[f64]) -> Vec<f64> {
        vec![t[2].exp(), t[0].exp(), t[1].exp(), t[3], t[4]]
    }

    fn log_loss(&self, t: &[f64], log_n: f64, log_d: f64, grad: &mut [f64]) -> f64 {
        let (a, b, e, alpha, beta) = (t[0], t[1], t[2], t[3], t[4]);
        let t1 = a - alpha * log_n;
        let t2 = b - beta * log_d;
        // exp(t − max) is 1 for the largest term: two exponentials instead of three.
        let m = t1.max(t2).max(e);
        let ex = |t: f64| if t == m { 1.0 } else { (t - m).exp() };
        let (x1, x2, x3) = (ex(t1), ex(t2), ex(e));
        let s = x1 + x2 + x3;
        let (w1, w2, w3) = (x1 / s, x2 / s, x3 / s);
        grad.copy_from_slice(&[w1, w2, w3, -w1 * log_n, -w2 * log_d]);
        m + s.ln()
    }

    /// The 4500 starts of Hoffmann et al. / Besiroglu et al.: a, b ∈ {0, 5, …, 25},
    /// e ∈ {−1, −0.5, …, 1}, α, β ∈ {0, 0.5, …, 2}.
    fn start_grid(&self) -> Vec<Vec<f64>> {
        let mut starts = Vec::with_capacity(4500);
        let ab: Vec<f64> = (0..=5).map(|i| 5.0 * i as f64).collect();
        let e: Vec<f64> = (0..=4).map(|i| -1.0 + 0.5 * i as f64).collect();
        let exps: Vec<f64> = (0..=4).map(|i| 0.5 * i as f64).collect();
        for &a in &ab {
            for &b in &ab {
                for &e in &e {
                    for &alpha in &exps {
                        for &beta in &exps {
                            starts.push(vec![a, b, e, alpha, beta]);
                        }
                    }
                }
            }
        }
        starts
    }

    fn admissible(&self, t: &[f64]) -> bool {
        t[3] > 0.0 && t[4] > 0.0
    }

    /// 0.05 ≤ α, β ≤ 2 and E ≥ 0.01.
    fn is_plausible(&self, p: &[f64]) -> bool {
        let (e, _, _, alpha, beta) = Self::unpack(p);
        (0.05..=2.0).contains(&alpha) && (0.05..=2.0).contains(&beta) && e >= 0.01
    }

    fn compute_optimal(&self, p: &[f64], flops: f64) -> (f64, f64) {
        let c6 = flops / 6.0;
        let (a, b) = self.allocation_exponents(p);
        (Self::g(p) * c6.powf(a), c6.powf(b) / Self::g(p))
    }

    /// `a = β/(α+β)`, `b = α/(α+β)`.
    fn allocation_exponents(&self, p: &[f64]) -> (f64, f64) {
        let (_, _, _, alpha, beta) = Self::unpack(p);
        (beta / (alpha + beta), alpha / (alpha + beta))
    }

    /// N = G·(C/6)^a ⇒ C/6 = (N/G)^(1/a), D = (C/6)/N.
    fn optimal_tokens_for(&self, p: &[f64], n: f64) -> f64 {
        let c6 = (n / Self::g(p)).powf(1.0 / self.allocation_exponents(p).0);
        c6 / n
    }

    fn irreducible_loss(&self, p: &[f64]) -> Option<f64> {
        Some(p[0])
    }

    /// Directly, not through θ: the predictions of a fit stay the closed form's, to the bit.
    fn loss(&self, p: &[f64], n: f64, d: f64) -> f64 {
        let (e, a, b, alpha, beta) = Self::unpack(p);
        e + a / n.powf(alpha) + b / d.powf(beta)
    }

    fn summary(&self, p: &[f64]) -> String {
        let (e, _, _, alpha, beta) = Self::unpack(p);
        format!("E = {e:.3}, α = {alpha:.3}, β = {beta:.3}")
    }
}
