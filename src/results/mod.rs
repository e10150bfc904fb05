//! A sweep's results, in one place: its plan, every run's logged curve, the results table, and the
//! fits made from them. [`SweepResults::load`] reads the files once (writing nothing); each fit is
//! computed the first time it is asked for and kept, so the charts, the report, `serve` and
//! `export` read the same fits without refitting, and an analysis that needs none of them pays for
//! none. The mathematics lives in [`crate::fit`]; this layer only knows where a sweep keeps its
//! points and which fit definition the user saved.
//!
//! The fits of a sweep:
//! - the data-model law, from the definition `fit law` kept in `DIR/fits/law.json` when there is
//!   one (so every output shows the fit the user made, with its `--holdout` or `--drop-highest`),
//!   else `fit law`'s defaults, with 200 bootstrap resamples so the charts have their bands;
//! - learning-rate transfer, over the table's learning-rate scans;
//! - the batch-size law, over the curves of the first grid that spans three or more batch sizes;
//! - the curve law over every evaluation of every run ([`curves`]), and from it the data-model
//!   law on trunks' predicted decays ([`SweepResults::law_from_curves`]);
//! - Chinchilla's three approaches to the allocation ([`SweepResults::allocation_with`]);
//! - an adaptive sweep's rounds (`adaptive.json`), and the same target fitted on the whole grid
//!   once the whole grid has been trained ([`SweepResults::full_grid_target`]).
//!
//! Each fit is its report or the reason it could not be made (too few points, no learning-rate
//! scan, one batch size).

pub mod curves;
pub mod inputs;
pub mod mixture;
pub mod saved;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::adaptive::sweep::AdaptiveRecord;
use crate::fit::allocation::{self, AllocationOptions, AllocationReport, Curve, CurveKind};
use crate::fit::observation::Observations;
use crate::fit::report::{fit_law_on, LawReport};
use crate::fit::scans::{fit_batch_points, fit_lr_on, BatchReport, LrColumns, LrReport};
use crate::fit::transfer::CurvePoint;
use crate::layout::SweepDir;
use crate::sweep::plan::{Plan, PlannedRun, RunKind};
use crate::sweep::status::read_plan;
use crate::train::log::{read_metrics, read_status, MetricsRecord, RunState};

/// One run of the sweep with its logged metrics.
#[derive(Debug, Clone)]
pub struct RunCurve {
    pub run: PlannedRun,
    pub state: Option<RunState>,
    pub metrics: Vec<MetricsRecord>,
}

impl RunCurve {
    /// (tokens, eval loss) of every finite evaluation.
    pub fn eval_points(&self) -> Vec<(f64, f64)> {
        self.metrics.iter().filter_map(|m| m.eval_loss.filter(|l| l.is_finite()).map(|l| (m.tokens as f64, l))).collect()
    }
}

/// A fit, or why it could not be made.
pub type Fitted<T> = Result<T, FitError>;

/// Why one of a sweep's fits could not be made: which fit, and the reason (too few points, no
/// learning-rate scan, one batch size). Shown as the reason alone, where the fit would have been.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FitError {
    /// The data-model law L(N, D).
    Law(String),
    /// Learning-rate transfer across width.
    LearningRate(String),
    /// The batch-size law.
    BatchSize(String),
    /// The schedule-aware curve law.
    CurveLaw(String),
}

