//! Hyperparameter laws from sweeps: learning-rate transfer across widths (µTransfer), MiniCPM's
//! batch-size law `bs_opt = k / L^γ`, and DeepSeek's power laws of the optimal learning rate and
//! batch size in compute.
//!
//! **Learning-rate transfer.** For each width (and depth), the optimum of final loss against
//! log lr is the vertex of a parabola through the best points (the minimum and up to two
//! neighbours on each side) of the mean loss over seeds; its uncertainty comes from resampling
//! the seeds at every rate (two or more seeds), or from a residual bootstrap of that parabola (one).
//! The drift of the optimum with width is the least-squares slope of log lr_opt on log width,
//! with a 95% interval. Under µP it should be near 0; under SP clearly negative (lr_opt ∝ 1/width).
//! Scans at one width and several depths get the same slope on log depth: the drift in depth a
//! depth rule (`mup.depth_rule`) is judged by.
//!
//! **Batch size (MiniCPM §4.2).** For loss levels L between the curves' ends, the tokens each
//! batch size needs to first reach L are read off its (running-minimum) loss curve; the batch
//! size that needs the fewest tokens is bs_opt(L) (a parabola in log bs through the best three);
//! then `log bs_opt = log k − γ log L` by least squares.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Least-squares line y = intercept + slope·x with the slope's standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub slope: f64,
    pub intercept: f64,
    pub slope_std_error: f64,
    /// 95% interval of the slope (normal approximation; Student-t for few points).
    pub slope_lower: f64,
    pub slope_upper: f64,
}

pub fn fit_line(points: &[(f64, f64)]) -> Option<Line> {
    let n = points.len();
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / nf;
    let my = points.iter().map(|p| p.1).sum::<f64>() / nf;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx;
    let intercept = my - slope * mx;
    let rss: f64 = points.iter().map(|p| (p.1 - intercept - slope * p.0).powi(2)).sum();
    let se = if n > 2 { (rss / (nf - 2.0) / sxx).sqrt() } else { f64::NAN };
    let t = student_t_975(n.saturating_sub(2));
    Some(Line { slope, intercept, slope_std_error: se, slope_lower: slope - t * se, slope_upper: slope + t * se })
}

/// The 97.5% quantile of Student's t with `dof` degrees of freedom.
fn student_t_975(dof: usize) -> f64 {
    const TABLE: [f64; 10] = [f64::NAN, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262];
    match dof {
        0 => f64::NAN,
        d if d < TABLE.len() => TABLE[d],
        d if d < 30 => 2.042 + (2.262 - 2.042) * (30 - d) as f64 / 21.0,
        _ => 1.96,
    }
}

/// y = c0 + c1 x + c2 x², least squares.
pub fn fit_parabola(points: &[(f64, f64)]) -> Option<[f64; 3]> {
    if points.len() < 3 {
        return None;
    }
    // Centred for conditioning.
    let mx = points.iter().map(|p| p.0).sum::<f64>() / points.len() as f64;
    let rows: Vec<([f64; 3], f64)> = points.iter().map(|&(x, y)| ([1.0, x - mx, (x - mx) * (x - mx)], y)).collect();
    let [c0, c1, c2] = least_squares3(&rows)?;
    // Undo the centring: y = c0 + c1 (x − mx) + c2 (x − mx)².
    Some([c0 - c1 * mx + c2 * mx * mx, c1 - 2.0 * c2 * mx, c2])
}

/// Least squares of y on three regressors (each row: the regressors and y), by the normal equations.
pub fn least_squares3(rows: &[([f64; 3], f64)]) -> Option<[f64; 3]> {
    let rows: Vec<(&[f64], f64)> = rows.iter().map(|(x, y)| (&x[..], *y)).collect();
    least_squares(&rows).map(|b| [b[0], b[1], b[2]])
}

/// Least squares of y on any number of regressors (each row: the regressors and y), by the normal
/// equations solved with Gaussian elimination and partial pivoting; `None` when they are singular.
pub fn least_squares(rows: &[(&[f64], f64)]) -> Option<Vec<f64>> {
    let k = rows.first()?.0.len();
    // The augmented normal equations [XᵀX | Xᵀy].
    let mut m = vec![vec![0.0f64; k + 1]; k];
    for (x, y) in rows {
        for i in 0..k {
            for j in 0..k {
                m[i][j] += x[i] * x[j];
            }
            m[i][k] += x[i] * y;
        }
    }
    for col in 0..k {
        let pivot = (col..k).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-300 {
            return None;
        }
        m.swap(col, pivot);
        let pivot_row = m[col].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= f * p;
                }
            }
        }
    }
    Some((0..k).map(|i| m[i][k] / m[i][i]).collect())
}

