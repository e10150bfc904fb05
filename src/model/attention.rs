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
//! so the masked upper triangle is (mostly) never computed, and no mask tensor exists. The
//! matrix products are `gemm`'s (the kernels burn's CPU backend uses), single-threaded per head;
//! heads run in parallel on rayon's pool, each writing only its own outputs (key/value gradients
//! are summed over a group's query heads in order inside one task), so the result does not depend
//! on the number of threads.

use rayon::prelude::*;

use super::{gemm, pointwise};

/// Rows per block.
pub const BLOCK: usize = 64;

/// The sizes of one attention call. `q` is `[batch, seq, heads, head_dim]` and `k`, `v` are
/// `[batch, seq, kv_heads, head_dim]`, all contiguous — the layout the projections produce, read
/// in place through strides (no transposes); the output and the gradients have the same layouts,
/// the saved weights are `[batch, heads, seq, seq]`.
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
    fn head_len(&self) -> usize {
        self.seq * self.head_dim
    }
}

/// One head's `[seq, head_dim]` matrix inside a `[batch, seq, heads, head_dim]` tensor.
#[derive(Clone, Copy)]
struct Head<'a> {
    data: &'a [f32],
    /// Where row 0 starts, and the distance between rows (heads · head_dim).
    start: usize,
    row_stride: usize,
}

impl<'a> Head<'a> {
    fn of(data: &'a [f32], batch: usize, head: usize, heads: usize, d: Dims) -> Self {
        Self { data, start: batch * d.seq * heads * d.head_dim + head * d.head_dim, row_stride: heads * d.head_dim }
    }
    /// From row `r` on, with its (row, column) strides.
    fn rows_from(&self, r: usize) -> (&'a [f32], (usize, usize)) {
        (&self.data[self.start + r * self.row_stride..], (self.row_stride, 1))
    }
    /// The transpose from column `r` on (row `r` of the head becomes column `r`).
    fn transposed_from(&self, r: usize) -> (&'a [f32], (usize, usize)) {
        (&self.data[self.start + r * self.row_stride..], (1, self.row_stride))
    }
}

/// One head's product, single-threaded (heads run in parallel): see [`gemm::matmul`].
#[allow(clippy::too_many_arguments)]
fn matmul(m: usize, n: usize, k: usize, c: &mut [f32], ldc: usize, read: bool, a: (&[f32], (usize, usize)), b: (&[f32], (usize, usize)), beta: f32) {
    gemm::matmul(m, n, k, (c, ldc), read, a, b, beta, false);
}

/// Copy per-head `[seq, head_dim]` blocks (in (batch, head) order) into `[batch, seq, heads, head_dim]`.
fn interleave(d: Dims, heads: usize, blocks: &[f32]) -> Vec<f32> {
    let (s, hd) = (d.seq, d.head_dim);
    let mut out = vec![0.0f32; blocks.len()];
    for (bh, block) in blocks.chunks(s * hd).enumerate() {
        let (b, h) = (bh / heads, bh % heads);
        for (i, row) in block.chunks(hd).enumerate() {
            let at = ((b * s + i) * heads + h) * hd;
            out[at..at + hd].copy_from_slice(row);
        }
    }
    out
}

/// Forward: returns (O `[batch, seq, heads, head_dim]`, P `[batch, heads, seq, seq]`, zero above
/// the diagonal).
pub fn forward(d: Dims, q: &[f32], k: &[f32], v: &[f32], scale: f32) -> (Vec<f32>, Vec<f32>) {
    let (hl, s) = (d.head_len(), d.seq);
    let mut o = vec![0.0f32; d.batch * d.heads * hl];
    let mut p = vec![0.0f32; d.batch * d.heads * s * s];
    o.par_chunks_mut(hl).zip(p.par_chunks_mut(s * s)).enumerate().for_each(|(bh, (o, p))| {
        let (b, h) = (bh / d.heads, bh % d.heads);
        let kv = h / d.groups();
        let (q, k, v) = (Head::of(q, b, h, d.heads, d), Head::of(k, b, kv, d.kv_heads, d), Head::of(v, b, kv, d.kv_heads, d));
        head_forward(d, q, k, v, scale, o, p);
    });
    (interleave(d, d.heads, &o), p)
}

fn head_forward(d: Dims, q: Head, k: Head, v: Head, scale: f32, o: &mut [f32], p: &mut [f32]) {
    let (s, hd) = (d.seq, d.head_dim);
    for r0 in (0..s).step_by(BLOCK) {
        let r1 = (r0 + BLOCK).min(s);
        let rows = &mut p[r0 * s..r1 * s];
        // S = c·Q[r0..r1]·K[0..r1]ᵀ into P's rows, then masked row softmax in place.
        matmul(r1 - r0, r1, hd, rows, s, false, q.rows_from(r0), k.transposed_from(0), scale);
        for (i, row) in rows.chunks_mut(s).enumerate() {
            softmax_prefix(&mut row[..r0 + i + 1]);
            row[r0 + i + 1..].iter_mut().for_each(|x| *x = 0.0);
        }
        matmul(r1 - r0, hd, r1, &mut o[r0 * hd..], hd, false, (rows, (s, 1)), v.rows_from(0), 1.0);
    }
}

/// Softmax of a row in place.
fn softmax_prefix(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Exponentials first (a loop that vectorises), then their sum in order.
    row.iter_mut().for_each(|x| *x = pointwise::exp(*x - max));
    let sum: f32 = row.iter().sum();
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|x| *x *= inv);
}

