//! Which runs teach the most about the target per FLOP: the selection criterion of the adaptive
//! wind tunnel.
//!
//! # Setting
//!
//! The data-model law has coordinates θ (for Chinchilla's form θ = (log A, log B, log E, α, β)),
//! fitted by the Huber objective on log losses (see [`crate::fit::law`]). What the user wants to
//! know is one number of the law, the *target* g(θ): D/N at a compute budget, or the loss of a
//! planned run (see [`super::target`]); we work with u = log g, so that precision is relative. A
//! *candidate* is a run not yet trained at (N_j, D_j); training it reveals
//!
//! ```text
//! y_j = f_j(θ) + ε_j,    f_j(θ) = log L̂_θ(N_j, D_j),    ε_j ~ N(0, σ²)
//! ```
//!
//! where σ is the scatter of single runs about the law (estimated from the current fit's log
//! residuals, widened by √(n/(n−p)) for the p parameters the fit spent, and never below 10⁻³).
//!
//! # The linearised criterion
//!
//! Let θ̂ be the current fit and Σ the covariance of its estimate. Linearise u and every f_j at θ̂:
//! u ≈ u(θ̂) + ∇uᵀ(θ − θ̂), f_j ≈ f_j(θ̂) + j_jᵀ(θ − θ̂). With a Gaussian belief θ ~ N(θ̂, Σ),
//! observing y_j gives the posterior covariance Σ' = (Σ⁻¹ + j_j j_jᵀ/σ²)⁻¹, and the target's
//! variance falls from ∇uᵀΣ∇u to ∇uᵀΣ'∇u. By the Sherman–Morrison identity the reduction is
//!
//! ```text
//! Δ_j = (∇uᵀ Σ j_j)² / (σ² + j_jᵀ Σ j_j) = Cov(u, f_j)² / (σ² + Var(f_j)),
//! ```
//!
//! the squared covariance between the target and the candidate's prediction over the noise-inflated
//! variance of that prediction: a run is worth training when what it would show is uncertain *and*
//! that uncertainty is the target's. The score of a candidate is Δ_j / cost_j, the expected
//! reduction of the target's variance per FLOP it adds.
//!
//! # The bootstrap as Σ, without Jacobians
//!
//! Σ is the bootstrap covariance of θ̂ (resample the points, refit). To first order,
//! ∇uᵀΣj_j = Cov_b(u(θ_b), f_j(θ_b)) over the bootstrap fits θ_b, and j_jᵀΣj_j = Var_b(f_j(θ_b)).
//! We therefore evaluate the target and every candidate's prediction under each bootstrap law and
//! take the covariances of those values directly (an ensemble Kalman update): no Jacobian of the
//! target is needed (the allocation's D/N is a nonlinear function of all five parameters), and
//! the curvature the linearisation ignores is kept where it matters most, in the predictions.
//! Bootstrap fits of a poorly constrained law have heavy tails; each value is winsorised at the
//! 5th and 95th percentiles of its ensemble before the covariances are taken (and rescaled by the
//! variance a normal sample keeps when so clamped, 0.8313), so a few wild refits do not decide
//! the design.
//!
//! # Model discrepancy
//!
//! A law is an approximation, and its misfit is not independent from run to run: it grows with
//! the distance from where the law was fitted (the model discrepancy of Kennedy and O'Hagan,
//! 2001). On the synthetic language, for example, runs of 14 steps (8 of them warmup) sit up to
//! 4% off the law that runs of 100k tokens and more, the smallest model aside, follow to 0.3%
//! (sweeps/adaptive-allocation.toml's full grid). A run far from the target then says
//! less about it than the bootstrap, which trusts the law everywhere, believes. So each
//! candidate's noise carries a discrepancy term,
//!
//! ```text
//! σ_j² = σ² + τ²·dist(x_j, x*),    dist(x, y) = |ln N_x − ln N_y| + |ln D_x − ln D_y|,
//! ```
//!
//! a random walk in scale away from the target's own run x* (N_opt and D_opt at the budget, or the
//! planned run). Along a line of fixed D/N the distance is the distance in log FLOPs. τ² is
//! measured every round (with 4p runs or more; zero before): the law is fitted to the cheaper and
//! to the costlier half of the runs, each half's law predicts the other half's runs, and τ² is
//! the least-squares slope of their squared log misses e² = σ² + τ²·d against their distance d
//! from the centre (geometric mean N and D) of the runs that law was fitted to. Like σ², τ² is in
//! the units of log losses.
//!
//! # Batches
//!
//! A round trains several runs at once (one per parallel slot). The batch is chosen greedily: pick
//! the candidate with the best score, then update the covariances as if it had been observed,
//!
//! ```text
//! C ← C − C[:, j] C[j, :] / (σ² + C[j, j]),
//! ```
//!
//! (the same rank-one Gaussian update, on the joint covariance C of the target and all
//! candidates), reprice the remaining candidates given what the batch already buys (a branch of
//! a trunk the batch extends is cheaper), and pick again. Greedy selection of a batch under this
//! update is the standard sequential-design approximation (it is submodular-like: a second run
//! telling the same thing as the first scores little after the update).

