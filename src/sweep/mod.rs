//! Sweeps: the sweep file ([`spec`]), read, checked and planned once as a [`loaded::LoadedSweep`];
//! the run graph with WSD trunks and branches ([`plan`]), the progress read back from the files
//! ([`status`]), the results table ([`collect`]), and the executors that run the graph
//! ([`executor`]: [`local`] worker processes, [`slurm`] job arrays, listed in [`registry`];
//! [`progress`] draws the local executor's bars).
//!
//! Layers point down: `spec` ← `plan` ← `loaded`, `status`, `collect` ← `local`, `slurm` (through
//! the `Executor` trait) ← `registry` ← this module, which strings them together for the command
//! line.

pub mod collect;
pub mod executor;
pub mod integrity;
pub mod loaded;
pub mod local;
pub mod mixture;
pub mod plan;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod slurm;
pub mod spec;
pub mod status;
pub mod worker;

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::fsutil::{atomic_write, FileLock};
use crate::layout::SweepDir;
use executor::{CancelReport, ExecReport, Executor};
use loaded::LoadedSweep;

/// The commented starting sweep `windtunnel init` writes (`NAME` stands for the sweep's name).
pub const STARTING_SWEEP: &str = include_str!("starting-sweep.toml");

/// What `windtunnel run` did.
#[derive(Debug, Serialize)]
pub struct SweepOutcome {
    pub dir: std::path::PathBuf,
    pub exec: ExecReport,
    /// The results table, once the executor has stayed until the end.
    pub table: Option<collect::CollectSummary>,
}

/// The sweep directory's lock (`sweep.lock`): one `windtunnel run` per sweep directory.
pub fn lock(sweep: &SweepDir) -> anyhow::Result<FileLock> {
    let dir = sweep.root();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    FileLock::try_acquire(&sweep.lock())?.map_err(|holder| {
        anyhow::anyhow!(
            "another `windtunnel run` is using {} ({holder}); wait for it, or stop it with `windtunnel cancel {}` — two runs on one sweep directory would overwrite each other",
            dir.display(),
            dir.display()
        )
    })
}

/// Check what the sweep directory's runs trained against the plan ([`integrity`]), then write
/// the sweep as run, the plan, and each run's config (rewriting one that differs from the plan);
/// a run the plan trains only so far gets its `pause.json`, every other loses the one it had (a
/// sweep run in full after an adaptive one trains its paused trunks to the end).
pub fn materialise(sweep: &SweepDir, sweep_text: &str, plan: &plan::Plan) -> anyhow::Result<()> {
    integrity::check_trained_runs(sweep, plan)?;
    atomic_write(&sweep.sweep_file(), sweep_text.as_bytes())?;
    atomic_write(&sweep.plan(), serde_json::to_string_pretty(plan)?.as_bytes())?;
    if let Some(warning) = integrity::rewritten_warning(&integrity::write_run_configs(sweep, plan)?) {
        crate::stderr_line!("warning: {warning}");
    }
    for run in &plan.runs {
        let dir = sweep.run(&run.id);
        match run.pause_at_tokens {
            Some(tokens) => atomic_write(&dir.pause(), serde_json::json!({ "tokens": tokens }).to_string().as_bytes())?,
            None => match std::fs::remove_file(dir.pause()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(anyhow::Error::new(e).context(format!("cannot remove {}", dir.pause().display())))
                }
                _ => {}
            },
        }
    }
    Ok(())
}

/// `windtunnel run`: take the sweep directory's lock under `out_root`, write the plan and the run
/// configs, hand the unfinished runs to `executor`, and collect the table once it is done.
pub fn run(loaded: &LoadedSweep, out_root: &Path, executor: &dyn Executor) -> anyhow::Result<SweepOutcome> {
    let sweep = loaded.dir(out_root);
    let _lock = lock(&sweep)?;
    materialise(&sweep, &loaded.text, &loaded.plan)?;
    let exec = executor.execute(&sweep, &loaded.plan)?;
    let table = if exec.waited {
        let table = collect::collect(&sweep).with_context(|| format!("the sweep ran ({exec}) but its table could not be written"))?;
        Some(table)
    } else {
        None
    };
    Ok(SweepOutcome { dir: sweep.root().to_path_buf(), exec, table })
}

