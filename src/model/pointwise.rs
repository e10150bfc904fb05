//! RMSNorm, SwiGLU's gating, the rotary embedding, the cross-entropy loss, the residual connection
//! and the AdamW update on the CPU, forward and backward, on plain `f32` slices (the CPU backend's
//! fused ops besides attention and the linear layers; see `fused.rs`).
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
//! Residual  y = x + r·f                                    dx = g,  df = r·g
//! AdamW     the update of `train::optimizer`, op for op
//! ```
//!
//! The row kernels are compiled for AVX-512 and AVX2 as well as baseline x86-64 and chosen at run
//! time (`multiversion`); sums along a row keep `LANES` partial sums so they vectorise, in a
//! fixed order. Outputs are never zero-filled before they are written (`Fresh`), except the
//! cross-entropy's, whose rows are read back while they are written (one step's logits, once).
//!
//! Every output element is computed by the same arithmetic whatever the number of threads, and
//! the one sum across rows (dw) adds fixed blocks of [`ROWS`] rows in order, so the results do
//! not depend on the thread count.

use std::mem::MaybeUninit;

use multiversion::multiversion;
use rayon::prelude::*;

/// Rows per parallel task; dw's partial sums are over blocks of this many rows.
pub const ROWS: usize = 64;
/// Elements per parallel task of the elementwise kernels.
const CHUNK: usize = 16 * 1024;

/// Independent partial sums kept by the reductions below ([`sum`], [`dot`], [`max`]): element
/// `i` goes to partial `i % LANES`, the partials are added in a fixed order at the end, so the
/// loops vectorise (one chain per row would wait on every addition) and the result is the same
/// bits on every machine and thread count.
const LANES: usize = 16;

/// The partial sums added pairwise in a fixed order.
#[inline(always)]
fn combine(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0]
}

/// Σ a⊙b (in [`LANES`] partial sums).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (a, b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a.remainder().iter().zip(b.remainder()).map(|(x, y)| x * y).sum();
    for (a, b) in a.zip(b) {
        for l in 0..LANES {
            acc[l] += a[l] * b[l];
        }
    }
    combine(acc) + tail
}

/// Σ x (in [`LANES`] partial sums).
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    combine(acc) + tail
}

/// `x ← e^(x − shift)` in place, returning Σ e^(x − shift) in [`LANES`] partial sums: element `i`
/// goes to partial `i % LANES`, the last partial chunk too (computed 16 wide with its missing
/// lanes counted as zero), so the whole row vectorises.
#[inline(always)]
pub fn exp_shifted_sum(x: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            c[l] = exp(c[l] - shift);
            acc[l] += c[l];
        }
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut lanes = [0.0f32; LANES];
        lanes[..tail.len()].copy_from_slice(tail);
        for l in 0..LANES {
            let e = exp(lanes[l] - shift);
            lanes[l] = if l < tail.len() { e } else { 0.0 };
            acc[l] += lanes[l];
        }
        tail.copy_from_slice(&lanes[..tail.len()]);
    }
    combine(acc)
}

/// The largest element (−∞ for none).
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for l in 0..LANES {
            acc[l] = acc[l].max(c[l]);
        }
    }
    acc.into_iter().fold(tail, f32::max)
}

/// A fresh output that is never zero-filled (that would be one more pass over memory, on the
/// calling thread): the kernels write each of its elements once, in parallel, through
/// [`Fresh::slots`].
pub(super) struct Fresh {
    values: Vec<f32>,
    len: usize,
}

impl Fresh {
    pub(super) fn new(len: usize) -> Self {
        Self { values: Vec::with_capacity(len), len }
    }
    pub(super) fn slots(&mut self) -> &mut [MaybeUninit<f32>] {
        &mut self.values.spare_capacity_mut()[..self.len]
    }
    /// # Safety
    /// Every element of [`Fresh::slots`] has been written.
    pub(super) unsafe fn done(mut self) -> Vec<f32> {
        // SAFETY: the capacity is at least `len` and the caller promises all `len` are initialised.
        unsafe { self.values.set_len(self.len) };
        self.values
    }
}

