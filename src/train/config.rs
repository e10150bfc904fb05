//! The run file: everything one training run does, in TOML (or JSON).
//!
//! ```toml
//! name = "quickstart"
//! seed = 0                      # model init
//!
//! [model]                       # a preset, or the shape itself
//! width = 128
//! depth = 4
//! heads = 4
//! kv_heads = 2                  # default: heads
//! # ffn_width = 320             # default: 2.5 × width
//! # vocab = 256                 # default: the data's vocabulary
//!
//! [mup]                         # default: MiniCPM's constants, base_width 256
//! base_width = 128
//!
//! [optimizer]
//! lr = 0.01                     # base rate η; hidden matrices get η/m under µP
//! weight_decay = 0.1
//! grad_clip = 1.0
//!
//! [schedule]                    # in tokens
//! kind = "wsd"                  # or "cosine", "constant" (a WSD trunk)
//! warmup_tokens = 100_000
//! decay = "exponential"         # or "linear", "1-sqrt"
//! decay_tokens = 200_000
//!
//! [training]
//! tokens = 2_000_000
//! batch_size = 16
//! seq_len = 128
//! eval_interval_tokens = 200_000
//! eval_tokens = 65_536
//! checkpoint_tokens = [1_000_000]
//! # evals = [ { name = "web", data = { kind = "text", path = "web.txt" } } ]   # named sets, see eval_sets
//! # precision = "bf16-mixed"    # GPUs; default "fp32" (or "tf32"); the CPU trains in fp32
//! # micro_batch_size = 4        # gradient accumulation: sequences per forward/backward pass
//!
//! [data]                        # see crate::data; default: the synthetic language
//! kind = "synthetic"
//! ```
//!
//! A decay branch adds `[branch]`: the trunk's run directory, the token count of the trunk
//! checkpoint it starts from, and optionally the data it decays on (MiniCPM's two-stage
//! pre-training). Everything else must match the trunk.
//!
//! Names: a `*Spec` section is what the file writes and is resolved before training uses it (a
//! model preset or partial shape into a `ModelShape`, a data spec into a token source, a schedule
//! against the run's length); a `*Config` section is used as written. Every key, its type,
//! default and meaning: the user guide's sweep-file reference (`windtunnel reference --sweep-file`),
//! whose second half is this file's.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::eval_sets::EvalSet;
use super::optimizer::AdamWConfig;
use crate::data::DataSpec;
use crate::model::mup::MupConfig;
use crate::model::precision::Precision;
use crate::model::shape::{self, ModelShape};
use crate::schedule::ScheduleSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// A name for the run, shown in messages [default: none; a sweep names runs by id].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Seed of the model init.
    #[serde(default)]
    pub seed: u64,
    /// The model shape: a preset, or width, depth and heads.
    pub model: ModelSpec,
    /// The µP constants and depth rule.
    #[serde(default)]
    pub mup: MupConfig,
    /// AdamW: the peak learning rate and its other settings.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule, in tokens: constant (a WSD trunk), wsd or cosine.
    pub schedule: ScheduleSpec,
    /// Lengths, batch, evaluation, checkpoints and logging.
    pub training: TrainingConfig,
    /// Where tokens come from: the synthetic language, a text or token file, a prepared set, or a mixture.
    #[serde(default)]
    pub data: DataSpec,
    /// A WSD decay branch: the trunk checkpoint it starts from (a sweep writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<BranchConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A named shape (`windtunnel model --list` lists them: MiniCPM's Table 8 proxies and models); excludes the shape keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// d_model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    /// Transformer layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// Query heads (width / heads is the head dimension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// Key/value heads (grouped-query attention) [default: heads].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<usize>,
    /// d_ff of the SwiGLU feed-forward [default: 2.5 × width].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ffn_width: Option<usize>,
    /// Vocabulary size [default: the data's].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<usize>,
}