impl FitError {
    /// The reason, without the fit it belongs to.
    pub fn reason(&self) -> &str {
        match self {
            Self::Law(r) | Self::LearningRate(r) | Self::BatchSize(r) | Self::CurveLaw(r) => r,
        }
    }
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for FitError {}

/// Everything a sweep's outputs are made from.
pub struct SweepResults {
    pub dir: PathBuf,
    pub plan: Plan,
    /// Every planned run, in the plan's order, with what it has logged so far.
    pub runs: Vec<RunCurve>,
    /// The results table (one observation per finished run), built in memory from the runs' files.
    pub table: Observations,
    /// The synthetic language's exact loss floor, when the sweep trains on it.
    pub oracle_loss: Option<f64>,
    /// The rounds of an adaptive sweep (`run --adaptive`).
    pub adaptive: Option<AdaptiveRecord>,
    /// Which definition [`SweepResults::law`] fits (by default the one `fit law` saved).
    law_choice: saved::LawChoice,
    law: OnceLock<Fitted<LawReport>>,
    lr: OnceLock<Fitted<LrReport>>,
    batch: OnceLock<Fitted<BatchReport>>,
    curve: OnceLock<Fitted<crate::fit::curve::report::CurveReport>>,
}

impl SweepResults {
    /// Read a sweep directory (writing nothing). Every finished run must be whole (its metrics end
    /// in its final evaluation), or this says which file to repair.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let sweep = SweepDir::new(dir);
        let plan = read_plan(&sweep)?;
        let table = inputs::of_sweep(&sweep)?;
        let mut runs = Vec::new();
        for run in &plan.runs {
            let run_dir = sweep.run(&run.id);
            let metrics_path = run_dir.metrics();
            let metrics = if metrics_path.exists() { read_metrics(&metrics_path)? } else { Vec::new() };
            let state = read_status(run_dir.root())?.map(|s| s.state);
            runs.push(RunCurve { run: run.clone(), state, metrics });
        }
        let oracle_loss = runs.iter().flat_map(|r| r.metrics.iter()).find_map(|m| m.oracle_loss);
        let adaptive = AdaptiveRecord::read(&sweep)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            plan,
            runs,
            table,
            oracle_loss,
            adaptive,
            law_choice: saved::LawChoice::Saved,
            law: OnceLock::new(),
            lr: OnceLock::new(),
            batch: OnceLock::new(),
            curve: OnceLock::new(),
        })
    }

    /// Fit the data-model law as `choice` says (`--fresh`: the default; a command's own flags)
    /// instead of the definition `fit law` saved.
    pub fn with_law(mut self, choice: saved::LawChoice) -> Self {
        self.law_choice = choice;
        self.law = OnceLock::new();
        self
    }

    /// The data-model law (see the module doc for which definition); a saved definition other
    /// than the default is named in the report's `saved_fit`.
    pub fn law(&self) -> &Fitted<LawReport> {
        self.law.get_or_init(|| {
            let sweep = SweepDir::new(&self.dir);
            let fitted = saved::law_definition(&sweep, &self.law_choice).and_then(|(def, note)| {
                let mut report = fit_law_on(&def, &self.table)?;
                report.saved_fit = note.map(|n| n.to_string());
                Ok(report)
            });
            fitted.map_err(|e| FitError::Law(format!("{e:#}")))
        })
    }

    /// The curve law (`fit curve`'s defaults, without the bootstrap) over every finished run;
    /// each run still training is predicted to its end: the final loss it is heading for.
    pub fn curve(&self) -> &Fitted<crate::fit::curve::report::CurveReport> {
        self.curve.get_or_init(|| {
            let options = crate::fit::curve::report::CurveOptions { bootstrap: 0, ..Default::default() };
            crate::fit::curve::report::fit_curves(&self.loss_curves(), &options).map_err(|e| FitError::CurveLaw(format!("{e:#}")))
        })
    }

    /// Learning-rate transfer over the sweep's learning-rate scans.
    pub fn lr(&self) -> &Fitted<LrReport> {
        self.lr.get_or_init(|| fit_lr_on(&self.table, &LrColumns::results_table(), 0).map_err(|e| FitError::LearningRate(format!("{e:#}"))))
    }

    /// The batch-size law: the evaluation curves of the first grid whose runs span three or more
    /// batch sizes (other grids vary other things and would mix models); diverged runs left out.
    pub fn batch(&self) -> &Fitted<BatchReport> {
        self.batch.get_or_init(|| self.fit_batch().map_err(|e| FitError::BatchSize(format!("{e:#}"))))
    }

    fn fit_batch(&self) -> anyhow::Result<BatchReport> {
        for grid in self.plan.grids() {
            let runs: Vec<&RunCurve> = self.runs.iter().filter(|r| r.run.grid == grid).collect();
            let mut sizes: Vec<u64> = runs.iter().map(|r| r.run.config.training.tokens_per_step()).collect();
            sizes.sort();
            sizes.dedup();
            if sizes.len() >= 3 {
                let points = runs
                    .iter()
                    .filter(|r| r.state != Some(RunState::Diverged))
                    .flat_map(|r| {
                        let batch_tokens = r.run.config.training.tokens_per_step() as f64;
                        r.eval_points().into_iter().map(move |(tokens, loss)| CurvePoint { batch_size: batch_tokens, tokens, loss })
                    })
                    .collect();
                return fit_batch_points(&SweepDir::new(&self.dir).runs(), points, None);
            }
        }
        anyhow::bail!("{}: no grid varies training.batch_size over 3 or more values (see sweeps/minicpm-batch-size.toml)", self.dir.display())
    }

    /// An adaptive sweep's target fitted on every run of its grid, with the law's bootstrap
    /// interval, once the whole grid has been trained (`run` without `--adaptive` into the same
    /// folder): what the rounds are measured against. `None` before that.
    pub fn full_grid_target(&self) -> Option<crate::fit::bootstrap::Interval> {
        let record = self.adaptive.as_ref()?;
        let done = self.runs.iter().filter(|r| r.run.grid == record.grid && r.run.kind != RunKind::Trunk && r.state == Some(RunState::Done)).count();
        if record.candidates == 0 || done < record.candidates {
            return None;
        }
        let law = self.law().as_ref().ok()?;
        let values: Vec<f64> = law.bootstrap_laws.iter().map(|l| record.target.value(l)).collect();
        (values.len() >= 20).then(|| crate::fit::bootstrap::Interval::from_samples(record.target.value(&law.fit.law), &values, 0.95))
    }

    /// `fit allocation` with these options, on the runs of `grid` (default: the law's grid, else all).
    pub fn allocation_with(&self, options: &AllocationOptions, grid: Option<&str>) -> AllocationReport {
        let law_grid = self.law().as_ref().ok().and_then(|l| l.definition.grid.clone());
        let (curves, kind) = self.allocation_curves(grid.or(law_grid.as_deref()));
        allocation::allocation(self.dir.clone(), &curves, kind, self.law().as_ref().map_err(ToString::to_string), options)
    }

    /// The finished runs' evaluation curves of `grid` (all grids when `None`): where there are WSD
    /// branches, the branches alone (as the law's points are: a trunk's final loss is at a constant
    /// learning rate, not annealed), else every run.
    pub fn allocation_curves(&self, grid: Option<&str>) -> (Vec<Curve>, CurveKind) {
        let done: Vec<&RunCurve> = self.runs.iter().filter(|r| r.state == Some(RunState::Done) && grid.is_none_or(|g| r.run.grid == g)).collect();
        let wsd = done.iter().any(|r| r.run.kind == RunKind::Branch);
        let curves = done
            .into_iter()
            .filter(|r| !wsd || r.run.kind == RunKind::Branch)
            .map(|r| Curve { run: r.run.id.clone(), n: r.run.n as f64, points: r.eval_points() })
            .filter(|c| !c.points.is_empty())
            .collect();
        (curves, if wsd { CurveKind::WsdDecays } else { CurveKind::TrainingRuns })
    }
}
