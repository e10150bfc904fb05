//! What a curve law's decay term h_φ reads, built once per fit from the runs' schedules: each
//! run's drop of the rate at every step (for a recursion over steps: the annealing law), and the
//! decrements of the rate before each point (for a sum over them: the multi-power law).
//!
//! **Exact, or in blocks.** A point with at most [`DIRECT_DECREMENTS`] decrements before it (every
//! run a wind tunnel trains) has each of them as a [`Decrement`]. A point with more (a cosine of
//! 50,000 steps decays at each of them) has its decrements gathered into blocks of consecutive
//! steps, walking back from the point, each block as narrow as
//!
//! ```text
//! ln(S_first / S_last) + Γ · ln(η_max / η_min) ≤ w = BLOCK_WIDTH        (Γ = GAMMA_BOUND = 2)
//! ```
//!
//! over its decrements k (S = S_k(t), the area since k). A block enters the sum as one decrement:
//! its total drop, at the drop-weighted mean rate and mean area. The steps near the point, where
//! one step already moves S_k(t) by more than w, stay single and exact; far from it, a block
//! spans many steps. So a point costs about (ln of the run's length + Γ·ln of the rate's range) / w
//! terms instead of one per step.
//!
//! **The error bound.** A term of the multi-power law is d·G(x), G(x) = 1 − (C·x + 1)^(−β),
//! x = η^(−γ)·S; as a function of v = ln x, G has |G'| < 1/e and |G''| < 1/3 for every C and
//! β > 0 (`form.rs` checks both), and within a block v spans at most w for every γ ≤ Γ. The
//! block's mean rate and area put its v within w²/8 of the drop-weighted mean of v (the gap of
//! Jensen's inequality for ln), so the block's error is at most d·(w²/8)/e from that shift plus
//! d·(1/3)·(w²/4)/2 from the curvature, in all
//!
//! ```text
//! |h_blocks − h_direct| ≤ (w²/10) · Σ_k |η_{k−1} − η_k|      (rates in units of the peak)
//! ```
//!
//! 9·10⁻⁵ of the rate's total decline at w = 0.03: for a decay to zero, a loss error of at most
//! 9·10⁻⁵·B nats (B ≈ 0.1–0.4), against a fit's residuals of 10⁻³ relative.

use std::ops::Range;

/// A point with at most this many decrements of the rate before it sums them one by one.
pub const DIRECT_DECREMENTS: usize = 1024;

/// w: the widest block, in ln of the area since its decrements plus Γ times ln of their rates.
pub const BLOCK_WIDTH: f64 = 0.03;

/// Γ: the largest exponent of the rate the block width allows for (the multi-power law's γ).
pub const GAMMA_BOUND: f64 = 2.0;

/// One decrement of the learning rate after the warmup (or a block of them), seen from a later
/// step t.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decrement {
    /// η_{k−1} − η_k (relative to the fit's reference rate).
    pub drop: f64,
    /// ln η_k; −∞ where the rate reached zero.
    pub ln_lr: f64,
    /// S_k(t) = Σ_{τ=k}^{t} η_τ.
    pub area_since: f64,
}

/// One run's rates relative to the fit's reference rate, with what the decay terms read.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// η_k for k = 1..=T, at index k − 1.
    lr: Vec<f64>,
    /// Σ_{τ≤k} η_τ for k = 0..=T.
    prefix: Vec<f64>,
    /// η_{k−1} − η_k at index k − 1 for the steps after the warmup, 0 before.
    drops: Vec<f64>,
    /// How many steps up to k (k = 0..=T) have a drop that is not zero.
    decrements_up_to: Vec<u32>,
    /// The first step after the warmup (at least 2).
    first: usize,
}

