//! Loss curves with their learning-rate schedules: what a curve law is fitted to and predicts.
//!
//! A [`Curve`] is one run: the learning rate of every step (1 to T) and the losses evaluated at
//! some of them. A sweep's curves are rebuilt from its runs' configs (`results::curves`); other
//! trainers' come from a long table, one row per logged step ([`read_long_table`]).
//!
//! For the fit, each evaluation after the warmup becomes a [`Point`]: the area under the schedule
//! up to it, and what the decay term reads there ([`super::decay`]), with rates taken relative to
//! the fit's reference rate (the largest peak among its curves), so S₁ counts steps at the peak.

use std::path::Path;

use serde::Serialize;

use super::decay::{Decays, Schedule};
use crate::fit::input::Table;
use crate::fit::observation::{Observations, Value};

/// One run's loss curve and the learning rate of each of its steps.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    /// The run's name: what `--fit-runs` and `--predict-runs` match.
    pub run: String,
    /// The fit the run belongs to (one model size and peak rate; every run, for a table without
    /// `--group`).
    pub group: String,
    /// The model's size N, when known (a sweep's runs; a table's group that reads as a number,
    /// such as `25M`): what the chart orders its panels by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<f64>,
    /// η at steps 1..=T.
    #[serde(skip)]
    pub lr: Vec<f64>,
    /// Tokens per step, when known.
    pub tokens_per_step: Option<f64>,
    /// (step, loss) of every evaluation, steps rising.
    pub evals: Vec<(u64, f64)>,
    /// Whether the run has ended (its last evaluation is its final loss).
    pub finished: bool,
}

impl Curve {
    /// T: the run's last step.
    pub fn steps(&self) -> u64 {
        self.lr.len() as u64
    }

    /// The peak learning rate.
    pub fn peak_lr(&self) -> f64 {
        self.lr.iter().copied().fold(0.0, f64::max)
    }

    /// Steps 1..=W of the warmup: up to the first step at the peak rate.
    pub fn warmup_steps(&self) -> usize {
        warmup_steps(&self.lr)
    }

    /// The loss evaluated at the run's last step, when the run has ended.
    pub fn final_loss(&self) -> Option<f64> {
        self.evals.last().filter(|(s, _)| self.finished && *s == self.steps()).map(|e| e.1)
    }

    /// The last step still at the peak rate: where a WSD run's decay starts (its end for a run
    /// that never decays).
    pub fn decay_start(&self) -> u64 {
        let peak = self.peak_lr();
        self.lr.iter().rposition(|&x| x == peak).map_or(0, |i| i as u64 + 1)
    }

    /// Tokens after `step`, or the step itself when tokens per step are unknown.
    pub fn tokens_at(&self, step: u64) -> f64 {
        step as f64 * self.tokens_per_step.unwrap_or(1.0)
    }
}

/// The warmup of a rate sequence: steps up to the first at its peak.
pub(crate) fn warmup_steps(lr: &[f64]) -> usize {
    let peak = lr.iter().copied().fold(0.0, f64::max);
    lr.iter().position(|&x| x == peak).map_or(0, |i| i + 1)
}

/// One evaluation as a fit sees it.
#[derive(Debug, Clone)]
pub(crate) struct Point {
    /// Index of the point's group among the fit's groups.
    pub group: usize,
    /// Index of its curve among the fit's curves (and of its run in [`Points::decays`]).
    pub curve: usize,
    /// S₁ at the point.
    pub area: f64,
    pub loss: f64,
}

/// The points of a set of curves, with what the decay terms read at them (point i of `points` is
/// point i of `decays`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Points {
    pub points: Vec<Point>,
    pub decays: Decays,
}

