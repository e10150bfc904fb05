//! `windtunnel adapt --replay TABLE`: the adaptive loop over runs already made. Each row of a
//! table (CSV or Parquet) is a candidate; "running" it reveals its loss, and it costs its FLOPs
//! (the `--flops` column, else 6·N·D). The same target fitted on every row is the reference the
//! loop's answer is measured against, so anyone can measure what adaptive selection saves on
//! published data without training anything.

use std::path::PathBuf;

use serde::Serialize;

use super::design::{self, Candidate, Lab, Outcome, Round, Settings, Strategy};
use super::target::Target;
use crate::fit::law::Point;
use crate::fit::observation::Observations;

/// Which columns hold what.
#[derive(Debug, Clone)]
pub struct ReplayColumns {
    pub n: String,
    /// Training tokens; without it D = C / 6N from `flops`.
    pub tokens: Option<String>,
    /// A row's cost in FLOPs (default 6·N·D).
    pub flops: Option<String>,
    pub loss: String,
}

/// A table's rows as candidates.
pub struct TableLab {
    candidates: Vec<Candidate>,
    costs: Vec<f64>,
    losses: Vec<f64>,
    /// The table's file line of each candidate.
    lines: Vec<usize>,
}

impl TableLab {
    /// Every row with a positive, finite N, D, loss and cost; the `drop_highest` highest-loss rows
    /// left out (as `fit law --drop-highest` does).
    pub fn read(table: &Observations, columns: &ReplayColumns, drop_highest: usize, keep: &[bool]) -> anyhow::Result<Self> {
        let path = table.source.display();
        let n = table.numbers(&columns.n)?;
        let loss = table.numbers(&columns.loss)?;
        let flops = columns.flops.as_deref().map(|c| table.numbers(c)).transpose()?;
        let tokens = match (&columns.tokens, &flops) {
            (Some(t), _) => table.numbers(t)?,
            (None, Some(f)) => f.iter().zip(&n).map(|(c, n)| c / (6.0 * n)).collect(),
            (None, None) => anyhow::bail!("{path}: give --tokens COL, or --flops COL (then D = C / 6N)"),
        };
        anyhow::ensure!(!table.rows.is_empty(), "{path} has a header and no rows: nothing to replay");
        let mut rows: Vec<usize> = (0..n.len()).filter(|&i| keep[i]).collect();
        anyhow::ensure!(!rows.is_empty(), "{path}: no row is left to replay (see --grid and --where)");
        for &i in &rows {
            let cost = flops.as_ref().map_or(6.0 * n[i] * tokens[i], |f| f[i]);
            for (name, v) in [("N", n[i]), ("D", tokens[i]), ("loss", loss[i]), ("FLOPs", cost)] {
                anyhow::ensure!(
                    v.is_finite() && v > 0.0,
                    "{path} line {}: {name} = {v}; every row needs a positive, finite N, D, loss and cost",
                    table.rows[i].line
                );
            }
        }
        anyhow::ensure!(drop_highest < rows.len(), "{path}: --drop-highest {drop_highest} leaves no rows of {}", rows.len());
        rows.sort_by(|&a, &b| loss[b].total_cmp(&loss[a]).then(a.cmp(&b)));
        let mut kept = rows.split_off(drop_highest);
        kept.sort_unstable();
        Ok(Self {
            candidates: kept.iter().map(|&i| Candidate { id: format!("line {}", table.rows[i].line), n: n[i], tokens: tokens[i] }).collect(),
            costs: kept.iter().map(|&i| flops.as_ref().map_or(6.0 * n[i] * tokens[i], |f| f[i])).collect(),
            losses: kept.iter().map(|&i| loss[i]).collect(),
            lines: kept.iter().map(|&i| table.rows[i].line).collect(),
        })
    }

    /// Every row's FLOPs together.
    pub fn total_flops(&self) -> f64 {
        self.costs.iter().sum()
    }

    /// Every row as a point of the law.
    pub fn points(&self) -> Vec<Point> {
        self.candidates.iter().zip(&self.losses).map(|(c, &loss)| Point { n: c.n, d: c.tokens, loss }).collect()
    }
}

impl Lab for TableLab {
    fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }
    fn cost(&self, j: usize, _batch: &[usize]) -> f64 {
        self.costs[j]
    }
    fn run(&mut self, _round: usize, batch: &[usize]) -> anyhow::Result<Vec<Option<f64>>> {
        Ok(batch.iter().map(|&j| Some(self.losses[j])).collect())
    }
}

/// Which rows of a table the replay takes, as `fit law` takes them: the grid `--grid` names and
/// the rows `--where` keeps; in a sweep's table only finished runs, and only the decayed branches
/// where there are branches (a trunk is a stable-phase run, a plain run another grid's).
#[derive(Debug, Clone, Default)]
pub struct RowSelection {
    pub grid: Option<String>,
    pub where_: Option<String>,
}

/// The rows kept, what was left out (in words), and what the kept rows still mix.
pub struct Selected {
    pub keep: Vec<bool>,
    pub left_out: Vec<String>,
    pub warnings: Vec<String>,
}