/// RMSNorm of the rows of `x` (each of `w.len()` values): (y, 1/rms per row).
pub fn rms_norm_forward(x: &[f32], w: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    let mut y = Fresh::new(x.len());
    let mut inv_rms = vec![0.0; x.len() / d];
    y.slots().par_chunks_mut(ROWS * d).zip(inv_rms.par_chunks_mut(ROWS)).zip(x.par_chunks(ROWS * d)).for_each(|((y, r), x)| rms_norm_rows(y, r, x, w, eps));
    // SAFETY: every row of y was written (the chunks of y and x are the same rows).
    (unsafe { y.done() }, inv_rms)
}

#[multiversion(targets = "simd")]
fn rms_norm_rows(y: &mut [MaybeUninit<f32>], inv_rms: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let d = w.len();
    for ((y, r), x) in y.chunks_mut(d).zip(inv_rms.iter_mut()).zip(x.chunks(d)) {
        let mean_square = dot(x, x) / d as f32;
        *r = 1.0 / (mean_square + eps).sqrt();
        for ((y, x), w) in y.iter_mut().zip(x).zip(w) {
            y.write(x * *r * w);
        }
    }
}

/// (dx, dw) of [`rms_norm_forward`] from its saved 1/rms and the output's gradient `g`.
pub fn rms_norm_backward(x: &[f32], w: &[f32], inv_rms: &[f32], g: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    let mut dx = Fresh::new(x.len());
    let partial_dw: Vec<Vec<f32>> = dx
        .slots()
        .par_chunks_mut(ROWS * d)
        .zip(x.par_chunks(ROWS * d))
        .zip(g.par_chunks(ROWS * d))
        .zip(inv_rms.par_chunks(ROWS))
        .map(|(((dx, x), g), r)| rms_norm_backward_rows(dx, x, g, r, w))
        .collect();
    let mut dw = vec![0.0f32; d];
    for part in &partial_dw {
        for (total, p) in dw.iter_mut().zip(part) {
            *total += p;
        }
    }
    // SAFETY: every row of dx was written (its chunks are x's rows).
    (unsafe { dx.done() }, dw)
}

/// dx of a block of rows, and their part of dw.
#[multiversion(targets = "simd")]
fn rms_norm_backward_rows(dx: &mut [MaybeUninit<f32>], x: &[f32], g: &[f32], inv_rms: &[f32], w: &[f32]) -> Vec<f32> {
    let d = w.len();
    let mut dw = vec![0.0f32; d];
    let mut gw = vec![0.0f32; d];
    for (((dx, x), g), &r) in dx.chunks_mut(d).zip(x.chunks(d)).zip(g.chunks(d)).zip(inv_rms) {
        gw.iter_mut().zip(g).zip(w).for_each(|((gw, g), w)| *gw = g * w);
        let c = r * r * r * dot(&gw, x) / d as f32;
        for j in 0..d {
            dx[j].write(r * gw[j] - x[j] * c);
            dw[j] += g[j] * x[j] * r;
        }
    }
    dw
}

#[inline(always)]
fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + exp(-a))
}

/// e^x in f32 from arithmetic alone (Cephes' `expf`: x = n·ln 2 + r, a degree-6 polynomial for
/// e^r on |r| ≤ ln 2 / 2, 2^n from the exponent bits), so that loops over it vectorise where
/// libm's `expf` is a call per element. Relative error below 3e-7 on the range it keeps; x is
/// clamped to [−87, 88] (e^−87 ≈ 1.6e−38 stands for anything smaller, e^88 ≈ 1.7e38 for larger;
/// NaN stays NaN).
#[inline(always)]
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
    let mut h = Fresh::new(a.len());
    h.slots().par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).zip(u.par_chunks(CHUNK)).for_each(|((h, a), u)| swiglu_chunk(h, a, u));
    // SAFETY: every chunk of h was written (a's chunks are as long).
    unsafe { h.done() }
}

#[multiversion(targets = "simd")]
fn swiglu_chunk(h: &mut [MaybeUninit<f32>], a: &[f32], u: &[f32]) {
    for ((h, &a), &u) in h.iter_mut().zip(a).zip(u) {
        h.write(a * sigmoid(a) * u);
    }
}

