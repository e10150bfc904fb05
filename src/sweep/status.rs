//! `windtunnel status DIR`: a sweep's progress read from its files alone — the plan and each
//! run's `status.json` — so it works during a run, after a crash, and on a login node while a
//! cluster trains. An executor adds what only it knows (Slurm's queue) as each run's `live` state
//! (see [`super::executor::Executor::live_states`]).

use std::path::PathBuf;

use anyhow::Context;
use serde::{Serialize, Serializer};

use super::plan::{Plan, RunKind};
use crate::fsutil::FileLock;
use crate::layout::{RunDir, SweepDir};
use crate::train::log::{read_status, RunState, Status};

/// The sweep's plan (`plan.json`).
pub fn read_plan(sweep: &SweepDir) -> anyhow::Result<Plan> {
    let path = sweep.plan();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(which) = SweepDir::sweeps_inside(sweep.root()) {
                anyhow::bail!(which);
            }
            anyhow::bail!("{} is not a sweep directory (no plan.json); start it with `windtunnel run SWEEP.toml`", sweep.root().display())
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            anyhow::bail!("{} is not text (damaged?); `windtunnel run SWEEP.toml` with the sweep's file writes it again", path.display())
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    };
    serde_json::from_str(&text).with_context(|| format!("{} is malformed", path.display()))
}

/// A run as its files show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunView {
    /// Not started: no `status.json`.
    Pending,
    /// `status.json` cannot be read (torn by a crash): `run` trains the run again, which rewrites it.
    Unknown,
    /// What `status.json` says (a "running" run whose process is gone shows as interrupted).
    Is(RunState),
}

impl RunView {
    /// Done or diverged: a result that no executor runs again.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Is(s) if s.is_finished())
    }
}

impl std::fmt::Display for RunView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pending => f.write_str("pending"),
            Self::Unknown => f.write_str("unknown"),
            Self::Is(s) => s.fmt(f),
        }
    }
}

