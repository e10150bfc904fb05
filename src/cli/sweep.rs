//! `windtunnel plan`, `run`, `status`, `cancel` and `collect`.

use clap::Args;
use serde::Serialize;

use super::{emit, this_binary};
use windtunnel::device::DeviceSpec;
use windtunnel::layout::SweepDir;
use windtunnel::sweep::executor::{CancelReport, Executor};
use windtunnel::sweep::loaded::LoadedSweep;
use windtunnel::sweep::local::{ExecOptions, LocalExecutor};
use windtunnel::sweep::slurm::{SlurmExecutor, SlurmOptions};
use windtunnel::sweep::spec::SlurmSpec;
use windtunnel::sweep::worker::Workers;

#[derive(Args)]
pub struct PlanArgs {
    sweep: std::path::PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RunArgs {
    sweep: std::path::PathBuf,
    /// Root folder; the sweep writes into OUT/<sweep name>.
    #[arg(long, default_value = "results")]
    out: std::path::PathBuf,
    /// Workers at a time [default: devices × runs-per-device].
    #[arg(long)]
    parallel: Option<usize>,
    /// cpu, or GPUs as cuda:0,1,2 or cuda:all (each worker sees one GPU; N counts the GPUs in
    /// CUDA_VISIBLE_DEVICES when it is set, as inside a Slurm job).
    #[arg(long, default_value = "cpu")]
    devices: String,
    /// Concurrent runs per device; with --executor slurm, per GPU of a task (or per CPU task),
    /// overriding [slurm] runs_per_device [default: 1].
    #[arg(long)]
    runs_per_device: Option<usize>,
    /// How runs are trained: `persistent` (a `windtunnel worker` per device slot, or per Slurm
    /// lane, trains run after run: GPU kernels compiled and the CUDA context created once),
    /// `shared` (one worker per device, or per GPU of a Slurm task, trains its --runs-per-device
    /// runs at once, on threads of one process) or `per-run` (a `train` process each)
    /// [default: persistent on GPUs, per-run on the CPU].
    #[arg(long, value_enum)]
    workers: Option<WorkerMode>,
    /// Where workers keep compiled GPU kernels and autotune results [default:
    /// $WINDTUNNEL_KERNEL_CACHE, else the sweep file's [gpu] kernel_cache, else ~/.cache/windtunnel/kernels].
    #[arg(long, value_name = "DIR")]
    kernel_cache: Option<std::path::PathBuf>,
    /// Retries of a failed run [default: 2]; Slurm: requeues of a task after a failure, time limit
    /// or preemption [default: the [slurm] block's max_requeues, else 3].
    #[arg(long)]
    max_retries: Option<usize>,
    #[arg(long)]
    quiet: bool,
    /// Print what was done as JSON on stdout (--adaptive: the rounds and the answer).
    #[arg(long)]
    json: bool,
    /// Train only the runs of the sweep file's [adaptive] grid that teach most about its target
    /// per FLOP, round by round, until the target is known well enough or max_flops are spent.
    #[arg(long)]
    adaptive: bool,
    /// Where the runs execute: here (local) or as Slurm job arrays (slurm).
    #[arg(long, value_enum, default_value = "local")]
    executor: ExecutorKind,
    #[command(flatten)]
    slurm: SlurmSpec,
    #[command(flatten)]
    submit: SubmitArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WorkerMode {
    Persistent,
    PerRun,
    Shared,
}

impl WorkerMode {
    fn workers(self) -> Workers {
        match self {
            Self::Persistent => Workers::Persistent,
            Self::PerRun => Workers::PerRun,
            Self::Shared => Workers::Shared,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExecutorKind {
    Local,
    Slurm,
}

/// `--dry-run` and `--wait`, shown with the Slurm flags.
#[derive(Args)]
#[command(next_help_heading = "Slurm (with --executor slurm; each overrides the sweep file's [slurm] key)")]
struct SubmitArgs {
    /// Train nothing: with the local executor, print what would run and what it would cost; with
    /// --executor slurm, also write the sbatch scripts into DIR/slurm/ without submitting them.
    #[arg(long)]
    dry_run: bool,
    /// Stay until Slurm has finished the sweep, then collect its table.
    #[arg(long)]
    wait: bool,
}

#[derive(Args)]
pub struct DirArgs {
    /// The sweep directory (results/<name>), or the folder `run --out` was given when it holds
    /// that one sweep.
    dir: std::path::PathBuf,
    #[arg(long)]
    json: bool,
}

fn parse_devices(s: &str) -> anyhow::Result<Vec<DeviceSpec>> {
    if s.trim() == "cuda:all" {
        let visible = windtunnel::device::cuda_visible_devices();
        let count =
            windtunnel::device::visible_gpu_count(visible.as_deref(), windtunnel::device::nvidia_smi_listing).map_err(|e| anyhow::anyhow!("--devices {e}"))?;
        return Ok((0..count).map(DeviceSpec::Cuda).collect());
    }
    let devices: Vec<DeviceSpec> = match s.strip_prefix("cuda:") {
        Some(list) => list
            .split(',')
            .map(|i| i.trim().parse().map(DeviceSpec::Cuda).map_err(|_| anyhow::anyhow!("--devices {s}: `{i}` is not a GPU index")))
            .collect::<anyhow::Result<_>>()?,
        None => s.split(',').map(|d| d.parse::<DeviceSpec>().map_err(anyhow::Error::msg)).collect::<anyhow::Result<_>>()?,
    };
    if let Some(twice) = devices.iter().enumerate().find_map(|(i, d)| devices[..i].contains(d).then_some(d)) {
        anyhow::bail!("--devices {s} names {twice} twice; to train several runs on one device at once, use --runs-per-device (or --parallel on the CPU)");
    }
    Ok(devices)
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The sweep file to write; the sweep is named after it.
    #[arg(default_value = "sweep.toml")]
    path: std::path::PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
    #[arg(long)]
    json: bool,
}

/// What `init` wrote.
#[derive(serde::Serialize)]
struct Initialised {
    path: std::path::PathBuf,
    name: String,
    runs: usize,
    flops: f64,
}

impl std::fmt::Display for Initialised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.path.display();
        writeln!(
            f,
            "wrote {shown}: sweep `{}`, {} runs ({:.3e} FLOPs), a half-minute wind tunnel on 2 CPU cores on the synthetic language",
            self.name, self.runs, self.flops
        )?;
        writeln!(f, "  windtunnel plan {shown}")?;
        writeln!(f, "  windtunnel run {shown} --parallel 2")?;
        write!(f, "every key, its type, default and meaning: `windtunnel reference --sweep-file`, or the user guide's sweep-file reference")
    }
}

pub fn init(args: InitArgs) -> anyhow::Result<u8> {
    let path = &args.path;
    anyhow::ensure!(!path.exists() || args.force, "{} exists; pass --force to replace it, or give another path", path.display());
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).filter(|n| !n.is_empty()).unwrap_or_else(|| "sweep".into());
    let text = windtunnel::sweep::STARTING_SWEEP.replace("NAME", &name);
    // The written file must plan: a name that is not a folder name is refused here, not later.
    let loaded = LoadedSweep::parse(text, path)?;
    windtunnel::fsutil::atomic_write(path, loaded.text.as_bytes())?;
    emit(&Initialised { path: path.clone(), name, runs: loaded.plan.runs.len(), flops: loaded.plan.total_flops }, args.json)
}

pub fn plan(args: PlanArgs) -> anyhow::Result<u8> {
    emit(&LoadedSweep::read(&args.sweep)?.plan, args.json)
}

/// The executor the command line asks for (Slurm's: the sweep file's [slurm] block under the flags).
fn executor(args: &RunArgs, loaded: &LoadedSweep) -> anyhow::Result<Box<dyn Executor>> {
    if args.executor == ExecutorKind::Local {
        let devices = parse_devices(&args.devices)?;
        let on_gpus = devices.iter().any(|&d| d != DeviceSpec::Cpu);
        return Ok(Box::new(LocalExecutor::new(ExecOptions {
            parallel: args.parallel,
            runs_per_device: args.runs_per_device.unwrap_or(ExecOptions::DEFAULT_RUNS_PER_DEVICE),
            max_retries: args.max_retries.unwrap_or(ExecOptions::DEFAULT_MAX_RETRIES),
            worker: this_binary()?,
            workers: args.workers.map_or(if on_gpus { Workers::Persistent } else { Workers::PerRun }, WorkerMode::workers),
            kernel_cache: args.kernel_cache.clone(),
            devices,
            quiet: args.quiet,
        })));
    }
    let flags = SlurmSpec {
        max_requeues: args.max_retries.map(|r| r as u32),
        runs_per_device: args.runs_per_device.map(|k| u32::try_from(k).unwrap_or(u32::MAX)),
        ..args.slurm.clone()
    };
    Ok(Box::new(SlurmExecutor::new(SlurmOptions {
        spec: loaded.spec.slurm.clone().unwrap_or_default().merged(&flags)?,
        worker: this_binary()?,
        dry_run: args.submit.dry_run,
        wait: args.submit.wait,
        kernel_cache: args.kernel_cache.clone(),
        workers: args.workers.map(WorkerMode::workers),
        quiet: args.quiet,
    })))
}

/// Exit code: 0, or 128 + the signal that stopped the sweep (`cancel` counts as SIGTERM); an
/// error when runs failed.
pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    if args.adaptive {
        return run_adaptive(&args);
    }
    let loaded = LoadedSweep::read(&args.sweep)?;
    if args.submit.dry_run && args.executor == ExecutorKind::Local {
        return emit(&windtunnel::sweep::dry_run(&loaded, &args.out)?, args.json);
    }
    let out = windtunnel::sweep::run(&loaded, &args.out, &*executor(&args, &loaded)?)?;
    let (s, dir) = (&out.exec, out.dir.display());
    match &out.table {
        Some(t) => windtunnel::stderr_line!("{dir}: {s}; {} ({} rows)", t.table.display(), t.rows),
        None => windtunnel::stderr_line!("{dir}: {s}"),
    }
    out.table.iter().flat_map(|t| &t.warnings).for_each(|w| windtunnel::stderr_line!("warning: {w}"));
    if let Some(code) = stopped(s, &out.dir)? {
        return Ok(code);
    }
    if s.submitted.as_ref().is_some_and(|sub| !sub.dry_run) && !s.waited {
        windtunnel::stderr_line!("watch it with `windtunnel status {dir}`; stop it with `windtunnel cancel {dir}`");
    }
    if args.json {
        return super::emit_json(&out);
    }
    Ok(0)
}

/// `run --adaptive`: rounds of runs chosen by what they teach per FLOP; exit codes as `run`'s.
fn run_adaptive(args: &RunArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        args.executor == ExecutorKind::Local || (args.submit.wait && !args.submit.dry_run),
        "--adaptive with --executor slurm needs --wait (each round's choice needs the last round's losses), and cannot be a --dry-run"
    );
    let slots = match args.executor {
        ExecutorKind::Local => args.parallel.unwrap_or(parse_devices(&args.devices)?.len() * args.runs_per_device.unwrap_or(1)),
        ExecutorKind::Slurm => args.parallel.unwrap_or(4),
    };
    let loaded = LoadedSweep::read(&args.sweep)?;
    let out = windtunnel::adaptive::sweep::run(&loaded, &args.out, &*executor(args, &loaded)?, slots, args.quiet)?;
    if let Some(code) = stopped(&out.exec, &out.dir)? {
        return Ok(code);
    }
    emit(&out, args.json)
}

