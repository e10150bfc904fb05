//! The shape of a data-model law: the extension point for law forms. A form says how to predict
//! log L from (N, D) and fitted coordinates θ, with the gradient; where the fit starts; what its
//! parameters are called; and how it allocates compute. Everything else — the Huber objective and
//! L-BFGS in `law.rs`, the bootstrap, the held-out check, the report, the charts and the export —
//! goes through this trait, so a new form is one implementation here and one variant of [`Form`].
//!
//! Chinchilla's form (Hoffmann et al. 2022, approach 3; MiniCPM Eq. 2) is the default:
//!
//! ```text
//! L(N, D) = E + A/N^α + B/D^β,   fitted as   log L = LSE(a − α·log N, b − β·log D, e)
//! θ = (a, b, e, α, β) = (log A, log B, log E, α, β)
//! N_opt = G·(C/6)^(β/(α+β)),  D_opt = G⁻¹·(C/6)^(α/(α+β)),  G = (αA/(βB))^(1/(α+β))   (C = 6ND)
//! ```
//!
//! Kaplan et al.'s (2020, Eq. 1.5) has no irreducible loss:
//!
//! ```text
//! L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D,   log L = α_D · LSE(p·(n_c − log N), d_c − log D),  p = α_N/α_D
//! θ = (n_c, d_c, α_N, α_D) = (log N_c, log D_c, α_N, α_D)
//! N_opt = (p·N_c^p·C / (6·D_c))^(1/(p+1)),  D_opt = C / (6·N_opt)                            (C = 6ND)
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
    /// The coordinate of θ that parameter `index` (in [`LawForm::parameters`]' order) maps to.
    fn theta_index(&self, index: usize) -> usize {
        index
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// L = E + A/N^α + B/D^β.
    #[default]
    Chinchilla,
    /// L = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D.
    Kaplan,
}

impl Form {
    pub fn law_form(self) -> &'static dyn LawForm {
        match self {
            Self::Chinchilla => &Chinchilla,
            Self::Kaplan => &Kaplan,
        }
    }
}

impl std::str::FromStr for Form {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "chinchilla" => Ok(Self::Chinchilla),
            "kaplan" => Ok(Self::Kaplan),
            _ => Err(format!("unknown law form `{s}`; use chinchilla (E + A/N^α + B/D^β) or kaplan ([(N_c/N)^(α_N/α_D) + D_c/D]^α_D)")),
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

    /// (E, A, B, α, β) ↦ θ = (log A, log B, log E, α, β).
    fn theta_index(&self, index: usize) -> usize {
        [2, 0, 1, 3, 4][index]
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

/// L = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D (see the module doc).
pub struct Kaplan;

impl Kaplan {
    /// (N_c, D_c, α_N, α_D).
    fn unpack(p: &[f64]) -> (f64, f64, f64, f64) {
        (p[0], p[1], p[2], p[3])
    }
}

impl LawForm for Kaplan {
    fn name(&self) -> &'static str {
        "kaplan"
    }

    fn formula(&self) -> &'static str {
        "L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D"
    }

