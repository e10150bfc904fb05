//! Planning: a sweep file expanded into a run graph — trunks (warmup + stable to the largest
//! branch point, checkpointing at every branch point), branches (a decay from a trunk
//! checkpoint) and plain runs — each with a content-addressed id, the hash of its resolved run
//! config. Re-planning after adding a width keeps every existing id; changing one hyperparameter
//! changes the ids of exactly the runs it touches.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::mixture::{Placement, PlannedMixture};
use super::spec::{GridSpec, Method, ModelFamily, SweepSpec, WsdSpec};
use crate::data::DataSpec;
use crate::layout::RunDir;
use crate::model::memory::{self, MemoryEstimate};
use crate::model::shape::{self, ModelShape};
use crate::rng::Rng;
use crate::schedule::{DecayShape, ScheduleSpec};
use crate::train::config::{BranchConfig, RunConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Warmup + stable to the largest branch point.
    Trunk,
    /// A decay from a trunk checkpoint.
    Branch,
    /// An ordinary run (e.g. a cosine baseline, or a grid without WSD).
    Plain,
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Trunk => "trunk",
            Self::Branch => "branch",
            Self::Plain => "plain",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedRun {
    pub id: String,
    pub kind: RunKind,
    pub grid: String,
    /// The swept parameters' values (dotted key → value), for the results table.
    pub params: Vec<(String, String)>,
    pub seed: u64,
    pub width: usize,
    pub depth: usize,
    pub n: u64,
    /// Training tokens of the run (a branch: its trunk's tokens at the branch point + its decay).
    pub tokens: u64,
    /// Precise FLOPs of the whole run (for a branch: including the trunk part it reuses).
    pub flops: f64,
    /// FLOPs this run itself spends (for a branch: only its decay).
    pub own_flops: f64,
    /// Estimated peak training memory in bytes (see `model::memory`).
    #[serde(default)]
    pub memory_bytes: f64,
    pub trunk: Option<String>,
    pub from_tokens: Option<u64>,
    /// Train only this far (a trunk an adaptive sweep needs only so far): `materialise` writes it
    /// into the run's `pause.json`. Not part of the run's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_at_tokens: Option<u64>,
    /// The data mixture this run trains on (a mixture grid's run, or its decay branch), with its
    /// weights by domain; the results table's `mixture` and `weight/<domain>` columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixture: Option<PlannedMixture>,
    pub config: RunConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub name: String,
    pub runs: Vec<PlannedRun>,
    /// Σ own FLOPs: what the sweep costs.
    pub total_flops: f64,
    /// What one from-scratch run per (model, D) point would cost instead.
    pub from_scratch_flops: f64,
    /// Grid points that resolved to a run planned already (each run is planned once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<String>,
    /// The sweep file's `[gpu] kernel_cache`, made absolute against the sweep file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_cache: Option<PathBuf>,
    /// What each mixture grid costs, and what its mixtures would cost as whole runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mixture_costs: Vec<MixtureCost>,
    /// The exact loss floor of each synthetic domain of the mixture grids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_floors: Vec<DomainFloor>,
}

/// A synthetic domain's exact floor at its grid's sequence length (None: too many contexts to
/// compute it; its evaluation set's `oracle_loss` estimates it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainFloor {
    pub domain: String,
    pub grid: String,
    pub floor: Option<crate::data::synthetic::LanguageFloor>,
}

/// A mixture grid's cost: its FLOPs as planned, and the FLOPs of training each of its mixtures as
/// whole runs (`placement = "run"`) to the same tokens, at the same sizes and seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixtureCost {
    pub grid: String,
    pub placement: Placement,
    pub mixtures: usize,
    /// Σ own FLOPs of the grid's runs (decay: its trunks and its decays).
    pub flops: f64,
    /// Σ FLOPs of a whole run per mixture-trained run (decay: per branch, from scratch).
    pub as_runs_flops: f64,
}

impl Plan {
    /// The grid names, in the order the sweep file gives them.
    pub fn grids(&self) -> Vec<&str> {
        let mut grids: Vec<&str> = Vec::new();
        for r in &self.runs {
            if !grids.contains(&r.grid.as_str()) {
                grids.push(&r.grid);
            }
        }
        grids
    }

    pub fn wsd_saving(&self) -> f64 {
        self.from_scratch_flops / self.total_flops.max(1.0)
    }
}

fn set_path(config: &mut serde_json::Value, dotted: &str, value: serde_json::Value) -> anyhow::Result<()> {
    let mut node = config;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let obj = node.as_object_mut().ok_or_else(|| anyhow::anyhow!("parameter `{dotted}`: `{}` is not a section", parts[..i].join(".")))?;
        if i + 1 == parts.len() {
            obj.insert(part.to_string(), value);
            return Ok(());
        }
        node = obj.entry(part.to_string()).or_insert_with(|| serde_json::json!({}));
    }
    Ok(())
}

