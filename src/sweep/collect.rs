//! `windtunnel collect DIR`: the results table, `table.csv` and `table.parquet`, one row per
//! finished run or branch, from the runs' files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::status::read_plan;
use crate::fit::observation::{Observations, Value};
use crate::fsutil::atomic_write;
use crate::layout::{RunDir, SweepDir};
use crate::train::log::{read_metrics, read_status, MetricsRecord, RunState, Status};
use crate::train::run::RunRecord;

/// Names of the results table's columns that other stages read by name (the fits' defaults).
pub use crate::fit::observation::column;

/// The fixed columns of `table.csv`, in order; the named evaluation sets' final losses follow as
/// `eval/<name>` (only in a sweep that has named sets), then, in a sweep with a mixture grid, the
/// run's mixture id (`mixture`) and its weight of each domain (`weight/<domain>`, summing to 1;
/// empty for a run on no mixture), then swept parameters as `param.<key>`.
pub const COLUMNS: &[&str] = &[
    "run_id",
    "trunk_id",
    column::KIND,
    column::GRID,
    column::STATUS,
    "seed",
    column::WIDTH,
    column::DEPTH,
    "heads",
    "kv_heads",
    column::PARAMETERIZATION,
    column::DEPTH_RULE,
    column::LR,
    column::BATCH_SIZE,
    column::SEQ_LEN,
    column::NON_EMBEDDING_PARAMS,
    "total_params",
    column::TOKENS,
    "flops_6nd",
    column::FLOPS,
    column::FINAL_EVAL_LOSS,
    "best_eval_loss",
    "final_train_loss",
    "oracle_loss",
    "eval_bits_per_byte",
    "wall_s",
    "tokens_per_s",
];

#[derive(Debug, Clone, Serialize)]
pub struct CollectSummary {
    pub table: PathBuf,
    pub parquet: PathBuf,
    pub rows: usize,
    pub unfinished: usize,
    /// Runs left out of the table, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The results table of a sweep, built in memory from its runs' files, its cells typed: `collect`
/// writes it, and the fits, charts, report and export read it as observations without writing
/// anything.
#[derive(Debug, Clone)]
pub struct ResultsTable {
    pub header: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// Planned runs not finished (no row).
    pub unfinished: usize,
    /// Runs left out of the table, and why.
    pub warnings: Vec<String>,
}

impl ResultsTable {
    /// One row per finished run of the sweep, in plan order.
    pub fn read(sweep: &SweepDir) -> anyhow::Result<Self> {
        let plan = read_plan(sweep)?;
        let mut param_keys: Vec<String> = plan.runs.iter().flat_map(|r| r.params.iter().map(|(k, _)| k.clone())).collect();
        param_keys.sort();
        param_keys.dedup();
        let eval_sets = eval_set_names(&plan.runs);
        let mut header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
        header.extend(eval_sets.iter().map(|name| crate::train::eval_sets::column(name)));
        let domains = mixture_domains(&plan.runs);
        if !domains.is_empty() {
            header.push(MIXTURE.to_string());
            header.extend(domains.iter().map(|d| weight_column(d)));
        }
        header.extend(param_keys.iter().map(|k| format!("param.{k}")));
        let mut table = Self { header, rows: Vec::new(), unfinished: 0, warnings: Vec::new() };
        for r in &plan.runs {
            let run = sweep.run(&r.id);
            let status = match read_status(run.root()) {
                Ok(Some(status)) if status.state.is_finished() => status,
                Ok(_) => {
                    table.unfinished += 1;
                    continue;
                }
                Err(e) => {
                    table
                        .warnings
                        .push(format!("run {}: {e:#}; left out of the table (`windtunnel run` on the sweep trains it again from its newest checkpoint)", r.id));
                    table.unfinished += 1;
                    continue;
                }
            };
            let mut fields = row(&run, &status, r, &eval_sets)?;
            if !domains.is_empty() {
                fields.push(r.mixture.as_ref().map_or(Value::Missing, |m| Value::Text(m.id.clone())));
                fields.extend(domains.iter().map(|d| r.mixture.as_ref().and_then(|m| m.weights.get(d)).map_or(Value::Missing, |w| Value::Number(*w))));
            }
            for k in &param_keys {
                // As the sweep file wrote it (a number read back from it reads the same).
                fields.push(r.params.iter().find(|(key, _)| key == k).map_or(Value::Missing, |(_, v)| Value::Text(v.clone())));
            }
            table.rows.push(fields);
        }
        Ok(table)
    }

    pub fn to_csv(&self) -> String {
        let mut text = self.header.join(",");
        text.push('\n');
        for row in &self.rows {
            text.push_str(&row.iter().map(|f| csv_field(&f.to_string())).collect::<Vec<_>>().join(","));
            text.push('\n');
        }
        text
    }

