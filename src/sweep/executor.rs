//! Where a sweep's runs execute: the extension point. An executor is handed a sweep directory
//! whose plan and run configs are written (see [`super::materialise`]) and starts the worker
//! `windtunnel train runs/<id>/config.json --out runs/<id>` for every unfinished run, in an
//! order that starts a branch only once its trunk's checkpoint exists. Everything it does shows in
//! the runs' files, so `status`, `collect` and a later `run` need nothing from it but what
//! [`Executor::live_states`] adds.
//!
//! Two executors implement it: [`super::local::LocalExecutor`] (worker processes on this
//! machine's CPUs and GPUs) and [`super::slurm::SlurmExecutor`] (job arrays on a Slurm cluster).
//! A new one (another scheduler, a cloud batch service) is one file implementing this trait,
//! with a function that builds it for `run` from the [`RunOptions`] and the loaded sweep and one
//! that builds it for `status` and `cancel` of a sweep directory, and one line in
//! [`super::registry::EXECUTORS`], which `run --executor`, `status` and `cancel` read.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use super::plan::Plan;
use super::spec::{SlurmSpec, SLURM_FLAGS};
use super::status::LiveState;
use super::worker::Workers;
use crate::layout::SweepDir;

pub trait Executor {
    /// Its name in messages and in `status --json` ("local", "slurm").
    fn name(&self) -> &'static str;

    /// Execute (or hand to a scheduler) every unfinished run of `plan` in `sweep`.
    fn execute(&self, sweep: &SweepDir, plan: &Plan) -> anyhow::Result<ExecReport>;

    /// What the executor knows of the runs `unfinished` beyond their files (a scheduler's queue).
    fn live_states(&self, sweep: &SweepDir, unfinished: &[String]) -> anyhow::Result<HashMap<String, LiveState>>;

    /// Stop the sweep's runs gracefully (each writes a checkpoint); `run` resumes them. `Ok(None)`
    /// when this executor has nothing of the sweep running.
    fn cancel(&self, sweep: &SweepDir) -> anyhow::Result<Option<CancelReport>>;

    /// How many runs it trains at once: `run --adaptive` chooses that many per round unless the
    /// sweep file's `[adaptive] runs_per_round` says.
    fn slots(&self) -> usize;
}

/// What `windtunnel run` asks of the executor it names; each executor reads what concerns it.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub exec: ExecFlags,
    /// The `[slurm]` flags (the Slurm executor puts them over the sweep file's block).
    pub slurm: SlurmSpec,
    pub submit: SubmitFlags,
    /// `run --adaptive`: rounds of runs, each handed to the executor once the last has ended.
    pub adaptive: bool,
    /// The `windtunnel` binary, which the workers run.
    pub worker: PathBuf,
}

/// The flags of `windtunnel run` that say how its runs are trained.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecFlags {
    /// Workers at a time [default: devices × runs-per-device].
    #[arg(long)]
    pub parallel: Option<usize>,
    /// cpu, or GPUs as cuda:0,1,2 or cuda:all (each worker sees one GPU; N counts the GPUs in
    /// CUDA_VISIBLE_DEVICES when it is set, as inside a Slurm job).
    #[arg(long, default_value = "cpu")]
    pub devices: String,
    /// Concurrent runs per device; with --executor slurm, per GPU of a task (or per CPU task),
    /// overriding [slurm] runs_per_device [default: 1].
    #[arg(long)]
    pub runs_per_device: Option<usize>,
    /// How runs are trained: `persistent` (a `windtunnel worker` per device slot, or per Slurm
    /// lane, trains run after run: GPU kernels compiled and the CUDA context created once),
    /// `shared` (one worker per device, or per GPU of a Slurm task, trains its --runs-per-device
    /// runs at once, on threads of one process) or `per-run` (a `train` process each)
    /// [default: persistent on GPUs, per-run on the CPU].
    #[arg(long, value_enum)]
    pub workers: Option<Workers>,
    /// Where workers keep compiled GPU kernels and autotune results [default:
    /// $WINDTUNNEL_KERNEL_CACHE, else the sweep file's [gpu] kernel_cache, else ~/.cache/windtunnel/kernels].
    #[arg(long, value_name = "DIR")]
    pub kernel_cache: Option<PathBuf>,
    /// Retries of a failed run [default: 2]; Slurm: requeues of a task after a failure, time limit
    /// or preemption [default: the [slurm] block's max_requeues, else 3].
    #[arg(long)]
    pub max_retries: Option<usize>,
    #[arg(long)]
    pub quiet: bool,
}

