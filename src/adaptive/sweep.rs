//! `windtunnel run SWEEP --adaptive`: the loop of [`super::design`] on a sweep's own runs.
//!
//! The candidates are the runs of one grid of the sweep file (its decay branches, or its plain
//! runs), with the ids the full grid would give them: an adaptive sweep is a subset of the full
//! one, and running the sweep without `--adaptive` into the same folder later trains the rest.
//!
//! What a candidate costs is what it adds. A branch at D_k of a size whose trunk has been trained
//! to D ≥ D_k costs its decay alone; otherwise its trunk must first be extended from D to D_k.
//! A trunk is trained only as far as its chosen branches need: the round's plan gives it a
//! pause point (`pause.json`), where it stops with a checkpoint and the status `paused`, and a
//! later round that needs more resumes it from there, bit for bit the run it would have been.
//!
//! Every round is written to `adaptive.json` before its runs start, so a killed adaptive sweep
//! resumes with the same decisions: the rounds recorded are followed, and the loop goes on from
//! the last. Any executor runs the rounds: each is a plan handed to it like any sweep's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::design::{self, Candidate, Lab, Round, Strategy};
use super::settings::AdaptiveSpec;
use super::target::Target;
use crate::fit::form::Form;
use crate::fit::observation::Value;
use crate::fsutil::atomic_write;
use crate::layout::SweepDir;
use crate::sweep::collect::{self, column, CollectSummary};
use crate::sweep::executor::{ExecReport, Executor};
use crate::sweep::loaded::LoadedSweep;
use crate::sweep::plan::{Plan, PlannedRun, RunKind};
use crate::sweep::spec::SweepSpec;

/// `adaptive.json`: what the rounds were chosen for, and the rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveRecord {
    pub sweep: String,
    pub grid: String,
    pub target: Target,
    pub seed: u64,
    pub bootstrap: usize,
    pub runs_per_round: usize,
    pub max_flops: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_interval: Option<f64>,
    /// How the rounds were chosen, written where not `[adaptive]`'s defaults.
    #[serde(default, skip_serializing_if = "is_default")]
    pub strategy: &'static dyn Strategy,
    #[serde(default, skip_serializing_if = "is_default")]
    pub form: Form,
    #[serde(default = "default_delta", skip_serializing_if = "is_default_delta")]
    pub delta: f64,
    /// Every candidate's FLOPs if the whole grid were trained (for "a fraction of the grid").
    pub grid_flops: f64,
    /// How many runs the grid has (the candidates).
    #[serde(default)]
    pub candidates: usize,
    pub rounds: Vec<Round>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}
fn default_delta() -> f64 {
    AdaptiveSpec::DEFAULT_DELTA
}
fn is_default_delta(delta: &f64) -> bool {
    *delta == AdaptiveSpec::DEFAULT_DELTA
}

impl AdaptiveRecord {
    /// Read a sweep's rounds, if it has any.
    pub fn read(sweep: &SweepDir) -> anyhow::Result<Option<Self>> {
        let path = sweep.adaptive();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("{} is malformed; move it away to start the adaptive rounds anew", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
        }
    }

    fn write(&self, sweep: &SweepDir) -> anyhow::Result<()> {
        atomic_write(&sweep.adaptive(), (serde_json::to_string_pretty(self)? + "\n").as_bytes())
    }

    /// The last round with a fit.
    pub fn last_fit(&self) -> Option<&design::Estimate> {
        self.rounds.iter().rev().find_map(|r| r.fit.as_ref())
    }
}

/// The grid whose runs are the candidates: the one named, else the one WSD grid, else the one grid.
fn candidate_grid(spec: &SweepSpec, adaptive: &AdaptiveSpec, path: &Path) -> anyhow::Result<String> {
    let names: Vec<&str> = spec.grids.iter().map(|g| g.name.as_str()).collect();
    if let Some(name) = &adaptive.grid {
        anyhow::ensure!(
            names.contains(&name.as_str()),
            "{}: [adaptive] grid = {name:?} is not a grid of the sweep; its grids are {}",
            path.display(),
            names.join(", ")
        );
        return Ok(name.clone());
    }
    let wsd: Vec<&str> = spec.grids.iter().filter(|g| g.wsd.is_some()).map(|g| g.name.as_str()).collect();
    match (wsd.as_slice(), names.as_slice()) {
        ([one], _) | ([], [one]) => Ok(one.to_string()),
        _ => anyhow::bail!("{}: [adaptive] does not say which grid's runs to choose from ({}); add grid = \"NAME\"", path.display(), names.join(", ")),
    }
}

