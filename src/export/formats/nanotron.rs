//! `export --format nanotron`: a nanotron YAML config, `nanotron.yaml`
//! (`torchrun ... run_train.py --config-file nanotron.yaml`, after adding the data stages, the
//! tokenizer and the checkpoints).
//!
//! Every key is nanotron's own, read at huggingface/nanotron commit
//! 2411b022a75fb7f7561a1bb4166706da5e1b76de (2026-04-07):
//! - src/nanotron/config/config.py: `Config` (`general`, `parallelism`, `model`, `tokens`,
//!   `optimizer`), `ModelArgs` (`model_config`, `init_method`, `dtype`,
//!   `make_vocab_size_divisible_by`), `TokensArgs` (`sequence_length`, `train_steps`,
//!   `micro_batch_size`, `batch_accumulation_per_replica`), `OptimizerArgs` (`weight_decay`,
//!   `clip_grad`, `zero_stage`, `accumulate_grad_in_fp32`, `weight_decay_exclude_named_params`),
//!   `AdamWOptimizerArgs` (`adam_beta1`, `adam_beta2`, `adam_eps`, `torch_adam_is_fused`),
//!   `LRSchedulerArgs` (`learning_rate`, `lr_warmup_steps`, `lr_warmup_style`, `lr_decay_style`
//!   linear | cosine | 1-sqrt, `lr_decay_steps`, `lr_decay_starting_step`, `min_decay_lr`);
//! - src/nanotron/config/models_config.py: `LlamaConfig`'s fields, `RandomInit` (`std`,
//!   `scaling_method`), `SpectralMupInit` (`use_mup`);
//! - src/nanotron/config/parallelism_config.py: `ParallelismArgs` (`dp`, `pp`, `tp`, ...);
//! - src/nanotron/helpers.py `lr_scheduler_builder`: warmup to step `lr_warmup_steps`, constant
//!   until `lr_decay_starting_step`, then `lr_decay_style` over `lr_decay_steps` to `min_decay_lr`;
//!   `get_custom_weight_decay_for_named_parameters`: `re.match` of each pattern on the names.
//!
//! nanotron's `use_mup` is spectral µP (src/nanotron/scaling/parametrization.py: init std
//! 1/√fan_in · min(1, √(fan_out/fan_in)), attention 1/d, its own per-layer learning rates), not
//! MiniCPM's rules the sweep tuned its learning rate under; the export leaves it off and lists
//! the µP multipliers nanotron cannot hold.

use super::{float, not_expressed_comment, trainer_decay, NotExpressed, TrainerConfig, TrainerDecay, WsdSteps};
use crate::export::Recipe;
use crate::model::transformer::{RMS_NORM_EPS, ROPE_THETA};

/// The file's name in the export folder.
pub const FILE: &str = "nanotron.yaml";
const SOURCE: &str = "huggingface/nanotron 2411b022a75f";

/// The nanotron config of `recipe`.
pub fn config(recipe: &Recipe) -> anyhow::Result<TrainerConfig> {
    let wsd = WsdSteps::of(recipe)?;
    let mut notes = mup_notes(recipe);
    let decay =
        trainer_decay(&wsd, recipe.learning_rates.hidden_matrices, &[("linear", "linear"), ("1-sqrt", "1-sqrt")], "linear, cosine, 1-sqrt", "lr_decay_style");
    notes.extend(decay.not_expressed.clone());
    let text = header(recipe) + &not_expressed_comment("nanotron", &notes) + &model(recipe) + &tokens(recipe, &wsd) + &optimizer(recipe, &wsd, &decay);
    Ok(TrainerConfig {
        format: super::Format::Nanotron,
        trainer: format!("nanotron YAML config, keys from {SOURCE}"),
        file: FILE.into(),
        contents: text,
        not_expressed: notes,
    })
}

fn header(recipe: &Recipe) -> String {
    format!(
        "# nanotron config of the full run exported by windtunnel {} from sweep `{}` ({}).\n\
         # Keys as in {SOURCE} (src/nanotron/config/config.py, models_config.py). Add data_stages, tokenizer and\n\
         # checkpoints, then: torchrun ... run_train.py --config-file {FILE}\n\
         # The global batch is dp × micro_batch_size × batch_accumulation_per_replica = {} sequences: keep the product\n\
         # when you change dp.\n",
        recipe.windtunnel_version,
        recipe.sweep,
        recipe.sweep_dir.display(),
        recipe.batch.sequences
    )
}

