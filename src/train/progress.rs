//! Progress of a run on stderr: a bar (tokens, loss, tokens/s, ETA) on a terminal, plain lines
//! at most every few seconds otherwise (logs of batch jobs and sweep workers).

use std::cell::Cell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::log::MetricsRecord;
use crate::format::si;

pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    steps: u64,
    tokens_per_step: u64,
    started: Instant,
    start_step: u64,
    last_line: Cell<Option<Instant>>,
}

const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    pub fn new(steps: u64, start_step: u64, tokens_per_step: u64, quiet: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let bar = ProgressBar::new(steps * tokens_per_step);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} tokens  {msg}  ETA {eta}")
                    .expect("valid template"),
            );
            bar.set_position(start_step * tokens_per_step);
            bar.reset_eta();
            bar
        });
        Self { bar, plain: !quiet && !terminal, steps, tokens_per_step, started: Instant::now(), start_step, last_line: Cell::new(None) }
    }

    pub fn update(&self, r: &MetricsRecord) {
        let mut eval = r.eval_loss.map(|e| format!(" eval {e:.4}")).unwrap_or_default();
        for (name, loss) in &r.evals {
            let loss = loss.map_or("n/a".to_string(), |l| format!("{l:.4}"));
            eval.push_str(&format!(" {} {loss}", super::eval_sets::column(name)));
        }
        let msg = format!("loss {:.4}{eval}  lr {:.2e}  {}/s", r.train_loss, r.lr, si(r.tokens_per_s));
        if let Some(bar) = &self.bar {
            bar.set_position(r.tokens);
            bar.set_message(msg);
        } else if self.plain {
            let due = self.last_line.get().is_none_or(|t| t.elapsed() >= PLAIN_EVERY);
            if due || r.eval_loss.is_some() || r.step == self.steps {
                let done = (r.step - self.start_step) as f64;
                let left = (self.steps - r.step) as f64;
                let eta = self.started.elapsed().as_secs_f64() / done.max(1.0) * left;
                crate::stderr_line!("step {}/{} tokens {} {msg} ETA {eta:.0}s", r.step, self.steps, si((r.step * self.tokens_per_step) as f64));
                self.last_line.set(Some(Instant::now()));
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