impl Points {
    /// Every evaluation after its curve's warmup; `group_of[c]` is curve c's group index.
    pub fn of(curves: &[&Curve], group_of: &[usize], lr_ref: f64) -> Self {
        let mut out = Self::default();
        for (c, curve) in curves.iter().enumerate() {
            let warmup = curve.warmup_steps();
            let schedule = Schedule::new(&curve.lr, lr_ref, warmup);
            let evals: Vec<(usize, f64)> =
                curve.evals.iter().map(|&(step, loss)| (step as usize, loss)).filter(|&(t, _)| t > warmup && t <= curve.lr.len()).collect();
            out.points.extend(evals.iter().map(|&(t, loss)| Point { group: group_of[c], curve: c, area: schedule.area(t), loss }));
            out.decays.push_run(schedule, evals.iter().map(|e| e.0).collect());
        }
        out
    }
}

/// A model size written as a table's group: a number, or one with a K, M, B, G or T suffix
/// (`25M`, `1.5B`); `None` for anything else.
pub fn size_of(group: &str) -> Option<f64> {
    let text = group.trim();
    let (number, scale) = match text.char_indices().last()? {
        (i, c) if "kKmMbBgGtT".contains(c) => (&text[..i], [1e3, 1e6, 1e9, 1e9, 1e12]["kmbgt".find(c.to_ascii_lowercase())?]),
        _ => (text, 1.0),
    };
    number.parse::<f64>().ok().filter(|x| x.is_finite() && *x > 0.0).map(|x| x * scale)
}

/// Which columns of a long table hold the curves.
#[derive(Debug, Clone, PartialEq)]
pub struct LongColumns {
    pub run: String,
    pub step: String,
    pub lr: String,
    pub loss: String,
    pub tokens: Option<String>,
    pub group: Option<String>,
}

/// Curves from a long CSV or Parquet table: one row per logged step, `lr` the rate at that step
/// (linear between rows; before a run's first row, the first row's rate), `loss` empty where the
/// step was not evaluated. Every run must have its rows in rising steps, finite non-negative
/// rates and at least one loss; errors name the file, the row and the fix.
pub fn read_long_table(path: &Path, columns: &LongColumns) -> anyhow::Result<Vec<Curve>> {
    let table = Table::observations(path)?;
    let long = LongTable::read(&table, columns)?;
    let run = table.column(&columns.run)?;
    let group = columns.group.as_deref().map(|c| table.column(c)).transpose()?;
    // Each run's rows, runs in the order they first appear.
    let mut order: Vec<String> = Vec::new();
    let mut rows_of: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
    for (i, row) in table.rows.iter().enumerate() {
        let name = row.values[run].to_string();
        if !rows_of.contains_key(&name) {
            order.push(name.clone());
        }
        rows_of.entry(name).or_default().push(i);
    }
    let mut curves = Vec::new();
    for name in order {
        let rows = &rows_of[&name];
        long.check_rows(&name, rows)?;
        let mut curve = long.curve(&name, rows)?;
        curve.group = group.map_or_else(|| "all".to_string(), |g| table.rows[rows[0]].values[g].to_string());
        curve.n = size_of(&curve.group);
        curves.push(curve);
    }
    anyhow::ensure!(!curves.is_empty(), "{} has no rows; a curve table has one row per logged step", long.file);
    Ok(curves)
}

/// A long table's columns, parsed: what each run's rows are checked and read from.
struct LongTable<'a> {
    table: &'a Observations,
    columns: &'a LongColumns,
    file: String,
    step: Vec<f64>,
    lr: Vec<f64>,
    /// NaN where the cell is empty (not evaluated) or not a number.
    loss: Vec<f64>,
    loss_column: usize,
    tokens: Option<Vec<f64>>,
}

impl<'a> LongTable<'a> {
    fn read(table: &'a Observations, columns: &'a LongColumns) -> anyhow::Result<Self> {
        Ok(Self {
            table,
            columns,
            file: table.source.display().to_string(),
            step: table.numbers(&columns.step)?,
            lr: table.numbers(&columns.lr)?,
            loss: table.numbers(&columns.loss)?,
            loss_column: table.column(&columns.loss)?,
            tokens: columns.tokens.as_deref().map(|c| table.numbers(c)).transpose()?,
        })
    }

