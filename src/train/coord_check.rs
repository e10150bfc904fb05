//! The coordinate check of microsoft/mup: train models of several widths for a few steps on one
//! fixed batch and record the mean |x| of every layer output at each step. Under µP the curves
//! are flat in width (slope of log mean|x| against log width ≈ 0); under standard
//! parameterization they grow with width once the optimizer has taken a step.
//!
//! **In depth** (`--depths`): the same at several depths, each layer's records summarised so that
//! every depth has them — the blocks' attention and FFN outputs averaged over blocks, the residual
//! stream the last block leaves, the logits — and the update of the residual stream and of the
//! logits since step 0 (mean |x_t − x_0|), each with its slope against log depth. A depth rule
//! under which a tuned learning rate transfers keeps these flat (CompleteP's claim).

use crate::device::TrainBackend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::optimizer::{AdamW, AdamWConfig};
use crate::device::{run_on, BackendJob, DeviceSpec};
use crate::model::mup::{MupConfig, Parameterization};
use crate::model::precision::Precision;
use crate::model::shape::ModelShape;
use crate::model::transformer::{cross_entropy, Trace, Transformer};
use crate::rng::Rng;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoordCheckOptions {
    pub widths: Vec<usize>,
    /// The check in depth: these depths (at each width) instead of `depth` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depths: Vec<usize>,
    /// Optimizer steps; activations are recorded before the first and after each.
    pub steps: usize,
    pub mup: MupConfig,
    pub depth: usize,
    /// Held fixed across widths (heads = width / head_dim), as in MiniCPM.
    pub head_dim: usize,
    pub vocab: usize,
    pub seq_len: usize,
    pub batch_size: usize,
    /// Base learning rate (hidden matrices get lr/m under µP).
    pub lr: f64,
    pub seed: u64,
    /// The arithmetic of the matrix products. Unlike training, the coordinate check honours
    /// `bf16-mixed` on the CPU backend too, so the two can be compared anywhere.
    #[serde(default)]
    pub precision: Precision,
}

impl Default for CoordCheckOptions {
    fn default() -> Self {
        Self {
            widths: vec![64, 128, 256, 512],
            depths: Vec::new(),
            steps: 3,
            mup: MupConfig { base_width: 64, ..MupConfig::default() },
            depth: 2,
            head_dim: 32,
            vocab: 256,
            seq_len: 64,
            batch_size: 8,
            lr: 0.01,
            seed: 0,
            precision: Precision::Fp32,
        }
    }
}

/// mean |x| of one layer output, for one width, after `step` optimizer steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoordRecord {
    pub width: usize,
    /// The model's depth (the check in depth; else `options.depth`).
    #[serde(default)]
    pub depth: usize,
    pub step: usize,
    pub layer: String,
    pub mean_abs: f64,
}

/// Slope of log mean|x| against log width for one layer at one step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoordSlope {
    pub step: usize,
    pub layer: String,
    pub slope: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoordCheckResult {
    pub parameterization: Parameterization,
    pub options: CoordCheckOptions,
    pub records: Vec<CoordRecord>,
    pub slopes: Vec<CoordSlope>,
    /// Training loss at each step for each width, `[width][step]` (in depth: each (width, depth)
    /// in the order widths × depths).
    pub losses: Vec<Vec<f64>>,
    /// The check in depth: slope of log mean|x| against log depth of each summary at each step,
    /// at the first width.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depth_slopes: Vec<CoordSlope>,
}

/// The summaries the check in depth compares across depths.
pub const DEPTH_SUMMARIES: [&str; 6] = ["blocks.attention", "blocks.ffn", "residual", "logits", "Δresidual", "Δlogits"];

impl CoordCheckOptions {
    /// The shape trained at `width` (and the default depth).
    pub fn shape(&self, width: usize) -> ModelShape {
        self.shape_at(width, self.depth)
    }