impl RowSelection {
    pub fn select(&self, table: &Observations) -> anyhow::Result<Selected> {
        use crate::fit::observation::RunRole;
        let mut keep = crate::fit::filter::Filter::rows_where("--where", self.where_.as_deref(), table)?.unwrap_or_else(|| vec![true; table.rows.len()]);
        if let Some(want) = &self.grid {
            anyhow::ensure!(
                table.rows.iter().any(|r| r.grid.as_deref() == Some(want)),
                "--grid {want}: {} has no row of grid `{want}`; its grids are {}",
                table.source.display(),
                distinct(table.rows.iter().filter_map(|r| r.grid.clone())).join(", ")
            );
        }
        // Branches among the rows of the grid chosen (a learning-rate grid has none).
        let in_grid = |r: &crate::fit::observation::Observation| self.grid.as_ref().is_none_or(|g| r.grid.as_ref() == Some(g));
        let has_branches = table.rows.iter().zip(&keep).any(|(r, &k)| k && in_grid(r) && r.role == Some(RunRole::Branch));
        let (mut other_grid, mut other_kind, mut not_done) = (0, 0, 0);
        for (k, row) in keep.iter_mut().zip(&table.rows) {
            if !*k {
                continue;
            }
            if !in_grid(row) {
                other_grid += 1;
            } else if row.role.is_some_and(|r| r == RunRole::Trunk || (has_branches && r != RunRole::Branch)) {
                other_kind += 1;
            } else if !row.is_done() {
                not_done += 1;
            } else {
                continue;
            }
            *k = false;
        }
        let kinds = if has_branches { "trunks and runs that are not decayed branches (fit law's points are the branches)" } else { "trunks" };
        let left_out = [(other_grid, "rows of other grids"), (other_kind, kinds), (not_done, "runs not done")]
            .into_iter()
            .filter(|&(count, _)| count > 0)
            .map(|(count, what)| format!("{count} {what}"))
            .collect();
        let warnings = mixes(table, &keep);
        Ok(Selected { keep, left_out, warnings })
    }
}

fn distinct(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for x in values {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v
}

/// What the kept rows mix that one law should not be fitted on: several grids, trunks with
/// branches, several learning rates at one (N, D) (a learning-rate scan).
fn mixes(table: &Observations, keep: &[bool]) -> Vec<String> {
    use crate::fit::observation::{column, RunRole};
    let kept: Vec<usize> = (0..table.rows.len()).filter(|&i| keep[i]).collect();
    let mut warnings = Vec::new();
    let grids = distinct(kept.iter().filter_map(|&i| table.rows[i].grid.clone()));
    if grids.len() > 1 {
        warnings.push(format!("the rows mix the grids {}: one law over them assumes they measure the same thing; pick one with --grid", grids.join(", ")));
    }
    let roles: Vec<RunRole> = kept.iter().filter_map(|&i| table.rows[i].role).collect();
    if roles.contains(&RunRole::Trunk) && roles.contains(&RunRole::Branch) {
        warnings.push("the rows mix WSD trunks (not annealed) and their branches; leave the trunks out with --where or --grid".into());
    }
    let (Ok(lr), Ok(n), Ok(d)) = (table.numbers(column::LR), table.numbers(column::NON_EMBEDDING_PARAMS), table.numbers(column::TOKENS)) else {
        return warnings;
    };
    let scanned = kept.iter().any(|&i| kept.iter().any(|&j| n[i] == n[j] && d[i] == d[j] && lr[i] != lr[j]));
    if scanned {
        warnings.push(
            "the rows hold a learning-rate scan (several learning rates at one N and D): a law over them fits the scan's losing rates too; \
             keep one rate with --where 'lr == ...' or --grid"
                .into(),
        );
    }
    warnings
}

/// The target, as one fit gives it.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    pub relative_half_width: f64,
    pub points: usize,
    pub flops: f64,
    /// FLOPs spent as a fraction of every row's.
    pub flops_fraction: f64,
    /// The law this answer comes from.
    pub law: crate::fit::law::Law,
}

/// One round, as the replay reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayRound {
    pub round: usize,
    /// Table lines (1-based, the header is line 1) of the rows this round chose.
    pub rows: Vec<usize>,
    /// FLOPs spent before the rows were revealed (what this round's fit used).
    pub flops_spent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    /// The target fitted to the cheaper and the costlier half of the rows so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<design::Drift>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub input: PathBuf,
    pub target: Target,
    pub strategy: &'static dyn Strategy,
    pub seed: u64,
    /// The intervals' central level (for the text; the JSON's intervals are `lower`, `upper`).
    #[serde(skip)]
    pub level: f64,
    pub batch: usize,
    pub max_flops: f64,
    pub rows: usize,
    pub total_flops: f64,
    pub rounds: Vec<ReplayRound>,
    /// The loop's last fit.
    #[serde(rename = "final")]
    pub final_: Answer,
    /// The same target fitted on every row.
    pub full: Answer,
    /// Rows of the table left out, and why (`--grid`, `--where`, trunks, runs not done).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    /// What the rows replayed mix that one law should not be fitted on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Replay the loop over `table`; `max_flops_fraction`, when given, sets the budget as that fraction
