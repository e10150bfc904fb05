//! What `fit mixture` says on stderr while it works: once it has run for three seconds, a line at
//! most every five saying which stage it is in and how far that stage has got.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FIRST_LINE: Duration = Duration::from_secs(3);
const EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    on: bool,
    started: Instant,
    last_line: Mutex<Option<Instant>>,
    stage: Mutex<String>,
    pieces: AtomicUsize,
    done: AtomicUsize,
}

impl Progress {
    /// Lines on stderr when `on`; silent otherwise.
    pub fn new(on: bool) -> Self {
        Self {
            on,
            started: Instant::now(),
            last_line: Mutex::new(None),
            stage: Mutex::new(String::new()),
            pieces: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }

    /// A stage of `pieces` pieces begins.
    pub fn begin(&self, stage: String, pieces: usize) {
        *self.stage.lock().unwrap_or_else(|e| e.into_inner()) = stage;
        self.pieces.store(pieces, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }

    /// One piece done; a line when one is due.
    pub fn done_one(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        if !self.on || now - self.started < FIRST_LINE {
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| now - t < EVERY) && done < self.pieces.load(Ordering::Relaxed) {
            return;
        }
        *last = Some(now);
        let stage = self.stage.lock().unwrap_or_else(|e| e.into_inner()).clone();
        crate::stderr_line!("fit mixture: {stage}, {done}/{} done, {:.0} s elapsed", self.pieces.load(Ordering::Relaxed), (now - self.started).as_secs_f64());
    }
}
