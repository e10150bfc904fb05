//! Operations that burn's autodiff would otherwise decompose into many small kernels.
//!
//! Autodiff implements softmax as max, subtract, exp, sum and divide, each a separate pass (and on
//! the CPU backend each single-threaded); the attention softmax is the largest tensor of a step.
//! [`FusedOps::softmax_last_dim`] runs the backend's own fused softmax forward (row-parallel on
//! flex) and a hand-written backward, `dx = p ⊙ (g − Σ g⊙p)`, with the saved output `p`.
//! [`FusedOps::causal_attention`] is causal grouped-query attention in one op with its own
//! backward; on the CPU backend it runs `model::attention`'s kernels (only the lower triangle of
//! the scores is computed, no mask tensor exists, heads run in parallel); other backends compose
//! attention from matrix products, a mask and a softmax (see `transformer.rs`).
//! [`FusedOps::rms_norm`], [`FusedOps::swiglu`] (SwiGLU's gating), [`FusedOps::rope`] and
//! [`FusedOps::cross_entropy`] are one pass each way on the CPU backend (`model::pointwise`'s
//! kernels, rows in parallel); elsewhere they are composed.
//! [`FusedOps::linear_layer`] on the CPU backend writes its products straight into fresh buffers
//! (`model::gemm`), where burn's would zero-fill and copy each output first.
//! [`FusedOps::residual`] (`x + r·branch`, the µP residual) and [`FusedOps::adamw`] (the whole
//! optimizer update of one parameter) are one pass each on the CPU backend where burn's ops are
//! two and eight single-threaded passes; both give the composed ops' bits exactly.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Tensor, TensorData, TensorMetadata, TensorPrimitive};
use burn_flex::FlexTensor;

use super::{attention, gemm, pointwise};

/// A backend with windtunnel's fused operations. Every backend has them (the defaults use the
/// backend's own kernels); autodiff overrides them with hand-written backward passes.
pub trait FusedOps: Backend {
    /// Softmax over the last dimension.
    fn softmax_last_dim(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let last = x.shape().num_dims() - 1;
        Self::softmax(x, last)
    }

    /// Whether this backend has its own kernels for the fused ops below (attention, linear layers,
    /// RMSNorm, SwiGLU, RoPE, cross-entropy); where it does not, each returns `None` and the model
    /// composes the op from tensor ops.
    fn has_fused_kernels() -> bool {
        false
    }

    /// Causal grouped-query attention: `q` `[batch, seq, heads, head_dim]`, `k` and `v`
    /// `[batch, seq, kv_heads, head_dim]` (query head h uses key/value head h / (heads / kv_heads)),
    /// scores scaled by `scale`; the output is shaped like `q`.
    fn causal_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, scale: f32) -> Option<FloatTensor<Self>> {
        Self::causal_attention_with_weights(q, k, v, scale).map(|(o, _)| o)
    }

    /// The same, with what the backward pass needs of the attention weights (the CPU backend: the
    /// lower-triangular blocks of each head, packed; see `model::attention`).
    fn causal_attention_with_weights(
        _q: FloatTensor<Self>,
        _k: FloatTensor<Self>,
        _v: FloatTensor<Self>,
        _scale: f32,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        None
    }

    /// (dQ, dK, dV) of [`FusedOps::causal_attention`] from its saved weights and the output's gradient.
    #[allow(clippy::type_complexity)]
    fn causal_attention_backward(
        _q: FloatTensor<Self>,
        _k: FloatTensor<Self>,
        _v: FloatTensor<Self>,
        _weights: FloatTensor<Self>,
        _grad: FloatTensor<Self>,
        _scale: f32,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>)> {
        None
    }

    /// `x · weight` over the last dimension of `x` (`weight` is `[in, out]`).
    fn linear_layer(_x: FloatTensor<Self>, _weight: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        None
    }

    /// (dx, dweight) of [`FusedOps::linear_layer`] from the output's gradient; each only when asked for.
    #[allow(clippy::type_complexity)]
    fn linear_layer_backward(
        _x: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _grad: FloatTensor<Self>,
        _want: [bool; 2],
    ) -> Option<(Option<FloatTensor<Self>>, Option<FloatTensor<Self>>)> {
        None
    }

    /// RMSNorm over the last dimension of `x` with gain `weight` (`[d]`).
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f32) -> Option<FloatTensor<Self>> {
        Self::rms_norm_with_inv_rms(x, weight, eps).map(|(y, _)| y)
    }

    /// The same, with the 1/rms of every row (`[rows]`) the backward pass needs.
    fn rms_norm_with_inv_rms(_x: FloatTensor<Self>, _weight: FloatTensor<Self>, _eps: f32) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        None
    }

    /// (dx, dweight) of [`FusedOps::rms_norm`] from the saved 1/rms and the output's gradient.
    fn rms_norm_backward(
        _x: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _inv_rms: FloatTensor<Self>,
        _grad: FloatTensor<Self>,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        None
    }

    /// SwiGLU's gating `silu(gate) ⊙ up`, elementwise.
    fn swiglu(_gate: FloatTensor<Self>, _up: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        None
    }

    /// (dgate, dup) of [`FusedOps::swiglu`] from the output's gradient.
    fn swiglu_backward(_gate: FloatTensor<Self>, _up: FloatTensor<Self>, _grad: FloatTensor<Self>) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        None
    }

    /// One AdamW update of a flattened parameter: (p, m, v) after the step (see
    /// [`pointwise::adamw`]; all four `[n]`).
    #[allow(clippy::type_complexity)]
    fn adamw(
        _p: FloatTensor<Self>,
        _g: FloatTensor<Self>,
        _m: FloatTensor<Self>,
        _v: FloatTensor<Self>,
        _step: pointwise::AdamWStep,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>)> {
        None
    }

    /// A residual connection `x + scale·branch` (same shapes).
    fn residual(_x: FloatTensor<Self>, _branch: FloatTensor<Self>, _scale: f32) -> Option<FloatTensor<Self>> {
        None
    }

    /// `scale·g`, the branch's gradient of [`FusedOps::residual`].
    fn scaled(_g: FloatTensor<Self>, _scale: f32) -> Option<FloatTensor<Self>> {
        None
    }

    /// Rotary embedding of `x` `[batch, seq, heads, head_dim]` with tables `cos` and `sin`
    /// `[seq, heads, head_dim]` (constants: they get no gradient).
    fn rope(_x: FloatTensor<Self>, _cos: FloatTensor<Self>, _sin: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        None
    }

    /// dx of [`FusedOps::rope`] from the output's gradient.
    fn rope_backward(_cos: FloatTensor<Self>, _sin: FloatTensor<Self>, _grad: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        None
    }

    /// The mean cross-entropy (`[1]`) of logits `[…, vocab]` against integer targets `[…]`.
    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> Option<FloatTensor<Self>> {
        Self::cross_entropy_with_probs(logits, targets).map(|(loss, _)| loss)
    }

    /// The same, with the softmax of the logits the backward pass needs.
    fn cross_entropy_with_probs(_logits: FloatTensor<Self>, _targets: IntTensor<Self>) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        None
    }

    /// d(loss)/d(logits) of [`FusedOps::cross_entropy`] from the saved softmax and the loss's gradient.
    fn cross_entropy_backward(_probs: FloatTensor<Self>, _targets: IntTensor<Self>, _grad: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        None
    }
}

