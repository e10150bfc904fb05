//! `export --format`: the full run in the terms of the trainer that will run it.
//!
//! `hf` (the default) is the Hugging Face MiniCPM `config.json` of [`super::hf_config`];
//! `megatron` is Megatron-LM's `pretrain_gpt.py` arguments ([`megatron`]); `nanotron` a nanotron
//! YAML config ([`nanotron`]). Each trainer's file carries the shape, the µP multipliers the
//! trainer has, AdamW, the batch, the token budget (as steps) and the WSD schedule in the
//! trainer's own names. What a trainer cannot hold as windtunnel trains it (a decay shape, a µP
//! multiplier) is a [`NotExpressed`]: in the file's header, the printed summary and the JSON, with
//! what the file holds instead. No value is dropped and none is approximated without saying so.

pub mod megatron;
pub mod nanotron;

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Exported, Recipe};
use crate::schedule::{DecayShape, ScheduleSpec};

/// What `export` writes for the full run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Hugging Face MiniCPM config.json (+ configuration_minicpm.py), for transformers.
    #[default]
    Hf,
    /// Megatron-LM pretrain_gpt.py arguments, a bash array in megatron_args.sh.
    Megatron,
    /// A nanotron YAML config, nanotron.yaml (run_train.py --config-file).
    Nanotron,
}

/// A setting of the recipe that the trainer's config cannot hold as windtunnel trains it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotExpressed {
    /// The setting, in windtunnel's words.
    pub setting: String,
    /// Its value in the recipe.
    pub value: String,
    /// What the trainer's file holds instead, and why.
    pub instead: String,
}

impl NotExpressed {
    fn new(setting: impl Into<String>, value: impl Into<String>, instead: impl Into<String>) -> Self {
        Self { setting: setting.into(), value: value.into(), instead: instead.into() }
    }
}

impl std::fmt::Display for NotExpressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}: {}", self.setting, self.value, self.instead)
    }
}

/// One trainer's file of the full run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainerConfig {
    pub format: Format,
    /// The trainer, and the source its names were read from.
    pub trainer: String,
    /// The file's name in the export folder.
    pub file: String,
    /// The file's text.
    #[serde(skip)]
    pub contents: String,
    /// What the trainer cannot express (also in the file's header).
    pub not_expressed: Vec<NotExpressed>,
}

impl TrainerConfig {
    /// The trainer's file for `recipe`; `None` for `hf`, whose files [`Exported::write`] writes.
    pub fn build(format: Format, recipe: &Recipe) -> anyhow::Result<Option<Self>> {
        Ok(match format {
            Format::Hf => None,
            Format::Megatron => Some(megatron::config(recipe)?),
            Format::Nanotron => Some(nanotron::config(recipe)?),
        })
    }
}

/// The export in `format`: the Hugging Face files, or the trainer's file; `recipe.json` either way
/// (for a trainer, with a `trainer` entry naming its file and what it cannot express).
#[derive(Debug, Clone)]
pub struct FormattedExport {
    pub exported: Exported,
    pub trainer: Option<TrainerConfig>,
}

impl FormattedExport {
    pub fn new(exported: Exported, format: Format) -> anyhow::Result<Self> {
        let trainer = TrainerConfig::build(format, &exported.recipe)?;
        Ok(Self { exported, trainer })
    }

    /// `recipe.json`'s contents: the recipe, and for a trainer its file and what it cannot express.
    pub fn recipe_json(&self) -> anyhow::Result<serde_json::Value> {
        let mut value = serde_json::to_value(&self.exported.recipe)?;
        if let (Some(trainer), Some(map)) = (&self.trainer, value.as_object_mut()) {
            map.insert("trainer".into(), serde_json::to_value(trainer)?);
        }
        Ok(value)
    }