impl ModelSpec {
    /// The shape, with `data_vocab` as the vocabulary unless one is given.
    pub fn resolve(&self, data_vocab: usize) -> anyhow::Result<ModelShape> {
        let shape = match &self.preset {
            Some(name) => {
                anyhow::ensure!(
                    self.width.is_none() && self.depth.is_none() && self.heads.is_none() && self.kv_heads.is_none() && self.ffn_width.is_none(),
                    "model: give either `preset` or the shape (`width`, `depth`, `heads`, ...), not both"
                );
                let mut s = shape::preset(name).map_err(|e| anyhow::anyhow!("model.preset: {e}"))?;
                s.vocab = self.vocab.unwrap_or(data_vocab);
                s
            }
            None => {
                let need = |v: Option<usize>, key: &str| v.with_context(|| format!("model.{key} is missing (or give model.preset)"));
                let width = need(self.width, "width")?;
                let heads = need(self.heads, "heads")?;
                ModelShape {
                    width,
                    depth: need(self.depth, "depth")?,
                    heads,
                    kv_heads: self.kv_heads.unwrap_or(heads),
                    ffn_width: self.ffn_width.unwrap_or(shape::default_ffn_width(width)),
                    vocab: self.vocab.unwrap_or(data_vocab),
                }
            }
        };
        shape.validate().map_err(|e| anyhow::anyhow!("model: {e}"))?;
        anyhow::ensure!(
            shape.vocab >= data_vocab,
            "model.vocab ({}) is smaller than the data's vocabulary ({data_vocab}); remove model.vocab to use the data's",
            shape.vocab
        );
        Ok(shape)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak (base) learning rate η.
    pub lr: f64,
    /// AdamW β₁.
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    /// AdamW β₂.
    #[serde(default = "d_beta2")]
    pub beta2: f64,
    /// AdamW ε (scaled with depth and width under the completep rule).
    #[serde(default = "d_eps")]
    pub eps: f64,
    /// Decoupled weight decay λ: each step multiplies the weight matrices by 1 − lr · λ.
    #[serde(default = "d_weight_decay")]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    #[serde(default = "d_grad_clip")]
    pub grad_clip: f64,
}

fn d_beta1() -> f64 {
    AdamWConfig::default().beta1
}
fn d_beta2() -> f64 {
    AdamWConfig::default().beta2
}
fn d_eps() -> f64 {
    AdamWConfig::default().eps
}
fn d_weight_decay() -> f64 {
    AdamWConfig::default().weight_decay
}
fn d_grad_clip() -> f64 {
    AdamWConfig::default().grad_clip
}

impl OptimizerConfig {
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig { beta1: self.beta1, beta2: self.beta2, eps: self.eps, weight_decay: self.weight_decay, grad_clip: self.grad_clip }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Training tokens of the whole run (for a branch: up to the end of its decay).
    pub tokens: u64,
    /// Sequences per optimizer step.
    pub batch_size: usize,
    /// Tokens per sequence (the context length).
    pub seq_len: usize,
    /// Evaluate every this many tokens (and always at the end).
    pub eval_interval_tokens: u64,
    /// Held-out tokens per evaluation.
    pub eval_tokens: u64,
    /// Token counts at which to keep a checkpoint (WSD branch points).
    #[serde(default)]
    pub checkpoint_tokens: Vec<u64>,
    /// Also checkpoint every this many minutes of training (0: never).
    #[serde(default = "d_checkpoint_minutes")]
    pub checkpoint_every_minutes: f64,
    /// Write a metrics line every this many steps.
    #[serde(default = "d_log_interval")]
    pub log_interval_steps: u64,
    /// Seed of the data order.
    #[serde(default)]
    pub data_seed: u64,
    /// A loss above this multiple of the first step's loss (or NaN/inf) marks the run diverged.
    #[serde(default = "d_divergence")]
    pub divergence_factor: f64,
    /// The arithmetic of the matrix products on a GPU: "fp32" (the default), "tf32" or
    /// "bf16-mixed" (bf16 products, fp32 master weights and optimizer state); see
    /// `model::precision`. The CPU trains in fp32.
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// Sequences per forward and backward pass (gradient accumulation): a step's batch is split
    /// into batch_size / micro_batch_size micro-batches whose gradients are summed before the
    /// optimizer step, so a GPU that cannot hold the whole batch still trains it. Evaluation
    /// runs micro-batches of this size too. Default: the whole batch; a value of batch_size or
    /// more means no accumulation, a smaller one must divide batch_size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_batch_size: Option<usize>,
    /// Named evaluation sets, each evaluated at every evaluation beside the default one (on
    /// [data], unchanged), on as many tokens (`eval_tokens`), its order and tokens fixed by
    /// `data_seed` and its name: `[{ name = "web", data = { kind = "text", path = "web.txt" } }]`.
    /// Logged as `evals.<name>` in metrics.jsonl, the results table's column `eval/<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evals: Vec<EvalSet>,
}

fn d_checkpoint_minutes() -> f64 {
    10.0
}
fn d_log_interval() -> u64 {
    1
}
fn d_divergence() -> f64 {
    2.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchConfig {
    /// The trunk's run directory.
    pub trunk: PathBuf,
    /// Tokens at the trunk checkpoint to start from (one of the trunk's checkpoint_tokens).
    pub from_tokens: u64,
    /// Data for the decay, when it differs from the trunk's (evaluation stays on [data]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSpec>,
}

/// The largest `batch_size` or `seq_len` a run may ask for (2^24 = 16.7M), and the most tokens
/// one step may hold (2^40): beyond any run, and small enough that no size derived from them
/// overflows.
pub const MAX_BATCH_OR_SEQ: usize = 1 << 24;
pub const MAX_TOKENS_PER_STEP: u64 = 1 << 40;
/// The most tokens a run may train or evaluate on: 10^15, some 60× the largest published runs.
pub const MAX_RUN_TOKENS: u64 = 1_000_000_000_000_000;

impl TrainingConfig {
    /// Tokens per optimizer step: batch_size × seq_len (saturating; `check_sizes` bounds it).
    pub fn tokens_per_step(&self) -> u64 {
        (self.batch_size as u64).saturating_mul(self.seq_len as u64).max(1)
    }

    /// Sequences per forward and backward pass: `micro_batch_size`, at most the batch.
    pub fn micro_batch(&self) -> usize {
        self.micro_batch_size.map_or(self.batch_size, |m| m.min(self.batch_size))
    }

    /// The sizes every other count is derived from, in range (checked before any arithmetic on them).
    pub fn check_sizes(&self) -> anyhow::Result<()> {
        for (key, value) in [("batch_size", self.batch_size), ("seq_len", self.seq_len)] {
            anyhow::ensure!(value <= MAX_BATCH_OR_SEQ, "training.{key} = {value} is beyond the largest allowed ({MAX_BATCH_OR_SEQ}); is it a typo?");
        }
        for (key, value) in [("tokens", self.tokens), ("eval_tokens", self.eval_tokens)] {
            anyhow::ensure!(value <= MAX_RUN_TOKENS, "training.{key} = {value} is beyond the largest allowed ({MAX_RUN_TOKENS:.0e}); is it a typo?");
        }
        let per_step = (self.batch_size as u64) * (self.seq_len as u64);
        anyhow::ensure!(
            per_step <= MAX_TOKENS_PER_STEP,
            "training.batch_size × training.seq_len = {per_step} tokens per step is beyond the largest allowed ({MAX_TOKENS_PER_STEP}); lower one of them"
        );
        anyhow::ensure!(
            self.checkpoint_every_minutes.is_finite() && self.checkpoint_every_minutes >= 0.0,
            "training.checkpoint_every_minutes must be a number of minutes ≥ 0 (0: never), got {}",
            self.checkpoint_every_minutes
        );
        anyhow::ensure!(
            self.divergence_factor.is_finite() && self.divergence_factor > 1.0,
            "training.divergence_factor must be a number above 1 (got {})",
            self.divergence_factor
        );
        Ok(())
    }

    /// Optimizer steps of the run.
    pub fn steps(&self) -> u64 {
        self.tokens / self.tokens_per_step()
    }

    /// The step after which a checkpoint at `tokens` is written (the first step boundary ≥ tokens).
    pub fn step_at_tokens(&self, tokens: u64) -> u64 {
        tokens.div_ceil(self.tokens_per_step())
    }
}

impl RunConfig {
    /// Read a run file (TOML, or JSON by extension). Errors name the file, line and key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read run file {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let config: Self = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        } else {
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?
        };
        Ok(config)
    }

