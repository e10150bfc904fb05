//! The sweep file, in the vocabulary of W&B sweeps, Optuna and Ray Tune.
//!
//! ```toml
//! name = "quickstart"
//! seeds = [0]                       # model seeds; each makes its own runs
//!
//! [base]                            # a run file's sections; what grids do not set
//! optimizer = { lr = 0.01 }
//! schedule = { kind = "cosine", warmup_tokens = 8192 }
//! training = { tokens = 65536, batch_size = 8, seq_len = 128, eval_interval_tokens = 16384, eval_tokens = 8192 }
//! data = { kind = "synthetic" }
//!
//! [[grid]]
//! name = "lr-transfer"
//! method = "grid"                   # or "random" with `samples`
//! models = { widths = [32, 64, 128], depth = 2, head_dim = 16 }
//! parameters."optimizer.lr" = { min = 1e-3, max = 3e-2, num = 4, log = true }
//!
//! [[grid]]
//! name = "data-model"
//! models = { widths = [32, 64, 128], depth = 2, head_dim = 16 }
//! wsd = { branch_tokens = [16384, 32768, 65536], decay = "exponential", decay_fraction = 0.1 }
//! ```
//!
//! Parameter values: `{ value = x }`, `{ values = [...] }`, or a range `{ min, max, num, log }`
//! (raw bounds, not exponents). Keys are dotted paths into the run file (`optimizer.lr`,
//! `training.batch_size`, `mup.init_std`, ...).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::mixture::{MixtureGrid, Placement};
use crate::adaptive::settings::AdaptiveSpec;
use crate::schedule::DecayShape;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// The sweep's name: its results folder is `OUT/NAME` (`--out`, default `results/`).
    pub name: String,
    /// Free text, kept with the sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Model-init seeds; every run is repeated for each.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Run-file sections shared by every run (a partial run file).
    #[schemars(with = "crate::train::config::RunConfig")]
    pub base: toml::Table,
    /// The grids (`[[grid]]`, at least one): each expands to runs, all sharing `[base]`.
    #[serde(rename = "grid")]
    pub grids: Vec<GridSpec>,
    /// How to submit the sweep to Slurm (`windtunnel run --executor slurm`); ignored locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmSpec>,
    /// Settings of the GPU workers (`[gpu]`).
    #[serde(default, skip_serializing_if = "GpuSpec::is_empty")]
    pub gpu: GpuSpec,
    /// The adaptive wind tunnel (`windtunnel run --adaptive`): what to learn, and its budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveSpec>,
    /// The sweep file's folder (absolute): relative data paths in it resolve against it.
    #[serde(skip)]
    pub base_dir: std::path::PathBuf,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Grid,
    Random,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GridSpec {
    /// The grid's name, in the results table's `grid` column.
    pub name: String,
    /// `grid`: every combination of the parameters' values; `random`: `samples` draws from their ranges.
    #[serde(default)]
    pub method: Method,
    /// Random search: how many parameter draws.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    /// Seed of the random draws.
    #[serde(default)]
    pub sample_seed: u64,
    /// The model sizes: `widths` at a `depth` and `head_dim`, and/or `presets`.
    pub models: ModelFamily,
    /// Swept run-file keys as dotted paths (`parameters."optimizer.lr" = { ... }`).
    #[serde(default)]
    pub parameters: BTreeMap<String, ParamSpec>,
    /// WSD branching: one trunk per model and seed, a decay branched at each branch point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wsd: Option<WsdSpec>,
    /// A mixture axis: data mixtures over named domains, written out or sampled, each a whole run
    /// or a decay branch (`placement`); its keys are below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixtures: Option<MixtureGrid>,
}

impl GridSpec {
    /// The grid's checks: its models, each parameter, a random search's draws, its WSD branching.
    fn validate(&self, file: &SweepFile) -> anyhow::Result<()> {
        let grid = &self.name;
        self.models.validate(grid, file)?;
        for (key, parameter) in &self.parameters {
            parameter.validate(key, grid, &self.method, file)?;
        }
        if self.method == Method::Random {
            anyhow::ensure!(self.samples.is_some_and(|s| s > 0), "{}: grid `{grid}`: method = \"random\" needs `samples` ≥ 1", file.path.display());
        }
        if let Some(wsd) = &self.wsd {
            wsd.validate(grid, file)?;
        }
        match &self.mixtures {
            Some(mixtures) => self.validate_mixtures(mixtures, file),
            None => Ok(()),
        }
    }