impl Schedule {
    /// The schedule of step rates `lr` (steps 1..=T) in units of `lr_ref`; its warmup is the steps
    /// up to the first at its peak.
    pub fn new(lr: &[f64], lr_ref: f64, warmup: usize) -> Self {
        let lr: Vec<f64> = lr.iter().map(|x| x / lr_ref).collect();
        let mut prefix = Vec::with_capacity(lr.len() + 1);
        prefix.push(0.0);
        let mut sum = 0.0;
        for &x in &lr {
            sum += x;
            prefix.push(sum);
        }
        let first = (warmup + 1).max(2);
        let drops: Vec<f64> = (1..=lr.len()).map(|k| if k >= first { lr[k - 2] - lr[k - 1] } else { 0.0 }).collect();
        let mut decrements_up_to = Vec::with_capacity(lr.len() + 1);
        decrements_up_to.push(0);
        let mut count = 0u32;
        for d in &drops {
            count += u32::from(*d != 0.0);
            decrements_up_to.push(count);
        }
        Self { lr, prefix, drops, decrements_up_to, first }
    }

    /// S₁(t): the area up to step t.
    pub fn area(&self, t: usize) -> f64 {
        self.prefix[t]
    }

    /// The decrements before step t, appended to `out`: one by one (k rising) where there are at
    /// most [`DIRECT_DECREMENTS`], else in blocks (see the module doc).
    pub fn decrements_before(&self, t: usize, out: &mut Vec<Decrement>) {
        if self.decrements_up_to[t] as usize <= DIRECT_DECREMENTS {
            self.direct(t, out);
        } else {
            self.blocks(t, out);
        }
    }

    /// Every decrement before step t, k rising.
    pub fn direct(&self, t: usize, out: &mut Vec<Decrement>) {
        for k in self.first..=t {
            let drop = self.drops[k - 1];
            if drop != 0.0 {
                out.push(Decrement { drop, ln_lr: self.lr[k - 1].ln(), area_since: self.prefix[t] - self.prefix[k - 1] });
            }
        }
    }

    /// The decrements before step t in blocks no wider than [`BLOCK_WIDTH`], k rising.
    fn blocks(&self, t: usize, out: &mut Vec<Decrement>) {
        let start = out.len();
        let mut k = t;
        while k >= self.first {
            if self.drops[k - 1] == 0.0 {
                k -= 1;
                continue;
            }
            let (block, next) = self.block_from(t, k);
            out.push(block);
            k = next;
        }
        out[start..].reverse();
    }

    /// The block whose latest decrement is at step k (before step t), and the step below it.
    /// Its width, e^w ≥ (S_first / S_last) · (η_max / η_min)^Γ, is checked without logarithms.
    fn block_from(&self, t: usize, k: usize) -> (Decrement, usize) {
        let limit = BLOCK_WIDTH.exp();
        let area_since = |j: usize| self.prefix[t] - self.prefix[j - 1];
        let (first_drop, nearest) = (self.drops[k - 1], area_since(k));
        let (mut low, mut high) = (self.lr[k - 1], self.lr[k - 1]);
        let (mut drop, mut drop_lr, mut drop_area, mut members) = (first_drop, first_drop * low, first_drop * nearest, 1);
        let mut j = k - 1;
        while j >= self.first {
            let d = self.drops[j - 1];
            if d != 0.0 {
                let (eta, area) = (self.lr[j - 1], area_since(j));
                let (l, h) = (low.min(eta), high.max(eta));
                let rate_spread = h / l;
                if d.signum() != first_drop.signum() || area / nearest * rate_spread * rate_spread > limit {
                    break;
                }
                (low, high) = (l, h);
                (drop, drop_lr, drop_area, members) = (drop + d, drop_lr + d * eta, drop_area + d * area, members + 1);
            }
            j -= 1;
        }
        let block = match members {
            1 => Decrement { drop, ln_lr: self.lr[k - 1].ln(), area_since: nearest },
            _ => Decrement { drop, ln_lr: (drop_lr / drop).ln(), area_since: drop_area / drop },
        };
        (block, j)
    }
}

/// Each run's drops and points, and every point's decrements: the decay terms' input for a fit's
/// points, or for the steps a law predicts.
#[derive(Debug, Clone, Default)]
pub struct Decays {
    runs: Vec<RunDecays>,
    /// The run of each point.
    run_of: Vec<usize>,
    /// Each point's decrements in `decrements`.
    ranges: Vec<Range<usize>>,
    decrements: Vec<Decrement>,
}

