//! Planning: a sweep file expanded into a run graph — trunks (warmup + stable to the largest
//! branch point, checkpointing at every branch point), branches (a decay from a trunk
//! checkpoint) and plain runs — each with a content-addressed id, the hash of its resolved run
//! config. Re-planning after adding a width keeps every existing id; changing one hyperparameter
//! changes the ids of exactly the runs it touches.

use serde::{Deserialize, Serialize};

use super::spec::{GridSpec, Method, ModelFamily, SweepSpec};
use crate::layout::RunDir;
use crate::model::memory::{self, MemoryEstimate};
use crate::model::shape::{self, ModelShape};
use crate::rng::Rng;
use crate::train::config::{BranchConfig, RunConfig};
use crate::train::schedule::ScheduleSpec;

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
        let ctx = |e: anyhow::Error| e.context(format!("grid `{}`", grid.name));
        let vocab = base_json.pointer("/model/vocab").and_then(|v| v.as_u64()).map(|v| v as usize);
        let family = shapes(&grid.models, vocab).map_err(ctx)?;
        for shape in family {
            for combo in combinations(grid) {
                for &seed in &spec.seeds {
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
                    let params: Vec<(String, String)> = combo.iter().map(|(k, v)| (k.clone(), value_text(v))).collect();
                    let mut resolved: RunConfig = serde_json::from_value(config.clone())
                        .map_err(|e| anyhow::anyhow!("grid `{}`: the base with {params:?} is not a valid run config: {e}", grid.name))?;
                    // Workers run in OUT/<name>/runs/<id>/: data paths are made absolute here.
                    resolved.data.resolve_paths(&spec.base_dir);
                    expand(grid, resolved, shape, seed, params, &mut runs).map_err(ctx)?;
                }
            }
        }
    }
    let duplicates = deduplicate(&mut runs);
    let total_flops = runs.iter().map(|r| r.own_flops).sum();
    // What one from-scratch run per (N, D) point would cost: every run but the trunks.
    let from_scratch_flops = runs.iter().filter(|r| r.kind != RunKind::Trunk).map(|r| r.flops).sum();
    Ok(Plan { name: spec.name.clone(), runs, total_flops, from_scratch_flops, duplicates })
}

/// Keep the first of runs with one id (two grid points that resolve to the same run config, e.g.
/// two identical `[[grid]]` blocks): two workers on one directory would corrupt it. Returns a
/// line for each run dropped.
fn deduplicate(runs: &mut Vec<PlannedRun>) -> Vec<String> {
    let mut first_grid: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut notes = Vec::new();
    runs.retain(|r| match first_grid.get(&r.id) {
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

fn expand(grid: &GridSpec, base: RunConfig, shape: ModelShape, seed: u64, params: Vec<(String, String)>, runs: &mut Vec<PlannedRun>) -> anyhow::Result<()> {
    base.training.check_sizes()?;
    let n = shape.non_embedding_params();
    let tps = base.training.tokens_per_step();
    let flops_per_token = shape.flops_per_token(base.training.seq_len).total as f64;
    // `own_tokens`: what the run itself trains (a branch: its decay); None: the whole run.
    let make = |config: RunConfig, kind, trunk: Option<String>, from: Option<u64>, own_tokens: Option<u64>| {
        config.validate()?;
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
            memory_bytes: MemoryEstimate::training(&shape, config.training.batch_size, config.training.seq_len).total_bytes,
            trunk,
            from_tokens: from,
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
        branch.schedule = ScheduleSpec::Wsd {
            warmup_tokens: warmup,
            decay: wsd.decay,
            decay_tokens: decay,
            half_life_tokens: None,
            final_lr_fraction: wsd.final_lr_fraction,
        };
        branch.branch = Some(BranchConfig { trunk: RunDir::trunk_reference(&trunk_id), from_tokens: point, data: None });
        runs.push(make(branch, RunKind::Branch, Some(trunk_id.clone()), Some(point), Some(decay))?);
        if wsd.cosine_baseline {
            let mut cosine = base.clone();
            cosine.training.tokens = end;
            cosine.training.checkpoint_tokens = Vec::new();
            cosine.schedule = ScheduleSpec::Cosine { warmup_tokens: warmup, final_lr_fraction: 0.1 };
            runs.push(make(cosine, RunKind::Plain, None, None, None)?);
        }
    }
    Ok(())
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::format::si;
        writeln!(f, "sweep `{}`: {} runs", self.name, self.runs.len())?;
        writeln!(f, "{:<13} {:<7} {:<14} {:>6} {:>6} {:>10} {:>10} {:>11}  parameters", "id", "kind", "grid", "width", "depth", "N", "D", "FLOPs")?;
        for r in &self.runs {
            let params: Vec<String> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
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
        if let Some(big) = self.runs.iter().max_by(|a, b| a.memory_bytes.total_cmp(&b.memory_bytes)) {
            let have = memory::machine_memory_bytes();
            write!(f, "largest run in memory: {} needs ~{} to train", big.id, memory::bytes(big.memory_bytes))?;
            match have {
                Some(have) if big.memory_bytes > have => writeln!(
                    f,
                    "\nwarning: that is more than the {} this machine has; it will be refused here (a bigger node, or a smaller width, batch_size or seq_len)",
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
