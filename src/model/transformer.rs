//! The MiniCPM proxy model: a decoder-only transformer in µP, read top to bottom.
//!
//! ```text
//! tokens ─▶ embedding × scale_emb ─▶ [ block ]×depth ─▶ RMSNorm ─▶ (÷ m) · Eᵀ ─▶ logits
//! block:  x += (scale_depth/√depth) · Attention(RMSNorm(x))      (RoPE, grouped-query, causal)
//!         x += (scale_depth/√depth) · SwiGLU(RMSNorm(x))         (W_down · (silu(W_gate x) ⊙ W_up x))
//! ```
//!
//! The token embedding E is tied with the output layer; there are no biases. Every weight is
//! stored as `[fan_in, fan_out]` and applied as `x · W`. The µP multipliers, init and learning-rate
//! rules come from [`super::mup`]; the exact counts from [`super::shape`].

use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor, TensorData};

use super::fused::{self, softmax_last, FusedOps};
use super::mup::{MupConfig, ParamGroup};
use super::precision::Precision;
use super::shape::ModelShape;
use crate::rng::Rng;

/// RMSNorm epsilon (MiniCPM: 1e-5).
pub const RMS_NORM_EPS: f64 = 1e-5;
/// Rotary embedding base (MiniCPM: 10000).
pub const ROPE_THETA: f64 = 10_000.0;

/// Root-mean-square layer norm with a learned gain, no bias.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
}

impl<B: FusedOps> RmsNorm<B> {
    /// `x / √(mean(x²) + ε) ⊙ weight` over the last dimension (one fused op where the backend has it).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if let Some(y) = fused::rms_norm(x.clone(), self.weight.val(), RMS_NORM_EPS as f32) {
            return y;
        }
        let inv_rms = x.clone().square().mean_dim(2).add_scalar(RMS_NORM_EPS).sqrt().recip();
        x * inv_rms * self.weight.val().unsqueeze::<3>()
    }
}

/// Grouped-query causal self-attention with rotary position embedding.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub wq: Param<Tensor<B, 2>>,
    pub wk: Param<Tensor<B, 2>>,
    pub wv: Param<Tensor<B, 2>>,
    pub wo: Param<Tensor<B, 2>>,
    pub heads: usize,
    pub kv_heads: usize,
    #[module(skip)]
    pub precision: Precision,
}

impl<B: FusedOps> Attention<B> {
    pub fn forward(&self, x: Tensor<B, 3>, rope: &Rope<B>, mask: &CausalMask<B>) -> Tensor<B, 3> {
        let [batch, seq, width] = x.dims();
        let head_dim = width / self.heads;
        let groups = self.heads / self.kv_heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let p = self.precision;

        // The backend's fused self-attention where it has one, in f32 (the CPU backend: the three
        // projections, RoPE and causal attention in one op whose backward sums x's gradient inside
        // the products; the masked half is never computed).
        let weights = || [self.wq.val(), self.wk.val(), self.wv.val()];
        if let Some(context) = p.is_fp32().then(|| fused::self_attention(x.clone(), weights(), rope.tables(seq), self.heads, scale as f32)).flatten() {
            return p.linear(context.reshape([batch, seq, width]), self.wo.val());
        }

        let q = rope.apply(p.linear(x.clone(), self.wq.val()).reshape([batch, seq, self.heads, head_dim]));
        let k = rope.apply(p.linear(x.clone(), self.wk.val()).reshape([batch, seq, self.kv_heads, head_dim]));
        let v = p.linear(x, self.wv.val()).reshape([batch, seq, self.kv_heads, head_dim]);

        // Grouped-query attention without copying keys and values: the `groups` query heads that
        // share a key/value head are stacked along the query axis, [b, kv, groups·seq, d], and the
        // causal mask is tiled to match.
        let q = q.swap_dims(1, 2).reshape([batch, self.kv_heads, groups * seq, head_dim]);
        let k = k.swap_dims(1, 2); // [b, kv, seq, d]
        let v = v.swap_dims(1, 2);
        let scores = p.matmul(q, k.swap_dims(2, 3)) * scale;
        let scores = mask.apply(scores, groups); // −∞ above the diagonal
        let context = p.matmul(softmax_last(scores), v); // [b, kv, groups·seq, d]
        let context = context.reshape([batch, self.heads, seq, head_dim]).swap_dims(1, 2).reshape([batch, seq, width]);
        p.linear(context, self.wo.val())
    }
}

