//! `windtunnel status DIR` (a sweep's progress from its files alone) and `windtunnel collect DIR`
//! (the results table `table.csv` and `table.parquet`: one row per finished run or branch).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::plan::{Plan, RunKind};
use crate::fsutil::{atomic_write, FileLock};
use crate::train::log::{read_metrics, read_status, MetricsRecord, RunState, Status};
use crate::train::run::{RunRecord, RUN_LOCK};

pub fn read_plan(dir: &Path) -> anyhow::Result<Plan> {
    let path = dir.join("plan.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} is not a sweep directory (no plan.json); start it with `windtunnel run SWEEP.toml`", dir.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is malformed", path.display()))
}

#[derive(Debug, Clone, Serialize)]
pub struct RunProgress {
    pub id: String,
    pub kind: RunKind,
    pub state: String,
    pub step: u64,
    pub steps: u64,
    pub eval_loss: Option<f64>,
    pub reason: Option<String>,
    /// For a sweep submitted to Slurm: the task's Slurm state when the files say it is unfinished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm: Option<super::slurm::TaskState>,
}

impl RunProgress {
    /// Done or diverged: a result that no executor runs again.
    pub fn is_finished(&self) -> bool {
        self.state == "done" || self.state == "diverged"
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepStatus {
    pub dir: PathBuf,
    pub runs: usize,
    pub pending: usize,
    pub running: usize,
    pub done: usize,
    pub diverged: usize,
    pub failed: usize,
    pub interrupted: usize,
    pub tokens_done: u64,
    pub tokens_total: u64,
    /// Training FLOPs done and planned (each run's own: a branch counts its decay only). Progress
    /// and ETAs use these: a token of a big model costs more than one of a small model.
    pub flops_done: f64,
    pub flops_total: f64,
    pub detail: Vec<RunProgress>,
    /// Why Slurm's view of a Slurm sweep is missing (e.g. no Slurm client on this machine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm_unavailable: Option<String>,
}

pub fn status(dir: &Path) -> anyhow::Result<SweepStatus> {
    let plan = read_plan(dir)?;
    let mut s = SweepStatus {
        dir: dir.to_path_buf(),
        runs: plan.runs.len(),
        pending: 0,
        running: 0,
        done: 0,
        diverged: 0,
        failed: 0,
        interrupted: 0,
        tokens_done: 0,
        tokens_total: 0,
        flops_done: 0.0,
        flops_total: 0.0,
        detail: Vec::new(),
        slurm_unavailable: None,
    };
    for r in &plan.runs {
        let own_tokens = r.tokens - r.from_tokens.unwrap_or(0);
        s.tokens_total += own_tokens;
        let run_dir = dir.join("runs").join(&r.id);
        let (state, step, steps, eval, reason) = match read_status(&run_dir) {
            Ok(None) => ("pending".to_string(), 0, 0, None, None),
            Ok(Some(x)) => match live_state(&run_dir, &x) {
                Some(dead) => (RunState::Interrupted.to_string(), x.step, x.steps, x.eval_loss, Some(dead)),
                None => (x.state.to_string(), x.step, x.steps, x.eval_loss, x.reason.clone()),
            },
            Err(e) => (
                "unknown".to_string(),
                0,
                0,
                None,
                Some(format!("{e:#}; `windtunnel run` on the sweep trains the run again from its newest checkpoint, which rewrites it")),
            ),
        };
        let tps = r.config.training.tokens_per_step();
        let own_done = (step * tps).saturating_sub(r.from_tokens.unwrap_or(0)).min(own_tokens);
        s.tokens_done += own_done;
        s.flops_total += r.own_flops;
        s.flops_done += r.own_flops * own_done as f64 / own_tokens.max(1) as f64;
        match state.as_str() {
            "pending" | "unknown" => s.pending += 1,
            "running" => s.running += 1,
            "done" => s.done += 1,
            "diverged" => s.diverged += 1,
            "failed" => s.failed += 1,
            _ => s.interrupted += 1,
        }
        s.detail.push(RunProgress { id: r.id.clone(), kind: r.kind, state, step, steps, eval_loss: eval, reason, slurm: None });
    }
    Ok(s)
}

/// Why a run whose status says "running" is not: no process holds its `run.lock` (the one that
/// trained it was killed without a chance to say so). `None` when the status can be believed.
fn live_state(run_dir: &Path, status: &Status) -> Option<String> {
    if status.state != RunState::Running || FileLock::holder(&run_dir.join(RUN_LOCK)).is_some() {
        return None;
    }
    Some(format!("the process that trained it (pid {}) is gone; `windtunnel run` resumes it from its newest checkpoint", status.pid))
}

/// `status`, and for a sweep submitted to Slurm, Slurm's view of every run its files do not
/// show finished (squeue, then sacct or scontrol; Slurm forgets cancelled pending tasks, so a
/// run Slurm no longer knows shows as UNKNOWN: resubmit with `run --executor slurm`).
pub fn status_with_slurm(dir: &Path) -> anyhow::Result<SweepStatus> {
    let mut s = status(dir)?;
    if !dir.join("slurm").join("jobs.json").exists() {
        return Ok(s);
    }
    let unfinished: Vec<String> = s.detail.iter().filter(|r| !r.is_finished()).map(|r| r.id.clone()).collect();
    match super::slurm::unfinished_tasks(dir, &unfinished) {
        Ok(view) => {
            for r in &mut s.detail {
                r.slurm = view.get(&r.id).cloned();
            }
        }
        Err(e) => s.slurm_unavailable = Some(format!("{e:#}")),
    }
    Ok(s)
}

impl std::fmt::Display for SweepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} runs — {} done, {} diverged, {} running, {} interrupted, {} failed, {} pending; {:.1}% of {:.3e} FLOPs ({} tokens)",
            self.dir.display(),
            self.runs,
            self.done,
            self.diverged,
            self.running,
            self.interrupted,
            self.failed,
            self.pending,
            100.0 * self.flops_done / self.flops_total.max(1.0),
            self.flops_total,
            crate::format::si(self.tokens_total as f64)
        )?;
        for r in self.detail.iter().filter(|r| r.state != "done") {
            write!(f, "  {} {:<7} {:<11} step {}/{}", r.id, r.kind.to_string(), r.state, r.step, r.steps)?;
            if let Some(t) = &r.slurm {
                write!(f, "  slurm {} {}{}", t.task, t.state, t.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())?;
                if r.state == "pending" && !t.alive() && t.state != "CANCELLED" {
                    write!(f, "  (the task ended without writing here: is {} on a file system the nodes share? see slurm/logs/)", self.dir.display())?;
                }
            }
            if let Some(reason) = &r.reason {
                write!(f, "  {}", reason.lines().next().unwrap_or(""))?;
            }
            writeln!(f)?;
        }
        if let Some(why) = &self.slurm_unavailable {
            writeln!(f, "(no Slurm view of the unfinished runs: {why}; the states above are from the files)")?;
        }
        Ok(())
    }
}

