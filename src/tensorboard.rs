//! `windtunnel tensorboard DIR`: every run's metrics as TensorBoard event files, so
//! `tensorboard --logdir DIR/tensorboard` shows the sweep offline (and `wandb sync
//! --sync-tensorboard` can send it to W&B). `--follow` keeps them current while the sweep trains.
//!
//! The files are written in TensorBoard's documented format, without TensorFlow: a file of
//! TFRecords (`u64` length, masked CRC-32C of the length, the bytes, masked CRC-32C of the bytes),
//! each holding one `Event` protocol buffer: the first `{wall_time, file_version: "brain.Event:2"}`,
//! then one per logged step with `{wall_time, step, summary: {value: [{tag, simple_value}]}}`
//! (a named evaluation set's loss under the tag `eval/<name>`).
//! The step is the tokens trained, so branches line up with their trunk at their branch point.
//!
//! Each run gets `DIR/tensorboard/<grid>/<kind>-w<width>-<id>/events.out.tfevents.0.windtunnel`,
//! rewritten whole from `metrics.jsonl` when that changed (a resumed run's log is cut back to its
//! checkpoint, so appending would keep steps it no longer has). Nothing in the runs' own folders is
//! written.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::layout::SweepDir;
use crate::train::log::{read_metrics, MetricsRecord};

/// The scalars of one metrics line, as TensorBoard tags: a named evaluation set's loss is
/// `eval/<name>`, as in the results table.
fn scalars(m: &MetricsRecord) -> Vec<(Cow<'static, str>, f64)> {
    let fixed = [("loss/train", m.train_loss), ("optimizer/lr", m.lr), ("optimizer/grad_norm", m.grad_norm), ("speed/tokens_per_s", m.tokens_per_s)];
    let mut tags: Vec<(Cow<'static, str>, f64)> = fixed.into_iter().map(|(tag, v)| (Cow::Borrowed(tag), v)).collect();
    tags.extend(m.eval_loss.map(|v| ("loss/eval".into(), v)));
    tags.extend(m.eval_bits_per_byte.map(|v| ("loss/eval_bits_per_byte".into(), v)));
    tags.extend(m.oracle_loss.map(|v| ("loss/oracle".into(), v)));
    tags.extend(m.evals.iter().filter_map(|(name, v)| v.map(|v| (crate::train::eval_sets::column(name).into(), v))));
    tags.push(("compute/flops".into(), m.flops));
    tags
}

/// What one pass wrote.
#[derive(Debug, Default, Serialize)]
pub struct TensorboardSummary {
    pub logdir: PathBuf,
    /// Runs whose event file was (re)written.
    pub written: usize,
    /// Runs whose metrics had not changed since the last pass.
    pub unchanged: usize,
    /// Runs with no metrics yet.
    pub not_started: usize,
}

/// The event files of a sweep, and what each was written from (to skip unchanged runs).
pub struct TensorboardWriter {
    sweep: SweepDir,
    logdir: PathBuf,
    written_from: std::collections::HashMap<String, (u64, std::time::SystemTime)>,
}

impl TensorboardWriter {
    pub fn new(sweep: SweepDir, logdir: Option<PathBuf>) -> Self {
        let logdir = logdir.unwrap_or_else(|| sweep.tensorboard());
        Self { sweep, logdir, written_from: Default::default() }
    }

    /// Write the event file of every run whose metrics changed since the last pass.
    pub fn pass(&mut self) -> anyhow::Result<TensorboardSummary> {
        let plan = crate::sweep::status::read_plan(&self.sweep)?;
        let mut summary = TensorboardSummary { logdir: self.logdir.clone(), ..Default::default() };
        for run in &plan.runs {
            let metrics = self.sweep.run(&run.id).metrics();
            let Ok(meta) = std::fs::metadata(&metrics) else {
                summary.not_started += 1;
                continue;
            };
            let stamp = (meta.len(), meta.modified()?);
            if self.written_from.get(&run.id) == Some(&stamp) {
                summary.unchanged += 1;
                continue;
            }
            let records = read_metrics(&metrics)?;
            let folder = self.logdir.join(&run.grid).join(format!("{}-w{}-{}", run.kind, run.width, run.id));
            crate::fsutil::atomic_write(&folder.join("events.out.tfevents.0.windtunnel"), &event_file(&records))?;
            self.written_from.insert(run.id.clone(), stamp);
            summary.written += 1;
        }
        Ok(summary)
    }
}

/// A whole event file for a run's metrics.
pub fn event_file(records: &[MetricsRecord]) -> Vec<u8> {
    let started = crate::train::log::now_seconds();
    let mut out = Vec::new();
    let mut header = Vec::new();
    proto::double(&mut header, 1, started);
    proto::bytes(&mut header, 3, b"brain.Event:2");
    tfrecord(&mut out, &header);
    for m in records {
        let mut summary = Vec::new();
        for (tag, value) in scalars(m) {
            let mut v = Vec::new();
            proto::bytes(&mut v, 1, tag.as_bytes());
            proto::float(&mut v, 2, value as f32);
            proto::bytes(&mut summary, 1, &v);
        }
        let mut event = Vec::new();
        // The wall time of a step: the run's start plus its training seconds (the log keeps no clock time).
        proto::double(&mut event, 1, started + m.wall_s);
        proto::varint_field(&mut event, 2, m.tokens);
        proto::bytes(&mut event, 5, &summary);
        tfrecord(&mut out, &event);
    }
    out
}

/// One TFRecord: length, its masked CRC-32C, the data, its masked CRC-32C.
fn tfrecord(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// TFRecord's masked CRC: the CRC rotated right by 15 bits plus a constant.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli), bit by bit over a byte table.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, entry) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82f6_3b78 ^ (c >> 1) } else { c >> 1 };
            }
            *entry = c;
        }
        t
    });
    !data.iter().fold(!0u32, |crc, &b| table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8))
}