/// The CPU backend: `model::attention`'s, `model::gemm`'s and `model::pointwise`'s kernels on the tensors' f32 data.
impl FusedOps for burn::backend::Flex {
    fn has_fused_kernels() -> bool {
        true
    }

    fn causal_attention_with_weights(q: FlexTensor, k: FlexTensor, v: FlexTensor, scale: f32) -> Option<(FlexTensor, FlexTensor)> {
        let d = attention_dims(&q, &k, &v)?;
        let [q, k, v] = [q, k, v].map(contiguous);
        let (o, p) = attention::forward(d, f32s(&q), f32s(&k), f32s(&v), scale);
        Some((flex(o, [d.batch, d.seq, d.heads, d.head_dim]), flex(p, [d.batch, d.heads, attention::weights_len(d.seq)])))
    }

    fn causal_attention_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        weights: FlexTensor,
        grad: FlexTensor,
        scale: f32,
    ) -> Option<(FlexTensor, FlexTensor, FlexTensor)> {
        let d = attention_dims(&q, &k, &v)?;
        let [q, k, v, w, g] = [q, k, v, weights, grad].map(contiguous);
        let (dq, dk, dv) = attention::backward(d, f32s(&q), f32s(&k), f32s(&v), f32s(&w), f32s(&g), scale);
        let kv_shape = [d.batch, d.seq, d.kv_heads, d.head_dim];
        Some((flex(dq, [d.batch, d.seq, d.heads, d.head_dim]), flex(dk, kv_shape), flex(dv, kv_shape)))
    }

    fn linear_layer(x: FlexTensor, weight: FlexTensor) -> Option<FlexTensor> {
        let (k, n) = linear_dims(&x, &weight)?;
        let mut shape = x.shape();
        let [x, w] = [x, weight].map(contiguous);
        let y = gemm::linear_forward(f32s(&x), f32s(&w), k, n);
        let last = shape.num_dims() - 1;
        shape[last] = n;
        Some(flex(y, shape))
    }

    fn linear_layer_backward(x: FlexTensor, weight: FlexTensor, grad: FlexTensor, want: [bool; 2]) -> Option<(Option<FlexTensor>, Option<FlexTensor>)> {
        let (k, n) = linear_dims(&x, &weight)?;
        let (x_shape, w_shape) = (x.shape(), weight.shape());
        let [x, w, g] = [x, weight, grad].map(contiguous);
        // The two products are independent: run together, either one's idle thread takes the other's work.
        let (dx, dw) = rayon::join(
            || want[0].then(|| gemm::linear_backward_x(f32s(&g), f32s(&w), k, n)),
            || want[1].then(|| gemm::linear_backward_w(f32s(&x), f32s(&g), k, n)),
        );
        Some((dx.map(|dx| flex(dx, x_shape)), dw.map(|dw| flex(dw, w_shape))))
    }

    fn rms_norm_with_inv_rms(x: FlexTensor, weight: FlexTensor, eps: f32) -> Option<(FlexTensor, FlexTensor)> {
        let rows = norm_rows(&x, &weight)?;
        let shape = x.shape();
        let [x, w] = [x, weight].map(contiguous);
        let (y, inv_rms) = pointwise::rms_norm_forward(f32s(&x), f32s(&w), eps);
        Some((flex(y, shape), flex(inv_rms, [rows])))
    }

    fn rms_norm_backward(x: FlexTensor, weight: FlexTensor, inv_rms: FlexTensor, grad: FlexTensor) -> Option<(FlexTensor, FlexTensor)> {
        norm_rows(&x, &weight)?;
        let (shape, d) = (x.shape(), weight.shape());
        let [x, w, r, g] = [x, weight, inv_rms, grad].map(contiguous);
        let (dx, dw) = pointwise::rms_norm_backward(f32s(&x), f32s(&w), f32s(&r), f32s(&g));
        Some((flex(dx, shape), flex(dw, d)))
    }

    fn swiglu(gate: FlexTensor, up: FlexTensor) -> Option<FlexTensor> {
        let shape = same_f32_shape(&gate, &up)?;
        let [a, u] = [gate, up].map(contiguous);
        Some(flex(pointwise::swiglu_forward(f32s(&a), f32s(&u)), shape))
    }

    fn swiglu_backward(gate: FlexTensor, up: FlexTensor, grad: FlexTensor) -> Option<(FlexTensor, FlexTensor)> {
        let shape = same_f32_shape(&gate, &up)?;
        let [a, u, g] = [gate, up, grad].map(contiguous);
        let (da, du) = pointwise::swiglu_backward(f32s(&a), f32s(&u), f32s(&g));
        Some((flex(da, shape.clone()), flex(du, shape)))
    }

    fn adamw(p: FlexTensor, g: FlexTensor, m: FlexTensor, v: FlexTensor, step: pointwise::AdamWStep) -> Option<(FlexTensor, FlexTensor, FlexTensor)> {
        let n = p.shape().num_elements();
        let flat = [&p, &g, &m, &v].iter().all(|t| t.shape().num_dims() == 1 && t.shape().num_elements() == n);
        (flat && all_f32(&[&p, &g, &m, &v])).then_some(())?;
        let [p, g, m, v] = [p, g, m, v].map(contiguous);
        let (p, m, v) = pointwise::adamw(f32s(&p), f32s(&g), f32s(&m), f32s(&v), step);
        Some((flex(p, [n]), flex(m, [n]), flex(v, [n])))
    }

    fn residual(x: FlexTensor, branch: FlexTensor, scale: f32) -> Option<FlexTensor> {
        let shape = same_f32_shape(&x, &branch)?;
        let [x, f] = [x, branch].map(contiguous);
        Some(flex(pointwise::residual(f32s(&x), f32s(&f), scale), shape))
    }

    fn scaled(g: FlexTensor, scale: f32) -> Option<FlexTensor> {
        all_f32(&[&g]).then_some(())?;
        let (shape, g) = (g.shape(), contiguous(g));
        Some(flex(pointwise::scaled(f32s(&g), scale), shape))
    }

    fn rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> Option<FlexTensor> {
        let head_dim = rope_head_dim(&x, &cos, &sin)?;
        let shape = x.shape();
        let [x, c, s] = [x, cos, sin].map(contiguous);
        Some(flex(pointwise::rope_forward(f32s(&x), f32s(&c), f32s(&s), head_dim), shape))
    }

    fn rope_backward(cos: FlexTensor, sin: FlexTensor, grad: FlexTensor) -> Option<FlexTensor> {
        let head_dim = rope_head_dim(&grad, &cos, &sin)?;
        let shape = grad.shape();
        let [g, c, s] = [grad, cos, sin].map(contiguous);
        Some(flex(pointwise::rope_backward(f32s(&g), f32s(&c), f32s(&s), head_dim), shape))
    }

    fn cross_entropy_with_probs(logits: FlexTensor, targets: FlexTensor) -> Option<(FlexTensor, FlexTensor)> {
        let vocab = vocab_of(&logits, &targets)?;
        let shape = logits.shape();
        let [x, t] = [logits, targets].map(contiguous);
        let (loss, probs) = pointwise::cross_entropy_forward(f32s(&x), &targets_of(&t)?, vocab)?;
        Some((flex(vec![loss], [1]), flex(probs, shape)))
    }

    fn cross_entropy_backward(probs: FlexTensor, targets: FlexTensor, grad: FlexTensor) -> Option<FlexTensor> {
        let vocab = vocab_of(&probs, &targets)?;
        let shape = probs.shape();
        let [p, t, g] = [probs, targets, grad].map(contiguous);
        let g = *f32s(&g).first()?;
        Some(flex(pointwise::cross_entropy_backward(f32s(&p), &targets_of(&t)?, vocab, g), shape))
    }
}

