//! Following a run's `metrics.jsonl` as it grows: each refresh reads only the bytes appended since
//! the last (the offset is remembered; a line cut mid-write waits for its end), skips lines that
//! do not parse, and keeps a bounded curve — every evaluation, and training losses thinned by a
//! stride that doubles whenever more than [`MAX_TRAIN_POINTS`] would be kept — so memory stays
//! bounded however long the run logs.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use crate::train::log::MetricsRecord;

/// Training-loss points kept per run (evaluations are always kept).
pub const MAX_TRAIN_POINTS: usize = 512;

/// One kept point: tokens, FLOPs, training loss, held-out loss when evaluated at that step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint(pub f64, pub f64, pub f32, pub Option<f32>);

/// The latest line of a run, for the progress table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latest {
    pub step: u64,
    pub tokens: u64,
    pub train_loss: f64,
    pub eval_loss: Option<f64>,
    pub tokens_per_s: f64,
}

#[derive(Debug, Default)]
pub struct Tail {
    offset: u64,
    /// The start of a line whose end is not written yet.
    carry: Vec<u8>,
    points: Vec<CurvePoint>,
    /// Keep every `stride`-th training line.
    stride: u64,
    lines: u64,
    /// Training-only points kept.
    train_points: usize,
    /// The last point is the newest line, kept only until a newer one comes (the stride skips it).
    provisional_last: bool,
    pub skipped_lines: u64,
    pub latest: Option<Latest>,
    pub last_eval: Option<f64>,
    /// The exact loss floor the run's evaluations logged (synthetic data).
    pub oracle_loss: Option<f64>,
    /// When the file last grew, by its modification time.
    pub modified: Option<SystemTime>,
    /// Bumped whenever the kept curve changes (clients ask for what changed since a version).
    pub version: u64,
}

impl Tail {
    pub fn points(&self) -> &[CurvePoint] {
        &self.points
    }

    /// Read what was appended to `path` since the last call. `version` is the value to stamp a
    /// change with. A file that shrank (rewritten) is read again from the start.
    pub fn refresh(&mut self, path: &Path, version: u64) {
        let Ok(meta) = std::fs::metadata(path) else { return };
        let len = meta.len();
        if len < self.offset {
            *self = Tail::default();
        }
        if len == self.offset {
            return;
        }
        let Ok(mut file) = std::fs::File::open(path) else { return };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut bytes = std::mem::take(&mut self.carry);
        let before = bytes.len();
        if file.take(len - self.offset).read_to_end(&mut bytes).is_err() {
            self.carry = bytes;
            return;
        }
        self.offset += (bytes.len() - before) as u64;
        self.modified = meta.modified().ok();
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.carry = bytes.split_off(complete);
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<MetricsRecord>(line) {
                Ok(m) => self.add(&m),
                Err(_) => self.skipped_lines += 1,
            }
        }
        self.version = version;
    }

    fn add(&mut self, m: &MetricsRecord) {
        self.stride = self.stride.max(1);
        let eval = m.eval_loss.filter(|l| l.is_finite());
        if self.provisional_last {
            self.points.pop();
            self.train_points -= 1;
        }
        self.points.push(CurvePoint(m.tokens as f64, m.flops, m.train_loss as f32, eval.map(|e| e as f32)));
        self.train_points += usize::from(eval.is_none());
        self.provisional_last = eval.is_none() && !self.lines.is_multiple_of(self.stride);
        self.lines += 1;
        if self.train_points > MAX_TRAIN_POINTS {
            self.thin();
        }
        self.last_eval = eval.or(self.last_eval);
        self.oracle_loss = m.oracle_loss.or(self.oracle_loss);
        self.latest = Some(Latest { step: m.step, tokens: m.tokens, train_loss: m.train_loss, eval_loss: self.last_eval, tokens_per_s: m.tokens_per_s });
    }

    /// Double the stride: drop every other training-only point; evaluations and the newest stay.
    fn thin(&mut self) {
        self.stride *= 2;
        let last = self.points.len() - 1;
        let mut train_index = 0usize;
        self.points = std::mem::take(&mut self.points)
            .into_iter()
            .enumerate()
            .filter(|(i, p)| {
                let keep = p.3.is_some() || *i == last || train_index.is_multiple_of(2);
                train_index += usize::from(p.3.is_none());
                keep
            })
            .map(|(_, p)| p)
            .collect();
        self.train_points = self.points.iter().filter(|p| p.3.is_none()).count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(step: u64, eval: Option<f64>) -> String {
        let eval = eval.map(|e| format!(",\"eval_loss\":{e}")).unwrap_or_default();
        format!(
            "{{\"step\":{step},\"tokens\":{},\"flops\":{},\"flops_6nd\":1.0,\"lr\":0.01,\"train_loss\":{}{eval},\"grad_norm\":1.0,\"tokens_per_s\":100.0,\"wall_s\":1.0}}\n",
            step * 10,
            step as f64 * 1e3,
            4.0 - step as f64 * 1e-4
        )
    }

    #[test]
    fn reads_only_what_was_appended_waits_for_cut_lines_and_skips_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(line(1, None).as_bytes()).unwrap();
        let second = line(2, Some(3.5));
        f.write_all(&second.as_bytes()[..20]).unwrap();
        let mut t = Tail::default();
        t.refresh(&path, 1);
        assert_eq!(t.points().len(), 1);
        assert_eq!((t.version, t.latest.unwrap().step), (1, 1));
        f.write_all(&second.as_bytes()[20..]).unwrap();
        f.write_all(b"not json\n{\"step\": \n").unwrap();
        t.refresh(&path, 2);
        assert_eq!(t.points().len(), 2);
        assert_eq!(t.points()[1].3, Some(3.5));
        assert_eq!(t.skipped_lines, 2);
        // Nothing new: nothing read, the version stays.
        t.refresh(&path, 3);
        assert_eq!(t.version, 2);
        // Rewritten shorter: read again from the start.
        std::fs::write(&path, line(7, None)).unwrap();
        t.refresh(&path, 4);
        assert_eq!((t.points().len(), t.latest.unwrap().step), (1, 7));
    }

    #[test]
    fn the_curve_stays_bounded_and_keeps_every_evaluation_and_the_last_point() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let text: String = (1..=10_000).map(|s| line(s, (s % 1000 == 0).then_some(3.0))).collect();
        std::fs::write(&path, text).unwrap();
        let mut t = Tail::default();
        t.refresh(&path, 1);
        let train = t.points().iter().filter(|p| p.3.is_none()).count();
        assert!(train <= MAX_TRAIN_POINTS && train > MAX_TRAIN_POINTS / 4, "{train}");
        assert_eq!(t.points().iter().filter(|p| p.3.is_some()).count(), 10);
        assert_eq!(t.points().last().unwrap().0, 100_000.0);
        assert!(t.points().windows(2).all(|w| w[0].0 < w[1].0), "in order");
    }
}