    /// The mixture axis's own checks, and how it sits with the grid's `wsd` block: a decay
    /// placement needs one, without its own decay data or cosine baselines.
    fn validate_mixtures(&self, mixtures: &MixtureGrid, file: &SweepFile) -> anyhow::Result<()> {
        let grid = &self.name;
        mixtures.validate(grid, &|needle| file.at(needle))?;
        if mixtures.placement != Placement::Decay {
            return Ok(());
        }
        let here = file.at("placement");
        let Some(wsd) = &self.wsd else {
            anyhow::bail!(
                "{here}: grid `{grid}`: mixtures.placement = \"decay\" branches each mixture off a trunk, so the grid needs a `wsd` block, e.g. wsd = {{ branch_tokens = [65536], decay_fraction = 0.2 }}; or use placement = \"run\""
            );
        };
        anyhow::ensure!(
            wsd.decay_data.is_none(),
            "{here}: grid `{grid}`: mixtures.placement = \"decay\" sets each branch's decay data to its mixture; remove wsd.decay_data"
        );
        anyhow::ensure!(
            !wsd.cosine_baseline,
            "{here}: grid `{grid}`: mixtures.placement = \"decay\" with wsd.cosine_baseline would train the same cosine run on the base data once per mixture; remove cosine_baseline (or use placement = \"run\")"
        );
        Ok(())
    }
}

/// A family of model shapes: widths at a fixed depth and head dimension, and/or named presets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelFamily {
    /// Widths (d_model); needs `depth`.
    #[serde(default)]
    pub widths: Vec<usize>,
    /// Layers of every width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// Head dimension, fixed across widths (heads = width / head_dim).
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    /// Query heads per key/value head (1: no grouping).
    #[serde(default = "one")]
    pub gqa_groups: usize,
    /// d_ff = ffn_multiplier × width (MiniCPM: 2.5).
    #[serde(default = "default_ffn")]
    pub ffn_multiplier: f64,
    /// Named shapes (`windtunnel model --list`).
    #[serde(default)]
    pub presets: Vec<String>,
    /// µP base width for the whole family [default: the base's, or the smallest width].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_width: Option<usize>,
}

fn default_head_dim() -> usize {
    crate::model::shape::HEAD_DIM
}
fn one() -> usize {
    1
}
fn default_ffn() -> f64 {
    crate::model::shape::FFN_MULTIPLIER
}

impl ModelFamily {
    /// Shapes to build: widths or presets, a depth for the widths, and whole heads.
    fn validate(&self, grid: &str, file: &SweepFile) -> anyhow::Result<()> {
        anyhow::ensure!(!self.widths.is_empty() || !self.presets.is_empty(), "{}: grid `{grid}`: `models` needs `widths` or `presets`", file.at(grid));
        anyhow::ensure!(self.widths.is_empty() || self.depth.is_some(), "{}: grid `{grid}`: `models.depth` is required with `widths`", file.at("widths"));
        for &w in &self.widths {
            anyhow::ensure!(
                self.head_dim > 0 && w % self.head_dim == 0,
                "{}: grid `{grid}`: width {w} is not a multiple of models.head_dim = {} (heads = width / head_dim must divide it)",
                file.at("widths"),
                self.head_dim
            );
        }
        Ok(())
    }
}

/// A swept parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum ParamSpec {
    /// One value: `{ value = x }`.
    Value {
        #[schemars(with = "serde_json::Value")]
        value: toml::Value,
    },
    /// A list: `{ values = [a, b, c] }`.
    Values {
        #[schemars(with = "Vec<serde_json::Value>")]
        values: Vec<toml::Value>,
    },
    /// A range: `{ min, max, num, log }` (raw bounds, not exponents).
    Range {
        /// The lowest value.
        min: f64,
        /// The highest value.
        max: f64,
        /// How many values, evenly spaced (a grid needs it; a random search draws from the range).
        #[serde(default)]
        num: Option<usize>,
        /// Space (or draw) the values evenly in log.
        #[serde(default)]
        log: bool,
        /// Round each value to an integer.
        #[serde(default)]
        integer: bool,
    },
}

