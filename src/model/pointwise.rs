//! RMSNorm, SwiGLU's gating, the rotary embedding and the cross-entropy loss on the CPU, forward and backward, on plain `f32` slices (the CPU
//! backend's fused ops besides attention; see `fused.rs`).
//!
//! Composed from burn's tensor ops, RMSNorm is seven passes forward (square, mean, add, sqrt,
//! reciprocal, two products) and about twice that backward, and SwiGLU's `silu(g) ⊙ u` four
//! passes plus six backward, each allocating its output and each single-threaded on the CPU
//! backend. Here each is one pass forward and one backward, over rows in parallel:
//!
//! ```text
//! RMSNorm   y = x·r·w,  r = 1/√(mean(x²) + ε)          (per row of width d; r is saved)
//!           dx = r·(g⊙w) − x·r³·Σ(g⊙w⊙x)/d            dw = Σ_rows g⊙x·r
//! SwiGLU    h = silu(a)⊙u,  silu(a) = a·σ(a)
//!           da = g⊙u⊙σ(a)·(1 + a·(1 − σ(a)))          du = g⊙silu(a)
//! RoPE      y = x⊙cos + rotate_half(x)⊙sin,  rotate_half(x₁, x₂) = (−x₂, x₁)
//!           dx = g⊙cos + rotate_halfᵀ(g⊙sin)
//! CE        L = mean_rows(logsumexp(x) − x[t]),  p = softmax(x)   (p is saved)
//!           dx = g/rows·(p − onehot(t))
//! ```
//!
//! Every output element is computed by the same arithmetic whatever the number of threads, and
//! the one sum across rows (dw) adds fixed blocks of [`ROWS`] rows in order, so the results do
//! not depend on the thread count.

use rayon::prelude::*;

/// Rows per parallel task; dw's partial sums are over blocks of this many rows.
pub const ROWS: usize = 64;
/// Elements per parallel task of the elementwise kernels.
const CHUNK: usize = 16 * 1024;

/// RMSNorm of the rows of `x` (each of `w.len()` values): (y, 1/rms per row).
pub fn rms_norm_forward(x: &[f32], w: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    let mut y = vec![0.0; x.len()];
    let mut inv_rms = vec![0.0; x.len() / d];
    y.par_chunks_mut(ROWS * d).zip(inv_rms.par_chunks_mut(ROWS)).zip(x.par_chunks(ROWS * d)).for_each(|((y, r), x)| {
        for ((y, r), x) in y.chunks_mut(d).zip(r.iter_mut()).zip(x.chunks(d)) {
            let mean_square = x.iter().map(|v| v * v).sum::<f32>() / d as f32;
            *r = 1.0 / (mean_square + eps).sqrt();
            for ((y, x), w) in y.iter_mut().zip(x).zip(w) {
                *y = x * *r * w;
            }
        }
    });
    (y, inv_rms)
}

/// (dx, dw) of [`rms_norm_forward`] from its saved 1/rms and the output's gradient `g`.
pub fn rms_norm_backward(x: &[f32], w: &[f32], inv_rms: &[f32], g: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    let mut dx = vec![0.0; x.len()];
    let partial_dw: Vec<Vec<f32>> = dx
        .par_chunks_mut(ROWS * d)
        .zip(x.par_chunks(ROWS * d))
        .zip(g.par_chunks(ROWS * d))
        .zip(inv_rms.par_chunks(ROWS))
        .map(|(((dx, x), g), r)| {
            let mut dw = vec![0.0f32; d];
            for (((dx, x), g), &r) in dx.chunks_mut(d).zip(x.chunks(d)).zip(g.chunks(d)).zip(r) {
                let dot: f32 = g.iter().zip(w).zip(x).map(|((g, w), x)| g * w * x).sum();
                let c = r * r * r * dot / d as f32;
                for j in 0..d {
                    dx[j] = r * g[j] * w[j] - x[j] * c;
                    dw[j] += g[j] * x[j] * r;
                }
            }
            dw
        })
        .collect();
    let mut dw = vec![0.0f32; d];
    for part in &partial_dw {
        for (total, p) in dw.iter_mut().zip(part) {
            *total += p;
        }
    }
    (dx, dw)
}

fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + exp(-a))
}

/// e^x in f32 from arithmetic alone (Cephes' `expf`: x = n·ln 2 + r, a degree-6 polynomial for
/// e^r on |r| ≤ ln 2 / 2, 2^n from the exponent bits), so that loops over it vectorise where
/// libm's `expf` is a call per element. Relative error below 3e-7 on the range it keeps; x is
/// clamped to [−87, 88] (e^−87 ≈ 1.6e−38 stands for anything smaller, e^88 ≈ 1.7e38 for larger;
/// NaN stays NaN).
#[inline]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to the nearest integer in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((shifted.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23) as u32);
    e_r * two_n
}

/// `silu(a) ⊙ u`, elementwise.
pub fn swiglu_forward(a: &[f32], u: &[f32]) -> Vec<f32> {
    let mut h = vec![0.0; a.len()];
    h.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).zip(u.par_chunks(CHUNK)).for_each(|((h, a), u)| {
        for ((h, &a), &u) in h.iter_mut().zip(a).zip(u) {
            *h = a * sigmoid(a) * u;
        }
    });
    h
}

/// (da, du) of [`swiglu_forward`] from the output's gradient `g`.
pub fn swiglu_backward(a: &[f32], u: &[f32], g: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut da = vec![0.0; a.len()];
    let mut du = vec![0.0; a.len()];
    da.par_chunks_mut(CHUNK).zip(du.par_chunks_mut(CHUNK)).zip(a.par_chunks(CHUNK)).zip(u.par_chunks(CHUNK).zip(g.par_chunks(CHUNK))).for_each(
        |(((da, du), a), (u, g))| {
            for i in 0..a.len() {
                let s = sigmoid(a[i]);
                da[i] = g[i] * u[i] * s * (1.0 + a[i] * (1.0 - s));
                du[i] = g[i] * a[i] * s;
            }
        },
    );
    (da, du)
}

/// Rotary embedding of `x` (`[batch, seq, heads, head_dim]`, flattened) with the tables `cos` and
/// `sin` of one batch element (`[seq, heads, head_dim]`): `y = x⊙cos + rotate_half(x)⊙sin`,
/// `rotate_half(x₁, x₂) = (−x₂, x₁)` on each head's two halves.
pub fn rope_forward(x: &[f32], cos: &[f32], sin: &[f32], head_dim: usize) -> Vec<f32> {
    per_head(x, cos, sin, head_dim, |x, c, s, y, i, h| {
        y[i] = x[i] * c[i] - x[i + h] * s[i];
        y[i + h] = x[i + h] * c[i + h] + x[i] * s[i + h];
    })
}

/// dx of [`rope_forward`] from the output's gradient: `g⊙cos + rotate_halfᵀ(g⊙sin)`,
/// `rotate_halfᵀ(z₁, z₂) = (z₂, −z₁)`.
pub fn rope_backward(g: &[f32], cos: &[f32], sin: &[f32], head_dim: usize) -> Vec<f32> {
    per_head(g, cos, sin, head_dim, |g, c, s, dx, i, h| {
        dx[i] = g[i] * c[i] + g[i + h] * s[i + h];
        dx[i + h] = g[i + h] * c[i + h] - g[i] * s[i];
    })
}

/// `pair(x, cos, sin, out, i, half)` for every pair (i, i + half) of every head, batch elements in parallel.
fn per_head(x: &[f32], cos: &[f32], sin: &[f32], head_dim: usize, pair: impl Fn(&[f32], &[f32], &[f32], &mut [f32], usize, usize) + Sync) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut(cos.len()).zip(x.par_chunks(cos.len())).for_each(|(out, x)| {
        for (((out, x), c), s) in out.chunks_mut(head_dim).zip(x.chunks(head_dim)).zip(cos.chunks(head_dim)).zip(sin.chunks(head_dim)) {
            for i in 0..half {
                pair(x, c, s, out, i, half);
            }
        }
    });
    out
}