/// The head dimension of a RoPE call on f32 tensors: `x` `[batch, seq, heads, head_dim]` (even
/// head_dim) and tables `[seq, heads, head_dim]`.
fn rope_head_dim(x: &FlexTensor, cos: &FlexTensor, sin: &FlexTensor) -> Option<usize> {
    let (xs, cs) = (x.shape(), cos.shape());
    let ok = all_f32(&[x, cos, sin]) && xs.num_dims() == 4 && cs.num_dims() == 3 && cs == sin.shape() && xs[1..] == cs[..] && xs[3] % 2 == 0 && xs[3] > 0;
    ok.then(|| xs[3])
}

/// The vocabulary of a cross-entropy call: f32 logits `[…, vocab]` and integer targets `[…]` of as many rows.
fn vocab_of(logits: &FlexTensor, targets: &FlexTensor) -> Option<usize> {
    let (ls, ts) = (logits.shape(), targets.shape());
    let vocab = ls[ls.num_dims() - 1];
    let types = logits.dtype() == burn::tensor::DType::F32 && matches!(targets.dtype(), burn::tensor::DType::I32 | burn::tensor::DType::I64);
    (types && vocab > 0 && ts.num_dims() + 1 == ls.num_dims() && ts.num_elements() * vocab == ls.num_elements()).then_some(vocab)
}