fn shapes(family: &ModelFamily, vocab: Option<usize>) -> anyhow::Result<Vec<ModelShape>> {
    let mut out = Vec::new();
    for &width in &family.widths {
        let heads = width / family.head_dim;
        anyhow::ensure!(heads.is_multiple_of(family.gqa_groups), "width {width}: {heads} heads are not a multiple of gqa_groups = {}", family.gqa_groups);
        let shape = ModelShape {
            width,
            depth: family.depth.unwrap_or(0),
            heads,
            kv_heads: heads / family.gqa_groups,
            ffn_width: (width as f64 * family.ffn_multiplier).round() as usize,
            vocab: vocab.unwrap_or(1),
        };
        shape.validate().map_err(|e| anyhow::anyhow!("width {width}: {e}"))?;
        out.push(shape);
    }
    for name in &family.presets {
        let mut s = shape::preset(name)?;
        if let Some(v) = vocab {
            s.vocab = v;
        }
        out.push(s);
    }
    Ok(out)
}

/// The most runs one sweep may plan (planning 10,000 takes well under a second; a million-run
/// sweep is a typo, and its plan alone would not fit in memory long before that).
pub const MAX_PLANNED_RUNS: u64 = 100_000;

/// How many grid points a grid makes before WSD expansion: shapes × parameter combinations ×
/// seeds, refused beyond [`MAX_PLANNED_RUNS`] before anything is allocated.
fn check_grid_size(grid: &GridSpec, seeds: usize) -> anyhow::Result<()> {
    let combos = match grid.method {
        Method::Grid => grid.parameters.values().try_fold(1u64, |n, p| n.checked_mul(p.grid_len() as u64)),
        Method::Random => Some(grid.samples.unwrap_or(0) as u64),
    };
    let shapes = (grid.models.widths.len() + grid.models.presets.len()) as u64;
    let mixtures = grid.mixtures.as_ref().map_or(1, |m| m.weights.len() + m.sample.as_ref().map_or(0, |s| s.count)) as u64;
    let points = combos.and_then(|c| c.checked_mul(shapes)).and_then(|c| c.checked_mul(seeds as u64)).and_then(|c| c.checked_mul(mixtures));
    match points {
        Some(n) if n <= MAX_PLANNED_RUNS => Ok(()),
        _ => anyhow::bail!(
            "grid `{}` makes {} runs (models × parameter values × seeds × mixtures), beyond the {MAX_PLANNED_RUNS} one sweep may plan; \
             check `samples`, the ranges' `num` and `mixtures.sample.count`",
            grid.name,
            points.map_or("more than 2^64".to_string(), |n| n.to_string())
        ),
    }
}

/// The parameter combinations of a grid (grid: the Cartesian product; random: `samples` draws).
fn combinations(grid: &GridSpec) -> Vec<Vec<(String, toml::Value)>> {
    match grid.method {
        Method::Grid => {
            let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
            for (key, spec) in &grid.parameters {
                combos = combos.into_iter().flat_map(|c| spec.grid_values().into_iter().map(move |v| [c.clone(), vec![(key.clone(), v)]].concat())).collect();
            }
            combos
        }
        Method::Random => {
            let mut rng = Rng::derive(grid.sample_seed, &[0x5A3]);
            (0..grid.samples.unwrap_or(0)).map(|_| grid.parameters.iter().map(|(k, s)| (k.clone(), s.sample(&mut rng))).collect()).collect()
        }
    }
}