/// The optimum of y over x from a parabola through the best point and up to two neighbours on
/// each side. Returns (x_opt, y_opt, whether the best point lies inside the sampled range,
/// whether the parabola is convex: when it is not, the best sampled point is returned).
pub fn parabola_optimum(points: &[(f64, f64)]) -> Option<(f64, f64, bool, bool)> {
    let mut p: Vec<(f64, f64)> = points.iter().copied().filter(|q| q.0.is_finite() && q.1.is_finite()).collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let best = (0..p.len()).min_by(|&a, &b| p[a].1.total_cmp(&p[b].1))?;
    let lo = best.saturating_sub(2);
    let hi = (best + 3).min(p.len());
    let window = &p[lo..hi];
    let inside = best > 0 && best + 1 < p.len();
    match fit_parabola(window) {
        Some([c0, c1, c2]) if c2 > 0.0 => {
            let x = (-c1 / (2.0 * c2)).clamp(window[0].0, window[window.len() - 1].0);
            Some((x, c0 + c1 * x + c2 * x * x, inside, true))
        }
        _ => Some((p[best].0, p[best].1, inside, false)),
    }
}

/// One sweep point of a learning-rate scan.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrPoint {
    pub width: f64,
    pub depth: f64,
    pub lr: f64,
    pub loss: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LrOptimum {
    pub width: f64,
    pub depth: f64,
    pub points: usize,
    pub lr_opt: f64,
    pub loss_at_opt: f64,
    /// 95% interval of lr_opt from a residual bootstrap of the parabola.
    pub lr_lower: f64,
    pub lr_upper: f64,
    /// False when the best learning rate is at the edge of the scanned range (widen the scan).
    pub bracketed: bool,
    /// False when the losses around the best learning rate are not convex in log lr (noise, or
    /// a scan too coarse): `lr_opt` is then the best scanned rate, not a parabola's vertex.
    pub convex: bool,
    /// True when the interval spans the whole scanned range: it says nothing the scan did not.
    pub uninformative: bool,
}

