//! `windtunnel plan`, `run`, `status`, `cancel` and `collect`.

use clap::Args;
use serde::Serialize;

use super::{emit, this_binary};
use windtunnel::layout::SweepDir;
use windtunnel::sweep::executor::{CancelReport, ExecFlags, Executor, RunOptions, SubmitFlags};
use windtunnel::sweep::loaded::LoadedSweep;
use windtunnel::sweep::registry::{self, Registered};
use windtunnel::sweep::spec::SlurmSpec;

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
    #[command(flatten)]
    exec: ExecFlags,
    /// Print what was done as JSON on stdout (--adaptive: the rounds and the answer).
    #[arg(long)]
    json: bool,
    /// Train only the runs of the sweep file's [adaptive] grid that teach most about its target
    /// per FLOP, round by round, until the target is known well enough or max_flops are spent.
    #[arg(long)]
    adaptive: bool,
    #[arg(long, value_enum, default_value = "local", help = registry::executor_help())]
    executor: Registered,
    #[command(flatten)]
    slurm: Box<SlurmSpec>,
    #[command(flatten)]
    submit: SubmitFlags,
}

#[derive(Args)]
pub struct DirArgs {
    /// The sweep directory (results/<name>), or the folder `run --out` was given when it holds
    /// that one sweep.
    dir: std::path::PathBuf,
    #[arg(long)]
    json: bool,
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

/// Exit code: 0, or 128 + the signal that stopped the sweep (`cancel` counts as SIGTERM); an
/// error when runs failed.
pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let RunArgs { sweep, out, exec, json, adaptive, executor, slurm, submit } = args;
    let loaded = LoadedSweep::read(&sweep)?;
    let options = RunOptions { exec, slurm: *slurm, submit, adaptive, worker: this_binary()? };
    if adaptive {
        return run_adaptive(&loaded, &out, &*(executor.for_run)(&options, &loaded)?, options.exec.quiet, json);
    }
    if submit.dry_run && !executor.executes_dry_runs {
        return emit(&windtunnel::sweep::dry_run(&loaded, &out)?, json);
    }
    let out = windtunnel::sweep::run(&loaded, &out, &*(executor.for_run)(&options, &loaded)?)?;
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
    if json {
        return super::emit_json(&out);
    }
    Ok(0)
}

/// `run --adaptive`: rounds of runs chosen by what they teach per FLOP, as many per round as the
/// executor trains at once; exit codes as `run`'s.
fn run_adaptive(loaded: &LoadedSweep, out_root: &std::path::Path, executor: &dyn Executor, quiet: bool, json: bool) -> anyhow::Result<u8> {
    let out = windtunnel::adaptive::sweep::run(loaded, out_root, executor, executor.slots(), quiet)?;
    if let Some(code) = stopped(&out.exec, &out.dir)? {
        return Ok(code);
    }
    emit(&out, json)
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
