//! What every fit reads: **observations**, one per finished run (or per row of a table from
//! elsewhere), each a typed value per column. A sweep's runs become observations once, in the
//! results layer (`sweep::collect` builds them from the runs' files, with numbers as numbers); a
//! CSV or Parquet file from elsewhere becomes the same through [`super::input::Table`], the one
//! place cells are text. The fits pick their columns by name (`--n`, `--loss`, `--where`), so an
//! observation keeps every column; what a run *is* in the sweep (its id, kind, grid and state) is
//! typed besides, so no fit compares strings to learn it.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Names of the results table's columns that the fits read by name (their defaults).
pub mod column {
    pub const RUN_ID: &str = "run_id";
    pub const KIND: &str = "kind";
    pub const GRID: &str = "grid";
    pub const STATUS: &str = "status";
    pub const WIDTH: &str = "width";
    pub const DEPTH: &str = "depth";
    pub const PARAMETERIZATION: &str = "parameterization";
    /// How the run's hyperparameters follow depth (`mup.depth_rule`: minicpm, completep, none).
    pub const DEPTH_RULE: &str = "depth_rule";
    pub const LR: &str = "lr";
    pub const BATCH_SIZE: &str = "batch_size";
    pub const SEQ_LEN: &str = "seq_len";
    /// N.
    pub const NON_EMBEDDING_PARAMS: &str = "non_embedding_params";
    /// D.
    pub const TOKENS: &str = "tokens";
    pub const FLOPS: &str = "flops";
    pub const FINAL_EVAL_LOSS: &str = "final_eval_loss";
}

/// One cell: a count (exact: parameters, tokens, a seed), a number, text (a name, or a swept
/// value as the sweep file wrote it), or nothing (an empty cell: e.g. the evaluation loss of a
/// run that diverged before its first evaluation).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Missing,
    Count(u64),
    Number(f64),
    Text(String),
}

impl Value {
    /// A cell read from a file: empty is missing, a number is a number, anything else is text.
    pub fn of_cell(cell: &str) -> Self {
        let trimmed = cell.trim();
        if trimmed.is_empty() {
            Self::Missing
        } else {
            trimmed.parse::<f64>().map_or_else(|_| Self::Text(cell.to_string()), Self::Number)
        }
    }

    /// The value as a number: a number, a text that reads as one (a swept value), NaN when
    /// missing; `None` for text that is not a number.
    pub fn number(&self) -> Option<f64> {
        match self {
            Self::Missing => Some(f64::NAN),
            Self::Count(n) => Some(*n as f64),
            Self::Number(v) => Some(*v),
            Self::Text(t) => t.trim().parse().ok(),
        }
    }
}

/// As the results table writes the cell.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => Ok(()),
            Self::Count(n) => write!(f, "{n}"),
            Self::Number(v) => write!(f, "{v}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// What a run is in a sweep's run graph (the results table's `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunRole {
    /// Warmup and stable phase to the largest branch point: not annealed, not a point of a law.
    Trunk,
    /// A decay off a trunk checkpoint: the points of the data-model law.
    Branch,
    /// Any other run (a learning-rate scan, a cosine baseline).
    Plain,
}

impl std::str::FromStr for RunRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "trunk" => Ok(Self::Trunk),
            "branch" => Ok(Self::Branch),
            "plain" => Ok(Self::Plain),
            _ => Err(format!("`{s}` is not a run kind (trunk, branch or plain)")),
        }
    }
}

/// How a run ended (the results table's `status` column): only a run that is done is a point of
/// a law; a diverged run marks the edge of the stable range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Diverged, failed, or another state a table from elsewhere names.
    NotDone(String),
}

impl Outcome {
    pub fn of(status: &str) -> Self {
        if status == "done" {
            Self::Done
        } else {
            Self::NotDone(status.to_string())
        }
    }
}

/// One run (or table row) as the fits see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The row's line in its file (the header is line 1), for messages.
    pub line: usize,
    /// Its run id (`run_id`), when it is a sweep's run.
    pub run_id: Option<String>,
    /// Trunk, branch or plain (`kind`), when the table says.
    pub role: Option<RunRole>,
    /// Its sweep grid (`grid`), when the table says.
    pub grid: Option<String>,
    /// How it ended (`status`); a table without the column holds only finished runs.
    pub outcome: Option<Outcome>,
    /// One value per column of [`Observations::columns`].
    pub values: Vec<Value>,
}