/// Additive causal masks (0 on and below the diagonal, −∞ above), `[1, 1, groups·seq, seq]`,
/// built once for the full sequence length and each query-group count in use.
#[derive(Module, Debug)]
pub struct CausalMask<B: Backend> {
    /// The mask for `groups` = 1.
    pub single: Tensor<B, 4>,
    /// The mask for the model's `groups` (heads / kv_heads), when that is not 1.
    pub grouped: Tensor<B, 4>,
    pub groups: usize,
    pub max_seq_len: usize,
}

impl<B: Backend> CausalMask<B> {
    pub fn new(groups: usize, max_seq_len: usize, device: &B::Device) -> Self {
        Self { single: Self::build(1, max_seq_len, device), grouped: Self::build(groups, max_seq_len, device), groups, max_seq_len }
    }

    fn build(groups: usize, seq: usize, device: &B::Device) -> Tensor<B, 4> {
        let mut values = Vec::with_capacity(groups * seq * seq);
        for _ in 0..groups {
            for query in 0..seq {
                values.extend((0..seq).map(|key| if key <= query { 0.0f32 } else { f32::NEG_INFINITY }));
            }
        }
        Tensor::<B, 2>::from_data(TensorData::new(values, [groups * seq, seq]), device).unsqueeze::<4>()
    }

    /// `scores + mask` for scores `[b, kv, groups·seq, seq]`.
    fn apply(&self, scores: Tensor<B, 4>, groups: usize) -> Tensor<B, 4> {
        let [batch, kv, rows, seq] = scores.dims();
        let mask = match (seq == self.max_seq_len, groups) {
            (true, 1) => self.single.clone(),
            (true, g) if g == self.groups => self.grouped.clone(),
            _ => Self::build(groups, seq, &scores.device()),
        };
        // Added as one shared row per (batch, kv head): the layout the CPU backend broadcasts fastest.
        (scores.reshape([batch * kv, rows * seq]) + mask.reshape([1, rows * seq])).reshape([batch, kv, rows, seq])
    }
}

/// SwiGLU feed-forward: W_down · (silu(W_gate · x) ⊙ (W_up · x)).
#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    pub w_gate: Param<Tensor<B, 2>>,
    pub w_up: Param<Tensor<B, 2>>,
    pub w_down: Param<Tensor<B, 2>>,
    #[module(skip)]
    pub precision: Precision,
}

impl<B: FusedOps> FeedForward<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let p = self.precision;
        // One fused op where the backend has one, in f32 (the CPU backend: both projections and the
        // gating, x's gradient summed inside the products).
        let fused = p.is_fp32().then(|| fused::swiglu_projection(x.clone(), [self.w_gate.val(), self.w_up.val()])).flatten();
        let gated = fused.unwrap_or_else(|| silu(p.linear(x.clone(), self.w_gate.val())) * p.linear(x, self.w_up.val()));
        p.linear(gated, self.w_down.val())
    }
}

/// One pre-norm transformer block.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub attention_norm: RmsNorm<B>,
    pub attention: Attention<B>,
    pub ffn_norm: RmsNorm<B>,
    pub ffn: FeedForward<B>,
}

impl<B: FusedOps> Block<B> {
    /// `x + r·Attention(RMSNorm(x))`, then `+ r·SwiGLU(RMSNorm(x))`, with r the µP residual
    /// multiplier. `record` sees each branch's output before it is added (the coordinate check).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        mask: &CausalMask<B>,
        residual_multiplier: f64,
        record: &mut dyn FnMut(&str, &Tensor<B, 3>),
    ) -> Tensor<B, 3> {
        let attention = self.attention.forward(self.attention_norm.forward(x.clone()), rope, mask);
        record("attention", &attention);
        let x = residual(x, attention, residual_multiplier);
        let ffn = self.ffn.forward(self.ffn_norm.forward(x.clone()));
        record("ffn", &ffn);
        residual(x, ffn, residual_multiplier)
    }
}

