//! Progress of a local sweep on a terminal: one live bar for the whole sweep (its FLOPs, the run
//! counts, an ETA) and one bar per running run (its steps and last eval loss). Finished runs are
//! printed above the bars. Off a terminal the executor prints plain lines instead.

use std::cell::RefCell;
use std::collections::HashMap;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::plan::PlannedRun;
use super::status::SweepStatus;

/// FLOPs are counted on the bar in units of this many, so the counts fit its integer position.
const FLOPS_UNIT: f64 = 1e6;

pub struct SweepBars {
    multi: MultiProgress,
    overall: ProgressBar,
    runs: RefCell<HashMap<String, ProgressBar>>,
}

impl SweepBars {
    pub fn new(status: &SweepStatus) -> Self {
        let multi = MultiProgress::new();
        let overall = multi.add(ProgressBar::new((status.flops_total / FLOPS_UNIT).ceil() as u64));
        overall.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% of the FLOPs  {msg}  ETA {eta}").expect("valid template"),
        );
        overall.set_position((status.flops_done / FLOPS_UNIT) as u64);
        overall.reset_eta();
        Self { multi, overall, runs: RefCell::new(HashMap::new()) }
    }

    /// A line above the bars.
    pub fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    /// Move the bars to `status`; `running` are the runs with a live worker.
    pub fn update(&self, status: &SweepStatus, running: &[&PlannedRun]) {
        self.overall.set_position((status.flops_done / FLOPS_UNIT) as u64);
        self.overall.set_message(format!(
            "{} done, {} running, {} diverged, {} failed of {}",
            status.done,
            running.len(),
            status.diverged,
            status.failed,
            status.runs
        ));
        let mut bars = self.runs.borrow_mut();
        bars.retain(|id, bar| {
            let alive = running.iter().any(|r| &r.id == id);
            if !alive {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
            alive
        });
        for r in running {
            let Some(detail) = status.detail.iter().find(|d| d.id == r.id) else { continue };
            let bar = bars.entry(r.id.clone()).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(detail.steps.max(1)));
                bar.set_style(ProgressStyle::with_template("  {prefix} {bar:30} {pos}/{len} steps  {msg}").expect("valid template"));
                bar.set_prefix(format!("{} {} {} width {}", r.id, r.kind, r.grid, r.width));
                bar
            });
            if detail.steps > 0 {
                bar.set_length(detail.steps);
            }
            bar.set_position(detail.step);
            bar.set_message(detail.eval_loss.map(|e| format!("eval {e:.4}")).unwrap_or_default());
        }
    }

    pub fn finish(&self) {
        for bar in self.runs.borrow().values() {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
    }
}
