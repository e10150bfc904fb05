//! The coordinate check of microsoft/mup: train models of several widths for a few steps on one
//! fixed batch and record the mean |x| of every layer output at each step. Under µP the curves
//! are flat in width (slope of log mean|x| against log width ≈ 0); under standard
//! parameterization they grow with width once the optimizer has taken a step.

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
    /// Training loss at each step for each width, `[width][step]`.
    pub losses: Vec<Vec<f64>>,
}

impl CoordCheckOptions {
    /// The shape trained at `width`.
    pub fn shape(&self, width: usize) -> ModelShape {
        let heads = (width / self.head_dim).max(1);
        ModelShape { width, depth: self.depth, heads, kv_heads: heads, ffn_width: crate::model::shape::default_ffn_width(width), vocab: self.vocab }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.widths.len() >= 2, "--widths needs at least two widths to measure a slope (got {:?})", self.widths);
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
        for &width in &o.widths {
            let shape = o.shape(width);
            let mut model = Transformer::<B>::new(&shape, &o.mup, o.seq_len, o.seed, &device).with_precision(o.precision);
            let adam = AdamWConfig { weight_decay: 0.0, grad_clip: 0.0, ..Default::default() };
            let mut optimizer = AdamW::new(adam, &model, &o.mup);
            let mut width_losses = Vec::new();
            for step in 0..=o.steps {
                let mut trace: Trace<B> = Vec::new();
                let logits = model.logits(inputs.clone(), Some(&mut trace));
                for (layer, t) in trace {
                    let mean_abs = t.abs().mean().into_scalar().elem::<f64>();
                    records.push(CoordRecord { width, step, layer, mean_abs });
                }
                let loss = cross_entropy(logits, targets.clone());
                width_losses.push(loss.clone().into_scalar().elem::<f64>());
                if step < o.steps {
                    let grads = loss.backward();
                    model = optimizer.step(model, grads, o.lr).0;
                }
            }
            losses.push(width_losses);
        }
        let slopes = slopes(&records, &o.widths, o.steps);
        CoordCheckResult { parameterization: o.mup.parameterization, options: o.clone(), records, slopes, losses }
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
}

impl std::fmt::Display for CoordCheckResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.options;
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
