//! Gradient-boosted trees in RegMix's LightGBM role, from the `forust-ml` crate (pure Rust, the
//! histogram boosting LightGBM does). One booster per evaluation set, squared loss, no row or
//! column sampling and on one thread, so a fit is the same every time.

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};

/// Boosting rounds, step and depth: LightGBM's usual regression settings scaled to a few hundred
/// runs (a smaller step with more rounds changed the cross-validated ρ on RegMix's runs by < 0.01).
pub const ROUNDS: usize = 300;
pub const LEARNING_RATE: f32 = 0.1;
pub const MAX_DEPTH: usize = 5;

/// A fitted booster.
#[derive(Clone)]
pub struct Trees {
    booster: std::sync::Arc<GradientBooster>,
    domains: usize,
}

impl std::fmt::Debug for Trees {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Trees({} trees)", self.booster.trees.len())
    }
}

impl Trees {
    pub fn fit(weights: &[Vec<f64>], losses: &[f64], seed: u64) -> Option<Self> {
        let domains = weights.first()?.len();
        let data = column_major(weights, domains);
        let matrix = Matrix::new(&data, weights.len(), domains);
        let mut booster = GradientBooster::default()
            .set_objective_type(ObjectiveType::SquaredLoss)
            .set_iterations(ROUNDS)
            .set_learning_rate(LEARNING_RATE)
            .set_max_depth(MAX_DEPTH)
            .set_parallel(false)
            .set_seed(seed);
        booster.fit_unweighted(&matrix, losses, None).ok()?;
        Some(Self { booster: std::sync::Arc::new(booster), domains })
    }

    /// The number of trees the booster grew.
    pub fn trees(&self) -> usize {
        self.booster.trees.len()
    }

    pub fn predict_many(&self, mixtures: &[Vec<f64>]) -> Vec<f64> {
        if mixtures.is_empty() {
            return Vec::new();
        }
        let data = column_major(mixtures, self.domains);
        self.booster.predict(&Matrix::new(&data, mixtures.len(), self.domains), false)
    }
}

/// forust's matrices are column-major.
fn column_major(rows: &[Vec<f64>], columns: usize) -> Vec<f64> {
    (0..columns).flat_map(|j| rows.iter().map(move |r| r[j])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn learns_a_step_and_is_the_same_every_time() {
        let mut rng = Rng::new(1);
        let weights: Vec<Vec<f64>> = (0..200)
            .map(|_| {
                let a = rng.next_f64();
                vec![a, 1.0 - a]
            })
            .collect();
        let losses: Vec<f64> = weights.iter().map(|r| if r[0] > 0.5 { 2.0 } else { 3.0 }).collect();
        let fit = Trees::fit(&weights, &losses, 0).unwrap();
        let p = fit.predict_many(&[vec![0.9, 0.1], vec![0.1, 0.9]]);
        assert!((p[0] - 2.0).abs() < 0.1 && (p[1] - 3.0).abs() < 0.1, "{p:?}");
        assert_eq!(p, Trees::fit(&weights, &losses, 0).unwrap().predict_many(&[vec![0.9, 0.1], vec![0.1, 0.9]]));
    }
}