/// The few protocol-buffer encodings an event needs.
mod proto {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }
    pub fn double(out: &mut Vec<u8>, field: u64, v: f64) {
        varint(out, (field << 3) | 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn float(out: &mut Vec<u8>, field: u64, v: f32) {
        varint(out, (field << 3) | 5);
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(out: &mut Vec<u8>, field: u64, v: &[u8]) {
        varint(out, (field << 3) | 2);
        varint(out, v.len() as u64);
        out.extend_from_slice(v);
    }
}

/// Write the event files once, or with `follow` every `every` until Ctrl-C or SIGTERM.
pub fn run(dir: &Path, logdir: Option<PathBuf>, follow: bool, every: std::time::Duration) -> anyhow::Result<TensorboardSummary> {
    let mut writer = TensorboardWriter::new(SweepDir::new(dir), logdir);
    let mut summary = writer.pass()?;
    if !follow {
        return Ok(summary);
    }
    let stop = crate::process::stop_signal()?;
    crate::stderr_line!("following {}: tensorboard --logdir {} (Ctrl-C stops)", dir.display(), summary.logdir.display());
    while stop.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        std::thread::sleep(every);
        let pass = writer.pass()?;
        if pass.written > 0 {
            crate::stderr_line!("rewrote {} run(s)", pass.written);
        }
        summary = pass;
    }
    Ok(summary)
}

impl std::fmt::Display for TensorboardSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} run(s) written, {} unchanged, {} not started yet\n  tensorboard --logdir {}\n  wandb sync --sync-tensorboard -p PROJECT {}/GRID/RUN   (one W&B run per folder)",
            self.logdir.display(),
            self.written,
            self.unchanged,
            self.not_started,
            self.logdir.display(),
            self.logdir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check value of CRC-32C (RFC 3720's iSCSI polynomial) and TFRecord's mask.
    #[test]
    fn crc32c_matches_its_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
    }
}
