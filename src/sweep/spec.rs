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

use crate::adaptive::settings::AdaptiveSpec;
use crate::train::schedule::DecayShape;

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

impl SweepSpec {
    /// Read a sweep file; errors name the file, the line and the key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use std::io::Read as _;
        let file = std::fs::File::open(path).with_context(|| format!("cannot read sweep file {}", path.display()))?;
        // Read at most one byte past the cap: `/dev/zero` or a wrong path to a data file is refused
        // at once instead of read without end.
        let mut bytes = Vec::new();
        file.take(Self::MAX_FILE_BYTES + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read sweep file {}", path.display()))?;
        anyhow::ensure!(
            bytes.len() as u64 <= Self::MAX_FILE_BYTES,
            "{} is over {} MiB; a sweep file is a short TOML text (is this the right path?)",
            path.display(),
            Self::MAX_FILE_BYTES >> 20
        );
        let text = String::from_utf8(bytes)
            .map_err(|e| anyhow::anyhow!("{} is not UTF-8 text (byte {}); a sweep file is TOML", path.display(), e.utf8_error().valid_up_to()))?;
        Self::parse(&text, path)
    }

    /// The largest sweep file read.
    pub const MAX_FILE_BYTES: u64 = 4 << 20;

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let mut spec: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        spec.base_dir = std::fs::canonicalize(folder)
            .or_else(|_| std::path::absolute(folder))
            .with_context(|| format!("cannot resolve the folder of {}", path.display()))?;
        for data in spec.grids.iter_mut().filter_map(|g| g.wsd.as_mut()).filter_map(|w| w.decay_data.as_mut()) {
            data.resolve_paths(&spec.base_dir);
        }
        let at = |needle: &str| line_of(text, needle).map(|l| format!(" (line {l})")).unwrap_or_default();
        // TOML has nan and inf; no run parameter can take them (JSON cannot even carry them).
        let base = spec.base.iter().map(|(k, v)| (format!("base.{k}"), v.clone()));
        let swept = spec.grids.iter().flat_map(|g| g.parameters.iter().flat_map(|(k, p)| p.values().into_iter().map(move |v| (k.clone(), v))));
        for (key, value) in base.chain(swept) {
            if let Some((inner, x)) = non_finite(&value, &key) {
                let leaf = inner.rsplit('.').next().unwrap_or(&inner);
                let needle = if inner.starts_with("base.") { leaf } else { inner.as_str() };
                anyhow::bail!("{}{}: {inner} = {x}: a run parameter must be a finite number", path.display(), at(needle));
            }
        }
        anyhow::ensure!(!spec.grids.is_empty(), "{}: no [[grid]] section; a sweep needs at least one", path.display());
        // The name is the results folder's name: one plain path component.
        anyhow::ensure!(
            !spec.name.is_empty() && spec.name != "." && spec.name != ".." && !spec.name.contains(['/', '\\']) && !spec.name.chars().any(char::is_control),
            "{}{}: `name` = {:?} must be a folder name (no `/`, not `.` or `..`, no control characters)",
            path.display(),
            at("name"),
            spec.name
        );
        if let Some(slurm) = &spec.slurm {
            slurm.validate().with_context(|| format!("{}{}: [slurm]", path.display(), at("[slurm]")))?;
        }
        if let Some(adaptive) = &spec.adaptive {
            adaptive.validate().map_err(|e| anyhow::anyhow!("{}{}: {e}", path.display(), at("[adaptive]")))?;
        }
        anyhow::ensure!(!spec.seeds.is_empty(), "{}{}: `seeds` is empty", path.display(), at("seeds"));
        for g in &spec.grids {
            let m = &g.models;
            anyhow::ensure!(
                !m.widths.is_empty() || !m.presets.is_empty(),
                "{}{}: grid `{}`: `models` needs `widths` or `presets`",
                path.display(),
                at(&g.name),
                g.name
            );
            anyhow::ensure!(
                m.widths.is_empty() || m.depth.is_some(),
                "{}{}: grid `{}`: `models.depth` is required with `widths`",
                path.display(),
                at("widths"),
                g.name
            );
            for &w in &m.widths {
                anyhow::ensure!(
                    m.head_dim > 0 && w % m.head_dim == 0,
                    "{}{}: grid `{}`: width {w} is not a multiple of models.head_dim = {} (heads = width / head_dim must divide it)",
                    path.display(),
                    at("widths"),
                    g.name,
                    m.head_dim
                );
            }
            for (key, p) in &g.parameters {
                let here = at(key);
                match p {
                    ParamSpec::Values { values } => {
                        anyhow::ensure!(!values.is_empty(), "{}{here}: grid `{}`: parameter `{key}` has an empty `values` list", path.display(), g.name)
                    }
                    ParamSpec::Range { min, max, num, log, .. } => {
                        anyhow::ensure!(min <= max, "{}{here}: grid `{}`: parameter `{key}`: min {min} > max {max}", path.display(), g.name);
                        anyhow::ensure!(!log || *min > 0.0, "{}{here}: grid `{}`: parameter `{key}`: a log range needs min > 0", path.display(), g.name);
                        anyhow::ensure!(
                            g.method == Method::Random || num.is_some_and(|n| n > 0),
                            "{}{here}: grid `{}`: parameter `{key}`: a range in a grid search needs `num` ≥ 1",
                            path.display(),
                            g.name
                        );
                    }
                    ParamSpec::Value { .. } => {}
                }
            }
            if g.method == Method::Random {
                anyhow::ensure!(g.samples.is_some_and(|s| s > 0), "{}: grid `{}`: method = \"random\" needs `samples` ≥ 1", path.display(), g.name);
            }
            if let Some(w) = &g.wsd {
                anyhow::ensure!(
                    w.branch_tokens.is_empty() != w.tokens_per_param.is_empty(),
                    "{}{}: grid `{}`: wsd needs exactly one of `branch_tokens` and `tokens_per_param`",
                    path.display(),
                    at("wsd"),
                    g.name
                );
                anyhow::ensure!(
                    w.decay_fraction >= 0.0 && w.decay_fraction <= 1.0,
                    "{}: grid `{}`: wsd.decay_fraction must be in [0, 1]",
                    path.display(),
                    g.name
                );
                for (key, value) in [("final_lr_fraction", Some(w.final_lr_fraction)), ("cosine_final_lr_fraction", w.cosine_final_lr_fraction)] {
                    anyhow::ensure!(value.is_none_or(|v| (0.0..=1.0).contains(&v)), "{}: grid `{}`: wsd.{key} must be in [0, 1]", path.display(), g.name);
                }
                anyhow::ensure!(
                    w.half_life_fraction.is_none_or(|f| f > 0.0 && f.is_finite()),
                    "{}: grid `{}`: wsd.half_life_fraction must be a positive fraction of the decay",
                    path.display(),
                    g.name
                );
                anyhow::ensure!(
                    w.tokens_per_param.iter().all(|k| k.is_finite() && *k > 0.0) && !w.branch_tokens.contains(&0),
                    "{}{}: grid `{}`: wsd branch points must be positive finite numbers",
                    path.display(),
                    at("wsd"),
                    g.name
                );
            }
        }
        Ok(spec)
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

/// The `[slurm]` block of a sweep file; each key has a `windtunnel run` flag that overrides it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmSpec {
    /// `--partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--qos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// Time limit per task, in Slurm's format: "MM", "HH:MM:SS", "D-HH:MM".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// GPUs per task (`--gpus-per-task`; 0 or absent: a CPU task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_per_task: Option<u32>,
    /// CPUs per task [default: one per run it trains at once, gpus × runs_per_device, else 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    /// Memory per node, e.g. "16G".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// `--constraint` (node features, e.g. "a100").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// At most this many tasks of an array at once (`--array=...%K`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_throttle: Option<u32>,
    /// Extra `#SBATCH` options, e.g. ["--exclusive", "--nice=10"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sbatch: Vec<String>,
    /// Shell lines run before the worker (module loads, environment activation). Shell by design.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    /// Seconds before the time limit at which Slurm warns the task (USR1) to checkpoint [default: 120].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_seconds: Option<u32>,
    /// Requeues per task after a time limit, preemption or failure [default: 3].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requeues: Option<u32>,
    /// The windtunnel binary as the nodes see it [default: this binary].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windtunnel: Option<PathBuf>,
    /// Runs one array task trains [default: one per run it trains at once, gpus × runs_per_device,
    /// else 1], so short proxies (plain runs, decay branches) do not each wait for a scheduler
    /// slot; trunks keep a task each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_per_task: Option<u32>,
    /// Runs a task trains at once on each of its GPUs (on a CPU task: at once, sharing its CPUs),
    /// each in a worker of its own [default: 1, one after another].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_per_device: Option<u32>,
}