/// Cross-entropy of rows of `vocab` logits against `targets`: the mean over rows of
/// `logsumexp(row) − row[target]` (summed in f64 in row order), and the softmax of every row
/// (what the backward pass needs). `None` when a target is outside the vocabulary.
pub fn cross_entropy_forward(logits: &[f32], targets: &[i64], vocab: usize) -> Option<(f32, Vec<f32>)> {
    if targets.iter().any(|&t| t < 0 || t as usize >= vocab) || logits.len() != targets.len() * vocab {
        return None;
    }
    let mut probs = vec![0.0; logits.len()];
    let mut row_losses = vec![0.0f32; targets.len()];
    probs.par_chunks_mut(ROWS * vocab).zip(row_losses.par_chunks_mut(ROWS)).zip(logits.par_chunks(ROWS * vocab)).zip(targets.par_chunks(ROWS)).for_each(
        |(((p, losses), x), t)| {
            for (((p, loss), x), &t) in p.chunks_mut(vocab).zip(losses).zip(x.chunks(vocab)).zip(t) {
                let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                p.iter_mut().zip(x).for_each(|(p, x)| *p = exp(x - max));
                let log_sum = p.iter().sum::<f32>().ln();
                *loss = log_sum - (x[t as usize] - max);
                let inv = (-log_sum).exp();
                p.iter_mut().for_each(|p| *p *= inv);
            }
        },
    );
    let mean = row_losses.iter().map(|&l| l as f64).sum::<f64>() / targets.len().max(1) as f64;
    Some((mean as f32, probs))
}