use crate::fit::law::Law;

/// The ensemble of laws a round's choice is made from: the bootstrap refits of the current fit.
pub struct Ensemble {
    /// u_b = log target under each bootstrap law (winsorised).
    target: Vec<f64>,
    /// f_jb = log L̂_b(N_j, D_j) of every candidate j under each law (winsorised), candidate-major.
    predictions: Vec<Vec<f64>>,
}

impl Ensemble {
    /// Evaluate `target` and the predicted log loss at each candidate (N, D) under every law of
    /// `laws`; laws giving a non-finite target or prediction are left out. `None` with fewer than
    /// 10 usable laws (no covariance worth the name).
    pub fn new(laws: &[Law], target: impl Fn(&Law) -> f64, candidates: &[(f64, f64)]) -> Option<Self> {
        let mut kept_target = Vec::new();
        let mut kept_predictions: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
        for law in laws {
            let u = target(law).ln();
            let f: Vec<f64> = candidates.iter().map(|&(n, d)| law.loss(n, d).ln()).collect();
            if !u.is_finite() || f.iter().any(|v| !v.is_finite()) {
                continue;
            }
            kept_target.push(u);
            kept_predictions.iter_mut().zip(f).for_each(|(column, v)| column.push(v));
        }
        if kept_target.len() < 10 {
            return None;
        }
        winsorise(&mut kept_target);
        kept_predictions.iter_mut().for_each(|p| winsorise(p));
        Some(Self { target: kept_target, predictions: kept_predictions })
    }

    /// The joint covariance of the target (index 0) and every candidate (1 + j).
    fn covariance(&self) -> Vec<Vec<f64>> {
        let rows: Vec<&[f64]> = std::iter::once(self.target.as_slice()).chain(self.predictions.iter().map(Vec::as_slice)).collect();
        let centred: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                let mean = r.iter().sum::<f64>() / r.len() as f64;
                r.iter().map(|v| v - mean).collect()
            })
            .collect();
        // Divided by the variance a normal sample keeps when winsorised at its 5th and 95th
        // percentiles, so that the covariances stay unbiased for well-behaved ensembles.
        let k = (self.target.len() - 1) as f64 * WINSORISED_NORMAL_VARIANCE;
        let m = centred.len();
        let mut c = vec![vec![0.0; m]; m];
        for a in 0..m {
            for b in a..m {
                let v = centred[a].iter().zip(&centred[b]).map(|(x, y)| x * y).sum::<f64>() / k;
                c[a][b] = v;
                c[b][a] = v;
            }
        }
        c
    }
}

/// E[clamp(Z, −z₀.₉₅, z₀.₉₅)²] for a standard normal Z: 1 − 2·(z·φ(z) + 0.05 − 0.05·z²) at
/// z = 1.6449.
const WINSORISED_NORMAL_VARIANCE: f64 = 0.831264;

