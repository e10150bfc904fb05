//! `export --format megatron`: Megatron-LM's `pretrain_gpt.py` arguments, as a bash array in
//! `megatron_args.sh` (`source megatron_args.sh && torchrun ... pretrain_gpt.py
//! "${MEGATRON_ARGS[@]}" --micro-batch-size M --data-path ... --tokenizer-type ...`).
//!
//! Every flag name is Megatron-LM's own, read at NVIDIA/Megatron-LM commit
//! d98e8a64ddf34856e74b24714e3bedb2f5a39553 (2026-08-22):
//! - megatron/training/arguments.py: `--max-position-embeddings`, `--position-embedding-type`,
//!   `--rotary-base`, `--make-vocab-size-divisible-by`, `--swiglu`, `--group-query-attention`,
//!   `--lr`, `--min-lr`, `--weight-decay`, `--clip-grad`, `--adam-beta1/2`, `--adam-eps`,
//!   `--seq-length`; the other flags are dataclass fields turned into `--field-name` by
//!   megatron/training/argument_utils.py (`ArgumentGroupFactory._format_arg_name`):
//! - megatron/core/transformer/transformer_config.py: `num_layers`, `hidden_size`,
//!   `ffn_hidden_size`, `num_attention_heads`, `num_query_groups`, `kv_channels`,
//!   `hidden_dropout`, `attention_dropout`, `normalization`, `layernorm_epsilon` (flag
//!   `--norm-epsilon`), `add_bias_linear` (flag `--disable-bias-linear`), `init_method_std`, and
//!   the µP fields `use_mup`, `mup_base_hidden_size`, `mup_embedding_mult`, `mup_output_mult`,
//!   `mup_base_head_dim`;
//! - megatron/training/config/training_config.py (`SchedulerConfig`, `TrainingConfig`):
//!   `lr_decay_style` (`WSD`), `lr_wsd_decay_style` (exponential, linear, cosine, minus_sqrt),
//!   `lr_wsd_decay_iters`, `lr_warmup_iters`, `lr_decay_iters`, `train_iters`,
//!   `global_batch_size`; the tokenizer's `vocab_size`.
//!
//! What the schedule does with them is megatron/core/optimizer_param_scheduler.py
//! (`OptimizerParamScheduler.get_lr`): WSD holds `--lr` from the warmup's end to
//! `lr_decay_iters − lr_wsd_decay_iters`, then decays to `--min-lr`; `minus_sqrt` is 1 − √x,
//! windtunnel's `1-sqrt`, and `exponential` is 2·0.5^x − 1, not MiniCPM's 0.5^(x / half-life).
//! Megatron-LM's µP (transformer_config.py `__post_init__`, megatron/core/optimizer/__init__.py
//! `get_mup_config_overrides`) is MiniCPM's rules for the embedding multiplier, the logits' 1/m,
//! the hidden matrices' init std/√m and learning rate η/m; it also divides the hidden matrices'
//! AdamW ε by m and the output layers' init by √(2·L), and has no residual-branch multiplier.

use super::{float, not_expressed_comment, trainer_decay, NotExpressed, TrainerConfig, WsdSteps};
use crate::export::{Recipe, HEAD_DIM};
use crate::model::transformer::{RMS_NORM_EPS, ROPE_THETA};

/// The file's name in the export folder.
pub const FILE: &str = "megatron_args.sh";
/// The bash array that holds the arguments.
pub const ARRAY: &str = "MEGATRON_ARGS";
const SOURCE: &str = "NVIDIA/Megatron-LM d98e8a64ddf3";

