//! The data mixing law of Ye et al. (arXiv 2403.16952) for one evaluation set:
//!
//! ```text
//! L(r) = c + k·exp(Σ_j t_j·r_j),   c, k > 0
//! ```
//!
//! fitted as the data-model law is (`super::super::law`): the summed Huber loss of the log
//! residuals, `Σ_i Huber_δ(log L̂(r_i) − log L_i)`, minimised by L-BFGS from many starts, keeping
//! the best. θ = (log c, log k, t_1, …, t_d).
//!
//! The weights sum to 1, so k and a shift of every t_j by s are one parameter (k·e^s·exp(Σ_j
//! (t_j − s)·r_j) is the same law): the law is reported with the t_j centred, their mean 0.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::fit::law::huber;
use crate::fit::lbfgs::{self, Smooth, Stopping};
use crate::rng::Rng;

/// Huber's δ on log residuals, as the data-model law uses.
pub const DELTA: f64 = 1e-3;
/// L-BFGS starts per fit.
pub const STARTS: usize = 24;

/// One fitted law: the floor c, the scale k and one exponent per domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixingLaw {
    pub c: f64,
    pub k: f64,
    pub t: Vec<f64>,
}

impl MixingLaw {
    pub fn predict(&self, r: &[f64]) -> f64 {
        self.c + self.k * self.t.iter().zip(r).map(|(t, x)| t * x).sum::<f64>().exp()
    }

    fn of_theta(theta: &[f64]) -> Self {
        Self { c: theta[0].exp(), k: theta[1].exp(), t: theta[2..].to_vec() }.centred()
    }

    /// The same law with its exponents' mean moved into k.
    pub fn centred(self) -> Self {
        let s = self.t.iter().sum::<f64>() / self.t.len().max(1) as f64;
        Self { c: self.c, k: self.k * s.exp(), t: self.t.iter().map(|t| t - s).collect() }
    }

    fn theta(&self) -> Vec<f64> {
        [vec![self.c.ln(), self.k.ln()], self.t.clone()].concat()
    }

    /// The best of [`STARTS`] L-BFGS runs from seeded starts.
    pub fn fit(weights: &[Vec<f64>], losses: &[f64], seed: u64) -> Option<Self> {
        let objective = Objective::new(weights, losses);
        let starts = starts(weights, losses, seed);
        let best = starts.par_iter().filter_map(|s| minimise(&objective, s.clone())).min_by(|a, b| a.1.total_cmp(&b.1))?;
        Some(Self::of_theta(&best.0))
    }

    /// One L-BFGS run from this law (a bootstrap refit).
    pub fn refit(&self, weights: &[Vec<f64>], losses: &[f64]) -> Option<Self> {
        minimise(&Objective::new(weights, losses), self.theta()).map(|(t, _)| Self::of_theta(&t))
    }
}

fn minimise(objective: &Objective, start: Vec<f64>) -> Option<(Vec<f64>, f64)> {
    let stopping = Stopping { tolerance_grad: 1e-10, tolerance_cost: 1e-14, max_iters: 2000, max_evaluations: 50_000 };
    lbfgs::minimise(objective, start, stopping).map(|(t, c, _)| (t, c))
}

/// Seeded starts: floors at 50%, 80% and 95% of the lowest loss, exponents drawn at two scales, and
/// k set so the start's mean prediction is the mean loss.
fn starts(weights: &[Vec<f64>], losses: &[f64], seed: u64) -> Vec<Vec<f64>> {
    let d = weights[0].len();
    let lowest = losses.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = losses.iter().sum::<f64>() / losses.len() as f64;
    let mut rng = Rng::derive(seed, &[0x4D1C]);
    (0..STARTS)
        .map(|s| {
            let c = lowest * [0.5, 0.8, 0.95][s % 3];
            let scale = [0.5, 2.0][(s / 3) % 2];
            let t: Vec<f64> = (0..d).map(|_| scale * rng.normal()).collect();
            let mean_exponent = weights.iter().map(|r| t.iter().zip(r).map(|(a, b)| a * b).sum::<f64>()).sum::<f64>() / weights.len() as f64;
            let k = (mean - c).max(1e-3 * mean).ln() - mean_exponent;
            [vec![c.ln(), k], t].concat()
        })
        .collect()
}

/// The summed Huber objective on log residuals, with its gradient.
struct Objective<'a> {
    weights: &'a [Vec<f64>],
    log_losses: Vec<f64>,
}

impl<'a> Objective<'a> {
    fn new(weights: &'a [Vec<f64>], losses: &[f64]) -> Self {
        Self { weights, log_losses: losses.iter().map(|l| l.ln()).collect() }
    }
}

impl Smooth for Objective<'_> {
    fn value_and_gradient(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let mut cost = 0.0;
        let mut grad = vec![0.0; theta.len()];
        let c = theta[0].exp();
        for (r, &log_loss) in self.weights.iter().zip(&self.log_losses) {
            let e = (theta[1] + theta[2..].iter().zip(r).map(|(t, x)| t * x).sum::<f64>()).exp();
            let predicted = c + e;
            let (h, dh) = huber(predicted.ln() - log_loss, DELTA);
            cost += h;
            grad[0] += dh * c / predicted;
            grad[1] += dh * e / predicted;
            for (g, x) in grad[2..].iter_mut().zip(r) {
                *g += dh * e * x / predicted;
            }
        }
        (cost, grad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let weights = vec![vec![0.2, 0.8], vec![0.6, 0.4], vec![0.9, 0.1]];
        let losses = [3.1, 2.9, 3.4];
        let objective = Objective::new(&weights, &losses);
        let theta = [0.9, 0.2, -1.0, 0.5];
        let (_, g) = objective.value_and_gradient(&theta);
        for k in 0..theta.len() {
            let h = 1e-7;
            let (mut up, mut down) = (theta.to_vec(), theta.to_vec());
            up[k] += h;
            down[k] -= h;
            let fd = (objective.value_and_gradient(&up).0 - objective.value_and_gradient(&down).0) / (2.0 * h);
            assert!((fd - g[k]).abs() < 1e-6 * (1.0 + fd.abs()), "θ{k}: {} vs {fd}", g[k]);
        }
    }
}