/// The elements of a contiguous integer tensor (i32, the CPU backend's default, or i64) as i64.
fn targets_of(t: &FlexTensor) -> Option<Vec<i64>> {
    let n = t.shape().num_elements();
    match t.dtype() {
        burn::tensor::DType::I64 => Some(t.storage::<i64>()[..n].to_vec()),
        burn::tensor::DType::I32 => Some(t.storage::<i32>()[..n].iter().map(|&v| v as i64).collect()),
        _ => None,
    }
}

/// (in, out) of a linear layer on f32 tensors: `x` `[…, in]` and `weight` `[in, out]`.
fn linear_dims(x: &FlexTensor, weight: &FlexTensor) -> Option<(usize, usize)> {
    let (xs, ws) = (x.shape(), weight.shape());
    (all_f32(&[x, weight]) && ws.num_dims() == 2 && xs.num_dims() >= 1 && ws[0] > 0 && xs[xs.num_dims() - 1] == ws[0]).then(|| (ws[0], ws[1]))
}

/// The rows of an RMSNorm call on f32 tensors: `x` `[…, d]` and `weight` `[d]`.
fn norm_rows(x: &FlexTensor, weight: &FlexTensor) -> Option<usize> {
    let (xs, ws) = (x.shape(), weight.shape());
    let d = ws.num_elements();
    (all_f32(&[x, weight]) && ws.num_dims() == 1 && d > 0 && xs[xs.num_dims() - 1] == d).then(|| xs.num_elements() / d)
}

/// The shape two f32 tensors share, if they do.
fn same_f32_shape(a: &FlexTensor, b: &FlexTensor) -> Option<burn::tensor::Shape> {
    (all_f32(&[a, b]) && a.shape() == b.shape()).then(|| a.shape())
}

/// The sizes of an attention call on f32 tensors of consistent shapes (`[batch, seq, heads, head_dim]`).
fn attention_dims(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor) -> Option<attention::Dims> {
    let (qs, ks) = (q.shape(), k.shape());
    if !all_f32(&[q, k, v]) || qs.num_dims() != 4 || ks.num_dims() != 4 || ks != v.shape() {
        return None;
    }
    let d = attention::Dims { batch: qs[0], seq: qs[1], heads: qs[2], kv_heads: ks[2], head_dim: qs[3] };
    let consistent = ks[0] == d.batch && ks[1] == d.seq && ks[3] == d.head_dim && d.kv_heads > 0 && d.heads.is_multiple_of(d.kv_heads);
    consistent.then_some(d)
}

/// Whether every tensor holds f32 (the kernels' element type).
fn all_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == burn::tensor::DType::F32)
}

/// The tensor itself when its elements are its buffer from the start, in order; else a copy that is.
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        t
    } else {
        t.to_contiguous()
    }
}

/// The f32 elements of a contiguous tensor (see [`contiguous`]), borrowed.
fn f32s(t: &FlexTensor) -> &[f32] {
    &t.storage::<f32>()[..t.shape().num_elements()]
}

