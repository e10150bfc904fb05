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
//!
//! The scheduler's loop is here; each concern is a file of its own: [`devices`] (slots, the GPU
//! memory warning, the worker command, the kernel cache), [`workers`] (starting runs, the
//! persistent pool, collecting exits), [`outcomes`] (what an exit means, retries, lost branch
//! points) and [`display`] (bars and progress lines).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::executor::{CancelReport, ExecReport, Executor, RunOptions};
use super::loaded::LoadedSweep;
use super::plan::Plan;
use super::progress::SweepBars;
use super::status::{files_view, LiveState};
use super::worker::{WorkerProcess, Workers};
use crate::device::DeviceSpec;
use crate::fsutil::{atomic_write, FileLock};
use crate::layout::SweepDir;
use crate::train::log::{read_status, RunState};
use devices::workers_kernel_cache;

mod devices;
mod display;
mod outcomes;
mod workers;

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

/// The local executor for `windtunnel run`: worker processes on `--devices`.
pub fn for_run(options: &RunOptions, _sweep: &LoadedSweep) -> anyhow::Result<Box<dyn Executor>> {
    let flags = &options.exec;
    let devices = devices::parse_devices(&flags.devices)?;
    let on_gpus = devices.iter().any(|&d| d != DeviceSpec::Cpu);
    Ok(Box::new(LocalExecutor::new(ExecOptions {
        parallel: flags.parallel,
        runs_per_device: flags.runs_per_device.unwrap_or(ExecOptions::DEFAULT_RUNS_PER_DEVICE),
        max_retries: flags.max_retries.unwrap_or(ExecOptions::DEFAULT_MAX_RETRIES),
        worker: options.worker.clone(),
        workers: flags.workers.unwrap_or(if on_gpus { Workers::Persistent } else { Workers::PerRun }),
        kernel_cache: flags.kernel_cache.clone(),
        devices,
        quiet: flags.quiet,
    })))
}

/// The local executor for `status` and `cancel`: any sweep directory may have a local `run`.
pub fn for_sweep_dir(_sweep: &SweepDir) -> Option<Box<dyn Executor>> {
    Some(Box::new(LocalExecutor::for_status()))
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

    /// `--parallel`, else every device slot.
    fn slots(&self) -> usize {
        self.options.parallel.unwrap_or(self.options.devices.len() * self.options.runs_per_device)
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

/// A device workers run on, and how many runs it trains now.
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
}
