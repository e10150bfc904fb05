//! `windtunnel fit lr` and `windtunnel fit batch`: read their points from a table or from run
//! directories, fit, and report.

use crate::layout::RunDir;
use crate::sweep::collect::column;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use serde::Serialize;

use super::input::Table;
use super::transfer::{batch_law, lr_transfer, power_law, BatchLaw, CurvePoint, Line, LrPoint, LrTransfer};
use crate::format::si;
use crate::train::log::{read_metrics, read_status, RunState};
use crate::train::run::RunRecord;

/// Column names for `fit lr` (defaults: the results table's).
#[derive(Debug, Clone)]
pub struct LrColumns {
    pub lr: String,
    pub width: String,
    pub depth: Option<String>,
    pub loss: String,
    /// Group by this column too when present (e.g. `parameterization`: µP and SP side by side).
    pub group: Option<String>,
}

impl LrColumns {
    /// The results table's columns (what `fit lr` defaults to), µP and SP grouped apart.
    pub fn results_table() -> Self {
        Self {
            lr: column::LR.into(),
            width: column::WIDTH.into(),
            depth: Some(column::DEPTH.into()),
            loss: column::FINAL_EVAL_LOSS.into(),
            group: Some(column::PARAMETERIZATION.into()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LrReport {
    pub input: PathBuf,
    pub excluded_not_done: usize,
    /// One transfer analysis per group (e.g. per parameterization, and per value of every other
    /// hyperparameter the scan varies).
    pub groups: Vec<(String, LrTransfer)>,
    /// The hyperparameters the scans differ in besides the learning rate, each a group of its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grouped_by: Vec<String>,
}

/// Learning-rate transfer from a table (rows whose `status` is not `done` are left out).
pub fn fit_lr(input: &Path, columns: &LrColumns, seed: u64) -> anyhow::Result<LrReport> {
    fit_lr_on(&Table::read(input)?, columns, seed)
}

/// Learning-rate transfer from a table already read.
pub fn fit_lr_on(table: &Table, columns: &LrColumns, seed: u64) -> anyhow::Result<LrReport> {
    let lr = table.numbers(&columns.lr)?;
    let width = table.numbers(&columns.width)?;
    let depth = match &columns.depth {
        Some(d) if table.columns.contains(d) => table.numbers(d)?,
        _ => vec![0.0; lr.len()],
    };
    let loss = table.numbers(&columns.loss)?;
    let status = table.columns.iter().position(|c| c == column::STATUS);
    // In a sweep's table the learning-rate scans are plain runs (trunks and branches are WSD grids).
    let kind = table.columns.iter().position(|c| c == column::KIND);
    let group = columns.group.as_ref().and_then(|g| table.columns.iter().position(|c| c == g));
    // In a sweep's table, only grids that vary the learning rate are scans (a batch-size grid at
    // one learning rate is not).
    let grid = table.columns.iter().position(|c| c == column::GRID);
    let scans_lr = |i: usize| {
        grid.is_none_or(|g| {
            let mut lrs: Vec<f64> = (0..lr.len()).filter(|&j| table.rows[j][g] == table.rows[i][g]).map(|j| lr[j]).collect();
            lrs.sort_by(f64::total_cmp);
            lrs.dedup();
            lrs.len() >= 2
        })
    };
    let mut excluded = 0;
    let mut rows = Vec::new();
    for i in 0..lr.len() {
        if kind.is_some_and(|k| table.rows[i][k] != "plain") || !scans_lr(i) {
            continue;
        }
        if status.is_some_and(|s| table.rows[i][s] != super::input::STATUS_DONE) || !loss[i].is_finite() {
            excluded += 1;
            continue;
        }
        anyhow::ensure!(lr[i] > 0.0 && width[i] > 0.0, "{} line {}: lr and width must be positive", table.path.display(), i + 2);
        rows.push(i);
    }
    // Runs that differ in another hyperparameter (batch size, tokens, a swept key) are scans of
    // their own: pooling them would fit one parabola through different curves.
    let varied = varied_hyperparameters(table, &rows, columns);
    let mut by_group: Vec<(String, Vec<LrPoint>)> = Vec::new();
    for i in rows {
        let mut key = group.map_or_else(|| "all".to_string(), |g| table.rows[i][g].clone());
        for &c in &varied {
            key.push_str(&format!(", {}={}", table.columns[c], table.rows[i][c]));
        }
        let point = LrPoint { width: width[i], depth: depth[i], lr: lr[i], loss: loss[i] };
        match by_group.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(point),
            None => by_group.push((key, vec![point])),
        }
    }
    anyhow::ensure!(!by_group.is_empty(), "{}: no finished runs of a learning-rate scan to fit", table.path.display());
    let mut groups = Vec::new();
    for (key, points) in by_group {
        // A parabola in log lr needs three different learning rates at each width.
        for p in &points {
            let mut lrs: Vec<f64> = points.iter().filter(|q| q.width == p.width && q.depth == p.depth).map(|q| q.lr).collect();
            lrs.sort_by(f64::total_cmp);
            lrs.dedup();
            anyhow::ensure!(
                lrs.len() >= 3,
                "{}: group `{key}`, width {}: {} distinct learning rate(s); a learning-rate scan needs at least 3 per width",
                table.path.display(),
                p.width,
                lrs.len()
            );
        }
        let transfer = lr_transfer(&points, seed);
        anyhow::ensure!(
            transfer.optima.iter().all(|o| o.points >= 3),
            "{}: group `{key}` has a width with fewer than 3 learning rates; a parabola needs 3",
            table.path.display()
        );
        groups.push((key, transfer));
    }
    Ok(LrReport { input: table.path.clone(), excluded_not_done: excluded, groups, grouped_by: varied.iter().map(|&c| table.columns[c].clone()).collect() })
}

/// Columns other than the scan's own (lr, width, depth, group, seed) whose value differs
/// between `rows` of the same group of a learning-rate scan: the batch size, the tokens, a swept key.
fn varied_hyperparameters(table: &Table, rows: &[usize], columns: &LrColumns) -> Vec<usize> {
    const HYPERPARAMETERS: &[&str] = &[column::BATCH_SIZE, column::SEQ_LEN, column::TOKENS];
    let own = [Some(&columns.lr), Some(&columns.width), columns.depth.as_ref(), columns.group.as_ref()];
    let group = columns.group.as_ref().and_then(|g| table.columns.iter().position(|h| h == g));
    (0..table.columns.len())
        .filter(|&c| {
            let name = &table.columns[c];
            let candidate = HYPERPARAMETERS.contains(&name.as_str()) || (name.starts_with("param.") && name != "param.optimizer.lr");
            candidate && !own.contains(&Some(name))
        })
        .filter(|&c| {
            // Varied within a group (µP or SP): a column that only follows the group (a swept
            // `mup.parameterization`) is the group itself. Each row against its group's first.
            let mut first: HashMap<Option<&String>, usize> = HashMap::new();
            rows.iter().any(|&i| {
                let j = *first.entry(group.map(|g| &table.rows[i][g])).or_insert(i);
                table.rows[i][c] != table.rows[j][c]
            })
        })
        .collect()
}

impl std::fmt::Display for LrReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "learning-rate transfer ({}; {} runs not done left out)", self.input.display(), self.excluded_not_done)?;
        if !self.grouped_by.is_empty() {
            writeln!(f, "  the scans also vary {}: each value is fitted on its own", self.grouped_by.join(", "))?;
        }
        for (key, t) in &self.groups {
            writeln!(f, "{key}:")?;
            writeln!(f, "  {:>7} {:>6} {:>7} {:>11} {:>24} {:>10}", "width", "depth", "points", "lr_opt", "95% interval", "loss")?;
            for o in &t.optima {
                writeln!(
                    f,
                    "  {:>7} {:>6} {:>7} {:>11.3e}   [{:.3e}, {:.3e}] {:>10.4}{}",
                    o.width,
                    o.depth,
                    o.points,
                    o.lr_opt,
                    o.lr_lower,
                    o.lr_upper,
                    o.loss_at_opt,
                    o.caveat().map(|c| format!("  ({c})")).unwrap_or_default()
                )?;
            }
            if let Some(d) = &t.drift {
                writeln!(f, "  drift: d log lr_opt / d log width = {:+.3} [{:+.3}, {:+.3}] (µP: ≈ 0; SP: ≈ −1)", d.slope, d.slope_lower, d.slope_upper)?;
            }
            if t.drift.is_none() && t.depth_drift.is_none() && t.optima.len() >= 2 && t.optima.iter().filter(|o| o.bracketed).count() < 2 {
                writeln!(f, "  drift: not measured: fewer than two optima lie inside their scans (flat losses, or scans to widen)")?;
            }
            if let Some(d) = &t.depth_drift {
                writeln!(f, "  drift in depth: d log lr_opt / d log depth = {:+.3} [{:+.3}, {:+.3}] (transfers: ≈ 0)", d.slope, d.slope_lower, d.slope_upper)?;
            }
        }
        Ok(())
    }
}