/// Clamp values to their 5th and 95th percentiles.
fn winsorise(values: &mut [f64]) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let (lo, hi) = (at(0.05), at(0.95));
    values.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
}

/// One candidate picked into a batch, by this criterion or by any other strategy: its index, the
/// cost it was priced at when picked, and its score Δ / cost where the criterion picked it (the
/// expected reduction of the target's variance per FLOP); the seed design and the baselines pick
/// without one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    pub candidate: usize,
    pub cost_flops: f64,
    pub score: Option<f64>,
}

impl Pick {
    /// A candidate picked by another rule than Δ / cost.
    pub fn unscored(candidate: usize, cost_flops: f64) -> Self {
        Self { candidate, cost_flops, score: None }
    }

    /// Δ, the expected reduction of the target's variance (score · cost).
    pub fn variance_reduction(&self) -> Option<f64> {
        self.score.map(|score| score * self.cost_flops)
    }
}

/// The target's variance now, and the greedy batch of at most `batch` candidates by Δ / cost.
/// `cost(j, picked)` is what candidate j adds given the candidates already picked into the batch
/// (`None`: not available, e.g. beyond the budget left); `noise_var[j]` is candidate j's σ_j². Ties go to the lower
/// index, so the choice is a function of its inputs alone.
pub fn choose_batch(ensemble: &Ensemble, noise_var: &[f64], batch: usize, mut cost: impl FnMut(usize, &[usize]) -> Option<f64>) -> (f64, Vec<Pick>) {
    let mut c = ensemble.covariance();
    let target_variance = c[0][0];
    let mut picks: Vec<Pick> = Vec::new();
    let mut picked: Vec<usize> = Vec::new();
    while picks.len() < batch {
        let mut best: Option<Pick> = None;
        for j in 0..ensemble.predictions.len() {
            if picked.contains(&j) {
                continue;
            }
            let Some(price) = cost(j, &picked) else { continue };
            let reduction = c[0][1 + j].powi(2) / (noise_var[j] + c[1 + j][1 + j]);
            let cost_flops = price.max(f64::MIN_POSITIVE);
            let pick = Pick { candidate: j, cost_flops, score: Some(reduction / cost_flops) };
            if best.is_none_or(|b| pick.score > b.score) {
                best = Some(pick);
            }
        }
        let Some(pick) = best else { break };
        observe(&mut c, 1 + pick.candidate, noise_var[pick.candidate]);
        picked.push(pick.candidate);
        picks.push(pick);
    }
    (target_variance, picks)
}

