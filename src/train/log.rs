//! What a run writes while it trains: `metrics.jsonl` (one JSON object per logged step, appended
//! a whole line per write so a killed run leaves a readable file) and `status.json` (replaced
//! atomically as the run moves through `running → done | failed | diverged | interrupted`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::fsutil::atomic_write;
use crate::layout::RunDir;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    /// Completed optimizer steps.
    pub step: u64,
    /// Training tokens seen after this step.
    pub tokens: u64,
    /// Training FLOPs so far, precise count (6N + attention + LM head per token).
    pub flops: f64,
    /// 6·N·tokens.
    pub flops_6nd: f64,
    /// Base learning rate of this step: η · schedule(tokens after the step).
    pub lr: f64,
    /// Training loss of this step's batch, nats/token.
    pub train_loss: f64,
    /// Held-out loss, nats/token, when evaluated at this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    /// The loss of each named evaluation set (`training.evals`), nats/token, when evaluated at
    /// this step; null where not a finite number, absent for a run without named sets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evals: BTreeMap<String, Option<f64>>,
    /// Held-out bits per byte (byte-level data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_bits_per_byte: Option<f64>,
    /// The exact loss floor of the held-out split (synthetic data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_loss: Option<f64>,
    /// ‖g‖₂ before clipping.
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    /// Training wall seconds so far, summed over resumes.
    pub wall_s: f64,
    /// On the first line logged after each start or resume: seconds from the process start (a
    /// persistent worker: from its taking the run) to the end of the first step — start-up cost,
    /// GPU kernel compilation included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_step_s: Option<f64>,
    /// On the same line, on the CPU: the threads training used (RAYON_NUM_THREADS, or a sweep's
    /// share of the cores), which `tokens_per_s` depends on and the losses do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_threads: Option<usize>,
}

/// Append-only `metrics.jsonl`.
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// Open the log of `dir`, keeping only records up to `keep_through_step` (those after it are
    /// reproduced exactly when a run resumes from a checkpoint at that step).
    pub fn open(dir: &Path, keep_through_step: u64) -> anyhow::Result<Self> {
        let path = RunDir::new(dir).metrics();
        if path.exists() {
            // Keep the kept lines byte for byte: what was logged is never rewritten.
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let mut kept = String::new();
            for (i, line) in lines.iter().enumerate() {
                match serde_json::from_str::<MetricsRecord>(line) {
                    Ok(record) if record.step <= keep_through_step => {
                        kept.push_str(line);
                        kept.push('\n');
                    }
                    Ok(_) => {}
                    // A line torn by a crash mid-write is dropped, as `read_metrics` does.
                    Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
                    Err(e) => anyhow::bail!("{} line {}: {e}", path.display(), i + 1),
                }
            }
            if kept.len() != text.len() {
                atomic_write(&path, kept.as_bytes())?;
            }
        }
        Ok(Self { path })
    }

    /// Append one record as one write of one line.
    pub fn append(&mut self, record: &MetricsRecord) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        let mut f = OpenOptions::new().create(true).append(true).open(&self.path).with_context(|| format!("cannot open {}", self.path.display()))?;
        f.write_all(line.as_bytes()).with_context(|| format!("cannot append to {}", self.path.display()))
    }
}

/// Read `metrics.jsonl`, ignoring a torn last line (a run killed mid-write). Steps must rise
/// line by line: a repeated or earlier step means two processes wrote the run, and is refused.
pub fn read_metrics(path: &Path) -> anyhow::Result<Vec<MetricsRecord>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out: Vec<MetricsRecord> = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<MetricsRecord>(line) {
            Ok(r) => {
                if let Some(before) = out.last().filter(|b| b.step >= r.step) {
                    anyhow::bail!(
                        "{} line {}: step {} follows step {}: two processes wrote this run. Delete {} and train it again",
                        path.display(),
                        i + 1,
                        r.step,
                        before.step,
                        path.parent().map_or(path, |p| p).display()
                    );
                }
                out.push(r)
            }
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => anyhow::bail!("{} line {}: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Done,
    Failed,
    Diverged,
    Interrupted,
    /// Stopped where its `pause.json` asked (a trunk an adaptive sweep needs only so far); more
    /// of it can be trained later, from there.
    Paused,
}

impl RunState {
    /// Done or diverged: a result that no executor runs again.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Done | Self::Diverged)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Diverged => "diverged",
            Self::Interrupted => "interrupted",
            Self::Paused => "paused",
        })
    }
}

/// `status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub step: u64,
    pub steps: u64,
    pub tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    /// The latest loss of each named evaluation set, as in `metrics.jsonl`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evals: BTreeMap<String, Option<f64>>,
    pub pid: u32,
    /// Seconds since the Unix epoch.
    pub updated_at: f64,
}

pub fn write_status(dir: &Path, status: &Status) -> anyhow::Result<()> {
    atomic_write(&RunDir::new(dir).status(), serde_json::to_string_pretty(status)?.as_bytes())
}

pub fn read_status(dir: &Path) -> anyhow::Result<Option<Status>> {
    let path = RunDir::new(dir).status();
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(serde_json::from_str(&t).with_context(|| format!("{} is malformed", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn now_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64) -> MetricsRecord {
        MetricsRecord {
            step,
            tokens: step * 10,
            flops: 1.0,
            flops_6nd: 1.0,
            lr: 0.1,
            train_loss: 2.0,
            eval_loss: None,
            evals: BTreeMap::new(),
            eval_bits_per_byte: None,
            oracle_loss: None,
            grad_norm: 1.0,
            first_step_s: None,
            cpu_threads: None,
            tokens_per_s: 5.0,
            wall_s: 1.0,
        }
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_resume_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), 0).unwrap();
        for s in 1..=5 {
            log.append(&record(s)).unwrap();
        }
        let path = dir.path().join("metrics.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"step\": 6, \"tok").unwrap();
        assert_eq!(read_metrics(&path).unwrap().len(), 5);
        MetricsLog::open(dir.path(), 3).unwrap();
        assert_eq!(read_metrics(&path).unwrap().iter().map(|r| r.step).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn resuming_keeps_the_logged_lines_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), 0).unwrap();
        for s in 1..=4 {
            // Values whose shortest decimal forms do not survive an inexact parse.
            log.append(&MetricsRecord { tokens_per_s: 91744.69744318997 + s as f64, wall_s: 0.028917652 * s as f64, ..record(s) }).unwrap();
        }
        let path = dir.path().join("metrics.jsonl");
        let before = std::fs::read_to_string(&path).unwrap();
        MetricsLog::open(dir.path(), 2).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        let first_two: String = before.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(after, first_two);
        assert_eq!(read_metrics(&path).unwrap()[0].tokens_per_s, 91745.69744318997);
    }
}
