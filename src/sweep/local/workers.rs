//! Starting runs and collecting them: what is ready starts in plan order on a free slot, either as
//! a `windtunnel train` process of its own or as a request to a persistent worker of the slot
//! (started when none has room); a worker that exits or answers hands its run to
//! [`super::outcomes`].

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Instant;

use anyhow::Context;

use super::{Phase, Process, Scheduler, Worker};
use crate::device::DeviceSpec;
use crate::fsutil::FileLock;
use crate::layout::RunDir;
use crate::sweep::worker::{Event, Request, WorkerProcess, Workers};

impl Scheduler<'_> {
    /// Start what is ready, in plan order. Returns how many ready runs another process holds.
    pub(super) fn start_ready(&mut self) -> anyhow::Result<usize> {
        let waiting: Vec<usize> = (0..self.runs.len()).filter(|&k| self.runs[k].phase == Phase::Waiting).collect();
        let ready: Vec<usize> = waiting.into_iter().filter(|&k| self.check_ready(k)).collect();
        // CPU threads per new worker: the cores split over the workers that can run now, so a last
        // trunk running alone gets every core rather than 1/parallel of them.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / self.parallel.min(self.workers.len() + ready.len()).max(1)).max(1);
        let mut held_elsewhere = 0;
        for k in ready {
            if self.workers.len() >= self.parallel {
                break;
            }
            let run = self.sweep.run(&self.plan.runs[k].id);
            if let Some(holder) = FileLock::holder(&run.lock()) {
                // An earlier worker (or a `train` started by hand) still writes this run: wait for it.
                held_elsewhere += 1;
                if !std::mem::replace(&mut self.runs[k].held_said, true) {
                    self.say(format!("  {} is being trained by another process ({holder}); waiting for it to stop", self.plan.runs[k].id));
                }
                continue;
            }
            let Some(slot) = self.free_slot() else { break };
            self.spawn_worker(k, &run, slot, threads)?;
        }
        Ok(held_elsewhere)
    }

    fn spawn_worker(&mut self, k: usize, run: &RunDir, slot: usize, threads: usize) -> anyhow::Result<()> {
        let state = &mut self.runs[k];
        state.attempts += 1;
        let resume_before_tokens = state.regenerate.take();
        state.regenerated |= resume_before_tokens.is_some();
        let resume = resume_before_tokens.is_none() && run.record().exists();
        let log = File::create(run.worker_log()).with_context(|| format!("cannot create {}", run.worker_log().display()))?;
        let process = if self.options.workers != Workers::PerRun {
            let threads = (self.slots[slot].device == DeviceSpec::Cpu).then_some(threads);
            let request = Request { run_file: run.config(), out: run.root().to_path_buf(), resume, resume_before_tokens, log: run.worker_log(), threads };
            Process::Pooled(self.send_to_pool(k, slot, &request)?)
        } else {
            let mut cmd = self.worker_command("train", slot, threads);
            cmd.arg(run.config()).arg("--out").arg(run.root()).arg("--quiet");
            if let Some(before) = resume_before_tokens {
                cmd.arg("--resume-before-tokens").arg(before.to_string());
            } else if resume {
                cmd.arg("--resume");
            }
            cmd.stdout(Stdio::null()).stderr(log);
            Process::PerRun(cmd.spawn().with_context(|| format!("cannot start worker {}", self.options.worker.display()))?)
        };
        self.slots[slot].busy += 1;
        self.runs[k].phase = Phase::Running;
        self.workers.push(Worker { run: k, process, slot, started: Instant::now() });
        Ok(())
    }

    /// Hand `request` (run `k`) to a persistent worker of `slot` with room for it (idle; with
    /// shared workers, training fewer than the slot's runs at once), starting one if there is
    /// none; a worker found gone on sending is replaced. Returns the worker's pool index.
    fn send_to_pool(&mut self, k: usize, slot: usize, request: &Request) -> anyhow::Result<usize> {
        let room = if self.options.workers == Workers::Shared { usize::MAX } else { 1 };
        if let Some(n) = (0..self.pool.len()).find(|&n| self.pool[n].as_ref().is_some_and(|w| w.slot == slot && w.open() && w.busy() < room)) {
            let worker = self.pool[n].as_mut().expect("found above");
            match worker.send(k, request) {
                Ok(()) => return Ok(n),
                Err(e) => {
                    // Runs it still has report as it ends (`reap`); an idle one is forgotten now.
                    if worker.busy() == 0 {
                        self.pool[n] = None;
                    }
                    self.say(format!("  persistent worker {n} is gone ({e:#}); starting another"));
                }
            }
        }
        let n = self.pool.len();
        // A CPU worker trains each run on a pool of the run's own share of the cores (its request's
        // `threads`); the worker's global pool stays at one thread.
        let mut worker = WorkerProcess::start(self.worker_command("worker", slot, 1), slot, &self.sweep.worker_log(n))?;
        worker.send(k, request)?;
        self.pool.push(Some(worker));
        Ok(n)
    }

    /// Collect the runs whose workers have exited or answered, and the persistent workers that
    /// have ended.
    pub(super) fn reap(&mut self) -> anyhow::Result<()> {
        let mut i = 0;
        while i < self.workers.len() {
            let code = match &mut self.workers[i].process {
                Process::PerRun(child) => child.try_wait()?.map(|status| status.code()),
                Process::Pooled(n) => {
                    let n = *n;
                    let worker = self.pool[n].as_mut().expect("a worker stays in the pool until its runs have reported");
                    match worker.poll(self.workers[i].run)? {
                        Event::Nothing => None,
                        Event::Finished(code) => Some(Some(code as i32)),
                        Event::Exited(status) => {
                            if worker.gone() {
                                self.pool[n] = None;
                            }
                            let why = status.code().map_or_else(|| format!("signal {}", status.signal().unwrap_or(0)), |c| format!("exit {c}"));
                            self.say(format!("  persistent worker {n} ended ({why}) while training {}", self.plan.runs[self.workers[i].run].id));
                            Some(None)
                        }
                    }
                }
            };
            match code {
                None => i += 1,
                Some(code) => {
                    let w = self.workers.swap_remove(i);
                    self.slots[w.slot].busy -= 1;
                    self.finish_worker(&w, code);
                }
            }
        }
        // Idle workers that ended (killed while waiting, or stopped).
        for entry in &mut self.pool {
            if entry.as_mut().is_some_and(WorkerProcess::gone) {
                *entry = None;
            }
        }
        Ok(())
    }
}
