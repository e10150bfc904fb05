//! `windtunnel model` and `windtunnel coord-check`.

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::emit;
use windtunnel::device::DeviceSpec;
use windtunnel::model::mup::{DepthRule, MupConfig, Parameterization};
use windtunnel::model::precision::Precision;
use windtunnel::model::shape::{self, ModelShape, PRESETS};
use windtunnel::model::ModelReport;
use windtunnel::train::coord_check::{coord_check as run_coord_check, CoordCheckOptions};

#[derive(Args)]
pub struct ShapeArgs {
    /// A named shape: minicpm-1.2b, minicpm-2.4b, or a MiniCPM Table 8 proxy (9m, 36m, 66m, 109m, 166m, 241m, 499m).
    #[arg(long, conflicts_with_all = ["width", "depth", "heads", "kv_heads", "ffn_width"])]
    preset: Option<String>,
    /// d_model.
    #[arg(long, required_unless_present_any = ["preset", "list"])]
    width: Option<usize>,
    /// Number of transformer blocks.
    #[arg(long, required_unless_present_any = ["preset", "list"])]
    depth: Option<usize>,
    /// Query heads (must divide width).
    #[arg(long, required_unless_present_any = ["preset", "list"])]
    heads: Option<usize>,
    /// Key/value heads for grouped-query attention (must divide heads) [default: heads].
    #[arg(long)]
    kv_heads: Option<usize>,
    /// SwiGLU hidden size [default: 2.5 × width].
    #[arg(long)]
    ffn_width: Option<usize>,
    /// Vocabulary size [default: the preset's, or MiniCPM-1.2B's 73,440].
    #[arg(long)]
    vocab: Option<usize>,
}

impl ShapeArgs {
    fn shape(&self) -> anyhow::Result<ModelShape> {
        let shape = match &self.preset {
            Some(name) => ModelShape { vocab: self.vocab.unwrap_or(shape::preset(name)?.vocab), ..shape::preset(name)? },
            None => {
                let width = self.width.context("--width is required without --preset")?;
                let heads = self.heads.context("--heads is required without --preset")?;
                ModelShape {
                    width,
                    depth: self.depth.context("--depth is required without --preset")?,
                    heads,
                    kv_heads: self.kv_heads.unwrap_or(heads),
                    ffn_width: self.ffn_width.unwrap_or(shape::default_ffn_width(width)),
                    vocab: self.vocab.unwrap_or(shape::MINICPM_1_2B_VOCAB),
                }
            }
        };
        shape.validate().context("impossible model shape")?;
        Ok(shape)
    }
}

/// The µP constants; each default is `MupConfig::default()`'s (MiniCPM's).
#[derive(Args)]
pub struct MupArgs {
    /// mup (MiniCPM's µP) or sp (standard parameterization).
    #[arg(long, default_value_t = MupConfig::default().parameterization)]
    parameterization: Parameterization,
    /// µP base width d_base (m = width / base_width) [default: 256; coord-check: the smallest width].
    #[arg(long)]
    base_width: Option<usize>,
    #[arg(long, default_value_t = MupConfig::default().scale_emb)]
    scale_emb: f64,
    #[arg(long, default_value_t = MupConfig::default().scale_depth)]
    scale_depth: f64,
    #[arg(long, default_value_t = MupConfig::default().init_std)]
    init_std: f64,
    /// How hyperparameters follow depth: minicpm (residual × scale_depth/√depth), completep
    /// (CompleteP, α = 1: residual × 1/depth, AdamW ε and weight decay scaled) or none.
    #[arg(long, default_value_t = MupConfig::default().depth_rule)]
    depth_rule: DepthRule,
    /// The depth the hyperparameters were tuned at (completep and none need it) [coord-check
    /// --depths: the smallest depth].
    #[arg(long)]
    base_depth: Option<usize>,
}

impl MupArgs {
    fn config(&self, default_base_width: usize) -> anyhow::Result<MupConfig> {
        self.config_at(default_base_width, None)
    }

