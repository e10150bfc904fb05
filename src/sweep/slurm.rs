//! The Slurm executor: `windtunnel run SWEEP.toml --executor slurm`.
//!
//! The sweep directory must be on a file system the compute nodes share: the nodes run the same
//! workers as the local executor, and every result is a file there. Slurm only starts them.
//!
//! Workers. Each array task trains its runs (one, or a queue of `runs_per_task`) either with a
//! `windtunnel train runs/<id>/config.json --out runs/<id>` process per run (`--workers per-run`,
//! the default on CPUs) or through one persistent `windtunnel worker` (`--workers persistent`,
//! the default when tasks get GPUs), which keeps its CUDA context and compiled kernels from run to
//! run. The batch shell feeds that worker the same JSON requests the local executor sends
//! ([`super::worker`]), through a pair of FIFOs; a worker that dies fails only the run it held,
//! and the task's next run starts a fresh one.
//!
//! Lanes. With `runs_per_device` M above 1 a task trains M runs at once on each of its G GPUs
//! (on a CPU task, M sharing its CPUs): its queue is dealt into G × M lanes (lane j takes runs j,
//! j + lanes, … on GPU j mod G), each a subshell with its own worker. With `--workers shared` a
//! lane is a GPU (G lanes), whose one worker trains M of the lane's runs at once on threads, the
//! next sent as a reply names the run that ended. The batch shell passes signals to every lane,
//! and the task's code is the worst of theirs (interrupted, then failed).
//!
//! Waves. Trunks and plain runs form wave 1, one job array (`slurm/wave-1.sbatch`). Branches form
//! wave 2 (`slurm/wave-2.sbatch`), submitted once per trunk as the array of that trunk's branches
//! with `--dependency=afterok:<trunk job>_<task>`: a branch starts when its trunk has finished
//! (and with it every branch-point checkpoint), and never if the trunk diverged or failed
//! (`--kill-on-invalid-dep`). A trunk already finished gives its branches no dependency. Each
//! run's job is recorded in `slurm/jobs.json`.
//!
//! Time limits and preemption. Each script asks for `--signal=B:USR1@<signal_seconds>`; the batch
//! shell traps USR1 (and TERM, which preemption and `scancel` send) and forwards it to the
//! worker, which writes a checkpoint and exits 138 (143). The script then requeues its own task
//! (`scontrol requeue`, retried and logged if the controller refuses it), at most `max_requeues`
//! times (SLURM_RESTART_COUNT), and the requeued task resumes from the checkpoint. A failed worker is requeued within the same bound.
//! `windtunnel cancel` marks the sweep cancelled first, so cancelled tasks do not requeue.
//!
//! Safety. Everything from the sweep file or the command line that reaches a script is data:
//! paths and run ids are single-quoted for the shell, values of `#SBATCH` lines are refused if
//! they hold control characters (a newline would start a shell line), the job name is reduced to
//! `[A-Za-z0-9._-]`, and log paths are relative to the sweep directory (scripts are submitted from
//! it). The one exception is `setup`: its lines are shell commands by design (module loads,
//! environment activation), run verbatim before the worker, like submitit's `setup`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::executor::{CancelReport, ExecReport, Executor, RunOptions, Submitted};
use super::loaded::LoadedSweep;
use super::plan::{Plan, PlannedRun, RunKind};
use super::spec::SlurmSpec;
use super::status::{files_view, LiveState, SweepStatus};
use super::worker::Workers;
use crate::fsutil::atomic_write;
use crate::kernel_cache::KernelCache;
use crate::layout::SweepDir;
use crate::process::{EXIT_CANNOT_START, EXIT_DIVERGED};
use crate::train::log::{read_status, RunState};

/// A string as one single-quoted shell word: nothing inside is expanded or executed.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A job name Slurm and a shell both take as is.
fn job_name(s: &str) -> String {
    let name: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    name.chars().take(64).collect()
}

