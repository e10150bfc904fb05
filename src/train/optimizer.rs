//! AdamW with µP per-group learning rates and global-norm gradient clipping.
//!
//! For each parameter p with gradient g (after clipping), at step t (1-based):
//!
//! ```text
//! m ← β₁ m + (1 − β₁) g            v ← β₂ v + (1 − β₂) g²
//! m̂ = m / (1 − β₁ᵗ)                v̂ = v / (1 − β₂ᵗ)
//! p ← p · (1 − lr_p λ) − lr_p · m̂ / (√v̂ + ε)   (decoupled weight decay, Loshchilov & Hutter; PyTorch order)
//! ```
//!
//! `lr_p = lr(t) × multiplier(group)`: hidden matrices `lr/m` under µP, the rest `lr`
//! ([`crate::model::mup::MupConfig::lr_multiplier`]). Weight decay applies to 2-D tensors (the
//! matrices and the embedding), never to norm gains. Clipping rescales all gradients by
//! `min(1, max_norm / ‖g‖₂)` with ‖g‖₂ over every parameter together.
//!
//! A step reads nothing back from a GPU: ‖g‖₂² and the clipping factor are tensors on it, so
//! a GPU runs the update straight after the backward pass, and the trainer reads ‖g‖₂ with the
//! step's loss in one transfer once the whole step is queued ([`read_to_host`]).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, FloatDType, Tensor, TensorCreationOptions, TensorData, TensorPrimitive};
use serde::{Deserialize, Serialize};

use crate::model::fused::FusedOps;
use crate::model::mup::{MupConfig, ParamGroup};
use crate::model::pointwise::AdamWStep;
use crate::model::transformer::Transformer;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip; 0 turns clipping off.
    pub grad_clip: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, grad_clip: 1.0 }
    }
}

/// First and second moments of one parameter, flattened.
#[derive(Debug, Clone)]
pub struct Moments<B: Backend> {
    pub m: Tensor<B, 1>,
    pub v: Tensor<B, 1>,
}

/// Per-parameter settings fixed at construction.
#[derive(Debug, Clone, Copy)]
struct ParamRule {
    lr_multiplier: f64,
    decays: bool,
    /// Factors on AdamW's ε and weight decay (CompleteP's depth rule; 1 otherwise).
    eps_multiplier: f64,
    weight_decay_multiplier: f64,
}

/// AdamW over a [`Transformer`], with its state (moments and step count).
pub struct AdamW<B: AutodiffBackend> {
    pub config: AdamWConfig,
    /// Completed optimizer steps.
    pub step: u64,
    pub moments: HashMap<ParamId, Moments<B::InnerBackend>>,
    rules: HashMap<ParamId, ParamRule>,
}

/// What one step did, for the logs. Both values stay on the device, so a GPU step never waits for
/// the host; the caller reads them with the step's loss in one transfer ([`read_to_host`]).
#[derive(Debug, Clone)]
pub struct StepReport<B: Backend> {
    /// ‖g‖₂² before clipping, summed over every parameter (`[1]`).
    pub grad_norm_squared: Tensor<B, 1>,
    /// The factor the gradients were multiplied by, `min(1, max_norm / ‖g‖₂)` (`[1]`); `None`
    /// when clipping is off.
    pub clip_scale: Option<Tensor<B, 1>>,
}

impl<B: Backend> StepReport<B> {
    /// ‖g‖₂ before clipping (a read from the device).
    pub fn grad_norm(&self) -> f64 {
        let [squared] = read_to_host([self.grad_norm_squared.clone()]);
        squared.sqrt()
    }
}

/// One-element tensors read to the host in one transfer (a GPU synchronises once).
pub fn read_to_host<B: Backend, const N: usize>(scalars: [Tensor<B, 1>; N]) -> [f64; N] {
    let data = Tensor::cat(scalars.to_vec(), 0).into_data();
    let mut values = data.iter::<f64>();
    std::array::from_fn(|_| values.next().expect("one value per one-element tensor"))
}

