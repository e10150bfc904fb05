//! What a run's end means, and recovery: a worker's exit code read as done, paused, diverged,
//! interrupted (it waits to resume) or failed (retried up to `max_retries` times, unless it cannot
//! start as configured); a branch whose trunk ended without its branch point is failed; a branch
//! point lost from a finished trunk (deleted, or failing its checksum) is written again by
//! training the trunk from its last good checkpoint before it; and nothing left that can start
//! is an error naming what waits for what.

use std::path::PathBuf;

use anyhow::Context;

use super::{Phase, Scheduler, Worker};
use crate::device::DeviceSpec;
use crate::layout::RunDir;
use crate::process::{exit_interrupted, EXIT_CANNOT_START, EXIT_DIVERGED};
use crate::sweep::plan::PlannedRun;
use crate::train::checkpoint;
use crate::train::log::{read_status, RunState};

impl Scheduler<'_> {
    /// What a worker's exit code (`None`: killed by a signal) means for its run: finished, to
    /// retry, or interrupted.
    pub(super) fn finish_worker(&mut self, w: &Worker, code: Option<i32>) {
        let r = &self.plan.runs[w.run];
        let stopping = self.report.stopped_by_signal.is_some();
        let interrupted = [libc::SIGINT, libc::SIGUSR1, libc::SIGTERM].map(|s| Some(exit_interrupted(s) as i32));
        let paused = || read_status(self.sweep.run(&r.id).root()).ok().flatten().is_some_and(|s| s.state == RunState::Paused);
        let state = match code {
            Some(0) if paused() => RunState::Paused,
            Some(0) => RunState::Done,
            Some(c) if c == EXIT_DIVERGED as i32 => RunState::Diverged,
            c if interrupted.contains(&c) || stopping => RunState::Interrupted,
            _ => RunState::Failed,
        };
        let slot = &mut self.runs[w.run];
        let retry = state == RunState::Failed && code != Some(EXIT_CANNOT_START as i32) && slot.attempts <= self.options.max_retries && !stopping;
        if retry {
            slot.phase = Phase::Waiting;
            let how = code.map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"));
            let line = format!("  {} failed ({how}); retrying ({} of {})", r.id, slot.attempts, self.options.max_retries);
            self.say(line);
            return;
        }
        if state == RunState::Interrupted {
            slot.phase = Phase::Waiting;
            self.report.interrupted += 1;
            return;
        }
        slot.phase = Phase::Finished(state);
        *match state {
            RunState::Done => &mut self.report.done,
            RunState::Paused => &mut self.report.paused,
            RunState::Diverged => &mut self.report.diverged,
            _ => &mut self.report.failed,
        } += 1;
        // A failure on a GPU names the GPU (its worker calls every GPU cuda:0): one bad GPU shows.
        let why = match (state, self.slots[w.slot].device) {
            (RunState::Failed, device) => {
                let on = if device == DeviceSpec::Cpu { String::new() } else { format!(" on {device}") };
                format!("{on}{}", failure_reason(&self.sweep.run(&r.id)))
            }
            _ => String::new(),
        };
        let secs = w.started.elapsed().as_secs_f64();
        self.say(format!("  {} {} {} width {} D {} in {secs:.1}s: {state}{why}", r.id, r.kind, r.grid, r.width, crate::format::si(r.tokens as f64)));
    }

    /// The trunk checkpoint a branch starts from.
    fn branch_point(&self, r: &PlannedRun) -> Option<PathBuf> {
        Some(self.sweep.run(r.trunk.as_deref()?).checkpoint(r.from_tokens?))
    }

    /// Lost branch points: a finished trunk whose checkpoint at a branch point is gone or corrupt
    /// trains again from its last good checkpoint before it.
    pub(super) fn recover_lost_branch_points(&mut self) -> anyhow::Result<()> {
        for (k, r) in self.plan.runs.iter().enumerate() {
            let (Some(trunk), Some(from), Some(path)) = (&r.trunk, r.from_tokens, self.branch_point(r)) else { continue };
            if self.runs[k].phase != Phase::Waiting || self.runs[k].verified {
                continue;
            }
            if path.exists() {
                match checkpoint::read(&path) {
                    Ok(_) => {
                        self.runs[k].verified = true;
                        continue;
                    }
                    Err(e) => {
                        let aside = path.with_extension("ckpt.corrupt");
                        std::fs::rename(&path, &aside).with_context(|| format!("cannot move the corrupt checkpoint {} aside", path.display()))?;
                        self.say(format!("  {e:#}; moved to {}", aside.display()));
                    }
                }
            }
            let t = self.index[trunk.as_str()];
            if self.runs[t].phase == Phase::Finished(RunState::Done) {
                anyhow::ensure!(
                    !self.runs[t].regenerated,
                    "run {} needs checkpoint {}, which its trunk {trunk} did not write even when trained again; delete {} and run again",
                    r.id,
                    path.display(),
                    self.sweep.run(trunk).root().display()
                );
                self.say(format!(
                    "  trunk {trunk}: its checkpoint at {from} tokens (for branch {}) is missing; training the trunk again from its last good checkpoint before it (same weights, bit for bit)",
                    r.id
                ));
                self.runs[t].regenerate = Some(self.runs[t].regenerate.map_or(from, |f| f.min(from)));
                self.runs[t].phase = Phase::Waiting;
            }
        }
        Ok(())
    }

    /// Whether waiting run `k` can start now: a trunk or plain run, or a branch whose trunk
    /// checkpoint exists. A branch whose trunk ended without it is marked failed.
    pub(super) fn check_ready(&mut self, k: usize) -> bool {
        let r = &self.plan.runs[k];
        let Some(path) = self.branch_point(r) else { return true };
        if path.exists() {
            return true;
        }
        let trunk = r.trunk.as_deref().unwrap_or_default();
        if let Phase::Finished(s) = self.runs[self.index[trunk]].phase {
            if s != RunState::Done {
                self.runs[k].phase = Phase::Finished(RunState::Failed);
                self.report.failed += 1;
                self.say(format!("  {} skipped: its trunk {trunk} ended {s} before {} tokens", r.id, r.from_tokens.unwrap_or(0)));
            }
        }
        false
    }

    /// Nothing runs and nothing can start: branches whose trunks will never reach them.
    pub(super) fn stuck(&self) -> anyhow::Error {
        let waiting: Vec<&PlannedRun> = self.plan.runs.iter().enumerate().filter(|&(k, _)| self.runs[k].phase == Phase::Waiting).map(|(_, r)| r).collect();
        let stuck: Vec<String> =
            waiting.iter().map(|r| format!("{} (needs {})", r.id, self.branch_point(r).map_or("?".into(), |p| p.display().to_string()))).collect();
        anyhow::anyhow!(
            "{} run(s) are waiting for trunk checkpoints that no trunk will write: {}; delete those trunks' directories under {} and run again",
            waiting.len(),
            stuck.join(", "),
            self.sweep.runs().display()
        )
    }
}

/// " — reason" from a failed run's status, for the executor's line about it.
fn failure_reason(run: &RunDir) -> String {
    match read_status(run.root()) {
        Ok(Some(s)) => s.reason.map(|r| format!(" — {}", r.lines().next().unwrap_or(""))).unwrap_or_default(),
        _ => String::new(),
    }
}