#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// The sweep file's `[slurm]` block with the command line's keys over it.
    pub spec: SlurmSpec,
    /// This binary (used when the spec names none).
    pub worker: PathBuf,
    /// Write the scripts without submitting them.
    pub dry_run: bool,
    /// Stay until every run has finished (or left Slurm), printing progress.
    pub wait: bool,
    /// `run --kernel-cache`: exported to the tasks as `WINDTUNNEL_KERNEL_CACHE` (over the
    /// submitting shell's variable and the sweep file's `[gpu] kernel_cache`).
    pub kernel_cache: Option<PathBuf>,
    /// `run --workers`: what trains a task's runs [default: persistent workers when tasks get
    /// GPUs, else a `train` process per run].
    pub workers: Option<Workers>,
    /// `run --parallel`: runs at once, as `run --adaptive` counts them [default: 4].
    pub parallel: Option<usize>,
    pub quiet: bool,
}

impl SlurmOptions {
    /// What trains the tasks' runs: as asked, else persistent workers on GPUs.
    pub fn workers(&self) -> Workers {
        self.workers.unwrap_or(if self.spec.on_gpus() { Workers::Persistent } else { Workers::PerRun })
    }
}

/// `s` as the text inside a JSON string (quotes, backslashes and control characters escaped).
fn json_string_text(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// One `sbatch` call: a script, the array indices it starts, and the dependency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub script: PathBuf,
    pub array: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    pub job_id: Option<String>,
    pub run_ids: Vec<String>,
}

/// `slurm/jobs.json`: every submission, and each run's current Slurm task ("<job>_<index>").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobsFile {
    pub submissions: Vec<Submission>,
    pub tasks: BTreeMap<String, String>,
}

pub fn read_jobs(dir: &Path) -> anyhow::Result<JobsFile> {
    let path = SweepDir::new(dir).slurm_jobs();
    if !path.exists() {
        return Ok(JobsFile::default());
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is malformed", path.display()))
}

/// The Slurm state of one task, as squeue, sacct or scontrol report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskState {
    pub task: String,
    /// PENDING, RUNNING, COMPLETED, CANCELLED, FAILED, TIMEOUT, … or UNKNOWN when no Slurm
    /// command knows the task any more (cancelled while pending, or expired from slurmctld).
    pub state: String,
    pub reason: Option<String>,
}

impl TaskState {
    pub fn alive(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SUSPENDED"
                | "STOPPED"
                | "SIGNALING"
        )
    }
}

fn command_output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("cannot run `{program}`: is Slurm's client installed on this machine?"))?;
    anyhow::ensure!(out.status.success(), "`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Slurm's view of `tasks` ("<job>_<index>"): squeue for live tasks, then sacct when accounting
/// works, then `scontrol show job` (which remembers finished jobs for MinJobAge).
pub fn query_tasks(tasks: &[String]) -> anyhow::Result<HashMap<String, TaskState>> {
    let mut out = HashMap::new();
    if tasks.is_empty() {
        return Ok(out);
    }
    let mut jobs: Vec<&str> = tasks.iter().filter_map(|t| t.split('_').next()).collect();
    jobs.sort();
    jobs.dedup();
    // squeue fails, harmlessly, for job ids it has forgotten; where it cannot even start, Slurm is
    // not reachable from this machine and no state can be told.
    let squeue = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i|%T|%r", "-j", &jobs.join(",")])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run `squeue` ({e}): Slurm is not reachable from this machine"))?;
    let listing = if squeue.status.success() { String::from_utf8_lossy(&squeue.stdout).to_string() } else { String::new() };
    for line in listing.lines() {
        let parts: Vec<&str> = line.trim().split('|').collect();
        if parts.len() == 3 && tasks.iter().any(|t| t == parts[0]) {
            let reason = (parts[2] != "None").then(|| parts[2].to_string());
            out.insert(parts[0].to_string(), TaskState { task: parts[0].to_string(), state: parts[1].to_string(), reason });
        }
    }
    let missing: Vec<&String> = tasks.iter().filter(|t| !out.contains_key(*t)).collect();
    if missing.is_empty() {
        return Ok(out);
    }
    if let Ok(acct) = command_output("sacct", &["-n", "-P", "-X", "-o", "JobID,State", "-j", &jobs.join(",")]) {
        for line in acct.lines() {
            if let Some((id, state)) = line.split_once('|') {
                if missing.iter().any(|t| *t == id) {
                    let state = state.split_whitespace().next().unwrap_or("UNKNOWN").to_string();
                    out.insert(id.to_string(), TaskState { task: id.to_string(), state, reason: None });
                }
            }
        }
    }
    for task in missing {
        if out.contains_key(task) {
            continue;
        }
        let state = command_output("scontrol", &["-o", "show", "job", task])
            .ok()
            .and_then(|text| text.split_whitespace().find_map(|kv| kv.strip_prefix("JobState=").map(str::to_string)))
            .unwrap_or_else(|| "UNKNOWN".to_string());
        out.insert(task.clone(), TaskState { task: task.clone(), state, reason: None });
    }
    Ok(out)
}

