//! Tables from elsewhere: a CSV or Parquet file read whole ([`Table`], the one place a cell is
//! text), turned into the typed [`Observations`] every fit reads; and the points of the
//! data-model law chosen from observations by column name. Rows whose `status` (when the table
//! has one) is not `done` are left out and counted (diverged runs mark the edge of the stable
//! range, not a point of the law).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::observation::{column, Observations, RunRole, Value};

/// The most parameters and training tokens a point of a law may have (10^16 and 10^19: far past
/// any model or corpus, near enough that a column in the wrong unit is caught).
pub const MAX_PARAMS: f64 = 1e16;
pub const MAX_TOKENS: f64 = 1e19;

/// A table file read whole: column names and rows of text, as the file has them.
#[derive(Debug, Clone)]
pub struct Table {
    pub path: PathBuf,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Read a CSV or Parquet file (a sweep directory is read by `results::observations`).
    pub fn read(file: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(file.exists(), "input {} does not exist", file.display());
        if file.extension().is_some_and(|e| e == "parquet") {
            return Self::read_parquet(file);
        }
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_path(file).with_context(|| format!("cannot read {}", file.display()))?;
        let columns: Vec<String> = reader.headers().with_context(|| format!("{}: no header row", file.display()))?.iter().map(str::to_string).collect();
        refuse_repeated_columns(file, &columns)?;
        let mut rows = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.with_context(|| format!("{} row {}", file.display(), i + 2))?;
            rows.push(record.iter().map(str::to_string).collect());
        }
        Ok(Self { path: file.to_path_buf(), columns, rows })
    }

    /// Read a table file and type its cells.
    pub fn observations(file: &Path) -> anyhow::Result<Observations> {
        Self::read(file)?.into_observations()
    }

    /// The typed observations of this table: every cell a number, text or missing; the run's
    /// identity from its `run_id`, `kind`, `grid` and `status` columns when it has them.
    pub fn into_observations(self) -> anyhow::Result<Observations> {
        let rows = self.rows.into_iter().enumerate().map(|(i, r)| (i + 2, r.iter().map(|c| Value::of_cell(c)).collect())).collect();
        Observations::new(&self.path, self.columns, rows)
    }

    /// A flat Parquet table; nulls become empty cells.
    fn read_parquet(file: &Path) -> anyhow::Result<Self> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::record::Field;
        let open = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        let reader = SerializedFileReader::new(open).with_context(|| format!("{} is not a Parquet file", file.display()))?;
        let schema = reader.metadata().file_metadata().schema_descr();
        let columns: Vec<String> = (0..schema.num_columns()).map(|i| schema.column(i).name().to_string()).collect();
        refuse_repeated_columns(file, &columns)?;
        let mut rows = Vec::new();
        for row in reader.get_row_iter(None)? {
            let row = row.with_context(|| format!("{}: unreadable row", file.display()))?;
            rows.push(
                row.get_column_iter()
                    .map(|(_, field)| match field {
                        Field::Null => String::new(),
                        Field::Str(s) => s.clone(),
                        Field::Double(v) => v.to_string(),
                        Field::Float(v) => v.to_string(),
                        Field::Long(v) => v.to_string(),
                        Field::Int(v) => v.to_string(),
                        other => other.to_string(),
                    })
                    .collect(),
            );
        }
        Ok(Self { path: file.to_path_buf(), columns, rows })
    }
}

/// A column named twice would be read from its first place silently: refused, naming both.
fn refuse_repeated_columns(file: &Path, columns: &[String]) -> anyhow::Result<()> {
    for (i, c) in columns.iter().enumerate() {
        if let Some(j) = columns[..i].iter().position(|d| d == c) {
            anyhow::bail!("{}: column `{c}` appears twice (columns {} and {}); rename one so that each name says one thing", file.display(), j + 1, i + 1);
        }
    }
    Ok(())
}

/// Which columns hold N, D (or C) and the loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// Non-embedding parameters.
    pub n: String,
    /// Training tokens (give this or `flops`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<String>,
    /// Training FLOPs; D = C / (6N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops: Option<String>,
    pub loss: String,
    /// Only rows of this sweep grid (the `grid` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<String>,
}

/// Points read from a table, and what was left out.
#[derive(Debug, Clone, Serialize)]
pub struct Points {
    pub points: Vec<super::law::Point>,
    /// Rows left out because their status was not `done`.
    pub excluded_not_done: usize,
    /// Rows left out by `drop_highest`.
    pub dropped_highest: usize,
}