impl ParamSpec {
    /// A list with values, a range the grid or random search can take values from.
    fn validate(&self, key: &str, grid: &str, method: &Method, file: &SweepFile) -> anyhow::Result<()> {
        let here = file.at(key);
        match self {
            Self::Values { values } => anyhow::ensure!(!values.is_empty(), "{here}: grid `{grid}`: parameter `{key}` has an empty `values` list"),
            Self::Range { min, max, num, log, .. } => {
                anyhow::ensure!(min <= max, "{here}: grid `{grid}`: parameter `{key}`: min {min} > max {max}");
                anyhow::ensure!(!log || *min > 0.0, "{here}: grid `{grid}`: parameter `{key}`: a log range needs min > 0");
                anyhow::ensure!(
                    *method == Method::Random || num.is_some_and(|n| n > 0),
                    "{here}: grid `{grid}`: parameter `{key}`: a range in a grid search needs `num` ≥ 1"
                );
            }
            Self::Value { .. } => {}
        }
        Ok(())
    }
}

/// WSD branching: trunks to the largest branch point, decays branched from each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsdSpec {
    /// Branch points in tokens, the same for every model.
    #[serde(default)]
    pub branch_tokens: Vec<u64>,
    /// Branch points as multiples of each model's N (MiniCPM: 10N ... 60N).
    #[serde(default)]
    pub tokens_per_param: Vec<f64>,
    /// The decay's shape.
    #[serde(default = "default_decay")]
    pub decay: DecayShape,
    /// Decay length as a fraction of the branch point's tokens (MiniCPM: ~0.1).
    #[serde(default = "default_decay_fraction")]
    pub decay_fraction: f64,
    /// Linear and 1-sqrt decays end at this fraction of the peak rate.
    #[serde(default)]
    pub final_lr_fraction: f64,
    /// Exponential decays halve the rate every this fraction of their length
    /// [default: 0.25, `ScheduleSpec::DEFAULT_HALF_LIFE_FRACTION`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_life_fraction: Option<f64>,
    /// The cosine baseline ends at this fraction of the peak rate [default: 0.1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosine_final_lr_fraction: Option<f64>,
    /// Also train a cosine run of each branch's full length, the baseline WSD is compared with.
    #[serde(default)]
    pub cosine_baseline: bool,
    /// Data the decays train on, when it differs from the trunk's (MiniCPM's second stage: a
    /// higher-quality mixture during the decay); evaluation stays on the base's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay_data: Option<crate::data::DataSpec>,
}

fn default_decay() -> DecayShape {
    DecayShape::default()
}
fn default_decay_fraction() -> f64 {
    0.1
}

impl WsdSpec {
    /// Exactly one way to give the branch points, each positive; fractions within [0, 1].
    fn validate(&self, grid: &str, file: &SweepFile) -> anyhow::Result<()> {
        let path = file.path.display();
        anyhow::ensure!(
            self.branch_tokens.is_empty() != self.tokens_per_param.is_empty(),
            "{}: grid `{grid}`: wsd needs exactly one of `branch_tokens` and `tokens_per_param`",
            file.at("wsd")
        );
        anyhow::ensure!(self.decay_fraction >= 0.0 && self.decay_fraction <= 1.0, "{path}: grid `{grid}`: wsd.decay_fraction must be in [0, 1]");
        for (key, value) in [("final_lr_fraction", Some(self.final_lr_fraction)), ("cosine_final_lr_fraction", self.cosine_final_lr_fraction)] {
            anyhow::ensure!(value.is_none_or(|v| (0.0..=1.0).contains(&v)), "{path}: grid `{grid}`: wsd.{key} must be in [0, 1]");
        }
        anyhow::ensure!(
            self.half_life_fraction.is_none_or(|f| f > 0.0 && f.is_finite()),
            "{path}: grid `{grid}`: wsd.half_life_fraction must be a positive fraction of the decay"
        );
        anyhow::ensure!(
            self.tokens_per_param.iter().all(|k| k.is_finite() && *k > 0.0) && !self.branch_tokens.contains(&0),
            "{}: grid `{grid}`: wsd branch points must be positive finite numbers",
            file.at("wsd")
        );
        Ok(())
    }
}

