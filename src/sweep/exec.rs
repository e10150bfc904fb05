//! The local executor: `windtunnel run SWEEP.toml` (progress bars in `progress.rs`).
//!
//! Each run is a worker subprocess — `windtunnel train runs/<id>/config.json --out runs/<id>` —
//! so a crashing run cannot take the sweep down. Up to `parallel` workers run at once; CPU
//! threads are split between them (RAYON_NUM_THREADS), GPUs are handed out by setting the
//! worker's CUDA_VISIBLE_DEVICES, `runs_per_device` at a time. A branch starts as soon as its
//! trunk's checkpoint at the branch point exists, not when the trunk finishes.
//!
//! Everything lives in files, so a sweep resumes after anything: done and diverged runs are
//! kept, interrupted runs continue from their checkpoints (`--resume`), failed runs are retried
//! up to `max_retries` times (not those that exit 2: they cannot start as configured). Ctrl-C or
//! SIGTERM stops the workers gracefully (each checkpoints).
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
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::plan::{Plan, PlannedRun};
use super::spec::SweepSpec;
use crate::device::DeviceSpec;
use crate::fsutil::{atomic_write, FileLock};
use crate::train::checkpoint::{self, checkpoint_name};
use crate::train::log::{read_status, RunState};
use crate::train::run::{EXIT_CANNOT_START, EXIT_DIVERGED, RUN_LOCK};

#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Concurrent workers [default: 1 per device slot; on CPU 1].
    pub parallel: Option<usize>,
    pub devices: Vec<DeviceSpec>,
    pub runs_per_device: usize,
    pub max_retries: usize,
    /// The `windtunnel` binary the workers run.
    pub worker: PathBuf,
    pub quiet: bool,
}

/// The sweep directory's lock (`sweep.lock`): one `windtunnel run` per sweep directory.
pub fn lock(dir: &Path) -> anyhow::Result<FileLock> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    FileLock::try_acquire(&dir.join("sweep.lock"))?.map_err(|holder| {
        anyhow::anyhow!(
            "another `windtunnel run` is using {} ({holder}); wait for it, or stop it first — two runs on one sweep directory would overwrite each other",
            dir.display()
        )
    })
}

