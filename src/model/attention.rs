//! Causal grouped-query attention on the CPU in one pass per head, forward and backward, on
//! plain `f32` slices (the CPU backend's fused attention; see `fused.rs`).
//!
//! For one query head with queries Q, keys K and values V (`[seq, head_dim]` each, read in place
//! from `[batch, seq, heads, head_dim]` tensors; K and V shared by `groups` query heads) and
//! scale `c`:
//!
//! ```text
//! S = c·Q·Kᵀ (only j ≤ i)    P = softmax_rows(S)    O = P·V
//! dV += Pᵀ·dO    dP = dO·Vᵀ    dS = P ⊙ (dP − rowsum(P ⊙ dP))    dQ = c·dS·K    dK += c·dSᵀ·Q
//! ```
//!
//! Rows are processed in blocks of [`BLOCK`]: block rows `[r0, r1)` only touch keys `[0, r1)`,
//! so the masked upper triangle is (mostly) never computed, and no mask tensor exists. The saved
//! weights P hold only those blocks, packed (see [`weights_len`]): nothing above a block's last
//! key is stored, zero-filled or read again. Outputs and gradients are written straight into the
//! `[batch, seq, heads, head_dim]` layout through row strides (no copies). The matrix products are
//! `gemm`'s (the kernels burn's CPU backend uses), single-threaded per head; heads run in parallel
//! on rayon's pool, each writing only its own outputs (key/value gradients are summed over a
//! group's query heads in order inside one task), so the result does not depend on the number of
//! threads.

use multiversion::multiversion;
use rayon::prelude::*;

use super::gemm;
use super::pointwise::{self, Fresh};

/// Rows per block.
pub const BLOCK: usize = 64;

/// The sizes of one attention call. `q` is `[batch, seq, heads, head_dim]` and `k`, `v` are
/// `[batch, seq, kv_heads, head_dim]`, all contiguous — the layout the projections produce, read
/// in place through strides (no transposes); the output and the gradients have the same layouts,
/// the saved weights are `[batch, heads, weights_len(seq)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub seq: usize,
    pub head_dim: usize,
}

impl Dims {
    fn groups(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// The query blocks `[r0, r1)` of a sequence with where each block's weights start in a head's
/// packed weights: block rows `[r0, r1)` keep `(r1 − r0) × r1` weights, row-major with stride `r1`.
fn blocks(seq: usize) -> impl DoubleEndedIterator<Item = (usize, usize, usize)> {
    (0..seq.div_ceil(BLOCK)).map(move |b| {
        let (r0, r1) = (b * BLOCK, ((b + 1) * BLOCK).min(seq));
        // Blocks before b: rows [i·B, (i+1)·B) keep B·(i+1)·B weights each.
        (r0, r1, BLOCK * BLOCK * b * (b + 1) / 2)
    })
}

/// How many attention weights one head keeps for a sequence: the lower-triangular blocks.
pub fn weights_len(seq: usize) -> usize {
    blocks(seq).last().map_or(0, |(r0, r1, at)| at + (r1 - r0) * r1)
}

/// One head's `[seq, head_dim]` matrix inside a `[batch, seq, heads, head_dim]` tensor: where
/// row 0 starts and the distance between rows (heads · head_dim).
#[derive(Clone, Copy)]
struct Head {
    start: usize,
    row_stride: usize,
}

impl Head {
    fn of(batch: usize, head: usize, heads: usize, d: Dims) -> Self {
        Self { start: batch * d.seq * heads * d.head_dim + head * d.head_dim, row_stride: heads * d.head_dim }
    }
    /// From row `r` on, with its (row, column) strides.
    fn rows_from<'a>(&self, data: &'a [f32], r: usize) -> (&'a [f32], (usize, usize)) {
        (&data[self.start + r * self.row_stride..], (self.row_stride, 1))
    }
    /// The transpose from column `r` on (row `r` of the head becomes column `r`).
    fn transposed_from<'a>(&self, data: &'a [f32], r: usize) -> (&'a [f32], (usize, usize)) {
        (&data[self.start + r * self.row_stride..], (1, self.row_stride))
    }
}

/// A fresh output's first element, shared by parallel tasks that each write only elements no
/// other task writes (its own heads' rows): every element exactly once, or first with `read` false.
#[derive(Clone, Copy)]
struct OutputPtr(*mut f32);
// SAFETY: tasks write disjoint elements through it (see above), and the buffer outlives them.
unsafe impl Send for OutputPtr {}
unsafe impl Sync for OutputPtr {}

impl OutputPtr {
    fn of(output: &mut Fresh) -> Self {
        Self(output.slots().as_mut_ptr().cast())
    }
    /// # Safety
    /// `offset` must be within the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller's promise.
        unsafe { self.0.add(offset) }
    }
}

