//! Operations that burn's autodiff would otherwise decompose into many small kernels.
//!
//! Autodiff implements softmax as max, subtract, exp, sum and divide, each a separate pass (and on
//! the CPU backend each single-threaded); the attention softmax is the largest tensor of a step.
//! [`FusedOps::softmax_last_dim`] runs the backend's own fused softmax forward (row-parallel on
//! flex) and a hand-written backward, `dx = p ⊙ (g − Σ g⊙p)`, with the saved output `p`.
//! [`FusedOps::self_attention`] is self-attention up to its output projection in one op with its
//! own backward: the Q, K and V projections, RoPE, and causal grouped-query attention. On the CPU
//! backend it runs `model::gemm`'s and `model::attention`'s kernels (only the lower triangle of
//! the scores is computed, no mask tensor exists, heads run in parallel, RoPE is applied in place)
//! and its backward adds the three projections' input gradients inside the products, where
//! autodiff would add them in two more single-threaded passes. [`FusedOps::swiglu_projection`]
//! does the same for SwiGLU's input side, `silu(x·W_gate) ⊙ (x·W_up)`. Other backends compose both
//! from matrix products, a mask and a softmax (see `transformer.rs`).
//! [`FusedOps::rms_norm`] and [`FusedOps::cross_entropy`] are one pass each way on the CPU backend
//! (`model::pointwise`'s kernels, rows in parallel); elsewhere they are composed.
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
use burn::tensor::backend::Backend;
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

    /// Whether this backend has its own kernels for the fused ops below (self-attention, linear
    /// layers, RMSNorm, SwiGLU, cross-entropy); where it does not, each returns `None` and the model
    /// composes the op from tensor ops.
    fn has_fused_kernels() -> bool {
        false
    }

    /// Self-attention up to its output projection, in one op: `Q = rope(x·Wq)`, `K = rope(x·Wk)`,
    /// `V = x·Wv`, then causal grouped-query attention (query head h reads key/value head
    /// h / (heads / kv_heads)) with scores scaled by `scale`. `x` is `[batch, seq, width]`, the
    /// weights `[width, heads·head_dim]`, `[width, kv_heads·head_dim]` (twice), `rope` the cos and
    /// sin tables of the queries and of the keys, `[seq, heads or kv_heads, head_dim]` (constants);
    /// the output is the context `[batch, seq, heads, head_dim]`.
    fn self_attention(
        x: FloatTensor<Self>,
        weights: [FloatTensor<Self>; 3],
        rope: [FloatTensor<Self>; 4],
        heads: usize,
        scale: f32,
    ) -> Option<FloatTensor<Self>> {
        Self::self_attention_saving(x, weights, rope, heads, scale).map(|(context, _)| context)
    }

    /// The same, with what the backward pass needs.
    fn self_attention_saving(
        _x: FloatTensor<Self>,
        _weights: [FloatTensor<Self>; 3],
        _rope: [FloatTensor<Self>; 4],
        _heads: usize,
        _scale: f32,
    ) -> Option<(FloatTensor<Self>, AttentionSaved<Self>)> {
        None
    }

    /// The gradients of [`FusedOps::self_attention`]'s x, Wq, Wk and Wv from the context's
    /// gradient; each only when `want` asks for it.
    fn self_attention_backward(_saved: AttentionSaved<Self>, _grad: FloatTensor<Self>, _want: [bool; 4]) -> Option<[Option<FloatTensor<Self>>; 4]> {
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

    /// SwiGLU's input side in one op: `silu(x·W_gate) ⊙ (x·W_up)`, `x` `[…, width]`, both weights
    /// `[width, ffn_width]`.
    fn swiglu_projection(x: FloatTensor<Self>, weights: [FloatTensor<Self>; 2]) -> Option<FloatTensor<Self>> {
        Self::swiglu_projection_saving(x, weights).map(|(h, _)| h)
    }

    /// The same, with what the backward pass needs.
    fn swiglu_projection_saving(_x: FloatTensor<Self>, _weights: [FloatTensor<Self>; 2]) -> Option<(FloatTensor<Self>, SwigluSaved<Self>)> {
        None
    }

    /// The gradients of [`FusedOps::swiglu_projection`]'s x, W_gate and W_up from the output's
    /// gradient; each only when `want` asks for it.
    fn swiglu_projection_backward(_saved: SwigluSaved<Self>, _grad: FloatTensor<Self>, _want: [bool; 3]) -> Option<[Option<FloatTensor<Self>>; 3]> {
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

/// What [`FusedOps::self_attention`]'s backward pass needs from its forward pass.
#[derive(Debug, Clone)]
pub struct AttentionSaved<B: Backend> {
    pub x: FloatTensor<B>,
    /// Wq, Wk, Wv.
    pub weights: [FloatTensor<B>; 3],
    /// cos and sin of the queries, then of the keys.
    pub rope: [FloatTensor<B>; 4],
    /// Q and K after the rotary embedding, and V.
    pub qkv: [FloatTensor<B>; 3],
    /// The attention weights (on the CPU backend: each head's lower-triangular blocks, packed).
    pub attention_weights: FloatTensor<B>,
    pub heads: usize,
    pub scale: f32,
}

/// What [`FusedOps::swiglu_projection`]'s backward pass needs from its forward pass.
#[derive(Debug, Clone)]
pub struct SwigluSaved<B: Backend> {
    pub x: FloatTensor<B>,
    /// W_gate, W_up.
    pub weights: [FloatTensor<B>; 2],
    /// `x·W_gate` and `x·W_up`.
    pub gate_up: [FloatTensor<B>; 2],
}

/// The CPU backend: `model::attention`'s, `model::gemm`'s and `model::pointwise`'s kernels on the tensors' f32 data.
impl FusedOps for burn::backend::Flex {
    fn has_fused_kernels() -> bool {
        true
    }

    fn self_attention(x: FlexTensor, weights: [FlexTensor; 3], rope: [FlexTensor; 4], heads: usize, scale: f32) -> Option<FlexTensor> {
        let (d, width) = self_attention_dims(&x, &weights, &rope, heads)?;
        let (x, weights, rope) = (contiguous(x), weights.map(contiguous), rope.map(contiguous));
        let [q, k, v] = rotated_projections(d, width, &x, &weights, &rope);
        Some(flex(attention::forward_context(d, &q, &k, &v, scale), [d.batch, d.seq, d.heads, d.head_dim]))
    }

    fn self_attention_saving(
        x: FlexTensor,
        weights: [FlexTensor; 3],
        rope: [FlexTensor; 4],
        heads: usize,
        scale: f32,
    ) -> Option<(FlexTensor, AttentionSaved<Self>)> {
        let (d, width) = self_attention_dims(&x, &weights, &rope, heads)?;
        let (x, weights, rope) = (contiguous(x), weights.map(contiguous), rope.map(contiguous));
        let [q, k, v] = rotated_projections(d, width, &x, &weights, &rope);
        let (context, p) = attention::forward(d, &q, &k, &v, scale);
        let kv_shape = [d.batch, d.seq, d.kv_heads, d.head_dim];
        let qkv = [flex(q, [d.batch, d.seq, d.heads, d.head_dim]), flex(k, kv_shape), flex(v, kv_shape)];
        let attention_weights = flex(p, [d.batch, d.heads, attention::weights_len(d.seq)]);
        let saved = AttentionSaved { x, weights, rope, qkv, attention_weights, heads, scale };
        Some((flex(context, [d.batch, d.seq, d.heads, d.head_dim]), saved))
    }

    fn self_attention_backward(s: AttentionSaved<Self>, grad: FlexTensor, want: [bool; 4]) -> Option<[Option<FlexTensor>; 4]> {
        let (d, _) = self_attention_dims(&s.x, &s.weights, &s.rope, s.heads)?;
        let [q, k, v] = &s.qkv;
        let (g, p) = (contiguous(grad), &s.attention_weights);
        let (mut dq, mut dk, dv) = attention::backward(d, f32s(q), f32s(k), f32s(v), f32s(p), f32s(&g), s.scale);
        // Back through the rotary embedding, in place.
        pointwise::rope_backward(&mut dq, f32s(&s.rope[0]), f32s(&s.rope[1]), d.head_dim);
        pointwise::rope_backward(&mut dk, f32s(&s.rope[2]), f32s(&s.rope[3]), d.head_dim);
        let (dx, [dwq, dwk, dwv]) = shared_input_backward(&s.x, &s.weights, [&dq, &dk, &dv], want[0], [want[1], want[2], want[3]]);
        Some([dx, dwq, dwk, dwv])
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

    fn swiglu_projection_saving(x: FlexTensor, weights: [FlexTensor; 2]) -> Option<(FlexTensor, SwigluSaved<Self>)> {
        let (k, n) = linear_dims(&x, &weights[0])?;
        (linear_dims(&x, &weights[1])? == (k, n)).then_some(())?;
        let mut shape = x.shape();
        let (x, weights) = (contiguous(x), weights.map(contiguous));
        let [gate, up] = [0, 1].map(|i| gemm::linear_forward(f32s(&x), f32s(&weights[i]), k, n));
        let h = pointwise::swiglu_forward(&gate, &up);
        let last = shape.num_dims() - 1;
        shape[last] = n;
        let gate_up = [flex(gate, shape.clone()), flex(up, shape.clone())];
        Some((flex(h, shape), SwigluSaved { x, weights, gate_up }))
    }

    fn swiglu_projection_backward(s: SwigluSaved<Self>, grad: FlexTensor, want: [bool; 3]) -> Option<[Option<FlexTensor>; 3]> {
        let [gate, up] = &s.gate_up;
        same_f32_shape(gate, &grad)?;
        let g = contiguous(grad);
        let (dgate, dup) = pointwise::swiglu_backward(f32s(gate), f32s(up), f32s(&g));
        let (dx, [dw_gate, dw_up]) = shared_input_backward(&s.x, &s.weights, [&dgate, &dup], want[0], [want[1], want[2]]);
        Some([dx, dw_gate, dw_up])
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

/// The sizes of a self-attention call on f32 tensors of consistent shapes (see
/// [`FusedOps::self_attention`]), with the model width.
fn self_attention_dims(x: &FlexTensor, weights: &[FlexTensor; 3], rope: &[FlexTensor; 4], heads: usize) -> Option<(attention::Dims, usize)> {
    let [wq, wk, wv] = weights;
    let (xs, qs, ks) = (x.shape(), wq.shape(), wk.shape());
    let f32_inputs = all_f32(&[x, wq, wk, wv]) && rope.iter().all(|t| all_f32(&[t]));
    if !f32_inputs || xs.num_dims() != 3 || qs.num_dims() != 2 || ks.num_dims() != 2 || ks != wv.shape() || heads == 0 {
        return None;
    }
    let (width, head_dim) = (xs[2], qs[1] / heads);
    let kv_heads = ks[1] / head_dim.max(1);
    let d = attention::Dims { batch: xs[0], seq: xs[1], heads, kv_heads, head_dim };
    let tables_fit = |t: &FlexTensor, heads: usize| t.shape().dims::<3>() == [d.seq, heads, head_dim];
    let consistent = qs[0] == width
        && ks[0] == width
        && head_dim > 0
        && head_dim % 2 == 0
        && qs[1] == heads * head_dim
        && ks[1] == kv_heads * head_dim
        && kv_heads > 0
        && heads.is_multiple_of(kv_heads)
        && rope[..2].iter().all(|t| t.shape().num_dims() == 3 && tables_fit(t, heads))
        && rope[2..].iter().all(|t| t.shape().num_dims() == 3 && tables_fit(t, kv_heads));
    consistent.then_some((d, width))
}

/// Q = rope(x·Wq), K = rope(x·Wk), V = x·Wv on contiguous tensors of the sizes
/// [`self_attention_dims`] checked.
fn rotated_projections(d: attention::Dims, width: usize, x: &FlexTensor, weights: &[FlexTensor; 3], rope: &[FlexTensor; 4]) -> [Vec<f32>; 3] {
    let [mut q, mut k, v] = [0, 1, 2].map(|i| gemm::linear_forward(f32s(x), f32s(&weights[i]), width, weights[i].shape()[1]));
    pointwise::rope_forward(&mut q, f32s(&rope[0]), f32s(&rope[1]), d.head_dim);
    pointwise::rope_forward(&mut k, f32s(&rope[2]), f32s(&rope[3]), d.head_dim);
    [q, k, v]
}

/// (dx, [dw₁, dw₂, …]) of linear layers `yᵢ = x·wᵢ` that share x, from the gradients of the yᵢ;
/// each only when asked for. dx is one buffer the products add into
/// (`gemm::linear_backward_x_sum`); the weight gradients are computed beside it.
fn shared_input_backward<const N: usize>(
    x: &FlexTensor,
    weights: &[FlexTensor; N],
    grads: [&[f32]; N],
    want_x: bool,
    want_weights: [bool; N],
) -> (Option<FlexTensor>, [Option<FlexTensor>; N]) {
    let k = x.shape()[x.shape().num_dims() - 1];
    rayon::join(
        || {
            want_x.then(|| {
                let parts: Vec<(&[f32], &[f32], usize)> = weights.iter().zip(grads).map(|(w, g)| (g, f32s(w), w.shape()[1])).collect();
                flex(gemm::linear_backward_x_sum(&parts, x.shape().num_elements() / k.max(1), k), x.shape())
            })
        },
        || std::array::from_fn(|i| want_weights[i].then(|| flex(gemm::linear_backward_w(f32s(x), grads[i], k, weights[i].shape()[1]), weights[i].shape()))),
    )
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

/// burn's CubeCL backend without fusion (`device::CudaUnfused`, named here by its burn type so
/// the model does not depend on the device module that chooses backends).
#[cfg(feature = "cuda")]
impl FusedOps for burn_cubecl::CubeBackend<burn::cubecl::cuda::CudaRuntime, f32, i32, u8> {}

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

    fn self_attention(
        x: FloatTensor<Self>,
        weights: [FloatTensor<Self>; 3],
        rope: [FloatTensor<Self>; 4],
        heads: usize,
        scale: f32,
    ) -> Option<FloatTensor<Self>> {
        #[derive(Debug)]
        struct SelfAttentionBackward;

        impl<B: FusedOps> Backward<B, 4> for SelfAttentionBackward {
            type State = AttentionSaved<B>;

            fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let want = ops.parents.each_ref().map(Option::is_some);
                let g = B::self_attention_backward(ops.state, grad, want).expect("the backend that ran the fused forward runs its backward");
                register_grads!(grads, ops.parents, g);
            }
        }

        if !B::has_fused_kernels() {
            return None;
        }
        let [wq, wk, wv] = weights;
        let parents = [x.node.clone(), wq.node.clone(), wk.node.clone(), wv.node.clone()];
        let (weights, rope) = ([wq.primitive, wk.primitive, wv.primitive], rope.map(|t| t.primitive));
        match SelfAttentionBackward.prepare::<C>(parents).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (context, saved) = B::self_attention_saving(x.primitive, weights, rope, heads, scale)?;
                Some(prep.finish(saved, context))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::self_attention(x.primitive, weights, rope, heads, scale)?)),
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

    fn swiglu_projection(x: FloatTensor<Self>, weights: [FloatTensor<Self>; 2]) -> Option<FloatTensor<Self>> {
        #[derive(Debug)]
        struct SwigluProjectionBackward;

        impl<B: FusedOps> Backward<B, 3> for SwigluProjectionBackward {
            type State = SwigluSaved<B>;

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let want = ops.parents.each_ref().map(Option::is_some);
                let g = B::swiglu_projection_backward(ops.state, grad, want).expect("the backend that ran the fused forward runs its backward");
                register_grads!(grads, ops.parents, g);
            }
        }

        if !B::has_fused_kernels() {
            return None;
        }
        let [gate, up] = weights;
        let parents = [x.node.clone(), gate.node.clone(), up.node.clone()];
        let weights = [gate.primitive, up.primitive];
        match SwigluProjectionBackward.prepare::<C>(parents).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (h, saved) = B::swiglu_projection_saving(x.primitive, weights)?;
                Some(prep.finish(saved, h))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::swiglu_projection(x.primitive, weights)?)),
        }
    }
}

