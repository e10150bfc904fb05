//! Charts of a sweep (`windtunnel plot DIR`) and of a coordinate check
//! (`windtunnel plot --coord-check FILE.json`).
//!
//! `SweepData::load` gathers what the charts are drawn from — the plan, every run's metrics, the
//! results table (built in memory: plotting writes nothing but the charts), and the fits (the data-model law is refitted from the definition saved in
//! `DIR/fits/law.json` when there is one, else with `fit law`'s defaults and 200 bootstrap
//! resamples, so the bands have their samples). `charts.rs` turns that into `Figure`s, and
//! `figure.rs` draws them to SVG or PNG.

pub mod charts;
pub mod figure;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::fit::allocation::{self, AllocationOptions, AllocationReport, Curve, CurveColumns, CurveKind};
use crate::fit::commands::{fit_batch_sweep, fit_lr_on, BatchReport, LrColumns, LrReport};
use crate::fit::input::Table;
use crate::fit::report::{fit_law_on, LawReport};
use crate::fit::saved;
use crate::layout::SweepDir;
use crate::sweep::plan::{Plan, PlannedRun, RunKind};
use crate::sweep::status::read_plan;
use crate::train::coord_check::CoordCheckResult;
use crate::train::log::{read_metrics, read_status, MetricsRecord, RunState};
use figure::Figure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Svg,
    Png,
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Svg => "svg",
            Self::Png => "png",
        }
    }
}

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

/// Everything the charts and the report of a sweep are drawn from. Each fit is either its report
/// or the reason it could not be made (too few points, no learning-rate scan, one batch size).
pub struct SweepData {
    pub dir: PathBuf,
    pub plan: Plan,
    pub runs: Vec<RunCurve>,
    pub oracle_loss: Option<f64>,
    pub law: Result<LawReport, String>,
    pub lr: Result<LrReport, String>,
    pub batch: Result<BatchReport, String>,
}

impl SweepData {
    /// Read a sweep directory (writing nothing: the results table is built in memory).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let sweep = SweepDir::new(dir);
        let plan = read_plan(&sweep)?;
        // The results table, once: every finished run must be whole (its metrics end in its final
        // evaluation) before any chart is drawn, and the fits read the same rows.
        let table = Table::of_sweep(&sweep)?;
        let mut runs = Vec::new();
        for run in &plan.runs {
            let run_dir = sweep.run(&run.id);
            let metrics_path = run_dir.metrics();
            let metrics = if metrics_path.exists() { read_metrics(&metrics_path)? } else { Vec::new() };
            let state = read_status(run_dir.root())?.map(|s| s.state);
            runs.push(RunCurve { run: run.clone(), state, metrics });
        }
        let oracle_loss = runs.iter().flat_map(|r| r.metrics.iter()).find_map(|m| m.oracle_loss);
        let law = saved::law_definition(&sweep).and_then(|def| fit_law_on(&def, &table)).map_err(|e| format!("{e:#}"));
        let lr = fit_lr_on(&table, &LrColumns::results_table(), 0).map_err(|e| format!("{e:#}"));
        let batch = fit_batch_sweep(dir).map_err(|e| format!("{e:#}"));
        Ok(Self { dir: dir.to_path_buf(), plan, runs, oracle_loss, law, lr, batch })
    }

    /// `fit allocation` with these options, on the runs of `grid` (default: the law's grid, else all).
    pub fn allocation_with(&self, options: &AllocationOptions, grid: Option<&str>) -> AllocationReport {
        let law_grid = self.law.as_ref().ok().and_then(|l| l.definition.grid.clone());
        let (curves, kind) = curves(&self.runs, grid.or(law_grid.as_deref()));
        allocation::allocation(self.dir.clone(), &curves, kind, self.law.as_ref().map_err(Clone::clone), options)
    }

    /// Every chart the data supports, by file stem; charts it cannot support give the reason.
    pub fn charts(&self) -> Vec<(&'static str, Result<Figure, String>)> {
        vec![
            ("loss-curves", charts::loss_curves(self)),
            ("lr-transfer", charts::lr_transfer(self)),
            ("law-tokens", charts::law_tokens(self)),
            ("law-compute", charts::law_compute(self)),
            ("allocation", charts::allocation(self)),
            ("allocation-approaches", charts::allocation_approaches(&self.plan.name, &self.allocation_with(&AllocationOptions::default(), None))),
            ("residuals", charts::residuals(self)),
            ("holdout", charts::holdout(self)),
            ("batch-size", charts::batch_size(self)),
        ]
    }
}

/// The finished runs' evaluation curves of `grid` (all grids when `None`): where there are WSD
/// branches, the branches alone (as the law's points are: a trunk's final loss is at a constant
/// learning rate, not annealed), else every run.
fn curves(runs: &[RunCurve], grid: Option<&str>) -> (Vec<Curve>, CurveKind) {
    let done: Vec<&RunCurve> = runs.iter().filter(|r| r.state == Some(RunState::Done) && grid.is_none_or(|g| r.run.grid == g)).collect();
    let wsd = done.iter().any(|r| r.run.kind == RunKind::Branch);
    let curves = done
        .into_iter()
        .filter(|r| !wsd || r.run.kind == RunKind::Branch)
        .map(|r| Curve { run: r.run.id.clone(), n: r.run.n as f64, points: r.eval_points() })
        .filter(|c| !c.points.is_empty())
        .collect();
    (curves, if wsd { CurveKind::WsdDecays } else { CurveKind::TrainingRuns })
}