fn flex(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

#[cfg(feature = "cuda")]
impl FusedOps for burn::backend::Cuda {}

/// Hands each parent that needs one its gradient (`None`: the backward did not compute it).
macro_rules! register_grads {
    ($grads:expr, $parents:expr, $values:expr) => {
        for (parent, g) in $parents.into_iter().zip($values) {
            if let (Some(node), Some(g)) = (parent, g) {
                $grads.register::<B>(node.id, g);
            }
        }
    };
}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn softmax_last_dim(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SoftmaxBackward;

        impl<B: Backend> Backward<B, 1> for SoftmaxBackward {
            /// The softmax output p.
            type State = B::FloatTensorPrimitive;

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let p = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |g| {
                    let last = p.shape().num_dims() - 1;
                    let gp = B::float_mul(g, p.clone());
                    let row_sums = B::float_sum_dim(gp.clone(), last);
                    B::float_sub(gp, B::float_mul(p, row_sums))
                });
            }
        }

        match SoftmaxBackward.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let p = B::softmax_last_dim(x.primitive);
                prep.finish(p.clone(), p)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_last_dim(x.primitive)),
        }
    }

    fn has_fused_kernels() -> bool {
        B::has_fused_kernels()
    }

    fn causal_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, scale: f32) -> Option<FloatTensor<Self>> {
        #[derive(Debug)]
        struct AttentionBackward;

        impl<B: FusedOps> Backward<B, 3> for AttentionBackward {
            /// Q, K, V, the attention weights and the scale.
            type State = ([B::FloatTensorPrimitive; 4], f32);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
                let ([q, k, v, weights], scale) = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let (dq, dk, dv) =
                    B::causal_attention_backward(q, k, v, weights, grad, scale).expect("the backend that ran the fused forward runs its backward");
                register_grads!(grads, ops.parents, [Some(dq), Some(dk), Some(dv)]);
            }
        }

        if !B::has_fused_kernels() {
            return None;
        }
        match AttentionBackward.prepare::<C>([q.node.clone(), k.node.clone(), v.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (o, weights) = B::causal_attention_with_weights(q.primitive.clone(), k.primitive.clone(), v.primitive.clone(), scale)?;
                Some(prep.finish(([q.primitive, k.primitive, v.primitive, weights], scale), o))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::causal_attention(q.primitive, k.primitive, v.primitive, scale)?)),
        }
    }

    fn linear_layer(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        #[derive(Debug)]
        struct LinearBackward;

        impl<B: FusedOps> Backward<B, 2> for LinearBackward {
            /// x and the weight.
            type State = [B::FloatTensorPrimitive; 2];

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
                let [x, weight] = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let want = [ops.parents[0].is_some(), ops.parents[1].is_some()];
                let (dx, dw) = B::linear_layer_backward(x, weight, grad, want).expect("the backend that ran the fused forward runs its backward");
                register_grads!(grads, ops.parents, [dx, dw]);
            }
        }

        if !B::has_fused_kernels() {
            return None;
        }
        match LinearBackward.prepare::<C>([x.node.clone(), weight.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::linear_layer(x.primitive.clone(), weight.primitive.clone())?;
                Some(prep.finish([x.primitive, weight.primitive], y))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::linear_layer(x.primitive, weight.primitive)?)),
        }
    }

    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        #[derive(Debug)]
        struct RopeBackward;

        impl<B: FusedOps> Backward<B, 1> for RopeBackward {
            /// The cos and sin tables.
            type State = [B::FloatTensorPrimitive; 2];

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let [cos, sin] = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |g| {
                    B::rope_backward(cos, sin, g).expect("the backend that ran the fused forward runs its backward")
                });
            }
        }

        if !B::has_fused_kernels() {
            return None;
        }
        match RopeBackward.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::rope(x.primitive, cos.primitive.clone(), sin.primitive.clone())?;
                Some(prep.finish([cos.primitive, sin.primitive], y))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::rope(x.primitive, cos.primitive, sin.primitive)?)),
        }
    }

    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> Option<FloatTensor<Self>> {
        #[derive(Debug)]
        struct CrossEntropyBackward<B: Backend>(std::marker::PhantomData<B>);

        impl<B: FusedOps> Backward<B, 1> for CrossEntropyBackward<B> {
            /// The softmax of the logits and the targets.
            type State = (B::FloatTensorPrimitive, B::IntTensorPrimitive);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let (probs, targets) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |g| {
                    B::cross_entropy_backward(probs, targets, g).expect("the backend that ran the fused forward runs its backward")
                });
            }
        }

        if !B::has_fused_kernels() {
            return None;
        }
        match CrossEntropyBackward::<B>(std::marker::PhantomData).prepare::<C>([logits.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (loss, probs) = B::cross_entropy_with_probs(logits.primitive, targets.clone())?;
                Some(prep.finish((probs, targets), loss))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::cross_entropy(logits.primitive, targets)?)),
        }
    }

    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f32) -> Option<FloatTensor<Self>> {
        #[derive(Debug)]
        struct RmsNormBackward;

        impl<B: FusedOps> Backward<B, 2> for RmsNormBackward {
            /// x, the gain and the 1/rms of every row.
            type State = [B::FloatTensorPrimitive; 3];

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
                let [x, weight, inv_rms] = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let (dx, dw) = B::rms_norm_backward(x, weight, inv_rms, grad).expect("the backend that ran the fused forward runs its backward");
                register_grads!(grads, ops.parents, [Some(dx), Some(dw)]);
            }
        }

        if !B::has_fused_kernels() {
            return None;
        }
        match RmsNormBackward.prepare::<C>([x.node.clone(), weight.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (y, inv_rms) = B::rms_norm_with_inv_rms(x.primitive.clone(), weight.primitive.clone(), eps)?;
                Some(prep.finish([x.primitive, weight.primitive, inv_rms], y))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::rms_norm(x.primitive, weight.primitive, eps)?)),
        }
    }

    fn residual(x: FloatTensor<Self>, branch: FloatTensor<Self>, scale: f32) -> Option<FloatTensor<Self>> {
        #[derive(Debug)]
        struct ResidualBackward;

        impl<B: FusedOps> Backward<B, 2> for ResidualBackward {
            /// The branch multiplier.
            type State = f32;

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let [_, branch] = &ops.parents;
                let d_branch = branch.as_ref().map(|_| B::scaled(grad.clone(), ops.state).expect("the backend that ran the fused forward runs its backward"));
                register_grads!(grads, ops.parents, [Some(grad), d_branch]);
            }
        }

        if !B::has_fused_kernels() {
            return None;
        }
        match ResidualBackward.prepare::<C>([x.node.clone(), branch.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => Some(prep.finish(scale, B::residual(x.primitive, branch.primitive, scale)?)),
            OpsKind::UnTracked(prep) => Some(prep.finish(B::residual(x.primitive, branch.primitive, scale)?)),
        }
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        #[derive(Debug)]
        struct SwigluBackward;

        impl<B: FusedOps> Backward<B, 2> for SwigluBackward {
            /// The gate and up projections.
            type State = [B::FloatTensorPrimitive; 2];

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
                let [gate, up] = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let (da, du) = B::swiglu_backward(gate, up, grad).expect("the backend that ran the fused forward runs its backward");
                register_grads!(grads, ops.parents, [Some(da), Some(du)]);
            }
        }

        if !B::has_fused_kernels() {
            return None;
        }
        match SwigluBackward.prepare::<C>([gate.node.clone(), up.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let h = B::swiglu(gate.primitive.clone(), up.primitive.clone())?;
                Some(prep.finish([gate.primitive, up.primitive], h))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::swiglu(gate.primitive, up.primitive)?)),
        }
    }
}

