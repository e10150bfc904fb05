//! Where a sweep's runs execute: the extension point. An executor is handed a sweep directory
//! whose plan and run configs are written (see [`super::materialise`]) and starts the worker
//! `windtunnel train runs/<id>/config.json --out runs/<id>` for every unfinished run, in an
//! order that starts a branch only once its trunk's checkpoint exists. Everything it does shows in
//! the runs' files, so `status`, `collect` and a later `run` need nothing from it but what
//! [`Executor::live_states`] adds.
//!
//! Two executors implement it: [`super::local::LocalExecutor`] (worker processes on this
//! machine's CPUs and GPUs) and [`super::slurm::SlurmExecutor`] (job arrays on a Slurm cluster).
//! A new one (another scheduler, a cloud batch service) is one file implementing this
//! trait, and one line in `sweep::executors_of` so `status` and `cancel` consult it.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use super::plan::Plan;
use super::status::LiveState;
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