/// A chart written, or left out with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct PlotOutcome {
    pub chart: String,
    pub path: Option<PathBuf>,
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlotSummary {
    pub dir: PathBuf,
    pub charts: Vec<PlotOutcome>,
}

impl std::fmt::Display for PlotSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.charts {
            if let Some(p) = &c.path {
                writeln!(f, "wrote {}", p.display())?;
            }
        }
        let skipped = self.charts.iter().filter(|c| c.path.is_none()).filter_map(|c| Some((c.chart.as_str(), c.skipped.as_deref()?)));
        for line in skipped_lines(skipped) {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// "no A, B charts: why" lines for charts left out, one line per reason.
pub fn skipped_lines<'a>(skipped: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for (chart, why) in skipped {
        match reasons.iter_mut().find(|(r, _)| *r == why) {
            Some((_, charts)) => charts.push(chart),
            None => reasons.push((why, vec![chart])),
        }
    }
    reasons.into_iter().map(|(why, charts)| format!("no {} chart{}: {why}", charts.join(", "), if charts.len() > 1 { "s" } else { "" })).collect()
}

fn write_figure(figure: &Figure, path: &Path, format: ImageFormat) -> anyhow::Result<()> {
    let bytes = match format {
        ImageFormat::Svg => figure.to_svg()?.into_bytes(),
        ImageFormat::Png => figure.to_png()?,
    };
    crate::fsutil::atomic_write(path, &bytes)
}

/// `windtunnel plot DIR`: every chart the sweep's data supports, into `DIR/plots/`.
pub fn plot_sweep(dir: &Path, format: ImageFormat) -> anyhow::Result<PlotSummary> {
    let data = SweepData::load(dir)?;
    let out = SweepDir::new(dir).plots();
    let mut charts = Vec::new();
    for (name, figure) in data.charts() {
        match figure {
            Ok(figure) => {
                let path = out.join(format!("{name}.{}", format.extension()));
                write_figure(&figure, &path, format)?;
                charts.push(PlotOutcome { chart: name.to_string(), path: Some(path), skipped: None });
            }
            Err(why) => charts.push(PlotOutcome { chart: name.to_string(), path: None, skipped: Some(why) }),
        }
    }
    Ok(PlotSummary { dir: dir.to_path_buf(), charts })
}

/// `windtunnel fit allocation --input DIR`: Chinchilla's three approaches on a sweep, with their
/// chart in `DIR/plots/allocation-approaches.<format>`.
pub fn allocation_sweep(dir: &Path, options: &AllocationOptions, grid: Option<&str>, format: ImageFormat) -> anyhow::Result<AllocationReport> {
    anyhow::ensure!(SweepDir::new(dir).exists(), "{}: not a sweep directory; `fit allocation` reads a sweep's runs (their evaluation curves)", dir.display());
    let data = SweepData::load(dir)?;
    let mut report = data.allocation_with(options, grid);
    if let Ok(figure) = charts::allocation_approaches(&data.plan.name, &report) {
        let path = SweepDir::new(dir).plots().join(format!("allocation-approaches.{}", format.extension()));
        write_figure(&figure, &path, format)?;
        report.chart = Some(path);
    }
    Ok(report)
}

/// `windtunnel fit allocation --input TABLE`: the three approaches on a long-format table of
/// evaluation curves (approach 3 fitted to each run's last row), the chart at `chart` if given.
pub fn allocation_table(
    path: &Path,
    columns: &CurveColumns,
    options: &AllocationOptions,
    chart: Option<&Path>,
    format: ImageFormat,
) -> anyhow::Result<AllocationReport> {
    let table = Table::read(path)?;
    let curves = allocation::curves_of_table(&table, columns)?;
    let law = allocation::law_of_finals(&curves, path, options.bootstrap, options.seed).map_err(|e| format!("{e:#}"));
    let mut report = allocation::allocation(path.to_path_buf(), &curves, CurveKind::TrainingRuns, law.as_ref().map_err(Clone::clone), options);
    if let Some(out) = chart {
        let name = path.file_stem().map_or("curves".into(), |s| s.to_string_lossy().to_string());
        let figure = charts::allocation_approaches(&name, &report).map_err(anyhow::Error::msg)?;
        write_figure(&figure, out, format)?;
        report.chart = Some(out.to_path_buf());
    }
    Ok(report)
}

/// `windtunnel plot --coord-check FILE.json`: the coordinate check, beside the file unless `out`.
pub fn plot_coord_check(file: &Path, format: ImageFormat, out: Option<&Path>) -> anyhow::Result<PlotSummary> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let result: CoordCheckResult = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a coordinate check; make one with `windtunnel coord-check --json > {}`", file.display(), file.display()))?;
    let figure = charts::coord_check(&result).map_err(|why| anyhow::anyhow!("{}: {why}", file.display()))?;
    let path = match out {
        Some(p) => p.to_path_buf(),
        None => file.with_extension(format.extension()),
    };
    write_figure(&figure, &path, format)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(PlotSummary { dir, charts: vec![PlotOutcome { chart: "coord-check".into(), path: Some(path), skipped: None }] })
}