    /// Every row of run `name`: a whole step count, rising; tokens (where given) that do not go
    /// down; a finite non-negative rate; a loss that is positive and finite or empty. Errors name
    /// the file's line (the header is line 1).
    fn check_rows(&self, name: &str, rows: &[usize]) -> anyhow::Result<()> {
        let (file, columns) = (&self.file, self.columns);
        let mut last_step = -1.0;
        let mut last_tokens = f64::NEG_INFINITY;
        for &i in rows {
            let (line, step, lr) = (self.table.rows[i].line, self.step[i], self.lr[i]);
            anyhow::ensure!(
                step.is_finite() && step >= 0.0 && step.fract() == 0.0 && step < 1e9,
                "{file} line {line}: `{}` = {step} is not a step count (a whole number from 0); fix the row or choose the step column with --step",
                columns.step
            );
            anyhow::ensure!(
                step > last_step,
                "{file} line {line}: run `{name}` goes from step {last_step} back to {step}; a run's rows must have rising steps (sort the file by run and step, and drop repeated rows)"
            );
            last_step = step;
            if let (Some(tokens), Some(column)) = (&self.tokens, &columns.tokens) {
                anyhow::ensure!(
                    tokens[i].is_nan() || tokens[i] >= last_tokens,
                    "{file} line {line}: run `{name}` goes from {last_tokens} tokens back to {} at step {step}; `{column}` must be the tokens trained so far, which never go down (check that --tokens names that column)",
                    tokens[i]
                );
                last_tokens = last_tokens.max(tokens[i]);
            }
            anyhow::ensure!(
                lr.is_finite() && lr >= 0.0,
                "{file} line {line}: run `{name}` has learning rate {lr} at step {step}; every row needs a finite, non-negative `{}`",
                columns.lr
            );
            let cell = &self.table.rows[i].values[self.loss_column];
            anyhow::ensure!(
                *cell == Value::Missing || self.loss[i].is_finite() && self.loss[i] > 0.0,
                "{file} line {line}: run `{name}` has loss `{cell}` at step {step}; a loss is positive and finite, or left empty where the step was not evaluated"
            );
        }
        Ok(())
    }

    /// Run `name`'s curve from its checked rows (its group is the caller's to set).
    fn curve(&self, name: &str, rows: &[usize]) -> anyhow::Result<Curve> {
        let (file, columns) = (&self.file, self.columns);
        let last_row = *rows.last().expect("a run has rows");
        let last = self.step[last_row] as usize;
        anyhow::ensure!(last >= 1, "{file}: run `{name}` has no step after 0; a curve needs steps to fit");
        let schedule = self.rate_per_step(rows, last);
        let evals: Vec<(u64, f64)> =
            rows.iter().filter(|&&i| self.loss[i].is_finite() && self.step[i] >= 1.0).map(|&i| (self.step[i] as u64, self.loss[i])).collect();
        anyhow::ensure!(
            !evals.is_empty(),
            "{file}: run `{name}` has no loss at any step after 0; give its evaluated losses in `{}`, or leave the run out",
            columns.loss
        );
        anyhow::ensure!(schedule.iter().any(|&x| x > 0.0), "{file}: run `{name}` has a learning rate of 0 at every step; check the `{}` column", columns.lr);
        let tokens_per_step = self.tokens.as_ref().map(|t| t[last_row] / self.step[last_row]).filter(|t| t.is_finite() && *t > 0.0);
        Ok(Curve { run: name.to_string(), group: String::new(), n: None, lr: schedule, tokens_per_step, evals, finished: true })
    }