impl LrOptimum {
    /// Why this optimum should not be trusted as it stands, if it should not.
    pub fn caveat(&self) -> Option<&'static str> {
        match (self.convex, self.bracketed, self.uninformative) {
            (_, false, _) => Some("at the edge of the scan: widen it"),
            (false, true, _) => Some("losses not convex in log lr here: the best scanned rate, not a fitted vertex; scan more finely or add seeds"),
            (true, true, true) => Some("its interval spans the whole scan, so it is uninformative: scan more finely or add seeds"),
            (true, true, false) => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LrTransfer {
    pub optima: Vec<LrOptimum>,
    /// Slope of log lr_opt on log width (µP: ≈ 0; SP: ≈ −1).
    pub drift: Option<Line>,
    /// Slope of log lr_opt on log depth, when the scans are at one width and several depths
    /// (a depth rule that transfers: ≈ 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth_drift: Option<Line>,
}

/// The finite losses at each scanned learning rate (ascending): one per seed.
fn replicates_by_lr(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, Vec<f64>)> {
    let mut sorted: Vec<(f64, f64)> = points.filter(|&(lr, loss)| lr > 0.0 && loss.is_finite()).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut by_lr: Vec<(f64, Vec<f64>)> = Vec::new();
    for (lr, loss) in sorted {
        match by_lr.last_mut() {
            Some((x, ys)) if *x == lr => ys.push(loss),
            _ => by_lr.push((lr, vec![loss])),
        }
    }
    by_lr
}

/// The mean loss over seeds at each scanned learning rate of (lr, loss) points, ascending in lr:
/// the curve whose optimum [`lr_transfer`] fits.
pub fn mean_loss_by_lr(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    replicates_by_lr(points).into_iter().map(|(lr, ys)| (lr, mean(&ys))).collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Learning-rate optima per (width, depth) and their drift with width. Seeds are replicates:
/// the optimum is that of the mean loss per learning rate, and with two or more seeds at every
/// rate its interval comes from resampling the seeds.
pub fn lr_transfer(points: &[LrPoint], seed: u64) -> LrTransfer {
    let mut groups: Vec<(f64, f64)> = points.iter().map(|p| (p.width, p.depth)).collect();
    groups.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    groups.dedup();
    let mut optima = Vec::new();
    for (width, depth) in groups {
        let runs: Vec<&LrPoint> = points.iter().filter(|p| p.width == width && p.depth == depth).collect();
        let replicates: Vec<(f64, Vec<f64>)> = replicates_by_lr(runs.iter().map(|p| (p.lr, p.loss))).into_iter().map(|(lr, ys)| (lr.ln(), ys)).collect();
        let curve: Vec<(f64, f64)> = replicates.iter().map(|(x, ys)| (*x, mean(ys))).collect();
        let Some((x, y, bracketed, convex)) = parabola_optimum(&curve) else { continue };
        let mut rng = Rng::derive(seed, &[0x1A, width.to_bits(), depth.to_bits()]);
        let mut xs: Vec<f64> = if replicates.iter().all(|(_, ys)| ys.len() >= 2) {
            // Seeds are replicates: resample them at every learning rate and refit the mean curve.
            (0..200)
                .filter_map(|_| {
                    let resampled: Vec<(f64, f64)> = replicates.iter().map(|(x, ys)| (*x, mean(&rng.resample(ys)))).collect();
                    parabola_optimum(&resampled).map(|o| o.0)
                })
                .collect()
        } else {
            // One run per rate: perturb the losses by resampled residuals of a parabola.
            let residuals: Vec<f64> = match fit_parabola(&curve) {
                Some([c0, c1, c2]) if curve.len() > 3 => curve.iter().map(|&(x, y)| y - (c0 + c1 * x + c2 * x * x)).collect(),
                _ => vec![0.0],
            };
            (0..200)
                .filter_map(|_| {
                    let noisy: Vec<(f64, f64)> = curve.iter().map(|&(x, y)| (x, y + residuals[rng.below(residuals.len() as u64) as usize])).collect();
                    parabola_optimum(&noisy).map(|o| o.0)
                })
                .collect()
        };
        xs.sort_by(f64::total_cmp);
        let q = |p: f64| xs[((xs.len() - 1) as f64 * p).round() as usize];
        optima.push(LrOptimum {
            width,
            depth,
            points: runs.len(),
            lr_opt: x.exp(),
            loss_at_opt: y,
            lr_lower: q(0.025).exp(),
            lr_upper: q(0.975).exp(),
            bracketed,
            convex,
            uninformative: {
                let (lo, hi) = curve.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
                q(0.025) <= lo + 1e-9 && q(0.975) >= hi - 1e-9
            },
        });
    }
    // A drift needs optima that mean something: with fewer than two inside their scans (flat
    // losses put every "optimum" at the scan's edge) a slope of 0 ± 0 would be a false answer.
    let measured = optima.iter().filter(|o| o.bracketed).count() >= 2;
    let drift = measured.then(|| fit_line(&optima.iter().map(|o| (o.width.ln(), o.lr_opt.ln())).collect::<Vec<_>>())).flatten();
    let one_width = optima.windows(2).all(|w| w[0].width == w[1].width);
    let depth_drift = (measured && one_width).then(|| fit_line(&optima.iter().map(|o| (o.depth.ln(), o.lr_opt.ln())).collect::<Vec<_>>())).flatten();
    LrTransfer { optima, drift, depth_drift }
}

/// Training curves with a known answer, for tests and for checking the fit by hand: seven batch
/// sizes (1e4 … 6.4e5 tokens), each trained to 2.7e9 tokens, whose token-efficient batch size is
/// bs_opt = k / L^γ. The tokens to reach L at batch size bs are
/// T(L) · (1 + (log bs − log bs_opt(L))²), T(L) = 1e9 / (L − 2)²; `noise` adds a deterministic
/// jitter of that amplitude to the losses.
pub fn known_batch_curves(k: f64, gamma: f64, noise: f64) -> Vec<CurvePoint> {
    let mut points = Vec::new();
    for i in 0..7 {
        let bs = 1e4 * 2f64.powi(i);
        for j in 0..400 {
            let tokens = 1e6 * 1.02f64.powi(j);
            // The loss L at which `tokens` are exactly enough, by bisection.
            let (mut lo, mut hi) = (2.0f64, 6.0f64);
            for _ in 0..60 {
                let l = 0.5 * (lo + hi);
                let needed = 1e9 * (l - 2.0).powf(-2.0) * (1.0 + (bs.ln() - (k / l.powf(gamma)).ln()).powi(2));
                if needed > tokens {
                    lo = l
                } else {
                    hi = l
                }
            }
            let jitter = noise * (((i * 7919 + j * 104_729) % 1000) as f64 / 1000.0 - 0.5);
            points.push(CurvePoint { batch_size: bs, tokens, loss: 0.5 * (lo + hi) + jitter });
        }
    }
    points
}

/// A point of a training curve, for the batch-size law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub batch_size: f64,
    pub tokens: f64,
    pub loss: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchLaw {
    /// (loss level, optimal batch size in tokens) pairs the law is fitted to.
    pub optima: Vec<(f64, f64)>,
    /// bs_opt = k / L^γ.
    pub k: f64,
    pub gamma: f64,
    pub line: Line,
}

/// Tokens at which `curve` (sorted by tokens) first reaches `level`, interpolated in log tokens.
fn tokens_to_reach(curve: &[(f64, f64)], level: f64) -> Option<f64> {
    let mut best = f64::INFINITY;
    let mut previous: Option<(f64, f64)> = None;
    for &(t, l) in curve {
        let l = l.min(best);
        best = l;
        if l <= level {
            return Some(match previous {
                Some((t0, l0)) if l0 > l => (t0.ln() + (t.ln() - t0.ln()) * (l0 - level) / (l0 - l)).exp(),
                _ => t,
            });
        }
        previous = Some((t, l));
    }
    None
}

/// MiniCPM's batch-size law from training curves at several batch sizes.
pub fn batch_law(points: &[CurvePoint], levels: usize) -> Option<BatchLaw> {
    let mut sizes: Vec<f64> = points.iter().map(|p| p.batch_size).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    if sizes.len() < 3 {
        return None;
    }
    let curves: Vec<Vec<(f64, f64)>> = sizes
        .iter()
        .map(|&bs| {
            let mut c: Vec<(f64, f64)> = points.iter().filter(|p| p.batch_size == bs).map(|p| (p.tokens, p.loss)).collect();
            c.sort_by(|a, b| a.0.total_cmp(&b.0));
            c
        })
        .collect();
    // Levels every curve's start is above and at least three curves reach.
    let start = curves.iter().filter_map(|c| c.first().map(|p| p.1)).fold(f64::INFINITY, f64::min);
    let mut ends: Vec<f64> = curves.iter().map(|c| c.iter().map(|p| p.1).fold(f64::INFINITY, f64::min)).collect();
    ends.sort_by(f64::total_cmp);
    let floor = ends[2];
    // Also refuses NaN.
    if floor.partial_cmp(&start) != Some(std::cmp::Ordering::Less) {
        return None;
    }
    let mut optima = Vec::new();
    for i in 0..levels {
        let level = start - (start - floor) * (0.15 + 0.8 * i as f64 / (levels - 1).max(1) as f64);
        let needed: Vec<(f64, f64)> = sizes.iter().zip(&curves).filter_map(|(&bs, c)| tokens_to_reach(c, level).map(|t| (bs.ln(), t.ln()))).collect();
        if needed.len() < 3 {
            continue;
        }
        if let Some((x, _, _, _)) = parabola_optimum(&needed) {
            optima.push((level, x.exp()));
        }
    }
    let line = fit_line(&optima.iter().map(|&(l, bs)| (l.ln(), bs.ln())).collect::<Vec<_>>())?;
    Some(BatchLaw { k: line.intercept.exp(), gamma: -line.slope, line, optima })
}

/// DeepSeek's power law y = c·C^p by least squares in log-log.
pub fn power_law(points: &[(f64, f64)]) -> Option<(f64, f64, Line)> {
    let line = fit_line(&points.iter().map(|&(c, y)| (c.ln(), y.ln())).collect::<Vec<_>>())?;
    Some((line.intercept.exp(), line.slope, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(lr_opt: impl Fn(f64) -> f64, noise: f64) -> Vec<LrPoint> {
        let mut rng = Rng::new(5);
        let mut points = Vec::new();
        for width in [64.0, 128.0, 256.0, 512.0] {
            for k in 0..7 {
                let lr = 1e-4 * 3f64.powi(k);
                let loss = 3.0 + 0.2 * (lr / lr_opt(width)).ln().powi(2) + noise * rng.normal();
                points.push(LrPoint { width, depth: 4.0, lr, loss });
            }
        }
        points
    }

    #[test]
    fn parabola_finds_the_vertex() {
        let pts: Vec<(f64, f64)> = (0..7).map(|i| (i as f64, (i as f64 - 3.3).powi(2) + 1.0)).collect();
        let (x, y, inside, convex) = parabola_optimum(&pts).unwrap();
        assert!((x - 3.3).abs() < 1e-9 && (y - 1.0).abs() < 1e-9 && inside && convex);
        // Noise that makes the neighbourhood of the best point concave: no vertex to trust, so the
        // best scanned point is returned and marked not convex (bracketed all the same).
        let noisy = [(0.0, 1.0), (1.0, 3.0), (2.0, 0.9), (3.0, 3.0), (4.0, 1.0)];
        let (x, y, inside, convex) = parabola_optimum(&noisy).unwrap();
        assert!(inside && !convex && (x, y) == (2.0, 0.9), "{x} {y}");
    }

    #[test]
    fn lr_transfer_recovers_flat_and_sloped_optima() {
        let mup = lr_transfer(&scan(|_| 3e-3, 0.0), 0);
        for o in &mup.optima {
            assert!((o.lr_opt / 3e-3 - 1.0).abs() < 1e-6, "{o:?}");
            assert_eq!(o.caveat(), None, "{o:?}");
        }
        // Noise far above the curvature: the interval covers the whole scan, and says so.
        let noisy = lr_transfer(&scan(|_| 3e-3, 5.0), 0);
        assert!(noisy.optima.iter().any(|o| o.uninformative), "{:?}", noisy.optima);
        assert!(mup.drift.unwrap().slope.abs() < 1e-6);
        let sp = lr_transfer(&scan(|w| 0.2 / w, 0.01), 0);
        let d = sp.drift.unwrap();
        assert!((d.slope + 1.0).abs() < 0.15, "SP drift {d:?}");
        assert!(d.slope_upper < 0.0);
        for o in &sp.optima {
            assert!(o.lr_lower <= o.lr_opt && o.lr_opt <= o.lr_upper);
        }
    }

    /// Three seeds that shift the whole curve (a seed's offset) and add noise: the optimum is that
    /// of the mean curve, and the seed resampling gives an interval around the true optimum. Fitted
    /// as one pool of points, the offsets would read as noise in the parabola's window.
    #[test]
    fn seeds_are_averaged_and_resampled() {
        let mut rng = Rng::new(9);
        let mut points = Vec::new();
        for seed in 0..3 {
            let offset = 0.05 * seed as f64;
            for width in [64.0, 128.0, 256.0] {
                for k in 0..9 {
                    let lr = 1e-3 * 2f64.powi(k);
                    let loss = 3.0 + offset + 0.2 * (lr / 0.02).ln().powi(2) + 0.005 * rng.normal();
                    points.push(LrPoint { width, depth: 2.0, lr, loss });
                }
            }
        }
        let t = lr_transfer(&points, 0);
        for o in &t.optima {
            assert_eq!(o.points, 27);
            assert!((o.lr_opt / 0.02 - 1.0).abs() < 0.05, "{o:?}");
            assert!(o.lr_lower <= 0.02 && 0.02 <= o.lr_upper, "{o:?}");
            assert!(o.lr_upper / o.lr_lower < 1.3, "the seeds pin it: {o:?}");
            assert!((o.loss_at_opt - 3.05).abs() < 0.01, "the mean curve's minimum: {o:?}");
        }
        let d = t.drift.unwrap();
        assert!(d.slope_lower < 0.0 && 0.0 < d.slope_upper && d.slope.abs() < 0.05, "{d:?}");
    }

    #[test]
    fn batch_law_recovers_k_and_gamma() {
        let (k, gamma) = (1.3e7, 4.0);
        let points = known_batch_curves(k, gamma, 0.0);
        let law = batch_law(&points, 8).unwrap();
        assert!((law.gamma - gamma).abs() < 0.3, "γ = {}", law.gamma);
        assert!((law.k.ln() - k.ln()).abs() < 0.5, "k = {}", law.k);
    }

    #[test]
    fn power_law_in_compute() {
        let pts: Vec<(f64, f64)> = [1e17, 1e18, 1e19, 1e20].iter().map(|&c| (c, 0.3118 * f64::powf(c, -0.125))).collect();
        let (c, p, _) = power_law(&pts).unwrap();
        assert!((c - 0.3118).abs() < 1e-9 && (p + 0.125).abs() < 1e-12);
    }
}