/// A float tensor from its primitive.
fn float<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// Causal attention through the backend's fused op, or `None` where it has none.
pub fn causal_attention<B: FusedOps>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, scale: f32) -> Option<Tensor<B, 4>> {
    let [q, k, v] = [q, k, v].map(|t| t.into_primitive().tensor());
    B::causal_attention(q, k, v, scale).map(float)
}

/// `x · weight` (`weight` `[in, out]`) through the backend's fused op, or `None` where it has none.
pub fn linear<B: FusedOps, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 2>) -> Option<Tensor<B, D>> {
    let [x, w] = [x.into_primitive().tensor(), weight.into_primitive().tensor()];
    B::linear_layer(x, w).map(float)
}

/// Rotary embedding of `x` `[batch, seq, heads, head_dim]` with `[seq, heads, head_dim]` tables
/// through the backend's fused op, or `None` where it has none.
pub fn rope<B: FusedOps>(x: Tensor<B, 4>, cos: Tensor<B, 3>, sin: Tensor<B, 3>) -> Option<Tensor<B, 4>> {
    B::rope(x.into_primitive().tensor(), cos.into_primitive().tensor(), sin.into_primitive().tensor()).map(float)
}

/// The mean cross-entropy of `logits` against `targets` through the backend's fused op, or `None`.
pub fn cross_entropy<B: FusedOps>(logits: Tensor<B, 3>, targets: Tensor<B, 2, burn::tensor::Int>) -> Option<Tensor<B, 1>> {
    B::cross_entropy(logits.into_primitive().tensor(), targets.into_primitive()).map(float)
}

/// RMSNorm over the last dimension through the backend's fused op, or `None` where it has none.
pub fn rms_norm<B: FusedOps, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 1>, eps: f32) -> Option<Tensor<B, D>> {
    let [x, w] = [x.into_primitive().tensor(), weight.into_primitive().tensor()];
    B::rms_norm(x, w, eps).map(float)
}

/// `silu(gate) ⊙ up` through the backend's fused op, or `None` where it has none.
pub fn swiglu<B: FusedOps, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Option<Tensor<B, D>> {
    let [a, u] = [gate, up].map(|t| t.into_primitive().tensor());
    B::swiglu(a, u).map(float)
}

/// `x + scale·branch` through the backend's fused op, or `None` where it has none.
pub fn residual<B: FusedOps, const D: usize>(x: Tensor<B, D>, branch: Tensor<B, D>, scale: f32) -> Option<Tensor<B, D>> {
    let [x, f] = [x, branch].map(|t| t.into_primitive().tensor());
    B::residual(x, f, scale).map(float)
}

/// Softmax over the last dimension of a tensor.
pub fn softmax_last<B: FusedOps, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    float(B::softmax_last_dim(x.into_primitive().tensor()))
}

