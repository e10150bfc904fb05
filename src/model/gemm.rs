//! Matrix products on `f32` slices through the `gemm` crate (the kernels burn's CPU backend
//! uses), and the linear layer `y = x·W` forward and backward on them (the CPU backend's fused
//! linear; see `fused.rs`).
//!
//! burn's CPU backend makes every matrix product's output by zero-filling a byte buffer and then
//! copying it into an aligned one, two passes over memory on the main thread before the product
//! starts; the linear layer here writes its products into one fresh buffer each. `gemm` splits a
//! large product over rayon's threads by blocks of the output, each output element summed by one
//! thread in one order, so the result does not depend on the thread count.

use rayon::prelude::*;

/// Products with at least this many multiply-adds run on all of rayon's threads.
const PARALLEL_FLOPS: usize = 192 * 192 * 192;

/// `c[m×n] = (read ? c : 0) + beta · a[m×k] · b[k×n]`; `c` row-major with row stride `c.1`,
/// `a` and `b` given by (row stride, column stride); `parallel` lets a large product use every thread.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    c: (&mut [f32], usize),
    read: bool,
    a: (&[f32], (usize, usize)),
    b: (&[f32], (usize, usize)),
    beta: f32,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let (c, ldc) = c;
    assert!(c.len() > (m - 1) * ldc + n - 1, "matmul out of bounds");
    // SAFETY: `c` holds the m×n output (checked above) and does not alias `a` or `b` (a `&mut`
    // and two `&`).
    unsafe { product(m, n, k, (c.as_mut_ptr(), ldc), read, a, b, beta, parallel) }
}

/// `a[m×k] · b[k×n]` into a new row-major `m×n` buffer, written once (never zero-filled first);
/// `parallel` lets a large product use every thread.
fn fresh_product(m: usize, n: usize, k: usize, a: (&[f32], (usize, usize)), b: (&[f32], (usize, usize)), parallel: bool) -> Vec<f32> {
    let mut c: Vec<f32> = Vec::with_capacity(m * n);
    if m > 0 && n > 0 {
        // SAFETY: the buffer has room for m×n values and aliases nothing; gemm with `read` false
        // writes every element of the m×n output without reading any (with k = 0 it writes zeros),
        // so all m×n are initialised before `set_len`.
        unsafe {
            product(m, n, k, (c.as_mut_ptr(), n), false, a, b, 1.0, parallel);
            c.set_len(m * n);
        }
    }
    c
}

