//! Uncertainty by the bootstrap: resample the points with replacement, refit, and summarise
//! every parameter and derived quantity by its standard error and percentile interval.
//!
//! Each refit starts from the full fit's optimum (fast, and the usual choice when the full fit's
//! basin is well separated) or, with `full_grid`, from the form's whole start grid. Samples are drawn from
//! windtunnel's own seeded generator, so the intervals are reproducible.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::law::{fit_from, minimise, FitSpec, Law, Point};
use crate::rng::Rng;

/// Standard error and a central percentile interval of one quantity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub std_error: f64,
    pub lower: f64,
    pub upper: f64,
}

impl Interval {
    /// From the full-data estimate and the bootstrap replicates; `level` e.g. 0.95.
    pub fn from_samples(estimate: f64, samples: &[f64], level: f64) -> Self {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        s.sort_by(f64::total_cmp);
        let n = s.len().max(1) as f64;
        let mean = s.iter().sum::<f64>() / n;
        let std_error = if s.is_empty() { f64::NAN } else { (s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt() };
        let q = |p: f64| {
            if s.is_empty() {
                return f64::NAN;
            }
            let pos = p * (s.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
        };
        let tail = (1.0 - level) / 2.0;
        Self { estimate, std_error, lower: q(tail), upper: q(1.0 - tail) }
    }

    /// Whether the resamples pin the quantity at all: a standard error more than ten times the
    /// estimate (the quickstart's A: 134 ± 6.7e31) means the points leave it free, traded against
    /// another parameter; its number then says nothing and is not printed.
    pub fn is_identified(&self) -> bool {
        self.std_error.is_finite() && self.std_error <= 10.0 * self.estimate.abs()
    }

    pub fn contains(&self, x: f64) -> bool {
        self.lower <= x && x <= self.upper
    }
}

/// The fitted laws of `samples` bootstrap resamples (those whose refit succeeded).
pub fn resample_fits(spec: &FitSpec, points: &[Point], full: &Law, delta: f64, samples: usize, seed: u64, full_grid: bool) -> Vec<Law> {
    let form = spec.form;
    let grid = if full_grid { form.law_form().start_grid() } else { Vec::new() };
    (0..samples)
        .into_par_iter()
        .filter_map(|k| {
            let mut rng = Rng::derive(seed, &[0xB007, k as u64]);
            let sample = rng.resample(points);
            if full_grid {
                fit_from(spec.clone(), &sample, delta, &grid).map(|f| f.law)
            } else {
                minimise(spec.clone(), &sample, delta, false, &full.theta(), 1000).map(|(t, _, _)| Law::from_theta(form, &t))
            }
        })
        .collect()
}

/// A prediction interval for the loss of one new run at (N, D): each bootstrap law's prediction
/// times e^r, r a residual drawn from the full fit's log residuals — the uncertainty of the law and
/// the scatter of single runs about it. Residuals are widened by √(n/(n−p)) for the p parameters the
/// fit spent on them (fitted residuals are smaller than the noise). `None` with fewer than 20
/// bootstrap laws.
pub fn prediction_interval(estimate: f64, laws: &[Law], log_residuals: &[f64], n: f64, d: f64, level: f64, seed: u64) -> Option<Interval> {
    if laws.len() < 20 || log_residuals.is_empty() {
        return None;
    }
    let (points, parameters) = (log_residuals.len() as f64, laws[0].named().len() as f64);
    let widen = (points / (points - parameters).max(1.0)).sqrt();
    let mut rng = Rng::derive(seed, &[0x9E0, n.to_bits(), d.to_bits()]);
    let samples: Vec<f64> = laws.iter().map(|l| l.loss(n, d) * (widen * log_residuals[rng.below(log_residuals.len() as u64) as usize]).exp()).collect();
    Some(Interval::from_samples(estimate, &samples, level))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_parameter_the_resamples_leave_free_is_not_identified() {
        let free = Interval { estimate: 134.1, std_error: 6.7e31, lower: 8.3, upper: 2221.8 };
        let pinned = Interval { estimate: 2.162, std_error: 0.0615, lower: 2.052, upper: 2.177 };
        assert!(!free.is_identified() && pinned.is_identified());
        assert!(!Interval { std_error: f64::NAN, ..pinned }.is_identified());
    }
    use super::*;

    #[test]
    fn percentile_interval_of_a_known_sample() {
        let samples: Vec<f64> = (0..=100).map(|i| i as f64).collect();
        let i = Interval::from_samples(50.0, &samples, 0.9);
        assert!((i.lower - 5.0).abs() < 1e-12 && (i.upper - 95.0).abs() < 1e-12);
        assert!((i.std_error - 29.3).abs() < 0.1);
    }

    /// Six sizes 2.5× apart, each at six token counts, the losses of `truth` with log-normal noise.
    fn noisy_points(truth: &Law, noise: f64, rng: &mut Rng) -> Vec<Point> {
        let mut points = Vec::new();
        for i in 0..6 {
            let n = 2e7 * 2.5f64.powi(i);
            for j in 0..6 {
                let d = n * 4.0 * 2.2f64.powi(j);
                points.push(Point { n, d, loss: truth.loss(n, d) * (noise * rng.normal()).exp() });
            }
        }
        points
    }

    /// With noise, the fit lands near the truth, the 95% interval usually covers it, and over
    /// repeated data sets the coverage is close to nominal.
    #[test]
    fn intervals_cover_the_truth_at_about_their_nominal_rate() {
        let truth = Law::chinchilla(1.8, 400.0, 1500.0, 0.34, 0.30);
        let mut covered = 0;
        let trials = 20;
        for trial in 0..trials {
            let mut rng = Rng::new(100 + trial);
            let points = noisy_points(&truth, 0.01, &mut rng);
            let full = crate::fit::law::fit_from(
                crate::fit::form::Form::Chinchilla,
                &points,
                1e-3,
                &[vec![5.0, 5.0, 0.5, 0.5, 0.5], vec![6.0, 7.0, 0.6, 0.3, 0.3], vec![0.0, 10.0, 0.0, 0.5, 0.5]],
            )
            .unwrap();
            let laws = resample_fits(&crate::fit::form::Form::Chinchilla.into(), &points, &full.law, 1e-3, 200, trial, false);
            let alphas: Vec<f64> = laws.iter().map(|l| l.get("alpha").unwrap()).collect();
            let interval = Interval::from_samples(full.law.get("alpha").unwrap(), &alphas, 0.95);
            if interval.contains(truth.get("alpha").unwrap()) {
                covered += 1;
            }
            assert!((full.law.get("alpha").unwrap() - truth.get("alpha").unwrap()).abs() < 0.1, "trial {trial}: α = {}", full.law.get("alpha").unwrap());
        }
        assert!(covered >= 15, "95% intervals covered the truth in {covered} of {trials} data sets");
    }

    /// A new run's loss falls inside its 95% prediction interval about 95% of the time: fit noisy
    /// points, then draw a fresh noisy run at an (N, D) between the fitted ones. (Over 200 trials
    /// the coverage measured 190/200; the law's own interval covered 93/200.)
    #[test]
    fn prediction_intervals_cover_new_runs_at_about_their_nominal_rate() {
        let truth = Law::chinchilla(1.8, 400.0, 1500.0, 0.34, 0.30);
        let (noise, trials) = (0.02, 40);
        let mut covered = 0;
        let mut mean_only = 0;
        for trial in 0..trials {
            let mut rng = Rng::new(500 + trial);
            let points = noisy_points(&truth, noise, &mut rng);
            let form = crate::fit::form::Form::Chinchilla;
            let full = fit_from(form, &points, 1e-3, &[vec![6.0, 7.3, 0.6, 0.34, 0.30], vec![5.0, 5.0, 0.5, 0.5, 0.5]]).unwrap();
            let laws = resample_fits(&crate::fit::form::Form::Chinchilla.into(), &points, &full.law, 1e-3, 200, trial, false);
            let (n, d) = (1.5e8, 1.5e8 * 12.0);
            let observed = truth.loss(n, d) * (noise * rng.normal()).exp();
            let estimate = full.law.loss(n, d);
            let interval = prediction_interval(estimate, &laws, &full.log_residuals, n, d, 0.95, trial).unwrap();
            covered += usize::from(interval.contains(observed));
            // The interval of the law alone is far narrower: it misses most single runs.
            let mean = Interval::from_samples(estimate, &laws.iter().map(|l| l.loss(n, d)).collect::<Vec<_>>(), 0.95);
            mean_only += usize::from(mean.contains(observed));
        }
        assert!(covered >= 34, "95% prediction intervals covered {covered} of {trials} new runs");
        assert!(mean_only < covered, "the law's own interval covered {mean_only}, the prediction interval {covered}");
    }
}