    /// Write the files into `out` (atomically); returns their paths.
    pub fn write(&self, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let Some(trainer) = &self.trainer else {
            return self.exported.write(out);
        };
        let [_, _, recipe] = crate::layout::export_files(out);
        let file = out.join(&trainer.file);
        crate::fsutil::atomic_write(&file, trainer.contents.as_bytes())?;
        crate::fsutil::atomic_write(&recipe, (serde_json::to_string_pretty(&self.recipe_json()?)? + "\n").as_bytes())?;
        let mut written = vec![file, recipe];
        written.extend(self.exported.recipe.write_mixture(out)?);
        Ok(written)
    }
}

impl std::fmt::Display for FormattedExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.exported)?;
        if let Some(trainer) = &self.trainer {
            writeln!(f, "  trainer  {} ({})", trainer.file, trainer.trainer)?;
            for n in &trainer.not_expressed {
                writeln!(f, "  not expressible in {}: {n}", trainer.format.trainer_name())?;
            }
        }
        Ok(())
    }
}

impl Format {
    /// The trainer's name as people write it.
    pub fn trainer_name(self) -> &'static str {
        match self {
            Format::Hf => "Hugging Face transformers",
            Format::Megatron => "Megatron-LM",
            Format::Nanotron => "nanotron",
        }
    }
}

/// The recipe's WSD schedule in optimizer steps, as every trainer counts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WsdSteps {
    pub total: u64,
    pub warmup: u64,
    pub decay: u64,
    /// The step the decay starts at: total − decay.
    pub decay_start: u64,
    pub shape: DecayShape,
    /// The fraction of η the decay ends at.
    pub end_fraction: f64,
    /// Exponential decay: steps per halving.
    pub half_life_steps: Option<f64>,
}

impl WsdSteps {
    pub fn of(recipe: &Recipe) -> anyhow::Result<Self> {
        let s = &recipe.schedule;
        let ScheduleSpec::Wsd { decay, decay_tokens, half_life_tokens, final_lr_fraction, .. } = s.schedule else {
            anyhow::bail!("the export's schedule is not WSD ({:?}); a trainer's schedule is written from a WSD one", s.schedule);
        };
        let batch = recipe.batch.tokens.max(1) as f64;
        let exponential = decay == DecayShape::named("exponential").expect("exponential is a decay shape");
        let half_life = half_life_tokens.unwrap_or(ScheduleSpec::default_half_life(decay_tokens)) as f64;
        let end_fraction = if exponential { 0.5f64.powf(decay_tokens as f64 / half_life) } else { final_lr_fraction };
        Ok(Self {
            total: s.total_steps,
            warmup: s.warmup_steps,
            decay: s.decay_steps,
            decay_start: s.total_steps - s.decay_steps,
            shape: decay,
            end_fraction,
            half_life_steps: exponential.then_some(half_life / batch),
        })
    }
}

/// The decay as a trainer writes it: its style, the learning rate it ends at, and a
/// [`NotExpressed`] when the trainer has no such shape (then: linear to the same end point).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerDecay {
    pub style: &'static str,
    pub min_lr: f64,
    pub not_expressed: Option<NotExpressed>,
}

