//! Operations that burn's autodiff would otherwise decompose into many small kernels.
//!
//! Autodiff implements softmax as max, subtract, exp, sum and divide, each a separate pass (and on
//! the CPU backend each single-threaded); the attention softmax is the largest tensor of a step.
//! [`FusedOps::softmax_last_dim`] runs the backend's own fused softmax forward (row-parallel on
//! flex) and a hand-written backward, `dx = p ⊙ (g − Σ g⊙p)`, with the saved output `p`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorMetadata, TensorPrimitive};

/// A backend with windtunnel's fused operations. Every backend has them (the defaults use the
/// backend's own kernels); autodiff overrides them with hand-written backward passes.
pub trait FusedOps: Backend {
    /// Softmax over the last dimension.
    fn softmax_last_dim(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let last = x.shape().num_dims() - 1;
        Self::softmax(x, last)
    }
}

impl FusedOps for burn::backend::Flex {}

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
}
