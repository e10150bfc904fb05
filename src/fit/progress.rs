//! What a long fit (`fit curve`, `fit mixture`) says while it works, on stderr: once it has run
//! for [`FIRST_LINE`], a line at most every [`EVERY`] saying which stage it is in and how far that
//! stage has got (objective evaluations, bootstrap refits, runs predicted), and with `--verbose`
//! the time each stage took. Quiet by default: `plot`, `report`, `serve` and `fit law
//! --from-curves` fit the curve law silently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The first progress line comes after this long.
pub const FIRST_LINE: Duration = Duration::from_secs(3);
/// And the next ones at most this often.
pub const EVERY: Duration = Duration::from_secs(5);

/// How much a fit says on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Progress {
    /// Nothing.
    #[default]
    Quiet,
    /// A progress line on a fit longer than a few seconds.
    Lines,
    /// Those, and the time each stage took.
    Verbose,
}

/// The progress of one fit, shared by the threads that fit it.
pub struct Reporter {
    /// The command its lines name ("fit curve").
    command: &'static str,
    progress: Progress,
    started: Instant,
    last_line: Mutex<Option<Instant>>,
    /// The current stage: its name and when it began.
    stage: Mutex<(String, Instant)>,
    /// Its pieces (bootstrap refits, runs predicted): how many, and how many are done.
    pieces: AtomicU64,
    done: AtomicU64,
    evaluations: AtomicU64,
}

impl Reporter {
    pub fn new(command: &'static str, progress: Progress) -> Self {
        let now = Instant::now();
        Self {
            command,
            progress,
            started: now,
            last_line: Mutex::new(None),
            stage: Mutex::new((String::new(), now)),
            pieces: AtomicU64::new(0),
            done: AtomicU64::new(0),
            evaluations: AtomicU64::new(0),
        }
    }

    /// A stage of `pieces` pieces (0: not counted) begins, e.g. "N=23.7K lr=0.04: bootstrap"
    /// of 100 refits; its counts start from zero.
    pub fn begin(&self, stage: String, pieces: usize) {
        *self.stage.lock().unwrap_or_else(|e| e.into_inner()) = (stage, Instant::now());
        self.pieces.store(pieces as u64, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.evaluations.store(0, Ordering::Relaxed);
    }

    /// The stage ends: with `--verbose`, the time it took and what it did.
    pub fn end(&self) {
        if self.progress == Progress::Verbose {
            let (stage, began) = self.stage.lock().unwrap_or_else(|e| e.into_inner()).clone();
            crate::stderr_line!("{}: {stage} in {:.2} s{}", self.command, began.elapsed().as_secs_f64(), self.counts());
        }
    }

    /// One evaluation of the objective.
    pub fn evaluated(&self) {
        self.evaluations.fetch_add(1, Ordering::Relaxed);
        self.tick();
    }

    /// One piece of the stage done.
    pub fn done_one(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.tick();
    }

    /// ", 37/100 done, 2930 evaluations of the objective", as far as counted.
    fn counts(&self) -> String {
        let pieces = match self.pieces.load(Ordering::Relaxed) {
            0 => String::new(),
            n => format!(", {}/{n} done", self.done.load(Ordering::Relaxed)),
        };
        match self.evaluations.load(Ordering::Relaxed) {
            0 => pieces,
            n => format!("{pieces}, {n} evaluations of the objective"),
        }
    }

    /// A progress line, when one is due.
    fn tick(&self) {
        if self.progress == Progress::Quiet || self.started.elapsed() < FIRST_LINE {
            return;
        }
        {
            let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let stage = self.stage.lock().unwrap_or_else(|e| e.into_inner()).0.clone();
        crate::stderr_line!("{}: {stage}{}, {:.0} s elapsed", self.command, self.counts(), self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_counts_from_zero() {
        let r = Reporter::new("fit curve", Progress::Quiet);
        r.begin("fit".into(), 0);
        r.evaluated();
        r.evaluated();
        assert_eq!(r.counts(), ", 2 evaluations of the objective");
        r.begin("bootstrap".into(), 3);
        r.done_one();
        assert_eq!(r.counts(), ", 1/3 done");
    }
}