/// What `windtunnel run --dry-run` would train here: the plan's runs not finished in the sweep
/// directory (which may not exist yet), and their FLOPs. Nothing is written.
#[derive(Debug, Serialize)]
pub struct DryRun {
    pub dir: std::path::PathBuf,
    pub runs: usize,
    pub already_finished: usize,
    /// The runs that would train.
    pub would_train: Vec<WouldTrain>,
    pub flops: f64,
    /// The whole plan's mixture grids: their cost, and their mixtures' cost as whole runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mixture_costs: Vec<plan::MixtureCost>,
}

/// A run `run --dry-run` would train. In `--json` it is an array, `[id, kind, width, tokens,
/// flops]`, as it always was.
#[derive(Debug)]
pub struct WouldTrain {
    pub id: String,
    pub kind: plan::RunKind,
    pub width: usize,
    pub tokens: u64,
    /// The FLOPs it trains itself (a branch: its decay alone).
    pub own_flops: f64,
}

impl Serialize for WouldTrain {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let mut row = serializer.serialize_tuple(5)?;
        row.serialize_element(&self.id)?;
        row.serialize_element(&self.kind)?;
        row.serialize_element(&self.width)?;
        row.serialize_element(&self.tokens)?;
        row.serialize_element(&self.own_flops)?;
        row.end()
    }
}

pub fn dry_run(loaded: &LoadedSweep, out_root: &Path) -> anyhow::Result<DryRun> {
    let (sweep, plan) = (loaded.dir(out_root), &loaded.plan);
    let finished = |id: &str| crate::train::log::read_status(sweep.run(id).root()).ok().flatten().is_some_and(|s| s.state.is_finished());
    let would_train: Vec<WouldTrain> = plan
        .runs
        .iter()
        .filter(|r| !finished(&r.id))
        .map(|r| WouldTrain { id: r.id.clone(), kind: r.kind, width: r.width, tokens: r.tokens, own_flops: r.own_flops })
        .collect();
    // Folded from +0: an empty float sum is -0.0, which would print as "-0.000e0".
    let flops = would_train.iter().map(|r| r.own_flops).fold(0.0, |total, f| total + f);
    let (runs, already_finished, mixture_costs) = (plan.runs.len(), plan.runs.len() - would_train.len(), plan.mixture_costs.clone());
    Ok(DryRun { dir: sweep.root().to_path_buf(), runs, already_finished, would_train, flops, mixture_costs })
}

impl std::fmt::Display for DryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "dry run: nothing trained. {}: {} runs, {} already finished", self.dir.display(), self.runs, self.already_finished)?;
        for WouldTrain { id, kind, width, tokens, own_flops } in &self.would_train {
            writeln!(f, "  would train {id} {kind:<6} width {width:>5} D {:>9} {own_flops:.3e} FLOPs", crate::format::si(*tokens as f64))?;
        }
        for cost in &self.mixture_costs {
            writeln!(f, "{cost}")?;
        }
        write!(f, "{} run(s) would train, {:.3e} FLOPs; run without --dry-run to train them", self.would_train.len(), self.flops)
    }
}

/// `windtunnel status`: the files' view, with what each executor that ran the sweep knows of
/// its unfinished runs.
pub fn status(sweep: &SweepDir) -> anyhow::Result<status::SweepStatus> {
    let mut view = status::files_view(sweep)?;
    let unfinished = view.unfinished();
    for executor in registry::executors_of(sweep) {
        match executor.live_states(sweep, &unfinished) {
            Ok(mut live) => view.detail.iter_mut().for_each(|r| r.live = r.live.take().or_else(|| live.remove(&r.id))),
            Err(e) => view.live_unavailable.push(format!("no {} view of the unfinished runs: {e:#}", executor.name())),
        }
    }
    Ok(view)
}

/// `windtunnel cancel`: stop whatever executes the sweep (a local `run`, its Slurm jobs); the
/// runs write checkpoints, and running the sweep again resumes them.
pub fn cancel(sweep: &SweepDir) -> anyhow::Result<Vec<CancelReport>> {
    status::read_plan(sweep)?;
    let mut stopped = Vec::new();
    for executor in registry::executors_of(sweep) {
        stopped.extend(executor.cancel(sweep)?);
    }
    anyhow::ensure!(!stopped.is_empty(), "{}: nothing is running (no `windtunnel run` holds it, and no Slurm jobs are recorded)", sweep.root().display());
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_would_train_is_a_json_array_as_before() {
        let run = WouldTrain { id: "a".into(), kind: plan::RunKind::Branch, width: 64, tokens: 2048, own_flops: 1.5e9 };
        assert_eq!(serde_json::to_string(&run).unwrap(), serde_json::to_string(&("a", plan::RunKind::Branch, 64usize, 2048u64, 1.5e9)).unwrap());
    }
}