/// What `run --adaptive` did.
#[derive(Debug, Serialize)]
pub struct AdaptiveOutcome {
    pub dir: PathBuf,
    pub record: AdaptiveRecord,
    /// The executors' reports, summed over the rounds run now.
    pub exec: ExecReport,
    pub table: Option<CollectSummary>,
}

/// The sweep's runs as a lab: choosing a candidate trains it (and its trunk as far as needed).
struct SweepLab<'a> {
    sweep: SweepDir,
    /// The sweep file's text, written into the sweep directory with each round's plan.
    text: &'a str,
    /// The plan of the whole sweep file, whose runs the rounds choose from.
    full: &'a Plan,
    executor: &'a dyn Executor,
    candidates: Vec<Candidate>,
    /// Each candidate's run in `full.runs`.
    run_of: Vec<usize>,
    /// Each candidate's trunk in `full.runs` (a branch's), found once.
    trunk_of: Vec<Option<usize>>,
    /// Each trunk (its index in `full.runs`) and the tokens it is trained to, or will be.
    reach: BTreeMap<usize, u64>,
    /// Candidates chosen so far, in order.
    chosen: Vec<usize>,
    exec: ExecReport,
    quiet: bool,
}

/// Stopped by a signal or `windtunnel cancel` in the middle of a round.
#[derive(Debug, thiserror::Error)]
#[error("the adaptive sweep was stopped during a round; its runs wrote checkpoints, and running the same command again resumes it")]
struct Stopped;

impl SweepLab<'_> {
    /// The plan of the runs chosen so far: their trunks (paused where they are needed no further)
    /// and themselves.
    fn round_plan(&self) -> Plan {
        let mut runs: Vec<PlannedRun> = Vec::new();
        for (&t, &tokens) in &self.reach {
            let mut trunk = self.full.runs[t].clone();
            trunk.pause_at_tokens = (tokens < trunk.tokens).then_some(tokens);
            if let Some(pause) = trunk.pause_at_tokens {
                trunk.own_flops = trunk.flops * pause as f64 / trunk.tokens as f64;
            }
            runs.push(trunk);
        }
        runs.extend(self.chosen.iter().map(|&j| self.full.runs[self.run_of[j]].clone()));
        let total_flops = runs.iter().map(|r| r.own_flops).sum();
        let from_scratch_flops = runs.iter().filter(|r| r.kind != RunKind::Trunk).map(|r| r.flops).sum();
        Plan {
            name: self.full.name.clone(),
            runs,
            total_flops,
            from_scratch_flops,
            duplicates: Vec::new(),
            kernel_cache: self.full.kernel_cache.clone(),
            mixture_costs: Vec::new(),
            domain_floors: Vec::new(),
        }
    }

    /// The final eval loss of each run in `ids`, from the results table (`None`: diverged).
    fn losses(&self, ids: &[&str]) -> anyhow::Result<Vec<Option<f64>>> {
        let table = collect::ResultsTable::read(&self.sweep)?.observations(self.sweep.root())?;
        let loss = table.column(column::FINAL_EVAL_LOSS)?;
        ids.iter()
            .map(|want| {
                let Some(at) = table.rows.iter().position(|r| r.run_id.as_deref() == Some(*want)) else {
                    anyhow::bail!("run {want} did not finish (see {}); run the same command again to retry it", self.sweep.run(want).worker_log().display())
                };
                let row = &table.rows[at];
                Ok(if row.is_done() && row.values[loss] != Value::Missing { row.values[loss].number() } else { None })
            })
            .collect()
    }
}