/// One head's product into `c` (row stride `ldc`), single-threaded (heads run in parallel): see
/// [`gemm::matmul`].
///
/// # Safety
/// `c` must be the first of the m×n outputs (row stride `ldc`) of the caller's own elements of a
/// buffer that outlives the call; with `read`, they must have been written.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(m: usize, n: usize, k: usize, c: *mut f32, ldc: usize, read: bool, a: (&[f32], (usize, usize)), b: (&[f32], (usize, usize)), beta: f32) {
    // SAFETY: the caller's promise.
    unsafe { gemm::product(m, n, k, (c, ldc), read, a, b, beta, false) }
}

/// Forward: returns (O `[batch, seq, heads, head_dim]`, P `[batch, heads, weights_len(seq)]`).
pub fn forward(d: Dims, q: &[f32], k: &[f32], v: &[f32], scale: f32) -> (Vec<f32>, Vec<f32>) {
    let per_head = weights_len(d.seq);
    let mut o = Fresh::new(d.batch * d.seq * d.heads * d.head_dim);
    let mut p = Fresh::new(d.batch * d.heads * per_head);
    let (o_ptr, p_ptr) = (OutputPtr::of(&mut o), OutputPtr::of(&mut p));
    (0..d.batch * d.heads).into_par_iter().for_each(|bh| {
        // SAFETY: this task writes head bh's rows of O and its own packed weights.
        unsafe { head_forward(d, bh, (q, k, v), scale, o_ptr, p_ptr.at(bh * per_head)) }
    });
    // SAFETY: the tasks wrote every head's rows of O and its packed weights.
    unsafe { (o.done(), p.done()) }
}

/// Forward without keeping the weights (evaluation and inference): O alone, each thread reusing
/// one head's worth of scratch for them. The same bits as [`forward`]'s O.
pub fn forward_context(d: Dims, q: &[f32], k: &[f32], v: &[f32], scale: f32) -> Vec<f32> {
    let per_head = weights_len(d.seq);
    let mut o = Fresh::new(d.batch * d.seq * d.heads * d.head_dim);
    let o_ptr = OutputPtr::of(&mut o);
    (0..d.batch * d.heads).into_par_iter().for_each_init(
        || vec![0.0f32; per_head],
        |scratch, bh| {
            // SAFETY: this task writes head bh's rows of O, and its weights into its own scratch.
            unsafe { head_forward(d, bh, (q, k, v), scale, o_ptr, scratch.as_mut_ptr()) }
        },
    );
    // SAFETY: the tasks wrote every head's rows of O.
    unsafe { o.done() }
}

/// Head `bh` (batch · heads + head) forward: its rows of O, and its packed weights into `p`.
///
/// # Safety
/// The caller owns head bh's rows of the buffer behind `o` and the `weights_len(seq)` values at `p`.
unsafe fn head_forward(d: Dims, bh: usize, (q, k, v): (&[f32], &[f32], &[f32]), scale: f32, o: OutputPtr, p: *mut f32) {
    let (b, h) = (bh / d.heads, bh % d.heads);
    let kv = h / d.groups();
    let (qh, kvh) = (Head::of(b, h, d.heads, d), Head::of(b, kv, d.kv_heads, d));
    // SAFETY: the caller's promise; every product writes inside head bh's rows or its weights.
    unsafe {
        let o = o.at(qh.start);
        for (r0, r1, at) in blocks(d.seq) {
            let (n, p) = (r1 - r0, p.add(at));
            // S = c·Q[r0..r1]·K[0..r1]ᵀ into the block's weights, then the masked row softmax.
            matmul(n, r1, d.head_dim, p, r1, false, qh.rows_from(q, r0), kvh.transposed_from(k, 0), scale);
            let rows = std::slice::from_raw_parts_mut(p, n * r1);
            causal_softmax(rows, r0, r1);
            // O[r0..r1] = P·V[0..r1]
            matmul(n, d.head_dim, r1, o.add(r0 * qh.row_stride), qh.row_stride, false, (rows, (r1, 1)), kvh.rows_from(v, 0), 1.0);
        }
    }
}

/// The causal softmax of a block's scores in place, rows of `r1` keys: row i of the block (query
/// r0 + i) keeps keys `[0, r0 + i]` and is zero after.
#[multiversion(targets = "simd")]
fn causal_softmax(rows: &mut [f32], r0: usize, r1: usize) {
    for (i, row) in rows.chunks_mut(r1).enumerate() {
        let (keep, masked) = row.split_at_mut(r0 + i + 1);
        let max = pointwise::max(keep);
        let inv = 1.0 / pointwise::exp_shifted_sum(keep, max);
        keep.iter_mut().for_each(|x| *x *= inv);
        masked.fill(0.0);
    }
}

