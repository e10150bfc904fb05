//! The best mixture a model predicts, under the user's constraints: per-domain lowest and highest
//! weights, and the tokens each domain has, which at the planned run's tokens and a cap on
//! repetitions cap its weight (`weight ≤ available·max_epochs / target_tokens`); and, unless
//! extrapolating, no domain above the largest weight any run gave it (beyond that the models have
//! no data: a mixing law fitted on runs with at most 3% of a domain can put 70% on it). Solved over the
//! simplex as RegMix does, on a large sampled candidate set (Dirichlet mixtures at several
//! concentrations, and the runs' own), then, for a smooth form, by projected descent from the best
//! candidates, and for trees as the mean of the best hundred (RegMix's choice) unless the best
//! single candidate predicts lower.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::data::MixtureRuns;
use super::model::ObjectiveModel;
use crate::rng::Rng;

/// What the user allows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConstraintSpec {
    /// Per domain, its lowest weight.
    pub min: BTreeMap<String, f64>,
    /// Per domain, its highest weight.
    pub max: BTreeMap<String, f64>,
    /// Per domain, the tokens it has.
    pub available: BTreeMap<String, f64>,
    /// The planned run's training tokens.
    pub target_tokens: Option<f64>,
    /// The most times the planned run may see a domain's tokens.
    pub max_epochs: f64,
    /// Let a domain's weight go past the largest any run gave it (where no model has data).
    pub extrapolate: bool,
}

impl ConstraintSpec {
    pub const DEFAULT_MAX_EPOCHS: f64 = 4.0;
}

/// Each domain's lowest and highest weight, and why it is capped (for messages).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bounds {
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    #[serde(skip)]
    why_upper: Vec<String>,
}

impl Bounds {
    /// Every weight from 0 to 1.
    pub fn free(domains: usize) -> Self {
        Self { lower: vec![0.0; domains], upper: vec![1.0; domains], why_upper: vec![String::new(); domains] }
    }

    pub fn contains(&self, r: &[f64]) -> bool {
        r.iter().zip(self.lower.iter().zip(&self.upper)).all(|(x, (lo, hi))| *x >= lo - 1e-9 && *x <= hi + 1e-9) && (r.iter().sum::<f64>() - 1.0).abs() < 1e-9
    }
}

impl ConstraintSpec {
    /// The bounds on `runs`' domains; an error when a flag names no domain or no mixture fits.
    pub fn bounds(&self, runs: &MixtureRuns) -> anyhow::Result<Bounds> {
        let mut b = Bounds::free(runs.domains.len());
        for (flag, map) in [("--min", &self.min), ("--max", &self.max), ("--available", &self.available)] {
            for (name, &v) in map {
                let j = runs.domain(name, flag)?;
                anyhow::ensure!(v.is_finite() && v >= 0.0, "{flag} {name}={v}: not a weight or token count (≥ 0)");
                match flag {
                    "--min" => b.lower[j] = v,
                    "--max" => (b.upper[j], b.why_upper[j]) = (v.min(1.0), "--max".into()),
                    _ => {
                        let Some(target) = self.target_tokens else {
                            anyhow::bail!("--available needs --target-tokens: the planned run's tokens say how much of each domain it takes")
                        };
                        anyhow::ensure!(target.is_finite() && target > 0.0, "--target-tokens {target}: not a positive token count");
                        let cap = v * self.max_epochs / target;
                        if cap < b.upper[j] {
                            (b.upper[j], b.why_upper[j]) = (cap, format!("{v:e} tokens × {} epochs / {target:e}", self.max_epochs));
                        }
                    }
                }
            }
        }
        if !self.extrapolate {
            for j in 0..runs.domains.len() {
                let most = runs.weights.iter().map(|w| w[j]).fold(0.0, f64::max);
                if most < b.upper[j] {
                    (b.upper[j], b.why_upper[j]) = (most, "the largest weight any run gave it; --extrapolate lifts this".into());
                }
            }
        }
        self.check_feasible(runs, &b)?;
        Ok(b)
    }

    fn check_feasible(&self, runs: &MixtureRuns, b: &Bounds) -> anyhow::Result<()> {
        for (j, name) in runs.domains.iter().enumerate() {
            anyhow::ensure!(
                b.lower[j] <= b.upper[j],
                "no mixture satisfies the constraints: domain `{name}` must have at least {} (--min) but at most {} ({}); lower --min {name} or raise its cap",
                b.lower[j],
                b.upper[j],
                b.why_upper[j]
            );
        }
        let (lo, hi): (f64, f64) = (b.lower.iter().sum(), b.upper.iter().sum());
        anyhow::ensure!(lo <= 1.0 + 1e-12, "no mixture satisfies the constraints: the --min weights sum to {lo} > 1; lower them");
        let caps: Vec<String> =
            runs.domains.iter().enumerate().filter(|(j, _)| b.upper[*j] < 1.0).map(|(j, d)| format!("{d} ≤ {:.4} ({})", b.upper[j], b.why_upper[j])).collect();
        anyhow::ensure!(
            hi >= 1.0 - 1e-12,
            "no mixture satisfies the constraints: the highest weights allowed sum to {hi:.4} < 1 ({}); raise --max, --available or --max-epochs, \
             or lower --target-tokens",
            caps.join(", ")
        );
        Ok(())
    }
}