/// `x + r·branch` (one fused op where the backend has it).
fn residual<B: FusedOps>(x: Tensor<B, 3>, branch: Tensor<B, 3>, r: f64) -> Tensor<B, 3> {
    match fused::residual(x.clone(), branch.clone(), r as f32) {
        Some(y) => y,
        None => x + branch * r,
    }
}

/// Rotary position embedding (the "rotate half" layout of Llama and MiniCPM):
/// `rope(x) = x ⊙ cos + rotate_half(x) ⊙ sin`, with `rotate_half(x₁, x₂) = (−x₂, x₁)` written as a
/// product with a fixed ±1 permutation matrix, so no slicing or concatenation is needed. The
/// tables are stored already repeated over the heads, `[max_seq_len, heads, head_dim]`, so the
/// products are plain row-broadcasts over the batch.
#[derive(Module, Debug)]
pub struct Rope<B: Backend> {
    /// cos(pos · θ_i) for the query heads.
    pub cos_q: Tensor<B, 3>,
    pub sin_q: Tensor<B, 3>,
    /// The same for the key heads.
    pub cos_k: Tensor<B, 3>,
    pub sin_k: Tensor<B, 3>,
    /// `rotate_half` as a matrix, `[head_dim, head_dim]`.
    pub rotate_half: Tensor<B, 2>,
}

impl<B: Backend> Rope<B> {
    pub fn new(head_dim: usize, heads: usize, kv_heads: usize, max_seq_len: usize, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let angle = |pos: usize, i: usize| pos as f64 * ROPE_THETA.powf(-(((2 * (i % half)) as f64) / head_dim as f64));
        let table = |heads: usize, f: fn(f64) -> f64| {
            let mut v = Vec::with_capacity(max_seq_len * heads * head_dim);
            for pos in 0..max_seq_len {
                for _ in 0..heads {
                    v.extend((0..head_dim).map(|i| f(angle(pos, i)) as f32));
                }
            }
            Tensor::<B, 3>::from_data(TensorData::new(v, [max_seq_len, heads, head_dim]), device)
        };
        let mut rotate = vec![0.0f32; head_dim * head_dim];
        for i in 0..half {
            rotate[(i + half) * head_dim + i] = -1.0; // output i takes −x_{i+half}
            rotate[i * head_dim + i + half] = 1.0; // output i+half takes x_i
        }
        Self {
            cos_q: table(heads, f64::cos),
            sin_q: table(heads, f64::sin),
            cos_k: table(kv_heads, f64::cos),
            sin_k: table(kv_heads, f64::sin),
            rotate_half: Tensor::from_data(TensorData::new(rotate, [head_dim, head_dim]), device),
        }
    }
}

impl<B: Backend> Rope<B> {
    /// The tables for `seq` positions: cos and sin of the query heads, then of the key heads.
    pub fn tables(&self, seq: usize) -> [Tensor<B, 3>; 4] {
        [&self.cos_q, &self.sin_q, &self.cos_k, &self.sin_k].map(|t| t.clone().narrow(0, 0, seq))
    }

    /// Rotate `[batch, seq, heads, head_dim]` by position (heads: the query or the key head count),
    /// composed from tensor ops (the CPU backend rotates inside its fused self-attention).
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, seq, heads, head_dim] = x.dims();
        let (cos, sin) = if heads == self.cos_q.dims()[1] { (&self.cos_q, &self.sin_q) } else { (&self.cos_k, &self.sin_k) };
        let row = seq * heads * head_dim;
        let cos = cos.clone().narrow(0, 0, seq).reshape([1, row]);
        let sin = sin.clone().narrow(0, 0, seq).reshape([1, row]);
        let rotated = x.clone().reshape([batch * seq * heads, head_dim]).matmul(self.rotate_half.clone()).reshape([batch, row]);
        (x.reshape([batch, row]) * cos + rotated * sin).reshape([batch, seq, heads, head_dim])
    }
}

/// The whole decoder.
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// Token embedding `[vocab, width]`, tied with the LM head.
    pub embedding: Param<Tensor<B, 2>>,
    pub blocks: Vec<Block<B>>,
    pub final_norm: RmsNorm<B>,
    pub rope: Rope<B>,
    pub causal_mask: CausalMask<B>,
    /// µP multiplier on the embedding output (scale_emb; 1 under SP).
    pub embedding_multiplier: f64,
    /// µP multiplier on each residual branch (scale_depth/√depth; 1 under SP).
    pub residual_multiplier: f64,
    /// µP multiplier on the logits (1/m; 1 under SP).
    pub logit_multiplier: f64,
    /// Longest sequence the rotary tables cover.
    pub max_seq_len: usize,
    /// The arithmetic of the matrix products (`[training] precision`).
    #[module(skip)]
    pub precision: Precision,
}