/// The law's points from `table`: the rows `keep` marks (all when `None`), less trunks, other
/// kinds where there are branches, other grids, and runs not done.
pub fn points(table: &Observations, columns: &Columns, drop_highest: usize, keep: Option<&[bool]>) -> anyhow::Result<Points> {
    let n = table.numbers(&columns.n)?;
    let loss = table.numbers(&columns.loss)?;
    let d = match (&columns.tokens, &columns.flops) {
        (Some(t), None) => table.numbers(t)?,
        (None, Some(f)) => table.numbers(f)?.iter().zip(&n).map(|(c, n)| c / (6.0 * n)).collect(),
        _ => anyhow::bail!("give exactly one of --tokens COL and --flops COL (D = C / 6N)"),
    };
    if let Some(want) = &columns.grid {
        check_grid(table, want)?;
    }
    // In a sweep's table the points of the law are the decayed WSD branches when there are any
    // (trunks are stable-phase runs, and plain runs belong to other grids); otherwise every run.
    let has_branches = table.has_branches();
    let mut rows = Vec::new();
    let mut excluded = 0;
    for (i, row) in table.rows.iter().enumerate() {
        let other_kind = row.role.is_some_and(|r| r == RunRole::Trunk || (has_branches && r != RunRole::Branch));
        if other_kind || keep.is_some_and(|k| !k[i]) || columns.grid.as_ref().is_some_and(|want| row.grid.as_ref() != Some(want)) {
            continue;
        }
        if !row.is_done() {
            excluded += 1;
            continue;
        }
        rows.push((row.line, super::law::Point { n: n[i], d: d[i], loss: loss[i] }));
    }
    Points::checked(&table.source, rows, excluded, drop_highest)
}

/// `--grid want` names a grid the table has, or says which grids it has.
fn check_grid(table: &Observations, want: &str) -> anyhow::Result<()> {
    if !table.has(column::GRID) {
        anyhow::bail!("--grid {want}: the table has no `grid` column to select by; drop --grid, or fit a sweep's table.csv");
    }
    let mut grids: Vec<&str> = Vec::new();
    for grid in table.rows.iter().filter_map(|r| r.grid.as_deref()) {
        if !grids.contains(&grid) {
            grids.push(grid);
        }
    }
    anyhow::ensure!(grids.contains(&want), "--grid {want}: {} has no row of grid `{want}`; its grids are {}", table.source.display(), grids.join(", "));
    Ok(())
}

impl Points {
    /// Points computed rather than read (a curve's final point, a predicted decay), checked as a
    /// table's are; `source` names where they came from in messages.
    pub fn of(source: &Path, points: Vec<super::law::Point>) -> anyhow::Result<Self> {
        Self::checked(source, points.into_iter().enumerate().map(|(i, p)| (i + 2, p)).collect(), 0, 0)
    }

    /// The points of `rows` (each with its line in `source`), every one positive, finite and in
    /// range, highest loss first, less the `drop_highest` highest.
    fn checked(source: &Path, rows: Vec<(usize, super::law::Point)>, excluded_not_done: usize, drop_highest: usize) -> anyhow::Result<Self> {
        for (line, p) in &rows {
            check_point(source, *line, p)?;
        }
        let mut points: Vec<_> = rows.into_iter().map(|(_, p)| p).collect();
        let dropped = drop_highest.min(points.len());
        points.sort_by(|a, b| b.loss.total_cmp(&a.loss));
        let points: Vec<_> = points.split_off(dropped);
        Ok(Self { points, excluded_not_done, dropped_highest: dropped })
    }
}

/// Why the point at `line` of `source` cannot be one of the law's, if it cannot.
fn check_point(source: &Path, line: usize, p: &super::law::Point) -> anyhow::Result<()> {
    for (name, v) in [("N", p.n), ("D", p.d), ("loss", p.loss)] {
        anyhow::ensure!(v.is_finite() && v > 0.0, "{} line {line}: {name} = {v}; the law needs positive, finite N, D and loss", source.display());
    }
    // Beyond any model or corpus: a column in the wrong unit, or a wrong column.
    for (name, v, most) in [("N", p.n, MAX_PARAMS), ("D", p.d, MAX_TOKENS)] {
        anyhow::ensure!(
            v <= most,
            "{} line {line}: {name} = {v:e} is beyond any model or corpus (at most {most:e}); check the column and its unit",
            source.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("t.csv");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_columns_converts_flops_and_drops() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "N,C,loss,status\n1e6,6e12,3.0,done\n2e6,1.2e13,2.5,done\n1e6,6e12,9.0,diverged\n4e6,4.8e13,2.2,done\n");
        let t = Table::observations(&p).unwrap();
        let cols = Columns { n: "N".into(), tokens: None, flops: Some("C".into()), loss: "loss".into(), grid: None };
        let pts = points(&t, &cols, 1, None).unwrap();
        assert_eq!(pts.excluded_not_done, 1);
        assert_eq!(pts.dropped_highest, 1);
        assert_eq!(pts.points.len(), 2);
        assert!((pts.points[0].d - 1e6).abs() < 1e-6);
    }

    #[test]
    fn bad_tables_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "N,D,loss\n1e6,1e7,-3\n");
        let t = Table::observations(&p).unwrap();
        let cols = Columns { n: "N".into(), tokens: Some("D".into()), flops: None, loss: "loss".into(), grid: None };
        let e = points(&t, &cols, 0, None).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("loss = -3"), "{e}");
        let e = points(&t, &Columns { loss: "Loss".into(), ..cols.clone() }, 0, None).unwrap_err().to_string();
        assert!(e.contains("no column `Loss`") && e.contains("N, D, loss"), "{e}");
        let p = write(dir.path(), "N,D,loss\n1e6,1e7,NaN\n");
        let e = points(&Table::observations(&p).unwrap(), &cols, 0, None).unwrap_err().to_string();
        assert!(e.contains("loss = NaN"), "{e}");
        let p = write(dir.path(), "N,D,loss\n1e6,abc,3\n");
        let e = points(&Table::observations(&p).unwrap(), &cols, 0, None).unwrap_err().to_string();
        assert!(e.contains("`abc`"), "{e}");
    }
}