/// d(loss)/d(logits) of [`cross_entropy_forward`] for an upstream gradient `g` of the mean:
/// `g/rows · (softmax − onehot(target))`.
pub fn cross_entropy_backward(probs: &[f32], targets: &[i64], vocab: usize, g: f32) -> Vec<f32> {
    let scale = g / targets.len().max(1) as f32;
    let mut d = vec![0.0; probs.len()];
    d.par_chunks_mut(ROWS * vocab).zip(probs.par_chunks(ROWS * vocab)).zip(targets.par_chunks(ROWS)).for_each(|((d, p), t)| {
        for ((d, p), &t) in d.chunks_mut(vocab).zip(p.chunks(vocab)).zip(t) {
            d.iter_mut().zip(p).for_each(|(d, p)| *d = scale * p);
            d[t as usize] -= scale;
        }
    });
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// Central differences of a scalar function of one input.
    fn numeric_gradient(f: &dyn Fn(&[f32]) -> f64, x: &[f32]) -> Vec<f64> {
        let h = 1e-2f32;
        (0..x.len())
            .map(|i| {
                let (mut plus, mut minus) = (x.to_vec(), x.to_vec());
                plus[i] += h;
                minus[i] -= h;
                (f(&plus) - f(&minus)) / (2.0 * h as f64)
            })
            .collect()
    }

    fn close(analytic: &[f32], numeric: &[f64], what: &str) {
        for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
            assert!((*a as f64 - n).abs() < 2e-2 * (1.0 + n.abs()), "{what}[{i}]: analytic {a}, numeric {n}");
        }
    }

    /// Loss = Σ y ⊙ probe, so the output's gradient is `probe`.
    #[test]
    fn rms_norm_gradients_match_finite_differences_on_odd_sizes() {
        for (rows, d) in [(3, 5), (70, 7), (1, 1)] {
            let (x, w, probe) = (random(rows * d, 1), random(d, 2), random(rows * d, 3));
            let loss = |x: &[f32], w: &[f32]| rms_norm_forward(x, w, 1e-5).0.iter().zip(&probe).map(|(y, p)| (y * p) as f64).sum::<f64>();
            let (_, r) = rms_norm_forward(&x, &w, 1e-5);
            let (dx, dw) = rms_norm_backward(&x, &w, &r, &probe);
            close(&dx, &numeric_gradient(&|x| loss(x, &w), &x), "dx");
            close(&dw, &numeric_gradient(&|w| loss(&x, w), &w), "dw");
        }
    }

    #[test]
    fn exp_is_within_a_few_ulps_of_the_true_value() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f64 / 200_000.0;
            let relative = (exp(x as f32) as f64 / (x as f32 as f64).exp() - 1.0).abs();
            worst = worst.max(relative);
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 2e-38 && exp(1000.0).is_finite() && exp(f32::NAN).is_nan());
    }

    #[test]
    fn swiglu_gradients_match_finite_differences() {
        let (a, u, probe) = (random(37, 4), random(37, 5), random(37, 6));
        let loss = |a: &[f32], u: &[f32]| swiglu_forward(a, u).iter().zip(&probe).map(|(h, p)| (h * p) as f64).sum::<f64>();
        let (da, du) = swiglu_backward(&a, &u, &probe);
        close(&da, &numeric_gradient(&|a| loss(a, &u), &a), "da");
        close(&du, &numeric_gradient(&|u| loss(&a, u), &u), "du");
    }

    #[test]
    fn rope_gradient_matches_finite_differences() {
        let (batch, seq, heads, head_dim) = (2, 3, 2, 6);
        let n = batch * seq * heads * head_dim;
        let (x, probe) = (random(n, 11), random(n, 12));
        let angles = random(seq * heads * head_dim, 13);
        let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
        let y = rope_forward(&x, &cos, &sin, head_dim);
        // The first pair of the first head by hand: (x₀, x₃) rotated.
        assert!((y[0] - (x[0] * cos[0] - x[3] * sin[0])).abs() < 1e-6 && (y[3] - (x[3] * cos[3] + x[0] * sin[3])).abs() < 1e-6);
        let loss = |x: &[f32]| rope_forward(x, &cos, &sin, head_dim).iter().zip(&probe).map(|(y, p)| (y * p) as f64).sum::<f64>();
        close(&rope_backward(&probe, &cos, &sin, head_dim), &numeric_gradient(&loss, &x), "dx");
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let (rows, vocab) = (5, 7);
        let logits = random(rows * vocab, 10);
        let targets: Vec<i64> = vec![0, 6, 3, 3, 1];
        let loss = |x: &[f32]| cross_entropy_forward(x, &targets, vocab).unwrap().0 as f64;
        let (value, probs) = cross_entropy_forward(&logits, &targets, vocab).unwrap();
        // Against the definition, row by row in f64.
        let reference: f64 = (0..rows)
            .map(|r| {
                let row = &logits[r * vocab..(r + 1) * vocab];
                row.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln() - row[targets[r] as usize] as f64
            })
            .sum::<f64>()
            / rows as f64;
        assert!((value as f64 - reference).abs() < 1e-5, "{value} vs {reference}");
        close(&cross_entropy_backward(&probs, &targets, vocab, 1.0), &numeric_gradient(&loss, &logits), "dlogits");
        assert!(cross_entropy_forward(&logits, &[0, 7, 0, 0, 0], vocab).is_none(), "a target outside the vocabulary");
    }

    /// The same bits on one thread as on several: dw's sums run over fixed blocks in order.
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (rows, d) = (300, 24);
        let (x, w, g) = (random(rows * d, 7), random(d, 8), random(rows * d, 9));
        let run = || {
            let (y, r) = rms_norm_forward(&x, &w, 1e-5);
            let (dx, dw) = rms_norm_backward(&x, &w, &r, &g);
            let h = swiglu_forward(&x, &g);
            let (da, du) = swiglu_backward(&x, &g, &y);
            [y, dx, dw, h, da, du]
        };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(run);
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(run);
        assert_eq!(one, three);
    }
}