/// A named activation recorded during a forward pass (for the coordinate check).
pub type Trace<B> = Vec<(String, Tensor<B, 3>)>;

/// Where a parameter sits and which µP rules it follows.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    pub id: ParamId,
    pub name: String,
    pub group: ParamGroup,
    pub shape: Vec<usize>,
}

impl<B: Backend> Transformer<B> {
    /// Build and initialize the model. The weights are a pure function of (shape, µP config,
    /// seed): each tensor draws from its own stream, so the init does not depend on the backend,
    /// the device or the order of construction.
    pub fn new(shape: &ModelShape, mup: &MupConfig, max_seq_len: usize, seed: u64, device: &B::Device) -> Self {
        let width = shape.width;
        let mut next_index = 0u64;
        let mut matrix = |rows: usize, cols: usize, group: ParamGroup| {
            let index = next_index;
            next_index += 1;
            let std = mup.init_std(group, width);
            let values = Rng::derive(seed, &[0x1A17, index]).normal_vec(rows * cols, std);
            let tensor = Tensor::<B, 2>::from_data(TensorData::new(values, [rows, cols]), device);
            Param::initialized(ParamId::from(index), tensor.require_grad())
        };
        let embedding = matrix(shape.vocab, width, ParamGroup::Embedding);
        let mut blocks = Vec::with_capacity(shape.depth);
        for _ in 0..shape.depth {
            let attention = Attention {
                wq: matrix(width, width, ParamGroup::HiddenMatrix),
                wk: matrix(width, shape.kv_width(), ParamGroup::HiddenMatrix),
                wv: matrix(width, shape.kv_width(), ParamGroup::HiddenMatrix),
                wo: matrix(width, width, ParamGroup::HiddenMatrix),
                heads: shape.heads,
                kv_heads: shape.kv_heads,
                precision: Precision::Fp32,
            };
            let ffn = FeedForward {
                w_gate: matrix(width, shape.ffn_width, ParamGroup::HiddenMatrix),
                w_up: matrix(width, shape.ffn_width, ParamGroup::HiddenMatrix),
                w_down: matrix(shape.ffn_width, width, ParamGroup::HiddenMatrix),
                precision: Precision::Fp32,
            };
            blocks.push((attention, ffn));
        }
        // Norm weights take the ids after every matrix (1 + 7·depth of them), so matrix ids never
        // depend on how many norms there are.
        let mut norm_index = next_index;
        let mut norm = || {
            let weight = Param::initialized(ParamId::from(norm_index), Tensor::ones([width], device).require_grad());
            norm_index += 1;
            RmsNorm { weight }
        };
        let blocks = blocks.into_iter().map(|(attention, ffn)| Block { attention_norm: norm(), attention, ffn_norm: norm(), ffn }).collect();
        let final_norm = norm();
        Self {
            embedding,
            blocks,
            final_norm,
            rope: Rope::new(shape.head_dim(), shape.heads, shape.kv_heads, max_seq_len, device),
            causal_mask: CausalMask::new(shape.heads / shape.kv_heads, max_seq_len, device),
            embedding_multiplier: mup.embedding_multiplier(),
            residual_multiplier: mup.residual_multiplier(shape.depth),
            logit_multiplier: mup.logit_multiplier(width),
            max_seq_len,
            precision: Precision::Fp32,
        }
    }

    /// The same model computing its matrix products at `precision` (see [`Precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        for block in &mut self.blocks {
            block.attention.precision = precision;
            block.ffn.precision = precision;
        }
        self
    }
}