    pub fn shape_at(&self, width: usize, depth: usize) -> ModelShape {
        let heads = (width / self.head_dim).max(1);
        ModelShape { width, depth, heads, kv_heads: heads, ffn_width: crate::model::shape::default_ffn_width(width), vocab: self.vocab }
    }

    /// The depths trained: `depths`, or `depth` alone.
    pub fn depths(&self) -> Vec<usize> {
        if self.depths.is_empty() {
            vec![self.depth]
        } else {
            self.depths.clone()
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.widths.len() >= 2 || self.depths.len() >= 2,
            "--widths needs at least two widths to measure a slope (got {:?}), or --depths two depths",
            self.widths
        );
        anyhow::ensure!(self.head_dim > 0 && self.head_dim.is_multiple_of(2), "--head-dim must be a positive even number (got {})", self.head_dim);
        for &w in &self.widths {
            anyhow::ensure!(
                w % self.head_dim == 0,
                "--widths: width {w} is not a multiple of --head-dim {}; the coordinate check keeps the head dimension fixed",
                self.head_dim
            );
            self.shape(w).validate().map_err(|e| anyhow::anyhow!("width {w}: {e}"))?;
        }
        anyhow::ensure!(self.seq_len >= 2 && self.batch_size >= 1, "--seq-len must be at least 2 and --batch-size at least 1");
        self.mup.validate().map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// Run the coordinate check on `device`.
pub fn coord_check(options: &CoordCheckOptions, device: DeviceSpec) -> anyhow::Result<CoordCheckResult> {
    options.validate()?;
    run_on(device, Job(options))
}

struct Job<'a>(&'a CoordCheckOptions);

impl BackendJob for Job<'_> {
    type Output = CoordCheckResult;
    fn run<B: TrainBackend>(self, device: B::Device) -> CoordCheckResult {
        let o = self.0;
        // One fixed batch of random tokens, the same for every width.
        let mut rng = Rng::derive(o.seed, &[0xC00D]);
        let n = o.batch_size * (o.seq_len + 1);
        let tokens: Vec<i64> = (0..n).map(|_| rng.below(o.vocab as u64) as i64).collect();
        let all = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [o.batch_size, o.seq_len + 1]), &device);
        let inputs = all.clone().narrow(1, 0, o.seq_len);
        let targets = all.narrow(1, 1, o.seq_len);

        let mut records = Vec::new();
        let mut losses = Vec::new();
        let in_depth = !o.depths.is_empty();
        for &width in &o.widths {
            for depth in o.depths() {
                let shape = o.shape_at(width, depth);
                let mut model = Transformer::<B>::new(&shape, &o.mup, o.seq_len, o.seed, &device).with_precision(o.precision);
                let adam = AdamWConfig { weight_decay: 0.0, grad_clip: 0.0, ..Default::default() };
                let mut optimizer = AdamW::new(adam, &model, &o.mup);
                let mut run_losses = Vec::new();
                let mut at_start: Vec<(String, Tensor<B, 3>)> = Vec::new();
                for step in 0..=o.steps {
                    let mut trace: Trace<B> = Vec::new();
                    let logits = model.logits(inputs.clone(), Some(&mut trace));
                    let mut of_step = Vec::new();
                    for (layer, t) in &trace {
                        let mean_abs = t.clone().abs().mean().into_scalar().elem::<f64>();
                        of_step.push(CoordRecord { width, depth, step, layer: layer.clone(), mean_abs });
                    }
                    if in_depth {
                        summarise_in_depth(&mut of_step, &trace, &mut at_start, width, depth, step);
                    }
                    records.extend(of_step);
                    let loss = cross_entropy(logits, targets.clone());
                    run_losses.push(loss.clone().into_scalar().elem::<f64>());
                    if step < o.steps {
                        let grads = loss.backward();
                        model = optimizer.step(model, grads, o.lr).0;
                    }
                }
                losses.push(run_losses);
            }
        }
        let (slopes, depth_slopes) = if in_depth {
            let first: Vec<CoordRecord> = records.iter().filter(|r| r.width == o.widths[0]).cloned().collect();
            let along_depth: Vec<CoordRecord> = first.into_iter().map(|r| CoordRecord { width: r.depth, ..r }).collect();
            let depth_slopes = slopes(&along_depth, &o.depths, o.steps).into_iter().filter(|s| DEPTH_SUMMARIES.contains(&s.layer.as_str())).collect();
            let at_base: Vec<CoordRecord> = records.iter().filter(|r| r.depth == o.depths[0]).cloned().collect();
            (if o.widths.len() >= 2 { slopes(&at_base, &o.widths, o.steps) } else { Vec::new() }, depth_slopes)
        } else {
            (slopes(&records, &o.widths, o.steps), Vec::new())
        };
        CoordCheckResult { parameterization: o.mup.parameterization, options: o.clone(), records, slopes, losses, depth_slopes }
    }
}