/// `general`, `parallelism` and `model`: the shape as nanotron's LlamaConfig, one init std.
fn model(recipe: &Recipe) -> String {
    let s = &recipe.shape;
    format!(
        "general:\n  project: windtunnel\n  run: {}\n\
         parallelism:\n  dp: 1\n  pp: 1\n  tp: 1\n  pp_engine: 1f1b\n  tp_mode: ALL_REDUCE\n  tp_linear_async_communication: false\n\
         model:\n  dtype: bfloat16\n  make_vocab_size_divisible_by: 1\n  init_method:\n    std: {}\n    scaling_method: NONE\n  model_config:\n\
         \x20   is_llama_config: true\n    hidden_size: {}\n    intermediate_size: {}\n    num_attention_heads: {}\n    num_key_value_heads: {}\n\
         \x20   num_hidden_layers: {}\n    vocab_size: {}\n    max_position_embeddings: {}\n    rms_norm_eps: {}\n    rope_theta: {}\n\
         \x20   hidden_act: silu\n    tie_word_embeddings: true\n    bos_token_id: 1\n    eos_token_id: 2\n",
        yaml_string(&recipe.sweep),
        float(recipe.learning_rates.hidden_init_std),
        s.width,
        s.ffn_width,
        s.heads,
        s.kv_heads,
        s.depth,
        s.vocab,
        recipe.seq_len,
        float(RMS_NORM_EPS),
        float(ROPE_THETA)
    )
}

/// `tokens`: the batch and the budget in steps.
fn tokens(recipe: &Recipe, wsd: &WsdSteps) -> String {
    format!(
        "tokens:\n  # {} steps × {} sequences × {} tokens = {} tokens\n  sequence_length: {}\n  train_steps: {}\n  micro_batch_size: {}\n  batch_accumulation_per_replica: 1\n",
        wsd.total,
        recipe.batch.sequences,
        recipe.seq_len,
        crate::format::thousands(recipe.schedule.total_tokens),
        recipe.seq_len,
        wsd.total,
        recipe.batch.sequences
    )
}

/// `optimizer`: AdamW, the norms kept out of weight decay, and the WSD schedule.
fn optimizer(recipe: &Recipe, wsd: &WsdSteps, decay: &TrainerDecay) -> String {
    let a = &recipe.adamw;
    format!(
        "optimizer:\n  optimizer_factory:\n    name: adamW\n    adam_beta1: {}\n    adam_beta2: {}\n    adam_eps: {}\n    torch_adam_is_fused: true\n\
         \x20 weight_decay: {}\n  # windtunnel decays the matrices, not the norms' weights\n  weight_decay_exclude_named_params:\n  - '.*layernorm.*'\n  - '.*layer_norm.*'\n\
         \x20 clip_grad: {}\n  zero_stage: 0\n  accumulate_grad_in_fp32: true\n  learning_rate_scheduler:\n\
         \x20   # WSD: warmup {} steps, stable to step {}, {} decay over the last {} steps\n    learning_rate: {}\n    lr_warmup_steps: {}\n\
         \x20   lr_warmup_style: linear\n    lr_decay_style: {}\n    lr_decay_starting_step: {}\n    lr_decay_steps: {}\n    min_decay_lr: {}\n",
        float(a.beta1),
        float(a.beta2),
        float(a.eps),
        float(recipe.weight_decay),
        if a.grad_clip > 0.0 { float(a.grad_clip) } else { "null".into() },
        wsd.warmup,
        wsd.decay_start,
        wsd.shape,
        wsd.decay,
        float(recipe.learning_rates.hidden_matrices),
        wsd.warmup,
        decay.style,
        wsd.decay_start,
        wsd.decay,
        float(decay.min_lr)
    )
}

