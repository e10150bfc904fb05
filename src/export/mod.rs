//! `windtunnel export DIR --budget-flops C | --target-params N`: take the wind tunnel's fits to
//! the full training run.
//!
//! 1. N and D: at a budget C (= 6ND) the data-model law's compute-optimal N_opt, and D = C / 6N of
//!    the exported shape's exact N (so the budget is spent exactly); for a given N, the D at which
//!    the shape's N is compute-optimal (N_opt(C) = G·(C/6)^a inverted).
//! 2. The shape: MiniCPM's deep-and-thin family (head dim 64, d_ff = 2.5·d, width a multiple of
//!    64, optional grouped-query attention), the width/depth ratio nearest `aspect_ratio` among
//!    the shapes within 5% of N; its exact N (the model's own count) is printed beside the target.
//! 3. µP transfer: the sweep's optimum base learning rate carries over unchanged; hidden matrices
//!    train at η/m and start at init_std/√m with m = width / base_width (`model/mup.rs`).
//! 4. The batch size from MiniCPM's batch-size law bs = k / L^γ at the predicted loss, and a WSD
//!    schedule in tokens and steps (1% warmup, a 10% decay of the sweep's decay shape).
//! 5. The predicted final loss with the bootstrap interval, and where every number came from.
//!
//! A fit the export needs and the sweep lacks is replaced by the sweep's own setting, loudly:
//! the summary and `recipe.json` say which sweep would produce the missing fit.

pub mod assumptions;
pub mod formats;
pub mod mixture;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::fit::bootstrap::{prediction_interval, Interval};
use crate::fit::law::Law;
use crate::fit::scans::LrColumns;
use crate::format::{si, thousands};
use crate::layout::SweepDir;
use crate::model::mup::{DepthRule, MupConfig, ParamGroup, Parameterization};
use crate::model::shape::ModelShape;
use crate::model::transformer::{RMS_NORM_EPS, ROPE_THETA};
use crate::results::inputs::fit_lr;
use crate::results::saved::LawChoice;
use crate::results::SweepResults;
use crate::schedule::ScheduleSpec;
use crate::sweep::plan::RunKind;
use crate::train::config::RunConfig;

/// MiniCPM's head dimension.
pub use crate::model::shape::HEAD_DIM;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Training compute C = 6ND in FLOPs.
    BudgetFlops(f64),
    /// Non-embedding parameters N.
    Params(f64),
}

#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub dir: PathBuf,
    pub target: Target,
    pub vocab: Option<usize>,
    pub seq_len: Option<usize>,
    /// Query heads per key/value head (1: multi-head attention).
    pub gqa_group: usize,
    /// Width / depth of the chosen shape.
    pub aspect_ratio: f64,
    pub lr_sweep: Option<PathBuf>,
    pub batch_sweep: Option<PathBuf>,
    /// Export even from an implausible law or without a learning-rate optimum (the warnings
    /// stay in `recipe.json`); otherwise both are refused.
    pub allow_implausible: bool,
    /// Fit the law with the default definition, not the one `fit law` saved.
    pub fresh: bool,
    /// Warn when N or compute lies more than this many times beyond the law's points.
    pub extrapolation_limit: f64,
    /// Take the data mixture from this sweep's `fit mixture` (else from the sweep's own, if any).
    pub mixture_sweep: Option<PathBuf>,
}

/// The configuration class `config.json`'s `auto_map` names for `AutoConfig`, written beside it.
pub const CONFIGURATION_MINICPM_PY: &str = include_str!("configuration_minicpm.py");

/// Where `AutoModel` and `AutoModelForCausalLM` find MiniCPM's modeling code: the Hub repository
/// of MiniCPM's own checkpoint (`repo--module.Class`, fetched with `trust_remote_code`).
const MINICPM_MODELING_REPO: &str = "openbmb/MiniCPM-2B-sft-bf16";

/// `config.json` in the Hugging Face MiniCPM format (`modeling_minicpm.py`), loadable with
/// `AutoConfig.from_pretrained(DIR, trust_remote_code=True)` as MiniCPM's checkpoints are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HfMiniCpmConfig {
    pub architectures: Vec<String>,
    pub model_type: String,
    /// `AutoConfig` → `configuration_minicpm.MiniCPMConfig` (written beside config.json);
    /// `AutoModel`, `AutoModelForCausalLM` → MiniCPM's modeling code on the Hub.
    pub auto_map: std::collections::BTreeMap<String, String>,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub num_hidden_layers: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub scale_emb: f64,
    pub scale_depth: f64,
    pub dim_model_base: usize,
    pub initializer_range: f64,
    pub hidden_act: String,
    pub tie_word_embeddings: bool,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
    pub torch_dtype: String,
    pub use_cache: bool,
}

