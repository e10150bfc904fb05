//! What `serve` knows of one sweep, kept fresh from its files: the plan, each run's status, its
//! followed metrics ([`super::tail`]), and the fits, recomputed in the background whenever the set
//! of finished runs changes (a request is answered from the cache and never waits for a fit).
//!
//! Everything here only reads the sweep directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::tail::{CurvePoint, Latest, Tail};
use crate::layout::SweepDir;
use crate::sweep::plan::{Plan, RunKind};
use crate::sweep::status::{files_view_of, read_plan, RunView, SweepStatus};
use crate::train::log::RunState;

/// Files are looked at again at most this often, however many requests come.
const REFRESH_EVERY: Duration = Duration::from_millis(750);

/// One sweep being served.
pub struct LiveSweep {
    pub name: String,
    pub dir: PathBuf,
    state: Mutex<State>,
    fits: Arc<Mutex<Fits>>,
}

#[derive(Default)]
struct State {
    plan: Option<(Plan, Option<SystemTime>)>,
    status: Option<SweepStatus>,
    tails: HashMap<String, Tail>,
    refreshed: Option<Instant>,
    version: u64,
    /// First sight of the sweep's FLOPs done, for the ETA.
    first_seen: Option<(Instant, f64)>,
    error: Option<String>,
}

/// The fits as HTML (the report's own sections), for one set of finished runs.
#[derive(Default, Clone, Serialize)]
pub struct Fits {
    /// The finished runs they were computed from.
    pub finished_runs: usize,
    pub html: Option<String>,
    pub error: Option<String>,
    pub computing: bool,
    #[serde(skip)]
    key: Option<String>,
}

/// Progress of a sweep, for the page's header and the index: `windtunnel status`'s counts and
/// FLOPs (its per-run detail left out: `active` lists the running runs) and what only a watcher knows.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub name: String,
    #[serde(flatten)]
    pub status: Option<SweepStatus>,
    /// Seconds left at the rate seen (None until there is one).
    pub eta_s: Option<f64>,
    pub active: Vec<ActiveRun>,
    pub stalled: usize,
    pub oracle_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A running run, as the progress table shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveRun {
    pub id: String,
    pub kind: RunKind,
    pub width: usize,
    pub n: u64,
    pub step: u64,
    pub steps: u64,
    pub train_loss: Option<f64>,
    pub eval_loss: Option<f64>,
    pub tokens_per_s: Option<f64>,
    /// Seconds since its metrics last grew.
    pub quiet_s: Option<f64>,
    /// No new metrics for longer than the stall limit.
    pub stalled: bool,
}

/// A run's curve and what it is, for the charts.
#[derive(Debug, Clone, Serialize)]
pub struct RunCurve {
    pub id: String,
    pub kind: RunKind,
    pub grid: String,
    pub width: usize,
    pub n: u64,
    pub trunk: Option<String>,
    pub from_tokens: Option<u64>,
    pub state: String,
    pub version: u64,
    /// [tokens, flops, train loss, eval loss or null]
    pub points: Vec<CurvePoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Curves {
    pub version: u64,
    pub runs: Vec<RunCurve>,
    pub oracle_loss: Option<f64>,
}

/// A row of the runs table.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub kind: RunKind,
    pub grid: String,
    pub state: String,
    pub width: usize,
    pub depth: usize,
    pub n: u64,
    pub tokens: u64,
    pub lr: f64,
    pub batch_size: usize,
    pub seed: u64,
    pub step: u64,
    pub steps: u64,
    pub eval_loss: Option<f64>,
    pub params: Vec<(String, String)>,
}

impl LiveSweep {
    pub fn new(name: String, dir: PathBuf) -> Self {
        Self { name, dir, state: Mutex::new(State::default()), fits: Arc::new(Mutex::new(Fits::default())) }
    }