/// MiniCPM's µP multipliers, none of which nanotron's config holds (its `use_mup` is another
/// parameterization), each with what the file holds instead.
fn mup_notes(recipe: &Recipe) -> Vec<NotExpressed> {
    let (mup, lr) = (&recipe.mup, &recipe.learning_rates);
    let mut notes = vec![
        NotExpressed::new(
            "µP (MiniCPM's rules)",
            format!("base width {}, m = {}", mup.base_width, lr.width_multiplier),
            "nanotron's use_mup is spectral µP (its own init, attention 1/d and per-layer learning rates), not the rules the \
             sweep's learning rate was tuned under: left off, and the multipliers below are not applied",
        ),
        NotExpressed::new(
            "learning rate of the embedding and norms",
            format!("η = {}", lr.base),
            format!("nanotron has one learning rate: learning_rate = η/m = {}, the hidden matrices' (most of the parameters)", lr.hidden_matrices),
        ),
        NotExpressed::new("embedding multiplier scale_emb", format!("{}", mup.scale_emb), "the embedding output is not scaled"),
        NotExpressed::new("logit multiplier 1/m", format!("{}", mup.logit_multiplier(recipe.shape.width)), "the logits are not scaled"),
        NotExpressed::new(
            "residual-branch multiplier",
            format!("{} ({} rule at depth {})", lr.depth.residual_multiplier, lr.depth.rule, recipe.shape.depth),
            "the residual branches are added unscaled",
        ),
        NotExpressed::new(
            "init std of the embedding",
            format!("init_std = {}", mup.init_std),
            format!("RandomInit has one std for every weight: std = {}, the hidden matrices' init_std/√m", lr.hidden_init_std),
        ),
    ];
    let eps = recipe.adamw.eps;
    if lr.depth.hidden_eps_multiplier != 1.0 || lr.depth.embedding_eps_multiplier != 1.0 {
        notes.push(NotExpressed::new(
            "AdamW ε per group",
            format!("hidden {:e}, embedding {:e}", eps * lr.depth.hidden_eps_multiplier, eps * lr.depth.embedding_eps_multiplier),
            format!("nanotron has one adam_eps = {eps:e}"),
        ));
    }
    if lr.depth.hidden_weight_decay_multiplier != 1.0 {
        notes.push(NotExpressed::new(
            "weight decay of the hidden matrices",
            format!("{}", recipe.weight_decay * lr.depth.hidden_weight_decay_multiplier),
            format!("nanotron has one weight_decay ({}) for every parameter it decays", recipe.weight_decay),
        ));
    }
    notes
}

/// A string YAML reads back as the same string: quoted, with `"` and `\` escaped.
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::formats::tests::recipe;

    /// `key: value` of the file's lines, by key (the last one wins).
    fn value<'a>(text: &'a str, key: &str) -> &'a str {
        let prefix = format!("{key}: ");
        text.lines().map(str::trim).rev().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("{key} missing:\n{text}"))
    }

    #[test]
    fn the_yaml_carries_the_recipe_in_nanotrons_keys() {
        let c = config(&recipe("1-sqrt")).unwrap();
        let t = &c.contents;
        for (key, expected) in [
            ("hidden_size", "128"),
            ("intermediate_size", "320"),
            ("num_attention_heads", "2"),
            ("num_key_value_heads", "2"),
            ("num_hidden_layers", "11"),
            ("vocab_size", "256"),
            ("max_position_embeddings", "128"),
            ("rms_norm_eps", "0.00001"),
            ("rope_theta", "10000.0"),
            ("tie_word_embeddings", "true"),
            ("std", "0.05"),
            ("sequence_length", "128"),
            ("train_steps", "785"),
            ("micro_batch_size", "8"),
            ("batch_accumulation_per_replica", "1"),
            ("adam_beta1", "0.9"),
            ("adam_beta2", "0.95"),
            ("adam_eps", "0.00000001"),
            ("weight_decay", "0.1"),
            ("clip_grad", "1.0"),
            ("learning_rate", "0.003625"),
            ("lr_warmup_steps", "7"),
            ("lr_warmup_style", "linear"),
            ("lr_decay_style", "1-sqrt"),
            ("lr_decay_starting_step", "707"),
            ("lr_decay_steps", "78"),
            ("min_decay_lr", "0.0"),
            ("run", "\"tiny\""),
        ] {
            assert_eq!(value(t, key), expected, "{key}");
        }
        assert!(t.contains("  weight_decay_exclude_named_params:\n  - '.*layernorm.*'\n  - '.*layer_norm.*'\n"), "{t}");
        assert!(t.lines().filter(|l| !l.trim_start().starts_with('#')).all(|l| !l.contains("use_mup")), "spectral µP stays off: {t}");
    }

    #[test]
    fn every_mup_multiplier_and_the_decay_nanotron_lacks_is_listed() {
        let c = config(&recipe("exponential")).unwrap();
        let settings: Vec<&str> = c.not_expressed.iter().map(|n| n.setting.as_str()).collect();
        assert_eq!(
            settings,
            [
                "µP (MiniCPM's rules)",
                "learning rate of the embedding and norms",
                "embedding multiplier scale_emb",
                "logit multiplier 1/m",
                "residual-branch multiplier",
                "init std of the embedding",
                "decay shape"
            ]
        );
        for n in &c.not_expressed {
            assert!(c.contents.contains(&format!("#   - {n}\n")), "{n} missing from:\n{}", c.contents);
        }
        // Linear to the exponential's end: 0.0625 of the hidden matrices' rate.
        assert_eq!(value(&c.contents, "lr_decay_style"), "linear");
        assert_eq!(value(&c.contents, "min_decay_lr"), "0.0002265625");
    }
}
