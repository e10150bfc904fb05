//! The local executor: `windtunnel run SWEEP.toml` (progress bars in `progress.rs`).
//!
//! Each run is trained in a worker subprocess, so a crashing run cannot take the sweep down:
//! either its own `windtunnel train runs/<id>/config.json --out runs/<id>` process, or (with
//! persistent workers, the default on GPUs) a long-lived `windtunnel worker` of its device slot
//! that trains run after run and so compiles GPU kernels and creates the CUDA context once
//! (see [`super::worker`]), or (`shared`) one worker per device that trains all of the device's
//! runs at once on threads of its own; all write the same files and give the same losses bit
//! for bit.
//! Up to `parallel` runs train at once; CPU threads are split between the runs that can start
//! (a `train` process's RAYON_NUM_THREADS, a persistent worker's request's `threads`), and
//! GPUs are handed out by setting the worker's CUDA_VISIBLE_DEVICES, `runs_per_device` at a
//! time (`cuda:N` is the N-th GPU this process sees: inside a Slurm job, the N-th it was given).
//! A branch starts as soon as its trunk's checkpoint at the branch point exists, not when the
//! trunk finishes.
//!
//! Everything lives in files, so a sweep resumes after anything: done and diverged runs are
//! kept, interrupted runs continue from their checkpoints (`--resume`), failed runs are retried
//! up to `max_retries` times (not those that exit 2: they cannot start as configured). Ctrl-C,
//! SIGTERM or `windtunnel cancel DIR` stops the workers gracefully (each checkpoints).
//!
//! One writer per directory: `sweep.lock` (flock) keeps a second `run` off the sweep, and each
//! worker holds its run's `run.lock`, so a run still held by some other process (an orphan of a
//! killed `run`, a `train` started by hand) waits here instead of getting a second writer.
//! Workers die with their `run`: the kernel sends them SIGTERM when it dies (PR_SET_PDEATHSIG).
//! A branch point lost from a finished trunk (deleted, or failing its checksum) is written again
//! by training the trunk from its last good checkpoint before it (`--resume-before-tokens`).

use std::collections::HashMap;
use std::fs::File;
use std::io::IsTerminal;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::executor::{CancelReport, ExecReport, Executor};
use super::plan::{Plan, PlannedRun};
use super::progress::SweepBars;
use super::status::{files_view, LiveState};
use super::worker::{Event, Request, WorkerProcess, Workers};
use crate::device::DeviceSpec;
use crate::fsutil::{atomic_write, FileLock};
use crate::kernel_cache::KernelCache;
use crate::layout::{RunDir, SweepDir};
use crate::model::memory::{self, GpuMemory};
use crate::process::{exit_interrupted, EXIT_CANNOT_START, EXIT_DIVERGED};
use crate::train::checkpoint;
use crate::train::log::{read_status, RunState};

#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Concurrent workers [default: 1 per device slot; on CPU 1].
    pub parallel: Option<usize>,
    pub devices: Vec<DeviceSpec>,
    pub runs_per_device: usize,
    pub max_retries: usize,
    /// The `windtunnel` binary the workers run.
    pub worker: PathBuf,
    /// What trains the runs.
    pub workers: Workers,
    /// `run --kernel-cache`: the kernel cache the workers use, over `WINDTUNNEL_KERNEL_CACHE`
    /// and the sweep file's `[gpu] kernel_cache`.
    pub kernel_cache: Option<PathBuf>,
    pub quiet: bool,
}

impl ExecOptions {
    /// Retries of a failed run unless `run --max-retries` says otherwise.
    pub const DEFAULT_MAX_RETRIES: usize = 2;
    /// Runs per GPU unless `run --runs-per-device` says otherwise.
    pub const DEFAULT_RUNS_PER_DEVICE: usize = 1;
}

/// Worker processes on this machine.
pub struct LocalExecutor {
    options: ExecOptions,
}

impl LocalExecutor {
    pub fn new(options: ExecOptions) -> Self {
        Self { options }
    }

    /// An executor for `status` and `cancel`, which start nothing.
    pub fn for_status() -> Self {
        Self::new(ExecOptions {
            parallel: None,
            devices: Vec::new(),
            runs_per_device: ExecOptions::DEFAULT_RUNS_PER_DEVICE,
            max_retries: ExecOptions::DEFAULT_MAX_RETRIES,
            worker: PathBuf::new(),
            workers: Workers::PerRun,
            kernel_cache: None,
            quiet: true,
        })
    }
}

impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    fn execute(&self, sweep: &SweepDir, plan: &Plan) -> anyhow::Result<ExecReport> {
        // A cancel request left from before is not for this run.
        let _ = std::fs::remove_file(sweep.cancel_request());
        Scheduler::new(sweep, plan, &self.options)?.run()
    }

    fn live_states(&self, _sweep: &SweepDir, _unfinished: &[String]) -> anyhow::Result<HashMap<String, LiveState>> {
        // Its workers' liveness is in the files already: a run's lock is held while it trains.
        Ok(HashMap::new())
    }

    /// Ask the `run` holding the sweep's lock to stop its workers, and wait until it has.
    fn cancel(&self, sweep: &SweepDir) -> anyhow::Result<Option<CancelReport>> {
        let Some(holder) = FileLock::holder(&sweep.lock()) else { return Ok(None) };
        atomic_write(&sweep.cancel_request(), b"requested by `windtunnel cancel`\n")?;
        let started = Instant::now();
        while FileLock::holder(&sweep.lock()).is_some() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "the `windtunnel run` on {} ({holder}) has not stopped within 10 minutes of the request; its workers may be writing large checkpoints — check again with `windtunnel status`",
                sweep.root().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_file(sweep.cancel_request());
        Ok(Some(CancelReport {
            executor: self.name(),
            stopped: vec![holder.clone()],
            message: format!("stopped the local `windtunnel run` ({holder}); its runs wrote checkpoints: run the same command again to resume"),
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Running,
    Finished(RunState),
}

/// What the scheduler tracks of one planned run.
#[derive(Debug, Clone)]
struct RunSlot {
    phase: Phase,
    attempts: usize,
    /// A trunk to train again from a checkpoint before this many tokens (a branch point was lost).
    regenerate: Option<u64>,
    regenerated: bool,
    /// A branch whose trunk checkpoint was read and verified.
    verified: bool,
    /// Said once that another process holds the run.
    held_said: bool,
}

struct Slot {
    device: DeviceSpec,
    /// A GPU slot's `CUDA_VISIBLE_DEVICES` for its workers ([`crate::device::machine_gpu_id`]).
    visible_gpu: Option<String>,
    busy: usize,
}

/// A run being trained, and by what.
struct Worker {
    run: usize,
    process: Process,
    slot: usize,
    started: Instant,
}

enum Process {
    /// A `windtunnel train` process of its own.
    PerRun(Child),
    /// Persistent worker `n` of the pool.
    Pooled(usize),
}

/// The warning for `device` when `at_once` runs as large as `largest` (its id and estimated
/// bytes), plus a CUDA context each, may not fit in `gpu`'s free memory, with the runs-per-device
/// that would.
fn gpu_memory_warning(device: DeviceSpec, gpu: &GpuMemory, at_once: usize, largest: (&str, f64)) -> Option<String> {
    let per_run = largest.1 + memory::CUDA_CONTEXT_BYTES;
    let fit = (gpu.free_bytes() / per_run).floor() as usize;
    if fit >= at_once {
        return None;
    }
    let advice = match fit {
        0 => "even one may not fit: lower training.micro_batch_size in the sweep file (gradient accumulation keeps the batch)".to_string(),
        n => format!("--runs-per-device {n} would fit"),
    };
    Some(format!(
        "warning: {device} ({}, {} free of {}) may not hold {at_once} runs at once of up to ~{} each ({}, the largest, plus a CUDA context); {advice}",
        gpu.name,
        memory::bytes(gpu.free_bytes()),
        memory::bytes(gpu.total_bytes),
        memory::bytes(per_run),
        largest.0
    ))
}

/// One execution of a plan: which runs wait, run and finished, and the workers.
struct Scheduler<'a> {
    sweep: &'a SweepDir,
    plan: &'a Plan,
    options: &'a ExecOptions,
    index: HashMap<&'a str, usize>,
    runs: Vec<RunSlot>,
    slots: Vec<Slot>,
    parallel: usize,
    workers: Vec<Worker>,
    /// Persistent workers, busy or idle; `None` once one has ended.
    pool: Vec<Option<WorkerProcess>>,
    report: ExecReport,
    signal: Arc<AtomicUsize>,
    bars: Option<SweepBars>,
    last_progress: Instant,
    started: Instant,
    start_fraction: f64,
    /// The kernel cache passed to the workers (`WINDTUNNEL_KERNEL_CACHE`), checked before any starts.
    kernel_cache: Option<PathBuf>,
}

impl<'a> Scheduler<'a> {
    fn new(sweep: &'a SweepDir, plan: &'a Plan, options: &'a ExecOptions) -> anyhow::Result<Self> {
        // The process's one stop flag (SIGINT, SIGTERM, SIGUSR1), which the adaptive driver reads too.
        let signal = crate::process::stop_signal()?;
        let devices = if options.devices.is_empty() { vec![DeviceSpec::Cpu] } else { options.devices.clone() };
        devices.iter().try_for_each(|&d| crate::device::require_built(d, "--devices"))?;
        let visible = crate::device::cuda_visible_devices();
        let slot = |device: DeviceSpec| -> anyhow::Result<Slot> {
            let visible_gpu = match device {
                DeviceSpec::Cpu => None,
                DeviceSpec::Cuda(index) => Some(crate::device::machine_gpu_id(index, visible.as_deref())?),
            };
            Ok(Slot { device, visible_gpu, busy: 0 })
        };
        let slots: Vec<Slot> = devices.iter().map(|&d| slot(d)).collect::<anyhow::Result<_>>()?;
        let parallel = options.parallel.unwrap_or(slots.len() * options.runs_per_device.max(1)).max(1);
        let kernel_cache = workers_kernel_cache(options, plan, &devices)?;
        let view = files_view(sweep).ok();
        // On a terminal, live bars (finished runs are printed above them); otherwise plain lines.
        let bars = if std::io::stderr().is_terminal() && !options.quiet { view.as_ref().map(SweepBars::new) } else { None };
        let mut scheduler = Self {
            sweep,
            plan,
            options,
            index: plan.runs.iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect(),
            runs: Vec::new(),
            slots,
            parallel,
            workers: Vec::new(),
            pool: Vec::new(),
            report: ExecReport { executor: "local", waited: true, ..Default::default() },
            signal,
            bars,
            last_progress: Instant::now(),
            started: Instant::now(),
            start_fraction: view.map_or(0.0, |s| s.flops_done / s.flops_total.max(1.0)),
            kernel_cache,
        };
        scheduler.read_states();
        Ok(scheduler)
    }

    /// Each run's state from its files: finished runs are kept; the rest wait.
    fn read_states(&mut self) {
        let mut notes = Vec::new();
        for r in &self.plan.runs {
            let phase = match read_status(self.sweep.run(&r.id).root()) {
                Ok(Some(s)) if s.state.is_finished() => {
                    self.report.skipped_already_done += 1;
                    Phase::Finished(s.state)
                }
                Ok(_) => Phase::Waiting,
                Err(e) => {
                    // A torn status.json: training the run again from its newest checkpoint rewrites it.
                    notes.push(format!("  {}: {e:#}; resuming the run from its newest checkpoint rewrites it", r.id));
                    Phase::Waiting
                }
            };
            self.runs.push(RunSlot { phase, attempts: 0, regenerate: None, regenerated: false, verified: false, held_said: false });
        }
        let devices: Vec<String> = self.slots.iter().map(|s| s.device.to_string()).collect();
        self.say(format!(
            "sweep {}: {} runs, {} already finished; {} at a time on {}",
            self.sweep.root().display(),
            self.plan.runs.len(),
            self.report.skipped_already_done,
            self.parallel,
            devices.join(",")
        ));
        notes.into_iter().for_each(|n| self.say(n));
        self.warn_gpu_memory();
    }

    /// Say, before any GPU worker starts, when `runs_per_device` runs of the sweep's largest run
    /// may not fit in a GPU's free memory (nvidia-smi's; the estimate is `plan`'s, plus a CUDA
    /// context per run). A warning, not a refusal: the estimate is a rough one on a GPU.
    fn warn_gpu_memory(&self) {
        let Some(big) = self.plan.runs.iter().max_by(|a, b| a.memory_bytes.total_cmp(&b.memory_bytes)) else { return };
        let at_once = self.options.runs_per_device.max(1).min(self.parallel);
        for slot in &self.slots {
            let Some(gpu) = slot.visible_gpu.as_deref().and_then(GpuMemory::query) else { continue };
            if let Some(warning) = gpu_memory_warning(slot.device, &gpu, at_once, (&big.id, big.memory_bytes)) {
                match &self.bars {
                    Some(b) => b.println(&warning),
                    None => crate::stderr_line!("{warning}"),
                }
            }
        }
    }

    fn say(&self, line: String) {
        match &self.bars {
            Some(b) => b.println(&line),
            None if !self.options.quiet => crate::stderr_line!("{line}"),
            None => {}
        }
    }

    fn run(mut self) -> anyhow::Result<ExecReport> {
        loop {
            self.check_stop();
            self.reap()?;
            if self.report.stopped_by_signal.is_some() {
                if self.workers.is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            self.recover_lost_branch_points()?;
            let held_elsewhere = self.start_ready()?;
            if self.runs.iter().all(|r| matches!(r.phase, Phase::Finished(_))) {
                break;
            }
            if self.workers.is_empty() && held_elsewhere == 0 {
                return Err(self.stuck());
            }
            self.show_progress();
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(b) = &self.bars {
            b.finish();
        }
        self.pool.drain(..).flatten().for_each(WorkerProcess::finish);
        Ok(self.report)
    }

    /// A signal, or `windtunnel cancel`: every worker gets SIGTERM and writes a checkpoint.
    fn check_stop(&mut self) {
        if self.report.stopped_by_signal.is_some() {
            return;
        }
        let mut stop = self.signal.load(Ordering::SeqCst) as i32;
        if stop == 0 && self.sweep.cancel_request().exists() {
            self.report.cancelled = true;
            stop = libc::SIGTERM;
        }
        if stop == 0 {
            return;
        }
        self.report.stopped_by_signal = Some(stop);
        let why = if self.report.cancelled { "`windtunnel cancel`".to_string() } else { format!("signal {stop}") };
        self.say(format!("{why}: stopping {} worker(s); each writes a checkpoint", self.workers.len()));
        for w in &self.workers {
            if let Process::PerRun(child) = &w.process {
                // SAFETY: sending a signal to our own child process.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            }
        }
        self.pool.iter_mut().flatten().for_each(WorkerProcess::stop);
    }

    /// Collect the runs whose workers have exited or answered, and the persistent workers that
    /// have ended.
    fn reap(&mut self) -> anyhow::Result<()> {
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

    /// What a worker's exit code (`None`: killed by a signal) means for its run: finished, to
    /// retry, or interrupted.
    fn finish_worker(&mut self, w: &Worker, code: Option<i32>) {
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
    fn recover_lost_branch_points(&mut self) -> anyhow::Result<()> {
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
    fn check_ready(&mut self, k: usize) -> bool {
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

    /// Start what is ready, in plan order. Returns how many ready runs another process holds.
    fn start_ready(&mut self) -> anyhow::Result<usize> {
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

    /// A device with room for one more worker: the CPU is shared by every worker, a GPU takes
    /// `runs_per_device`.
    fn free_slot(&self) -> Option<usize> {
        let capacity = |d: DeviceSpec| if d == DeviceSpec::Cpu { self.parallel } else { self.options.runs_per_device.max(1) };
        (0..self.slots.len()).find(|&s| self.slots[s].busy < capacity(self.slots[s].device))
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

    /// `windtunnel SUBCOMMAND --device …` for a worker on `slot`, with its threads or GPU, the
    /// kernel cache, and death with this process.
    fn worker_command(&self, subcommand: &str, slot: usize, threads: usize) -> Command {
        let mut cmd = Command::new(&self.options.worker);
        cmd.arg(subcommand);
        die_with_parent(&mut cmd);
        match &self.slots[slot].visible_gpu {
            None => cmd.arg("--device").arg("cpu").env("RAYON_NUM_THREADS", threads.to_string()),
            Some(gpu) => cmd.arg("--device").arg("cuda:0").env("CUDA_VISIBLE_DEVICES", gpu),
        };
        if let Some(dir) = &self.kernel_cache {
            cmd.env(crate::kernel_cache::ENV, dir);
        }
        cmd
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

    /// Nothing runs and nothing can start: branches whose trunks will never reach them.
    fn stuck(&self) -> anyhow::Error {
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

    /// The live bars every half second, or on a pipe a progress line every 15 s.
    fn show_progress(&mut self) {
        let every = if self.bars.is_some() { Duration::from_millis(500) } else { Duration::from_secs(15) };
        if self.options.quiet || self.last_progress.elapsed() < every {
            return;
        }
        self.last_progress = Instant::now();
        // Counts and FLOPs from the runs' own files, the same view `windtunnel status` has.
        let Ok(s) = files_view(self.sweep) else { return };
        if let Some(b) = &self.bars {
            let running: Vec<&PlannedRun> = self.workers.iter().map(|w| &self.plan.runs[w.run]).collect();
            b.update(&s, &running);
            return;
        }
        let fraction = s.flops_done / s.flops_total.max(1.0);
        let done_now = (fraction - self.start_fraction).max(1e-9);
        let eta = self.started.elapsed().as_secs_f64() / done_now * (1.0 - fraction);
        crate::stderr_line!(
            "[{} done, {} running, {} diverged, {} failed of {}] {:.1}% of {:.3e} FLOPs, ETA {eta:.0}s",
            s.done,
            s.running,
            s.diverged,
            s.failed,
            s.runs,
            100.0 * fraction,
            s.flops_total
        );
        for w in &self.workers {
            let r = &self.plan.runs[w.run];
            let st = read_status(self.sweep.run(&r.id).root()).ok().flatten();
            let (step, steps, eval) = st.map_or((0, 0, None), |s| (s.step, s.steps, s.eval_loss));
            let eval = eval.map(|e| format!(" eval {e:.4}")).unwrap_or_default();
            crate::stderr_line!("    {} {} width {} step {step}/{steps}{eval} ({:.0}s)", r.id, r.kind, r.width, w.started.elapsed().as_secs_f64());
        }
    }
}

/// The kernel cache for the workers: `run --kernel-cache`, `WINDTUNNEL_KERNEL_CACHE`, the sweep
/// file's `[gpu] kernel_cache`, or the default. Checked here, before any worker starts, when it
/// was chosen explicitly or a GPU will use it.
fn workers_kernel_cache(options: &ExecOptions, plan: &Plan, devices: &[DeviceSpec]) -> anyhow::Result<Option<PathBuf>> {
    let from_file = plan.kernel_cache.clone().map(|dir| KernelCache { dir, source: "the sweep file's [gpu] kernel_cache".into() });
    let Some(cache) = KernelCache::resolve(options.kernel_cache.as_deref(), from_file) else { return Ok(None) };
    if cache.is_explicit() || devices.iter().any(|&d| d != DeviceSpec::Cpu) {
        cache.check()?;
    }
    Ok(cache.is_explicit().then_some(cache.dir))
}

/// Workers do not outlive their `run`: on Linux the kernel sends a worker SIGTERM (it writes a
/// checkpoint and stops) when the `run` that started it dies, even by SIGKILL; a worker whose
/// parent died before it could ask for that stops at once.
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl and getppid are async-signal-safe, and nothing here allocates.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// " — reason" from a failed run's status, for the executor's line about it.
fn failure_reason(run: &RunDir) -> String {
    match read_status(run.root()) {
        Ok(Some(s)) => s.reason.map(|r| format!(" — {}", r.lines().next().unwrap_or(""))).unwrap_or_default(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 runs of ~9.5 GiB (9 + a CUDA context) in 30 GiB free: three fit, and the warning says so.
    #[test]
    fn warns_when_the_runs_per_gpu_may_not_fit_and_names_what_would() {
        const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
        let gpu = GpuMemory { name: "NVIDIA A100-SXM4-40GB".into(), total_bytes: 40.0 * GIB, used_bytes: 10.0 * GIB };
        let largest = ("m36-lr0.01", 9.0 * GIB);
        assert_eq!(gpu_memory_warning(DeviceSpec::Cuda(1), &gpu, 3, largest), None);
        let w = gpu_memory_warning(DeviceSpec::Cuda(1), &gpu, 4, largest).unwrap();
        assert_eq!(
            w,
            "warning: cuda:1 (NVIDIA A100-SXM4-40GB, 30.0 GiB free of 40.0 GiB) may not hold 4 runs at once of up to ~9.5 GiB each \
             (m36-lr0.01, the largest, plus a CUDA context); --runs-per-device 3 would fit"
        );
        let w = gpu_memory_warning(DeviceSpec::Cuda(0), &gpu, 1, ("big", 40.0 * GIB)).unwrap();
        assert!(w.contains("even one may not fit: lower training.micro_batch_size"), "{w}");
    }
}
