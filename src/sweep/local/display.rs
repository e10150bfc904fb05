//! What the local executor shows while it runs: on a terminal the live bars of
//! [`crate::sweep::progress`] every half second; piped or in a batch log a progress line every
//! 15 s with each running run's step and last eval loss.

use std::time::{Duration, Instant};

use super::Scheduler;
use crate::sweep::plan::PlannedRun;
use crate::sweep::status::files_view;
use crate::train::log::read_status;

impl Scheduler<'_> {
    /// The live bars every half second, or on a pipe a progress line every 15 s.
    pub(super) fn show_progress(&mut self) {
        let every = if self.bars.is_some() { Duration::from_millis(500) } else { Duration::from_secs(15) };
        if self.options.quiet || self.last_progress.elapsed() < every {
            return;
        }
        self.last_progress = Instant::now();
        // Counts and FLOPs from the runs' own files, the same view `windtunnel status` has.
        let Ok(s) = files_view(self.sweep) else { return };
        if let Some(b) = &self.bars {
            let running: Vec<&PlannedRun> = self.workers.iter().map(|w| &self.plan.runs[w.run]).collect();
            b.update(&s, &running);
            return;
        }
        let fraction = s.flops_done / s.flops_total.max(1.0);
        let done_now = (fraction - self.start_fraction).max(1e-9);
        let eta = self.started.elapsed().as_secs_f64() / done_now * (1.0 - fraction);
        crate::stderr_line!(
            "[{} done, {} running, {} diverged, {} failed of {}] {:.1}% of {:.3e} FLOPs, ETA {eta:.0}s",
            s.done,
            s.running,
            s.diverged,
            s.failed,
            s.runs,
            100.0 * fraction,
            s.flops_total
        );
        for w in &self.workers {
            let r = &self.plan.runs[w.run];
            let st = read_status(self.sweep.run(&r.id).root()).ok().flatten();
            let (step, steps, eval) = st.map_or((0, 0, None), |s| (s.step, s.steps, s.eval_loss));
            let eval = eval.map(|e| format!(" eval {e:.4}")).unwrap_or_default();
            crate::stderr_line!("    {} {} width {} step {step}/{steps}{eval} ({:.0}s)", r.id, r.kind, r.width, w.started.elapsed().as_secs_f64());
        }
    }
}