impl Observation {
    /// Done, or from a table that does not say.
    pub fn is_done(&self) -> bool {
        self.outcome.as_ref().is_none_or(|o| *o == Outcome::Done)
    }
}

/// The observations of one source, with the columns they share.
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    /// Where they were read: a sweep directory, or a table file.
    pub source: PathBuf,
    pub columns: Vec<String>,
    pub rows: Vec<Observation>,
}

impl Observations {
    /// Observations from typed rows (one value per column), their run's identity read from the
    /// columns that hold it; a `kind` that is not a run kind is an error naming the line.
    pub fn new(source: &Path, columns: Vec<String>, rows: Vec<(usize, Vec<Value>)>) -> anyhow::Result<Self> {
        let at = |name: &str| columns.iter().position(|c| c == name);
        let (id, kind, grid, status) = (at(column::RUN_ID), at(column::KIND), at(column::GRID), at(column::STATUS));
        let text = |values: &[Value], c: Option<usize>| c.map(|c| values[c].to_string());
        let rows = rows
            .into_iter()
            .map(|(line, values)| {
                let role = match text(&values, kind) {
                    Some(k) => Some(k.parse::<RunRole>().map_err(|e| anyhow::anyhow!("{} line {line}: column `{}`: {e}", source.display(), column::KIND))?),
                    None => None,
                };
                Ok(Observation {
                    line,
                    run_id: text(&values, id),
                    role,
                    grid: text(&values, grid),
                    outcome: text(&values, status).map(|s| Outcome::of(&s)),
                    values,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { source: source.to_path_buf(), columns, rows })
    }

    /// The index of column `name`; an error names the source and its columns.
    pub fn column(&self, name: &str) -> anyhow::Result<usize> {
        self.columns
            .iter()
            .position(|c| c == name)
            .with_context(|| format!("{} has no column `{name}`; its columns are: {}", self.source.display(), self.columns.join(", ")))
    }

    pub fn has(&self, name: &str) -> bool {
        self.columns.iter().any(|c| c == name)
    }

    /// The numeric values of column `name`, one per row (a missing value is NaN: no value, e.g.
    /// the eval loss of a diverged run); text that is not a number is an error naming the line.
    pub fn numbers(&self, name: &str) -> anyhow::Result<Vec<f64>> {
        let c = self.column(name)?;
        self.rows
            .iter()
            .map(|r| {
                r.values[c]
                    .number()
                    .with_context(|| format!("{} line {}: column `{name}` holds `{}`, not a number", self.source.display(), r.line, r.values[c]))
            })
            .collect()
    }

    /// Whether any row is a decay branch (then the law's points are the branches alone).
    pub fn has_branches(&self) -> bool {
        self.rows.iter().any(|r| r.role == Some(RunRole::Branch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observations(columns: &[&str], rows: &[&[&str]]) -> anyhow::Result<Observations> {
        let rows = rows.iter().enumerate().map(|(i, r)| (i + 2, r.iter().map(|c| Value::of_cell(c)).collect())).collect();
        Observations::new(Path::new("t.csv"), columns.iter().map(|c| c.to_string()).collect(), rows)
    }

    #[test]
    fn cells_are_typed_once_and_the_run_identity_is_read_from_its_columns() {
        let o = observations(&["run_id", "kind", "status", "N", "mix"], &[&["a1", "branch", "done", "1e6", "web"], &["a2", "trunk", "diverged", "", "0.5"]])
            .unwrap();
        assert_eq!(o.rows[0].values[3], Value::Number(1e6));
        assert_eq!(o.rows[1].values[3], Value::Missing);
        assert_eq!(o.rows[0].role, Some(RunRole::Branch));
        assert!(o.rows[0].is_done() && !o.rows[1].is_done());
        assert_eq!(o.rows[1].outcome, Some(Outcome::NotDone("diverged".into())));
        assert!(o.numbers("N").unwrap()[1].is_nan());
        assert_eq!(o.numbers("mix").unwrap_err().to_string(), "t.csv line 2: column `mix` holds `web`, not a number");
        assert!(o.has_branches());
    }

    #[test]
    fn a_kind_that_is_not_a_run_kind_names_the_line() {
        let e = observations(&["kind"], &[&["plain"], &["decay"]]).unwrap_err().to_string();
        assert_eq!(e, "t.csv line 3: column `kind`: `decay` is not a run kind (trunk, branch or plain)");
    }
}