/// A float tensor from its primitive.
fn float<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// Self-attention up to its output projection through the backend's fused op (see
/// [`FusedOps::self_attention`]), or `None` where it has none.
pub fn self_attention<B: FusedOps>(x: Tensor<B, 3>, weights: [Tensor<B, 2>; 3], rope: [Tensor<B, 3>; 4], heads: usize, scale: f32) -> Option<Tensor<B, 4>> {
    let weights = weights.map(|t| t.into_primitive().tensor());
    let rope = rope.map(|t| t.into_primitive().tensor());
    B::self_attention(x.into_primitive().tensor(), weights, rope, heads, scale).map(float)
}

/// `x · weight` (`weight` `[in, out]`) through the backend's fused op, or `None` where it has none.
pub fn linear<B: FusedOps, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 2>) -> Option<Tensor<B, D>> {
    let [x, w] = [x.into_primitive().tensor(), weight.into_primitive().tensor()];
    B::linear_layer(x, w).map(float)
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

/// `silu(x·W_gate) ⊙ (x·W_up)` through the backend's fused op, or `None` where it has none.
pub fn swiglu_projection<B: FusedOps, const D: usize>(x: Tensor<B, D>, weights: [Tensor<B, 2>; 2]) -> Option<Tensor<B, D>> {
    B::swiglu_projection(x.into_primitive().tensor(), weights.map(|t| t.into_primitive().tensor())).map(float)
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

#[cfg(test)]
mod tests {
    use super::*;
    type CpuBackend = burn::backend::Autodiff<burn::backend::Flex>;
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

    /// RoPE composed from burn's ops as the paper writes it: `x⊙cos + rotate_half(x)⊙sin`, the
    /// halves sliced and concatenated.
    fn composed_rope(x: Tensor<CpuBackend, 4>, cos: Tensor<CpuBackend, 3>, sin: Tensor<CpuBackend, 3>) -> Tensor<CpuBackend, 4> {
        let d = x.dims()[3];
        let (x1, x2) = (x.clone().narrow(3, 0, d / 2), x.clone().narrow(3, d / 2, d / 2));
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos.unsqueeze::<4>() + rotated * sin.unsqueeze::<4>()
    }

    /// The fused self-attention through autodiff equals its composition from burn's own ops (the
    /// three projections, RoPE with halves sliced and concatenated, scores, a −∞ mask above the
    /// diagonal, softmax, mixing), in value and in the gradients of x, Wq, Wk and Wv, on odd
    /// sequence lengths within one query block and across three, grouped heads and not, and
    /// tables narrowed to the sequence.
    #[test]
    fn fused_self_attention_matches_the_composition_in_value_and_gradient() {
        let device = Default::default();
        // One block of queries, several (with a short last one), and no grouping; odd widths.
        for (b, s, width, h, kv, d) in [(2, 37, 12, 4, 2, 8), (2, 131, 16, 2, 1, 6), (1, 5, 7, 3, 3, 2)] {
            let normal = Distribution::Normal(0.0, 1.0);
            let x = Tensor::<CpuBackend, 3>::random([b, s, width], normal, &device).require_grad();
            let [wq, wk, wv] =
                [h, kv, kv].map(|heads| Tensor::<CpuBackend, 2>::random([width, heads * d], Distribution::Normal(0.0, 0.4), &device).require_grad());
            let tables = |heads: usize| {
                let angles = Tensor::<CpuBackend, 3>::random([s + 2, heads, d], Distribution::Normal(0.0, 2.0), &device);
                (angles.clone().cos().narrow(0, 0, s), angles.sin().narrow(0, 0, s))
            };
            let ((cos_q, sin_q), (cos_k, sin_k)) = (tables(h), tables(kv));
            let probe = Tensor::<CpuBackend, 4>::random([b, s, h, d], normal, &device);
            let scale = 0.35;
            let rope = [cos_q.clone(), sin_q.clone(), cos_k.clone(), sin_k.clone()];
            let fused = self_attention(x.clone(), [wq.clone(), wk.clone(), wv.clone()], rope.clone(), h, scale).expect("the CPU backend fuses self-attention");
            // Without autodiff (evaluation) the op keeps no attention weights, and gives the same bits.
            let weights = [&wq, &wk, &wv].map(|w| w.clone().inner());
            let untracked = self_attention(x.clone().inner(), weights, rope.map(|t| t.inner()), h, scale).expect("the CPU backend fuses self-attention");
            assert_eq!(untracked.to_data(), fused.clone().inner().to_data());
            // Reference: keys and values repeated per query head, [b, h, s, d].
            let project = |w: &Tensor<CpuBackend, 2>, heads: usize| burn::tensor::module::linear(x.clone(), w.clone(), None).reshape([b, s, heads, d]);
            let (q, k, v) = (composed_rope(project(&wq, h), cos_q, sin_q), composed_rope(project(&wk, kv), cos_k, sin_k), project(&wv, kv));
            let repeat = |t: Tensor<CpuBackend, 4>| t.swap_dims(1, 2).unsqueeze_dim::<5>(2).repeat_dim(2, h / kv).reshape([b, h, s, d]);
            let mask: Vec<f32> = (0..s * s).map(|i| if i % s <= i / s { 0.0 } else { f32::NEG_INFINITY }).collect();
            let mask = Tensor::<CpuBackend, 2>::from_data(burn::tensor::TensorData::new(mask, [s, s]), &device).unsqueeze::<4>();
            let scores = q.swap_dims(1, 2).matmul(repeat(k).swap_dims(2, 3)) * scale as f64 + mask;
            let reference = softmax(scores, 3).matmul(repeat(v)).swap_dims(1, 2);
            let max_diff = |a: Tensor<CpuBackend, 4>, b: Tensor<CpuBackend, 4>| (a - b).abs().max().into_scalar();
            assert!(max_diff(fused.clone(), reference.clone()) < 1e-5, "{s} positions");
            let g_fused = (fused * probe.clone()).sum().backward();
            let g_ref = (reference * probe).sum().backward();
            // Relative to the gradient's largest entry: a weight's gradient sums b·s rows.
            let relative = |got: Tensor<burn::backend::Flex, 2>, want: Tensor<burn::backend::Flex, 2>| {
                let scale = want.clone().abs().max().into_scalar().max(1.0);
                (got - want).abs().max().into_scalar() / scale
            };
            let flat = |t: Tensor<burn::backend::Flex, 3>| t.reshape([b * s, width]);
            let dx = relative(flat(x.grad(&g_fused).unwrap()), flat(x.grad(&g_ref).unwrap()));
            assert!(dx < 1e-5, "{s} positions, dx: {dx}");
            for (name, w) in [("Wq", &wq), ("Wk", &wk), ("Wv", &wv)] {
                let diff = relative(w.grad(&g_fused).unwrap(), w.grad(&g_ref).unwrap());
                assert!(diff < 1e-5, "{s} positions, d{name}: {diff}");
            }
        }
    }

    /// The fused RMSNorm and SwiGLU projection through autodiff equal their composition from
    /// burn's ops (as the model writes them where nothing is fused), in value and in every
    /// gradient, on odd shapes.
    #[test]
    fn fused_norm_and_swiglu_match_the_composition_in_value_and_gradient() {
        let device = Default::default();
        let normal = Distribution::Normal(0.0, 1.5);
        for [b, s, d, f] in [[2, 13, 7, 11], [1, 3, 33, 5], [3, 65, 16, 40]] {
            let x = Tensor::<CpuBackend, 3>::random([b, s, d], normal, &device).require_grad();
            let w = Tensor::<CpuBackend, 1>::random([d], normal, &device).require_grad();
            let [w_gate, w_up] = [0; 2].map(|_| Tensor::<CpuBackend, 2>::random([d, f], Distribution::Normal(0.0, 0.5), &device).require_grad());
            let (probe_norm, probe_gate) =
                (Tensor::<CpuBackend, 3>::random([b, s, d], normal, &device), Tensor::<CpuBackend, 3>::random([b, s, f], normal, &device));
            let eps = 1e-5;
            let fused_norm = rms_norm(x.clone(), w.clone(), eps as f32).expect("the CPU backend fuses RMSNorm");
            let composed_norm = x.clone() * x.clone().square().mean_dim(2).add_scalar(eps).sqrt().recip() * w.clone().unsqueeze::<3>();
            let fused_gate = swiglu_projection(x.clone(), [w_gate.clone(), w_up.clone()]).expect("the CPU backend fuses SwiGLU");
            let linear = |w: &Tensor<CpuBackend, 2>| burn::tensor::module::linear(x.clone(), w.clone(), None);
            let composed_gate = burn::tensor::activation::silu(linear(&w_gate)) * linear(&w_up);
            let max_diff = |a: Tensor<CpuBackend, 3>, b: Tensor<CpuBackend, 3>| (a - b).abs().max().into_scalar();
            assert!(max_diff(fused_norm.clone(), composed_norm.clone()) < 1e-5);
            assert!(max_diff(fused_gate.clone(), composed_gate.clone()) < 1e-5);
            let loss = |norm: Tensor<CpuBackend, 3>, gate: Tensor<CpuBackend, 3>| (norm * probe_norm.clone()).sum() + (gate * probe_gate.clone()).sum();
            let g_fused = loss(fused_norm, fused_gate).backward();
            let g_composed = loss(composed_norm, composed_gate).backward();
            // Relative to the gradient's largest entry: a weight's gradient sums b·s rows.
            let relative = |got: Tensor<burn::backend::Flex, 2>, want: Tensor<burn::backend::Flex, 2>| {
                let scale = want.clone().abs().max().into_scalar().max(1.0);
                (got - want).abs().max().into_scalar() / scale
            };
            let flat = |t: Tensor<burn::backend::Flex, 3>| t.reshape([b * s, d]);
            for (name, diff) in [
                ("x", relative(flat(x.grad(&g_fused).unwrap()), flat(x.grad(&g_composed).unwrap()))),
                ("w", relative(w.grad(&g_fused).unwrap().unsqueeze(), w.grad(&g_composed).unwrap().unsqueeze())),
                ("W_gate", relative(w_gate.grad(&g_fused).unwrap(), w_gate.grad(&g_composed).unwrap())),
                ("W_up", relative(w_up.grad(&g_fused).unwrap(), w_up.grad(&g_composed).unwrap())),
            ] {
                assert!(diff < 1e-5, "[{b}, {s}, {d}, {f}] d{name}: {diff}");
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