fn short_id(config: &RunConfig) -> String {
    config.hash()[..12].to_string()
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Expand a sweep into its run graph.
pub fn plan(spec: &SweepSpec) -> anyhow::Result<Plan> {
    let base_json = serde_json::to_value(&spec.base)?;
    let mut runs: Vec<PlannedRun> = Vec::new();
    for grid in &spec.grids {
        check_grid_size(grid, spec.seeds.len())?;
        let ctx = |e: anyhow::Error| e.context(format!("grid `{}`", grid.name));
        let vocab = base_json.pointer("/model/vocab").and_then(|v| v.as_u64()).map(|v| v as usize);
        let family = shapes(&grid.models, vocab).map_err(ctx)?;
        let mixtures = grid_mixtures(grid, &spec.base_dir)?;
        for shape in family {
            for combo in combinations(grid) {
                for (mixture, &seed) in mixtures.iter().flat_map(|m| spec.seeds.iter().map(move |s| (m, s))) {
                    let mut config = base_json.clone();
                    set_path(&mut config, "seed", serde_json::json!(seed))?;
                    let mut model = serde_json::json!({
                        "width": shape.width, "depth": shape.depth, "heads": shape.heads,
                        "kv_heads": shape.kv_heads, "ffn_width": shape.ffn_width,
                    });
                    if vocab.is_some() {
                        model["vocab"] = serde_json::json!(shape.vocab);
                    }
                    config["model"] = model;
                    if let Some(b) = grid.models.base_width {
                        set_path(&mut config, "mup.base_width", serde_json::json!(b))?;
                    }
                    for (key, value) in &combo {
                        set_path(&mut config, key, serde_json::to_value(value)?).map_err(ctx)?;
                    }
                    if let Some((_, data, Placement::Run)) = mixture {
                        config["data"] = serde_json::to_value(data)?;
                    }
                    let params: Vec<(String, String)> = combo.iter().map(|(k, v)| (k.clone(), value_text(v))).collect();
                    let mut resolved: RunConfig = serde_json::from_value(config.clone()).map_err(|e| {
                        let set: Vec<String> = params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                        let with = if set.is_empty() { String::new() } else { format!(" with {}", set.join(", ")) };
                        anyhow::anyhow!("grid `{}`: the base{with} is not a valid run config: {e}", grid.name)
                    })?;
                    // Workers run in OUT/<name>/runs/<id>/: data paths are made absolute here.
                    resolved.data.resolve_paths(&spec.base_dir);
                    resolved.training.evals.iter_mut().for_each(|set| set.data.resolve_paths(&spec.base_dir));
                    let point = GridPoint { shape, seed, params, mixture: mixture.clone() };
                    expand(grid, resolved, point, &mut runs).map_err(ctx)?;
                }
            }
        }
    }
    let duplicates = deduplicate(&mut runs);
    let total_flops = runs.iter().map(|r| r.own_flops).sum();
    // What one from-scratch run per (N, D) point would cost: every run but the trunks.
    let from_scratch_flops = runs.iter().filter(|r| r.kind != RunKind::Trunk).map(|r| r.flops).sum();
    let kernel_cache = spec.gpu.kernel_cache.as_ref().map(|dir| spec.base_dir.join(dir));
    let mixture_costs = mixture_costs(spec, &runs);
    let domain_floors = domain_floors(spec, &runs)?;
    Ok(Plan { name: spec.name.clone(), runs, total_flops, from_scratch_flops, duplicates, kernel_cache, mixture_costs, domain_floors })
}

/// A grid's mixtures with their data and placement (`[None]`: a grid without a mixture axis).
type GridMixture = Option<(PlannedMixture, DataSpec, Placement)>;

fn grid_mixtures(grid: &GridSpec, base_dir: &std::path::Path) -> anyhow::Result<Vec<GridMixture>> {
    match &grid.mixtures {
        None => Ok(vec![None]),
        Some(m) => Ok(m.expand(&grid.name, base_dir)?.into_iter().map(|(mixture, data)| Some((mixture, data, m.placement))).collect()),
    }
}

/// Each mixture grid's cost as planned, and as whole runs: under `placement = "decay"` a branch
/// would be a run of its whole length on its mixture; under `"run"` the two are the same.
fn mixture_costs(spec: &SweepSpec, runs: &[PlannedRun]) -> Vec<MixtureCost> {
    let grids = spec.grids.iter().filter_map(|g| g.mixtures.as_ref().map(|m| (g, m)));
    grids
        .map(|(grid, mixtures)| {
            let of_grid: Vec<&PlannedRun> = runs.iter().filter(|r| r.grid == grid.name).collect();
            let mut ids: Vec<&str> = of_grid.iter().filter_map(|r| r.mixture.as_ref().map(|m| m.id.as_str())).collect();
            ids.sort_unstable();
            ids.dedup();
            let flops = of_grid.iter().map(|r| r.own_flops).sum();
            let as_runs_flops = match mixtures.placement {
                Placement::Run => flops,
                Placement::Decay => of_grid.iter().filter(|r| r.mixture.is_some()).map(|r| r.flops).sum(),
            };
            MixtureCost { grid: grid.name.clone(), placement: mixtures.placement, mixtures: ids.len(), flops, as_runs_flops }
        })
        .collect()
}

/// The floor of every synthetic domain of the mixture grids, at the grid's sequence length.
fn domain_floors(spec: &SweepSpec, runs: &[PlannedRun]) -> anyhow::Result<Vec<DomainFloor>> {
    let mut floors = Vec::new();
    for grid in &spec.grids {
        let (Some(mixtures), Some(run)) = (&grid.mixtures, runs.iter().find(|r| r.grid == grid.name)) else { continue };
        for (domain, data) in mixtures.domain_specs(&grid.name, &|_| "sweep file".to_string())? {
            if let DataSpec::Synthetic(config) = data {
                let language = crate::data::synthetic::SyntheticLanguage::new(config).map_err(|e| anyhow::anyhow!("mixtures.domains.{domain}: {e}"))?;
                floors.push(DomainFloor { domain, grid: grid.name.clone(), floor: language.floor(run.config.training.seq_len) });
            }
        }
    }
    Ok(floors)
}

/// One point of a grid: its model, seed, swept values and mixture.
struct GridPoint {
    shape: ModelShape,
    seed: u64,
    params: Vec<(String, String)>,
    mixture: GridMixture,
}

/// Keep the first of runs with one id (two grid points that resolve to the same run config, e.g.
/// two identical `[[grid]]` blocks): two workers on one directory would corrupt it. Returns a
/// line for each run dropped.
fn deduplicate(runs: &mut Vec<PlannedRun>) -> Vec<String> {
    let mut first_grid: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut notes = Vec::new();
    runs.retain(|r| match first_grid.get(&r.id) {
        // Branches that sweep only their decay share their grid's trunk: that is WSD's point.
        Some(grid) if r.kind == RunKind::Trunk && *grid == r.grid => false,
        Some(grid) => {
            let params: Vec<String> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            notes.push(format!(
                "grid `{}`: {} {} (width {}{}{}) is the same run as in grid `{grid}`; planned once",
                r.grid,
                r.kind,
                r.id,
                r.width,
                if params.is_empty() { "" } else { ", " },
                params.join(" ")
            ));
            false
        }
        None => {
            first_grid.insert(r.id.clone(), r.grid.clone());
            true
        }
    });
    notes
}

fn expand(grid: &GridSpec, base: RunConfig, point: GridPoint, runs: &mut Vec<PlannedRun>) -> anyhow::Result<()> {
    let GridPoint { shape, seed, params, mixture } = point;
    base.training.check_sizes()?;
    // Which runs train on the mixture: all of a `run` placement's, a `decay` placement's branches.
    let (run_mixture, decay_mixture) = match mixture {
        Some((m, _, Placement::Run)) => (Some(m), None),
        Some((m, data, Placement::Decay)) => (None, Some((m, data))),
        None => (None, None),
    };
    let n = shape.non_embedding_params();
    let tps = base.training.tokens_per_step();
    let flops_per_token = shape.flops_per_token(base.training.seq_len).total as f64;
    // `own_tokens`: what the run itself trains (a branch: its decay); None: the whole run.
    let make = |config: RunConfig, kind, trunk: Option<String>, from: Option<u64>, own_tokens: Option<u64>| {
        config.validate()?;
        let on_decay_mixture = kind == RunKind::Branch;
        let mixture = run_mixture.clone().or_else(|| decay_mixture.as_ref().filter(|_| on_decay_mixture).map(|(m, _)| m.clone()));
        let tokens = config.training.steps() * tps;
        let own_tokens = own_tokens.unwrap_or(tokens);
        Ok::<_, anyhow::Error>(PlannedRun {
            id: short_id(&config),
            kind,
            grid: grid.name.clone(),
            params: params.clone(),
            seed,
            width: shape.width,
            depth: shape.depth,
            n,
            tokens,
            flops: tokens as f64 * flops_per_token,
            own_flops: own_tokens as f64 * flops_per_token,
            memory_bytes: MemoryEstimate::training(&shape, config.training.micro_batch(), config.training.seq_len).total_bytes,
            trunk,
            from_tokens: from,
            pause_at_tokens: None,
            mixture,
            config,
        })
    };
    let Some(wsd) = &grid.wsd else {
        runs.push(make(base, RunKind::Plain, None, None, None)?);
        return Ok(());
    };
    let too_many = |what: &str, tokens: f64| anyhow::anyhow!("{what} ({tokens:.3e} tokens) is beyond what a run can count; lower the wsd branch points");
    // Whole steps of `tokens`, rounded up.
    let whole_steps = |tokens: u64| tokens.div_ceil(tps).max(1).checked_mul(tps);
    // Branch points, rounded up to whole steps.
    let wanted: Vec<f64> = if wsd.branch_tokens.is_empty() {
        wsd.tokens_per_param.iter().map(|k| k * n as f64).collect()
    } else {
        wsd.branch_tokens.iter().map(|&t| t as f64).collect()
    };
    let mut points: Vec<u64> = Vec::new();
    for tokens in wanted {
        let point = (tokens < u64::MAX as f64).then(|| whole_steps(tokens.round() as u64)).flatten().ok_or_else(|| too_many("a branch point", tokens))?;
        points.push(point);
    }
    points.sort_unstable();
    points.dedup();
    let decay_rule = BranchDecay::new(grid, wsd, &base, &params)?;
    let warmup = base.schedule.warmup_tokens();
    anyhow::ensure!(points[0] > warmup, "the first branch point ({} tokens) is not past the warmup ({warmup} tokens); branch later or warm up less", points[0]);
    let largest = *points.last().unwrap();
    let mut trunk = base.clone();
    trunk.schedule = ScheduleSpec::Constant { warmup_tokens: warmup };
    trunk.training.tokens = largest;
    trunk.training.checkpoint_tokens = points.clone();
    let trunk_run = make(trunk, RunKind::Trunk, None, None, None)?;
    let trunk_id = trunk_run.id.clone();
    runs.push(trunk_run);
    for &point in &points {
        let decay = ((point as f64 * wsd.decay_fraction).round() as u64).div_ceil(tps).saturating_mul(tps);
        let end = point.checked_add(decay).ok_or_else(|| too_many("a branch point plus its decay", point as f64 + decay as f64))?;
        let mut branch = base.clone();
        branch.training.tokens = end;
        branch.training.checkpoint_tokens = Vec::new();
        branch.schedule = decay_rule.schedule(warmup, decay);
        let data = decay_mixture.as_ref().map(|(_, data)| data.clone()).or_else(|| wsd.decay_data.clone());
        branch.branch = Some(BranchConfig { trunk: RunDir::trunk_reference(&trunk_id), from_tokens: point, data });
        runs.push(make(branch, RunKind::Branch, Some(trunk_id.clone()), Some(point), Some(decay))?);
        if wsd.cosine_baseline {
            let mut cosine = base.clone();
            cosine.training.tokens = end;
            cosine.training.checkpoint_tokens = Vec::new();
            cosine.schedule = ScheduleSpec::Cosine { warmup_tokens: warmup, final_lr_fraction: decay_rule.cosine_floor };
            runs.push(make(cosine, RunKind::Plain, None, None, None)?);
        }
    }
    Ok(())
}

/// How a WSD grid's branches decay: its `wsd` block, with the `schedule.*` keys the grid sweeps
/// applied (a swept key is never dropped: one a WSD grid cannot apply is refused).
struct BranchDecay {
    shape: DecayShape,
    final_lr_fraction: f64,
    half_life_tokens: Option<u64>,
    half_life_fraction: Option<f64>,
    cosine_floor: f64,
}

impl BranchDecay {
    fn new(grid: &GridSpec, wsd: &WsdSpec, base: &RunConfig, params: &[(String, String)]) -> anyhow::Result<Self> {
        let mut rule = Self {
            shape: wsd.decay,
            final_lr_fraction: wsd.final_lr_fraction,
            half_life_tokens: None,
            half_life_fraction: wsd.half_life_fraction,
            cosine_floor: wsd.cosine_final_lr_fraction.unwrap_or(ScheduleSpec::DEFAULT_COSINE_FLOOR),
        };
        // The swept values are in the base's schedule already (a grid point sets its keys there).
        let swept = |key: &str| params.iter().any(|(k, _)| k == key);
        for (key, _) in params.iter().filter(|(k, _)| k.starts_with("schedule.")) {
            let applies = matches!(key.as_str(), "schedule.warmup_tokens" | "schedule.decay" | "schedule.final_lr_fraction" | "schedule.half_life_tokens");
            anyhow::ensure!(
                applies,
                "grid `{}` sweeps `{key}`, which a WSD grid cannot apply: its trunks run at a constant rate and each branch decays over \
                 `wsd.decay_fraction` of its tokens. Sweep schedule.decay, schedule.final_lr_fraction, schedule.half_life_tokens or \
                 schedule.warmup_tokens, or drop the `wsd` block to sweep whole schedules",
                grid.name
            );
        }
        if let ScheduleSpec::Wsd { decay, half_life_tokens, final_lr_fraction, .. } = base.schedule {
            if swept("schedule.decay") {
                rule.shape = decay;
            }
            if swept("schedule.final_lr_fraction") {
                rule.final_lr_fraction = final_lr_fraction;
            }
            if swept("schedule.half_life_tokens") {
                rule.half_life_tokens = half_life_tokens;
            }
        }
        Ok(rule)
    }

    /// The schedule of a branch whose decay takes `decay_tokens`.
    fn schedule(&self, warmup_tokens: u64, decay_tokens: u64) -> ScheduleSpec {
        let from_fraction = self.half_life_fraction.map(|f| ((decay_tokens as f64 * f).round() as u64).max(1));
        ScheduleSpec::Wsd {
            warmup_tokens,
            decay: self.shape,
            decay_tokens,
            half_life_tokens: self.half_life_tokens.or(from_fraction),
            final_lr_fraction: self.final_lr_fraction,
        }
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::format::si;
        writeln!(f, "sweep `{}`: {} runs", self.name, self.runs.len())?;
        writeln!(f, "{:<13} {:<7} {:<14} {:>6} {:>6} {:>10} {:>10} {:>11}  parameters", "id", "kind", "grid", "width", "depth", "N", "D", "FLOPs")?;
        for r in &self.runs {
            let mut params: Vec<String> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            params.extend(r.mixture.as_ref().map(|m| format!("mixture={}", m.id)));
            let trunk = r.trunk.as_ref().map(|t| format!(" from {t}@{}", si(r.from_tokens.unwrap_or(0) as f64))).unwrap_or_default();
            writeln!(
                f,
                "{:<13} {:<7} {:<14} {:>6} {:>6} {:>10} {:>10} {:>11.3e}  {}{}",
                r.id,
                r.kind.to_string(),
                r.grid,
                r.width,
                r.depth,
                si(r.n as f64),
                si(r.tokens as f64),
                r.own_flops,
                params.join(" "),
                trunk
            )?;
        }
        for d in &self.duplicates {
            writeln!(f, "note: {d}")?;
        }
        for cost in &self.mixture_costs {
            writeln!(f, "{cost}")?;
        }
        for d in &self.domain_floors {
            match d.floor {
                Some(floor) => writeln!(
                    f,
                    "domain `{}` (grid `{}`): exact floor {:.4} nats/token at seq_len {} (entropy rate {:.4})",
                    d.domain, d.grid, floor.expected_loss, floor.seq_len, floor.entropy_rate
                )?,
                None => writeln!(
                    f,
                    "domain `{}` (grid `{}`): too many contexts for an exact floor (vocab^max_order > {}); its evaluation set's oracle loss estimates it",
                    d.domain,
                    d.grid,
                    crate::data::synthetic::MAX_EXACT_CONTEXTS
                )?,
            }
        }
        if let Some(big) = self.runs.iter().max_by(|a, b| a.memory_bytes.total_cmp(&b.memory_bytes)) {
            let have = memory::machine_memory_bytes();
            let micro = big.config.training.micro_batch();
            let per_pass = if micro == 1 { "1 sequence".to_string() } else { format!("{micro} sequences") };
            write!(f, "largest run in memory: {} needs ~{} to train, at {per_pass} per pass", big.id, memory::bytes(big.memory_bytes))?;
            match have {
                Some(have) if big.memory_bytes > have => writeln!(
                    f,
                    "\nwarning: that is more than the {} this machine has; it will be refused here (a bigger node, a smaller model or seq_len, \
                     or a smaller training.micro_batch_size: gradient accumulation keeps the batch)",
                    memory::bytes(have)
                )?,
                Some(have) => writeln!(f, " (this machine has {})", memory::bytes(have))?,
                None => writeln!(f)?,
            }
        }
        write!(
            f,
            "total compute {:.3e} FLOPs; one run per (N, D) point from scratch would need {:.3e}: WSD branching saves {:.2}×",
            self.total_flops,
            self.from_scratch_flops,
            self.wsd_saving()
        )
    }
}

impl std::fmt::Display for MixtureCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (grid, n) = (&self.grid, self.mixtures);
        match self.placement {
            Placement::Run => write!(f, "mixtures: grid `{grid}` trains {n} mixtures as whole runs (placement = \"run\"): {:.3e} FLOPs", self.flops),
            Placement::Decay => write!(
                f,
                "mixtures: grid `{grid}` trains {n} mixtures as decays off its trunks (placement = \"decay\"): {:.3e} FLOPs; \
                 as whole runs (placement = \"run\") they would need {:.3e}: {:.1}% of that",
                self.flops,
                self.as_runs_flops,
                100.0 * self.flops / self.as_runs_flops.max(1.0)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
name = "t"
[base]
mup = { base_width = 16 }
optimizer = { lr = 0.01 }
schedule = { kind = "wsd", warmup_tokens = 256, decay = "linear", decay_tokens = 256 }
training = { tokens = 2560, batch_size = 4, seq_len = 32, eval_interval_tokens = 1280, eval_tokens = 256 }
data = { kind = "synthetic", vocab = 64 }
"#;

    fn plan_of(grids: &str) -> anyhow::Result<Plan> {
        plan(&SweepSpec::parse(&format!("{BASE}{grids}"), Path::new("t.toml"))?)
    }

    fn count(plan: &Plan, kind: RunKind) -> usize {
        plan.runs.iter().filter(|r| r.kind == kind).count()
    }

    #[test]
    fn a_wsd_grid_gives_one_trunk_per_model_and_a_branch_per_point() {
        let p = plan_of(
            "[[grid]]\nname = \"d\"\nmodels = { widths = [16, 32], depth = 1, head_dim = 16 }\nwsd = { branch_tokens = [1280, 2560], decay_fraction = 0.2 }\n",
        )
        .unwrap();
        assert_eq!((count(&p, RunKind::Trunk), count(&p, RunKind::Branch)), (2, 4));
        let trunk = p.runs.iter().find(|r| r.kind == RunKind::Trunk).unwrap();
        assert_eq!(trunk.config.schedule, ScheduleSpec::Constant { warmup_tokens: 256 });
        assert_eq!(trunk.config.training.checkpoint_tokens, vec![1280, 2560]);
        let branch = p.runs.iter().find(|r| r.trunk.as_deref() == Some(trunk.id.as_str()) && r.from_tokens == Some(1280)).unwrap();
        // 20% of 1280 = 256 tokens of decay, two steps of 128.
        assert_eq!(branch.tokens, 1536);
        assert_eq!(branch.own_flops * 1536.0, branch.flops * 256.0);
        assert_eq!(branch.config.branch.as_ref().unwrap().trunk, RunDir::trunk_reference(&trunk.id));
        // Branching saves the stable phases: one trunk instead of a run per point.
        assert!(p.wsd_saving() > 1.0);
    }

    #[test]
    fn a_swept_decay_applies_to_the_branches_which_share_their_trunk() {
        let grid = "[[grid]]\nname = \"d\"\nmodels = { widths = [16], depth = 1, head_dim = 16 }\nwsd = { branch_tokens = [1280], decay_fraction = 0.2 }\n";
        let p = plan_of(&format!("{grid}parameters.\"schedule.decay\" = {{ values = [\"linear\", \"1-sqrt\", \"exponential\"] }}\n")).unwrap();
        assert_eq!((count(&p, RunKind::Trunk), count(&p, RunKind::Branch)), (1, 3), "{:?}", p.duplicates);
        let mut shapes: Vec<String> = p
            .runs
            .iter()
            .filter_map(|r| match r.config.schedule {
                ScheduleSpec::Wsd { decay, .. } if r.kind == RunKind::Branch => Some(decay.to_string()),
                _ => None,
            })
            .collect();
        shapes.sort();
        assert_eq!(shapes, ["1-sqrt", "exponential", "linear"]);
        assert!(p.duplicates.is_empty(), "a shared trunk is no duplicate: {:?}", p.duplicates);
        // Final fractions and half-lives apply too; keys a WSD grid cannot apply are refused.
        let p = plan_of(&format!("{grid}parameters.\"schedule.final_lr_fraction\" = {{ values = [0.0, 0.1] }}\n")).unwrap();
        let floors: Vec<f64> = p
            .runs
            .iter()
            .filter_map(|r| if let ScheduleSpec::Wsd { final_lr_fraction, .. } = r.config.schedule { Some(final_lr_fraction) } else { None })
            .collect();
        assert_eq!(floors, [0.0, 0.1]);
        let e = plan_of(&format!("{grid}parameters.\"schedule.decay_tokens\" = {{ values = [128, 256] }}\n")).unwrap_err();
        assert!(format!("{e:#}").contains("sweeps `schedule.decay_tokens`, which a WSD grid cannot apply"), "{e:#}");
    }

    #[test]
    fn wsd_half_life_and_cosine_floor_are_sweep_keys_with_todays_defaults() {
        let grid = |wsd: &str| {
            format!("[[grid]]\nname = \"d\"\nmodels = {{ widths = [16], depth = 1, head_dim = 16 }}\nwsd = {{ branch_tokens = [1280], decay_fraction = 0.2, decay = \"exponential\", cosine_baseline = true{wsd} }}\n")
        };
        let branch_and_cosine = |p: &Plan| {
            let b = p.runs.iter().find(|r| r.kind == RunKind::Branch).unwrap().config.schedule.clone();
            let c = p.runs.iter().find(|r| r.kind == RunKind::Plain).unwrap().config.schedule.clone();
            (b, c)
        };
        let (b, c) = branch_and_cosine(&plan_of(&grid("")).unwrap());
        assert!(matches!(b, ScheduleSpec::Wsd { half_life_tokens: None, .. }), "{b:?}");
        assert_eq!(c, ScheduleSpec::Cosine { warmup_tokens: 256, final_lr_fraction: 0.1 });
        let (b, c) = branch_and_cosine(&plan_of(&grid(", half_life_fraction = 0.5, cosine_final_lr_fraction = 0.0")).unwrap());
        assert!(matches!(b, ScheduleSpec::Wsd { half_life_tokens: Some(128), decay_tokens: 256, .. }), "{b:?}");
        assert_eq!(c, ScheduleSpec::Cosine { warmup_tokens: 256, final_lr_fraction: 0.0 });
    }

    #[test]
    fn ids_hash_the_config_and_change_only_with_it() {
        let lr = |values: &str| {
            format!("[[grid]]\nname = \"lr\"\nmodels = {{ widths = [16, 32], depth = 1, head_dim = 16 }}\nparameters.\"optimizer.lr\" = {{ values = [{values}] }}\n")
        };
        let a = plan_of(&lr("0.01, 0.03")).unwrap();
        let b = plan_of(&lr("0.01, 0.03, 0.1")).unwrap();
        let ids = |p: &Plan| p.runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert!(ids(&a).iter().all(|id| ids(&b).contains(id)), "adding a value keeps every existing id");
        assert_eq!(ids(&b).len(), 6);
        assert!(a.runs.iter().all(|r| r.id == r.config.hash()[..12]));
    }

    fn mixture_grid(placement: &str) -> String {
        format!(
            "[[grid]]\nname = \"mix\"\nmodels = {{ widths = [16], depth = 1, head_dim = 16 }}\nwsd = {{ branch_tokens = [1280, 2560], decay_fraction = 0.2 }}\n\
             mixtures.placement = \"{placement}\"\n\
             mixtures.domains = {{ a = {{ kind = \"synthetic\", vocab = 64, language_seed = 1 }}, b = {{ kind = \"synthetic\", vocab = 64, language_seed = 2 }} }}\n\
             mixtures.weights = [{{ a = 0.5, b = 0.5 }}, {{ a = 1.0 }}, {{ a = 0.25, b = 0.75 }}]\n"
        )
    }

    /// Decays: one trunk to 2560 tokens, and per mixture decays of 256 and 512 tokens (20% of
    /// each branch point, whole steps of 128); as whole runs, each branch from scratch.
    #[test]
    fn a_decay_placement_costs_one_trunk_and_its_decays() {
        let p = plan_of(&mixture_grid("decay")).unwrap();
        let per_token = p.runs[0].flops / p.runs[0].tokens as f64;
        assert_eq!((count(&p, RunKind::Trunk), count(&p, RunKind::Branch)), (1, 6));
        assert_eq!(p.total_flops, per_token * (2560 + 3 * (256 + 512)) as f64);
        let cost = &p.mixture_costs[0];
        assert_eq!((cost.placement, cost.mixtures), (Placement::Decay, 3));
        assert_eq!(cost.flops, per_token * 4864.0);
        assert_eq!(cost.as_runs_flops, per_token * (3 * ((1280 + 256) + (2560 + 512))) as f64);
        assert!(p.to_string().contains(&format!(
            "mixtures: grid `mix` trains 3 mixtures as decays off its trunks (placement = \"decay\"): {:.3e} FLOPs; as whole runs (placement = \"run\") they would need {:.3e}: 35.2% of that",
            cost.flops, cost.as_runs_flops
        )));
        // The trunk trains on the base data, without a mixture; each branch decays on its mixture.
        let trunk = p.runs.iter().find(|r| r.kind == RunKind::Trunk).unwrap();
        assert!(trunk.mixture.is_none() && matches!(trunk.config.data, crate::data::DataSpec::Synthetic(_)));
        for branch in p.runs.iter().filter(|r| r.kind == RunKind::Branch) {
            let mixture = branch.mixture.as_ref().unwrap();
            let Some(crate::data::DataSpec::Mixture(data)) = &branch.config.branch.as_ref().unwrap().data else { panic!("decay data") };
            let weights: Vec<f64> = data.components.iter().map(|c| c.weight).collect();
            assert_eq!(weights, mixture.weights.values().copied().filter(|w| *w > 0.0).collect::<Vec<_>>());
            assert_eq!(branch.config.data, trunk.config.data, "only the decay's data changes");
        }
    }

    #[test]
    fn mixtures_count_toward_the_runs_one_sweep_may_plan() {
        let grid = mixture_grid("run").replace(
            "mixtures.weights",
            "parameters.\"optimizer.lr\" = { min = 0.01, max = 0.1, num = 11 }\nmixtures.sample = { count = 10000, natural = { a = 0.5, b = 0.5 } }\nmixtures.weights",
        );
        let e = format!("{:#}", plan_of(&grid).unwrap_err());
        assert_eq!(
            e,
            "grid `mix` makes 110033 runs (models × parameter values × seeds × mixtures), beyond the 100000 one sweep may plan; \
             check `samples`, the ranges' `num` and `mixtures.sample.count`"
        );
    }

    #[test]
    fn a_run_placement_trains_each_mixture_whole_with_the_same_mixture_ids() {
        let p = plan_of(&mixture_grid("run")).unwrap();
        let per_token = p.runs[0].flops / p.runs[0].tokens as f64;
        assert_eq!((count(&p, RunKind::Trunk), count(&p, RunKind::Branch)), (3, 6));
        assert_eq!(p.total_flops, per_token * (3 * (2560 + 256 + 512)) as f64);
        assert_eq!((p.mixture_costs[0].flops, p.mixture_costs[0].as_runs_flops), (p.total_flops, p.total_flops));
        assert!(p.runs.iter().all(|r| r.mixture.is_some() && matches!(r.config.data, crate::data::DataSpec::Mixture(_))));
        let ids = |p: &Plan| {
            let mut ids: Vec<String> = p.runs.iter().filter_map(|r| r.mixture.as_ref().map(|m| m.id.clone())).collect();
            ids.sort();
            ids.dedup();
            ids
        };
        assert_eq!(ids(&p), ids(&plan_of(&mixture_grid("decay")).unwrap()));
        assert_eq!(ids(&p).len(), 3);
    }

    #[test]
    fn relative_data_paths_become_absolute_against_the_sweep_file() {
        let text = BASE.replace("data = { kind = \"synthetic\", vocab = 64 }", "data = { kind = \"tokens\", path = \"corpus/train.bin\", vocab = 64 }")
            + "[[grid]]\nname = \"lr\"\nmodels = { widths = [16], depth = 1, head_dim = 16 }\n";
        let dir = tempfile::tempdir().unwrap();
        let p = plan(&SweepSpec::parse(&text, &dir.path().join("s.toml")).unwrap()).unwrap();
        let crate::data::DataSpec::Tokens(t) = &p.runs[0].config.data else { panic!("tokens") };
        assert_eq!(t.path, dir.path().canonicalize().unwrap().join("corpus/train.bin"));
    }
}