/// Backward: (dQ, dK, dV), laid out as Q, K and V, from the saved P and the gradient of O.
pub fn backward(d: Dims, q: &[f32], k: &[f32], v: &[f32], p: &[f32], grad_o: &[f32], scale: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (hl, s, g) = (d.head_len(), d.seq, d.groups());
    let mut dq = vec![0.0f32; d.batch * d.heads * hl];
    let mut dk = vec![0.0f32; d.batch * d.kv_heads * hl];
    let mut dv = vec![0.0f32; d.batch * d.kv_heads * hl];
    // One task per key/value head: its `groups` query heads in order.
    dq.par_chunks_mut(g * hl).zip(dk.par_chunks_mut(hl)).zip(dv.par_chunks_mut(hl)).enumerate().for_each(|(bkv, ((dq, dk), dv))| {
        let (b, kv) = (bkv / d.kv_heads, bkv % d.kv_heads);
        let (k, v) = (Head::of(k, b, kv, d.kv_heads, d), Head::of(v, b, kv, d.kv_heads, d));
        let mut ds = vec![0.0f32; BLOCK * s];
        for j in 0..g {
            let h = kv * g + j;
            let head = HeadGrads { q: Head::of(q, b, h, d.heads, d), p: &p[(b * d.heads + h) * s * s..][..s * s], grad_o: Head::of(grad_o, b, h, d.heads, d) };
            head_backward(d, &head, k, v, scale, &mut dq[j * hl..][..hl], dk, dv, &mut ds);
        }
    });
    (interleave(d, d.heads, &dq), interleave(d, d.kv_heads, &dk), interleave(d, d.kv_heads, &dv))
}

/// One query head's saved inputs for the backward pass.
struct HeadGrads<'a> {
    q: Head<'a>,
    p: &'a [f32],
    grad_o: Head<'a>,
}

/// Accumulate one query head's gradients: dQ into `dq` (`[seq, head_dim]`), dK and dV into the
/// key/value head's `dk`, `dv`; `ds` is scratch of `BLOCK × seq`.
#[allow(clippy::too_many_arguments)]
fn head_backward(d: Dims, h: &HeadGrads, k: Head, v: Head, scale: f32, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32], ds: &mut [f32]) {
    let (s, hd) = (d.seq, d.head_dim);
    for r0 in (0..s).step_by(BLOCK) {
        let r1 = (r0 + BLOCK).min(s);
        let n = r1 - r0;
        let p = &h.p[r0 * s..r1 * s];
        // dV[0..r1] += P[r0..r1, 0..r1]ᵀ · dO[r0..r1]
        matmul(r1, hd, n, dv, hd, true, (p, (1, s)), h.grad_o.rows_from(r0), 1.0);
        // dP = dO[r0..r1] · V[0..r1]ᵀ, then dS = c · P ⊙ (dP − rowsum(P ⊙ dP)).
        let ds = &mut ds[..n * s];
        matmul(n, r1, hd, ds, s, false, h.grad_o.rows_from(r0), v.transposed_from(0), 1.0);
        for (i, (ds_row, p_row)) in ds.chunks_mut(s).zip(p.chunks(s)).enumerate() {
            let len = r0 + i + 1;
            let dot: f32 = ds_row[..len].iter().zip(&p_row[..len]).map(|(a, b)| a * b).sum();
            for (x, &pv) in ds_row[..len].iter_mut().zip(&p_row[..len]) {
                *x = scale * pv * (*x - dot);
            }
            ds_row[len..r1].iter_mut().for_each(|x| *x = 0.0);
        }
        // dQ[r0..r1] = dS · K[0..r1];  dK[0..r1] += dSᵀ · Q[r0..r1]
        matmul(n, hd, r1, &mut dq[r0 * hd..], hd, false, (ds, (s, 1)), k.rows_from(0), 1.0);
        matmul(r1, hd, n, dk, hd, true, (ds, (1, s)), h.q.rows_from(r0), 1.0);
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
                random(d.batch * d.heads * d.head_len(), &mut rng),
                random(d.batch * d.kv_heads * d.head_len(), &mut rng),
                random(d.batch * d.kv_heads * d.head_len(), &mut rng),
            );
            let grad_o = random(q.len(), &mut rng);
            let scale = 1.0 / (d.head_dim as f32).sqrt();
            let (o, p) = forward(d, &q, &k, &v, scale);
            let (dq, dk, dv) = backward(d, &q, &k, &v, &p, &grad_o, scale);
            let want = naive(d, &q, &k, &v, scale as f64, &grad_o);
            for (name, got, want) in [("O", &o, &want[0]), ("dQ", &dq, &want[1]), ("dK", &dk, &want[2]), ("dV", &dv, &want[3])] {
                let err = got.iter().zip(want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
                assert!(err < 1e-4, "{d:?} {name}: max error {err}");
            }
            // Causal: every weight above the diagonal is zero, every row sums to 1.
            for row in p.chunks(d.seq).take(d.seq) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
            assert!(p[1..d.seq].iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let d = Dims { batch: 2, heads: 4, kv_heads: 2, seq: 100, head_dim: 8 };
        let mut rng = Rng::new(1);
        let (q, k, v) = (
            random(d.batch * d.heads * d.head_len(), &mut rng),
            random(d.batch * d.kv_heads * d.head_len(), &mut rng),
            random(d.batch * d.kv_heads * d.head_len(), &mut rng),
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