    fn config_at(&self, default_base_width: usize, default_base_depth: Option<usize>) -> anyhow::Result<MupConfig> {
        let config = MupConfig {
            parameterization: self.parameterization,
            base_width: self.base_width.unwrap_or(default_base_width),
            scale_emb: self.scale_emb,
            scale_depth: self.scale_depth,
            init_std: self.init_std,
            depth_rule: self.depth_rule,
            base_depth: self.base_depth.or(default_base_depth),
        };
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}

#[derive(Args)]
pub struct ModelArgs {
    #[command(flatten)]
    shape: ShapeArgs,
    /// Sequence length for the attention FLOPs and the memory estimate.
    #[arg(long, default_value_t = 4096)]
    seq_len: usize,
    /// Sequences per batch for the training-memory estimate.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    #[command(flatten)]
    mup: MupArgs,
    /// List the presets.
    #[arg(long)]
    list: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Every preset: a table, or their full reports as JSON.
#[derive(Serialize)]
#[serde(transparent)]
struct PresetList(Vec<ModelReport>);

impl std::fmt::Display for PresetList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<14} {:>6} {:>6} {:>6} {:>9} {:>8} {:>15}  description", "preset", "width", "depth", "heads", "kv_heads", "ffn", "N")?;
        for (p, r) in PRESETS.iter().zip(&self.0) {
            let s = r.shape;
            let n = windtunnel::format::thousands(r.non_embedding_params);
            writeln!(f, "{:<14} {:>6} {:>6} {:>6} {:>9} {:>8} {:>15}  {}", p.name, s.width, s.depth, s.heads, s.kv_heads, s.ffn_width, n, p.description)?;
        }
        Ok(())
    }
}

pub fn model(args: ModelArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(args.seq_len > 0, "--seq-len must be at least 1");
    let mup = args.mup.config(MupConfig::default().base_width)?;
    if args.list {
        let reports = PRESETS.iter().map(|p| ModelReport::new(Some(p.name), p.shape, args.seq_len, args.batch_size, mup)).collect();
        return emit(&PresetList(reports), args.json);
    }
    let report = ModelReport::new(args.shape.preset.as_deref(), args.shape.shape()?, args.seq_len, args.batch_size, mup);
    emit(&report, args.json)
}

#[derive(Args)]
pub struct CoordCheckArgs {
    /// Widths to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256,512")]
    widths: Vec<usize>,
    /// Optimizer steps (activations are recorded before the first and after each).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    depth: usize,
    /// Depths to compare, comma-separated (e.g. 2,4,8,16,32): the check in depth, at each of
    /// --widths (one width is enough); the base depth defaults to the smallest.
    #[arg(long, value_delimiter = ',')]
    depths: Vec<usize>,
    /// Head dimension, fixed across widths.
    #[arg(long, default_value_t = 32)]
    head_dim: usize,
    #[arg(long, default_value_t = 256)]
    vocab: usize,
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Base learning rate (Adam; hidden matrices get lr/m under µP).
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Matrix-product arithmetic: fp32, tf32 or bf16-mixed (honoured on the CPU too, to compare).
    #[arg(long, default_value = "fp32")]
    precision: Precision,
    #[command(flatten)]
    mup: MupArgs,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// As for `train`: where compiled GPU kernels and autotune results are kept.
    #[arg(long, value_name = "DIR")]
    kernel_cache: Option<std::path::PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn coord_check(args: CoordCheckArgs) -> anyhow::Result<u8> {
    super::train::select_kernel_cache(args.kernel_cache.as_deref())?;
    let smallest = args.widths.iter().copied().min().context("--widths is empty")?;
    anyhow::ensure!(smallest > 0, "--widths: a width must be at least 1 (got 0)");
    let list = |v: &[usize]| v.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(",");
    if args.depths.is_empty() {
        anyhow::ensure!(
            windtunnel::fit::distinct_count(args.widths.iter().map(|&w| w as f64)) >= 2,
            "--widths {}: give at least two different widths; the check fits how activations grow across widths",
            list(&args.widths)
        );
    } else {
        anyhow::ensure!(args.depths.iter().all(|&d| d > 0), "--depths: a depth must be at least 1");
        anyhow::ensure!(
            windtunnel::fit::distinct_count(args.depths.iter().map(|&d| d as f64)) >= 2,
            "--depths {}: give at least two different depths; the check fits how activations grow across depths",
            list(&args.depths)
        );
    }
    let shallowest = args.depths.iter().copied().min();
    let options = CoordCheckOptions {
        mup: args.mup.config_at(smallest, shallowest)?,
        depths: args.depths,
        widths: args.widths,
        steps: args.steps,
        depth: args.depth,
        head_dim: args.head_dim,
        vocab: args.vocab,
        seq_len: args.seq_len,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        precision: args.precision,
    };
    emit(&run_coord_check(&options, args.device)?, args.json)
}