/// The check in depth's summaries of one step (see the module doc): block means, the residual
/// stream and logits as recorded, and their updates since step 0 (`at_start` keeps step 0's).
fn summarise_in_depth<B: TrainBackend>(
    records: &mut Vec<CoordRecord>,
    trace: &Trace<B>,
    at_start: &mut Vec<(String, Tensor<B, 3>)>,
    width: usize,
    depth: usize,
    step: usize,
) {
    let block_mean = |branch: &str| {
        let v: Vec<f64> = records.iter().filter(|r| r.layer.starts_with("block") && r.layer.ends_with(branch)).map(|r| r.mean_abs).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let (attention, ffn) = (block_mean(".attention"), block_mean(".ffn"));
    records.push(CoordRecord { width, depth, step, layer: "blocks.attention".into(), mean_abs: attention });
    records.push(CoordRecord { width, depth, step, layer: "blocks.ffn".into(), mean_abs: ffn });
    for name in ["residual", "logits"] {
        let Some((_, t)) = trace.iter().find(|(l, _)| l == name) else { continue };
        if step == 0 {
            at_start.push((name.to_string(), t.clone()));
        }
        let start = at_start.iter().find(|(l, _)| l == name).map(|(_, t)| t.clone());
        let update = start.map_or(0.0, |s| (t.clone() - s).abs().mean().into_scalar().elem::<f64>());
        records.push(CoordRecord { width, depth, step, layer: format!("Δ{name}"), mean_abs: update });
    }
}

/// Least-squares slope of log mean|x| against log width for every (step, layer).
fn slopes(records: &[CoordRecord], widths: &[usize], steps: usize) -> Vec<CoordSlope> {
    let mut out = Vec::new();
    for step in 0..=steps {
        for layer in layer_names(records) {
            let points: Vec<(f64, f64)> = widths
                .iter()
                .filter_map(|&w| {
                    records
                        .iter()
                        .find(|r| r.width == w && r.step == step && r.layer == layer)
                        .map(|r| ((w as f64).ln(), r.mean_abs.max(f64::MIN_POSITIVE).ln()))
                })
                .collect();
            out.push(CoordSlope { step, layer, slope: least_squares_slope(&points) });
        }
    }
    out
}

fn least_squares_slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    sxy / sxx
}

/// Layer names in the order the forward pass recorded them.
pub fn layer_names(records: &[CoordRecord]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in records {
        if !names.contains(&r.layer) {
            names.push(r.layer.clone());
        }
    }
    names
}

impl CoordCheckResult {
    pub fn slope(&self, step: usize, layer: &str) -> Option<f64> {
        self.slopes.iter().find(|s| s.step == step && s.layer == layer).map(|s| s.slope)
    }

    /// Is this a hidden activation (an attention or FFN block output)?
    pub fn is_hidden(layer: &str) -> bool {
        layer.ends_with(".attention") || layer.ends_with(".ffn")
    }