impl<B: FusedOps> Transformer<B> {
    /// Final hidden states `[batch, seq, width]` (after the last norm). When `trace` is given,
    /// every layer output is pushed into it under a stable name.
    pub fn hidden(&self, tokens: Tensor<B, 2, Int>, mut trace: Option<&mut Trace<B>>) -> Tensor<B, 3> {
        // Names are built only when tracing: the training step records nothing and allocates nothing.
        let mut record = |name: &dyn Fn() -> String, t: &Tensor<B, 3>| {
            if let Some(trace) = trace.as_deref_mut() {
                trace.push((name(), t.clone()));
            }
        };
        let mut x = embedding(self.embedding.val(), tokens) * self.embedding_multiplier;
        record(&|| "embedding".into(), &x);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, &self.rope, &self.causal_mask, self.residual_multiplier, &mut |branch, t| record(&|| format!("block{i}.{branch}"), t));
        }
        record(&|| "residual".into(), &x);
        let h = self.final_norm.forward(x);
        record(&|| "final_norm".into(), &h);
        h
    }

    /// Logits `[batch, seq, vocab]`: the tied embedding applied to the µP-scaled hidden states.
    pub fn logits(&self, tokens: Tensor<B, 2, Int>, mut trace: Option<&mut Trace<B>>) -> Tensor<B, 3> {
        let h = self.hidden(tokens, trace.as_deref_mut());
        let logits = self.precision.linear(h * self.logit_multiplier, self.embedding.val().transpose());
        if let Some(trace) = trace {
            trace.push(("logits".into(), logits.clone()));
        }
        logits
    }

    /// Mean next-token cross-entropy in nats: `inputs` and `targets` are `[batch, seq]`.
    pub fn loss(&self, inputs: Tensor<B, 2, Int>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        cross_entropy(self.logits(inputs, None), targets)
    }
}

impl<B: Backend> Transformer<B> {
    /// Every parameter with its name and µP group, in a fixed order (for the optimizer).
    pub fn param_infos(&self) -> Vec<ParamInfo> {
        let info = |name: String, group, p: &Param<Tensor<B, 2>>| ParamInfo { id: p.id, name, group, shape: p.val().dims().to_vec() };
        let norm = |name: String, n: &RmsNorm<B>| ParamInfo { id: n.weight.id, name, group: ParamGroup::Norm, shape: n.weight.val().dims().to_vec() };
        let mut out = vec![info("embedding".into(), ParamGroup::Embedding, &self.embedding)];
        for (i, b) in self.blocks.iter().enumerate() {
            out.push(norm(format!("block{i}.attention_norm"), &b.attention_norm));
            for (name, p) in [("wq", &b.attention.wq), ("wk", &b.attention.wk), ("wv", &b.attention.wv), ("wo", &b.attention.wo)] {
                out.push(info(format!("block{i}.attention.{name}"), ParamGroup::HiddenMatrix, p));
            }
            out.push(norm(format!("block{i}.ffn_norm"), &b.ffn_norm));
            for (name, p) in [("w_gate", &b.ffn.w_gate), ("w_up", &b.ffn.w_up), ("w_down", &b.ffn.w_down)] {
                out.push(info(format!("block{i}.ffn.{name}"), ParamGroup::HiddenMatrix, p));
            }
        }
        out.push(norm("final_norm".into(), &self.final_norm));
        out
    }
}

