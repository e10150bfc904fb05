//! Charts of a sweep (`windtunnel plot DIR`) and of a coordinate check
//! (`windtunnel plot --coord-check FILE.json`).
//!
//! The charts of a sweep are drawn from its [`SweepResults`] (plan, curves, table and fits, read
//! once; plotting writes nothing but the charts). `charts.rs` turns them into `Figure`s, and
//! `figure.rs` draws those to SVG or PNG.

pub mod charts;
pub mod figure;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::fit::allocation::{self, AllocationOptions, AllocationReport, CurveColumns, CurveKind};

use crate::layout::SweepDir;
use crate::results::SweepResults;
use crate::train::coord_check::CoordCheckResult;
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

/// Every chart a sweep's results support, by file stem; charts it cannot support give the reason
/// (an adaptive sweep's rounds only for an adaptive sweep).
pub fn sweep_charts(data: &SweepResults) -> Vec<(&'static str, Result<Figure, String>)> {
    let adaptive = data.adaptive.is_some().then(|| ("adaptive", charts::adaptive(data)));
    let all = vec![
        ("loss-curves", charts::loss_curves(data)),
        ("lr-transfer", charts::lr_transfer(data)),
        ("law-tokens", charts::law_tokens(data)),
        ("law-compute", charts::law_compute(data)),
        ("allocation", charts::allocation(data)),
        ("allocation-approaches", charts::allocation_approaches(&data.plan.name, &data.allocation_with(&AllocationOptions::default(), None))),
        ("residuals", charts::residuals(data)),
        ("holdout", charts::holdout(data)),
        ("batch-size", charts::batch_size(data)),
        ("curve-law", data.curve().as_ref().map_err(ToString::to_string).and_then(|c| charts::curve_law(&data.plan.name, c))),
    ];
    all.into_iter().chain(adaptive).collect()
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
    /// The definition the law charts fitted (`LawDefinition::describe`), when there is a law.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub law_definition: Option<String>,
    /// A saved definition other than the default, and what saved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_fit: Option<String>,
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
        if let Some(d) = &self.law_definition {
            writeln!(f, "the law charts' definition: {d}")?;
        }
        if let Some(note) = &self.saved_fit {
            writeln!(f, "{note}")?;
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

/// `windtunnel plot DIR`: every chart the sweep's data supports, into `DIR/plots/`; the law
/// charts fit the definition `law` chooses.
pub fn plot_sweep(dir: &Path, format: ImageFormat, law: crate::results::saved::LawChoice) -> anyhow::Result<PlotSummary> {
    let data = SweepResults::load(dir)?.with_law(law);
    let out = SweepDir::new(dir).plots();
    let mut charts = Vec::new();
    for (name, figure) in sweep_charts(&data) {
        match figure {
            Ok(figure) => {
                let path = out.join(format!("{name}.{}", format.extension()));
                write_figure(&figure, &path, format)?;
                charts.push(PlotOutcome { chart: name.to_string(), path: Some(path), skipped: None });
            }
            Err(why) => charts.push(PlotOutcome { chart: name.to_string(), path: None, skipped: Some(why) }),
        }
    }
    let (law_definition, saved_fit) = match data.law() {
        Ok(l) => (Some(l.definition.describe()), l.saved_fit.clone()),
        Err(_) => (None, None),
    };
    Ok(PlotSummary { dir: dir.to_path_buf(), charts, law_definition, saved_fit })
}

/// `windtunnel fit allocation --input DIR`: Chinchilla's three approaches on a sweep, with their
/// chart in `DIR/plots/allocation-approaches.<format>`.
pub fn allocation_sweep(dir: &Path, options: &AllocationOptions, grid: Option<&str>, format: ImageFormat) -> anyhow::Result<AllocationReport> {
    anyhow::ensure!(SweepDir::new(dir).exists(), "{}: not a sweep directory; `fit allocation` reads a sweep's runs (their evaluation curves)", dir.display());
    let data = SweepResults::load(dir)?;
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
    let table = crate::results::inputs::observations(path)?;
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

/// `windtunnel fit curve`: the curve law's chart (see [`charts::curve_law`]) into `path`.
pub fn write_curve_chart(name: &str, report: &crate::fit::curve::report::CurveReport, path: &Path, format: ImageFormat) -> anyhow::Result<()> {
    let figure = charts::curve_law(name, report).map_err(anyhow::Error::msg)?;
    write_figure(&figure, path, format)
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
    Ok(PlotSummary { dir, charts: vec![PlotOutcome { chart: "coord-check".into(), path: Some(path), skipped: None }], law_definition: None, saved_fit: None })
}