/// Write the sweep as run, the plan, and each run's config into `dir`.
pub fn materialise(dir: &Path, sweep_text: &str, plan: &Plan) -> anyhow::Result<()> {
    atomic_write(&dir.join("sweep.toml"), sweep_text.as_bytes())?;
    atomic_write(&dir.join("plan.json"), serde_json::to_string_pretty(plan)?.as_bytes())?;
    for run in &plan.runs {
        let config = dir.join("runs").join(&run.id).join("config.json");
        if !config.exists() {
            atomic_write(&config, serde_json::to_string_pretty(&run.config)?.as_bytes())?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Running,
    Finished(RunState),
}

struct Slot {
    device: DeviceSpec,
    busy: usize,
}

struct Worker {
    run: usize,
    child: Child,
    slot: usize,
    started: Instant,
}

/// What the executor did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExecSummary {
    pub done: usize,
    pub diverged: usize,
    pub failed: usize,
    pub interrupted: usize,
    pub skipped_already_done: usize,
    pub stopped_by_signal: Option<i32>,
}

/// Run every run of `plan` in `dir` that is not finished yet.
pub fn execute(dir: &Path, plan: &Plan, options: &ExecOptions) -> anyhow::Result<ExecSummary> {
    let signal = Arc::new(AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_usize(sig, signal.clone(), sig as usize).context("cannot install signal handlers")?;
    }
    let devices = if options.devices.is_empty() { vec![DeviceSpec::Cpu] } else { options.devices.clone() };
    let mut slots: Vec<Slot> = devices.iter().map(|&device| Slot { device, busy: 0 }).collect();
    let per_gpu = options.runs_per_device.max(1);
    let parallel = options.parallel.unwrap_or(slots.len() * per_gpu).max(1);
    // The CPU is one device shared by every worker; a GPU takes `runs_per_device` workers.
    let capacity = |d: DeviceSpec| if d == DeviceSpec::Cpu { parallel } else { per_gpu };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let run_dir = |r: &PlannedRun| dir.join("runs").join(&r.id);
    let mut phase: Vec<Phase> = Vec::with_capacity(plan.runs.len());
    let mut summary = ExecSummary::default();
    let mut notes: Vec<String> = Vec::new();
    for r in &plan.runs {
        match read_status(&run_dir(r)) {
            Ok(Some(s)) if s.state.is_finished() => {
                summary.skipped_already_done += 1;
                phase.push(Phase::Finished(s.state));
            }
            Ok(_) => phase.push(Phase::Waiting),
            Err(e) => {
                // A torn status.json: the run is trained again from its newest checkpoint, which
                // rewrites it.
                notes.push(format!("  {}: {e:#}; resuming the run from its newest checkpoint rewrites it", r.id));
                phase.push(Phase::Waiting);
            }
        }
    }
    let index: HashMap<&str, usize> = plan.runs.iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect();
    let mut attempts = vec![0usize; plan.runs.len()];
    // Trunks to train again from a checkpoint before this many tokens (a branch point was lost).
    let mut regenerate: Vec<Option<u64>> = vec![None; plan.runs.len()];
    let mut regenerated = vec![false; plan.runs.len()];
    // Branches whose trunk checkpoint was read and verified once.
    let mut verified = vec![false; plan.runs.len()];
    // Runs another process is writing (their run.lock is held), said once each.
    let mut held_said = vec![false; plan.runs.len()];
    let mut workers: Vec<Worker> = Vec::new();
    let mut last_report = Instant::now();
    let sweep_started = Instant::now();
    let start_fraction = super::collect::status(dir).map_or(0.0, |s| s.flops_done / s.flops_total.max(1.0));
    let terminal = std::io::stderr().is_terminal();
    // On a terminal, live bars (finished runs are printed above them); otherwise plain lines.
    let bars = if terminal && !options.quiet { super::collect::status(dir).ok().map(|s| super::progress::SweepBars::new(&s)) } else { None };
    let say = |line: String| match &bars {
        Some(b) => b.println(&line),
        None if !options.quiet => crate::stderr_line!("{line}"),
        None => {}
    };
    say(format!(
        "sweep {}: {} runs, {} already finished; {} at a time on {}",
        dir.display(),
        plan.runs.len(),
        summary.skipped_already_done,
        parallel,
        devices.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",")
    ));
    notes.drain(..).for_each(&say);

    loop {
        let stop = signal.load(Ordering::SeqCst);
        if stop != 0 && summary.stopped_by_signal.is_none() {
            summary.stopped_by_signal = Some(stop as i32);
            say(format!("signal {stop}: stopping {} worker(s); each writes a checkpoint", workers.len()));
            for w in &workers {
                // SAFETY: sending a signal to our own child process.
                unsafe { libc::kill(w.child.id() as i32, libc::SIGTERM) };
            }
        }
        // Reap finished workers.
        let mut i = 0;
        while i < workers.len() {
            match workers[i].child.try_wait()? {
                None => i += 1,
                Some(status) => {
                    let w = workers.swap_remove(i);
                    slots[w.slot].busy -= 1;
                    let r = &plan.runs[w.run];
                    let code = status.code();
                    let cannot_start = code == Some(EXIT_CANNOT_START as i32);
                    let state = match code {
                        Some(0) => RunState::Done,
                        Some(c) if c == EXIT_DIVERGED as i32 => RunState::Diverged,
                        Some(130) | Some(138) | Some(143) => RunState::Interrupted,
                        _ if summary.stopped_by_signal.is_some() => RunState::Interrupted,
                        _ => RunState::Failed,
                    };
                    let secs = w.started.elapsed().as_secs_f64();
                    match state {
                        RunState::Failed if !cannot_start && attempts[w.run] <= options.max_retries && summary.stopped_by_signal.is_none() => {
                            say(format!("  {} failed (exit {code:?}); retrying ({} of {})", r.id, attempts[w.run], options.max_retries));
                            phase[w.run] = Phase::Waiting;
                        }
                        RunState::Interrupted => {
                            phase[w.run] = Phase::Waiting;
                            summary.interrupted += 1;
                        }
                        s => {
                            let why = if s == RunState::Failed { failure_reason(&run_dir(r)) } else { String::new() };
                            say(format!("  {} {} {} width {} D {} in {secs:.1}s: {s}{why}", r.id, r.kind, r.grid, r.width, crate::format::si(r.tokens as f64)));
                            phase[w.run] = Phase::Finished(s);
                            match s {
                                RunState::Done => summary.done += 1,
                                RunState::Diverged => summary.diverged += 1,
                                _ => summary.failed += 1,
                            }
                        }
                    }
                }
            }
        }
        if summary.stopped_by_signal.is_some() {
            if workers.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        // Lost branch points: a finished trunk whose checkpoint at a branch point is gone or
        // corrupt trains again from its last good checkpoint before it.
        for (k, r) in plan.runs.iter().enumerate() {
            let (Some(trunk), Some(from)) = (&r.trunk, r.from_tokens) else { continue };
            if phase[k] != Phase::Waiting || verified[k] {
                continue;
            }
            let t = index[trunk.as_str()];
            let path = dir.join("runs").join(trunk).join("checkpoints").join(checkpoint_name(from));
            if path.exists() {
                match checkpoint::read(&path) {
                    Ok(_) => {
                        verified[k] = true;
                        continue;
                    }
                    Err(e) => {
                        let aside = path.with_extension("ckpt.corrupt");
                        std::fs::rename(&path, &aside).with_context(|| format!("cannot move the corrupt checkpoint {} aside", path.display()))?;
                        say(format!("  {e:#}; moved to {}", aside.display()));
                    }
                }
            }
            if phase[t] == Phase::Finished(RunState::Done) {
                anyhow::ensure!(
                    !regenerated[t],
                    "run {} needs checkpoint {}, which its trunk {trunk} did not write even when trained again; delete {} and run again",
                    r.id,
                    path.display(),
                    dir.join("runs").join(trunk).display()
                );
                say(format!("  trunk {trunk}: its checkpoint at {from} tokens (for branch {}) is missing; training the trunk again from its last good checkpoint before it (same weights, bit for bit)", r.id));
                regenerate[t] = Some(regenerate[t].map_or(from, |f| f.min(from)));
                phase[t] = Phase::Waiting;
            }
        }
        // Which waiting runs could start now: trunks and plain runs, and branches whose trunk
        // checkpoint exists (one file check per waiting branch per poll).
        let ready: Vec<bool> = plan
            .runs
            .iter()
            .enumerate()
            .map(|(k, r)| {
                phase[k] == Phase::Waiting
                    && r.trunk
                        .as_ref()
                        .zip(r.from_tokens)
                        .is_none_or(|(t, from)| dir.join("runs").join(t).join("checkpoints").join(checkpoint_name(from)).exists())
            })
            .collect();
        // CPU threads per new worker: the cores split over the workers that can run now, so a last
        // trunk running alone gets every core rather than 1/parallel of them.
        let startable = ready.iter().filter(|&&r| r).count();
        let threads_per_worker = (cores / parallel.min(workers.len() + startable).max(1)).max(1);
        // Start what is ready, in plan order.
        let mut held_elsewhere = 0;
        for (k, r) in plan.runs.iter().enumerate() {
            if workers.len() >= parallel {
                break;
            }
            if phase[k] != Phase::Waiting {
                continue;
            }
            if !ready[k] {
                if let (Some(trunk), Some(from)) = (&r.trunk, r.from_tokens) {
                    if let Phase::Finished(s) = phase[index[trunk.as_str()]] {
                        if s != RunState::Done {
                            // The trunk diverged or failed before this branch point: the branch cannot run.
                            phase[k] = Phase::Finished(RunState::Failed);
                            summary.failed += 1;
                            say(format!("  {} skipped: its trunk {trunk} ended {s} before {from} tokens", r.id));
                        }
                    }
                }
                continue;
            }
            let out = run_dir(r);
            if let Some(holder) = FileLock::holder(&out.join(RUN_LOCK)) {
                // An earlier worker (or a `train` started by hand) still writes this run: wait for it.
                held_elsewhere += 1;
                if !held_said[k] {
                    held_said[k] = true;
                    say(format!("  {} is being trained by another process ({holder}); waiting for it to stop", r.id));
                }
                continue;
            }
            let Some(slot) = (0..slots.len()).find(|&s| slots[s].busy < capacity(slots[s].device)) else { break };
            attempts[k] += 1;
            let mut cmd = Command::new(&options.worker);
            cmd.arg("train").arg(out.join("config.json")).arg("--out").arg(&out).arg("--quiet");
            if let Some(before) = regenerate[k].take() {
                regenerated[k] = true;
                cmd.arg("--resume-before-tokens").arg(before.to_string());
            } else if out.join("run.json").exists() {
                cmd.arg("--resume");
            }
            die_with_parent(&mut cmd);
            match slots[slot].device {
                DeviceSpec::Cpu => {
                    cmd.arg("--device").arg("cpu").env("RAYON_NUM_THREADS", threads_per_worker.to_string());
                }
                DeviceSpec::Cuda(gpu) => {
                    cmd.arg("--device").arg("cuda:0").env("CUDA_VISIBLE_DEVICES", gpu.to_string());
                }
            }
            let log = File::create(out.join("worker.log")).with_context(|| format!("cannot create {}/worker.log", out.display()))?;
            cmd.stdout(Stdio::null()).stderr(log);
            let child = cmd.spawn().with_context(|| format!("cannot start worker {}", options.worker.display()))?;
            slots[slot].busy += 1;
            phase[k] = Phase::Running;
            workers.push(Worker { run: k, child, slot, started: Instant::now() });
        }
        let unfinished = phase.iter().filter(|p| !matches!(p, Phase::Finished(_))).count();
        if unfinished == 0 {
            break;
        }
        if workers.is_empty() && held_elsewhere == 0 {
            // Nothing runs and nothing can start: branches whose trunks will never reach them.
            let stuck: Vec<String> = plan
                .runs
                .iter()
                .enumerate()
                .filter(|&(k, _)| phase[k] == Phase::Waiting)
                .map(|(_, r)| format!("{} (needs {}/checkpoints/{})", r.id, r.trunk.as_deref().unwrap_or("?"), checkpoint_name(r.from_tokens.unwrap_or(0))))
                .collect();
            anyhow::bail!(
                "{unfinished} run(s) are waiting for trunk checkpoints that no trunk will write: {}; delete those trunks' directories under {}/runs/ and run again",
                stuck.join(", "),
                dir.display()
            );
        }
        if let Some(b) = &bars {
            if last_report.elapsed() > Duration::from_millis(500) {
                last_report = Instant::now();
                if let Ok(s) = super::collect::status(dir) {
                    let running: Vec<&PlannedRun> = workers.iter().map(|w| &plan.runs[w.run]).collect();
                    b.update(&s, &running);
                }
            }
        } else if !options.quiet && last_report.elapsed() > Duration::from_secs(15) {
            last_report = Instant::now();
            // Counts and FLOPs from the runs' own files, the same view `windtunnel status` has.
            if let Ok(s) = super::collect::status(dir) {
                let fraction = s.flops_done / s.flops_total.max(1.0);
                let elapsed = sweep_started.elapsed().as_secs_f64();
                let done_now = (fraction - start_fraction).max(1e-9);
                let eta = elapsed / done_now * (1.0 - fraction);
                crate::stderr_line!(
                    "[{} done, {} running, {} diverged, {} failed of {}] {:.1}% of {:.3e} FLOPs, ETA {:.0}s",
                    s.done,
                    s.running,
                    s.diverged,
                    s.failed,
                    s.runs,
                    100.0 * fraction,
                    s.flops_total,
                    eta
                );
            }
            for w in &workers {
                let r = &plan.runs[w.run];
                let st = read_status(&run_dir(r)).ok().flatten();
                let (step, steps, eval) = st.map_or((0, 0, None), |s| (s.step, s.steps, s.eval_loss));
                let eval = eval.map(|e| format!(" eval {e:.4}")).unwrap_or_default();
                crate::stderr_line!("    {} {} width {} step {step}/{steps}{eval} ({:.0}s)", r.id, r.kind, r.width, w.started.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(b) = &bars {
        b.finish();
    }
    Ok(summary)
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

/// ", reason" from a failed run's status, for the executor's line about it.
fn failure_reason(run_dir: &Path) -> String {
    match read_status(run_dir) {
        Ok(Some(s)) => s.reason.map(|r| format!(" — {}", r.lines().next().unwrap_or(""))).unwrap_or_default(),
        _ => String::new(),
    }
}

/// The sweep directory for a sweep file and an output root.
pub fn sweep_dir(spec: &SweepSpec, out_root: &Path) -> PathBuf {
    out_root.join(&spec.name)
}
