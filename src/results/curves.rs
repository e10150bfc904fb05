//! A sweep's runs as loss curves for the curve law ([`crate::fit::curve`]): each run's learning
//! rate at every step, rebuilt from its config exactly as the trainer computes it
//! (`lr · schedule.factor(tokens after the step, run tokens)`), and its evaluations. A branch
//! holds only the evaluations of its decay (those before belong to its trunk, which is a curve
//! of its own); its schedule runs from step 1, warmup and stable phase included, as trained.
//!
//! Runs are grouped by model size and peak learning rate (and batch size, where the sweep varies
//! it): one law per group, or one joint law over groups with `--joint`. Each run is named
//! `ID wWIDTH GRID/KIND@TOKENS` (a branch: `@` its branch point; a plain run: its schedule's kind
//! and its tokens), which is what `--fit-runs` and `--predict-runs` match.

use super::{RunCurve, SweepResults};
use crate::fit::curve::data::Curve;
use crate::format::si;
use crate::sweep::plan::{PlannedRun, RunKind};
use crate::train::log::RunState;
use crate::train::schedule::{DecayShape, ScheduleSpec};

/// The learning rate of every step of a planned run, as its trainer sets it.
pub fn planned_rates(run: &PlannedRun) -> Vec<f64> {
    let c = &run.config;
    let tps = c.training.tokens_per_step();
    let total = c.training.steps() * tps;
    (1..=c.training.steps()).map(|k| c.optimizer.lr * c.schedule.factor(k * tps, total)).collect()
}

/// What `--fit-runs` and `--predict-runs` match: `ID wWIDTH GRID/KIND@TOKENS`.
pub fn run_name(run: &PlannedRun) -> String {
    let kind = match (run.kind, &run.config.schedule) {
        (RunKind::Plain, ScheduleSpec::Cosine { .. }) => "cosine".to_string(),
        (RunKind::Plain, ScheduleSpec::Wsd { .. }) => "wsd".to_string(),
        (RunKind::Plain, ScheduleSpec::Constant { .. }) => "constant".to_string(),
        (kind, _) => kind.to_string(),
    };
    format!("{} w{} {}/{kind}@{}", run.id, run.width, run.grid, run.from_tokens.unwrap_or(run.tokens))
}

impl SweepResults {
    /// Every run with an evaluation as a curve (see the module doc); runs not done are marked
    /// unfinished.
    pub fn loss_curves(&self) -> Vec<Curve> {
        let mut batches: Vec<u64> = self.runs.iter().map(|r| r.run.config.training.tokens_per_step()).collect();
        batches.sort_unstable();
        batches.dedup();
        self.runs.iter().filter_map(|r| curve_of(r, batches.len() > 1)).collect()
    }
}

impl SweepResults {
    /// The decay the sweep's branches use (the first branch's): its shape, and the share of the
    /// branch's whole run it takes.
    pub fn branch_decay(&self) -> Option<(DecayShape, f64)> {
        self.runs.iter().find_map(|r| match r.run.config.schedule {
            ScheduleSpec::Wsd { decay, decay_tokens, .. } if r.run.kind == RunKind::Branch => Some((decay, decay_tokens as f64 / r.run.tokens as f64)),
            _ => None,
        })
    }
}

fn curve_of(r: &RunCurve, name_batch: bool) -> Option<Curve> {
    let tps = r.run.config.training.tokens_per_step();
    let from_step = r.run.from_tokens.map_or(0, |t| t.div_ceil(tps));
    let evals: Vec<(u64, f64)> =
        r.metrics.iter().filter(|m| m.step > from_step).filter_map(|m| m.eval_loss.filter(|l| l.is_finite()).map(|l| (m.step, l))).collect();
    if evals.is_empty() {
        return None;
    }
    let lr = r.run.config.optimizer.lr;
    let batch = if name_batch { format!(" batch={}", si(tps as f64)) } else { String::new() };
    Some(Curve {
        run: run_name(&r.run),
        group: format!("N={} lr={lr}{batch}", si(r.run.n as f64)),
        lr: planned_rates(&r.run),
        tokens_per_step: Some(tps as f64),
        evals,
        finished: r.state == Some(RunState::Done),
    })
}