impl SweepSpec {
    /// Parse and check the text of the sweep file `path` (read by [`super::loaded::LoadedSweep`]);
    /// errors name the file, the line and the key.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let mut spec: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        spec.resolve_paths(path)?;
        spec.validate(&SweepFile { path, text })?;
        Ok(spec)
    }

    /// Set `base_dir` to the folder of the file at `path`, and resolve the relative data paths
    /// the sweep file holds against it.
    fn resolve_paths(&mut self, path: &Path) -> anyhow::Result<()> {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        self.base_dir = std::fs::canonicalize(folder)
            .or_else(|_| std::path::absolute(folder))
            .with_context(|| format!("cannot resolve the folder of {}", path.display()))?;
        for data in self.grids.iter_mut().filter_map(|g| g.wsd.as_mut()).filter_map(|w| w.decay_data.as_mut()) {
            data.resolve_paths(&self.base_dir);
        }
        Ok(())
    }

    /// The checks serde cannot make: the numbers first, then the top-level keys, then each
    /// section's own ([`SlurmSpec::validate`], [`AdaptiveSpec::validate`], [`GridSpec::validate`]).
    fn validate(&self, file: &SweepFile) -> anyhow::Result<()> {
        self.check_finite(file)?;
        anyhow::ensure!(!self.grids.is_empty(), "{}: no [[grid]] section; a sweep needs at least one", file.path.display());
        // The name is the results folder's name: one plain path component.
        let name = &self.name;
        anyhow::ensure!(
            !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']) && !name.chars().any(char::is_control),
            "{}: `name` = {name:?} must be a folder name (no `/`, not `.` or `..`, no control characters)",
            file.at("name")
        );
        if let Some(slurm) = &self.slurm {
            slurm.validate().with_context(|| format!("{}: [slurm]", file.at("[slurm]")))?;
        }
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate().map_err(|e| anyhow::anyhow!("{}: {e}", file.at("[adaptive]")))?;
        }
        anyhow::ensure!(!self.seeds.is_empty(), "{}: `seeds` is empty", file.at("seeds"));
        self.grids.iter().try_for_each(|grid| grid.validate(file))
    }

    /// TOML has nan and inf; no run parameter can take them (JSON cannot even carry them): none in
    /// `[base]`, none among the grids' swept values.
    fn check_finite(&self, file: &SweepFile) -> anyhow::Result<()> {
        let base = self.base.iter().map(|(k, v)| (format!("base.{k}"), v.clone()));
        let swept = self.grids.iter().flat_map(|g| g.parameters.iter().flat_map(|(k, p)| p.values().into_iter().map(move |v| (k.clone(), v))));
        for (key, value) in base.chain(swept) {
            if let Some((inner, x)) = non_finite(&value, &key) {
                let leaf = inner.rsplit('.').next().unwrap_or(&inner);
                let needle = if inner.starts_with("base.") { leaf } else { inner.as_str() };
                anyhow::bail!("{}: {inner} = {x}: a run parameter must be a finite number", file.at(needle));
            }
        }
        Ok(())
    }
}

/// The sweep file a message is about: its path, and its text to find a key's line in.
struct SweepFile<'a> {
    path: &'a Path,
    text: &'a str,
}