/// The Gaussian update of the joint covariance `c` after observing variable `j` with noise σ².
fn observe(c: &mut [Vec<f64>], j: usize, noise_var: f64) {
    let column: Vec<f64> = c.iter().map(|row| row[j]).collect();
    let denominator = noise_var + column[j];
    for (a, row) in c.iter_mut().enumerate() {
        for (b, value) in row.iter_mut().enumerate() {
            *value -= column[a] * column[b] / denominator;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// An ensemble of laws scattered about a true one, as a bootstrap would give.
    fn ensemble_about(truth: [f64; 5], spread: [f64; 5], count: usize, seed: u64) -> Vec<Law> {
        let mut rng = Rng::new(seed);
        (0..count)
            .map(|_| {
                let p: Vec<f64> = truth.iter().zip(spread).map(|(t, s)| t * (1.0 + s * rng.normal())).collect();
                Law::chinchilla(p[0], p[1], p[2], p[3], p[4])
            })
            .collect()
    }

    /// Δ equals the linearised formula (∇uᵀΣj)² / (σ² + jᵀΣj) computed from the sample covariance
    /// of θ and finite-difference Jacobians, to first order in the ensemble's spread.
    #[test]
    fn the_ensemble_reduction_is_the_linearised_one() {
        let truth = [1.8, 400.0, 1500.0, 0.34, 0.30];
        let laws = ensemble_about(truth, [0.002, 0.002, 0.002, 0.002, 0.002], 4000, 7);
        let target = |l: &Law| l.loss(1e9, 2e10);
        let candidates = [(1e8, 1e9), (3e8, 2e10), (1e7, 1e11)];
        let e = Ensemble::new(&laws, target, &candidates).unwrap();
        let sigma2 = 1e-6;
        let (_, picks) = choose_batch(&e, &[sigma2; 3], 3, |_, _| Some(1.0));
        // The linearised version: Σ of θ from the same laws, gradients of log L̂ from the form.
        let thetas: Vec<Vec<f64>> = laws.iter().map(|l| l.theta()).collect();
        let mean: Vec<f64> = (0..5).map(|i| thetas.iter().map(|t| t[i]).sum::<f64>() / thetas.len() as f64).collect();
        let cov = |i: usize, k: usize| thetas.iter().map(|t| (t[i] - mean[i]) * (t[k] - mean[k])).sum::<f64>() / (thetas.len() - 1) as f64;
        let truth_law = Law::chinchilla(truth[0], truth[1], truth[2], truth[3], truth[4]);
        let grad = |n: f64, d: f64| {
            let mut g = vec![0.0; 5];
            crate::fit::form::Form::Chinchilla.law_form().log_loss(&truth_law.theta(), n.ln(), d.ln(), &mut g);
            g
        };
        let quad = |a: &[f64], b: &[f64]| (0..5).map(|i| (0..5).map(|k| a[i] * cov(i, k) * b[k]).sum::<f64>()).sum::<f64>();
        let du = grad(1e9, 2e10);
        let first = picks[0];
        let j = grad(candidates[first.candidate].0, candidates[first.candidate].1);
        let linear = quad(&du, &j).powi(2) / (sigma2 + quad(&j, &j));
        let reduction = first.variance_reduction().unwrap();
        assert!((reduction / linear - 1.0).abs() < 0.1, "ensemble {reduction} vs linearised {linear}");
    }

    /// The candidate nearest the target in (N, D) teaches most about its loss; after it is picked,
    /// a twin of it scores almost nothing, and an expensive candidate loses to a cheap one.
    #[test]
    fn the_batch_prefers_informative_cheap_runs_and_no_twins() {
        let laws = ensemble_about([1.8, 400.0, 1500.0, 0.34, 0.30], [0.01, 0.05, 0.05, 0.02, 0.02], 400, 3);
        let target = |l: &Law| l.loss(1e9, 2e10);
        let candidates = [(1e6, 1e7), (9e8, 2e10), (9e8, 2e10), (1e6, 1e12)];
        let e = Ensemble::new(&laws, target, &candidates).unwrap();
        let (variance, picks) = choose_batch(&e, &[1e-6; 4], 2, |_, _| Some(1.0));
        assert!(variance > 0.0);
        assert_eq!(picks[0].candidate, 1, "{picks:?}");
        let reduction = |k: usize| picks[k].variance_reduction().unwrap();
        assert!(picks[1].candidate != 2 || reduction(1) < 0.01 * reduction(0), "{picks:?}");
        // At 1000× the price, the near candidate is no longer the best buy per FLOP.
        let (_, priced) = choose_batch(&e, &[1e-6; 4], 1, |j, _| Some(if j == 1 || j == 2 { 1e6 } else { 1.0 }));
        assert!(priced[0].candidate == 0 || priced[0].candidate == 3, "{priced:?}");
        // Unavailable candidates are never picked.
        let (_, none) = choose_batch(&e, &[1e-6; 4], 4, |_, _| None);
        assert!(none.is_empty());
    }

    #[test]
    fn winsorising_clamps_the_tails_only() {
        let mut v: Vec<f64> = (0..=100).map(|i| i as f64).collect();
        v[100] = 1e9;
        winsorise(&mut v);
        assert_eq!(v[100], 95.0);
        assert_eq!(v[0], 5.0);
        assert_eq!(v[50], 50.0);
    }
}