/// `dS = c · P ⊙ (dP − rowsum(P ⊙ dP))` in place of dP, rows of `r1` keys (P is zero where masked,
/// so whole rows can be used).
#[multiversion(targets = "simd")]
fn score_gradients(ds: &mut [f32], p: &[f32], r1: usize, scale: f32) {
    for (ds, p) in ds.chunks_mut(r1).zip(p.chunks(r1)) {
        let dot = pointwise::dot(ds, p);
        for (x, &pv) in ds.iter_mut().zip(p) {
            *x = scale * pv * (*x - dot);
        }
    }
}

/// Backward: (dQ, dK, dV), laid out as Q, K and V, from the saved P and the gradient of O.
pub fn backward(d: Dims, q: &[f32], k: &[f32], v: &[f32], p: &[f32], grad_o: &[f32], scale: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let per_head = weights_len(d.seq);
    assert_eq!(p.len(), d.batch * d.heads * per_head, "attention weights of another shape");
    let (mut dq, mut dk, mut dv) = (Fresh::new(q.len()), Fresh::new(k.len()), Fresh::new(v.len()));
    let (dq_ptr, dk_ptr, dv_ptr) = (OutputPtr::of(&mut dq), OutputPtr::of(&mut dk), OutputPtr::of(&mut dv));
    // One task per key/value head: its `groups` query heads in order.
    (0..d.batch * d.kv_heads).into_par_iter().for_each(|bkv| {
        let (b, kv) = (bkv / d.kv_heads, bkv % d.kv_heads);
        let kvh = Head::of(b, kv, d.kv_heads, d);
        let mut ds = vec![0.0f32; BLOCK * d.seq];
        for j in 0..d.groups() {
            let h = kv * d.groups() + j;
            let qh = Head::of(b, h, d.heads, d);
            let grads = HeadGrads { q, k, v, grad_o, p: &p[(b * d.heads + h) * per_head..][..per_head], qh, kvh };
            // SAFETY: this task writes the rows of query heads kv·g..(kv+1)·g of dQ and of head
            // kv of dK and dV, for batch b; the first query head writes dK and dV before reading them.
            unsafe { head_backward(d, &grads, scale, j == 0, (dq_ptr.at(qh.start), dk_ptr.at(kvh.start), dv_ptr.at(kvh.start)), &mut ds) };
        }
    });
    // SAFETY: every (batch, head) task wrote all its rows of dQ, dK and dV.
    unsafe { (dq.done(), dk.done(), dv.done()) }
}

/// One query head's saved inputs for the backward pass, with where its head and its key/value
/// head sit.
struct HeadGrads<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    grad_o: &'a [f32],
    /// This head's packed weights.
    p: &'a [f32],
    qh: Head,
    kvh: Head,
}