/// One run's part of [`Decays`].
#[derive(Debug, Clone)]
pub struct RunDecays {
    /// η_{k−1} − η_k at index k − 1, 0 in the warmup.
    pub drops: Vec<f64>,
    /// The steps of its points (rising, as a run's evaluations are).
    pub steps: Vec<usize>,
    /// Its points among all points.
    pub points: Range<usize>,
}

impl Decays {
    /// Adds a run's points at `steps` (1..=T, rising).
    pub fn push_run(&mut self, schedule: Schedule, steps: Vec<usize>) {
        let run = self.runs.len();
        let begin = self.ranges.len();
        for &t in &steps {
            let start = self.decrements.len();
            schedule.decrements_before(t, &mut self.decrements);
            self.ranges.push(start..self.decrements.len());
            self.run_of.push(run);
        }
        self.runs.push(RunDecays { drops: schedule.drops, steps, points: begin..self.ranges.len() });
    }

    /// How many points.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn runs(&self) -> &[RunDecays] {
        &self.runs
    }

    /// The run of point i.
    pub fn run_of(&self, i: usize) -> usize {
        self.run_of[i]
    }

    /// Point i's decrements (exact, or in blocks).
    pub fn decrements(&self, i: usize) -> &[Decrement] {
        &self.decrements[self.ranges[i].clone()]
    }

    /// Each run with its points' part of `h` (one value a point) and of `grad` (`per_point`
    /// values a point), for a form that works run by run.
    pub fn by_run<'a>(&'a self, mut h: &'a mut [f64], mut grad: &'a mut [f64], per_point: usize) -> Vec<(&'a RunDecays, &'a mut [f64], &'a mut [f64])> {
        let mut out = Vec::with_capacity(self.runs.len());
        for run in &self.runs {
            let (run_h, rest_h) = h.split_at_mut(run.points.len());
            let (run_grad, rest_grad) = grad.split_at_mut(run.points.len() * per_point);
            out.push((run, run_h, run_grad));
            (h, grad) = (rest_h, rest_grad);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decrements_after_the_warmup_with_their_area_since() {
        let s = Schedule::new(&[0.5, 1.0, 1.0, 0.5, 0.25], 1.0, 2);
        assert_eq!(s.area(5), 3.25);
        let mut d = Vec::new();
        s.decrements_before(5, &mut d);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].drop, d[0].area_since, d[0].ln_lr), (0.5, 0.75, 0.5f64.ln()));
        assert_eq!((d[1].drop, d[1].area_since), (0.25, 0.25));
    }

    /// Blocks keep the total drop and the drop-weighted area; each is no wider than w; the steps
    /// near the point stay single; and a long cosine's point has a few hundred terms, not 50,000.
    #[test]
    fn blocks_are_narrow_keep_the_drop_and_are_few() {
        let steps = 50_000;
        let lr: Vec<f64> = (1..=steps).map(|k| 0.1 + 0.45 * (1.0 + (std::f64::consts::PI * k as f64 / steps as f64).cos())).collect();
        let s = Schedule::new(&lr, 1.0, 0);
        let (mut direct, mut blocks) = (Vec::new(), Vec::new());
        s.direct(steps, &mut direct);
        s.decrements_before(steps, &mut blocks);
        assert!(direct.len() > DIRECT_DECREMENTS);
        assert!(blocks.len() < 1000, "{} terms", blocks.len());
        let total = |d: &[Decrement]| d.iter().map(|x| x.drop).sum::<f64>();
        assert!((total(&direct) - total(&blocks)).abs() < 1e-12);
        let weighted = |d: &[Decrement]| d.iter().map(|x| x.drop * x.area_since).sum::<f64>();
        assert!((weighted(&direct) / weighted(&blocks) - 1.0).abs() < 1e-9);
        assert_eq!(blocks.last(), direct.last(), "the decrement at the point itself is exact");
        assert!(blocks.windows(2).all(|w| w[0].area_since > w[1].area_since), "k rising");
    }
}