/// How `run` ends when it did not finish cleanly: 128 + the signal that stopped it (`cancel`
/// counts as SIGTERM), or an error when runs failed; `None` otherwise.
fn stopped(s: &windtunnel::sweep::executor::ExecReport, dir: &std::path::Path) -> anyhow::Result<Option<u8>> {
    if let Some(sig) = s.stopped_by_signal {
        let why = if s.cancelled { "cancelled by `windtunnel cancel`".to_string() } else { format!("stopped by signal {sig}") };
        windtunnel::stderr_line!("{}: {why}; run the same command again to resume", dir.display());
        return Ok(Some(windtunnel::process::exit_interrupted(sig)));
    }
    anyhow::ensure!(s.failed == 0, "{} run(s) failed; see their worker.log in {}", s.failed, SweepDir::new(dir).runs().display());
    Ok(None)
}

/// A sweep's status: the files' view, and an adaptive sweep's rounds.
#[derive(Serialize)]
struct StatusView {
    #[serde(flatten)]
    status: windtunnel::sweep::status::SweepStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    adaptive: Option<windtunnel::adaptive::sweep::AdaptiveRecord>,
}

impl std::fmt::Display for StatusView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        match &self.adaptive {
            Some(a) => write!(f, "{a}"),
            None => Ok(()),
        }
    }
}