/// The batch script of a wave: which runs its array indices start, and how.
fn wave_script(dir: &Path, plan_name: &str, wave: usize, tasks: &[Vec<&PlannedRun>], options: &SlurmOptions, worker: &Path, submit_lines: &[String]) -> String {
    let (spec, workers) = (&options.spec, options.workers());
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    let runs: usize = tasks.iter().map(Vec::len).sum();
    s.push_str(&format!(
        "# windtunnel sweep {plan_name:?}, wave {wave}: {runs} run(s) in {} array task(s). Generated by windtunnel {}.\n",
        tasks.len(),
        env!("CARGO_PKG_VERSION")
    ));
    s.push_str("# Submitted from the sweep directory (log paths are relative to it) as:\n");
    for line in submit_lines {
        s.push_str(&format!("#   {line}\n"));
    }
    let n = tasks.len();
    let throttle = spec.array_throttle.map(|k| format!("%{k}")).unwrap_or_default();
    let mut directive = |line: String| s.push_str(&format!("#SBATCH {line}\n"));
    directive(format!("--job-name={}", job_name(&format!("wt-{plan_name}-w{wave}"))));
    directive(format!("--array=0-{}{throttle}", n.saturating_sub(1)));
    directive("--output=slurm/logs/%x-%A_%a.out".into());
    directive("--open-mode=append".into());
    directive("--requeue".into());
    directive(format!("--signal=B:USR1@{}", spec.signal_seconds()));
    directive("--ntasks=1".into());
    directive(format!("--cpus-per-task={}", spec.cpus_per_task()));
    for (flag, value) in [
        ("partition", &spec.partition),
        ("account", &spec.account),
        ("qos", &spec.qos),
        ("time", &spec.time),
        ("mem", &spec.mem),
        ("constraint", &spec.constraint),
    ] {
        if let Some(v) = value {
            directive(format!("--{flag}={v}"));
        }
    }
    if let Some(g) = spec.gpus_per_task.filter(|&g| g > 0) {
        directive(format!("--gpus-per-task={g}"));
    }
    for line in &spec.sbatch {
        directive(line.clone());
    }
    s.push('\n');
    s.push_str("set -u\n");
    if !spec.setup.is_empty() {
        s.push_str("# setup ([slurm] setup and --setup lines)\n");
        for line in &spec.setup {
            s.push_str(line);
            s.push('\n');
        }
    }
    let device = if spec.on_gpus() { "cuda:0" } else { "cpu" };
    s.push_str(&format!(
        r#"
SWEEP_DIR={dir}
# The same path as the text of a JSON string, for the worker's requests.
SWEEP_DIR_JSON={dir_json}
WINDTUNNEL={worker}
# How the runs are trained (`run --workers`): persistent (a `windtunnel worker` per lane), shared
# (one per GPU, its runs at once on threads) or per-run (a `train` process each).
WORKERS={workers}
# The device of a run (lanes on a task with several GPUs use one each), GPUs of the task, and runs
# at once on each (`run --runs-per-device`).
DEVICE={device}
GPUS={gpus}
RUNS_PER_DEVICE={runs_per_device}
MAX_REQUEUES={max_requeues}
# train's exit codes for a diverged run and a run that cannot start as configured.
EXIT_DIVERGED={diverged}
EXIT_CANNOT_START={cannot_start}
# Each array task trains the runs of its entry.
RUN_IDS=({ids})
set -- ${{RUN_IDS[$SLURM_ARRAY_TASK_ID]}}
RUNS=$#
TASK="${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
RESTARTS=${{SLURM_RESTART_COUNT:-0}}
"#,
        dir = shell_quote(&dir.display().to_string()),
        dir_json = shell_quote(&json_string_text(&dir.display().to_string())),
        workers = workers.as_str(),
        gpus = spec.gpus(),
        runs_per_device = spec.runs_per_device(),
        worker = shell_quote(&worker.display().to_string()),
        max_requeues = spec.max_requeues(),
        diverged = EXIT_DIVERGED,
        cannot_start = EXIT_CANNOT_START,
        ids = tasks.iter().map(|t| shell_quote(&t.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(" "))).collect::<Vec<_>>().join(" "),
    ));
    s.push_str(TASK_SCRIPT);
    s
}