/// (da, du) of [`swiglu_forward`] from the output's gradient `g`.
pub fn swiglu_backward(a: &[f32], u: &[f32], g: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut da = Fresh::new(a.len());
    let mut du = Fresh::new(a.len());
    da.slots()
        .par_chunks_mut(CHUNK)
        .zip(du.slots().par_chunks_mut(CHUNK))
        .zip(a.par_chunks(CHUNK))
        .zip(u.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|(((da, du), a), (u, g))| swiglu_backward_chunk(da, du, a, u, g));
    // SAFETY: every chunk of da and du was written (a's chunks are as long).
    unsafe { (da.done(), du.done()) }
}

#[multiversion(targets = "simd")]
fn swiglu_backward_chunk(da: &mut [MaybeUninit<f32>], du: &mut [MaybeUninit<f32>], a: &[f32], u: &[f32], g: &[f32]) {
    for ((((da, du), &a), &u), &g) in da.iter_mut().zip(du.iter_mut()).zip(a).zip(u).zip(g) {
        let s = sigmoid(a);
        da.write(g * u * s * (1.0 + a * (1.0 - s)));
        du.write(g * a * s);
    }
}

/// `x + scale·f`, elementwise (a residual connection with its branch multiplier).
pub fn residual(x: &[f32], f: &[f32], scale: f32) -> Vec<f32> {
    let mut y = Fresh::new(x.len());
    y.slots().par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).zip(f.par_chunks(CHUNK)).for_each(|((y, x), f)| residual_chunk(y, x, f, scale));
    // SAFETY: every chunk of y was written (x's chunks are as long).
    unsafe { y.done() }
}

#[multiversion(targets = "simd")]
fn residual_chunk(y: &mut [MaybeUninit<f32>], x: &[f32], f: &[f32], scale: f32) {
    for ((y, x), f) in y.iter_mut().zip(x).zip(f) {
        y.write(x + f * scale);
    }
}

/// `scale·g`, elementwise.
pub fn scaled(g: &[f32], scale: f32) -> Vec<f32> {
    let mut y = Fresh::new(g.len());
    y.slots().par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(y, g)| y.iter_mut().zip(g).for_each(|(y, g)| _ = y.write(g * scale)));
    // SAFETY: every chunk of y was written (g's chunks are as long).
    unsafe { y.done() }
}

/// The constants of one AdamW update of one parameter, as f32 (see `train::optimizer`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// The gradient's clipping factor (1 when not clipped).
    pub clip_scale: f32,
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// The bias corrections 1/(1 − β₁ᵗ) and 1/(1 − β₂ᵗ).
    pub m_hat_scale: f32,
    pub v_hat_scale: f32,
    pub eps: f32,
    /// The weight-decay factor 1 − lr·λ (1: no decay).
    pub decay: f32,
    pub lr: f32,
}

/// One AdamW update of a flattened parameter `p` with gradient `g` and moments `m`, `v`, all in
/// one pass: (p, m, v) after the step. The arithmetic is the composed update's, op for op:
/// `g·c`, `m·β₁ + g·(1−β₁)`, `v·β₂ + g²·(1−β₂)`, `(m·m̂)/(√(v·v̂) + ε)`, `p·decay − update·lr`.
pub fn adamw(p: &[f32], g: &[f32], m: &[f32], v: &[f32], s: AdamWStep) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut p2, mut m2, mut v2) = (Fresh::new(p.len()), Fresh::new(p.len()), Fresh::new(p.len()));
    p2.slots()
        .par_chunks_mut(CHUNK)
        .zip(m2.slots().par_chunks_mut(CHUNK))
        .zip(v2.slots().par_chunks_mut(CHUNK))
        .zip(p.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
        .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
        .for_each(|((((p2, m2), v2), (p, g)), (m, v))| adamw_chunk([p2, m2, v2], [p, g, m, v], s));
    // SAFETY: every chunk of the three outputs was written (p's chunks are as long).
    unsafe { (p2.done(), m2.done(), v2.done()) }
}

#[multiversion(targets = "simd")]
fn adamw_chunk(out: [&mut [MaybeUninit<f32>]; 3], inputs: [&[f32]; 4], s: AdamWStep) {
    let ([p2, m2, v2], [p, g, m, v]) = (out, inputs);
    for i in 0..p.len() {
        let g = g[i] * s.clip_scale;
        let m = m[i] * s.beta1 + g * s.one_minus_beta1;
        let v = v[i] * s.beta2 + (g * g) * s.one_minus_beta2;
        let update = (m * s.m_hat_scale) / ((v * s.v_hat_scale).sqrt() + s.eps);
        p2[i].write(p[i] * s.decay - update * s.lr);
        m2[i].write(m);
        v2[i].write(v);
    }
}