/// One query head's gradients: dQ into its rows, dK and dV summed into its key/value head's
/// (`first`: this is the group's first query head, whose last block writes them); `ds` is
/// scratch of `BLOCK × seq`. Blocks run last to first, so the first block seen covers every key.
///
/// # Safety
/// `out` points at row 0 of this head in dQ and of its key/value head in dK and dV; the caller
/// owns those rows.
unsafe fn head_backward(d: Dims, h: &HeadGrads, scale: f32, first: bool, out: (*mut f32, *mut f32, *mut f32), ds: &mut [f32]) {
    let (hd, (dq, dk, dv)) = (d.head_dim, out);
    let (q_stride, kv_stride) = (h.qh.row_stride, h.kvh.row_stride);
    for (r0, r1, at) in blocks(d.seq).rev() {
        let n = r1 - r0;
        let read = !(first && r1 == d.seq);
        let p = &h.p[at..at + n * r1];
        let ds = &mut ds[..n * r1];
        // SAFETY (all products): the caller owns the rows written; `read` is false for the first
        // write to dK and dV rows [0, seq).
        unsafe {
            // dV[0..r1] += P[r0..r1, 0..r1]ᵀ · dO[r0..r1]
            matmul(r1, hd, n, dv, kv_stride, read, (p, (1, r1)), h.qh.rows_from(h.grad_o, r0), 1.0);
            // dP = dO[r0..r1] · V[0..r1]ᵀ, then dS = c · P ⊙ (dP − rowsum(P ⊙ dP)) (P is zero above the diagonal).
            matmul(n, r1, hd, ds.as_mut_ptr(), r1, false, h.qh.rows_from(h.grad_o, r0), h.kvh.transposed_from(h.v, 0), 1.0);
            score_gradients(ds, p, r1, scale);
            // dQ[r0..r1] = dS · K[0..r1];  dK[0..r1] += dSᵀ · Q[r0..r1]
            matmul(n, hd, r1, dq.add(r0 * q_stride), q_stride, false, (ds, (r1, 1)), h.kvh.rows_from(h.k, 0), 1.0);
            matmul(r1, hd, n, dk, kv_stride, read, (ds, (1, r1)), h.qh.rows_from(h.q, r0), 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The textbook computation in f64: full scores, −∞ above the diagonal; layouts as `Dims` says.
    fn naive(d: Dims, q: &[f32], k: &[f32], v: &[f32], scale: f64, grad_o: &[f32]) -> [Vec<f64>; 4] {
        let (s, hd, g) = (d.seq, d.head_dim, d.groups());
        let mut o = vec![0.0; q.len()];
        let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
        let at = |heads: usize, b: usize, i: usize, h: usize| ((b * s + i) * heads + h) * hd;
        for b in 0..d.batch {
            for h in 0..d.heads {
                let (kv, nkv) = (h / g, d.kv_heads);
                for i in 0..s {
                    let qi = at(d.heads, b, i, h);
                    let scores: Vec<f64> = (0..=i).map(|j| scale * (0..hd).map(|x| q[qi + x] as f64 * k[at(nkv, b, j, kv) + x] as f64).sum::<f64>()).collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let z: f64 = e.iter().sum();
                    let pr: Vec<f64> = e.iter().map(|x| x / z).collect();
                    let go = |x: usize| grad_o[qi + x] as f64;
                    let dp: Vec<f64> = (0..=i).map(|j| (0..hd).map(|x| go(x) * v[at(nkv, b, j, kv) + x] as f64).sum()).collect();
                    let dot: f64 = pr.iter().zip(&dp).map(|(a, b)| a * b).sum();
                    for j in 0..=i {
                        let (kj, dsij) = (at(nkv, b, j, kv), scale * pr[j] * (dp[j] - dot));
                        for x in 0..hd {
                            o[qi + x] += pr[j] * v[kj + x] as f64;
                            dv[kj + x] += pr[j] * go(x);
                            dq[qi + x] += dsij * k[kj + x] as f64;
                            dk[kj + x] += dsij * q[qi + x] as f64;
                        }
                    }
                }
            }
        }
        [o, dq, dk, dv]
    }

    fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// Odd sizes (a last block shorter than BLOCK, an odd head dimension) and grouped heads.
    #[test]
    fn matches_the_textbook_attention_in_value_and_gradient() {
        for d in [
            Dims { batch: 2, heads: 4, kv_heads: 2, seq: 131, head_dim: 7 },
            Dims { batch: 1, heads: 3, kv_heads: 3, seq: 64, head_dim: 16 },
            Dims { batch: 1, heads: 2, kv_heads: 1, seq: 5, head_dim: 3 },
        ] {
            let mut rng = Rng::new(d.seq as u64);
            let (q, k, v) = (
                random(d.batch * d.heads * d.seq * d.head_dim, &mut rng),
                random(d.batch * d.kv_heads * d.seq * d.head_dim, &mut rng),
                random(d.batch * d.kv_heads * d.seq * d.head_dim, &mut rng),
            );
            let grad_o = random(q.len(), &mut rng);
            let scale = 1.0 / (d.head_dim as f32).sqrt();
            let (o, p) = forward(d, &q, &k, &v, scale);
            assert_eq!(forward_context(d, &q, &k, &v, scale), o, "O without the weights");
            let (dq, dk, dv) = backward(d, &q, &k, &v, &p, &grad_o, scale);
            let want = naive(d, &q, &k, &v, scale as f64, &grad_o);
            for (name, got, want) in [("O", &o, &want[0]), ("dQ", &dq, &want[1]), ("dK", &dk, &want[2]), ("dV", &dv, &want[3])] {
                let err = got.iter().zip(want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
                assert!(err < 1e-4, "{d:?} {name}: max error {err}");
            }
            // Causal: every kept weight above the diagonal is zero, every row sums to 1.
            assert_eq!(p.len(), d.batch * d.heads * weights_len(d.seq));
            for (r0, r1, at) in blocks(d.seq) {
                for (i, row) in p[at..at + (r1 - r0) * r1].chunks(r1).enumerate() {
                    assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
                    assert!(row[r0 + i + 1..].iter().all(|&x| x == 0.0));
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let d = Dims { batch: 2, heads: 4, kv_heads: 2, seq: 100, head_dim: 8 };
        let mut rng = Rng::new(1);
        let (q, k, v) = (
            random(d.batch * d.heads * d.seq * d.head_dim, &mut rng),
            random(d.batch * d.kv_heads * d.seq * d.head_dim, &mut rng),
            random(d.batch * d.kv_heads * d.seq * d.head_dim, &mut rng),
        );
        let grad_o = random(q.len(), &mut rng);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (o, p) = forward(d, &q, &k, &v, 0.3);
                let (dq, dk, dv) = backward(d, &q, &k, &v, &p, &grad_o, 0.3);
                (o, dq, dk, dv)
            })
        };
        assert_eq!(run(1), run(3));
    }
}