/// What every array task runs after its parameters: pass signals on, train its runs (in lanes,
/// through workers), and requeue itself when it was interrupted or a run failed.
const TASK_SCRIPT: &str = include_str!("slurm-task.sh");

/// Run `sbatch` from the sweep directory; returns the job id.
fn sbatch(dir: &Path, args: &[String]) -> anyhow::Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run `sbatch`: is Slurm's client installed and on PATH?")?;
    anyhow::ensure!(out.status.success(), "`sbatch {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    let text = String::from_utf8_lossy(&out.stdout);
    // --parsable prints "<job id>[;<cluster>]".
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    anyhow::ensure!(!id.is_empty() && id.chars().all(|c| c.is_ascii_digit()), "sbatch printed no job id: {text:?}");
    Ok(id)
}

/// Compact array indices: [0, 1, 2, 5] → "0-2,5".
fn array_indices(indices: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { indices[i].to_string() } else { format!("{}-{}", indices[i], indices[j]) });
        i = j + 1;
    }
    parts.join(",")
}

/// Submit every unfinished run of `plan` that Slurm is not already running.
/// Returns what was submitted and how many runs had finished already.
pub fn submit(dir: &Path, plan: &Plan, options: &SlurmOptions) -> anyhow::Result<(Submitted, usize)> {
    options.spec.validate()?;
    let dir = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
    let sweep = SweepDir::new(&dir);
    let worker = options.spec.windtunnel.clone().unwrap_or_else(|| options.worker.clone());
    std::fs::create_dir_all(sweep.slurm_logs()).with_context(|| format!("cannot create {}", sweep.slurm_logs().display()))?;
    if !options.dry_run {
        let _ = std::fs::remove_file(sweep.slurm_cancelled());
    }
    let mut jobs = read_jobs(&dir)?;
    let mut summary = Submitted { dry_run: options.dry_run, ..Default::default() };
    let mut already_finished = 0;

    // What each run is now: finished (files), alive in Slurm (jobs.json + squeue), or to submit.
    let known: Vec<String> = plan.runs.iter().filter_map(|r| jobs.tasks.get(&r.id).cloned()).collect();
    let slurm_view = if known.is_empty() || options.dry_run { HashMap::new() } else { query_tasks(&known)? };
    let state_of = |r: &PlannedRun| read_status(sweep.run(&r.id).root()).ok().flatten().map(|s| s.state);
    let mut to_submit: Vec<&PlannedRun> = Vec::new();
    let mut finished: HashMap<&str, RunState> = HashMap::new();
    let mut alive: HashMap<&str, String> = HashMap::new();
    for r in &plan.runs {
        if let Some(s @ (RunState::Done | RunState::Diverged)) = state_of(r) {
            finished.insert(&r.id, s);
            already_finished += 1;
            continue;
        }
        if let Some(task) = jobs.tasks.get(&r.id) {
            if slurm_view.get(task).is_some_and(TaskState::alive) {
                alive.insert(&r.id, task.clone());
                summary.already_in_queue += 1;
                continue;
            }
        }
        to_submit.push(r);
    }

    // Wave 1: trunks and plain runs, no dependencies.
    let wave1: Vec<(&PlannedRun, Option<String>)> = to_submit.iter().copied().filter(|r| r.kind != RunKind::Branch).map(|r| (r, None)).collect();
    let mut trunk_task: HashMap<String, String> = alive.iter().map(|(id, t)| (id.to_string(), t.clone())).collect();
    trunk_task.extend(submit_wave(&dir, &plan.name, 1, &wave1, options, &worker, &mut jobs, &mut summary)?);

    // Wave 2: branches, each array after its trunk's task (none when the trunk has finished).
    let mut wave2: Vec<(&PlannedRun, Option<String>)> = Vec::new();
    for r in to_submit.iter().copied().filter(|r| r.kind == RunKind::Branch) {
        let trunk = r.trunk.as_deref().unwrap_or("");
        let after = match (finished.get(trunk), trunk_task.get(trunk)) {
            (Some(RunState::Diverged), _) => {
                summary.skipped.push(format!("{} not submitted: its trunk {trunk} diverged", r.id));
                continue;
            }
            (Some(_), _) => None,
            (None, Some(task)) => Some(format!("afterok:{task}")),
            // Dry run: the trunk has no job id yet.
            (None, None) if options.dry_run => Some("afterok:<trunk job>".to_string()),
            (None, None) => anyhow::bail!("branch {} of trunk {trunk}: the trunk is neither finished nor submitted", r.id),
        };
        wave2.push((r, after));
    }
    submit_wave(&dir, &plan.name, 2, &wave2, options, &worker, &mut jobs, &mut summary)?;
    Ok((summary, already_finished))
}