    /// Write `table.csv` and `table.parquet` into the sweep directory.
    pub fn write(&self, sweep: &SweepDir) -> anyhow::Result<CollectSummary> {
        let (table, parquet) = (sweep.table_csv(), sweep.table_parquet());
        atomic_write(&table, self.to_csv().as_bytes())?;
        write_parquet(&parquet, &self.header, &self.rows).with_context(|| format!("writing {}", parquet.display()))?;
        Ok(CollectSummary { table, parquet, rows: self.rows.len(), unfinished: self.unfinished, warnings: self.warnings.clone() })
    }

    /// The table as the fits read it: one observation per finished run, from the sweep at `source`
    /// (lines as in `table.csv`).
    pub fn observations(self, source: &Path) -> anyhow::Result<Observations> {
        Observations::new(source, self.header, self.rows.into_iter().enumerate().map(|(i, r)| (i + 2, r)).collect())
    }
}

/// `windtunnel collect DIR`: write the sweep's results table from its runs' files.
pub fn collect(sweep: &SweepDir) -> anyhow::Result<CollectSummary> {
    ResultsTable::read(sweep)?.write(sweep)
}

/// The column of a run's mixture id.
pub const MIXTURE: &str = "mixture";

/// The column of a run's weight of `domain`: `weight/<domain>`.
pub fn weight_column(domain: &str) -> String {
    format!("weight/{domain}")
}

/// The domains of the sweep's mixtures, each once, in name order (none: no mixture grid).
fn mixture_domains(runs: &[super::plan::PlannedRun]) -> Vec<String> {
    let domains: std::collections::BTreeSet<&String> = runs.iter().filter_map(|r| r.mixture.as_ref()).flat_map(|m| m.weights.keys()).collect();
    domains.into_iter().cloned().collect()
}

/// The names of the named evaluation sets of a sweep's runs, each once, in the order they first
/// appear (a run file's order).
fn eval_set_names(runs: &[super::plan::PlannedRun]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for set in runs.iter().flat_map(|r| &r.config.training.evals) {
        if !names.contains(&set.name) {
            names.push(set.name.clone());
        }
    }
    names
}

/// The fixed columns of one finished run's row, then its final loss on each of `eval_sets`
/// (empty where the run has no such set).
fn row(run: &RunDir, status: &Status, r: &super::plan::PlannedRun, eval_sets: &[String]) -> anyhow::Result<Vec<Value>> {
    let run_json = run.record();
    let record: RunRecord = serde_json::from_str(&std::fs::read_to_string(&run_json).with_context(|| format!("cannot read {}", run_json.display()))?)
        .with_context(|| format!("{} is malformed", run_json.display()))?;
    let metrics = finished_metrics(run, status, &record)?;
    let last = metrics.last();
    let evals: Vec<&MetricsRecord> = metrics.iter().filter(|m| m.eval_loss.is_some()).collect();
    let number = |x: Option<f64>| x.map_or(Value::Missing, Value::Number);
    let text = |t: String| Value::Text(t);
    let c = &record.config;
    let final_evals = evals.last().map(|m| &m.evals);
    let mut fields = vec![
        text(r.id.clone()),
        r.trunk.clone().map_or(Value::Missing, text),
        text(r.kind.to_string()),
        text(r.grid.clone()),
        text(status.state.to_string()),
        Value::Count(c.seed),
        Value::Count(record.shape.width as u64),
        Value::Count(record.shape.depth as u64),
        Value::Count(record.shape.heads as u64),
        Value::Count(record.shape.kv_heads as u64),
        text(c.mup.parameterization.to_string()),
        text(c.mup.depth_rule.to_string()),
        Value::Number(c.optimizer.lr),
        Value::Count(c.training.batch_size as u64),
        Value::Count(c.training.seq_len as u64),
        Value::Count(record.non_embedding_params),
        Value::Count(record.total_params),
        Value::Count(last.map_or(0, |m| m.tokens)),
        number(last.map(|m| m.flops_6nd)),
        number(last.map(|m| m.flops)),
        number(evals.last().and_then(|m| m.eval_loss)),
        number(evals.iter().filter_map(|m| m.eval_loss).reduce(f64::min)),
        number(last.map(|m| m.train_loss)),
        number(record.oracle_eval_loss),
        number(evals.last().and_then(|m| m.eval_bits_per_byte)),
        number(last.map(|m| m.wall_s)),
        number(last.map(|m| m.tokens_per_s)),
    ];
    fields.extend(eval_sets.iter().map(|name| number(final_evals.and_then(|e| e.get(name).copied().flatten()))));
    Ok(fields)
}

/// The metrics of a finished run, checked to be whole: a done run's log ends in its final
/// evaluation at its last step, a diverged run's at the step it diverged.
fn finished_metrics(run: &RunDir, status: &Status, record: &RunRecord) -> anyhow::Result<Vec<MetricsRecord>> {
    let path = run.metrics();
    let train_anew = super::status::train_anew(run);
    if !path.exists() {
        anyhow::bail!(
            "{}: its status.json says {} but its metrics.jsonl is missing (deleted?), so its losses are lost and the table cannot include it. {train_anew}",
            run.root().display(),
            status.state
        );
    }
    let metrics = read_metrics(&path)?;
    let last = metrics.last();
    let end_step = if status.state == RunState::Done { record.steps } else { status.step };
    if status.state == RunState::Done && last.is_some_and(|m| m.step == record.steps && m.eval_loss.is_none()) {
        anyhow::bail!(
            "{}: its last line (step {end_step}) has no eval_loss (null or missing), so the run's final evaluation is not recorded: was the file edited? {train_anew}",
            path.display()
        );
    }
    anyhow::ensure!(
        last.is_some_and(|m| m.step == end_step),
        "{} does not end in the run's last logged step ({} ends at step {}, the run is {} at step {end_step}): the file was cut short. {train_anew}",
        path.display(),
        path.file_name().unwrap_or_default().to_string_lossy(),
        last.map_or("none".to_string(), |m| m.step.to_string()),
        status.state,
    );
    Ok(metrics)
}

/// The Parquet type of a column: the fixed text and integer columns by name, swept parameters by
/// whether every value is a number.
fn column_kind(name: &str, values: &[&Value]) -> ColumnKind {
    const TEXT: &[&str] = &["run_id", "trunk_id", "kind", "grid", "status", "parameterization", "depth_rule", MIXTURE];
    const INTEGER: &[&str] = &["seed", "width", "depth", "heads", "kv_heads", "batch_size", "seq_len", "non_embedding_params", "total_params", "tokens"];
    if TEXT.contains(&name) {
        ColumnKind::Text
    } else if INTEGER.contains(&name) {
        ColumnKind::Integer
    } else if values.iter().all(|v| v.number().is_some()) {
        ColumnKind::Float
    } else {
        ColumnKind::Text
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ColumnKind {
    Text,
    Integer,
    Float,
}

/// One row group, every column OPTIONAL (an empty cell is a null), written atomically.
fn write_parquet(path: &Path, header: &[String], rows: &[Vec<Value>]) -> anyhow::Result<()> {
    use parquet::basic::{ConvertedType, Repetition, Type as Physical};
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::types::Type;
    use std::sync::Arc;

    let kinds: Vec<ColumnKind> = (0..header.len()).map(|c| column_kind(&header[c], &rows.iter().map(|r| &r[c]).collect::<Vec<_>>())).collect();
    let fields = header
        .iter()
        .zip(&kinds)
        .map(|(name, kind)| {
            let builder = match kind {
                ColumnKind::Text => Type::primitive_type_builder(name, Physical::BYTE_ARRAY).with_converted_type(ConvertedType::UTF8),
                ColumnKind::Integer => Type::primitive_type_builder(name, Physical::INT64),
                ColumnKind::Float => Type::primitive_type_builder(name, Physical::DOUBLE),
            };
            builder.with_repetition(Repetition::OPTIONAL).build().map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let schema = Arc::new(Type::group_type_builder("table").with_fields(fields).build()?);
    crate::fsutil::atomic_write_with(path, |file| {
        let mut writer = SerializedFileWriter::new(file.try_clone()?, schema, Default::default())?;
        let mut group = writer.next_row_group()?;
        let mut c = 0;
        while let Some(mut column) = group.next_column()? {
            let cells: Vec<&Value> = rows.iter().map(|r| &r[c]).collect();
            let levels: Vec<i16> = cells.iter().map(|v| i16::from(**v != Value::Missing)).collect();
            let present = cells.iter().filter(|v| ***v != Value::Missing);
            let number = |v: &Value| v.number().with_context(|| format!("column `{}` holds `{v}`, not a number", header[c]));
            match kinds[c] {
                ColumnKind::Text => {
                    let values: Vec<ByteArray> = present.map(|v| ByteArray::from(v.to_string().as_str())).collect();
                    column.typed::<ByteArrayType>().write_batch(&values, Some(&levels), None)?;
                }
                ColumnKind::Integer => {
                    let values: Vec<i64> = present.map(|v| number(v).map(|x| x as i64)).collect::<Result<_, _>>()?;
                    column.typed::<Int64Type>().write_batch(&values, Some(&levels), None)?;
                }
                ColumnKind::Float => {
                    let values: Vec<f64> = present.map(|v| number(v)).collect::<Result<_, _>>()?;
                    column.typed::<DoubleType>().write_batch(&values, Some(&levels), None)?;
                }
            }
            column.close()?;
            c += 1;
        }
        group.close()?;
        writer.close()?;
        Ok(())
    })
}