/// Rotary embedding of `x` (`[batch, seq, heads, head_dim]`, flattened) in place, with the tables
/// `cos` and `sin` of one batch element (`[seq, heads, head_dim]`): `x ← x⊙cos + rotate_half(x)⊙sin`,
/// `rotate_half(x₁, x₂) = (−x₂, x₁)` on each head's two halves.
pub fn rope_forward(x: &mut [f32], cos: &[f32], sin: &[f32], head_dim: usize) {
    x.par_chunks_mut(cos.len().max(1)).for_each(|x| rope_rows(x, cos, sin, head_dim, false));
}

/// dx of [`rope_forward`] in place of the output's gradient: `g⊙cos + rotate_halfᵀ(g⊙sin)`,
/// `rotate_halfᵀ(z₁, z₂) = (z₂, −z₁)`.
pub fn rope_backward(g: &mut [f32], cos: &[f32], sin: &[f32], head_dim: usize) {
    g.par_chunks_mut(cos.len().max(1)).for_each(|g| rope_rows(g, cos, sin, head_dim, true));
}

/// One batch element's heads rotated in place (`transpose`: by the transposed rotation, the
/// backward pass).
#[multiversion(targets = "simd")]
fn rope_rows(x: &mut [f32], cos: &[f32], sin: &[f32], head_dim: usize, transpose: bool) {
    let half = head_dim / 2;
    for ((x, c), s) in x.chunks_exact_mut(head_dim).zip(cos.chunks_exact(head_dim)).zip(sin.chunks_exact(head_dim)) {
        let (x1, x2) = x.split_at_mut(half);
        let ((c1, c2), (s1, s2)) = (c.split_at(half), s.split_at(half));
        for i in 0..half {
            let (a, b) = (x1[i], x2[i]);
            if transpose {
                x1[i] = a * c1[i] + b * s2[i];
                x2[i] = b * c2[i] - a * s1[i];
            } else {
                x1[i] = a * c1[i] - b * s1[i];
                x2[i] = b * c2[i] + a * s2[i];
            }
        }
    }
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

    /// The lane-wise reductions against plain loops in f64, on lengths around the lane count.
    #[test]
    fn lane_reductions_match_plain_loops() {
        for len in [0, 1, 15, 16, 17, 33, 250] {
            let (a, b) = (random(len, 7), random(len, 8));
            let want_dot: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let want_sum: f64 = a.iter().map(|&x| x as f64).sum();
            assert!((dot(&a, &b) as f64 - want_dot).abs() < 1e-4, "dot of {len}");
            assert!((sum(&a) as f64 - want_sum).abs() < 1e-4, "sum of {len}");
            assert_eq!(max(&a), a.iter().copied().fold(f32::NEG_INFINITY, f32::max), "max of {len}");
            let mut e = a.clone();
            let total = exp_shifted_sum(&mut e, 0.5);
            let want_e: Vec<f64> = a.iter().map(|&x| (x as f64 - 0.5).exp()).collect();
            assert!(e.iter().zip(&want_e).all(|(got, want)| (*got as f64 - want).abs() < 1e-6 * want), "exp of {len}");
            assert!((total as f64 - want_e.iter().sum::<f64>()).abs() < 1e-5 * (1.0 + total as f64), "exp sum of {len}");
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
        let rotated = |x: &[f32]| {
            let mut y = x.to_vec();
            rope_forward(&mut y, &cos, &sin, head_dim);
            y
        };
        let y = rotated(&x);
        // The first pair of the first head by hand: (x₀, x₃) rotated.
        assert!((y[0] - (x[0] * cos[0] - x[3] * sin[0])).abs() < 1e-6 && (y[3] - (x[3] * cos[3] + x[0] * sin[3])).abs() < 1e-6);
        let loss = |x: &[f32]| rotated(x).iter().zip(&probe).map(|(y, p)| (y * p) as f64).sum::<f64>();
        let mut dx = probe.clone();
        rope_backward(&mut dx, &cos, &sin, head_dim);
        close(&dx, &numeric_gradient(&loss, &x), "dx");
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
