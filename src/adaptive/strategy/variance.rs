//! `adaptive`: the batch with the most expected reduction of the target's variance per FLOP, by
//! the criterion of [`crate::adaptive::criterion`], each candidate's noise widened by the model
//! discrepancy of its distance from the target's own run.

use super::{Choosing, Strategy};
use crate::adaptive::criterion::{choose_batch, Ensemble, Pick};
use crate::adaptive::design::{log_distance, noise_variance, Fitted};

pub struct VariancePerFlop;

impl Strategy for VariancePerFlop {
    fn name(&self) -> &'static str {
        "adaptive"
    }

    fn help(&self) -> &'static str {
        "The most expected reduction of the target's variance per FLOP"
    }

    fn choose(&self, round: &Choosing) -> Vec<Pick> {
        match round.fit.and_then(|fit| belief(round, fit)) {
            Some((ensemble, noise)) => choose_batch(&ensemble, &noise, round.settings.batch, |j, batch| round.affordable(j, batch)).1,
            // No usable bootstrap (the law could not be fitted): spread the design further.
            None => round.spread(round.settings.batch),
        }
    }
}

/// The bootstrap laws' ensemble over the candidates, and each candidate's noise σ_j²: one run's
/// scatter plus the law's misfit between its scale and the target's (a random walk in ln N and
/// ln D; see the criterion's model discrepancy). `None` with too few usable laws.
fn belief(round: &Choosing, fit: &Fitted) -> Option<(Ensemble, Vec<f64>)> {
    let target = &round.settings.target;
    let at: Vec<(f64, f64)> = round.candidates.iter().map(|c| (c.n, c.tokens)).collect();
    let sigma2 = noise_variance(&fit.log_residuals, round.parameters);
    let tau2 = fit.estimate.drift.as_ref().map_or(0.0, |d| d.discrepancy_per_log_distance);
    let target_run = target.point(&fit.estimate.law);
    let noise: Vec<f64> = at.iter().map(|&run| sigma2 + tau2 * log_distance(run, target_run)).collect();
    Some((Ensemble::new(&fit.laws, |l| target.value(l), &at)?, noise))
}