impl SweepFile<'_> {
    /// The file and the line `needle` is first found on: `sweep.toml (line 12)`, or the file alone.
    fn at(&self, needle: &str) -> String {
        match line_of(self.text, needle) {
            Some(line) => format!("{} (line {line})", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

/// The `[gpu]` block of a sweep file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Where the workers keep compiled GPU kernels and autotune results (relative to the sweep
    /// file's folder); `run --kernel-cache` and `WINDTUNNEL_KERNEL_CACHE` override it. On a
    /// cluster, a node-local path (see the `kernel_cache` module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_cache: Option<PathBuf>,
}

impl GpuSpec {
    fn is_empty(&self) -> bool {
        self.kernel_cache.is_none()
    }
}

/// The heading of `run --help` above the flags of the `[slurm]` block.
pub const SLURM_FLAGS: &str = "Slurm (with --executor slurm; each overrides the sweep file's [slurm] key)";

/// The `[slurm]` block of a sweep file; each key has a `windtunnel run` flag that overrides it.
// One type is both: serde reads the block (the doc comments are the sweep-file reference), clap
// the flags of `run` (their `help`); `merged` puts the flags over the file. Three keys have no
// flag of their own: `max_requeues` and `runs_per_device` come from `run --max-retries` and
// `--runs-per-device`, which the local executor reads too, and `windtunnel`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema, clap::Args)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = SLURM_FLAGS)]
pub struct SlurmSpec {
    /// `--partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, help = "The partition to submit to")]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, help = "The account the jobs are charged to")]
    pub account: Option<String>,
    /// `--qos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, help = "The quality of service the jobs ask for")]
    pub qos: Option<String>,
    /// Time limit per task, in Slurm's format: "MM", "HH:MM:SS", "D-HH:MM".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, help = "Time limit per task: \"MM\", \"HH:MM:SS\" or \"D-HH:MM\"")]
    pub time: Option<String>,
    /// GPUs per task (`--gpus-per-task`; 0 or absent: a CPU task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, help = "GPUs per task (0 or none: a CPU task)")]
    pub gpus_per_task: Option<u32>,
    /// CPUs per task [default: one per run it trains at once, gpus × runs_per_device, else 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, help = "CPUs per task [default: one per run it trains at once, GPUs per task × runs-per-device, else 1]")]
    pub cpus_per_task: Option<u32>,
    /// Memory per node, e.g. "16G".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, help = "Memory per node, e.g. 16G")]
    pub mem: Option<String>,
    /// `--constraint` (node features, e.g. "a100").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, help = "Node features the tasks need, e.g. a100")]
    pub constraint: Option<String>,
    /// At most this many tasks of an array at once (`--array=...%K`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, help = "At most K tasks of an array at once")]
    pub array_throttle: Option<u32>,
    /// Extra `#SBATCH` options, e.g. ["--exclusive", "--nice=10"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[arg(long, value_name = "SBATCH_LINES", allow_hyphen_values = true, help = "An extra #SBATCH option (repeatable), e.g. --sbatch=--exclusive")]
    pub sbatch: Vec<String>,
    /// Shell lines run before the worker (module loads, environment activation). Shell by design.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[arg(long, help = "A shell line to run before the worker (repeatable), e.g. --setup \"module load cuda\"")]
    pub setup: Vec<String>,
    /// Seconds before the time limit at which Slurm warns the task (USR1) to checkpoint [default: 120].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, help = "Seconds before the time limit at which the task is told to checkpoint [default: 120]")]
    pub signal_seconds: Option<u32>,
    /// Requeues per task after a time limit, preemption or failure [default: 3].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub max_requeues: Option<u32>,
    /// The windtunnel binary as the nodes see it [default: this binary].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub windtunnel: Option<PathBuf>,
    /// Runs one array task trains [default: one per run it trains at once, gpus × runs_per_device,
    /// else 1], so short proxies (plain runs, decay branches) do not each wait for a scheduler
    /// slot; trunks keep a task each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(
        long,
        help = "Runs per array task, trained one after another, or --runs-per-device at a time (short proxies share a scheduler slot; trunks keep a task each) [default: GPUs per task × runs-per-device, else 1]"
    )]
    pub runs_per_task: Option<u32>,
    /// Runs a task trains at once on each of its GPUs (on a CPU task: at once, sharing its CPUs),
    /// each in a worker of its own [default: 1, one after another].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub runs_per_device: Option<u32>,
}

impl SlurmSpec {
    /// This block with every key `overrides` sets put over it, lists appended: the command line
    /// over the sweep file. Every key is optional and left out when unset (the test below keeps
    /// it so), so one pass over the keys `overrides` holds does it, whatever keys the block has.
    pub fn merged(&self, overrides: &SlurmSpec) -> anyhow::Result<SlurmSpec> {
        let mut merged = self.keys()?;
        for (key, value) in overrides.keys()? {
            match (merged.get_mut(&key), value) {
                (Some(serde_json::Value::Array(list)), serde_json::Value::Array(more)) => list.extend(more),
                (_, value) => {
                    merged.insert(key, value);
                }
            }
        }
        serde_json::from_value(serde_json::Value::Object(merged)).context("cannot merge the [slurm] flags over the sweep file's block")
    }