/// The Hugging Face config of a shape trained with µP constants `mup`.
pub fn hf_config(shape: &ModelShape, mup: &MupConfig, max_position_embeddings: usize) -> HfMiniCpmConfig {
    HfMiniCpmConfig {
        architectures: vec!["MiniCPMForCausalLM".into()],
        model_type: "minicpm".into(),
        auto_map: [
            ("AutoConfig", "configuration_minicpm.MiniCPMConfig".to_string()),
            ("AutoModel", format!("{MINICPM_MODELING_REPO}--modeling_minicpm.MiniCPMModel")),
            ("AutoModelForCausalLM", format!("{MINICPM_MODELING_REPO}--modeling_minicpm.MiniCPMForCausalLM")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        hidden_size: shape.width,
        intermediate_size: shape.ffn_width,
        num_attention_heads: shape.heads,
        num_key_value_heads: shape.kv_heads,
        num_hidden_layers: shape.depth,
        vocab_size: shape.vocab,
        max_position_embeddings,
        rms_norm_eps: RMS_NORM_EPS,
        rope_theta: ROPE_THETA,
        scale_emb: mup.scale_emb,
        scale_depth: modeling_scale_depth(mup, shape.depth),
        dim_model_base: mup.base_width,
        initializer_range: mup.init_std,
        hidden_act: "silu".into(),
        tie_word_embeddings: true,
        bos_token_id: 1,
        eos_token_id: 2,
        torch_dtype: "bfloat16".into(),
        use_cache: true,
    }
}

/// The `scale_depth` that makes MiniCPM's modeling code, which scales each residual branch by
/// `scale_depth / √num_hidden_layers`, apply the sweep's depth rule at `depth`: the rule's own
/// constant under `minicpm`; under `completep` and `none`, their residual multiplier at `depth`
/// times √depth, so the exported model is the one the rule trains (their other depth terms, the
/// hidden learning rate, AdamW's ε and weight decay, are the optimizer's, in `recipe.json`).
fn modeling_scale_depth(mup: &MupConfig, depth: usize) -> f64 {
    match mup.depth_rule {
        DepthRule::Minicpm => mup.scale_depth,
        DepthRule::Completep | DepthRule::None => mup.residual_multiplier(depth) * (depth as f64).sqrt(),
    }
}

/// The MiniCPM-style shape (head dim 64, d_ff = 2.5·d, width a multiple of 64, `gqa_group`
/// query heads per key/value head) with N nearest `target_n`: among the shapes within 5% of it
/// (or the closest there is), the one whose width/depth is nearest `aspect_ratio`.
pub fn minicpm_shape(target_n: f64, vocab: usize, gqa_group: usize, aspect_ratio: f64) -> anyhow::Result<ModelShape> {
    anyhow::ensure!(target_n.is_finite() && target_n > 0.0, "the target N must be a positive number (got {target_n})");
    anyhow::ensure!(gqa_group >= 1, "--gqa-group must be at least 1");
    anyhow::ensure!(
        aspect_ratio.is_finite() && (1.0..=1e4).contains(&aspect_ratio),
        "--aspect-ratio {aspect_ratio}: width / depth must be between 1 and 10000 (MiniCPM-1.2B has 29.5, MiniCPM-2.4B 57.6)"
    );
    let shape = |width: usize, depth: usize| {
        let heads = width / HEAD_DIM;
        ModelShape { width, depth, heads, kv_heads: heads / gqa_group, ffn_width: crate::model::shape::default_ffn_width(width), vocab }
    };
    let mut candidates: Vec<(ModelShape, f64)> = Vec::new();
    for width in (HEAD_DIM..=65_536).step_by(HEAD_DIM) {
        if !(width / HEAD_DIM).is_multiple_of(gqa_group) {
            continue;
        }
        let one = shape(width, 1).non_embedding_params() as f64;
        let per_layer = shape(width, 2).non_embedding_params() as f64 - one;
        if one > target_n * 1.5 && !candidates.is_empty() {
            break;
        }
        let depth = (((target_n - (one - per_layer)) / per_layer).round() as usize).max(1);
        let s = shape(width, depth);
        candidates.push((s, (s.non_embedding_params() as f64 / target_n - 1.0).abs()));
    }
    anyhow::ensure!(!candidates.is_empty(), "no width divisible into heads of {HEAD_DIM} has {gqa_group} query heads per key/value head");
    let closest = candidates.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
    // Export refuses what it cannot honour: a shape far from the law's N is another model.
    anyhow::ensure!(
        closest <= 0.5,
        "no MiniCPM-style shape with --gqa-group {gqa_group} comes within 50% of N = {} (the nearest is {:+.0}% off); lower --gqa-group",
        crate::format::si(target_n),
        100.0 * candidates.iter().map(|c| c.0.non_embedding_params() as f64 / target_n - 1.0).min_by(|a, b| a.abs().total_cmp(&b.abs())).unwrap_or(f64::NAN)
    );
    let tolerance = closest.max(0.05);
    let off_aspect = |s: &ModelShape| (s.width as f64 / s.depth as f64 / aspect_ratio).ln().abs();
    let best = candidates
        .iter()
        .filter(|c| c.1 <= tolerance)
        .min_by(|a, b| off_aspect(&a.0).total_cmp(&off_aspect(&b.0)).then(a.1.total_cmp(&b.1)))
        .map(|c| c.0)
        .context("no candidate shape")?;
    best.validate()?;
    Ok(best)
}

/// The most training tokens an export may ask for (10^18: a hundred times the largest corpora).
const MAX_TOKENS: f64 = 1e18;

/// The D at which N is compute-optimal under `law` (its form inverts its allocation).
pub fn optimal_tokens_for(law: &Law, n: f64) -> f64 {
    law.optimal_tokens_for(n)
}

#[derive(Debug, Clone, Serialize)]
pub struct LearningRates {
    /// The base learning rate η (embedding and norms train at η).
    pub base: f64,
    /// Hidden matrices: η / m.
    pub hidden_matrices: f64,
    pub embedding: f64,
    pub norms: f64,
    /// m = width / base_width.
    pub width_multiplier: f64,
    /// Init std of the hidden matrices: init_std / √m (the embedding: init_std).
    pub hidden_init_std: f64,
    pub source: String,
    /// The depth rule at the exported depth: what multiplies each residual branch, AdamW's ε and
    /// the hidden matrices' weight decay (see `model::mup`).
    pub depth: DepthMultipliers,
}

/// A depth rule's multipliers at one depth.
#[derive(Debug, Clone, Serialize)]
pub struct DepthMultipliers {
    pub rule: crate::model::mup::DepthRule,
    pub base_depth: Option<usize>,
    pub depth: usize,
    pub residual_multiplier: f64,
    /// Factors on AdamW's ε: hidden matrices and blocks' norms; embedding and final norm.
    pub hidden_eps_multiplier: f64,
    pub embedding_eps_multiplier: f64,
    pub hidden_weight_decay_multiplier: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchChoice {
    pub sequences: u64,
    pub tokens: u64,
    /// The law's optimum in tokens before rounding to whole sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub law_tokens: Option<f64>,
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleChoice {
    pub schedule: ScheduleSpec,
    pub total_tokens: u64,
    pub total_steps: u64,
    pub warmup_steps: u64,
    pub stable_tokens: u64,
    pub decay_steps: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recipe {
    pub sweep: String,
    pub sweep_dir: PathBuf,
    pub windtunnel_version: String,
    pub target: Target,
    /// The N the law chose (before fitting it to a shape) and the D to train on.
    pub target_non_embedding_params: f64,
    pub shape: ModelShape,
    /// The exact count of the exported shape (the model's own code).
    pub non_embedding_params: u64,
    pub total_params: u64,
    pub tokens: u64,
    pub tokens_per_param: f64,
    pub flops_6nd: f64,
    /// Precise training FLOPs (6N + attention + LM head per token).
    pub flops: f64,
    pub seq_len: usize,
    pub mup: MupConfig,
    pub learning_rates: LearningRates,
    pub weight_decay: f64,
    /// AdamW as the sweep trained (β₁, β₂, ε, λ, gradient clip): what the trainers' exports carry.
    pub adamw: crate::train::optimizer::AdamWConfig,
    pub batch: BatchChoice,
    pub schedule: ScheduleChoice,
    pub predicted_loss: f64,
    /// The prediction interval of the run's final loss (the law's bootstrap and the runs' scatter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_loss_interval: Option<Interval>,
    /// The data-model law and the definition it was fitted with.
    pub law: Law,
    pub law_definition: crate::fit::report::LawDefinition,
    /// A saved definition other than the default, and the command that saved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub law_saved_fit: Option<String>,
    /// What the export assumes beyond the sweep's range (see `assumptions`).
    pub assumptions: assumptions::Assumptions,
    pub warnings: Vec<String>,
    /// The data mixture `fit mixture` chose, when the sweep (or `--mixture-sweep`) keeps one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mixture: Option<mixture::MixtureChoice>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    pub config: HfMiniCpmConfig,
    pub recipe: Recipe,
}

impl Exported {
    /// Write `config.json`, its `configuration_minicpm.py` and `recipe.json` into `out`; returns
    /// their paths.
    pub fn write(&self, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let [config, configuration, recipe] = crate::layout::export_files(out);
        crate::fsutil::atomic_write(&config, (serde_json::to_string_pretty(&self.config)? + "\n").as_bytes())?;
        crate::fsutil::atomic_write(&configuration, CONFIGURATION_MINICPM_PY.as_bytes())?;
        crate::fsutil::atomic_write(&recipe, (serde_json::to_string_pretty(&self.recipe)? + "\n").as_bytes())?;
        let mut written = vec![config, configuration, recipe];
        written.extend(self.recipe.write_mixture(out)?);
        Ok(written)
    }
}

/// Build the export from the sweep's fits.
pub fn export(request: &ExportRequest) -> anyhow::Result<Exported> {
    let dir = &request.dir;
    let data = SweepResults::load(dir)?.with_law(if request.fresh { LawChoice::Fresh } else { LawChoice::Saved });
    let report = data.law().as_ref().map_err(|e| {
        anyhow::anyhow!(
            "{}: the export needs the data-model law and it cannot be fitted: {e}\n\
             A WSD data-model grid (several widths, each decayed at several token counts) produces it: \
             see the data-model grid of sweeps/quickstart.toml or sweeps/minicpm-data-model.toml",
            dir.display()
        )
    })?;
    let law = report.fit.law.clone();
    let mut warnings = Vec::new();
    if !law.is_plausible() {
        let why = format!("the fitted law ({}) is outside any plausible range: {}", law.summary(), what_the_points_lack(&report.data));
        anyhow::ensure!(
            request.allow_implausible,
            "{}: {why}. Run a larger data-model grid, or pass --allow-implausible to export anyway (the warning stays in recipe.json)",
            dir.display()
        );
        warnings.push(format!("{why}; the exported N and D are not trustworthy"));
    }
    let config = &reference_run(&data)?.config;
    let mup = config.mup;
    anyhow::ensure!(mup.is_mup(), "{}: the sweep's runs use the standard parameterization; exporting transfers hyperparameters under µP", dir.display());
    let sweep_vocab = data
        .plan
        .runs
        .iter()
        .find_map(|r| std::fs::read_to_string(SweepDir::new(dir).run(&r.id).record()).ok())
        .and_then(|t| serde_json::from_str::<crate::train::run::RunRecord>(&t).ok())
        .map(|r| r.data_vocab);
    let vocab = request.vocab.or(sweep_vocab).context("the sweep's vocabulary is unknown (no run has started); give --vocab")?;
    let seq_len = request.seq_len.unwrap_or(config.training.seq_len);
    anyhow::ensure!(vocab >= 2, "--vocab {vocab}: a vocabulary needs at least 2 tokens");
    anyhow::ensure!(seq_len >= 2, "--seq-len {seq_len}: a training sequence needs at least 2 tokens (train refuses fewer)");
    anyhow::ensure!(
        seq_len <= crate::train::config::MAX_BATCH_OR_SEQ,
        "--seq-len {seq_len} is beyond the largest allowed ({})",
        crate::train::config::MAX_BATCH_OR_SEQ
    );

    let (target_n, shape, tokens) = size(request, &law, vocab, &mut warnings)?;
    let n = shape.non_embedding_params();
    let learning_rates = learning_rates(request, &data, config, &shape, &mut warnings)?;
    let batch = batch_size(request, &data, config, law.loss(n as f64, tokens), seq_len, &mut warnings)?;
    let schedule = schedule(&data, tokens, batch.tokens)?;
    let tokens = schedule.total_tokens as f64;
    let predicted = law.loss(n as f64, tokens);
    let level = report.bootstrap.as_ref().map_or(0.95, |b| b.level);
    // Where the full run's loss will lie: the law's uncertainty and one run's scatter about it.
    let seed = report.definition.seed;
    let predicted_loss_interval = prediction_interval(predicted, &report.bootstrap_laws, &report.fit.log_residuals, n as f64, tokens, level, seed);
    let range = assumptions::SweepRange::of(&data, report);
    let mut assumptions = assumptions::check(range, &shape, seq_len, tokens, request.extrapolation_limit, &mut warnings);
    let predicted_loss_interval = assumptions.widen(predicted_loss_interval);

    let recipe = Recipe {
        sweep: data.plan.name.clone(),
        sweep_dir: dir.clone(),
        windtunnel_version: env!("CARGO_PKG_VERSION").into(),
        target: request.target,
        target_non_embedding_params: target_n,
        shape,
        non_embedding_params: n,
        total_params: shape.total_params(),
        tokens: tokens as u64,
        tokens_per_param: tokens / n as f64,
        flops_6nd: 6.0 * n as f64 * tokens,
        flops: shape.flops_per_token(seq_len).total as f64 * tokens,
        seq_len,
        mup,
        learning_rates,
        weight_decay: config.optimizer.weight_decay,
        adamw: config.optimizer.adamw(),
        batch,
        schedule,
        predicted_loss: predicted,
        predicted_loss_interval,
        law,
        law_definition: report.definition.clone(),
        law_saved_fit: report.saved_fit.clone(),
        assumptions,
        warnings,
        mixture: match &request.mixture_sweep {
            Some(sweep) => mixture::chosen(sweep, None, true)?,
            None => mixture::chosen(dir, Some(&data.plan), false)?,
        },
    };
    Ok(Exported { config: hf_config(&shape, &mup, seq_len), recipe })
}

/// The run whose settings the export carries over: a µP run of the data-model grid, else any µP
/// run, else any run.
fn reference_run(data: &SweepResults) -> anyhow::Result<&crate::sweep::plan::PlannedRun> {
    let runs = &data.plan.runs;
    runs.iter()
        .find(|r| r.kind != RunKind::Plain && r.config.mup.parameterization == Parameterization::Mup)
        .or_else(|| runs.iter().find(|r| r.config.mup.parameterization == Parameterization::Mup))
        .or_else(|| runs.first())
        .context("the sweep has no runs")
}

/// N, then the shape, then D for the shape's exact N: at a budget, D = C / 6N spends exactly the
/// budget; for a given N, the law's compute-optimal D of the shape's N. Returns (target N, shape, D).
fn size(request: &ExportRequest, law: &Law, vocab: usize, warnings: &mut Vec<String>) -> anyhow::Result<(f64, ModelShape, f64)> {
    let target_n = match request.target {
        Target::BudgetFlops(c) => {
            anyhow::ensure!(c.is_finite() && c > 0.0, "--budget-flops must be a positive FLOP count (got {c})");
            law.compute_optimal(c).0
        }
        Target::Params(n) => {
            anyhow::ensure!(n.is_finite() && n > 0.0, "--target-params must be a positive count (got {n})");
            n
        }
    };
    anyhow::ensure!(
        target_n <= crate::model::shape::MAX_PARAMS,
        "{}: N = {target_n:.3e} is beyond the {:.0e} parameters any shape here can have; ask for a smaller budget or N",
        match request.target {
            Target::BudgetFlops(c) => format!("at --budget-flops {c:.3e} the law's compute-optimal N"),
            Target::Params(_) => "--target-params".to_string(),
        },
        crate::model::shape::MAX_PARAMS
    );
    let shape = minicpm_shape(target_n, vocab, request.gqa_group, request.aspect_ratio)?;
    let n = shape.non_embedding_params() as f64;
    if (n / target_n - 1.0).abs() > 0.05 {
        warnings.push(format!("no MiniCPM-style shape is within 5% of N = {}; the closest has {}", si(target_n), si(n)));
    }
    let tokens = match request.target {
        Target::BudgetFlops(c) => c / (6.0 * n),
        Target::Params(_) => optimal_tokens_for(law, n),
    };
    anyhow::ensure!(
        tokens.is_finite() && (1.0..=MAX_TOKENS).contains(&tokens),
        "the run would train on D = {tokens:.3e} tokens (N = {}), outside what a run can count (1 to {MAX_TOKENS:.0e}); \
         the law is extrapolating far beyond the sweep: ask for a smaller budget or N",
        si(n)
    );
    let ratio = tokens / n;
    if !(1.0..=1000.0).contains(&ratio) {
        warnings.push(format!(
            "the law asks for {ratio:.3e} tokens per parameter, far outside the 10–100 of published LLM laws: \
             it is extrapolating beyond what the sweep's points constrain (see the allocation chart's band)"
        ));
    }
    Ok((target_n, shape, tokens))
}

/// The learning rates of the full run: the widest width's µP optimum, transferred by the µP rules.
/// The sweep's own learning-rate fit is `data.lr()`; `--lr-sweep` fits another sweep's.
fn learning_rates(
    request: &ExportRequest,
    data: &SweepResults,
    config: &RunConfig,
    shape: &ModelShape,
    warnings: &mut Vec<String>,
) -> anyhow::Result<LearningRates> {
    let lr_dir = request.lr_sweep.as_deref().unwrap_or(&request.dir);
    let fitted = match &request.lr_sweep {
        Some(other) => fit_lr(other, &LrColumns::results_table(), 0).map_err(|e| crate::results::FitError::LearningRate(format!("{e:#}"))),
        None => data.lr().clone(),
    };
    let rule = config.mup.depth_rule.to_string();
    let (base_lr, lr_source) = match fitted {
        Ok(lr) => match lr
            .groups
            .iter()
            .filter(|(g, _)| g == "mup" || g.starts_with("mup, "))
            .max_by_key(|(g, _)| g.contains(&rule))
            .or_else(|| (lr.groups.len() == 1).then(|| &lr.groups[0]))
        {
            Some((_, t)) if t.depth_drift.is_some() && !t.optima.is_empty() => {
                // Scans across depth at one width: the optimum at the exported depth from the
                // fitted drift, ln lr* = a + b·ln L.
                let d = t.depth_drift.as_ref().expect("checked");
                let lr = (d.intercept + d.slope * (shape.depth as f64).ln()).exp();
                let (shallow, deep) = t.optima.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), o| (lo.min(o.depth), hi.max(o.depth)));
                if (shape.depth as f64) > deep * 1.5 {
                    warnings.push(format!("the learning rate is extrapolated in depth: scans went to depth {deep}, the export has {}", shape.depth));
                }
                (
                    lr,
                    format!(
                        "the learning-rate optimum's drift in depth ({:+.3} [{:+.3}, {:+.3}] per ln depth, scans at depths {shallow} to {deep} of {}), applied at depth {}",
                        d.slope,
                        d.slope_lower,
                        d.slope_upper,
                        lr_dir.display(),
                        shape.depth
                    ),
                )
            }
            Some((_, t)) if !t.optima.is_empty() => {
                let widest = t.optima.iter().max_by(|a, b| a.width.total_cmp(&b.width)).expect("optima are not empty");
                if let Some(caveat) = widest.caveat() {
                    warnings.push(format!("the learning-rate optimum at width {}: {caveat}", widest.width));
                }
                if let Some(d) = t.drift.as_ref().filter(|d| d.slope_lower > 0.0 || d.slope_upper < 0.0) {
                    warnings.push(format!(
                        "the µP optimum drifts with width (slope {:+.3} [{:+.3}, {:+.3}]): check the coordinate check",
                        d.slope, d.slope_lower, d.slope_upper
                    ));
                }
                (
                    widest.lr_opt,
                    format!("µP learning-rate optimum at width {} of {} ([{:.3e}, {:.3e}])", widest.width, lr_dir.display(), widest.lr_lower, widest.lr_upper),
                )
            }
            _ => fallback_lr(request, config.optimizer.lr, lr_dir, "it has no µP learning-rate scan", warnings)?,
        },
        Err(e) => fallback_lr(request, config.optimizer.lr, lr_dir, e.reason(), warnings)?,
    };
    let (mup, width) = (config.mup, shape.width);
    Ok(LearningRates {
        base: base_lr,
        hidden_matrices: base_lr * mup.lr_multiplier(ParamGroup::HiddenMatrix, width),
        embedding: base_lr * mup.lr_multiplier(ParamGroup::Embedding, width),
        norms: base_lr * mup.lr_multiplier(ParamGroup::Norm, width),
        width_multiplier: mup.width_multiplier(width),
        hidden_init_std: mup.init_std(ParamGroup::HiddenMatrix, width),
        source: lr_source,
        depth: DepthMultipliers {
            rule: mup.depth_rule,
            base_depth: mup.base_depth,
            depth: shape.depth,
            residual_multiplier: mup.residual_multiplier(shape.depth),
            hidden_eps_multiplier: mup.eps_multiplier(ParamGroup::HiddenMatrix, width, shape.depth, false),
            embedding_eps_multiplier: mup.eps_multiplier(ParamGroup::Embedding, width, shape.depth, false),
            hidden_weight_decay_multiplier: mup.weight_decay_multiplier(ParamGroup::HiddenMatrix, width),
        },
    })
}

/// The batch: MiniCPM's batch-size law at the predicted loss when a sweep has one, else the
/// sweep's own tokens per step (with a warning).
fn batch_size(
    request: &ExportRequest,
    data: &SweepResults,
    config: &RunConfig,
    predicted: f64,
    seq_len: usize,
    warnings: &mut Vec<String>,
) -> anyhow::Result<BatchChoice> {
    let batch_dir = request.batch_sweep.as_deref().unwrap_or(&request.dir);
    let fitted = match &request.batch_sweep {
        Some(other) => SweepResults::load(other).ok().and_then(|other| other.batch().as_ref().ok().cloned()),
        None => data.batch().as_ref().ok().cloned(),
    };
    let Some(b) = fitted.and_then(|b| b.minicpm) else {
        let tokens_per_step = config.training.tokens_per_step();
        let sequences = (tokens_per_step / seq_len as u64).max(1);
        warnings.push(format!(
            "no batch-size law in {}: the batch keeps the sweep's {} tokens per step, which is no optimum for the full run; \
             run a sweep over training.batch_size at 3 or more sizes (sweeps/minicpm-batch-size.toml) and pass --batch-sweep",
            batch_dir.display(),
            tokens_per_step
        ));
        return Ok(BatchChoice {
            sequences,
            tokens: sequences * seq_len as u64,
            law_tokens: None,
            source: if sequences * seq_len as u64 == tokens_per_step {
                format!("the sweep's tokens per step ({tokens_per_step}); no batch-size law")
            } else {
                format!("the sweep's {tokens_per_step} tokens per step, in whole sequences of {seq_len}; no batch-size law")
            },
        });
    };
    let law_tokens = b.k / predicted.powf(b.gamma);
    anyhow::ensure!(
        law_tokens.is_finite() && law_tokens <= crate::train::config::MAX_TOKENS_PER_STEP as f64,
        "the batch-size law of {} asks for {law_tokens:.3e} tokens per step at L = {predicted:.4}, beyond any batch; check `fit batch` there or drop --batch-sweep",
        batch_dir.display()
    );
    let sequences = ((law_tokens / seq_len as f64).round() as u64).max(1);
    Ok(BatchChoice {
        sequences,
        tokens: sequences * seq_len as u64,
        law_tokens: Some(law_tokens),
        source: format!("batch-size law bs = {:.3e} / L^{:.3} of {} at L = {predicted:.4}", b.k, b.gamma, batch_dir.display()),
    })
}

/// A WSD schedule of whole steps: `tokens` rounded up to a whole number of batches, 1% warmup,
/// 10% decay in the sweep's decay shape.
fn schedule(data: &SweepResults, tokens: f64, batch_tokens: u64) -> anyhow::Result<ScheduleChoice> {
    let total_steps = (tokens / batch_tokens as f64).ceil().max(1.0) as u64;
    let total_tokens = total_steps.checked_mul(batch_tokens).context("the run's tokens overflow; ask for a smaller budget or N")?;
    let warmup_steps = (total_steps / 100).max(1).min(total_steps);
    let decay_steps = (total_steps / 10).max(1).min(total_steps - warmup_steps);
    let decay = data
        .plan
        .runs
        .iter()
        .find_map(|r| match r.config.schedule {
            ScheduleSpec::Wsd { decay, .. } => Some(decay),
            _ => None,
        })
        .unwrap_or_default();
    Ok(ScheduleChoice {
        schedule: ScheduleSpec::Wsd {
            warmup_tokens: warmup_steps * batch_tokens,
            decay,
            decay_tokens: decay_steps * batch_tokens,
            half_life_tokens: None,
            final_lr_fraction: 0.0,
        },
        total_tokens,
        total_steps,
        warmup_steps,
        stable_tokens: (total_steps - warmup_steps - decay_steps) * batch_tokens,
        decay_steps,
    })
}

/// Without a learning-rate optimum: refused, or with `--allow-implausible` the sweep's base rate
/// and a warning.
fn fallback_lr(request: &ExportRequest, lr: f64, dir: &Path, why: &str, warnings: &mut Vec<String>) -> anyhow::Result<(f64, String)> {
    let missing = format!(
        "no learning-rate optimum from {} ({why}); run a µP scan over optimizer.lr at 3 or more widths (the lr-transfer grid of \
         sweeps/quickstart.toml, or sweeps/minicpm-lr-stability.toml) and pass --lr-sweep",
        dir.display()
    );
    anyhow::ensure!(request.allow_implausible, "{missing}, or pass --allow-implausible to export with the sweep's base learning rate η = {lr}");
    warnings.push(format!("{missing}: η = {lr} is the sweep's base learning rate, not an optimum"));
    Ok((lr, format!("the sweep's base learning rate (no learning-rate scan in {})", dir.display())))
}

/// What a data-model grid whose law is implausible lacks, from its points.
fn what_the_points_lack(points: &[crate::fit::law::Point]) -> String {
    let distinct = |f: fn(&crate::fit::law::Point) -> f64| {
        let mut v: Vec<f64> = points.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    };
    let (sizes, tokens) = (distinct(|p| p.n), distinct(|p| p.d));
    let span = |v: &[f64]| v.last().zip(v.first()).map_or(1.0, |(hi, lo)| hi / lo);
    format!(
        "its {} points span {} model sizes ({:.1}× in N) and {} token counts ({:.1}× in D), which do not pin it down \
         (it needs more sizes, more decay points per size, or a wider range of both)",
        points.len(),
        sizes.len(),
        span(&sizes),
        tokens.len(),
        span(&tokens)
    )
}

impl std::fmt::Display for Exported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let recipe = &self.recipe;
        let shape = &recipe.shape;
        let target = match recipe.target {
            Target::BudgetFlops(c) => format!("compute-optimal at C = {c:.3e} FLOPs (6ND)"),
            Target::Params(n) => format!("N = {} with the law's compute-optimal tokens per parameter", si(n)),
        };
        writeln!(f, "export from sweep `{}` ({}): {target}", recipe.sweep, recipe.sweep_dir.display())?;
        writeln!(
            f,
            "  model    width {} · depth {} · heads {} (kv {}) · d_ff {} · vocab {}",
            shape.width, shape.depth, shape.heads, shape.kv_heads, shape.ffn_width, shape.vocab
        )?;
        writeln!(
            f,
            "           N = {} non-embedding parameters (target {}; {:+.2}%), {} in total",
            thousands(recipe.non_embedding_params),
            si(recipe.target_non_embedding_params),
            (recipe.non_embedding_params as f64 / recipe.target_non_embedding_params - 1.0) * 100.0,
            thousands(recipe.total_params)
        )?;
        writeln!(
            f,
            "  data     D = {} tokens ({:.1} per parameter), C = 6ND = {:.3e} FLOPs ({:.3e} precise)",
            si(recipe.tokens as f64),
            recipe.tokens_per_param,
            recipe.flops_6nd,
            recipe.flops
        )?;
        let lr = &recipe.learning_rates;
        writeln!(
            f,
            "  µP       base_width {}, m = {:.2}, scale_emb {}, scale_depth {}, init_std {} (hidden {:.4})",
            recipe.mup.base_width, lr.width_multiplier, recipe.mup.scale_emb, recipe.mup.scale_depth, recipe.mup.init_std, lr.hidden_init_std
        )?;
        let depth = &lr.depth;
        if !depth.rule.is_default() {
            writeln!(
                f,
                "  depth    rule {} (base depth {}): residual × {:.4} (config.json's scale_depth {:.4} = that × √{}, for MiniCPM's modeling code), AdamW ε × {:.4} (hidden) / {:.4} (embedding), hidden weight decay × {:.4}",
                depth.rule,
                depth.base_depth.map_or("-".into(), |b| b.to_string()),
                depth.residual_multiplier,
                depth.residual_multiplier * (depth.depth as f64).sqrt(),
                depth.depth,
                depth.hidden_eps_multiplier,
                depth.embedding_eps_multiplier,
                depth.hidden_weight_decay_multiplier
            )?;
        }
        writeln!(f, "  lr       η = {:.4e} (embedding, norms); hidden matrices η/m = {:.4e}; from {}", lr.base, lr.hidden_matrices, lr.source)?;
        let plural = if recipe.batch.sequences == 1 { "" } else { "s" };
        writeln!(
            f,
            "  batch    {} sequence{plural} × {} = {} tokens; from {}",
            recipe.batch.sequences, recipe.seq_len, recipe.batch.tokens, recipe.batch.source
        )?;
        let schedule = &recipe.schedule;
        writeln!(
            f,
            "  schedule WSD: {} steps; warmup {} steps, stable {} tokens, {} decay over {} steps",
            schedule.total_steps,
            schedule.warmup_steps,
            si(schedule.stable_tokens as f64),
            match schedule.schedule {
                ScheduleSpec::Wsd { decay, .. } => decay.to_string(),
                _ => String::new(),
            },
            schedule.decay_steps
        )?;
        write!(f, "  loss     predicted {:.4} nats/token", recipe.predicted_loss)?;
        match &recipe.predicted_loss_interval {
            Some(interval) => write!(f, " [{:.4}, {:.4}] for the run, {}", interval.lower, interval.upper, recipe.assumptions.predicted_loss)?,
            None => write!(f, ", a point estimate (the law has no bootstrap)")?,
        }
        writeln!(f, " (law {})", recipe.law.summary())?;
        writeln!(f, "  law      definition: {}", recipe.law_definition.describe())?;
        if let Some(note) = &recipe.law_saved_fit {
            writeln!(f, "           {note}")?;
        }
        if let Some(mixture) = &recipe.mixture {
            write!(f, "{mixture}")?;
        }
        for warning in &recipe.warnings {
            writeln!(f, "  warning: {warning}")?;
        }
        Ok(())
    }
}

impl Recipe {
    /// `mixture.toml`: the chosen mixture's block for the full run's sweep file, when there is one.
    pub fn write_mixture(&self, out: &Path) -> anyhow::Result<Option<PathBuf>> {
        let Some(block) = self.mixture.as_ref().and_then(|m| m.data_block.as_ref()) else { return Ok(None) };
        let path = out.join("mixture.toml");
        let text = format!("# The data mixture `windtunnel fit mixture` chose (see recipe.json's `mixture`).\n{block}\n");
        crate::fsutil::atomic_write(&path, text.as_bytes())?;
        Ok(Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::shape::preset;

    #[test]
    fn the_minicpm_models_are_recovered_from_their_n() {
        let small = preset("minicpm-1.2b").unwrap();
        let found = minicpm_shape(small.non_embedding_params() as f64, small.vocab, 3, 29.5).unwrap();
        assert_eq!(found, small);
        let large = preset("minicpm-2.4b").unwrap();
        let found = minicpm_shape(large.non_embedding_params() as f64, large.vocab, 1, 57.6).unwrap();
        assert_eq!(found, large);
    }

    #[test]
    fn exported_minicpm_configs_carry_the_published_values() {
        let shape = preset("minicpm-2.4b").unwrap();
        let c = serde_json::to_value(hf_config(&shape, &MupConfig::default(), 4096)).unwrap();
        for (key, value) in [
            ("model_type", serde_json::json!("minicpm")),
            ("architectures", serde_json::json!(["MiniCPMForCausalLM"])),
            ("hidden_size", serde_json::json!(2304)),
            ("intermediate_size", serde_json::json!(5760)),
            ("num_attention_heads", serde_json::json!(36)),
            ("num_key_value_heads", serde_json::json!(36)),
            ("num_hidden_layers", serde_json::json!(40)),
            ("vocab_size", serde_json::json!(122753)),
            ("scale_emb", serde_json::json!(12.0)),
            ("scale_depth", serde_json::json!(1.4)),
            ("dim_model_base", serde_json::json!(256)),
            ("initializer_range", serde_json::json!(0.1)),
            ("rms_norm_eps", serde_json::json!(1e-5)),
            ("rope_theta", serde_json::json!(10000.0)),
            ("hidden_act", serde_json::json!("silu")),
            ("tie_word_embeddings", serde_json::json!(true)),
        ] {
            assert_eq!(c[key], value, "{key}");
        }
        let c = hf_config(&preset("minicpm-1.2b").unwrap(), &MupConfig::default(), 4096);
        assert_eq!(
            (c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads, c.num_hidden_layers, c.vocab_size),
            (1536, 3840, 24, 8, 52, 73440)
        );
    }

    #[test]
    fn the_exported_scale_depth_applies_the_depth_rule_in_minicpms_modeling_code() {
        let shape = preset("minicpm-2.4b").unwrap();
        for rule in [DepthRule::Minicpm, DepthRule::Completep, DepthRule::None] {
            let mup = MupConfig { depth_rule: rule, base_depth: Some(4), ..MupConfig::default() };
            let c = hf_config(&shape, &mup, 4096);
            // What MiniCPM's modeling code multiplies each residual branch by.
            let applied = c.scale_depth / (c.num_hidden_layers as f64).sqrt();
            assert!((applied / mup.residual_multiplier(shape.depth) - 1.0).abs() < 1e-12, "{rule:?}: {applied}");
        }
        let c = hf_config(&shape, &MupConfig::default(), 4096);
        assert_eq!(c.scale_depth, 1.4, "MiniCPM's own rule exports its constant");
        let completep = MupConfig { depth_rule: DepthRule::Completep, base_depth: Some(4), ..MupConfig::default() };
        // scale_depth·√(L₀/L) at L = 40, L₀ = 4.
        assert!((hf_config(&shape, &completep, 4096).scale_depth - 1.4 * (4.0f64 / 40.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn shapes_follow_the_minicpm_rules_and_land_near_the_target() {
        for target in [2e5, 3e6, 5e7, 7e8, 8e9] {
            let s = minicpm_shape(target, 32000, 1, 40.0).unwrap();
            assert_eq!(s.width % 64, 0);
            assert_eq!(s.width / s.heads, HEAD_DIM);
            assert_eq!(s.ffn_width * 2, s.width * 5);
            if target >= 3e6 {
                assert!((s.non_embedding_params() as f64 / target - 1.0).abs() < 0.05, "{target}: {s:?}");
            }
        }
        let gqa = minicpm_shape(5e8, 32000, 4, 40.0).unwrap();
        assert_eq!(gqa.heads, gqa.kv_heads * 4);
    }

    #[test]
    fn tokens_for_a_given_n_invert_the_compute_optimal_allocation() {
        let law = Law::chinchilla(1.8, 480.0, 2100.0, 0.35, 0.37);
        let (n, d) = law.compute_optimal(1e22);
        assert!((optimal_tokens_for(&law, n) / d - 1.0).abs() < 1e-9);
    }
}
