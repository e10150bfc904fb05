//! Sweeps: the sweep file ([`spec`]), the run graph with WSD trunks and branches ([`plan`]), the
//! local executor ([`exec`]), and the status and results table read back from the files
//! ([`collect`]).

pub mod collect;
pub mod exec;
pub mod plan;
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
    let table = collect::collect(&dir)?;
    Ok(SweepOutcome { dir, exec: summary, table })
}