/// `run --dry-run` and `--wait`, shown with the Slurm flags.
#[derive(Debug, Clone, Copy, clap::Args)]
#[command(next_help_heading = SLURM_FLAGS)]
pub struct SubmitFlags {
    /// Train nothing: with the local executor, print what would run and what it would cost; with
    /// --executor slurm, also write the sbatch scripts into DIR/slurm/ without submitting them.
    #[arg(long)]
    pub dry_run: bool,
    /// Stay until Slurm has finished the sweep, then collect its table.
    #[arg(long)]
    pub wait: bool,
}

/// `run --workers`' values, in the order `--help` lists them.
impl clap::ValueEnum for Workers {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Persistent, Self::PerRun, Self::Shared]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// What `run` did through an executor.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExecReport {
    pub executor: &'static str,
    /// Runs that finished while it ran, by outcome.
    pub done: usize,
    pub diverged: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// Runs that stopped where their `pause.json` asked (trunks an adaptive sweep needs so far).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub paused: usize,
    /// Runs finished before it started (kept, not retrained).
    pub skipped_already_done: usize,
    /// The signal that stopped it (Ctrl-C, SIGTERM), if one did.
    pub stopped_by_signal: Option<i32>,
    /// Whether `windtunnel cancel` stopped it.
    pub cancelled: bool,
    /// Whether it stayed until no run was left to execute (false: handed to a scheduler).
    pub waited: bool,
    /// What was handed to a scheduler, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted: Option<Submitted>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Runs handed to a scheduler.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Submitted {
    pub runs: usize,
    pub already_in_queue: usize,
    /// Runs not submitted, and why (a branch whose trunk diverged).
    pub skipped: Vec<String>,
    pub scripts: Vec<PathBuf>,
    pub job_ids: Vec<String>,
    /// Scripts written, nothing submitted.
    pub dry_run: bool,
}

/// What `windtunnel cancel` stopped.
#[derive(Debug, Clone, Serialize)]
pub struct CancelReport {
    pub executor: &'static str,
    /// What was stopped: a `run`'s pid, or scheduler job ids.
    pub stopped: Vec<String>,
    pub message: String,
}

impl ExecReport {
    /// Add what a later execution of the same sweep did (an adaptive sweep's next round).
    pub fn absorb(&mut self, later: &ExecReport) {
        self.executor = later.executor;
        self.done += later.done;
        self.diverged += later.diverged;
        self.failed += later.failed;
        self.interrupted += later.interrupted;
        self.paused += later.paused;
        self.stopped_by_signal = later.stopped_by_signal.or(self.stopped_by_signal);
        self.cancelled |= later.cancelled;
        self.waited = later.waited;
    }
}

impl std::fmt::Display for ExecReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = &self.submitted {
            if s.scripts.is_empty() {
                write!(f, "nothing to submit")?;
            } else if s.dry_run {
                write!(f, "dry run: wrote {} without submitting", s.scripts.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))?;
            } else {
                write!(f, "submitted {} run(s) as job(s) {}", s.runs, if s.job_ids.is_empty() { "-".to_string() } else { s.job_ids.join(", ") })?;
            }
            write!(f, "; {} already finished, {} already queued or running", self.skipped_already_done, s.already_in_queue)?;
            for line in &s.skipped {
                write!(f, "\n  {line}")?;
            }
            return Ok(());
        }
        write!(f, "{} done, {} diverged, {} failed, {} kept from before", self.done, self.diverged, self.failed, self.skipped_already_done)
    }
}