impl<B: AutodiffBackend> AdamW<B> {
    pub fn new(config: AdamWConfig, model: &Transformer<B>, mup: &MupConfig) -> Self {
        let width = model.embedding.val().dims()[1];
        let depth = model.blocks.len();
        let rules = model
            .param_infos()
            .into_iter()
            .map(|p| {
                let rule = ParamRule {
                    lr_multiplier: mup.lr_multiplier(p.group, width),
                    decays: p.group != ParamGroup::Norm,
                    eps_multiplier: mup.eps_multiplier(p.group, width, depth, p.name == "final_norm"),
                    weight_decay_multiplier: mup.weight_decay_multiplier(p.group, width),
                };
                (p.id, rule)
            })
            .collect();
        Self { config, step: 0, moments: HashMap::new(), rules }
    }

    /// One update of `model` from the gradients of a backward pass, at base learning rate `lr`.
    pub fn step(&mut self, model: Transformer<B>, grads: B::Gradients, lr: f64) -> (Transformer<B>, StepReport<B::InnerBackend>)
    where
        B::InnerBackend: FusedOps,
    {
        let grads = GradientsParams::from_grads(grads, &model);
        self.step_with(model, grads, lr)
    }

    /// [`AdamW::step`] from gradients already collected per parameter (summed over micro-batches).
    /// Nothing is read back from a GPU: the clipping factor is computed on the device.
    pub fn step_with(&mut self, model: Transformer<B>, grads: GradientsParams, lr: f64) -> (Transformer<B>, StepReport<B::InnerBackend>)
    where
        B::InnerBackend: FusedOps,
    {
        // A backend with its own update kernel (the CPU) takes the clipping factor as a number,
        // which costs nothing to read there; elsewhere the gradients are multiplied by it on the
        // device.
        self.update(model, grads, lr, !B::InnerBackend::has_fused_kernels())
    }

    fn update(&mut self, model: Transformer<B>, grads: GradientsParams, lr: f64, clip_on_device: bool) -> (Transformer<B>, StepReport<B::InnerBackend>)
    where
        B::InnerBackend: FusedOps,
    {
        let grad_norm_squared = sum_of_squares::<B>(&model, &grads);
        let clip_scale = (self.config.grad_clip > 0.0).then(|| clip_scale(grad_norm_squared.clone(), self.config.grad_clip));
        let clip = match &clip_scale {
            Some(scale) if clip_on_device => Clip::Tensor(scale.clone()),
            Some(scale) => Clip::Number(read_to_host([scale.clone()])[0] as f32),
            None => Clip::Number(1.0),
        };
        self.step += 1;
        let mut mapper = UpdateMapper { optimizer: self, grads, lr, clip };
        let model = model.map(&mut mapper);
        (model, StepReport { grad_norm_squared, clip_scale })
    }
}

/// Σ g² over every parameter of the model (`[1]`, on the device).
fn sum_of_squares<B: AutodiffBackend>(model: &Transformer<B>, grads: &GradientsParams) -> Tensor<B::InnerBackend, 1> {
    struct SumSquares<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        total: Option<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> burn::module::ModuleVisitor<B> for SumSquares<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let s = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    let mut visitor = SumSquares::<B> { grads, total: None };
    model.visit(&mut visitor);
    visitor.total.unwrap_or_else(|| Tensor::zeros([1], &model.embedding.val().device()))
}

/// `min(1, max_norm / ‖g‖₂)` from ‖g‖₂² (`[1]`), on the device: 1 when the norm is within the
/// limit (or zero), the factor that brings it down to `max_norm` when it is above. Computed in f64
/// where the backend has it (the CPU: the factor is the f64 quotient rounded once to f32), else
/// in f32 (cubecl 0.10's CUDA backend registers no f64).
fn clip_scale<B: Backend>(grad_norm_squared: Tensor<B, 1>, max_norm: f64) -> Tensor<B, 1> {
    let wide = B::supports_dtype(&grad_norm_squared.device(), DType::F64);
    clip_scale_in(grad_norm_squared, max_norm, if wide { FloatDType::F64 } else { FloatDType::F32 })
}