/// Training curves of every run directory under `dir` (any folder holding run.json and
/// metrics.jsonl), or of a CSV table with batch size, tokens and loss columns.
pub fn curves(input: &Path, eval: bool, columns: &BatchColumns) -> anyhow::Result<Vec<CurvePoint>> {
    if input.is_dir() {
        let points = curves_of_runs(&run_dirs(input), eval)?;
        anyhow::ensure!(!points.is_empty(), "{}: no run directories with metrics found", input.display());
        return Ok(points);
    }
    let table = Table::read(input)?;
    let (bs, tokens, loss) = (table.numbers(&columns.batch_size)?, table.numbers(&columns.tokens)?, table.numbers(&columns.curve_loss)?);
    for i in 0..bs.len() {
        for (name, column, v) in [("batch size", &columns.batch_size, bs[i]), ("tokens", &columns.tokens, tokens[i])] {
            anyhow::ensure!(
                v.is_finite() && v > 0.0,
                "{} line {}: {name} `{column}` = {v}; batch sizes and token counts are positive (fix the row or leave it out)",
                table.path.display(),
                i + 2
            );
        }
    }
    Ok((0..bs.len()).map(|i| CurvePoint { batch_size: bs[i], tokens: tokens[i], loss: loss[i] }).collect())
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

#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub input: PathBuf,
    pub batch_sizes: usize,
    pub minicpm: Option<BatchLaw>,
    /// DeepSeek: η_opt = c·C^p.
    pub lr_in_compute: Option<PowerLaw>,
    /// DeepSeek: B_opt = c·C^q.
    pub batch_in_compute: Option<PowerLaw>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PowerLaw {
    pub coefficient: f64,
    pub exponent: f64,
    pub line: Line,
}

/// Column names for `fit batch` (defaults: the results table's, and `loss` for a curves CSV).
#[derive(Debug, Clone)]
pub struct BatchColumns {
    /// Curves CSV: batch size in tokens, training tokens so far, loss.
    pub batch_size: String,
    pub tokens: String,
    pub curve_loss: String,
    /// Runs table: training FLOPs, learning rate, and the final loss to pick each budget's best run.
    pub flops: String,
    pub lr: String,
    pub loss: String,
}

impl Default for BatchColumns {
    fn default() -> Self {
        Self {
            batch_size: column::BATCH_SIZE.into(),
            tokens: column::TOKENS.into(),
            curve_loss: "loss".into(),
            flops: column::FLOPS.into(),
            lr: column::LR.into(),
            loss: column::FINAL_EVAL_LOSS.into(),
        }
    }
}

/// MiniCPM's batch-size law from curves; DeepSeek's laws when a runs table (FLOPs, learning
/// rate, batch size and loss columns) is given.
pub fn fit_batch(input: &Path, eval: bool, runs_table: Option<&Path>, columns: &BatchColumns) -> anyhow::Result<BatchReport> {
    fit_batch_points(input, curves(input, eval, columns)?, runs_table.map(|t| (t, columns)))
}

/// MiniCPM's batch-size law from curve points (and DeepSeek's from a runs table), reported as read from `input`.
pub fn fit_batch_points(input: &Path, points: Vec<CurvePoint>, runs_table: Option<(&Path, &BatchColumns)>) -> anyhow::Result<BatchReport> {
    let mut sizes: Vec<f64> = points.iter().map(|p| p.batch_size).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    anyhow::ensure!(sizes.len() >= 3, "{}: curves of {} batch sizes; the batch-size law needs at least 3", input.display(), sizes.len());
    let minicpm = batch_law(&points, 10);
    let (mut lr_in_compute, mut batch_in_compute) = (None, None);
    if let Some((table_path, cols)) = runs_table {
        let table = Table::read(table_path)?;
        let (c, lr, bs, loss) = (table.numbers(&cols.flops)?, table.numbers(&cols.lr)?, table.numbers(&cols.batch_size)?, table.numbers(&cols.loss)?);
        // Group runs by compute budget (within 5% in log10), take each group's best run.
        let mut budgets: Vec<(f64, f64, f64, f64)> = Vec::new();
        let mut order: Vec<usize> = (0..c.len()).filter(|&i| loss[i].is_finite()).collect();
        order.sort_by(|&a, &b| c[a].total_cmp(&c[b]));
        for i in order {
            match budgets.last_mut() {
                Some(g) if (c[i].log10() - g.0.log10()).abs() < 0.05 => {
                    if loss[i] < g.3 {
                        *g = (g.0, lr[i], bs[i], loss[i]);
                    }
                }
                _ => budgets.push((c[i], lr[i], bs[i], loss[i])),
            }
        }
        anyhow::ensure!(budgets.len() >= 2, "{}: runs at {} compute budget(s); power laws in compute need at least 2", table.path.display(), budgets.len());
        lr_in_compute = power_law(&budgets.iter().map(|g| (g.0, g.1)).collect::<Vec<_>>()).map(|(c, p, line)| PowerLaw { coefficient: c, exponent: p, line });
        batch_in_compute =
            power_law(&budgets.iter().map(|g| (g.0, g.2)).collect::<Vec<_>>()).map(|(c, p, line)| PowerLaw { coefficient: c, exponent: p, line });
    }
    Ok(BatchReport { input: input.to_path_buf(), batch_sizes: sizes.len(), minicpm, lr_in_compute, batch_in_compute })
}

/// Why an exponent's interval does not pin it down, if it does not: it spans zero (the sign is
/// unknown), or it is wider than twice the estimate.
fn unconstrained(estimate: f64, lower: f64, upper: f64) -> Option<String> {
    if !(lower.is_finite() && upper.is_finite()) {
        return Some("too few points for an interval".into());
    }
    if lower < 0.0 && upper > 0.0 {
        return Some(format!("its interval [{lower:.3}, {upper:.3}] spans zero"));
    }
    (upper - lower > 2.0 * estimate.abs()).then(|| format!("its interval [{lower:.3}, {upper:.3}] is wider than twice the estimate {estimate:.3}"))
}

impl std::fmt::Display for BatchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "batch size ({}, {} batch sizes)", self.input.display(), self.batch_sizes)?;
        match &self.minicpm {
            Some(b) => {
                let (lower, upper) = (-b.line.slope_upper, -b.line.slope_lower);
                writeln!(f, "  MiniCPM: bs_opt = {:.4e} / L^{:.3}  (γ 95% interval [{lower:.3}, {upper:.3}]), tokens per batch", b.k, b.gamma)?;
                for (l, bs) in &b.optima {
                    writeln!(f, "    loss {l:.4}: bs_opt {}", si(*bs))?;
                }
                if let Some(why) = unconstrained(b.gamma, lower, upper) {
                    writeln!(f, "  warning: γ is not constrained ({why}): add batch sizes around the optimum, or train the curves to lower losses")?;
                }
            }
            None => writeln!(f, "  MiniCPM: the curves do not bracket an optimal batch size at any loss level; widen the batch-size range")?,
        }
        for (name, p) in [("η_opt", &self.lr_in_compute), ("B_opt", &self.batch_in_compute)] {
            let Some(p) = p else { continue };
            let (lower, upper) = (p.line.slope_lower, p.line.slope_upper);
            writeln!(f, "  DeepSeek: {name} = {:.4} · C^{:.4}  (exponent 95% interval [{lower:.3}, {upper:.3}])", p.coefficient, p.exponent)?;
            if let Some(why) = unconstrained(p.exponent, lower, upper) {
                writeln!(f, "  warning: the {name} exponent is not constrained ({why}): add compute budgets")?;
            }
        }
        Ok(())
    }
}