/// The nearest point of the bounded simplex to `v` (clamp(v − τ) with τ found by bisection).
pub fn project(v: &[f64], b: &Bounds) -> Vec<f64> {
    let at = |tau: f64| -> Vec<f64> { v.iter().zip(b.lower.iter().zip(&b.upper)).map(|(x, (lo, hi))| (x - tau).clamp(*lo, *hi)).collect() };
    let (mut low, mut high) = (v.iter().copied().fold(f64::INFINITY, f64::min) - 2.0, v.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 2.0);
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if at(mid).iter().sum::<f64>() > 1.0 {
            low = mid;
        } else {
            high = mid;
        }
    }
    let mut r = at(0.5 * (low + high));
    let s: f64 = r.iter().sum();
    // The last rounding: put it on a domain with room.
    if let Some(j) = (0..r.len()).find(|&j| r[j] + (1.0 - s) >= b.lower[j] && r[j] + (1.0 - s) <= b.upper[j]) {
        r[j] += 1.0 - s;
    }
    r
}

/// A Gamma(α, 1) draw (Marsaglia and Tsang).
fn gamma(rng: &mut Rng, alpha: f64) -> f64 {
    if alpha < 1.0 {
        return gamma(rng, alpha + 1.0) * rng.next_f64().max(1e-300).powf(1.0 / alpha);
    }
    let d = alpha - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let v = (1.0 + c * x).powi(3);
        if v > 0.0 && rng.next_f64().max(1e-300).ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// `count` candidate mixtures in the bounds: Dirichlet draws at concentrations 0.1 to 3 (sparse to
/// even), the runs' own mixtures and the even mixture, each projected onto the bounds.
pub fn candidates(runs: &[Vec<f64>], b: &Bounds, count: usize, seed: u64) -> Vec<Vec<f64>> {
    let d = b.lower.len();
    let mut rng = Rng::derive(seed, &[0xD121]);
    let mut out: Vec<Vec<f64>> = runs.iter().map(|r| project(r, b)).collect();
    out.push(project(&vec![1.0 / d as f64; d], b));
    for i in 0..count {
        let alpha = [0.1, 0.3, 1.0, 3.0][i % 4];
        let g: Vec<f64> = (0..d).map(|_| gamma(&mut rng, alpha)).collect();
        let s: f64 = g.iter().sum::<f64>().max(1e-300);
        out.push(project(&g.iter().map(|x| x / s).collect::<Vec<_>>(), b));
    }
    out
}

/// How many of the best candidates a tree model's optimum averages (RegMix's choice).
pub const TREE_TOP: usize = 100;

/// The candidate the model predicts lowest, refined for a smooth form by projected descent from
/// the best eight; for trees the mean of the best [`TREE_TOP`] when it predicts no worse than the
/// best. (mixture, predicted objective).
pub fn optimise(model: &ObjectiveModel, runs: &[Vec<f64>], b: &Bounds, count: usize, seed: u64) -> (Vec<f64>, f64) {
    let cands = candidates(runs, b, count, seed);
    let predicted = model.predict_many(&cands);
    let mut order: Vec<usize> = (0..cands.len()).filter(|&i| predicted[i].is_finite()).collect();
    order.sort_by(|&x, &y| predicted[x].total_cmp(&predicted[y]));
    let best = (cands[order[0]].clone(), predicted[order[0]]);
    if !model.form.is_smooth() {
        // A tree model is flat in places and its single lowest candidate a matter of chance:
        // RegMix takes the mean of the best 100 (the mean of points in the bounds is in them),
        // kept here when the model predicts it no worse than the best candidate.
        let top: Vec<&Vec<f64>> = order.iter().take(TREE_TOP).map(|&i| &cands[i]).collect();
        let mean: Vec<f64> = (0..b.lower.len()).map(|j| top.iter().map(|c| c[j]).sum::<f64>() / top.len() as f64).collect();
        let mean = project(&mean, b);
        let predicted = model.predict(&mean);
        return if predicted <= best.1 { (mean, predicted) } else { best };
    }
    order.iter().take(8).map(|&i| descend(model, cands[i].clone(), predicted[i], b)).fold(best, |a, c| if c.1 < a.1 { c } else { a })
}

/// Projected gradient descent (central differences), the step growing on success and halving on
/// failure.
fn descend(model: &ObjectiveModel, mut x: Vec<f64>, mut f: f64, b: &Bounds) -> (Vec<f64>, f64) {
    let mut step = 0.05;
    for _ in 0..500 {
        let g: Vec<f64> = (0..x.len())
            .map(|j| {
                let h = 1e-6;
                let (mut up, mut down) = (x.clone(), x.clone());
                up[j] += h;
                down[j] -= h;
                (model.predict(&up) - model.predict(&down)) / (2.0 * h)
            })
            .collect();
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            break;
        }
        let trial = project(&x.iter().zip(&g).map(|(xi, gi)| xi - step * gi / norm).collect::<Vec<_>>(), b);
        let ft = model.predict(&trial);
        if ft < f {
            (x, f) = (trial, ft);
            step *= 1.5;
        } else {
            step *= 0.5;
            if step < 1e-10 {
                break;
            }
        }
    }
    (x, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_lands_in_the_bounds_and_keeps_points_already_there() {
        let b = Bounds { lower: vec![0.1, 0.0, 0.0], upper: vec![1.0, 0.3, 1.0], why_upper: vec![String::new(); 3] };
        let r = project(&[0.0, 0.9, 0.4], &b);
        assert!(b.contains(&r), "{r:?}");
        // τ = −0.15: (0 + 0.15, capped at 0.3, 0.4 + 0.15).
        assert!((r[0] - 0.15).abs() < 1e-9 && (r[1] - 0.3).abs() < 1e-9 && (r[2] - 0.55).abs() < 1e-9, "{r:?}");
        let inside = [0.2, 0.3, 0.5];
        let p = project(&inside, &b);
        assert!(p.iter().zip(inside).all(|(a, b)| (a - b).abs() < 1e-9), "{p:?}");
        assert!(candidates(&[], &b, 200, 0).iter().all(|c| b.contains(c)));
    }
}
