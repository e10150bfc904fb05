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

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorData, TensorMetadata, TensorPrimitive};
use burn_flex::FlexTensor;

use super::attention;

/// A backend with windtunnel's fused operations. Every backend has them (the defaults use the
/// backend's own kernels); autodiff overrides them with hand-written backward passes.
pub trait FusedOps: Backend {
    /// Softmax over the last dimension.
    fn softmax_last_dim(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let last = x.shape().num_dims() - 1;
        Self::softmax(x, last)
    }

    /// Whether [`FusedOps::causal_attention`] is fused here; where it is not, the model composes
    /// attention from matrix products, a mask and a softmax.
    fn has_fused_attention() -> bool {
        false
    }

    /// Causal grouped-query attention: `q` `[batch, seq, heads, head_dim]`, `k` and `v`
    /// `[batch, seq, kv_heads, head_dim]` (query head h uses key/value head h / (heads / kv_heads)),
    /// scores scaled by `scale`; the output is shaped like `q`.
    fn causal_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, scale: f32) -> Option<FloatTensor<Self>> {
        Self::causal_attention_with_weights(q, k, v, scale).map(|(o, _)| o)
    }

    /// The same, with the attention weights `[batch, heads, seq, seq]` the backward pass needs.
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
}

/// The CPU backend: attention by `model::attention`'s kernels on the tensors' f32 data.
impl FusedOps for burn::backend::Flex {
    fn has_fused_attention() -> bool {
        true
    }

    fn causal_attention_with_weights(q: FlexTensor, k: FlexTensor, v: FlexTensor, scale: f32) -> Option<(FlexTensor, FlexTensor)> {
        let d = attention_dims(&q, &k, &v)?;
        let [q, k, v] = [q, k, v].map(contiguous);
        let (o, p) = attention::forward(d, f32s(&q), f32s(&k), f32s(&v), scale);
        Some((flex(o, [d.batch, d.seq, d.heads, d.head_dim]), flex(p, [d.batch, d.heads, d.seq, d.seq])))
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
}

/// The sizes of an attention call on f32 tensors of consistent shapes (`[batch, seq, heads, head_dim]`).
fn attention_dims(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor) -> Option<attention::Dims> {
    let f32s = [q, k, v].iter().all(|t| t.dtype() == burn::tensor::DType::F32);
    let (qs, ks) = (q.shape(), k.shape());
    if !f32s || qs.num_dims() != 4 || ks.num_dims() != 4 || ks != v.shape() {
        return None;
    }
    let d = attention::Dims { batch: qs[0], seq: qs[1], heads: qs[2], kv_heads: ks[2], head_dim: qs[3] };
    let consistent = ks[0] == d.batch && ks[1] == d.seq && ks[3] == d.head_dim && d.kv_heads > 0 && d.heads.is_multiple_of(d.kv_heads);
    consistent.then_some(d)
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

fn flex(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

#[cfg(feature = "cuda")]
impl FusedOps for burn::backend::Cuda {}

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

    fn has_fused_attention() -> bool {
        B::has_fused_attention()
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
                for (parent, g) in ops.parents.into_iter().zip([dq, dk, dv]) {
                    if let Some(node) = parent {
                        grads.register::<B>(node.id, g);
                    }
                }
            }
        }

        if !B::has_fused_attention() {
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
}

/// Causal attention through the backend's fused op, or `None` where it has none.
pub fn causal_attention<B: FusedOps>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, scale: f32) -> Option<Tensor<B, 4>> {
    let [q, k, v] = [q, k, v].map(|t| t.into_primitive().tensor());
    B::causal_attention(q, k, v, scale).map(|o| Tensor::from_primitive(TensorPrimitive::Float(o)))
}

/// Softmax over the last dimension of a tensor.
pub fn softmax_last<B: FusedOps, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::softmax_last_dim(x.into_primitive().tensor())))
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
}