/// The fixed columns of `table.csv`, in order; swept parameters follow as `param.<key>`.
pub const COLUMNS: &[&str] = &[
    "run_id",
    "trunk_id",
    "kind",
    "grid",
    "status",
    "seed",
    "width",
    "depth",
    "heads",
    "kv_heads",
    "parameterization",
    "lr",
    "batch_size",
    "seq_len",
    "non_embedding_params",
    "total_params",
    "tokens",
    "flops_6nd",
    "flops",
    "final_eval_loss",
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

/// Write `DIR/table.csv` and `DIR/table.parquet` from the runs' files.
pub fn collect(dir: &Path) -> anyhow::Result<CollectSummary> {
    let plan = read_plan(dir)?;
    let mut param_keys: Vec<String> = plan.runs.iter().flat_map(|r| r.params.iter().map(|(k, _)| k.clone())).collect();
    param_keys.sort();
    param_keys.dedup();
    let mut header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    header.extend(param_keys.iter().map(|k| format!("param.{k}")));
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut unfinished = 0;
    let mut warnings = Vec::new();
    for r in &plan.runs {
        let run_dir = dir.join("runs").join(&r.id);
        let status = match read_status(&run_dir) {
            Ok(Some(status)) if status.state.is_finished() => status,
            Ok(_) => {
                unfinished += 1;
                continue;
            }
            Err(e) => {
                warnings.push(format!("run {}: {e:#}; left out of the table (`windtunnel run` on the sweep trains it again from its newest checkpoint)", r.id));
                unfinished += 1;
                continue;
            }
        };
        let run_json = run_dir.join("run.json");
        let record: RunRecord = serde_json::from_str(&std::fs::read_to_string(&run_json).with_context(|| format!("cannot read {}", run_json.display()))?)
            .with_context(|| format!("{} is malformed", run_json.display()))?;
        let metrics = finished_metrics(&run_dir, &status, &record)?;
        let last = metrics.last();
        let evals: Vec<&MetricsRecord> = metrics.iter().filter(|m| m.eval_loss.is_some()).collect();
        let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
        let tokens = last.map_or(0, |m| m.tokens);
        let c = &record.config;
        let mut fields = vec![
            r.id.clone(),
            r.trunk.clone().unwrap_or_default(),
            r.kind.to_string(),
            r.grid.clone(),
            status.state.to_string(),
            c.seed.to_string(),
            record.shape.width.to_string(),
            record.shape.depth.to_string(),
            record.shape.heads.to_string(),
            record.shape.kv_heads.to_string(),
            c.mup.parameterization.to_string(),
            c.optimizer.lr.to_string(),
            c.training.batch_size.to_string(),
            c.training.seq_len.to_string(),
            record.non_embedding_params.to_string(),
            record.total_params.to_string(),
            tokens.to_string(),
            opt(last.map(|m| m.flops_6nd)),
            opt(last.map(|m| m.flops)),
            opt(evals.last().and_then(|m| m.eval_loss)),
            opt(evals.iter().filter_map(|m| m.eval_loss).reduce(f64::min)),
            opt(last.map(|m| m.train_loss)),
            opt(record.oracle_eval_loss),
            opt(evals.last().and_then(|m| m.eval_bits_per_byte)),
            opt(last.map(|m| m.wall_s)),
            opt(last.map(|m| m.tokens_per_s)),
        ];
        for k in &param_keys {
            fields.push(r.params.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default());
        }
        rows.push(fields);
    }
    let mut text = header.join(",");
    text.push('\n');
    for row in &rows {
        text.push_str(&row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        text.push('\n');
    }
    let table = dir.join("table.csv");
    atomic_write(&table, text.as_bytes())?;
    let parquet = dir.join("table.parquet");
    write_parquet(&parquet, &header, &rows).with_context(|| format!("writing {}", parquet.display()))?;
    Ok(CollectSummary { table, parquet, rows: rows.len(), unfinished, warnings })
}

/// The metrics of a finished run, checked to be whole: a done run's log ends in its final
/// evaluation at its last step, a diverged run's at the step it diverged.
fn finished_metrics(run_dir: &Path, status: &Status, record: &RunRecord) -> anyhow::Result<Vec<MetricsRecord>> {
    let path = run_dir.join("metrics.jsonl");
    let metrics = read_metrics(&path)?;
    let last = metrics.last();
    let whole = match status.state {
        RunState::Done => last.is_some_and(|m| m.step == record.steps && m.eval_loss.is_some()),
        _ => last.is_some_and(|m| m.step == status.step),
    };
    anyhow::ensure!(
        whole,
        "{} does not end in the run's last logged step ({} ends at step {}, the run is {} at step {}{}): the file was cut short. \
         Delete {} and run the sweep again to train it anew",
        path.display(),
        path.file_name().unwrap_or_default().to_string_lossy(),
        last.map_or("none".to_string(), |m| m.step.to_string()),
        status.state,
        if status.state == RunState::Done { record.steps } else { status.step },
        if status.state == RunState::Done { " with its final evaluation" } else { "" },
        run_dir.display()
    );
    Ok(metrics)
}

/// The Parquet type of a column: the fixed text and integer columns by name, swept parameters by
/// whether every value parses as a number.
fn column_kind(name: &str, values: &[&str]) -> ColumnKind {
    const TEXT: &[&str] = &["run_id", "trunk_id", "kind", "grid", "status", "parameterization"];
    const INTEGER: &[&str] = &["seed", "width", "depth", "heads", "kv_heads", "batch_size", "seq_len", "non_embedding_params", "total_params", "tokens"];
    if TEXT.contains(&name) {
        ColumnKind::Text
    } else if INTEGER.contains(&name) {
        ColumnKind::Integer
    } else if values.iter().all(|v| v.is_empty() || v.parse::<f64>().is_ok()) {
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
fn write_parquet(path: &Path, header: &[String], rows: &[Vec<String>]) -> anyhow::Result<()> {
    use parquet::basic::{ConvertedType, Repetition, Type as Physical};
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::types::Type;
    use std::sync::Arc;

    let kinds: Vec<ColumnKind> = (0..header.len()).map(|c| column_kind(&header[c], &rows.iter().map(|r| r[c].as_str()).collect::<Vec<_>>())).collect();
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
            let cells: Vec<&str> = rows.iter().map(|r| r[c].as_str()).collect();
            let levels: Vec<i16> = cells.iter().map(|v| i16::from(!v.is_empty())).collect();
            let present = cells.iter().filter(|v| !v.is_empty());
            match kinds[c] {
                ColumnKind::Text => {
                    let values: Vec<ByteArray> = present.map(|v| ByteArray::from(*v)).collect();
                    column.typed::<ByteArrayType>().write_batch(&values, Some(&levels), None)?;
                }
                ColumnKind::Integer => {
                    let values: Vec<i64> = present.map(|v| v.parse::<f64>().map(|x| x as i64)).collect::<Result<_, _>>()?;
                    column.typed::<Int64Type>().write_batch(&values, Some(&levels), None)?;
                }
                ColumnKind::Float => {
                    let values: Vec<f64> = present.map(|v| v.parse::<f64>()).collect::<Result<_, _>>()?;
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