/// `styles` maps windtunnel's decay shapes to the trainer's style names (the shapes that are
/// the same function); `all_styles` lists the trainer's styles for the message.
pub fn trainer_decay(wsd: &WsdSteps, base_lr: f64, styles: &[(&str, &'static str)], all_styles: &str, written_as: &str) -> TrainerDecay {
    let min_lr = base_lr * wsd.end_fraction;
    if let Some((_, style)) = styles.iter().find(|(shape, _)| *shape == wsd.shape.name()) {
        return TrainerDecay { style, min_lr, not_expressed: None };
    }
    let linear = styles.iter().find(|(shape, _)| *shape == "linear").map_or("linear", |(_, s)| s);
    let value = match wsd.half_life_steps {
        Some(h) => format!("{} 0.5^(steps / {h}) over the last {} steps, ending at {}·η", wsd.shape, wsd.decay, wsd.end_fraction),
        None => format!("{} over the last {} steps to {}·η", wsd.shape, wsd.decay, wsd.end_fraction),
    };
    TrainerDecay {
        style: linear,
        min_lr,
        not_expressed: Some(NotExpressed::new(
            "decay shape",
            value,
            format!("the trainer's decay styles are {all_styles}; written as {written_as} {linear} to the same end ({min_lr}), an approximation"),
        )),
    }
}

/// A float as YAML 1.1 (PyYAML) and Python read it back to the same f64: the shortest exact
/// decimal, with a point so that it stays a float.
pub fn float(x: f64) -> String {
    let s = x.to_string();
    if s.contains(['.', 'e', 'E', 'n', 'N']) {
        s
    } else {
        s + ".0"
    }
}

/// The header's lines on what the trainer cannot express, each a comment.
fn not_expressed_comment(trainer: &str, notes: &[NotExpressed]) -> String {
    if notes.is_empty() {
        return format!("# {trainer} expresses every setting of the recipe.\n");
    }
    let mut text = format!("# Not expressible in {trainer} (the values below hold what each line says instead):\n");
    for n in notes {
        text += &format!("#   - {n}\n");
    }
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::export::{BatchChoice, DepthMultipliers, LearningRates, ScheduleChoice, Target};
    use crate::fit::law::Law;
    use crate::model::mup::{DepthRule, MupConfig};
    use crate::model::shape::ModelShape;

    /// A recipe as `export` builds it: width 128 · depth 11, 2 heads (kv 2), vocab 256, seq 128,
    /// 8 sequences per step, 785 steps (7 warmup, 78 decay).
    pub(crate) fn recipe(decay: &str) -> Recipe {
        let shape = ModelShape { width: 128, depth: 11, heads: 2, kv_heads: 2, ffn_width: 320, vocab: 256 };
        let mup = MupConfig { base_width: 32, ..MupConfig::default() };
        let law = Law::chinchilla(1.8, 480.0, 2100.0, 0.35, 0.37);
        let batch_tokens = 8 * 128;
        Recipe {
            sweep: "tiny".into(),
            sweep_dir: "results/tiny".into(),
            windtunnel_version: "0.0.0".into(),
            target: Target::Params(2e6),
            target_non_embedding_params: 2e6,
            shape,
            non_embedding_params: shape.non_embedding_params(),
            total_params: shape.total_params(),
            tokens: 785 * batch_tokens,
            tokens_per_param: 0.4,
            flops_6nd: 1e13,
            flops: 1.2e13,
            seq_len: 128,
            mup,
            learning_rates: LearningRates {
                base: 0.0145,
                hidden_matrices: 0.0145 / 4.0,
                embedding: 0.0145,
                norms: 0.0145,
                width_multiplier: 4.0,
                hidden_init_std: 0.05,
                source: "test".into(),
                depth: DepthMultipliers {
                    rule: DepthRule::Minicpm,
                    base_depth: None,
                    depth: 11,
                    residual_multiplier: mup.residual_multiplier(11),
                    hidden_eps_multiplier: 1.0,
                    embedding_eps_multiplier: 1.0,
                    hidden_weight_decay_multiplier: 1.0,
                },
            },
            weight_decay: 0.1,
            adamw: crate::train::optimizer::AdamWConfig::default(),
            batch: BatchChoice { sequences: 8, tokens: batch_tokens, law_tokens: None, source: "test".into() },
            schedule: ScheduleChoice {
                schedule: ScheduleSpec::Wsd {
                    warmup_tokens: 7 * batch_tokens,
                    decay: decay.parse().unwrap(),
                    decay_tokens: 78 * batch_tokens,
                    half_life_tokens: None,
                    final_lr_fraction: 0.0,
                },
                total_tokens: 785 * batch_tokens,
                total_steps: 785,
                warmup_steps: 7,
                stable_tokens: 700 * batch_tokens,
                decay_steps: 78,
            },
            predicted_loss: 3.3,
            predicted_loss_interval: None,
            law,
            law_definition: crate::fit::report::LawDefinition::for_table("results/tiny".into()),
            law_saved_fit: None,
            mixture: None,
            assumptions: crate::export::assumptions::Assumptions {
                sweep_range: crate::export::assumptions::SweepRange {
                    n: [2e4, 2e6],
                    flops_6nd: [1e10, 1e13],
                    tokens_per_param: [0.1, 100.0],
                    vocab: vec![256],
                    depth: vec![11],
                    heads: vec![2],
                    seq_len: vec![128],
                },
                extrapolation_factor: 1.0,
                extrapolation_limit: 10.0,
                predicted_loss: "point estimate".into(),
            },
            warnings: vec![],
        }
    }

    #[test]
    fn the_schedule_in_steps_keeps_the_exponential_decays_end() {
        let wsd = WsdSteps::of(&recipe("exponential")).unwrap();
        assert_eq!((wsd.total, wsd.warmup, wsd.decay, wsd.decay_start), (785, 7, 78, 707));
        // Half-life: a quarter of the decay's tokens (78·1024/4 = 19968 tokens = 19.5 steps).
        assert_eq!(wsd.half_life_steps, Some(19.5));
        assert_eq!(wsd.end_fraction, 0.0625);
        let linear = WsdSteps::of(&recipe("linear")).unwrap();
        assert_eq!((linear.end_fraction, linear.half_life_steps), (0.0, None));
    }

    #[test]
    fn a_shape_the_trainer_lacks_is_reported_with_what_is_written_instead() {
        let styles = [("linear", "linear"), ("1-sqrt", "minus_sqrt")];
        let same = trainer_decay(&WsdSteps::of(&recipe("1-sqrt")).unwrap(), 0.02, &styles, "a, b", "x");
        assert_eq!((same.style, same.min_lr, same.not_expressed), ("minus_sqrt", 0.0, None));
        let other = trainer_decay(&WsdSteps::of(&recipe("exponential")).unwrap(), 0.02, &styles, "linear, cosine", "--style");
        assert_eq!((other.style, other.min_lr), ("linear", 0.00125));
        assert_eq!(
            other.not_expressed.unwrap().to_string(),
            "decay shape = exponential 0.5^(steps / 19.5) over the last 78 steps, ending at 0.0625·η: the trainer's decay styles are \
             linear, cosine; written as --style linear to the same end (0.00125), an approximation"
        );
    }

    #[test]
    fn recipe_json_names_the_trainers_file_and_what_it_cannot_express_and_hf_keeps_the_recipe() {
        let r = recipe("exponential");
        let exported = Exported { config: crate::export::hf_config(&r.shape, &r.mup, r.seq_len), recipe: r };
        let hf = FormattedExport::new(exported.clone(), Format::Hf).unwrap();
        assert_eq!(hf.recipe_json().unwrap(), serde_json::to_value(&exported.recipe).unwrap());
        let megatron = FormattedExport::new(exported, Format::Megatron).unwrap().recipe_json().unwrap();
        assert_eq!(megatron["trainer"]["file"], "megatron_args.sh");
        assert_eq!(megatron["trainer"]["format"], "megatron");
        let settings: Vec<&str> = megatron["trainer"]["not_expressed"].as_array().unwrap().iter().map(|n| n["setting"].as_str().unwrap()).collect();
        assert!(settings.contains(&"decay shape"), "{settings:?}");
        assert_eq!(megatron["trainer"]["contents"], serde_json::Value::Null, "the file's text is in the file");
    }

    #[test]
    fn floats_read_back_as_the_same_floats() {
        assert_eq!(float(12.0), "12.0");
        assert_eq!(float(1e-8), "0.00000001");
        assert_eq!(float(0.0145), "0.0145");
        assert_eq!(float(1e20), "100000000000000000000.0");
    }
}