    /// The keys set, by name.
    fn keys(&self) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        match serde_json::to_value(self).context("a [slurm] key is not text (a path that is not UTF-8?)")? {
            serde_json::Value::Object(keys) => Ok(keys),
            other => anyhow::bail!("the [slurm] block is not a table: {other}"),
        }
    }

    /// Runs per task: as set, else one per lane (gpus × runs_per_device).
    pub fn runs_per_task(&self) -> usize {
        self.runs_per_task.unwrap_or_else(|| self.lanes()).max(1) as usize
    }

    /// Runs a task trains at once: runs_per_device on each of its GPUs.
    pub fn lanes(&self) -> u32 {
        self.gpus().saturating_mul(self.runs_per_device.unwrap_or(1).max(1))
    }

    pub fn runs_per_device(&self) -> usize {
        self.runs_per_device.unwrap_or(1).max(1) as usize
    }

    /// Whether the tasks get GPUs.
    pub fn on_gpus(&self) -> bool {
        self.gpus_per_task.unwrap_or(0) > 0
    }

    /// GPUs a task's lanes are dealt over (1 on a CPU task).
    pub fn gpus(&self) -> u32 {
        self.gpus_per_task.unwrap_or(0).max(1)
    }

    /// CPUs per task: as set, else one per run it trains at once.
    pub fn cpus_per_task(&self) -> u32 {
        self.cpus_per_task.unwrap_or_else(|| self.lanes())
    }

    pub fn signal_seconds(&self) -> u32 {
        self.signal_seconds.unwrap_or(120)
    }

    pub fn max_requeues(&self) -> u32 {
        self.max_requeues.unwrap_or(3)
    }

    /// Refuse values that could break out of an `#SBATCH` line, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let fields = [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
            ("time", &self.time),
            ("mem", &self.mem),
            ("constraint", &self.constraint),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                directive_value(key, v)?;
                anyhow::ensure!(!v.trim().is_empty() && !v.contains(char::is_whitespace), "slurm.{key} = {v:?}: must be one word without spaces");
            }
        }
        for line in &self.sbatch {
            directive_value("sbatch", line)?;
            anyhow::ensure!(line.starts_with('-'), "slurm.sbatch entry {line:?}: give an sbatch option such as \"--exclusive\" (it becomes an #SBATCH line)");
        }
        for line in &self.setup {
            anyhow::ensure!(!line.contains(['\n', '\r', '\0']), "slurm.setup entry {line:?}: one shell line per entry (no newlines)");
        }
        if let Some(t) = &self.time {
            anyhow::ensure!(
                t.chars().all(|c| c.is_ascii_digit() || c == ':' || c == '-'),
                "slurm.time = {t:?}: use Slurm's format, e.g. \"30\" (minutes), \"04:00:00\" or \"1-00:00\""
            );
        }
        anyhow::ensure!(self.array_throttle != Some(0), "slurm.array_throttle must be at least 1");
        anyhow::ensure!(self.cpus_per_task != Some(0), "slurm.cpus_per_task must be at least 1");
        anyhow::ensure!(self.runs_per_task != Some(0), "slurm.runs_per_task must be at least 1");
        anyhow::ensure!(self.runs_per_device != Some(0), "slurm.runs_per_device must be at least 1");
        if let Some(w) = &self.windtunnel {
            anyhow::ensure!(w.is_absolute(), "slurm.windtunnel = {}: give an absolute path the nodes can run", w.display());
        }
        Ok(())
    }
}

/// A value for an `#SBATCH` line: no control characters (a newline would end the comment and
/// start a shell command).
fn directive_value(key: &str, value: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !value.chars().any(|c| c.is_control()),
        "slurm.{key} = {value:?} holds a control character (newline, tab, …); it would escape its #SBATCH line"
    );
    Ok(())
}

/// The first NaN or infinite number in `value` (named `key`), with its dotted key.
fn non_finite(value: &toml::Value, key: &str) -> Option<(String, f64)> {
    match value {
        toml::Value::Float(x) if !x.is_finite() => Some((key.to_string(), *x)),
        toml::Value::Table(t) => t.iter().find_map(|(k, v)| non_finite(v, &format!("{key}.{k}"))),
        toml::Value::Array(a) => a.iter().find_map(|v| non_finite(v, key)),
        _ => None,
    }
}

/// The 1-based line of the first occurrence of `needle` in `text`.
pub fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

impl ParamSpec {
    /// How many values a grid search takes.
    pub fn grid_len(&self) -> usize {
        match self {
            Self::Value { .. } => 1,
            Self::Values { values } => values.len(),
            Self::Range { num, .. } => num.unwrap_or(1),
        }
    }

    /// Every value the spec names (a range: its bounds).
    fn values(&self) -> Vec<toml::Value> {
        match self {
            Self::Value { value } => vec![value.clone()],
            Self::Values { values } => values.clone(),
            Self::Range { min, max, .. } => vec![toml::Value::Float(*min), toml::Value::Float(*max)],
        }
    }

    /// The values of a grid search.
    pub fn grid_values(&self) -> Vec<toml::Value> {
        match self {
            Self::Value { value } => vec![value.clone()],
            Self::Values { values } => values.clone(),
            Self::Range { min, max, num, log, integer } => {
                let n = num.unwrap_or(1);
                (0..n)
                    .map(|i| {
                        let t = if n == 1 { 0.0 } else { i as f64 / (n - 1) as f64 };
                        let x = if *log { (min.ln() + t * (max.ln() - min.ln())).exp() } else { min + t * (max - min) };
                        number(x, *integer)
                    })
                    .collect()
            }
        }
    }

