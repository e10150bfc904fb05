//! The naive prediction `fit curve` compares the curve law with, the one a reader would otherwise
//! use: in each group, take the curve that never decays (the WSD trunk, the group's run with the
//! most evaluations among those), and the mean drop of the fitted decays (the trunk's loss where
//! each decay starts, less the decay's final loss); a run is predicted as the trunk's loss where
//! its decay starts, less that mean drop. A run whose rate is at the peak for less than half of it
//! (a cosine) is measured from its end instead, whether it is predicted or fitted (its drop then
//! enters the mean from there). The trunk is read between evaluations linearly,
//! and as flat past its last. A run's own data never enters its baseline.
//!
//! What that reads of the fitted runs is computed once per group, so that the baselines of many
//! runs (10,000 in a group) cost a pass over the group each, not a pass over every run's curve.

use super::data::Curve;

/// Each group's fitted runs, as the baseline reads them.
pub(crate) struct Baselines<'a> {
    groups: Vec<GroupRuns<'a>>,
}

/// One group's fitted runs, in the order they were fitted.
struct GroupRuns<'a> {
    group: &'a str,
    runs: Vec<Run<'a>>,
    /// The group's trunk, and each decay's drop from it (run index, drop).
    trunk: Option<usize>,
    drops: Vec<(usize, f64)>,
}

struct Run<'a> {
    curve: &'a Curve,
    decay_start: u64,
}

impl Run<'_> {
    fn decays(&self) -> bool {
        self.decay_start < self.curve.steps()
    }
}

impl<'a> Baselines<'a> {
    /// From the fitted runs.
    pub fn of(fit: &[&'a Curve]) -> Self {
        let mut groups: Vec<GroupRuns<'a>> = Vec::new();
        for &c in fit {
            let run = Run { curve: c, decay_start: c.decay_start() };
            match groups.iter_mut().find(|g| g.group == c.group) {
                Some(g) => g.runs.push(run),
                None => groups.push(GroupRuns { group: &c.group, runs: vec![run], trunk: None, drops: Vec::new() }),
            }
        }
        for g in &mut groups {
            g.trunk = g.trunk_without(None);
            g.drops = g.trunk.map_or_else(Vec::new, |t| g.drops_from(t));
        }
        Self { groups }
    }

    /// The baseline's final loss for `c`, from its group's fitted runs other than `c`.
    pub fn predict(&self, c: &Curve) -> Option<f64> {
        let g = self.groups.iter().find(|g| g.group == c.group)?;
        let other = |i: usize| g.runs[i].curve.run != c.run;
        let (trunk, drops) = match g.trunk {
            Some(t) if other(t) => (t, None),
            _ => {
                let t = g.trunk_without(Some(&c.run))?;
                (t, Some(g.drops_from(t)))
            }
        };
        let drops: Vec<f64> = drops.as_ref().unwrap_or(&g.drops).iter().filter(|d| other(d.0)).map(|d| d.1).collect();
        if drops.is_empty() {
            return None;
        }
        let mean_drop = drops.iter().sum::<f64>() / drops.len() as f64;
        Some(loss_along(g.runs[trunk].curve, measured_from(c, c.decay_start())) - mean_drop)
    }
}

impl GroupRuns<'_> {
    /// The run that never decays with the most evaluations (the last of those tied), other than
    /// the run named `left_out`.
    fn trunk_without(&self, left_out: Option<&str>) -> Option<usize> {
        let candidate = |i: &usize| !self.runs[*i].decays() && left_out != Some(self.runs[*i].curve.run.as_str());
        (0..self.runs.len()).filter(candidate).max_by_key(|&i| self.runs[i].curve.evals.len())
    }

    /// Each decay's drop from `trunk`: the trunk's loss where it starts, less its final loss.
    fn drops_from(&self, trunk: usize) -> Vec<(usize, f64)> {
        let trunk = self.runs[trunk].curve;
        (0..self.runs.len())
            .filter(|&i| self.runs[i].decays())
            .filter_map(|i| {
                let run = &self.runs[i];
                Some((i, loss_along(trunk, measured_from(run.curve, run.decay_start)) - run.curve.final_loss()?))
            })
            .collect()
    }
}

/// Where a run's drop is measured from on the trunk: where its decay starts, or its end for a run
/// at the peak for less than half of it (a cosine, whose drop from its start would be most of
/// its training, not its decay's).
fn measured_from(c: &Curve, decay_start: u64) -> u64 {
    if decay_start * 2 >= c.steps() {
        decay_start
    } else {
        c.steps()
    }
}

/// A curve's loss at `step`: linear between evaluations, flat beyond them.
fn loss_along(c: &Curve, step: u64) -> f64 {
    let e = &c.evals;
    match e.iter().position(|x| x.0 >= step) {
        None => e[e.len() - 1].1,
        Some(0) => e[0].1,
        Some(i) => {
            let (a, b) = (e[i - 1], e[i]);
            a.1 + (b.1 - a.1) * (step - a.0) as f64 / (b.0 - a.0) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(run: &str, lr: Vec<f64>, evals: Vec<(u64, f64)>) -> Curve {
        Curve { run: run.into(), group: "g".into(), n: None, lr, tokens_per_step: None, evals, finished: true }
    }

    /// A trunk and two decays: each decay's baseline is the trunk where it starts less the other
    /// decay's drop; the trunk's own has no trunk left to read.
    #[test]
    fn a_runs_baseline_leaves_its_own_data_out() {
        let trunk = curve("trunk", vec![1.0; 8], (1..=8).map(|s| (s, 4.0 - 0.1 * s as f64)).collect());
        let early = curve("early", vec![1.0, 1.0, 0.5, 0.0], vec![(4, 3.0)]);
        let late = curve("late", vec![1.0, 1.0, 1.0, 1.0, 0.5, 0.0], vec![(6, 3.2)]);
        let fit = [&trunk, &early, &late];
        let b = Baselines::of(&fit);
        // Drops: early 3.8 − 3.0 = 0.8 (its decay starts after step 2), late 3.6 − 3.2 = 0.4.
        assert!((b.predict(&early).unwrap() - (3.8 - 0.4)).abs() < 1e-12);
        assert!((b.predict(&late).unwrap() - (3.6 - 0.8)).abs() < 1e-12);
        assert_eq!(b.predict(&trunk), None);
    }

    /// A fitted cosine's drop is measured from its end, as its prediction is: from its start it
    /// would count most of its training as a decay's drop (the benchmark's baseline went from a
    /// median error of 0.37% to 4.3% when a cosine was fitted).
    #[test]
    fn a_fitted_cosines_drop_is_measured_from_its_end() {
        let trunk = curve("trunk", vec![1.0; 8], (1..=8).map(|s| (s, 4.0 - 0.1 * s as f64)).collect());
        let late = curve("late", vec![1.0, 1.0, 1.0, 1.0, 0.5, 0.0], vec![(6, 3.2)]);
        let cosine = curve("cosine", vec![1.0, 0.9, 0.7, 0.4, 0.2, 0.1], vec![(6, 3.0)]);
        let b = Baselines::of(&[&trunk, &late, &cosine]);
        // Drops: late 3.6 − 3.2 = 0.4; the cosine 3.4 − 3.0 = 0.4 (the trunk at step 6, its end).
        assert!((b.predict(&late).unwrap() - (3.6 - 0.4)).abs() < 1e-12);
        assert!((b.predict(&cosine).unwrap() - (3.4 - 0.4)).abs() < 1e-12);
    }
}