/// Array tasks per script: Slurm's default MaxArraySize (1001) allows indices 0 to 1000.
const MAX_ARRAY_TASKS: usize = 1000;

/// Write and submit one wave: a script per 1000 runs, one `sbatch` per distinct dependency.
/// `jobs.json` is rewritten after every `sbatch`, so an interruption loses no job id.
/// Returns each submitted run's task ("<job>_<index>").
#[allow(clippy::too_many_arguments)]
fn submit_wave(
    dir: &Path,
    plan_name: &str,
    wave: usize,
    runs: &[(&PlannedRun, Option<String>)],
    options: &SlurmOptions,
    worker: &Path,
    jobs: &mut JobsFile,
    summary: &mut Submitted,
) -> anyhow::Result<HashMap<String, String>> {
    let mut tasks = HashMap::new();
    let grouped = group_into_tasks(runs, options.spec.runs_per_task());
    let chunks: Vec<&[(Vec<&PlannedRun>, Option<String>)]> = grouped.chunks(MAX_ARRAY_TASKS).collect();
    let throttle = options.spec.array_throttle.map(|k| format!("%{k}")).unwrap_or_default();
    for (k, chunk) in chunks.iter().enumerate() {
        let name = if chunks.len() == 1 { format!("wave-{wave}.sbatch") } else { format!("wave-{wave}-{}.sbatch", k + 1) };
        let relative = format!("slurm/{name}");
        // One sbatch per dependency, in the order the runs come.
        let mut calls: Vec<(Option<String>, Vec<usize>)> = Vec::new();
        for (i, (_, after)) in chunk.iter().enumerate() {
            match calls.iter_mut().find(|(a, _)| a == after) {
                Some((_, indices)) => indices.push(i),
                None => calls.push((after.clone(), vec![i])),
            }
        }
        let args: Vec<Vec<String>> = calls
            .iter()
            .map(|(after, indices)| {
                let mut a = vec![format!("--array={}{throttle}", array_indices(indices))];
                if let Some(d) = after {
                    a.push(format!("--dependency={d}"));
                    a.push("--kill-on-invalid-dep=yes".into());
                }
                a.push(relative.clone());
                a
            })
            .collect();
        let lines: Vec<String> = args.iter().map(|a| format!("sbatch {}", a.join(" "))).collect();
        let script_runs: Vec<Vec<&PlannedRun>> = chunk.iter().map(|(group, _)| group.clone()).collect();
        let script_path = SweepDir::new(dir).slurm().join(&name);
        atomic_write(&script_path, wave_script(dir, plan_name, wave, &script_runs, options, worker, &lines).as_bytes())?;
        summary.scripts.push(script_path.clone());
        for ((after, indices), a) in calls.iter().zip(&args) {
            let job = if options.dry_run { None } else { Some(sbatch(dir, a)?) };
            if let Some(job) = &job {
                for &i in indices {
                    let task = format!("{job}_{i}");
                    for r in &chunk[i].0 {
                        jobs.tasks.insert(r.id.clone(), task.clone());
                        tasks.insert(r.id.clone(), task.clone());
                    }
                }
                summary.job_ids.push(job.clone());
            }
            jobs.submissions.push(Submission {
                script: script_path.clone(),
                array: array_indices(indices),
                dependency: after.clone(),
                job_id: job,
                run_ids: indices.iter().flat_map(|&i| chunk[i].0.iter().map(|r| r.id.clone())).collect(),
            });
            if !options.dry_run {
                atomic_write(&SweepDir::new(dir).slurm_jobs(), serde_json::to_string_pretty(&*jobs)?.as_bytes())?;
            }
        }
        summary.runs += chunk.iter().map(|(group, _)| group.len()).sum::<usize>();
    }
    Ok(tasks)
}