/// of every row's FLOPs (over `settings.max_flops`).
pub fn replay(
    table: &Observations,
    columns: &ReplayColumns,
    rows: &RowSelection,
    drop_highest: usize,
    settings: &Settings,
    max_flops_fraction: Option<f64>,
) -> anyhow::Result<ReplayReport> {
    let selected = rows.select(table)?;
    let mut lab = TableLab::read(table, columns, drop_highest, &selected.keep)?;
    let mut settings = settings.clone();
    if let Some(x) = max_flops_fraction {
        settings.max_flops = x * lab.total_flops() * (1.0 + 1e-12);
    }
    let settings = &settings;
    let at: Vec<(f64, f64)> = lab.candidates.iter().map(|c| (c.n, c.tokens)).collect();
    settings.target.check_reachable(&at, &table.source.display().to_string())?;
    let total = lab.total_flops();
    // The law has 5 parameters: fewer rows cannot give one, whatever the budget.
    anyhow::ensure!(at.len() > 5, "{}: {} row(s) to replay, too few for the law; it needs at least 6, over several N and D", table.source.display(), at.len());
    let full = design::estimate(settings, &lab.points(), usize::MAX, None)
        .ok_or_else(|| {
            anyhow::anyhow!("{}: the law cannot be fitted to all {} rows, so there is nothing to measure the replay against", table.source.display(), at.len())
        })?
        .estimate;
    let outcome: Outcome = design::run(&mut lab, settings, &mut |_| Ok(()))?;
    let last = outcome
        .last
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{}: the law could not be fitted to the seed design; raise --max-flops", table.source.display()))?;
    let answer = |e: &design::Estimate, points: usize, flops: f64| Answer {
        estimate: e.estimate,
        lower: e.lower,
        upper: e.upper,
        relative_half_width: e.relative_half_width,
        points,
        flops,
        flops_fraction: flops / total,
        law: e.law.clone(),
    };
    let last_round = outcome.rounds.iter().rev().find(|r| r.fit.is_some()).expect("a fit was made");
    let rounds = outcome.rounds.iter().map(|r| replay_round(r, &lab)).collect();
    Ok(ReplayReport {
        input: table.source.clone(),
        target: settings.target,
        strategy: settings.strategy,
        seed: settings.seed,
        level: settings.level,
        batch: settings.batch,
        max_flops: settings.max_flops,
        rows: at.len(),
        total_flops: total,
        rounds,
        final_: answer(last, last_round.points, last_round.flops_spent),
        full: answer(&full, at.len(), total),
        left_out: selected.left_out,
        warnings: selected.warnings,
    })
}

fn replay_round(r: &Round, lab: &TableLab) -> ReplayRound {
    let line = |id: &str| lab.candidates.iter().position(|c| c.id == id).map_or(0, |j| lab.lines[j]);
    ReplayRound {
        round: r.round,
        rows: r.chosen.iter().map(|c| line(&c.id)).collect(),
        flops_spent: r.flops_spent,
        estimate: r.fit.as_ref().map(|f| f.estimate),
        lower: r.fit.as_ref().map(|f| f.lower),
        upper: r.fit.as_ref().map(|f| f.upper),
        drift: r.fit.as_ref().and_then(|f| f.drift.clone()),
        stopped: r.stopped.clone(),
    }
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "replay of {} ({} rows, {:.3e} FLOPs): {} selection, {} per round, seed {}; target {}",
            self.input.display(),
            self.rows,
            self.total_flops,
            self.strategy.name(),
            self.batch,
            self.seed,
            self.target.describe()
        )?;
        if !self.left_out.is_empty() {
            writeln!(f, "  left out: {}", self.left_out.join("; "))?;
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        let interval = format!("estimate [{}% interval]", (1000.0 * self.level).round() / 10.0);
        writeln!(f, "  {:>5} {:>6} {:>12} {:>9} {:>26}", "round", "runs", "FLOPs spent", "fraction", interval)?;
        for r in &self.rounds {
            let fit = match (r.estimate, r.lower, r.upper) {
                (Some(e), Some(l), Some(u)) => format!("{e:>10.4} [{l:.4}, {u:.4}]"),
                _ => "(seed design)".to_string(),
            };
            writeln!(f, "  {:>5} {:>6} {:>12.3e} {:>8.2}% {fit:>26}", r.round, r.rows.len(), r.flops_spent, 100.0 * r.flops_spent / self.total_flops)?;
            if let Some(why) = &r.stopped {
                writeln!(f, "  stopped: {why}")?;
            }
        }
        let line = |name: &str, a: &Answer| {
            format!(
                "{name}: {:.4} [{:.4}, {:.4}] (±{:.1}%), {} rows, {:.2}% of the FLOPs",
                a.estimate,
                a.lower,
                a.upper,
                100.0 * a.relative_half_width,
                a.points,
                100.0 * a.flops_fraction
            )
        };
        writeln!(f, "{}", line("final", &self.final_))?;
        write!(f, "{}", line("every row", &self.full))
    }
}