    /// Checks that need no data or model: the numbers must describe a possible run.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.data.check_synthetic().map_err(|e| anyhow::anyhow!("data: {e}"))?;
        let t = &self.training;
        anyhow::ensure!(t.batch_size > 0, "training.batch_size must be at least 1");
        anyhow::ensure!(t.seq_len >= 2, "training.seq_len must be at least 2");
        if let Some(micro) = t.micro_batch_size {
            anyhow::ensure!(micro > 0, "training.micro_batch_size must be at least 1 (or left out: the whole batch at once)");
            anyhow::ensure!(
                micro >= t.batch_size || t.batch_size.is_multiple_of(micro),
                "training.micro_batch_size ({micro}) must divide training.batch_size ({}), so that every micro-batch is the same size; \
                 use a divisor such as {}",
                t.batch_size,
                largest_divisor_at_most(t.batch_size, micro)
            );
        }
        t.check_sizes()?;
        anyhow::ensure!(
            t.tokens >= t.tokens_per_step(),
            "training.tokens ({}) is less than one step of batch_size × seq_len = {} tokens",
            t.tokens,
            t.tokens_per_step()
        );
        anyhow::ensure!(t.eval_interval_tokens > 0, "training.eval_interval_tokens must be positive");
        anyhow::ensure!(t.eval_tokens >= t.seq_len as u64, "training.eval_tokens ({}) must be at least one sequence (seq_len = {})", t.eval_tokens, t.seq_len);
        anyhow::ensure!(t.log_interval_steps > 0, "training.log_interval_steps must be at least 1");
        if let Some(&beyond) = t.checkpoint_tokens.iter().find(|&&c| c > t.tokens) {
            anyhow::bail!("training.checkpoint_tokens has {beyond}, beyond the run's training.tokens ({}); checkpoints must lie inside the run", t.tokens);
        }
        anyhow::ensure!(!t.checkpoint_tokens.contains(&0), "training.checkpoint_tokens must be positive");
        super::eval_sets::validate(&t.evals)?;
        let o = &self.optimizer;
        anyhow::ensure!(o.lr.is_finite() && o.lr > 0.0, "optimizer.lr must be a positive number (got {})", o.lr);
        anyhow::ensure!((0.0..1.0).contains(&o.beta1) && (0.0..1.0).contains(&o.beta2), "optimizer.beta1 and beta2 must be in [0, 1)");
        anyhow::ensure!(o.eps > 0.0 && o.weight_decay >= 0.0 && o.grad_clip >= 0.0, "optimizer.eps must be positive, weight_decay and grad_clip non-negative");
        anyhow::ensure!(
            o.eps.is_finite() && o.weight_decay.is_finite() && o.grad_clip.is_finite(),
            "optimizer.eps, weight_decay and grad_clip must be finite numbers"
        );
        self.mup.validate().map_err(|e| anyhow::anyhow!("mup: {e}"))?;
        self.schedule.validate(t.steps() * t.tokens_per_step()).map_err(anyhow::Error::msg)?;
        if let Some(b) = &self.branch {
            anyhow::ensure!(
                b.from_tokens % t.tokens_per_step() == 0,
                "branch.from_tokens ({}) must be a whole number of steps of {} tokens",
                b.from_tokens,
                t.tokens_per_step()
            );
            anyhow::ensure!(b.from_tokens <= t.tokens, "branch.from_tokens ({}) is beyond training.tokens ({})", b.from_tokens, t.tokens);
        }
        Ok(())
    }

    /// A stable hash of the config (hex), to tie checkpoints and results to it.
    pub fn hash(&self) -> String {
        let json = serde_json::to_string(self).expect("config serializes");
        format!("{:016x}", super::checkpoint::checksum(json.as_bytes()))
    }

    /// The fields in which a branch differs from its trunk, other than those a branch may change
    /// (its length, schedule, checkpoints, name and decay data).
    pub fn differences_from_trunk(&self, trunk: &RunConfig) -> Vec<String> {
        let mut diffs = Vec::new();
        let mut check = |name: &str, a: String, b: String| {
            if a != b {
                diffs.push(format!("{name}: branch {a}, trunk {b}"));
            }
        };
        check("seed", self.seed.to_string(), trunk.seed.to_string());
        check("model", j(&self.model), j(&trunk.model));
        check("mup", j(&self.mup), j(&trunk.mup));
        check("optimizer", j(&self.optimizer), j(&trunk.optimizer));
        check("schedule.warmup_tokens", self.schedule.warmup_tokens().to_string(), trunk.schedule.warmup_tokens().to_string());
        check("training.batch_size", self.training.batch_size.to_string(), trunk.training.batch_size.to_string());
        check("training.seq_len", self.training.seq_len.to_string(), trunk.training.seq_len.to_string());
        check("training.data_seed", self.training.data_seed.to_string(), trunk.training.data_seed.to_string());
        check("training.eval_tokens", self.training.eval_tokens.to_string(), trunk.training.eval_tokens.to_string());
        check("data", j(&self.data), j(&trunk.data));
        diffs
    }
}