impl Lab for SweepLab<'_> {
    fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn cost(&self, j: usize, batch: &[usize]) -> f64 {
        let run = &self.full.runs[self.run_of[j]];
        let Some(trunk) = self.trunk_of[j] else { return run.own_flops };
        let from = run.from_tokens.unwrap_or(0);
        let reach = batch
            .iter()
            .filter(|&&b| self.trunk_of[b] == Some(trunk))
            .filter_map(|&b| self.full.runs[self.run_of[b]].from_tokens)
            .chain(self.reach.get(&trunk).copied())
            .max()
            .unwrap_or(0);
        let t = &self.full.runs[trunk];
        let extension = from.saturating_sub(reach) as f64 * t.flops / t.tokens as f64;
        extension + run.own_flops
    }

    fn run(&mut self, round: usize, batch: &[usize]) -> anyhow::Result<Vec<Option<f64>>> {
        for &j in batch {
            if !self.chosen.contains(&j) {
                self.chosen.push(j);
            }
            if let Some(t) = self.trunk_of[j] {
                let from = self.full.runs[self.run_of[j]].from_tokens.unwrap_or(0);
                let reach = self.reach.entry(t).or_insert(0);
                *reach = (*reach).max(from);
            }
        }
        // A signal between rounds (while the law was fitted) stops the sweep before the next.
        if let Some(sig) = crate::process::stop_requested() {
            self.exec.stopped_by_signal = Some(sig);
            return Err(Stopped.into());
        }
        let plan = self.round_plan();
        crate::sweep::materialise(&self.sweep, self.text, &plan)?;
        if !self.quiet {
            crate::stderr_line!("round {round}: training {} run(s)", batch.len());
        }
        let exec = self.executor.execute(&self.sweep, &plan)?;
        self.exec.absorb(&exec);
        if exec.stopped_by_signal.is_some() {
            return Err(Stopped.into());
        }
        anyhow::ensure!(exec.waited, "the executor handed the round to a scheduler without waiting; run --adaptive needs --wait with --executor slurm");
        anyhow::ensure!(
            exec.failed == 0,
            "round {round}: {} run(s) failed (the reasons are above, and in each run's worker.log under {}); fix the cause and run the same command again to continue the rounds",
            exec.failed,
            self.sweep.runs().display()
        );
        let ids: Vec<&str> = batch.iter().map(|&j| self.candidates[j].id.as_str()).collect();
        self.losses(&ids)
    }
}

/// `windtunnel run SWEEP --adaptive`; `runs_per_round` is the executor's parallel slots unless
/// the sweep file says.
pub fn run(loaded: &LoadedSweep, out_root: &Path, executor: &dyn Executor, slots: usize, quiet: bool) -> anyhow::Result<AdaptiveOutcome> {
    let (spec, full, sweep_file) = (&loaded.spec, &loaded.plan, loaded.path.as_path());
    let adaptive = spec.adaptive.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: --adaptive needs an [adaptive] block: target = \"allocation\" with budget_flops, or \"loss\" with n and tokens; and max_flops (see sweeps/adaptive-allocation.toml)",
            sweep_file.display()
        )
    })?;
    let grid = candidate_grid(spec, &adaptive, sweep_file)?;
    let run_of: Vec<usize> = (0..full.runs.len()).filter(|&i| full.runs[i].grid == grid && full.runs[i].kind != RunKind::Trunk).collect();
    let candidates: Vec<Candidate> =
        run_of.iter().map(|&i| Candidate { id: full.runs[i].id.clone(), n: full.runs[i].n as f64, tokens: full.runs[i].tokens as f64 }).collect();
    let target = adaptive.target();
    let at: Vec<(f64, f64)> = candidates.iter().map(|c| (c.n, c.tokens)).collect();
    target.check_reachable(&at, &format!("{} grid `{grid}`", sweep_file.display()))?;
    let sweep = loaded.dir(out_root);
    let _lock = crate::sweep::lock(&sweep)?;
    // Ctrl-C, SIGTERM or `cancel` between rounds must stop the loop too: the flag is the process's.
    crate::process::stop_requested();
    let runs_per_round = adaptive.runs_per_round.unwrap_or(slots.max(1));
    let grid_flops: f64 = full.runs.iter().filter(|r| r.grid == grid).map(|r| r.own_flops).sum();
    let mut record = AdaptiveRecord {
        sweep: spec.name.clone(),
        grid: grid.clone(),
        target,
        seed: adaptive.seed,
        bootstrap: adaptive.bootstrap,
        runs_per_round,
        max_flops: adaptive.max_flops,
        relative_interval: adaptive.relative_interval,
        strategy: adaptive.strategy,
        form: adaptive.form,
        delta: adaptive.delta,
        grid_flops,
        candidates: run_of.len(),
        rounds: Vec::new(),
    };
    let history = match AdaptiveRecord::read(&sweep)? {
        Some(before) => resumable(before, &record, &sweep)?,
        None => Vec::new(),
    };
    let settings = adaptive.settings(target, adaptive.max_flops, runs_per_round, history);
    let trunk_of = run_of.iter().map(|&i| full.runs[i].trunk.as_deref().and_then(|id| full.runs.iter().position(|r| r.id == id))).collect();
    let mut lab = SweepLab {
        sweep: sweep.clone(),
        text: &loaded.text,
        full,
        executor,
        candidates,
        run_of,
        trunk_of,
        reach: BTreeMap::new(),
        chosen: Vec::new(),
        exec: ExecReport::default(),
        quiet,
    };
    let mut on_round = |round: &Round| -> anyhow::Result<()> {
        record.rounds.truncate(round.round);
        record.rounds.push(round.clone());
        if !quiet {
            crate::stderr_line!("{}", round_line(round, &record));
        }
        record.write(&sweep)
    };
    let result = design::run(&mut lab, &settings, &mut on_round);
    let exec = std::mem::take(&mut lab.exec);
    let stopped = match result {
        Ok(_) => false,
        Err(e) if e.downcast_ref::<Stopped>().is_some() => true,
        Err(e) => return Err(e),
    };
    let record = AdaptiveRecord::read(&sweep)?.unwrap_or(record);
    let table = if stopped { None } else { Some(collect::collect(&sweep).context("the adaptive sweep ran but its table could not be written")?) };
    Ok(AdaptiveOutcome { dir: sweep.root().to_path_buf(), record, exec, table })
}

