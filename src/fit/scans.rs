//! `windtunnel fit lr` and `windtunnel fit batch` over observations: which rows are
//! learning-rate scans and how they group, the batch-size curves of a table, the laws fitted
//! ([`super::transfer`]), and their reports. Where the observations come from (a sweep's runs, a
//! table, run directories) is the results layer's business (`results::scans`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::observation::{column, Observations, RunRole};
use super::transfer::{batch_law, lr_transfer, power_law, BatchLaw, CurvePoint, Line, LrPoint, LrTransfer};
use crate::format::si;

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

/// Learning-rate transfer over the observations' learning-rate scans (rows whose `status` is not
/// `done` are left out).
pub fn fit_lr_on(table: &Observations, columns: &LrColumns, seed: u64) -> anyhow::Result<LrReport> {
    let lr = table.numbers(&columns.lr)?;
    let width = table.numbers(&columns.width)?;
    let depth = match &columns.depth {
        Some(d) if table.has(d) => table.numbers(d)?,
        _ => vec![0.0; lr.len()],
    };
    let loss = table.numbers(&columns.loss)?;
    let group = columns.group.as_ref().and_then(|g| table.columns.iter().position(|c| c == g));
    // In a sweep's table, only grids that vary the learning rate are scans (a batch-size grid at
    // one learning rate is not).
    let scans_lr = |i: usize| {
        table.rows[i].grid.as_ref().is_none_or(|grid| {
            let lrs = (0..lr.len()).filter(|&j| table.rows[j].grid.as_ref() == Some(grid)).map(|j| lr[j]);
            super::distinct_count(lrs) >= 2
        })
    };
    let mut excluded = 0;
    let mut rows = Vec::new();
    for (i, row) in table.rows.iter().enumerate() {
        // In a sweep's table the learning-rate scans are plain runs (trunks and branches are WSD grids).
        if row.role.is_some_and(|r| r != RunRole::Plain) || !scans_lr(i) {
            continue;
        }
        if !row.is_done() || !loss[i].is_finite() {
            excluded += 1;
            continue;
        }
        anyhow::ensure!(lr[i] > 0.0 && width[i] > 0.0, "{} line {}: lr and width must be positive", table.source.display(), row.line);
        rows.push(i);
    }
    // Runs that differ in another hyperparameter (batch size, tokens, a swept key) are scans of
    // their own: pooling them would fit one parabola through different curves.
    let varied = varied_hyperparameters(table, &rows, columns);
    let mut by_group: Vec<(String, Vec<LrPoint>)> = Vec::new();
    for i in rows {
        let mut key = group.map_or_else(|| "all".to_string(), |g| table.rows[i].values[g].to_string());
        for &c in &varied {
            key.push_str(&format!(", {}={}", table.columns[c], table.rows[i].values[c]));
        }
        let point = LrPoint { width: width[i], depth: depth[i], lr: lr[i], loss: loss[i] };
        match by_group.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(point),
            None => by_group.push((key, vec![point])),
        }
    }
    anyhow::ensure!(!by_group.is_empty(), "{}: no finished runs of a learning-rate scan to fit", table.source.display());
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
                table.source.display(),
                p.width,
                lrs.len()
            );
        }
        let transfer = lr_transfer(&points, seed);
        anyhow::ensure!(
            transfer.optima.iter().all(|o| o.points >= 3),
            "{}: group `{key}` has a width with fewer than 3 learning rates; a parabola needs 3",
            table.source.display()
        );
        groups.push((key, transfer));
    }
    Ok(LrReport { input: table.source.clone(), excluded_not_done: excluded, groups, grouped_by: varied.iter().map(|&c| table.columns[c].clone()).collect() })
}

/// Columns other than the scan's own (lr, width, depth, group, seed) whose value differs
/// between `rows` of the same group of a learning-rate scan: the batch size, the tokens, a swept key.
fn varied_hyperparameters(table: &Observations, rows: &[usize], columns: &LrColumns) -> Vec<usize> {
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
            let mut first: HashMap<Option<String>, usize> = HashMap::new();
            rows.iter().any(|&i| {
                let j = *first.entry(group.map(|g| table.rows[i].values[g].to_string())).or_insert(i);
                table.rows[i].values[c] != table.rows[j].values[c]
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

/// The batch-size curves of a table: batch size in tokens, tokens so far and loss per row.
pub fn curves_of_table(table: &Observations, columns: &BatchColumns) -> anyhow::Result<Vec<CurvePoint>> {
    let (bs, tokens, loss) = (table.numbers(&columns.batch_size)?, table.numbers(&columns.tokens)?, table.numbers(&columns.curve_loss)?);
    for (i, row) in table.rows.iter().enumerate() {
        for (name, column, v) in [("batch size", &columns.batch_size, bs[i]), ("tokens", &columns.tokens, tokens[i])] {
            anyhow::ensure!(
                v.is_finite() && v > 0.0,
                "{} line {}: {name} `{column}` = {v}; batch sizes and token counts are positive (fix the row or leave it out)",
                table.source.display(),
                row.line
            );
        }
    }
    Ok((0..bs.len()).map(|i| CurvePoint { batch_size: bs[i], tokens: tokens[i], loss: loss[i] }).collect())
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

/// MiniCPM's batch-size law from curve points (and DeepSeek's from a runs table), reported as read from `input`.
pub fn fit_batch_points(input: &Path, points: Vec<CurvePoint>, runs_table: Option<(&Observations, &BatchColumns)>) -> anyhow::Result<BatchReport> {
    let mut sizes: Vec<f64> = points.iter().map(|p| p.batch_size).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    anyhow::ensure!(sizes.len() >= 3, "{}: curves of {} batch sizes; the batch-size law needs at least 3", input.display(), sizes.len());
    let minicpm = batch_law(&points, 10);
    let (mut lr_in_compute, mut batch_in_compute) = (None, None);
    if let Some((table, cols)) = runs_table {
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
        anyhow::ensure!(budgets.len() >= 2, "{}: runs at {} compute budget(s); power laws in compute need at least 2", table.source.display(), budgets.len());
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
