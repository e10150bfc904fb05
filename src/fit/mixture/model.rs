//! The three forms of a mixture model and the objective they predict: one model per evaluation
//! set the objective weighs, fitted on the runs' weights, and the objective's prediction their
//! weighted sum.

use serde::{Deserialize, Serialize};

use super::linear::Linear;
use super::mixing_law::MixingLaw;
use super::trees::Trees;

/// A form of mixture model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MixtureForm {
    /// RegMix's linear regression on the weights.
    Linear,
    /// Data Mixing Laws' L = c + k·exp(Σ t_j r_j).
    MixingLaw,
    /// Gradient-boosted trees (perpetual), RegMix's LightGBM role.
    Trees,
}

impl MixtureForm {
    pub const ALL: [Self; 3] = [Self::Linear, Self::MixingLaw, Self::Trees];

    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::MixingLaw => "mixing-law",
            Self::Trees => "trees",
        }
    }

    /// The fewest runs a fit of this form on `domains` domains takes: one more than its parameters
    /// per evaluation set (the trees at least 10).
    pub fn min_runs(self, domains: usize) -> usize {
        match self {
            Self::Linear => domains + 1,
            Self::MixingLaw => domains + 3,
            Self::Trees => (domains + 1).max(10),
        }
    }

    /// Whether its prediction is smooth in the weights (then the optimum is refined by descent).
    pub fn is_smooth(self) -> bool {
        self != Self::Trees
    }
}

impl std::fmt::Display for MixtureForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MixtureForm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| format!("`{s}` is not a mixture form (linear, mixing-law or trees)"))
    }
}

/// One evaluation set's fitted model.
#[derive(Debug, Clone)]
pub enum SetModel {
    Linear(Linear),
    MixingLaw(MixingLaw),
    Trees(Trees),
}

impl SetModel {
    fn fit(form: MixtureForm, weights: &[Vec<f64>], losses: &[f64], seed: u64) -> Option<Self> {
        match form {
            MixtureForm::Linear => Linear::fit(weights, losses).map(Self::Linear),
            MixtureForm::MixingLaw => MixingLaw::fit(weights, losses, seed).map(Self::MixingLaw),
            MixtureForm::Trees => Trees::fit(weights, losses, seed).map(Self::Trees),
        }
    }

    fn predict_many(&self, mixtures: &[Vec<f64>]) -> Vec<f64> {
        match self {
            Self::Linear(m) => mixtures.iter().map(|r| m.predict(r)).collect(),
            Self::MixingLaw(m) => mixtures.iter().map(|r| m.predict(r)).collect(),
            Self::Trees(m) => m.predict_many(mixtures),
        }
    }
}

/// The objective's model: (the objective's weight of the set, its model) for each set it weighs.
#[derive(Debug, Clone)]
pub struct ObjectiveModel {
    pub form: MixtureForm,
    pub sets: Vec<(f64, SetModel)>,
}

impl ObjectiveModel {
    /// Fit one model per set: `losses[i]` are set i's losses of the runs, `set_weights[i]` its
    /// weight in the objective. `None` when a set's fit fails.
    pub fn fit(form: MixtureForm, weights: &[Vec<f64>], losses: &[Vec<f64>], set_weights: &[f64], seed: u64) -> Option<Self> {
        let sets = losses.iter().zip(set_weights).map(|(l, &w)| SetModel::fit(form, weights, l, seed).map(|m| (w, m))).collect::<Option<Vec<_>>>()?;
        Some(Self { form, sets })
    }

    /// The same form refitted on other runs (a bootstrap resample): a mixing law from this one's
    /// parameters, the others afresh.
    pub fn refit(&self, weights: &[Vec<f64>], losses: &[Vec<f64>], seed: u64) -> Option<Self> {
        let sets = self
            .sets
            .iter()
            .zip(losses)
            .map(|((w, m), l)| {
                let refitted = match m {
                    SetModel::MixingLaw(law) => law.refit(weights, l).map(SetModel::MixingLaw),
                    _ => SetModel::fit(self.form, weights, l, seed),
                };
                refitted.map(|m| (*w, m))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { form: self.form, sets })
    }

    /// The predicted objective at each mixture.
    pub fn predict_many(&self, mixtures: &[Vec<f64>]) -> Vec<f64> {
        let mut total = vec![0.0; mixtures.len()];
        for (w, m) in &self.sets {
            for (t, p) in total.iter_mut().zip(m.predict_many(mixtures)) {
                *t += w * p;
            }
        }
        total
    }

    pub fn predict(&self, r: &[f64]) -> f64 {
        self.predict_many(&[r.to_vec()])[0]
    }
}