    /// Re-read what changed, unless that was done a moment ago. Blocking file reads: call from a
    /// blocking task.
    pub fn refresh(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.refreshed.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
            return;
        }
        st.refreshed = Some(Instant::now());
        let sweep = SweepDir::new(&self.dir);
        let plan_modified = std::fs::metadata(sweep.plan()).and_then(|m| m.modified()).ok();
        if st.plan.as_ref().is_none_or(|(_, m)| *m != plan_modified) {
            match read_plan(&sweep) {
                Ok(plan) => st.plan = Some((plan, plan_modified)),
                Err(e) => {
                    st.error = Some(format!("{e:#}"));
                    return;
                }
            }
        }
        if let Some((plan, _)) = &st.plan {
            let status = files_view_of(&sweep, plan);
            st.first_seen.get_or_insert((Instant::now(), status.flops_done));
            st.status = Some(status);
            st.error = None;
        }
        st.version += 1;
        let version = st.version;
        let ids: Vec<String> = st.plan.as_ref().map(|(p, _)| p.runs.iter().map(|r| r.id.clone()).collect()).unwrap_or_default();
        for id in ids {
            st.tails.entry(id).or_default();
        }
        // Runs are read in parallel: a first look at a thousand long runs parses millions of lines.
        use rayon::prelude::*;
        st.tails.par_iter_mut().for_each(|(id, tail)| tail.refresh(&sweep.run(id).metrics(), version));
        drop(st);
        self.start_fits_if_changed();
    }

    fn finished_ids(&self) -> Vec<String> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = st.status.iter().flat_map(|s| s.detail.iter()).filter(|r| r.state.is_finished()).map(|r| r.id.clone()).collect();
        ids.sort();
        ids
    }

    /// Recompute the fits in the background when the finished runs differ from the cached ones.
    fn start_fits_if_changed(&self) {
        let ids = self.finished_ids();
        let key = ids.join(",");
        {
            let mut fits = self.fits.lock().unwrap_or_else(|e| e.into_inner());
            if fits.computing || fits.key.as_deref() == Some(key.as_str()) || ids.is_empty() {
                return;
            }
            fits.computing = true;
        }
        let (fits, dir) = (self.fits.clone(), self.dir.clone());
        std::thread::spawn(move || {
            let result = compute_fits(&dir);
            let mut f = fits.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(html) => (f.html, f.error) = (Some(html), None),
                Err(e) => f.error = Some(e),
            }
            (f.key, f.finished_runs, f.computing) = (Some(key), ids.len(), false);
        });
    }

    pub fn fits(&self) -> Fits {
        self.fits.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn progress(&self, stall_after: Duration) -> Progress {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let empty = Progress { name: self.name.clone(), status: None, eta_s: None, active: Vec::new(), stalled: 0, oracle_loss: None, error: st.error.clone() };
        let (Some(s), Some((plan, _))) = (&st.status, &st.plan) else { return empty };
        let by_id: HashMap<&str, &crate::sweep::plan::PlannedRun> = plan.runs.iter().map(|r| (r.id.as_str(), r)).collect();
        let now = SystemTime::now();
        let active: Vec<ActiveRun> = s
            .detail
            .iter()
            .filter(|r| r.state == RunView::Is(RunState::Running))
            .filter_map(|r| {
                let run = by_id.get(r.id.as_str())?;
                let tail = st.tails.get(&r.id);
                let latest: Option<&Latest> = tail.and_then(|t| t.latest.as_ref());
                let quiet_s = tail.and_then(|t| t.modified).and_then(|m| now.duration_since(m).ok()).map(|d| d.as_secs_f64());
                Some(ActiveRun {
                    id: r.id.clone(),
                    kind: r.kind,
                    width: run.width,
                    n: run.n,
                    step: latest.map_or(r.step, |l| l.step.max(r.step)),
                    steps: r.steps,
                    train_loss: latest.map(|l| l.train_loss),
                    eval_loss: latest.and_then(|l| l.eval_loss),
                    tokens_per_s: latest.map(|l| l.tokens_per_s),
                    quiet_s,
                    stalled: quiet_s.is_some_and(|q| q > stall_after.as_secs_f64()),
                })
            })
            .collect();
        // The rate seen by this server once it has watched a while; before that, the sweep's own
        // since its plan was written (its start, or its latest restart).
        let watched = st.first_seen.filter(|(t0, _)| t0.elapsed() >= Duration::from_secs(20)).map(|(t0, f0)| (s.flops_done - f0, t0.elapsed()));
        let since_start = st.plan.as_ref().and_then(|(_, m)| *m).and_then(|m| now.duration_since(m).ok()).map(|d| (s.flops_done, d));
        let eta_s = watched.or(since_start).and_then(|(flops, elapsed)| {
            let rate = flops / elapsed.as_secs_f64().max(1e-9);
            (rate > 0.0 && s.flops_done < s.flops_total).then(|| (s.flops_total - s.flops_done) / rate)
        });
        Progress { status: Some(s.summary()), eta_s, stalled: active.iter().filter(|a| a.stalled).count(), active, oracle_loss: st.oracle(), ..empty }
    }

    /// The curves that changed after version `since` (all with `since` = 0).
    pub fn curves(&self, since: u64) -> Curves {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let states: HashMap<&str, String> = st.status.iter().flat_map(|s| s.detail.iter()).map(|r| (r.id.as_str(), r.state.to_string())).collect();
        let runs = st
            .plan
            .iter()
            .flat_map(|(p, _)| p.runs.iter())
            .filter_map(|r| {
                let tail = st.tails.get(&r.id)?;
                (tail.version > since && !tail.points().is_empty()).then(|| RunCurve {
                    id: r.id.clone(),
                    kind: r.kind,
                    grid: r.grid.clone(),
                    width: r.width,
                    n: r.n,
                    trunk: r.trunk.clone(),
                    from_tokens: r.from_tokens,
                    state: states.get(r.id.as_str()).cloned().unwrap_or_else(|| "pending".into()),
                    version: tail.version,
                    points: tail.points().to_vec(),
                })
            })
            .collect();
        Curves { version: st.version, runs, oracle_loss: st.oracle() }
    }

    pub fn runs(&self) -> Vec<RunRow> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let status: HashMap<&str, &crate::sweep::status::RunProgress> = st.status.iter().flat_map(|s| s.detail.iter()).map(|r| (r.id.as_str(), r)).collect();
        st.plan
            .iter()
            .flat_map(|(p, _)| p.runs.iter())
            .map(|r| {
                let s = status.get(r.id.as_str());
                RunRow {
                    id: r.id.clone(),
                    kind: r.kind,
                    grid: r.grid.clone(),
                    state: s.map_or_else(|| "pending".into(), |s| s.state.to_string()),
                    width: r.width,
                    depth: r.depth,
                    n: r.n,
                    tokens: r.tokens,
                    lr: r.config.optimizer.lr,
                    batch_size: r.config.training.batch_size,
                    seed: r.seed,
                    step: s.map_or(0, |s| s.step).max(st.tails.get(&r.id).and_then(|t| t.latest).map_or(0, |l| l.step)),
                    steps: s.map_or(0, |s| s.steps),
                    eval_loss: s.and_then(|s| s.eval_loss).or_else(|| st.tails.get(&r.id).and_then(|t| t.last_eval)),
                    params: r.params.clone(),
                }
            })
            .collect()
    }

    /// Whether `id` is one of the plan's runs.
    pub fn has_run(&self, id: &str) -> bool {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.plan.as_ref().is_some_and(|(p, _)| p.runs.iter().any(|r| r.id == id))
    }
}

impl State {
    /// The synthetic language's exact loss floor, when the sweep trains on it (as its runs log it).
    fn oracle(&self) -> Option<f64> {
        self.tails.values().find_map(|t| t.oracle_loss)
    }
}

/// The report's fit sections, from the sweep's files (as `windtunnel report` computes them).
fn compute_fits(dir: &Path) -> Result<String, String> {
    let data = crate::results::SweepResults::load(dir).map_err(|e| format!("{e:#}"))?;
    Ok(crate::report::fits_html(&data))
}