fn clip_scale_in<B: Backend>(grad_norm_squared: Tensor<B, 1>, max_norm: f64, dtype: FloatDType) -> Tensor<B, 1> {
    let device = grad_norm_squared.device();
    let norm = grad_norm_squared.cast(dtype).sqrt();
    let limit = Tensor::<B, 1>::from_data(TensorData::new(vec![max_norm], [1]), TensorCreationOptions::new(device).with_dtype(dtype.into()));
    (limit / norm).clamp_max(1.0).cast(FloatDType::F32)
}

/// How the update applies the clipping factor.
enum Clip<B: Backend> {
    /// As the fused kernel's scalar (also 1 when clipping is off).
    Number(f32),
    /// As a one-element tensor the gradient is multiplied by, on the device.
    Tensor(Tensor<B, 1>),
}

struct UpdateMapper<'a, B: AutodiffBackend> {
    optimizer: &'a mut AdamW<B>,
    grads: GradientsParams,
    lr: f64,
    clip: Clip<B::InnerBackend>,
}

impl<B: AutodiffBackend<InnerBackend: FusedOps>> ModuleMapper<B> for UpdateMapper<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let opt = &mut *self.optimizer;
        let c = opt.config;
        let rule = opt.rules.get(&id).copied().unwrap_or(ParamRule { lr_multiplier: 1.0, decays: D >= 2, eps_multiplier: 1.0, weight_decay_multiplier: 1.0 });
        let lr = self.lr * rule.lr_multiplier;
        let dims = tensor.dims();
        let n = tensor.shape().num_elements();
        let p = tensor.inner().reshape([n]);

        let device = p.device();
        let moments = opt.moments.remove(&id).unwrap_or_else(|| Moments { m: Tensor::zeros([n], &device), v: Tensor::zeros([n], &device) });
        let t = opt.step as i32;
        let decays = rule.decays && c.weight_decay > 0.0;
        // The scalars as burn's scalar ops apply them (computed in f64, used as f32), so the fused
        // kernel and the composed ops (`composed_adamw`) give the same bits.
        let (grad, clip_scale) = match &self.clip {
            Clip::Number(scale) => (grad.reshape([n]), *scale),
            Clip::Tensor(scale) => (grad.reshape([n]) * scale.clone(), 1.0),
        };
        let step = AdamWStep {
            clip_scale,
            beta1: c.beta1 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            m_hat_scale: (1.0 / (1.0 - c.beta1.powi(t))) as f32,
            v_hat_scale: (1.0 / (1.0 - c.beta2.powi(t))) as f32,
            eps: (c.eps * rule.eps_multiplier) as f32,
            decay: if decays { (1.0 - lr * (c.weight_decay * rule.weight_decay_multiplier)) as f32 } else { 1.0 },
            lr: lr as f32,
        };
        let (p, m, v) = adamw_update(p, grad, moments, step);
        opt.moments.insert(id, Moments { m, v });
        let p = Tensor::<B, D>::from_inner(p.reshape(dims)).require_grad();
        Param::from_mapped_value(id, p, mapper)
    }
}

/// (p, m, v) after one update: the backend's fused kernel where it has one, else composed of
/// tensor ops with the same arithmetic.
fn adamw_update<B: FusedOps>(p: Tensor<B, 1>, g: Tensor<B, 1>, moments: Moments<B>, s: AdamWStep) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
    let prims = [&p, &g, &moments.m, &moments.v].map(|t| t.clone().into_primitive().tensor());
    let [fp, fg, fm, fv] = prims;
    if let Some((p, m, v)) = B::adamw(fp, fg, fm, fv, s) {
        let float = |t| Tensor::from_primitive(TensorPrimitive::Float(t));
        return (float(p), float(m), float(v));
    }
    composed_adamw(p, g, moments, s)
}