    /// One random draw (uniform, or log-uniform for log ranges).
    pub fn sample(&self, rng: &mut crate::rng::Rng) -> toml::Value {
        match self {
            Self::Value { value } => value.clone(),
            Self::Values { values } => values[rng.below(values.len() as u64) as usize].clone(),
            Self::Range { min, max, log, integer, .. } => {
                let u = rng.next_f64();
                let x = if *log { (min.ln() + u * (max.ln() - min.ln())).exp() } else { min + u * (max - min) };
                number(x, *integer)
            }
        }
    }
}

fn number(x: f64, integer: bool) -> toml::Value {
    if integer {
        toml::Value::Integer(x.round() as i64)
    } else {
        // Round to 6 significant digits so ids do not depend on the last bits of a pow().
        toml::Value::Float(format!("{x:.6e}").parse().unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"name = "s"
[base]
optimizer = { lr = 0.01 }
schedule = { kind = "cosine", warmup_tokens = 256 }
training = { tokens = 2560, batch_size = 4, seq_len = 32, eval_interval_tokens = 1280, eval_tokens = 256 }

[[grid]]
name = "lr"
models = { widths = [64, 128], depth = 2 }
parameters."optimizer.lr" = { min = 1e-3, max = 1e-1, num = 3, log = true }

[[grid]]
name = "data"
models = { presets = ["9m"] }
wsd = { tokens_per_param = [10, 20] }
"#;

    fn parse(text: &str) -> anyhow::Result<SweepSpec> {
        SweepSpec::parse(text, Path::new("sweep.toml"))
    }

    fn error(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn a_good_file_parses_with_its_defaults() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.seeds, [0]);
        assert_eq!(s.grids[0].models.head_dim, crate::model::shape::HEAD_DIM);
        assert_eq!(s.grids[0].models.ffn_multiplier, crate::model::shape::FFN_MULTIPLIER);
        assert_eq!(s.grids[0].parameters["optimizer.lr"].grid_values(), [toml::Value::Float(1e-3), toml::Value::Float(1e-2), toml::Value::Float(1e-1)]);
        let wsd = s.grids[1].wsd.as_ref().unwrap();
        assert_eq!((wsd.decay, wsd.decay_fraction, wsd.half_life_fraction), ("exponential".parse().unwrap(), 0.1, None));
        assert!(s.base_dir.is_absolute());
    }

    #[test]
    fn every_bad_value_names_the_file_the_key_and_the_line() {
        let e = error(&GOOD.replace("name = \"lr\"", "name = \"lr\"\nmethod = \"bayes\""));
        assert!(e.contains("sweep.toml") && e.contains("bayes"), "{e}");
        let e = error(&GOOD.replace("depth = 2 }", "depth = 2, heads = 4 }"));
        assert!(e.contains("sweep.toml") && e.contains("heads"), "{e}");
        let e = error(&GOOD.replace("name = \"s\"", "name = \"../escape\""));
        assert!(e.contains("must be a folder name"), "{e}");
        let e = error(&GOOD.replace("min = 1e-3", "min = 0.0"));
        assert!(e.contains("a log range needs min > 0") && e.contains("line 10"), "{e}");
        let e = error(&GOOD.replace("num = 3, ", ""));
        assert!(e.contains("needs `num`"), "{e}");
        let e = error(&GOOD.replace("tokens_per_param = [10, 20]", "tokens_per_param = [10], branch_tokens = [1000]"));
        assert!(e.contains("exactly one of `branch_tokens` and `tokens_per_param`"), "{e}");
        let e = error(&GOOD.replace("tokens_per_param = [10, 20]", "tokens_per_param = [10, -1]"));
        assert!(e.contains("positive finite"), "{e}");
        let e = error(&GOOD.replace("lr = 0.01 }", "lr = inf }"));
        assert!(e.contains("base.optimizer.lr = inf") && e.contains("line 3"), "{e}");
        let e = error(&GOOD.replace("widths = [64, 128], depth = 2", "widths = [48], depth = 2"));
        assert!(e.contains("width 48 is not a multiple of models.head_dim"), "{e}");
        let e = error(&GOOD.replace("wsd = { tokens_per_param = [10, 20] }", "wsd = { tokens_per_param = [10], half_life_fraction = 0.0 }"));
        assert!(e.contains("wsd.half_life_fraction"), "{e}");
        let e = error("name = \"s\"\n[base]\n");
        assert!(e.contains("grid"), "{e}");
    }

    /// The merge goes by the keys set, so every key must be left out when unset; a flag set
    /// replaces the file's key, a list flag adds to the file's list, and no flag keeps the file's.
    #[test]
    fn flags_go_over_the_slurm_block_key_by_key() {
        assert_eq!(serde_json::to_value(SlurmSpec::default()).unwrap(), serde_json::json!({}));
        let full = SlurmSpec {
            partition: Some("gpu".into()),
            account: Some("lab".into()),
            qos: Some("high".into()),
            time: Some("60".into()),
            gpus_per_task: Some(2),
            cpus_per_task: Some(8),
            mem: Some("16G".into()),
            constraint: Some("a100".into()),
            array_throttle: Some(4),
            sbatch: vec!["--exclusive".into()],
            setup: vec!["module load cuda".into()],
            signal_seconds: Some(300),
            max_requeues: Some(1),
            windtunnel: Some("/opt/windtunnel".into()),
            runs_per_task: Some(16),
            runs_per_device: Some(4),
        };
        assert_eq!(full.merged(&SlurmSpec::default()).unwrap(), full);
        assert_eq!(SlurmSpec::default().merged(&full).unwrap(), full);
        let file = SlurmSpec { partition: Some("cpu".into()), setup: vec!["module load x".into()], ..full.clone() };
        let merged = file.merged(&full).unwrap();
        assert_eq!((merged.partition.as_deref(), merged.setup), (Some("gpu"), vec!["module load x".to_string(), "module load cuda".to_string()]));
    }

    /// Each section checks itself; the messages read as they did when one function made them.
    #[test]
    fn each_sections_message_names_the_file_the_line_and_the_grid() {
        let cases = [
            (
                "name = \"s\"",
                "name = \"../escape\"",
                "sweep.toml (line 1): `name` = \"../escape\" must be a folder name (no `/`, not `.` or `..`, no control characters)",
            ),
            ("name = \"s\"", "name = \"s\"\nseeds = []", "sweep.toml (line 2): `seeds` is empty"),
            ("depth = 2 }", "}", "sweep.toml (line 9): grid `lr`: `models.depth` is required with `widths`"),
            ("presets = [\"9m\"]", "presets = []", "sweep.toml (line 13): grid `data`: `models` needs `widths` or `presets`"),
            (
                "min = 1e-3, max = 1e-1, num = 3, log = true",
                "values = []",
                "sweep.toml (line 10): grid `lr`: parameter `optimizer.lr` has an empty `values` list",
            ),
            ("min = 1e-3, max = 1e-1", "min = 1, max = 0.1", "sweep.toml (line 10): grid `lr`: parameter `optimizer.lr`: min 1 > max 0.1"),
            ("name = \"lr\"", "name = \"lr\"\nmethod = \"random\"", "sweep.toml: grid `lr`: method = \"random\" needs `samples` ≥ 1"),
            ("[10, 20] }", "[10, 20], decay_fraction = 2.0 }", "sweep.toml: grid `data`: wsd.decay_fraction must be in [0, 1]"),
            ("[10, 20] }", "[10, 20], final_lr_fraction = -1.0 }", "sweep.toml: grid `data`: wsd.final_lr_fraction must be in [0, 1]"),
            ("[10, 20] }", "[10, 20] }\n[slurm]\narray_throttle = 0", "sweep.toml (line 16): [slurm]: slurm.array_throttle must be at least 1"),
        ];
        for (from, to, message) in cases {
            assert_eq!(error(&GOOD.replace(from, to)), message);
        }
    }

    #[test]
    fn slurm_values_that_could_escape_their_line_are_refused() {
        let e = error(&format!("{GOOD}\n[slurm]\npartition = \"gpu\\n#SBATCH --wrap=x\"\n"));
        assert!(e.contains("slurm.partition") && e.contains("control character"), "{e}");
        let merged =
            SlurmSpec { partition: Some("cpu".into()), ..Default::default() }.merged(&SlurmSpec { time: Some("60".into()), ..Default::default() }).unwrap();
        assert_eq!((merged.partition.as_deref(), merged.time.as_deref()), (Some("cpu"), Some("60")));
    }
}
