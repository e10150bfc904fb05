//! Where the fits' observations come from: a sweep directory (its runs' files, typed once by the
//! results table, writing nothing), a folder holding a `table.csv`, a CSV or Parquet file, or run
//! directories' training curves; and the fit commands that take such a path (`fit law`, `fit lr`,
//! `fit batch`), which read here and hand typed observations to the mathematics in `fit`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::fit::input::Table;
use crate::fit::observation::Observations;
use crate::fit::report::{fit_law_on, LawDefinition, LawReport};
use crate::fit::scans::{curves_of_table, fit_batch_points, fit_lr_on, BatchColumns, BatchReport, LrColumns, LrReport};
use crate::fit::transfer::CurvePoint;
use crate::layout::{RunDir, SweepDir};
use crate::sweep::collect::ResultsTable;
use crate::train::log::{read_metrics, read_status, RunState};
use crate::train::run::RunRecord;

/// The observations at `path`: a sweep directory (its results table, built from its runs' files
/// without writing anything), a directory holding `table.csv`, or a CSV or Parquet file.
pub fn observations(path: &Path) -> anyhow::Result<Observations> {
    let sweep = SweepDir::open(path);
    if sweep.exists() {
        return of_sweep(&sweep);
    }
    if !path.is_dir() {
        return Table::observations(path);
    }
    let table = sweep.table_csv();
    if !table.exists() {
        if let Some(which) = SweepDir::sweeps_inside(path) {
            anyhow::bail!(which);
        }
        anyhow::bail!("{} is neither a sweep directory nor holds a table.csv (a sweep is the folder `run` names: OUT/<sweep name>)", path.display());
    }
    Table::observations(&table)
}

/// A sweep's runs as observations, from its runs' files.
pub fn of_sweep(sweep: &SweepDir) -> anyhow::Result<Observations> {
    ResultsTable::read(sweep)?.observations(sweep.root())
}

/// `fit law`: a fit definition on the observations at its `input`.
pub fn fit_law(def: &LawDefinition) -> anyhow::Result<LawReport> {
    fit_law_on(def, &observations(&def.input)?)
}

/// `fit lr`: learning-rate transfer over the scans at `input`.
pub fn fit_lr(input: &Path, columns: &LrColumns, seed: u64) -> anyhow::Result<LrReport> {
    fit_lr_on(&observations(input)?, columns, seed)
}

/// `fit batch`: MiniCPM's batch-size law from the curves at `input`; DeepSeek's laws too when a
/// runs table (FLOPs, learning rate, batch size and loss columns) is given.
pub fn fit_batch(input: &Path, eval: bool, runs_table: Option<&Path>, columns: &BatchColumns) -> anyhow::Result<BatchReport> {
    let runs = runs_table.map(Table::observations).transpose()?;
    fit_batch_points(input, batch_curves(input, eval, columns)?, runs.as_ref().map(|t| (t, columns)))
}

/// Training curves of every run directory under `dir` (any folder holding run.json and
/// metrics.jsonl), or of a CSV table with batch size, tokens and loss columns.
pub fn batch_curves(input: &Path, eval: bool, columns: &BatchColumns) -> anyhow::Result<Vec<CurvePoint>> {
    if input.is_dir() {
        let points = curves_of_runs(&run_dirs(input), eval)?;
        anyhow::ensure!(!points.is_empty(), "{}: no run directories with metrics found", input.display());
        return Ok(points);
    }
    curves_of_table(&Table::observations(input)?, columns)
}

/// Training curves of the given run directories (diverged runs left out).
pub fn curves_of_runs(runs: &[PathBuf], eval: bool) -> anyhow::Result<Vec<CurvePoint>> {
    let mut points = Vec::new();
    for run in runs {
        let dir = RunDir::new(run);
        if !dir.record().exists() {
            continue;
        }
        let record: RunRecord =
            serde_json::from_str(&std::fs::read_to_string(dir.record())?).with_context(|| format!("{} is malformed", dir.record().display()))?;
        if read_status(run)?.is_some_and(|s| s.state == RunState::Diverged) {
            continue;
        }
        let batch_tokens = record.tokens_per_step as f64;
        for m in read_metrics(&dir.metrics())? {
            let loss = if eval { m.eval_loss } else { Some(m.train_loss) };
            if let Some(loss) = loss.filter(|l| l.is_finite()) {
                points.push(CurvePoint { batch_size: batch_tokens, tokens: m.tokens as f64, loss });
            }
        }
    }
    Ok(points)
}

/// Folders under `dir` (to two levels) that hold a run.
pub fn run_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let visit = |d: &Path| {
        if let Ok(entries) = std::fs::read_dir(d) {
            let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
            entries.sort();
            entries
        } else {
            Vec::new()
        }
    };
    let is_run = |d: &Path| RunDir::new(d).record().exists();
    for a in visit(dir) {
        if is_run(&a) {
            out.push(a);
        } else {
            out.extend(visit(&a).into_iter().filter(|b| is_run(b)));
        }
    }
    out
}