    /// The largest |slope| over hidden activations after the first step.
    pub fn max_hidden_slope(&self) -> f64 {
        self.slopes.iter().filter(|s| s.step >= 1 && Self::is_hidden(&s.layer)).map(|s| s.slope.abs()).fold(0.0, f64::max)
    }

    /// The check in depth: slope against log depth of a summary at a step.
    pub fn depth_slope(&self, step: usize, summary: &str) -> Option<f64> {
        self.depth_slopes.iter().find(|s| s.step == step && s.layer == summary).map(|s| s.slope)
    }

    fn fmt_depth(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.options;
        let width = o.widths[0];
        writeln!(
            f,
            "coordinate check in depth ({}, depth rule {}, base depth {}): width {width}, head dim {}, vocab {}, batch {}×{}, lr {}",
            self.parameterization,
            o.mup.depth_rule,
            o.mup.base_depth.unwrap_or(o.depths[0]),
            o.head_dim,
            o.vocab,
            o.batch_size,
            o.seq_len,
            o.lr
        )?;
        writeln!(f, "mean |x| (Δ: mean |x_t − x_0|); slope = d log / d log depth (flat: ≈ 0)")?;
        for step in [0, o.steps] {
            writeln!(f, "\nafter {step} step{}:", if step == 1 { "" } else { "s" })?;
            write!(f, "  {:<18}", "summary")?;
            for d in &o.depths {
                write!(f, " {:>10}", format!("L={d}"))?;
            }
            writeln!(f, " {:>8}", "slope")?;
            for summary in DEPTH_SUMMARIES.iter().filter(|s| step > 0 || !s.starts_with('Δ')) {
                write!(f, "  {summary:<18}")?;
                for &d in &o.depths {
                    let v = self.records.iter().find(|r| r.width == width && r.depth == d && r.step == step && r.layer == *summary);
                    write!(f, " {:>10}", v.map_or("-".into(), |r| format!("{:.4}", r.mean_abs)))?;
                }
                writeln!(f, " {:>+8.3}", self.depth_slope(step, summary).unwrap_or(f64::NAN))?;
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for CoordCheckResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.options;
        if !o.depths.is_empty() {
            return self.fmt_depth(f);
        }
        writeln!(
            f,
            "coordinate check ({}, {}): depth {}, head dim {}, vocab {}, batch {}×{}, lr {}, base width {}",
            self.parameterization, o.precision, o.depth, o.head_dim, o.vocab, o.batch_size, o.seq_len, o.lr, o.mup.base_width
        )?;
        writeln!(f, "mean |x| per layer output; slope = d log mean|x| / d log width (µP: ≈ 0)")?;
        let layers = layer_names(&self.records);
        for step in 0..=o.steps {
            writeln!(f, "\nafter {step} step{}:", if step == 1 { "" } else { "s" })?;
            write!(f, "  {:<18}", "layer")?;
            for w in &o.widths {
                write!(f, " {:>10}", format!("w={w}"))?;
            }
            writeln!(f, " {:>8}", "slope")?;
            for layer in &layers {
                write!(f, "  {layer:<18}")?;
                for &w in &o.widths {
                    let v = self.records.iter().find(|r| r.width == w && r.step == step && &r.layer == layer);
                    write!(f, " {:>10}", v.map_or("-".into(), |r| format!("{:.4}", r.mean_abs)))?;
                }
                writeln!(f, " {:>+8.3}", self.slope(step, layer).unwrap_or(f64::NAN))?;
            }
        }
        write!(f, "\nlargest |slope| of hidden activations after step 0: {:.3}", self.max_hidden_slope())?;
        match self.parameterization {
            Parameterization::Mup => write!(f, " (µP holds when this stays near 0)"),
            Parameterization::Sp => write!(f, " (SP: expected to grow with width)"),
        }
    }
}