impl Serialize for RunView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What an executor knows of an unfinished run beyond its files (e.g. its Slurm task's state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveState {
    /// The executor that reports it ("slurm").
    pub executor: &'static str,
    /// Its handle there (a Slurm task "<job>_<index>").
    pub handle: String,
    /// The executor's word for it (PENDING, RUNNING, … or UNKNOWN).
    pub state: String,
    pub reason: Option<String>,
    /// Queued or running: the executor will still run it.
    pub alive: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunProgress {
    pub id: String,
    pub kind: RunKind,
    pub state: RunView,
    pub step: u64,
    pub steps: u64,
    pub eval_loss: Option<f64>,
    /// The latest loss of each named evaluation set (`training.evals`), from its status.json.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub evals: std::collections::BTreeMap<String, Option<f64>>,
    pub reason: Option<String>,
    /// The executor's view, for runs the files do not show finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepStatus {
    pub dir: PathBuf,
    pub runs: usize,
    pub pending: usize,
    pub running: usize,
    pub done: usize,
    pub diverged: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// Runs whose `status.json` cannot be read (torn or edited); `run` resumes them.
    pub unknown: usize,
    /// Trunks an adaptive sweep has trained only as far as its chosen branches need.
    pub paused: usize,
    pub tokens_done: u64,
    pub tokens_total: u64,
    /// Training FLOPs done and planned (each run's own: a branch counts its decay only). Progress
    /// and ETAs use these: a token of a big model costs more than one of a small model.
    pub flops_done: f64,
    pub flops_total: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub detail: Vec<RunProgress>,
    /// Executors whose view is missing, and why (e.g. no Slurm client on this machine).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub live_unavailable: Vec<String>,
}

/// Why a run whose status says "running" is not: no process holds its `run.lock` (the one that
/// trained it was killed without a chance to say so). `None` when the status can be believed.
fn dead_writer(run: &RunDir, status: &Status) -> Option<String> {
    if status.state != RunState::Running || FileLock::holder(&run.lock()).is_some() {
        return None;
    }
    Some(format!("the process that trained it (pid {}) is gone; `windtunnel run` resumes it from its newest checkpoint", status.pid))
}

/// A running run whose status has not moved for this long is flagged as stalled (a training
/// run rewrites it every few seconds between steps).
pub const STALL_AFTER_S: f64 = 600.0;

/// Why a running run makes no progress, when it visibly does not: its worker is stopped
/// (SIGSTOP, Ctrl-Z), or its status has not moved for [`STALL_AFTER_S`].
fn stalled(status: &Status) -> Option<String> {
    if status.state != RunState::Running {
        return None;
    }
    if is_stopped_windtunnel(status.pid) {
        return Some(format!("its worker (pid {0}) is stopped (SIGSTOP or Ctrl-Z), so it makes no progress: `kill -CONT {0}` lets it go on", status.pid));
    }
    let quiet_s = crate::train::log::now_seconds() - status.updated_at;
    (quiet_s > STALL_AFTER_S).then(|| {
        format!(
            "stalled: no progress written for {} (pid {}); a hung worker or file system? its worker.log says what it did last",
            crate::format::duration(quiet_s),
            status.pid
        )
    })
}

/// Whether `pid` is a `windtunnel` process (or a renamed copy such as `windtunnel-gpu`) on this
/// machine in the stopped state (Linux `/proc`; a pid from another machine names no such process
/// here, or another program).
fn is_stopped_windtunnel(pid: u32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name: "PID (comm) S ...".
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    comm.trim().starts_with("windtunnel") && matches!(state, Some("T") | Some("t"))
}

/// What to do about a finished run whose losses are lost or damaged.
pub(crate) fn train_anew(run: &RunDir) -> String {
    format!("Delete {} (or move it away) and run the sweep again: it trains the run anew from the plan, the same run bit for bit", run.root().display())
}

/// The last step of a run whose metrics end in its final evaluation at that step (`run.json`'s
/// step count), read when its status cannot be.
fn finished_at_step(run: &RunDir) -> Option<u64> {
    let record: crate::train::run::RunRecord = serde_json::from_str(&std::fs::read_to_string(run.record()).ok()?).ok()?;
    let last = crate::train::log::read_metrics(&run.metrics()).ok()?.pop()?;
    (last.step == record.steps && last.eval_loss.is_some()).then_some(last.step)
}

/// One run's progress from its files.
fn run_progress(sweep: &SweepDir, id: &str, kind: RunKind) -> RunProgress {
    let run = sweep.run(id);
    let progress =
        |state, reason| RunProgress { id: id.to_string(), kind, state, step: 0, steps: 0, eval_loss: None, evals: Default::default(), reason, live: None };
    match read_status(run.root()) {
        Ok(None) => progress(RunView::Pending, None),
        Err(e) => {
            let what_to_do = match finished_at_step(&run) {
                Some(step) => format!(
                    "its metrics.jsonl ends in the final evaluation at step {step}, so the run finished: `windtunnel run` on the sweep rewrites status.json from its final checkpoint without training again"
                ),
                None => "`windtunnel run` on the sweep resumes the run from its newest checkpoint, which rewrites it".to_string(),
            };
            progress(RunView::Unknown, Some(format!("{e:#}; {what_to_do}")))
        }
        Ok(Some(s)) => {
            let (state, reason) = match dead_writer(&run, &s) {
                Some(dead) => (RunState::Interrupted, Some(dead)),
                None if s.state.is_finished() && !run.metrics().exists() => {
                    (s.state, Some(format!("its metrics.jsonl is missing (deleted?): its losses are lost. {}", train_anew(&run))))
                }
                None => (s.state, stalled(&s).or_else(|| s.reason.clone())),
            };
            RunProgress { step: s.step, steps: s.steps, eval_loss: s.eval_loss, evals: s.evals.clone(), ..progress(RunView::Is(state), reason) }
        }
    }
}

/// The sweep's progress from its files alone.
pub fn files_view(sweep: &SweepDir) -> anyhow::Result<SweepStatus> {
    Ok(files_view_of(sweep, &read_plan(sweep)?))
}

/// [`files_view`] with the plan already read (a watcher that keeps it reads only the runs' files).
pub fn files_view_of(sweep: &SweepDir, plan: &Plan) -> SweepStatus {
    let mut s = SweepStatus {
        dir: sweep.root().to_path_buf(),
        runs: plan.runs.len(),
        pending: 0,
        running: 0,
        done: 0,
        diverged: 0,
        failed: 0,
        interrupted: 0,
        unknown: 0,
        paused: 0,
        tokens_done: 0,
        tokens_total: 0,
        flops_done: 0.0,
        flops_total: 0.0,
        detail: Vec::new(),
        live_unavailable: Vec::new(),
    };
    for r in &plan.runs {
        // A trunk an adaptive sweep trains only so far counts only so far.
        let own_tokens = r.pause_at_tokens.unwrap_or(r.tokens).min(r.tokens) - r.from_tokens.unwrap_or(0);
        let p = run_progress(sweep, &r.id, r.kind);
        let tps = r.config.training.tokens_per_step();
        let own_done = (p.step * tps).saturating_sub(r.from_tokens.unwrap_or(0)).min(own_tokens);
        s.tokens_total += own_tokens;
        s.tokens_done += own_done;
        s.flops_total += r.own_flops;
        s.flops_done += r.own_flops * own_done as f64 / own_tokens.max(1) as f64;
        *match p.state {
            RunView::Pending => &mut s.pending,
            RunView::Unknown => &mut s.unknown,
            RunView::Is(RunState::Running) => &mut s.running,
            RunView::Is(RunState::Done) => &mut s.done,
            RunView::Is(RunState::Diverged) => &mut s.diverged,
            RunView::Is(RunState::Failed) => &mut s.failed,
            RunView::Is(RunState::Interrupted) => &mut s.interrupted,
            RunView::Is(RunState::Paused) => &mut s.paused,
        } += 1;
        s.detail.push(p);
    }
    s
}

impl SweepStatus {
    /// The counts and FLOPs without the per-run detail.
    pub fn summary(&self) -> SweepStatus {
        SweepStatus { dir: self.dir.clone(), detail: Vec::new(), live_unavailable: self.live_unavailable.clone(), ..*self }
    }

    /// The ids of the runs not finished yet.
    pub fn unfinished(&self) -> Vec<String> {
        self.detail.iter().filter(|r| !r.state.is_finished()).map(|r| r.id.clone()).collect()
    }
}

impl std::fmt::Display for SweepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} runs — {} done, {} diverged, {} running, {} interrupted, {} failed, {} pending{}{}; {:.1}% of {:.3e} FLOPs ({} tokens)",
            self.dir.display(),
            self.runs,
            self.done,
            self.diverged,
            self.running,
            self.interrupted,
            self.failed,
            self.pending,
            if self.unknown > 0 { format!(", {} unreadable", self.unknown) } else { String::new() },
            if self.paused > 0 { format!(", {} paused", self.paused) } else { String::new() },
            100.0 * self.flops_done / self.flops_total.max(1.0),
            self.flops_total,
            crate::format::si(self.tokens_total as f64)
        )?;
        // Done runs are listed only when something is wrong with them (their metrics are gone).
        for r in self.detail.iter().filter(|r| r.state != RunView::Is(RunState::Done) || r.reason.is_some()) {
            write!(f, "  {} {:<7} {:<11} step {}/{}", r.id, r.kind.to_string(), r.state.to_string(), r.step, r.steps)?;
            for (name, loss) in r.evals.iter().filter_map(|(name, loss)| loss.map(|l| (name, l))) {
                write!(f, "  {} {loss:.4}", crate::train::eval_sets::column(name))?;
            }
            if let Some(t) = &r.live {
                write!(f, "  {} {} {}{}", t.executor, t.handle, t.state, t.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())?;
                if r.state == RunView::Pending && !t.alive && t.state != "CANCELLED" {
                    write!(
                        f,
                        "  (its {} task ended without writing here: is {} on a file system the workers share? see its logs)",
                        t.executor,
                        self.dir.display()
                    )?;
                }
            }
            if let Some(reason) = &r.reason {
                write!(f, "  {}", reason.lines().next().unwrap_or(""))?;
            }
            writeln!(f)?;
        }
        for why in &self.live_unavailable {
            writeln!(f, "({why}; the states above are from the files)")?;
        }
        Ok(())
    }
}