/// What training needs of a backend: autodiff with fused operations on both levels.
pub trait TrainBackend: AutodiffBackend<InnerBackend: FusedOps> + FusedOps {}
impl<T: AutodiffBackend<InnerBackend: FusedOps> + FusedOps> TrainBackend for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CpuBackend;
    use burn::tensor::{activation::softmax, Distribution};

    #[test]
    fn fused_softmax_matches_burns_in_value_and_gradient() {
        let device = Default::default();
        let x = Tensor::<CpuBackend, 3>::random([3, 5, 7], Distribution::Normal(0.0, 2.0), &device).require_grad();
        let w = Tensor::<CpuBackend, 3>::random([3, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        let fused = softmax_last(x.clone());
        let reference = softmax(x.clone(), 2);
        let close = |a: Tensor<CpuBackend, 3>, b: Tensor<CpuBackend, 3>| (a - b).abs().max().into_scalar() < 1e-6;
        assert!(close(fused.clone(), reference.clone()));
        let g_fused = (fused * w.clone()).sum().backward();
        let g_ref = (reference * w).sum().backward();
        let (a, b) = (x.grad(&g_fused).unwrap(), x.grad(&g_ref).unwrap());
        assert!((a - b).abs().max().into_scalar() < 1e-6);
    }

    /// The fused attention through autodiff equals attention composed of burn's own ops (scores,
    /// a −∞ mask above the diagonal, softmax, mixing), in value and in the gradients of Q, K and V.
    #[test]
    fn fused_attention_matches_the_composition_in_value_and_gradient() {
        let device = Default::default();
        let (b, s, h, kv, d) = (2, 37, 4, 2, 8);
        let normal = Distribution::Normal(0.0, 1.0);
        let q = Tensor::<CpuBackend, 4>::random([b, s, h, d], normal, &device).require_grad();
        let k = Tensor::<CpuBackend, 4>::random([b, s, kv, d], normal, &device).require_grad();
        let v = Tensor::<CpuBackend, 4>::random([b, s, kv, d], normal, &device).require_grad();
        let w = Tensor::<CpuBackend, 4>::random([b, s, h, d], normal, &device);
        let scale = 0.35;
        let fused = causal_attention(q.clone(), k.clone(), v.clone(), scale).expect("the CPU backend fuses attention");
        // Reference: keys and values repeated per query head, [b, h, s, d].
        let repeat = |t: Tensor<CpuBackend, 4>| t.swap_dims(1, 2).unsqueeze_dim::<5>(2).repeat_dim(2, h / kv).reshape([b, h, s, d]);
        let mask: Vec<f32> = (0..s * s).map(|i| if i % s <= i / s { 0.0 } else { f32::NEG_INFINITY }).collect();
        let mask = Tensor::<CpuBackend, 2>::from_data(burn::tensor::TensorData::new(mask, [s, s]), &device).unsqueeze::<4>();
        let scores = q.clone().swap_dims(1, 2).matmul(repeat(k.clone()).swap_dims(2, 3)) * scale as f64 + mask;
        let reference = softmax(scores, 3).matmul(repeat(v.clone())).swap_dims(1, 2);
        let max_diff = |a: Tensor<CpuBackend, 4>, b: Tensor<CpuBackend, 4>| (a - b).abs().max().into_scalar();
        assert!(max_diff(fused.clone(), reference.clone()) < 1e-5);
        let g_fused = (fused * w.clone()).sum().backward();
        let g_ref = (reference * w).sum().backward();
        for (name, t) in [("q", &q), ("k", &k), ("v", &v)] {
            let diff = (t.grad(&g_fused).unwrap() - t.grad(&g_ref).unwrap()).abs().max().into_scalar();
            assert!(diff < 1e-4, "d{name}: {diff}");
        }
    }

    /// The fused RMSNorm and SwiGLU gating through autodiff equal their composition from burn's
    /// ops (as the model writes them where nothing is fused), in value and in every gradient, on
    /// odd shapes.
    #[test]
    fn fused_norm_and_gating_match_the_composition_in_value_and_gradient() {
        let device = Default::default();
        let normal = Distribution::Normal(0.0, 1.5);
        for [b, s, d] in [[2, 13, 7], [1, 3, 33], [3, 65, 16]] {
            let x = Tensor::<CpuBackend, 3>::random([b, s, d], normal, &device).require_grad();
            let w = Tensor::<CpuBackend, 1>::random([d], normal, &device).require_grad();
            let u = Tensor::<CpuBackend, 3>::random([b, s, d], normal, &device).require_grad();
            let probe = Tensor::<CpuBackend, 3>::random([b, s, d], normal, &device);
            let eps = 1e-5;
            let fused_norm = rms_norm(x.clone(), w.clone(), eps as f32).expect("the CPU backend fuses RMSNorm");
            let composed_norm = x.clone() * x.clone().square().mean_dim(2).add_scalar(eps).sqrt().recip() * w.clone().unsqueeze::<3>();
            let fused_gate = swiglu(x.clone(), u.clone()).expect("the CPU backend fuses SwiGLU");
            let composed_gate = burn::tensor::activation::silu(x.clone()) * u.clone();
            let max_diff = |a: Tensor<CpuBackend, 3>, b: Tensor<CpuBackend, 3>| (a - b).abs().max().into_scalar();
            assert!(max_diff(fused_norm.clone(), composed_norm.clone()) < 1e-5);
            assert!(max_diff(fused_gate.clone(), composed_gate.clone()) < 1e-5);
            let loss = |norm: Tensor<CpuBackend, 3>, gate: Tensor<CpuBackend, 3>| (norm * probe.clone()).sum() + (gate * probe.clone()).sum();
            let g_fused = loss(fused_norm, fused_gate).backward();
            let g_composed = loss(composed_norm, composed_gate).backward();
            for (name, diff) in [
                ("x", (x.grad(&g_fused).unwrap() - x.grad(&g_composed).unwrap()).abs().max().into_scalar()),
                ("u", (u.grad(&g_fused).unwrap() - u.grad(&g_composed).unwrap()).abs().max().into_scalar()),
                ("w", (w.grad(&g_fused).unwrap() - w.grad(&g_composed).unwrap()).abs().max().into_scalar()),
            ] {
                assert!(diff < 1e-4, "[{b}, {s}, {d}] d{name}: {diff}");
            }
        }
    }

    /// The fused cross-entropy equals log-softmax, gather and mean, in value and gradient, with
    /// targets read through a view (the model narrows one token tensor into inputs and targets).
    #[test]
    fn fused_cross_entropy_matches_the_composition_in_value_and_gradient() {
        let device = Default::default();
        let (b, s, vocab) = (3, 11, 37);
        let logits = Tensor::<CpuBackend, 3>::random([b, s, vocab], Distribution::Normal(0.0, 3.0), &device).require_grad();
        let tokens: Vec<i64> = (0..b * (s + 1)).map(|i| (i * 7 % vocab) as i64).collect();
        let all = Tensor::<CpuBackend, 2, burn::tensor::Int>::from_data(TensorData::new(tokens, [b, s + 1]), &device);
        let targets = all.narrow(1, 1, s);
        let fused = cross_entropy(logits.clone(), targets.clone()).expect("the CPU backend fuses cross-entropy");
        let log_probs = burn::tensor::activation::log_softmax(logits.clone(), 2);
        let composed = log_probs.gather(2, targets.unsqueeze_dim::<3>(2)).neg().mean();
        let (f, c): (f32, f32) = (fused.clone().into_scalar(), composed.clone().into_scalar());
        assert!((f - c).abs() < 1e-5, "{f} vs {c}");
        let (g_fused, g_composed) = ((fused * 2.5).backward(), (composed * 2.5).backward());
        let diff = (logits.grad(&g_fused).unwrap() - logits.grad(&g_composed).unwrap()).abs().max().into_scalar();
        assert!(diff < 1e-6, "dlogits: {diff}");
    }

    /// The fused rotary embedding equals the composition `x⊙cos + rotate_half(x)⊙sin` (halves
    /// sliced and concatenated) in value and gradient, with tables narrowed to the sequence.
    #[test]
    fn fused_rope_matches_the_composition_in_value_and_gradient() {
        let device = Default::default();
        let (b, s, h, d) = (2, 5, 3, 6);
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<CpuBackend, 4>::random([b, s, h, d], normal, &device).require_grad();
        let angles = Tensor::<CpuBackend, 3>::random([s + 2, h, d], normal, &device);
        let (cos, sin) = (angles.clone().cos().narrow(0, 0, s), angles.sin().narrow(0, 0, s));
        let probe = Tensor::<CpuBackend, 4>::random([b, s, h, d], normal, &device);
        let fused = rope(x.clone(), cos.clone(), sin.clone()).expect("the CPU backend fuses RoPE");
        let (x1, x2) = (x.clone().narrow(3, 0, d / 2), x.clone().narrow(3, d / 2, d / 2));
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        let composed = x.clone() * cos.unsqueeze::<4>() + rotated * sin.unsqueeze::<4>();
        assert!((fused.clone() - composed.clone()).abs().max().into_scalar() < 1e-6);
        let (g_fused, g_composed) = ((fused * probe.clone()).sum().backward(), (composed * probe).sum().backward());
        let diff = (x.grad(&g_fused).unwrap() - x.grad(&g_composed).unwrap()).abs().max().into_scalar();
        assert!(diff < 1e-6, "dx: {diff}");
    }

    /// The fused linear layer equals burn's `linear` in value and in the gradients of x and the
    /// weight, also through a transposed weight view (the tied embedding's logits).
    #[test]
    fn fused_linear_matches_burns_in_value_and_gradient() {
        let device = Default::default();
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<CpuBackend, 3>::random([2, 7, 5], normal, &device).require_grad();
        let embedding = Tensor::<CpuBackend, 2>::random([11, 5], normal, &device).require_grad();
        let probe = Tensor::<CpuBackend, 3>::random([2, 7, 11], normal, &device);
        let fused = linear(x.clone(), embedding.clone().transpose()).expect("the CPU backend fuses linear layers");
        let reference = burn::tensor::module::linear(x.clone(), embedding.clone().transpose(), None);
        assert!((fused.clone() - reference.clone()).abs().max().into_scalar() < 1e-5);
        let g_ref = (reference * probe.clone()).sum().backward();
        let g_fused = (fused * probe).sum().backward();
        for (name, diff) in [
            ("x", (x.grad(&g_fused).unwrap() - x.grad(&g_ref).unwrap()).abs().max().into_scalar()),
            ("w", (embedding.grad(&g_fused).unwrap() - embedding.grad(&g_ref).unwrap()).abs().max().into_scalar()),
        ] {
            assert!(diff < 1e-4, "d{name}: {diff}");
        }
    }

    /// The fused residual `x + r·f` equals the composition bit for bit, in value and in both
    /// gradients.
    #[test]
    fn fused_residual_equals_the_composition_bit_for_bit() {
        let device = Default::default();
        let normal = Distribution::Normal(0.0, 1.0);
        for [b, s, d] in [[2, 13, 7], [3, 129, 64]] {
            let x = Tensor::<CpuBackend, 3>::random([b, s, d], normal, &device).require_grad();
            let f = Tensor::<CpuBackend, 3>::random([b, s, d], normal, &device).require_grad();
            let probe = Tensor::<CpuBackend, 3>::random([b, s, d], normal, &device);
            let r = 1.4 / 3.0f64.sqrt();
            let fused = residual(x.clone(), f.clone(), r as f32).expect("the CPU backend fuses residuals");
            let composed = x.clone() + f.clone() * r;
            assert_eq!(fused.to_data(), composed.to_data());
            let loss = |y: Tensor<CpuBackend, 3>| (y * probe.clone()).sum();
            let (g_fused, g_composed) = (loss(fused).backward(), loss(composed).backward());
            assert_eq!(x.grad(&g_fused).unwrap().to_data(), x.grad(&g_composed).unwrap().to_data());
            assert_eq!(f.grad(&g_fused).unwrap().to_data(), f.grad(&g_composed).unwrap().to_data());
        }
    }
}
