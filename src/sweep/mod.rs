//! Sweeps: the sweep file ([`spec`]), the run graph with WSD trunks and branches ([`plan`]), the
//! local executor ([`exec`]), and the status and results table read back from the files
//! ([`collect`]).

pub mod collect;
pub mod exec;
pub mod plan;
pub mod progress;
pub mod slurm;
pub mod spec;

use std::path::{Path, PathBuf};

use anyhow::Context;

/// What `windtunnel run` did.
pub struct SweepOutcome {
    pub dir: PathBuf,
    pub exec: exec::ExecSummary,
    pub table: collect::CollectSummary,
}

/// `windtunnel run`: plan the sweep file, take the directory's lock, write the plan and the run
/// configs, execute what is not finished, and collect the table.
pub fn run(sweep_file: &Path, out_root: &Path, options: &exec::ExecOptions) -> anyhow::Result<SweepOutcome> {
    let text = std::fs::read_to_string(sweep_file).with_context(|| format!("cannot read sweep file {}", sweep_file.display()))?;
    let spec = spec::SweepSpec::parse(&text, sweep_file)?;
    let plan = plan::plan(&spec).with_context(|| format!("planning {}", sweep_file.display()))?;
    let dir = exec::sweep_dir(&spec, out_root);
    let _lock = exec::lock(&dir)?;
    exec::materialise(&dir, &text, &plan)?;
    let summary = exec::execute(&dir, &plan, options)?;
    let table = collect::collect(&dir).with_context(|| {
        format!(
            "the sweep ran ({} done, {} diverged, {} failed, {} kept from before) but its table could not be written",
            summary.done, summary.diverged, summary.failed, summary.skipped_already_done
        )
    })?;
    Ok(SweepOutcome { dir, exec: summary, table })
}

/// What `windtunnel run --executor slurm` did.
pub struct SlurmOutcome {
    pub dir: PathBuf,
    pub submitted: slurm::SlurmSummary,
    /// With `--wait`: the sweep once nothing is left in Slurm, and its table.
    pub finished: Option<(collect::SweepStatus, collect::CollectSummary)>,
}

/// `windtunnel run --executor slurm`: plan and materialise as locally, then submit what is
/// unfinished to Slurm (the `[slurm]` block, overridden by the command line); with `wait`, stay
/// until Slurm has nothing left of the sweep and collect the table.
pub fn run_slurm(sweep_file: &Path, out_root: &Path, options: &slurm::SlurmOptions) -> anyhow::Result<SlurmOutcome> {
    let text = std::fs::read_to_string(sweep_file).with_context(|| format!("cannot read sweep file {}", sweep_file.display()))?;
    let spec = spec::SweepSpec::parse(&text, sweep_file)?;
    let plan = plan::plan(&spec).with_context(|| format!("planning {}", sweep_file.display()))?;
    let dir = exec::sweep_dir(&spec, out_root);
    let options = slurm::SlurmOptions { spec: spec.slurm.clone().unwrap_or_default().merged(&options.spec), ..options.clone() };
    let submitted = {
        let _lock = exec::lock(&dir)?;
        exec::materialise(&dir, &text, &plan)?;
        slurm::submit(&dir, &plan, &options)?
    };
    let finished = if options.wait && !options.dry_run {
        let status = slurm::wait(&dir, &plan, options.quiet)?;
        Some((status, collect::collect(&dir)?))
    } else {
        None
    };
    Ok(SlurmOutcome { dir, submitted, finished })
}