    fn parameters(&self) -> &'static [(&'static str, &'static str)] {
        &[("n_c", "N_c"), ("d_c", "D_c"), ("alpha_n", "α_N"), ("alpha_d", "α_D")]
    }

    fn theta(&self, p: &[f64]) -> Vec<f64> {
        let (n_c, d_c, alpha_n, alpha_d) = Self::unpack(p);
        vec![n_c.ln(), d_c.ln(), alpha_n, alpha_d]
    }

    fn parameters_of(&self, t: &[f64]) -> Vec<f64> {
        vec![t[0].exp(), t[1].exp(), t[2], t[3]]
    }

    fn log_loss(&self, t: &[f64], log_n: f64, log_d: f64, grad: &mut [f64]) -> f64 {
        let (nc, dc, alpha_n, alpha_d) = (t[0], t[1], t[2], t[3]);
        let p = alpha_n / alpha_d;
        let (u1, u2) = (p * (nc - log_n), dc - log_d);
        let m = u1.max(u2);
        let (x1, x2) = ((u1 - m).exp(), (u2 - m).exp());
        let s = m + (x1 + x2).ln();
        let (w1, w2) = (x1 / (x1 + x2), x2 / (x1 + x2));
        // log L = α_D·s; ∂u1/∂n_c = p, ∂u1/∂α_N = (n_c − log N)/α_D, ∂u1/∂α_D = −p·(n_c − log N)/α_D.
        grad.copy_from_slice(&[w1 * alpha_n, alpha_d * w2, w1 * (nc - log_n), s - w1 * p * (nc - log_n)]);
        alpha_d * s
    }

    /// n_c, d_c ∈ {5, 10, …, 35}; α_N, α_D ∈ {0.05, 0.1, 0.3, 0.6}: 784 starts (Kaplan et al.'s
    /// own fit has n_c ≈ 32, d_c ≈ 31.6, α_N ≈ 0.076, α_D ≈ 0.095).
    fn start_grid(&self) -> Vec<Vec<f64>> {
        let logs: Vec<f64> = (1..=7).map(|i| 5.0 * i as f64).collect();
        let exps = [0.05, 0.1, 0.3, 0.6];
        let mut starts = Vec::with_capacity(784);
        for &nc in &logs {
            for &dc in &logs {
                for &an in &exps {
                    for &ad in &exps {
                        starts.push(vec![nc, dc, an, ad]);
                    }
                }
            }
        }
        starts
    }

    fn admissible(&self, t: &[f64]) -> bool {
        t[2] > 0.0 && t[3] > 0.0
    }

    /// 0.01 ≤ α_N, α_D ≤ 2.
    fn is_plausible(&self, p: &[f64]) -> bool {
        let (_, _, alpha_n, alpha_d) = Self::unpack(p);
        (0.01..=2.0).contains(&alpha_n) && (0.01..=2.0).contains(&alpha_d)
    }

    fn compute_optimal(&self, p: &[f64], flops: f64) -> (f64, f64) {
        let (n_c, d_c, alpha_n, alpha_d) = Self::unpack(p);
        let q = alpha_n / alpha_d;
        // Minimise (N_c/N)^q + 6·D_c·N/C over N, in logs to keep N_c^q finite.
        let n_opt = ((q.ln() + q * n_c.ln() + flops.ln() - (6.0 * d_c).ln()) / (q + 1.0)).exp();
        (n_opt, flops / (6.0 * n_opt))
    }

    /// a = 1/(p+1), b = p/(p+1), p = α_N/α_D.
    fn allocation_exponents(&self, p: &[f64]) -> (f64, f64) {
        let q = p[2] / p[3];
        (1.0 / (q + 1.0), q / (q + 1.0))
    }

    /// N = (p·N_c^p·C/(6·D_c))^(1/(p+1)) ⇒ C = 6·D_c·N^(p+1) / (p·N_c^p), D = C/(6N).
    fn optimal_tokens_for(&self, p: &[f64], n: f64) -> f64 {
        let (n_c, d_c, alpha_n, alpha_d) = Self::unpack(p);
        let q = alpha_n / alpha_d;
        (d_c.ln() + q * n.ln() - q.ln() - q * n_c.ln()).exp()
    }

    fn irreducible_loss(&self, _p: &[f64]) -> Option<f64> {
        None
    }

    fn summary(&self, p: &[f64]) -> String {
        let (n_c, d_c, alpha_n, alpha_d) = Self::unpack(p);
        format!("N_c = {n_c:.3e}, D_c = {d_c:.3e}, α_N = {alpha_n:.3}, α_D = {alpha_d:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ∂ log L̂ / ∂θ of every form against central differences.
    #[test]
    fn every_form_has_the_gradient_of_its_prediction() {
        for (form, theta) in [(Form::Chinchilla, vec![6.0, 7.5, 0.5, 0.33, 0.38]), (Form::Kaplan, vec![30.0, 28.0, 0.08, 0.1])] {
            let f = form.law_form();
            let (log_n, log_d) = (1e8f64.ln(), 2e9f64.ln());
            let mut grad = vec![0.0; theta.len()];
            f.log_loss(&theta, log_n, log_d, &mut grad);
            for k in 0..theta.len() {
                let h = 1e-6 * theta[k].abs().max(1.0);
                let (mut up, mut down) = (theta.clone(), theta.clone());
                up[k] += h;
                down[k] -= h;
                let mut scratch = vec![0.0; theta.len()];
                let fd = (f.log_loss(&up, log_n, log_d, &mut scratch) - f.log_loss(&down, log_n, log_d, &mut scratch)) / (2.0 * h);
                assert!((fd - grad[k]).abs() < 1e-6 * (1.0 + fd.abs()), "{form:?} ∂/∂θ{k}: analytic {}, numeric {fd}", grad[k]);
            }
            // The prediction through θ equals the closed form.
            let p = f.parameters_of(&theta);
            let direct = f.loss(&p, 1e8, 2e9);
            let via_theta = f.log_loss(&theta, log_n, log_d, &mut grad).exp();
            assert!((direct / via_theta - 1.0).abs() < 1e-12, "{form:?}: {direct} vs {via_theta}");
        }
    }

    /// The compute-optimal N of every form is the minimiser of L(N, C/6N), and the tokens for an
    /// N invert it.
    #[test]
    fn every_form_allocates_compute_at_the_loss_minimum() {
        let kaplan = [8.8e13, 5.4e13, 0.076, 0.095];
        let chinchilla = [1.82, 482.0, 2085.4, 0.348, 0.366];
        for (form, p) in [(Form::Kaplan, &kaplan[..]), (Form::Chinchilla, &chinchilla[..])] {
            let f = form.law_form();
            for flops in [1e21, 5.76e23] {
                let (n_opt, d_opt) = f.compute_optimal(p, flops);
                assert!((6.0 * n_opt * d_opt / flops - 1.0).abs() < 1e-9);
                let best = (0..100_000)
                    .map(|i| 10f64.powf(6.0 + 8.0 * i as f64 / 100_000.0))
                    .min_by(|x, y| f.loss(p, *x, flops / (6.0 * x)).total_cmp(&f.loss(p, *y, flops / (6.0 * y))))
                    .unwrap();
                assert!((best / n_opt - 1.0).abs() < 2e-3, "{form:?} C = {flops:e}: scan {best:e}, formula {n_opt:e}");
                assert!((f.optimal_tokens_for(p, n_opt) / d_opt - 1.0).abs() < 1e-9, "{form:?}");
            }
        }
    }
}
