//! The adaptive wind tunnel's settings: one type for a sweep file's `[adaptive]` block (`run
//! --adaptive`) and `adapt`'s flags (`adapt --replay`), with every default written once, on it.
//!
//! How the loop works is said the same way in both: the strategy, the law's form, Huber's δ, the
//! interval level, the bootstrap resamples, the seed and the precision to stop at
//! (`strategy = "random"` in the file, `--strategy random` on the command line). The question is
//! said differently: a sweep file names its target in keys (`target`, `budget_flops`, `n`,
//! `tokens`), its budget (`max_flops`), the grid and the runs per round, which `adapt` gives as
//! `--target allocation:C`, `--max-flops` or `--max-flops-fraction` and `--batch`; those keys are
//! not flags.

use serde::{Deserialize, Serialize};

use super::design::{Round, Settings, Strategy};
use super::target::Target;
use crate::fit::form::Form;

/// The `[adaptive]` block of a sweep file: `windtunnel run --adaptive` trains the runs of one grid
/// that teach most about `target` per FLOP, round by round, until the target is known to
/// `relative_interval` or `max_flops` are spent (see `windtunnel::adaptive`).
///
/// ```toml
/// [adaptive]
/// target = "allocation"        # D/N at budget_flops; or "loss" at (n, tokens)
/// budget_flops = 1e10
/// max_flops = 2e11             # the wind tunnel's own budget
/// relative_interval = 0.1      # stop when the 95% interval is within ±10%
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveSpec {
    /// `allocation` (D/N at `budget_flops`) or `loss` (of a run of `n` parameters on `tokens`).
    #[arg(skip = AdaptiveTarget::Allocation)]
    pub target: AdaptiveTarget,
    /// With `target = "allocation"`: the compute budget whose D/N is wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub budget_flops: Option<f64>,
    /// With `target = "loss"`: the planned run's non-embedding parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub n: Option<f64>,
    /// With `target = "loss"`: the planned run's training tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub tokens: Option<f64>,
    /// The most FLOPs the adaptive sweep may train.
    #[arg(skip)]
    pub max_flops: f64,
    /// Stop once the target's interval (at `level`) is within ± this fraction of its estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub relative_interval: Option<f64>,
    /// Runs chosen per round [default: the executor's parallel slots].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub runs_per_round: Option<usize>,
    /// Bootstrap resamples per round (the intervals and the criterion's covariances).
    #[serde(default = "default_bootstrap")]
    #[arg(long, default_value_t = Self::DEFAULT_BOOTSTRAP)]
    pub bootstrap: usize,
    /// Seeds the bootstrap (the same seed makes the same choices).
    #[serde(default)]
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The grid whose runs are the candidates [default: the sweep's one WSD grid, else its one grid].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub grid: Option<String>,
    /// How the next runs are chosen (random and cheapest are baselines).
    #[serde(default)]
    #[arg(long, value_enum, default_value_t)]
    pub strategy: &'static dyn Strategy,
    /// The law's form: chinchilla (E + A/N^α + B/D^β) or kaplan ([(N_c/N)^(α_N/α_D) + D_c/D]^α_D).
    #[serde(default)]
    #[arg(long, default_value = Form::default().law_form().name())]
    pub form: Form,
    /// Huber's δ: the fit's loss is quadratic in a log residual up to δ and linear beyond.
    #[serde(default = "default_delta")]
    #[arg(long, default_value_t = Self::DEFAULT_DELTA)]
    pub delta: f64,
    /// The central level of the target's interval, which `relative_interval` is measured on.
    #[serde(default = "default_level")]
    #[arg(long, default_value_t = Self::DEFAULT_LEVEL)]
    pub level: f64,
}

/// What an `[adaptive]` block asks for (its numbers are beside it: `budget_flops`, or `n` and
/// `tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AdaptiveTarget {
    Allocation,
    Loss,
}

fn default_bootstrap() -> usize {
    AdaptiveSpec::DEFAULT_BOOTSTRAP
}
fn default_delta() -> f64 {
    AdaptiveSpec::DEFAULT_DELTA
}
fn default_level() -> f64 {
    AdaptiveSpec::DEFAULT_LEVEL
}