impl SlurmSpec {
    /// This block with every key `overrides` sets replaced (lists are appended).
    pub fn merged(&self, overrides: &SlurmSpec) -> SlurmSpec {
        let pick = |a: &Option<String>, b: &Option<String>| b.clone().or_else(|| a.clone());
        SlurmSpec {
            partition: pick(&self.partition, &overrides.partition),
            account: pick(&self.account, &overrides.account),
            qos: pick(&self.qos, &overrides.qos),
            time: pick(&self.time, &overrides.time),
            gpus_per_task: overrides.gpus_per_task.or(self.gpus_per_task),
            cpus_per_task: overrides.cpus_per_task.or(self.cpus_per_task),
            mem: pick(&self.mem, &overrides.mem),
            constraint: pick(&self.constraint, &overrides.constraint),
            array_throttle: overrides.array_throttle.or(self.array_throttle),
            sbatch: self.sbatch.iter().chain(&overrides.sbatch).cloned().collect(),
            setup: self.setup.iter().chain(&overrides.setup).cloned().collect(),
            signal_seconds: overrides.signal_seconds.or(self.signal_seconds),
            max_requeues: overrides.max_requeues.or(self.max_requeues),
            windtunnel: overrides.windtunnel.clone().or_else(|| self.windtunnel.clone()),
            runs_per_task: overrides.runs_per_task.or(self.runs_per_task),
            runs_per_device: overrides.runs_per_device.or(self.runs_per_device),
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

    #[test]
    fn slurm_values_that_could_escape_their_line_are_refused() {
        let e = error(&format!("{GOOD}\n[slurm]\npartition = \"gpu\\n#SBATCH --wrap=x\"\n"));
        assert!(e.contains("slurm.partition") && e.contains("control character"), "{e}");
        let merged = SlurmSpec { partition: Some("cpu".into()), ..Default::default() }.merged(&SlurmSpec { time: Some("60".into()), ..Default::default() });
        assert_eq!((merged.partition.as_deref(), merged.time.as_deref()), (Some("cpu"), Some("60")));
    }
}