/// The same update composed of tensor ops.
fn composed_adamw<B: Backend>(p: Tensor<B, 1>, g: Tensor<B, 1>, moments: Moments<B>, s: AdamWStep) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
    let g = g * s.clip_scale;
    let m = moments.m * s.beta1 + g.clone() * s.one_minus_beta1;
    let v = moments.v * s.beta2 + g.square() * s.one_minus_beta2;
    let update = (m.clone() * s.m_hat_scale) / ((v.clone() * s.v_hat_scale).sqrt() + s.eps);
    // PyTorch's order: decay the weights first, then take the Adam step.
    let p = if s.decay != 1.0 { p * s.decay } else { p };
    (p - update * s.lr, m, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CpuBackend;
    use crate::model::shape::ModelShape;
    use burn::tensor::{Int, TensorData};

    /// The fused update (the CPU backend's one pass) equals the composed tensor ops bit for bit,
    /// with and without decay and clipping, over several steps on odd sizes.
    #[test]
    fn fused_adamw_equals_the_composed_update_bit_for_bit() {
        use burn::backend::Flex;
        let device = Default::default();
        let n = 16 * 1024 + 77;
        let data = |seed: u64, std: f64| Tensor::<Flex, 1>::from_data(TensorData::new(crate::rng::Rng::new(seed).normal_vec(n, std), [n]), &device);
        let zeros = || Moments { m: Tensor::<Flex, 1>::zeros([n], &device), v: Tensor::<Flex, 1>::zeros([n], &device) };
        for (decay, clip_scale) in [(1.0f32, 1.0f32), (0.999, 0.37)] {
            let (mut fused, mut composed) = ((data(1, 0.1), zeros()), (data(1, 0.1), zeros()));
            for t in 1..=3 {
                let g = data(10 + t, 1e-3);
                let step = AdamWStep {
                    clip_scale,
                    beta1: 0.9,
                    one_minus_beta1: (1.0 - 0.9f64) as f32,
                    beta2: 0.95,
                    one_minus_beta2: (1.0 - 0.95f64) as f32,
                    m_hat_scale: (1.0 / (1.0 - 0.9f64.powi(t as i32))) as f32,
                    v_hat_scale: (1.0 / (1.0 - 0.95f64.powi(t as i32))) as f32,
                    eps: 1e-8,
                    decay,
                    lr: 3e-3,
                };
                let (p, m, v) = adamw_update(fused.0, g.clone(), fused.1, step);
                fused = (p, Moments { m, v });
                // The composed path: the same function on a backend without the fused kernel.
                let (p, m, v) = composed_adamw(composed.0, g, composed.1, step);
                composed = (p, Moments { m, v });
            }
            assert_eq!(fused.0.to_data(), composed.0.to_data());
            assert_eq!(fused.1.m.to_data(), composed.1.m.to_data());
            assert_eq!(fused.1.v.to_data(), composed.1.v.to_data());
        }
    }

    /// Adam's first step moves every weight by lr_p · g/(|g| + ε) ≈ ±lr_p, so the largest change of a
    /// hidden matrix over that of a norm gain is the µP ratio 1/m.
    #[test]
    fn per_group_learning_rates_have_ratio_one_over_m() {
        let shape = ModelShape { width: 128, depth: 1, heads: 4, kv_heads: 4, ffn_width: 320, vocab: 16 };
        let mup = MupConfig { base_width: 32, ..MupConfig::default() }; // m = 4
        let device = Default::default();
        let model = Transformer::<CpuBackend>::new(&shape, &mup, 8, 0, &device);
        let tokens = Tensor::<CpuBackend, 2, Int>::from_data(TensorData::new((0..18).map(|i| i % 16).collect::<Vec<i64>>(), [2, 9]), &device);
        let loss = model.loss(tokens.clone().narrow(1, 0, 8), tokens.narrow(1, 1, 8));
        let before = model.clone();
        let config = AdamWConfig { weight_decay: 0.0, grad_clip: 0.0, eps: 1e-12, ..Default::default() };
        let mut opt = AdamW::new(config, &model, &mup);
        let (after, report) = opt.step(model, loss.backward(), 0.01);
        assert!(report.grad_norm() > 0.0);
        let max_change = |a: Tensor<CpuBackend, 2>, b: Tensor<CpuBackend, 2>| (a - b).abs().max().into_scalar() as f64;
        let hidden = max_change(after.blocks[0].ffn.w_up.val(), before.blocks[0].ffn.w_up.val());
        let norm = max_change(after.blocks[0].ffn_norm.weight.val().unsqueeze::<2>(), before.blocks[0].ffn_norm.weight.val().unsqueeze::<2>());
        let emb = max_change(after.embedding.val(), before.embedding.val());
        assert!((hidden - 0.01 / 4.0).abs() < 1e-6, "hidden step {hidden}");
        assert!((norm - 0.01).abs() < 1e-6, "norm step {norm}");
        assert!((emb - 0.01).abs() < 1e-6, "embedding step {emb}");
        assert!((hidden / norm - 0.25).abs() < 1e-3);
    }

    #[test]
    fn clipping_caps_the_global_norm_and_reports_it() {
        let shape = ModelShape { width: 32, depth: 1, heads: 2, kv_heads: 2, ffn_width: 80, vocab: 16 };
        let mup = MupConfig::default();
        let device = Default::default();
        let model = Transformer::<CpuBackend>::new(&shape, &mup, 8, 0, &device);
        let tokens = Tensor::<CpuBackend, 2, Int>::from_data(TensorData::new((0..18).map(|i| (i * 7) % 16).collect::<Vec<i64>>(), [2, 9]), &device);
        let loss = model.loss(tokens.clone().narrow(1, 0, 8), tokens.narrow(1, 1, 8));
        let mut opt = AdamW::new(AdamWConfig { grad_clip: 1e-3, ..Default::default() }, &model, &mup);
        let (_, report) = opt.step(model, loss.backward(), 0.01);
        let grad_norm = report.grad_norm();
        assert!(grad_norm > 1e-3);
        let [clip_scale] = read_to_host([report.clip_scale.expect("clipping is on")]);
        assert!((clip_scale / (1e-3 / grad_norm) - 1.0).abs() < 1e-6, "{clip_scale} for a norm of {grad_norm}");
    }

    /// The factor computed in f32 (a GPU without f64) is the f64 one within float rounding, and
    /// exactly 1 at or under the limit and for a zero gradient.
    #[test]
    fn clip_scale_in_f32_and_f64() {
        use burn::backend::Flex;
        let device = Default::default();
        let scale = |norm: f64, max_norm: f64, dtype| {
            let squared = Tensor::<Flex, 1>::from_data(TensorData::new(vec![(norm * norm) as f32], [1]), &device);
            read_to_host([clip_scale_in(squared, max_norm, dtype)])[0]
        };
        for dtype in [FloatDType::F32, FloatDType::F64] {
            for (norm, max_norm) in [(3.7, 1.0), (1.0001, 1.0), (250.0, 0.3), (1e-3, 1e-4)] {
                let s = scale(norm, max_norm, dtype);
                assert!((s / (max_norm / norm) - 1.0).abs() < 1e-6, "{dtype:?}: {s} for norm {norm}, limit {max_norm}");
            }
            for (norm, max_norm) in [(0.5, 1.0), (1.0, 1.0), (0.0, 1.0)] {
                assert_eq!(scale(norm, max_norm, dtype), 1.0, "{dtype:?}: norm {norm}, limit {max_norm}");
            }
        }
    }

    /// Clipping by a tensor on the device (how a GPU, which has no fused update, applies it) gives
    /// the bits of the fused kernel's scalar factor, over steps that clip and steps that do not.
    #[test]
    fn clipping_on_the_device_equals_the_scalar_factor_bit_for_bit() {
        let shape = ModelShape { width: 32, depth: 2, heads: 2, kv_heads: 1, ffn_width: 80, vocab: 16 };
        let mup = MupConfig::default();
        let device = Default::default();
        let train = |clip_on_device: bool| {
            let mut model = Transformer::<CpuBackend>::new(&shape, &mup, 8, 4, &device);
            let mut opt = AdamW::new(AdamWConfig { grad_clip: 0.05, ..Default::default() }, &model, &mup);
            let mut scales = Vec::new();
            for step in 0..6 {
                let tokens = (0..18).map(|i| (i * 5 + step) % 16).collect::<Vec<i64>>();
                let all = Tensor::<CpuBackend, 2, Int>::from_data(TensorData::new(tokens, [2, 9]), &device);
                let loss = model.loss(all.clone().narrow(1, 0, 8), all.narrow(1, 1, 8));
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                let (next, report) = opt.update(model, grads, 0.01, clip_on_device);
                scales.push(read_to_host([report.clip_scale.expect("clipping is on")])[0]);
                model = next;
            }
            (model.embedding.val().into_data(), model.blocks[1].ffn.w_down.val().into_data(), scales)
        };
        let (on_device, as_number) = (train(true), train(false));
        assert!(as_number.2.iter().any(|&s| s < 1.0), "some steps clip: {:?}", as_number.2);
        assert_eq!(on_device, as_number);
    }

    #[test]
    fn a_tiny_model_overfits_one_batch() {
        let shape = ModelShape { width: 64, depth: 2, heads: 2, kv_heads: 1, ffn_width: 160, vocab: 32 };
        let mup = MupConfig { base_width: 64, ..MupConfig::default() };
        let device = Default::default();
        let mut rng = crate::rng::Rng::new(11);
        let tokens: Vec<i64> = (0..4 * 17).map(|_| rng.below(32) as i64).collect();
        let all = Tensor::<CpuBackend, 2, Int>::from_data(TensorData::new(tokens, [4, 17]), &device);
        let (inputs, targets) = (all.clone().narrow(1, 0, 16), all.narrow(1, 1, 16));
        let mut model = Transformer::<CpuBackend>::new(&shape, &mup, 16, 0, &device);
        let mut opt = AdamW::new(AdamWConfig { weight_decay: 0.0, ..Default::default() }, &model, &mup);
        let mut first = None;
        let mut last = f32::MAX;
        for _ in 0..150 {
            let loss = model.loss(inputs.clone(), targets.clone());
            last = loss.clone().into_scalar();
            first.get_or_insert(last);
            model = opt.step(model, loss.backward(), 0.01).0;
        }
        let first = first.unwrap();
        // With a tied embedding the residual stream starts as the current token's own embedding,
        // so the untrained model favours repeating it: the initial loss is above ln 32.
        assert!(first > 32f32.ln(), "initial loss {first}");
        assert!(last < 0.3, "loss after 150 steps on one batch: {last} (started at {first})");
    }

    /// bf16-mixed (bf16 matrix products, fp32 weights and Adam state) tracks fp32 over 50 steps of
    /// fresh batches: the same start, and every loss within 2% (bf16 keeps 8 bits of mantissa).
    /// Run on the CPU backend, which can compute in bf16; training on the CPU uses fp32.
    #[test]
    fn bf16_mixed_losses_track_fp32_for_50_steps() {
        use crate::model::precision::Precision;
        let shape = ModelShape { width: 64, depth: 2, heads: 4, kv_heads: 2, ffn_width: 160, vocab: 64 };
        let mup = MupConfig { base_width: 32, ..MupConfig::default() };
        let device = Default::default();
        let losses = |precision: Precision| {
            let mut model = Transformer::<CpuBackend>::new(&shape, &mup, 32, 3, &device).with_precision(precision);
            let mut opt = AdamW::new(AdamWConfig::default(), &model, &mup);
            let mut rng = crate::rng::Rng::new(5);
            (0..50)
                .map(|_| {
                    let tokens: Vec<i64> = (0..4 * 33).map(|_| rng.below(16) as i64 * 2).collect();
                    let all = Tensor::<CpuBackend, 2, Int>::from_data(TensorData::new(tokens, [4, 33]), &device);
                    let loss = model.loss(all.clone().narrow(1, 0, 32), all.narrow(1, 1, 32));
                    let value = loss.clone().into_scalar() as f64;
                    model = opt.step(model.clone(), loss.backward(), 0.01).0;
                    value
                })
                .collect::<Vec<f64>>()
        };
        let (fp32, bf16) = (losses(Precision::Fp32), losses(Precision::Bf16Mixed));
        assert!(fp32[49] < fp32[0] - 1.0, "fp32 learns: {} → {}", fp32[0], fp32[49]);
        assert_ne!(fp32, bf16, "bf16-mixed computes in bf16");
        for (step, (a, b)) in fp32.iter().zip(&bf16).enumerate() {
            assert!((a - b).abs() / a < 0.02, "step {step}: fp32 {a}, bf16-mixed {b}");
        }
    }
}