/// Where the settings were written, for messages that name a key as the user wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// A sweep file's `[adaptive]` block: `[adaptive] bootstrap = 10`.
    InSweepFile,
    /// `adapt`'s flags: `--bootstrap 10`.
    AsFlags,
}

impl Written {
    /// `key` with `value`, as the user wrote it.
    fn said(self, key: &str, value: impl std::fmt::Display) -> String {
        match self {
            Self::InSweepFile => format!("[adaptive] {key} = {value}"),
            Self::AsFlags => format!("--{} {value}", key.replace('_', "-")),
        }
    }
}

impl AdaptiveSpec {
    /// Bootstrap resamples per round unless `bootstrap` says otherwise.
    pub const DEFAULT_BOOTSTRAP: usize = 200;
    /// Huber's δ unless `delta` says otherwise: `fit law`'s.
    pub const DEFAULT_DELTA: f64 = crate::fit::definition::LawDefinition::DEFAULT_DELTA;
    /// The intervals' central level unless `level` says otherwise: `fit law`'s.
    pub const DEFAULT_LEVEL: f64 = crate::fit::definition::LawDefinition::DEFAULT_LEVEL;

    /// The target the block names.
    pub fn target(&self) -> Target {
        match self.target {
            AdaptiveTarget::Allocation => Target::Allocation { budget_flops: self.budget_flops.unwrap_or(f64::NAN) },
            AdaptiveTarget::Loss => Target::Loss { n: self.n.unwrap_or(f64::NAN), tokens: self.tokens.unwrap_or(f64::NAN) },
        }
    }

    /// The loop's settings: these, asked about `target` within `max_flops`, `batch` runs per
    /// round, following the rounds of `history`.
    pub fn settings(&self, target: Target, max_flops: f64, batch: usize, history: Vec<Round>) -> Settings {
        Settings {
            target,
            strategy: self.strategy,
            max_flops,
            relative_interval: self.relative_interval,
            batch,
            bootstrap: self.bootstrap,
            level: self.level,
            seed: self.seed,
            spec: self.form.into(),
            delta: self.delta,
            history,
        }
    }