/// The product itself; `a` and `b` are bounds-checked here.
///
/// # Safety
/// `c.0` must point to an m×n row-major output with row stride `c.1` that aliases neither input.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn product(
    m: usize,
    n: usize,
    k: usize,
    c: (*mut f32, usize),
    read: bool,
    a: (&[f32], (usize, usize)),
    b: (&[f32], (usize, usize)),
    beta: f32,
    parallel: bool,
) {
    let ((c, ldc), (a, a_strides), (b, b_strides)) = (c, a, b);
    let last = |rows: usize, cols: usize, (rs, cs): (usize, usize)| (rows - 1) * rs + (cols - 1) * cs;
    assert!(k == 0 || (a.len() > last(m, k, a_strides) && b.len() > last(k, n, b_strides)), "matmul out of bounds");
    let parallelism = if parallel && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_FLOPS { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: the inputs are within their slices (checked above), the output is the caller's promise.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            ldc as isize,
            read,
            a.as_ptr(),
            a_strides.1 as isize,
            a_strides.0 as isize,
            b.as_ptr(),
            b_strides.1 as isize,
            b_strides.0 as isize,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// `y[m×n] = x[m×k] · w[k×n]`, all row-major.
pub fn linear_forward(x: &[f32], w: &[f32], k: usize, n: usize) -> Vec<f32> {
    fresh_product(x.len() / k, n, k, (x, (k, 1)), (w, (n, 1)), true)
}

/// `dx = dy · wᵀ` (`[m×k]`).
pub fn linear_backward_x(dy: &[f32], w: &[f32], k: usize, n: usize) -> Vec<f32> {
    fresh_product(dy.len() / n, k, n, (dy, (n, 1)), (w, (1, n)), true)
}

/// `dx = Σᵢ dyᵢ · wᵢᵀ` (`[m×k]`) for linear layers `yᵢ = x·wᵢ` that share their input x `[m×k]`,
/// each part given as (dyᵢ `[m×nᵢ]`, wᵢ `[k×nᵢ]`, nᵢ): the products add into one buffer in order
/// (the first writes it), so no gradient is summed in a separate pass.
pub fn linear_backward_x_sum(parts: &[(&[f32], &[f32], usize)], m: usize, k: usize) -> Vec<f32> {
    if parts.is_empty() {
        return vec![0.0; m * k];
    }
    let mut dx: Vec<f32> = Vec::with_capacity(m * k);
    if m > 0 && k > 0 {
        for (i, &(dy, w, n)) in parts.iter().enumerate() {
            assert_eq!(dy.len(), m * n, "linear_backward_x_sum: gradients of different rows");
            // SAFETY: the buffer has room for m×k values and aliases nothing; the first product
            // (`read` false) writes all m×k of them (zeros when n = 0) before any later one reads them.
            unsafe { product(m, k, n, (dx.as_mut_ptr(), k), i > 0, (dy, (n, 1)), (w, (1, n)), 1.0, true) };
        }
        // SAFETY: all m×k values were written by the first product.
        unsafe { dx.set_len(m * k) };
    }
    dx
}

/// Rows (tokens) per partial product of a weight gradient; see [`linear_backward_w`].
const WEIGHT_GRAD_ROWS: usize = 2048;

/// `dw = xᵀ · dy` (`[k×n]`), summed over all m rows.
///
/// The sum over thousands of rows is split into pieces of [`WEIGHT_GRAD_ROWS`] rows computed in
/// parallel and added in order: `gemm` parallelises over the output only, and on a `k×n` output of
/// a few hundred columns the pieces, each one single-threaded product, run 1.1–2.1× (mostly
/// 1.2–1.6×) faster on two cores than one product over every thread (`examples/gemm_probe.rs`,
/// on a noisy machine). Only when the pieces do
/// not divide evenly among the threads does each piece also spread over them. The pieces depend on
/// m alone, and `gemm` sums each output element in one order on any number of threads, so the bits
/// do not depend on the thread count.
pub fn linear_backward_w(x: &[f32], dy: &[f32], k: usize, n: usize) -> Vec<f32> {
    let m = x.len() / k;
    let pieces = m.div_ceil(WEIGHT_GRAD_ROWS).max(1);
    let nested = !pieces.is_multiple_of(rayon::current_num_threads());
    let piece = |r0: usize| {
        let r1 = (r0 + WEIGHT_GRAD_ROWS).min(m);
        fresh_product(k, n, r1 - r0, (&x[r0 * k..], (1, k)), (&dy[r0 * n..], (n, 1)), nested)
    };
    if pieces == 1 {
        return piece(0);
    }
    let pieces: Vec<Vec<f32>> = (0..m).into_par_iter().step_by(WEIGHT_GRAD_ROWS).map(piece).collect();
    let mut pieces = pieces.into_iter();
    let mut dw = pieces.next().unwrap_or_default();
    for part in pieces {
        dw.par_chunks_mut(PIECE_SUM_CHUNK)
            .zip(part.par_chunks(PIECE_SUM_CHUNK))
            .for_each(|(total, part)| total.iter_mut().zip(part).for_each(|(t, p)| *t += p));
    }
    dw
}

/// Elements per task when adding partial weight gradients.
const PIECE_SUM_CHUNK: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// The summed input gradient of layers sharing x equals the sum of each layer's, to rounding,
    /// and does not depend on the thread count.
    #[test]
    fn summed_input_gradient_matches_the_layers_added() {
        let (m, k) = (203, 19);
        let parts: Vec<(Vec<f32>, Vec<f32>, usize)> =
            [13, 1, 40].iter().enumerate().map(|(i, &n)| (random(m * n, i as u64), random(k * n, 10 + i as u64), n)).collect();
        let views: Vec<(&[f32], &[f32], usize)> = parts.iter().map(|(dy, w, n)| (&dy[..], &w[..], *n)).collect();
        let summed = linear_backward_x_sum(&views, m, k);
        let mut want = vec![0.0f32; m * k];
        for (dy, w, n) in &views {
            want.iter_mut().zip(linear_backward_x(dy, w, k, *n)).for_each(|(t, p)| *t += p);
        }
        assert!(summed.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4 * (1.0 + b.abs())));
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(|| linear_backward_x_sum(&views, m, k));
        assert_eq!(summed, three);
    }

    /// The three products against plain triple loops, on odd sizes and one large enough to run
    /// in parallel, with the same bits on one thread as on three.
    #[test]
    fn linear_products_match_loops_and_not_the_thread_count() {
        // The last is a weight gradient summed in pieces (more rows than WEIGHT_GRAD_ROWS).
        for (m, k, n) in [(5, 3, 7), (1, 1, 1), (301, 67, 250), (2 * WEIGHT_GRAD_ROWS + 3, 5, 9)] {
            let (x, w, dy) = (random(m * k, 1), random(k * n, 2), random(m * n, 3));
            let run = || (linear_forward(&x, &w, k, n), linear_backward_x(&dy, &w, k, n), linear_backward_w(&x, &dy, k, n));
            let (y, dx, dw) = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(run);
            let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(run);
            assert_eq!((&y, &dx, &dw), (&three.0, &three.1, &three.2));
            let dot = |len: usize, f: &dyn Fn(usize) -> f64| (0..len).map(f).sum::<f64>();
            let close = |got: f32, want: f64| assert!((got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()), "{got} vs {want}");
            for (i, j) in [(0, 0), (m - 1, n - 1), (m / 2, n / 3)] {
                close(y[i * n + j], dot(k, &|l| (x[i * k + l] * w[l * n + j]) as f64));
            }
            for (i, l) in [(0, 0), (m - 1, k - 1)] {
                close(dx[i * k + l], dot(n, &|j| (dy[i * n + j] * w[l * n + j]) as f64));
            }
            for (l, j) in [(0, 0), (k - 1, n - 1)] {
                close(dw[l * n + j], dot(m, &|i| (x[i * k + l] * dy[i * n + j]) as f64));
            }
        }
    }
}