/// One group of flags under a comment: (flag, value or none for a switch).
type Group = (String, Vec<(&'static str, Option<String>)>);

/// The Megatron-LM arguments of `recipe`.
pub fn config(recipe: &Recipe) -> anyhow::Result<TrainerConfig> {
    let wsd = WsdSteps::of(recipe)?;
    let mut notes = Vec::new();
    let groups = vec![model(recipe), mup(recipe, &mut notes), optimizer(recipe), schedule(recipe, &wsd, &mut notes)];
    let mut text = format!(
        "# Megatron-LM pretrain_gpt.py arguments of the full run exported by windtunnel {} from sweep `{}` ({}).\n\
         # Flag names as in {SOURCE} (megatron/training/arguments.py, megatron/training/config/training_config.py,\n\
         # megatron/core/transformer/transformer_config.py). Use:\n\
         #   source {FILE} && torchrun ... pretrain_gpt.py \"${{{ARRAY}[@]}}\" --micro-batch-size M --data-path ... --tokenizer-type ...\n\
         # (micro batch, parallelism, data and tokenizer are yours to add; the global batch is fixed here).\n",
        recipe.windtunnel_version,
        recipe.sweep,
        recipe.sweep_dir.display()
    );
    text += &not_expressed_comment("Megatron-LM", &notes);
    text += &format!("{ARRAY}=(\n");
    for (comment, flags) in &groups {
        text += &format!("  # {comment}\n");
        for (flag, value) in flags {
            text += &match value {
                Some(v) => format!("  {flag} {v}\n"),
                None => format!("  {flag}\n"),
            };
        }
    }
    text += ")\n";
    Ok(TrainerConfig {
        format: super::Format::Megatron,
        trainer: format!("Megatron-LM pretrain_gpt.py arguments, names from {SOURCE}"),
        file: FILE.into(),
        contents: text,
        not_expressed: notes,
    })
}

fn model(recipe: &Recipe) -> Group {
    let s = &recipe.shape;
    let mut flags = vec![
        ("--num-layers", Some(s.depth.to_string())),
        ("--hidden-size", Some(s.width.to_string())),
        ("--ffn-hidden-size", Some(s.ffn_width.to_string())),
        ("--num-attention-heads", Some(s.heads.to_string())),
    ];
    if s.kv_heads != s.heads {
        flags.push(("--group-query-attention", None));
        flags.push(("--num-query-groups", Some(s.kv_heads.to_string())));
    }
    flags.extend([
        ("--kv-channels", Some(HEAD_DIM.to_string())),
        ("--swiglu", None),
        ("--normalization", Some("RMSNorm".into())),
        ("--norm-epsilon", Some(float(RMS_NORM_EPS))),
        ("--disable-bias-linear", None),
        ("--position-embedding-type", Some("rope".into())),
        ("--rotary-base", Some(format!("{}", ROPE_THETA as u64))),
        ("--hidden-dropout", Some("0.0".into())),
        ("--attention-dropout", Some("0.0".into())),
        ("--seq-length", Some(recipe.seq_len.to_string())),
        ("--max-position-embeddings", Some(recipe.seq_len.to_string())),
        ("--vocab-size", Some(s.vocab.to_string())),
        ("--make-vocab-size-divisible-by", Some("1".into())),
    ]);
    (
        format!(
            "model: {} non-embedding parameters; embeddings tied to the output layer (Megatron-LM's default)",
            crate::format::thousands(recipe.non_embedding_params)
        ),
        flags,
    )
}

fn mup(recipe: &Recipe, notes: &mut Vec<NotExpressed>) -> Group {
    let (mup, lr) = (&recipe.mup, &recipe.learning_rates);
    let m = lr.width_multiplier;
    let depth = recipe.shape.depth as f64;
    notes.push(NotExpressed::new(
        "residual-branch multiplier",
        format!("{} ({} rule at depth {})", lr.depth.residual_multiplier, lr.depth.rule, recipe.shape.depth),
        "Megatron-LM has no multiplier on the blocks' outputs: the residual branches are added unscaled",
    ));
    notes.push(NotExpressed::new(
        "init std of the attention output and FFN down projections",
        format!("init_std/√m = {}", lr.hidden_init_std),
        format!(
            "Megatron-LM's µP starts them at init_std/√(2·L·m) = {} (mup_scaled_init_method_normal; no argument changes it)",
            mup.init_std / (2.0 * depth * m).sqrt()
        ),
    ));
    let eps = recipe.adamw.eps;
    notes.push(NotExpressed::new(
        "AdamW ε of the hidden matrices",
        format!("{:e}", eps * lr.depth.hidden_eps_multiplier),
        format!("Megatron-LM's µP uses --adam-eps / m = {:e} for them (get_mup_config_overrides)", eps / m),
    ));
    if lr.depth.embedding_eps_multiplier != 1.0 {
        notes.push(NotExpressed::new(
            "AdamW ε of the embedding and final norm",
            format!("{:e}", eps * lr.depth.embedding_eps_multiplier),
            format!("Megatron-LM keeps --adam-eps = {eps:e} for them"),
        ));
    }
    if lr.depth.hidden_weight_decay_multiplier != 1.0 {
        notes.push(NotExpressed::new(
            "weight decay of the hidden matrices",
            format!("{}", recipe.weight_decay * lr.depth.hidden_weight_decay_multiplier),
            format!("Megatron-LM has one --weight-decay ({}) for every matrix", recipe.weight_decay),
        ));
    }
    (
        format!(
            "µP (MiniCPM's rules): m = {m}; hidden matrices at lr/m = {} and init std/√m = {}; embedding × {}; logits × 1/m",
            lr.hidden_matrices, lr.hidden_init_std, mup.scale_emb
        ),
        vec![
            ("--init-method-std", Some(float(mup.init_std))),
            ("--use-mup", None),
            ("--mup-base-hidden-size", Some(mup.base_width.to_string())),
            ("--mup-embedding-mult", Some(float(mup.scale_emb))),
            ("--mup-output-mult", Some(float(mup.logit_multiplier(recipe.shape.width)))),
            ("--mup-base-head-dim", Some(HEAD_DIM.to_string())),
        ],
    )
}

fn optimizer(recipe: &Recipe) -> Group {
    let a = &recipe.adamw;
    (
        "AdamW (decoupled weight decay on the matrices, none on the norms: Megatron-LM's default)".into(),
        vec![
            ("--optimizer", Some("adam".into())),
            ("--lr", Some(float(recipe.learning_rates.base))),
            ("--weight-decay", Some(float(recipe.weight_decay))),
            ("--adam-beta1", Some(float(a.beta1))),
            ("--adam-beta2", Some(float(a.beta2))),
            ("--adam-eps", Some(float(a.eps))),
            ("--clip-grad", Some(float(a.grad_clip))),
        ],
    )
}

fn schedule(recipe: &Recipe, wsd: &WsdSteps, notes: &mut Vec<NotExpressed>) -> Group {
    let decay = trainer_decay(
        wsd,
        recipe.learning_rates.base,
        &[("linear", "linear"), ("1-sqrt", "minus_sqrt")],
        "exponential (2·0.5^x − 1 to --min-lr, not 0.5^(steps / half-life)), linear, cosine, minus_sqrt",
        "--lr-wsd-decay-style",
    );
    notes.extend(decay.not_expressed);
    (
        format!(
            "batch and budget: {} sequences × {} tokens per step, {} steps = {} tokens; WSD: warmup {}, stable to step {}, {} decay over {} steps",
            recipe.batch.sequences,
            recipe.seq_len,
            wsd.total,
            crate::format::thousands(recipe.schedule.total_tokens),
            wsd.warmup,
            wsd.decay_start,
            wsd.shape,
            wsd.decay
        ),
        vec![
            ("--global-batch-size", Some(recipe.batch.sequences.to_string())),
            ("--train-iters", Some(wsd.total.to_string())),
            ("--lr-decay-style", Some("WSD".into())),
            ("--lr-warmup-iters", Some(wsd.warmup.to_string())),
            ("--lr-decay-iters", Some(wsd.total.to_string())),
            ("--lr-wsd-decay-style", Some(decay.style.into())),
            ("--lr-wsd-decay-iters", Some(wsd.decay.to_string())),
            ("--min-lr", Some(float(decay.min_lr))),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::formats::tests::recipe;

    #[test]
    fn the_arguments_carry_the_recipe_in_megatrons_names() {
        let c = config(&recipe("1-sqrt")).unwrap();
        let body = &c.contents[c.contents.find("MEGATRON_ARGS=(").unwrap()..];
        let flags: Vec<&str> = body.lines().map(str::trim).filter(|l| l.starts_with("--")).collect();
        assert_eq!(
            flags,
            [
                "--num-layers 11",
                "--hidden-size 128",
                "--ffn-hidden-size 320",
                "--num-attention-heads 2",
                "--kv-channels 64",
                "--swiglu",
                "--normalization RMSNorm",
                "--norm-epsilon 0.00001",
                "--disable-bias-linear",
                "--position-embedding-type rope",
                "--rotary-base 10000",
                "--hidden-dropout 0.0",
                "--attention-dropout 0.0",
                "--seq-length 128",
                "--max-position-embeddings 128",
                "--vocab-size 256",
                "--make-vocab-size-divisible-by 1",
                "--init-method-std 0.1",
                "--use-mup",
                "--mup-base-hidden-size 32",
                "--mup-embedding-mult 12.0",
                "--mup-output-mult 0.25",
                "--mup-base-head-dim 64",
                "--optimizer adam",
                "--lr 0.0145",
                "--weight-decay 0.1",
                "--adam-beta1 0.9",
                "--adam-beta2 0.95",
                "--adam-eps 0.00000001",
                "--clip-grad 1.0",
                "--global-batch-size 8",
                "--train-iters 785",
                "--lr-decay-style WSD",
                "--lr-warmup-iters 7",
                "--lr-decay-iters 785",
                "--lr-wsd-decay-style minus_sqrt",
                "--lr-wsd-decay-iters 78",
                "--min-lr 0.0",
            ]
        );
        assert!(body.ends_with(")\n"), "{body}");
    }

    #[test]
    fn what_megatron_cannot_express_is_listed_in_the_file_and_the_notes() {
        let c = config(&recipe("exponential")).unwrap();
        let settings: Vec<&str> = c.not_expressed.iter().map(|n| n.setting.as_str()).collect();
        assert_eq!(
            settings,
            ["residual-branch multiplier", "init std of the attention output and FFN down projections", "AdamW ε of the hidden matrices", "decay shape"]
        );
        for n in &c.not_expressed {
            assert!(c.contents.contains(&format!("#   - {n}\n")), "{n} missing from:\n{}", c.contents);
        }
        // The exponential decay is written as linear to its end point, 0.0625·η.
        assert!(c.contents.contains("  --lr-wsd-decay-style linear\n") && c.contents.contains("  --min-lr 0.00090625\n"), "{}", c.contents);
        assert_eq!(
            c.not_expressed[1].instead,
            "Megatron-LM's µP starts them at init_std/√(2·L·m) = 0.010660035817780522 (mup_scaled_init_method_normal; no argument changes it)"
        );
    }

    #[test]
    fn completeps_per_group_epsilon_and_weight_decay_are_listed() {
        let mut r = recipe("linear");
        r.learning_rates.depth.hidden_eps_multiplier = 1.0 / 8.0;
        r.learning_rates.depth.embedding_eps_multiplier = 0.25;
        r.learning_rates.depth.hidden_weight_decay_multiplier = 4.0;
        let c = config(&r).unwrap();
        let notes: Vec<String> = c.not_expressed.iter().map(ToString::to_string).collect();
        assert_eq!(
            notes[2..],
            [
                "AdamW ε of the hidden matrices = 1.25e-9: Megatron-LM's µP uses --adam-eps / m = 2.5e-9 for them (get_mup_config_overrides)",
                "AdamW ε of the embedding and final norm = 2.5e-9: Megatron-LM keeps --adam-eps = 1e-8 for them",
                "weight decay of the hidden matrices = 0.4: Megatron-LM has one --weight-decay (0.1) for every matrix",
            ]
        );
    }

    #[test]
    fn grouped_query_attention_names_its_groups() {
        let mut r = recipe("linear");
        r.shape.heads = 6;
        r.shape.kv_heads = 2;
        let c = config(&r).unwrap();
        assert!(c.contents.contains("  --num-attention-heads 6\n  --group-query-attention\n  --num-query-groups 2\n"), "{}", c.contents);
    }
}