    /// The sweep file's checks serde cannot make, each naming the key and the fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.validate_target()?;
        let positive = |key: &str, v: Option<f64>| -> anyhow::Result<()> {
            if let Some(x) = v {
                anyhow::ensure!(x.is_finite() && x > 0.0, "{}: it must be a positive number", Written::InSweepFile.said(key, x));
            }
            Ok(())
        };
        positive("budget_flops", self.budget_flops)?;
        positive("n", self.n)?;
        positive("tokens", self.tokens)?;
        positive("max_flops", Some(self.max_flops))?;
        anyhow::ensure!(self.runs_per_round != Some(0), "[adaptive] runs_per_round = 0: at least one run per round");
        self.validate_method(Written::InSweepFile)
    }

    /// A target's numbers are the ones it takes.
    fn validate_target(&self) -> anyhow::Result<()> {
        match self.target {
            AdaptiveTarget::Allocation => {
                anyhow::ensure!(
                    self.budget_flops.is_some(),
                    "[adaptive] target = \"allocation\" needs `budget_flops`: the compute budget whose D/N to learn, e.g. budget_flops = 1e10"
                );
                anyhow::ensure!(
                    self.n.is_none() && self.tokens.is_none(),
                    "[adaptive] `n` and `tokens` belong to target = \"loss\"; an allocation target takes `budget_flops`"
                );
            }
            AdaptiveTarget::Loss => {
                anyhow::ensure!(
                    self.n.is_some() && self.tokens.is_some(),
                    "[adaptive] target = \"loss\" needs `n` and `tokens`: the planned run whose loss to learn, e.g. n = 1e6, tokens = 2e7"
                );
                anyhow::ensure!(
                    self.budget_flops.is_none(),
                    "[adaptive] `budget_flops` belongs to target = \"allocation\"; a loss target takes `n` and `tokens`"
                );
            }
        }
        Ok(())
    }

    /// The checks of how the loop works, shared by the sweep file and `adapt`'s flags.
    pub fn validate_method(&self, written: Written) -> anyhow::Result<()> {
        if let Some(r) = self.relative_interval {
            anyhow::ensure!(r.is_finite() && r > 0.0, "{}: give a positive fraction, e.g. 0.1 for ±10%", written.said("relative_interval", r));
        }
        anyhow::ensure!(
            self.bootstrap >= 20,
            "{}: the criterion needs at least 20 resamples (default {})",
            written.said("bootstrap", self.bootstrap),
            Self::DEFAULT_BOOTSTRAP
        );
        anyhow::ensure!(
            self.bootstrap <= crate::fit::report::LawDefinition::MAX_BOOTSTRAP,
            "{}: at most {} resamples per round (default {})",
            written.said("bootstrap", self.bootstrap),
            crate::fit::report::LawDefinition::MAX_BOOTSTRAP,
            Self::DEFAULT_BOOTSTRAP
        );
        anyhow::ensure!(
            self.delta.is_finite() && self.delta > 0.0,
            "{}: Huber's δ must be positive (default {})",
            written.said("delta", self.delta),
            Self::DEFAULT_DELTA
        );
        anyhow::ensure!(
            self.level > 0.0 && self.level < 1.0,
            "{}: the interval's level must be between 0 and 1, e.g. 0.9 (default {})",
            written.said("level", self.level),
            Self::DEFAULT_LEVEL
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AdaptiveSpec, String> {
        let spec: AdaptiveSpec = toml::from_str(text).map_err(|e| e.to_string())?;
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }

    const BLOCK: &str = "target = \"allocation\"\nbudget_flops = 1e10\nmax_flops = 2e11\n";

    /// Without the new keys, a block asks for what `run --adaptive` always did; with them, the
    /// loop's settings carry them.
    #[test]
    fn the_method_keys_default_to_what_run_adaptive_always_used_and_reach_the_loop() {
        let plain = parse(BLOCK).unwrap().settings(Target::Allocation { budget_flops: 1e10 }, 2e11, 2, Vec::new());
        assert_eq!((plain.strategy.name(), plain.spec.form, plain.delta, plain.level), ("adaptive", Form::Chinchilla, 1e-3, 0.95));
        assert_eq!((plain.bootstrap, plain.seed, plain.relative_interval), (200, 0, None));
        let spec = parse(&format!("{BLOCK}strategy = \"cheapest\"\nform = \"kaplan\"\ndelta = 0.01\nlevel = 0.9\nseed = 3\n")).unwrap();
        assert_eq!(spec.target(), Target::Allocation { budget_flops: 1e10 });
        let s = spec.settings(spec.target(), spec.max_flops, 2, Vec::new());
        assert_eq!((s.strategy.name(), s.spec.form, s.delta, s.level, s.seed, s.max_flops), ("cheapest", Form::Kaplan, 0.01, 0.9, 3, 2e11));
    }

    /// Bad values are refused naming the key as written, in the file and on the command line.
    #[test]
    fn bad_method_keys_name_the_key_and_the_fix() {
        for (line, want) in [
            ("strategy = \"greedy\"", "expected one of `adaptive`, `random`, `cheapest`"),
            ("form = \"power\"", "unknown variant `power`"),
            ("delta = 0", "[adaptive] delta = 0: Huber's δ must be positive"),
            ("level = 1.5", "[adaptive] level = 1.5: the interval's level must be between 0 and 1"),
            ("bootstrap = 10", "[adaptive] bootstrap = 10: the criterion needs at least 20 resamples (default 200)"),
            ("relative_interval = -1", "[adaptive] relative_interval = -1: give a positive fraction"),
            ("levle = 0.9", "unknown field `levle`, expected one of"),
        ] {
            let e = parse(&format!("{BLOCK}{line}\n")).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
        let flags = AdaptiveSpec { bootstrap: 10, ..parse(BLOCK).unwrap() };
        let e = flags.validate_method(Written::AsFlags).unwrap_err().to_string();
        assert!(e.starts_with("--bootstrap 10: the criterion needs at least 20 resamples"), "{e}");
    }
}