/// Mean cross-entropy in nats of `logits [batch, seq, vocab]` against `targets [batch, seq]`.
pub fn cross_entropy<B: FusedOps>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    if let Some(loss) = fused::cross_entropy(logits.clone(), targets.clone()) {
        return loss;
    }
    let log_probs = log_softmax(logits, 2);
    let picked = log_probs.gather(2, targets.unsqueeze_dim::<3>(2));
    picked.neg().mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mup::Parameterization;
    use burn::backend::Flex;
    use burn::tensor::module::linear;

    fn small_shapes() -> Vec<ModelShape> {
        vec![
            ModelShape { width: 64, depth: 2, heads: 4, kv_heads: 4, ffn_width: 160, vocab: 97 },
            ModelShape { width: 96, depth: 3, heads: 6, kv_heads: 2, ffn_width: 240, vocab: 50 },
            ModelShape { width: 128, depth: 1, heads: 8, kv_heads: 1, ffn_width: 200, vocab: 256 },
        ]
    }

    #[test]
    fn shape_formula_equals_what_burn_counts() {
        for shape in small_shapes() {
            let model = Transformer::<Flex>::new(&shape, &MupConfig::default(), 16, 0, &Default::default());
            assert_eq!(model.num_params() as u64, shape.total_params(), "{shape:?}");
            let infos = model.param_infos();
            let counted = |g: ParamGroup| infos.iter().filter(|p| p.group == g).map(|p| p.shape.iter().product::<usize>() as u64).sum::<u64>();
            assert_eq!(counted(ParamGroup::HiddenMatrix) + counted(ParamGroup::Norm), shape.non_embedding_params(), "{shape:?}");
            assert_eq!(counted(ParamGroup::Embedding), shape.embedding_params());
            assert_eq!(infos.iter().filter(|p| p.group == ParamGroup::HiddenMatrix).count(), 7 * shape.depth);
            // Every parameter is listed once.
            let mut ids: Vec<_> = infos.iter().map(|p| p.id).collect();
            ids.sort_by_key(|id| id.val());
            ids.dedup();
            assert_eq!(ids.len(), infos.len());
        }
    }

    #[test]
    fn init_follows_the_mup_rules_and_the_seed() {
        let shape = ModelShape { width: 256, depth: 1, heads: 4, kv_heads: 4, ffn_width: 640, vocab: 64 };
        let mup = MupConfig { base_width: 64, ..MupConfig::default() }; // m = 4
        let device = Default::default();
        let model = Transformer::<Flex>::new(&shape, &mup, 8, 1, &device);
        let std_of = |t: Tensor<Flex, 2>| t.square().mean().into_scalar().sqrt() as f64;
        let hidden = std_of(model.blocks[0].attention.wq.val());
        let emb = std_of(model.embedding.val());
        assert!((hidden - 0.1 / 2.0).abs() < 0.002, "hidden std {hidden}");
        assert!((emb - 0.1).abs() < 0.003, "embedding std {emb}");
        let again = Transformer::<Flex>::new(&shape, &mup, 8, 1, &device);
        let other = Transformer::<Flex>::new(&shape, &mup, 8, 2, &device);
        let data = |m: &Transformer<Flex>| m.blocks[0].ffn.w_up.val().into_data().to_vec::<f32>().unwrap();
        assert_eq!(data(&model), data(&again));
        assert_ne!(data(&model), data(&other));
        let sp = MupConfig { parameterization: Parameterization::Sp, ..mup };
        let sp_model = Transformer::<Flex>::new(&shape, &sp, 8, 1, &device);
        assert!((std_of(sp_model.blocks[0].attention.wq.val()) - 0.1).abs() < 0.003);
    }

    #[test]
    fn attention_is_causal() {
        // Changing a later token must not change earlier logits.
        let shape = ModelShape { width: 64, depth: 2, heads: 4, kv_heads: 2, ffn_width: 160, vocab: 32 };
        let device = Default::default();
        let model = Transformer::<Flex>::new(&shape, &MupConfig::default(), 8, 3, &device);
        let a = Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4, 5, 6, 7, 8], [1, 8]), &device);
        let b = Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4, 5, 6, 7, 31], [1, 8]), &device);
        let la = model.logits(a, None).narrow(1, 0, 7).into_data().to_vec::<f32>().unwrap();
        let lb = model.logits(b, None).narrow(1, 0, 7).into_data().to_vec::<f32>().unwrap();
        assert_eq!(la, lb);
    }

    fn random<const D: usize>(dims: [usize; D], seed: u64) -> Tensor<Flex, D> {
        let n = dims.iter().product();
        Tensor::from_data(TensorData::new(Rng::new(seed).normal_vec(n, 1.0), dims), &Default::default())
    }

    fn max_abs_diff<const D: usize>(a: Tensor<Flex, D>, b: Tensor<Flex, D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// RoPE the way Llama's reference code writes it: slice each head in halves, concatenate
    /// (−x₂, x₁), and combine with cos and sin computed here in f64.
    fn sliced_rope(x: Tensor<Flex, 4>) -> Tensor<Flex, 4> {
        let [batch, seq, heads, head_dim] = x.dims();
        let half = head_dim / 2;
        let table = |f: fn(f64) -> f64| {
            let mut v = Vec::new();
            for pos in 0..seq {
                for _ in 0..heads {
                    v.extend((0..head_dim).map(|i| f(pos as f64 / ROPE_THETA.powf((2 * (i % half)) as f64 / head_dim as f64)) as f32));
                }
            }
            Tensor::<Flex, 3>::from_data(TensorData::new(v, [seq, heads, head_dim]), &Default::default()).unsqueeze::<4>().repeat_dim(0, batch)
        };
        let rotated = Tensor::cat(vec![x.clone().narrow(3, half, half).neg(), x.clone().narrow(3, 0, half)], 3);
        x * table(f64::cos) + rotated * table(f64::sin)
    }

    #[test]
    fn rope_as_a_matrix_product_equals_the_sliced_rotate_half() {
        for (heads, head_dim) in [(4, 16), (2, 32), (3, 8)] {
            let rope = Rope::<Flex>::new(head_dim, heads, 1, 24, &Default::default());
            let x = random([2, 24, heads, head_dim], heads as u64);
            let diff = max_abs_diff(rope.apply(x.clone()), sliced_rope(x.clone()));
            assert!(diff < 1e-5, "heads {heads}, head dim {head_dim}: {diff}");
            // Shorter sequences use the first rows of the tables.
            let short = x.narrow(1, 0, 5);
            assert!(max_abs_diff(rope.apply(short.clone()), sliced_rope(short)) < 1e-5);
        }
    }

    /// Grouped-query attention the plain way: every key/value head repeated for the query heads
    /// that share it (Hugging Face's `repeat_kv`: query head h reads key/value head h / groups),
    /// then one causal softmax attention per head.
    fn repeat_kv_attention(a: &Attention<Flex>, x: Tensor<Flex, 3>, rope: &Rope<Flex>) -> Tensor<Flex, 3> {
        let [batch, seq, width] = x.dims();
        let head_dim = width / a.heads;
        let groups = a.heads / a.kv_heads;
        let q = rope.apply(linear(x.clone(), a.wq.val(), None).reshape([batch, seq, a.heads, head_dim]));
        let k = rope.apply(linear(x.clone(), a.wk.val(), None).reshape([batch, seq, a.kv_heads, head_dim]));
        let v = linear(x, a.wv.val(), None).reshape([batch, seq, a.kv_heads, head_dim]);
        let mask: Vec<f32> = (0..seq * seq).map(|i| if i % seq <= i / seq { 0.0 } else { f32::NEG_INFINITY }).collect();
        let mask = Tensor::<Flex, 2>::from_data(TensorData::new(mask, [seq, seq]), &Default::default()).unsqueeze::<3>();
        let head = |t: &Tensor<Flex, 4>, i: usize| t.clone().narrow(2, i, 1).reshape([batch, seq, head_dim]);
        let outputs = (0..a.heads)
            .map(|h| {
                let scores = head(&q, h).matmul(head(&k, h / groups).swap_dims(1, 2)) / (head_dim as f64).sqrt() + mask.clone();
                burn::tensor::activation::softmax(scores, 2).matmul(head(&v, h / groups))
            })
            .collect();
        linear(Tensor::cat(outputs, 2), a.wo.val(), None)
    }

    #[test]
    fn stacked_grouped_query_attention_equals_repeated_keys_and_values() {
        for (heads, kv_heads) in [(4, 4), (4, 2), (6, 2), (8, 1)] {
            let shape = ModelShape { width: 16 * heads, depth: 1, heads, kv_heads, ffn_width: 40 * heads, vocab: 32 };
            let device = Default::default();
            let model = Transformer::<Flex>::new(&shape, &MupConfig::default(), 12, heads as u64, &device);
            let x = random([2, 12, shape.width], 7);
            let stacked = model.blocks[0].attention.forward(x.clone(), &model.rope, &model.causal_mask);
            let plain = repeat_kv_attention(&model.blocks[0].attention, x.clone(), &model.rope);
            let diff = max_abs_diff(stacked, plain);
            assert!(diff < 1e-5, "heads {heads}, kv heads {kv_heads}: {diff}");
            // A sequence shorter than the mask tables is masked the same way.
            let short = x.narrow(1, 0, 5);
            let diff = max_abs_diff(
                model.blocks[0].attention.forward(short.clone(), &model.rope, &model.causal_mask),
                repeat_kv_attention(&model.blocks[0].attention, short, &model.rope),
            );
            assert!(diff < 1e-5, "heads {heads}, kv heads {kv_heads}, short: {diff}");
        }
    }
}