/// The rounds of `before` to follow, when they were chosen for the same question; the last
/// round is chosen again (a raised `max_flops`, a finer `relative_interval` or another `level`
/// continues the loop). Rounds chosen with another strategy, form or δ are another question.
fn resumable(before: AdaptiveRecord, now: &AdaptiveRecord, sweep: &SweepDir) -> anyhow::Result<Vec<Round>> {
    let same = |a: &AdaptiveRecord| (a.grid.clone(), a.target, a.seed, a.bootstrap, a.runs_per_round, a.strategy.name(), a.form, a.delta);
    let question = |a: &AdaptiveRecord| {
        format!(
            "grid `{}`, target {}, seed {}, bootstrap {}, {} runs per round, strategy {}, form {}, delta {}",
            a.grid,
            a.target.describe(),
            a.seed,
            a.bootstrap,
            a.runs_per_round,
            a.strategy,
            a.form.law_form().name(),
            a.delta
        )
    };
    anyhow::ensure!(
        same(&before) == same(now),
        "{} holds adaptive rounds chosen for {}; this run asks for {} (runs_per_round is --parallel's slots unless [adaptive] sets it). \
         Ask the same question again to continue them, or run into another --out",
        sweep.adaptive().display(),
        question(&before),
        question(now)
    );
    let mut rounds = before.rounds;
    rounds.pop();
    Ok(rounds)
}

/// One line per round: what the fit said, and what it chose.
pub fn round_line(round: &Round, record: &AdaptiveRecord) -> String {
    let fit = match &round.fit {
        Some(e) => format!(
            "{} = {:.4} [{:.4}, {:.4}] (±{:.1}%){}",
            short(&record.target),
            e.estimate,
            e.lower,
            e.upper,
            100.0 * e.relative_half_width,
            if e.law.is_plausible() { "" } else { " (the law is outside any plausible range: not yet constrained)" }
        ),
        None => "seed design".to_string(),
    };
    let spent = format!("{:.3e} FLOPs ({:.1}% of the grid)", round.flops_spent, 100.0 * round.flops_spent / record.grid_flops.max(1.0));
    format!("round {:>2}: {} runs, {spent}: {fit}; {}", round.round, round.points, round.decision())
}

fn short(target: &Target) -> &'static str {
    match target {
        Target::Allocation { .. } => "D/N",
        Target::Loss { .. } => "loss",
    }
}

impl std::fmt::Display for AdaptiveRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "adaptive rounds of grid `{}`: {}, at most {:.3e} FLOPs", self.grid, self.target.describe(), self.max_flops)?;
        for r in &self.rounds {
            writeln!(f, "  {}", round_line(r, self))?;
        }
        Ok(())
    }
}

impl std::fmt::Display for AdaptiveOutcome {
    /// The answer (the rounds were shown as they went, and `status` shows them again).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = self.record.rounds.last();
        let spent = last.map_or(0.0, |r| r.flops_spent);
        writeln!(
            f,
            "{} rounds, {:.3e} FLOPs ({:.1}% of the whole grid's {:.3e}){}",
            self.record.rounds.len(),
            spent,
            100.0 * spent / self.record.grid_flops.max(1.0),
            self.record.grid_flops,
            last.and_then(|r| r.stopped.as_ref()).map(|why| format!("; stopped: {why}")).unwrap_or_default()
        )?;
        if let Some(e) = self.record.last_fit() {
            write!(f, "{}: {} = {:.4} [{:.4}, {:.4}]", self.dir.display(), self.record.target.describe(), e.estimate, e.lower, e.upper)?;
            if let (Some(n), Some(d)) = (&e.n_opt, &e.d_opt) {
                write!(f, " (N_opt {}, D_opt {})", crate::format::si(n.estimate), crate::format::si(d.estimate))?;
            }
            writeln!(f)?;
        }
        match &self.table {
            Some(t) => write!(f, "{}", t.table.display())?,
            None => write!(f, "stopped; run the same command again to resume")?,
        }
        Ok(())
    }
}