/// The array tasks of a wave: up to `per_task` runs with the same dependency each, in plan
/// order; a trunk always alone, so its branches depend on its task's exit code and no other's.
fn group_into_tasks<'a>(runs: &[(&'a PlannedRun, Option<String>)], per_task: usize) -> Vec<(Vec<&'a PlannedRun>, Option<String>)> {
    let mut tasks: Vec<(Vec<&PlannedRun>, Option<String>)> = Vec::new();
    for (run, after) in runs {
        let joins =
            |(group, a): &&mut (Vec<&PlannedRun>, Option<String>)| a == after && group.len() < per_task && group.iter().all(|r| r.kind != RunKind::Trunk);
        match tasks.iter_mut().rev().find(joins) {
            Some((group, _)) if run.kind != RunKind::Trunk => group.push(run),
            _ => tasks.push((vec![run], after.clone())),
        }
    }
    tasks
}

/// Slurm's view of every unfinished run of the sweep that has a recorded task.
pub fn unfinished_tasks(dir: &Path, run_ids: &[String]) -> anyhow::Result<HashMap<String, TaskState>> {
    let jobs = read_jobs(dir)?;
    let tasks: Vec<String> = run_ids.iter().filter_map(|id| jobs.tasks.get(id).cloned()).collect();
    let view = query_tasks(&tasks)?;
    Ok(run_ids.iter().filter_map(|id| jobs.tasks.get(id).and_then(|t| view.get(t)).map(|s| (id.clone(), s.clone()))).collect())
}