pub fn status(args: DirArgs) -> anyhow::Result<u8> {
    let sweep = SweepDir::open(&args.dir);
    let status = windtunnel::sweep::status(&sweep)?;
    let adaptive = windtunnel::adaptive::sweep::AdaptiveRecord::read(&sweep)?;
    emit(&StatusView { status, adaptive }, args.json)
}

/// What `cancel` stopped, one line per executor.
#[derive(Serialize)]
#[serde(transparent)]
struct Cancelled(Vec<CancelReport>);

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|c| writeln!(f, "{}", c.message))
    }
}

pub fn cancel(args: DirArgs) -> anyhow::Result<u8> {
    emit(&Cancelled(windtunnel::sweep::cancel(&SweepDir::open(&args.dir))?), args.json)
}

/// `collect`'s summary line, and its warnings on stderr.
#[derive(Serialize)]
#[serde(transparent)]
struct Collected(windtunnel::sweep::collect::CollectSummary);

impl std::fmt::Display for Collected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.0;
        write!(f, "wrote {} and {} ({} rows; {} runs not finished)", s.table.display(), s.parquet.display(), s.rows, s.unfinished)
    }
}

pub fn collect(args: DirArgs) -> anyhow::Result<u8> {
    let summary = windtunnel::sweep::collect::collect(&SweepDir::open(&args.dir))?;
    summary.warnings.iter().for_each(|w| windtunnel::stderr_line!("warning: {w}"));
    emit(&Collected(summary), args.json)
}