    /// The rate of every step 1..=last: linear between the logged rows, the first row's rate
    /// before it and the last row's after it.
    fn rate_per_step(&self, rows: &[usize], last: usize) -> Vec<f64> {
        let (step, lr) = (&self.step, &self.lr);
        let mut schedule = Vec::with_capacity(last);
        let mut before = 0;
        for k in 1..=last {
            let k = k as f64;
            while before + 1 < rows.len() && step[rows[before + 1]] < k {
                before += 1;
            }
            let (a, b) = (rows[before], rows[(before + 1).min(rows.len() - 1)]);
            let fraction = if step[b] > step[a] { ((k - step[a]) / (step[b] - step[a])).clamp(0.0, 1.0) } else { 0.0 };
            schedule.push(if k <= step[a] { lr[a] } else { lr[a] + (lr[b] - lr[a]) * fraction });
        }
        schedule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("curves.csv");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn columns() -> LongColumns {
        LongColumns { run: "run".into(), step: "step".into(), lr: "lr".into(), loss: "loss".into(), tokens: Some("tokens".into()), group: None }
    }

    #[test]
    fn rates_are_interpolated_between_rows_and_losses_kept_where_given() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "run,step,tokens,lr,loss\na,1,100,0.5,\na,3,300,1.0,4.0\na,5,500,0.0,3.0\n");
        let c = &read_long_table(&p, &columns()).unwrap()[0];
        assert_eq!(c.lr, vec![0.5, 0.75, 1.0, 0.5, 0.0]);
        assert_eq!(c.evals, vec![(3, 4.0), (5, 3.0)]);
        assert_eq!(c.tokens_per_step, Some(100.0));
        assert_eq!((c.warmup_steps(), c.decay_start(), c.final_loss()), (3, 3, Some(3.0)));
    }

    #[test]
    fn a_groups_size_is_read_with_its_suffix() {
        assert_eq!(size_of("25M"), Some(25e6));
        assert_eq!(size_of("1.5B"), Some(1.5e9));
        assert_eq!(size_of("400m"), Some(400e6));
        assert_eq!(size_of("94528"), Some(94528.0));
        for not_a_size in ["all", "M", "N=23.712K lr=0.04", "-3M", ""] {
            assert_eq!(size_of(not_a_size), None, "{not_a_size}");
        }
    }

    #[test]
    fn bad_curve_files_are_refused_with_the_row_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("run,step,tokens,lr\na,1,1,1\n", "no column `loss`"),
            ("run,step,tokens,lr,loss\na,2,1,1,3\na,1,1,1,3\n", "line 3: run `a` goes from step 2 back to 1"),
            ("run,step,tokens,lr,loss\na,1,1,-1,3\n", "line 2: run `a` has learning rate -1"),
            ("run,step,tokens,lr,loss\na,1,1,NaN,3\n", "line 2: run `a` has learning rate NaN"),
            ("run,step,tokens,lr,loss\na,1,1,1,\na,2,1,1,\n", "run `a` has no loss"),
            ("run,step,tokens,lr,loss\na,1,1,1,-2\n", "line 2: run `a` has loss `-2`"),
            ("run,step,tokens,lr,loss\na,1.5,1,1,2\n", "line 2: `step` = 1.5"),
            ("run,step,tokens,lr,loss\na,1,200,1,2\na,2,100,1,2\n", "line 3: run `a` goes from 200 tokens back to 100 at step 2"),
        ];
        for (text, want) in cases {
            let p = write(dir.path(), text);
            let e = format!("{:#}", read_long_table(&p, &columns()).unwrap_err());
            assert!(e.contains(want) && e.contains("curves.csv"), "{text:?}: {e}");
        }
    }

    #[test]
    fn points_carry_the_area_and_the_decrements_after_the_warmup() {
        let curve = Curve {
            run: "a".into(),
            group: "g".into(),
            n: None,
            lr: vec![0.5, 1.0, 1.0, 0.5, 0.25],
            tokens_per_step: None,
            evals: vec![(1, 9.0), (3, 5.0), (5, 4.0)],
            finished: true,
        };
        let pts = Points::of(&[&curve], &[0], 1.0);
        assert_eq!(pts.points.len(), 2, "the evaluation in the warmup is left out");
        assert_eq!(pts.points[1].area, 3.25);
        let d = pts.decays.decrements(1);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].drop, d[0].area_since), (0.5, 0.75));
        assert_eq!((d[1].drop, d[1].area_since), (0.25, 0.25));
        assert_eq!(pts.decays.runs()[0].steps, [3, 5]);
    }
}