/// Poll until every run has finished or has no live Slurm task, printing progress.
pub fn wait(dir: &Path, plan: &Plan, quiet: bool) -> anyhow::Result<SweepStatus> {
    let started = Instant::now();
    let mut last = String::new();
    let sweep = SweepDir::new(dir);
    loop {
        let status = files_view(&sweep)?;
        let view = unfinished_tasks(dir, &status.unfinished())?;
        let unfinished = status.unfinished();
        let live = unfinished.iter().filter(|id| view.get(*id).is_some_and(TaskState::alive)).count();
        let line = format!(
            "[{} done, {} diverged, {} running, {} in the Slurm queue of {}] {:.0}s",
            status.done,
            status.diverged,
            status.running,
            live,
            plan.runs.len(),
            started.elapsed().as_secs_f64()
        );
        if !quiet && line[..line.rfind(']').unwrap_or(0)] != last[..last.rfind(']').unwrap_or(0)] {
            crate::stderr_line!("{line}");
        }
        last = line;
        // No live task left, or `windtunnel cancel` asked this `run` to stop waiting.
        if live == 0 || sweep.cancel_request().exists() {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// `windtunnel cancel DIR`: mark the sweep cancelled (so no task requeues itself) and scancel
/// every job it submitted. Interrupted runs keep their checkpoints; `run --executor slurm` resumes.
pub fn cancel(dir: &Path) -> anyhow::Result<Option<CancelReport>> {
    let jobs = read_jobs(dir)?;
    if jobs.submissions.is_empty() {
        return Ok(None);
    }
    atomic_write(&SweepDir::new(dir).slurm_cancelled(), b"cancelled by `windtunnel cancel`\n")?;
    let mut ids: Vec<String> = jobs.submissions.iter().filter_map(|s| s.job_id.clone()).collect();
    ids.sort();
    ids.dedup();
    command_output("scancel", &ids.iter().map(String::as_str).collect::<Vec<_>>())?;
    let message =
        format!("cancelled Slurm job(s) {}; interrupted runs keep their checkpoints: resume with `windtunnel run SWEEP.toml --executor slurm`", ids.join(", "));
    Ok(Some(CancelReport { executor: "slurm", stopped: ids, message }))
}

/// The Slurm executor for `windtunnel run`: the sweep file's `[slurm]` block with the flags over
/// it (`--max-retries` and `--runs-per-device` set `max_requeues` and `runs_per_device`).
pub fn for_run(options: &RunOptions, sweep: &LoadedSweep) -> anyhow::Result<Box<dyn Executor>> {
    let (flags, submit) = (&options.exec, options.submit);
    anyhow::ensure!(
        !options.adaptive || (submit.wait && !submit.dry_run),
        "--adaptive with --executor slurm needs --wait (each round's choice needs the last round's losses), and cannot be a --dry-run"
    );
    let overrides = SlurmSpec {
        max_requeues: flags.max_retries.map(|r| r as u32),
        runs_per_device: flags.runs_per_device.map(|k| u32::try_from(k).unwrap_or(u32::MAX)),
        ..options.slurm.clone()
    };
    Ok(Box::new(SlurmExecutor::new(SlurmOptions {
        spec: sweep.spec.slurm.clone().unwrap_or_default().merged(&overrides)?,
        worker: options.worker.clone(),
        dry_run: submit.dry_run,
        wait: submit.wait,
        kernel_cache: flags.kernel_cache.clone(),
        workers: flags.workers,
        parallel: flags.parallel,
        quiet: flags.quiet,
    })))
}

/// The Slurm executor for `status` and `cancel`, when the sweep was submitted to Slurm.
pub fn for_sweep_dir(sweep: &SweepDir) -> Option<Box<dyn Executor>> {
    sweep.slurm_jobs().exists().then(|| Box::new(SlurmExecutor::for_status()) as Box<dyn Executor>)
}

/// Job arrays on a Slurm cluster, from this machine's Slurm client.
pub struct SlurmExecutor {
    options: SlurmOptions,
}

impl SlurmExecutor {
    pub fn new(options: SlurmOptions) -> Self {
        Self { options }
    }

    /// An executor for `status` and `cancel`, which submit nothing.
    pub fn for_status() -> Self {
        Self::new(SlurmOptions {
            spec: SlurmSpec::default(),
            worker: PathBuf::new(),
            dry_run: false,
            wait: false,
            kernel_cache: None,
            workers: None,
            parallel: None,
            quiet: true,
        })
    }

    /// Runs at once unless `run --parallel` says: Slurm runs what it can, so a round is a guess.
    const DEFAULT_SLOTS: usize = 4;
}

impl Executor for SlurmExecutor {
    fn name(&self) -> &'static str {
        "slurm"
    }

    /// Submit, and with `wait` stay until Slurm has nothing left of the sweep.
    fn execute(&self, sweep: &SweepDir, plan: &Plan) -> anyhow::Result<ExecReport> {
        let mut options = self.options.clone();
        // A kernel cache chosen explicitly reaches every task; otherwise each node uses its default.
        let from_file = plan.kernel_cache.clone().map(|dir| KernelCache { dir, source: "[gpu] kernel_cache".into() });
        if let Some(cache) = KernelCache::resolve(self.options.kernel_cache.as_deref(), from_file).filter(KernelCache::is_explicit) {
            options.spec.setup.push(format!("export {}={}", crate::kernel_cache::ENV, shell_quote(&cache.dir.display().to_string())));
        }
        let (submitted, already_finished) = submit(sweep.root(), plan, &options)?;
        let waited = options.wait && !options.dry_run;
        if waited {
            wait(sweep.root(), plan, options.quiet)?;
        }
        Ok(ExecReport { executor: "slurm", skipped_already_done: already_finished, waited, submitted: Some(submitted), ..Default::default() })
    }

    fn slots(&self) -> usize {
        self.options.parallel.unwrap_or(Self::DEFAULT_SLOTS)
    }

    fn live_states(&self, sweep: &SweepDir, unfinished: &[String]) -> anyhow::Result<HashMap<String, LiveState>> {
        Ok(unfinished_tasks(sweep.root(), unfinished)?
            .into_iter()
            .map(|(id, t)| {
                let alive = t.alive();
                (id, LiveState { executor: "slurm", handle: t.task, state: t.state, reason: t.reason, alive })
            })
            .collect())
    }

    fn cancel(&self, sweep: &SweepDir) -> anyhow::Result<Option<CancelReport>> {
        cancel(sweep.root())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_hostile_strings_inert() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $(rm -rf ~) `x`"), r"'it'\''s $(rm -rf ~) `x`'");
        assert_eq!(job_name("wt-x; rm -rf /$(y)"), "wt-x__rm_-rf____y_");
    }

    #[test]
    fn directive_values_with_newlines_are_refused() {
        let spec = SlurmSpec { partition: Some("gpu\n#SBATCH --wrap=evil".into()), ..Default::default() };
        let e = spec.validate().unwrap_err().to_string();
        assert!(e.contains("slurm.partition") && e.contains("control character"), "{e}");
        let spec = SlurmSpec { sbatch: vec!["exclusive".into()], ..Default::default() };
        assert!(spec.validate().unwrap_err().to_string().contains("--exclusive"));
        let spec = SlurmSpec { time: Some("1 hour".into()), ..Default::default() };
        assert!(spec.validate().is_err());
    }

    #[test]
    fn gpu_tasks_train_through_a_persistent_worker_unless_told_otherwise() {
        let options = |gpus: Option<u32>, workers: Option<Workers>| SlurmOptions {
            spec: SlurmSpec { gpus_per_task: gpus, ..Default::default() },
            worker: PathBuf::from("/opt/windtunnel"),
            dry_run: true,
            wait: false,
            kernel_cache: None,
            workers,
            parallel: None,
            quiet: true,
        };
        assert_eq!(options(Some(1), None).workers(), Workers::Persistent);
        assert_eq!((options(Some(0), None).workers(), options(None, None).workers()), (Workers::PerRun, Workers::PerRun));
        assert_eq!(options(Some(1), Some(Workers::PerRun)).workers(), Workers::PerRun);
        assert_eq!(options(None, Some(Workers::Shared)).workers(), Workers::Shared);
        let shared = wave_script(Path::new("/s"), "q", 1, &[], &options(Some(1), Some(Workers::Shared)), Path::new("/opt/windtunnel"), &[]);
        assert!(shared.contains("\nWORKERS=shared\n") && shared.contains("LANE=train_shared"), "{shared}");
        let script = wave_script(Path::new("/s/it's \"q\""), "q", 1, &[], &options(Some(1), None), Path::new("/opt/windtunnel"), &[]);
        assert!(script.contains("\nWORKERS=persistent\n") && script.contains("\nDEVICE=cuda:0\nGPUS=1\nRUNS_PER_DEVICE=1\n"), "{script}");
        // The directory as JSON text, single-quoted for the shell.
        assert!(script.contains(r#"SWEEP_DIR_JSON='/s/it'\''s \"q\"'"#), "{script}");
        assert_eq!(json_string_text("a\"b\\c\n"), r#"a\"b\\c\n"#);
    }

    #[test]
    fn runs_per_device_sets_the_lanes_and_fills_a_task() {
        let spec = SlurmSpec { gpus_per_task: Some(4), runs_per_device: Some(2), ..Default::default() };
        assert_eq!((spec.runs_per_device(), spec.runs_per_task(), spec.lanes()), (2, 8, 8));
        assert_eq!(SlurmSpec { runs_per_task: Some(16), ..spec.clone() }.runs_per_task(), 16);
        assert_eq!((SlurmSpec::default().runs_per_device(), SlurmSpec::default().runs_per_task()), (1, 1));
        let options = SlurmOptions {
            spec: spec.clone(),
            worker: PathBuf::from("/opt/windtunnel"),
            dry_run: true,
            wait: false,
            kernel_cache: None,
            workers: None,
            parallel: None,
            quiet: true,
        };
        let script = wave_script(Path::new("/s"), "q", 1, &[], &options, Path::new("/opt/windtunnel"), &[]);
        assert!(script.contains("\nGPUS=4\nRUNS_PER_DEVICE=2\n") && script.contains("#SBATCH --gpus-per-task=4\n"), "{script}");
        // A CPU core per lane unless told otherwise.
        assert!(script.contains("#SBATCH --cpus-per-task=8\n"), "{script}");
        assert_eq!(SlurmSpec { cpus_per_task: Some(2), ..spec.clone() }.cpus_per_task(), 2);
        let e = SlurmSpec { runs_per_device: Some(0), ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("slurm.runs_per_device must be at least 1"), "{e}");
    }

    #[test]
    fn array_indices_are_compact() {
        assert_eq!(array_indices(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(array_indices(&[3]), "3");
    }

    #[test]
    fn overrides_replace_the_sweep_files_keys() {
        let file = SlurmSpec { partition: Some("cpu".into()), time: Some("60".into()), setup: vec!["module load x".into()], ..Default::default() };
        let cli = SlurmSpec { partition: Some("gpu".into()), setup: vec!["source env".into()], ..Default::default() };
        let m = file.merged(&cli).unwrap();
        assert_eq!(m.partition.as_deref(), Some("gpu"));
        assert_eq!(m.time.as_deref(), Some("60"));
        assert_eq!(m.setup, vec!["module load x", "source env"]);
    }
}