/// The largest divisor of `n` that is at most `limit` (1 at worst).
fn largest_divisor_at_most(n: usize, limit: usize) -> usize {
    (1..=limit.min(n)).rev().find(|d| n.is_multiple_of(*d)).unwrap_or(1)
}

fn j<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("config serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [model]
        width = 64
        depth = 2
        heads = 2
        [optimizer]
        lr = 0.01
        [schedule]
        kind = "wsd"
        warmup_tokens = 1000
        decay = "1-sqrt"
        decay_tokens = 2000
        [training]
        tokens = 10240
        batch_size = 4
        seq_len = 32
        eval_interval_tokens = 2048
        eval_tokens = 1024
        checkpoint_tokens = [5120]
    "#;

    fn parse(text: &str) -> anyhow::Result<RunConfig> {
        let c = RunConfig::parse(text, Path::new("run.toml"))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn a_good_file_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.optimizer.beta2, 0.95);
        assert_eq!(c.training.steps(), 80);
        assert_eq!(c.model.resolve(256).unwrap().ffn_width, 160);
        assert_eq!(c.hash(), parse(GOOD).unwrap().hash());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = parse(&GOOD.replace("lr = 0.01", "lr = 0.01\nlearning_rate = 1")).unwrap_err().to_string();
        assert!(e.contains("run.toml") && e.contains("learning_rate"), "{e}");
        let e = parse(&GOOD.replace("lr = 0.01", "lr = \"fast\"")).unwrap_err().to_string();
        assert!(e.contains("run.toml") && e.contains("lr") && e.contains("line"), "{e}");
        let e = parse(&GOOD.replace("checkpoint_tokens = [5120]", "checkpoint_tokens = [20000]")).unwrap_err().to_string();
        assert!(e.contains("checkpoint_tokens") && e.contains("20000"), "{e}");
        let e = parse(&GOOD.replace("decay_tokens = 2000", "decay_tokens = 20000")).unwrap_err().to_string();
        assert!(e.contains("decay_tokens"), "{e}");
        let e = parse(&GOOD.replace("heads = 2", "heads = 3")).unwrap().model.resolve(256).unwrap_err().to_string();
        assert!(e.contains("`heads` (3) must divide `width` (64)"), "{e}");
    }
}
