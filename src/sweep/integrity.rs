//! The plan is the source of truth: before a sweep runs, what its run directories hold is checked
//! against it.
//!
//! - `runs/<id>/config.json`, the file a worker trains, is the plan's config for that id, byte for
//!   byte. One edited by hand or damaged is rewritten from the plan (with a warning naming it): a
//!   run's id is the hash of its config, so a different config under the id would be a different
//!   run under a wrong name. To change a run, change the sweep file.
//! - A run that already trained (it has a `run.json`) must have trained the plan's config on the
//!   data the config names today. One whose recorded config hash differs (trained from an edited
//!   config.json), or whose recorded data fingerprint differs from the data files now (a corpus
//!   replaced or re-prepared between an interrupt and the resume), would mix two experiments into
//!   one table: `run` refuses, listing the runs and the two ways out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::plan::{Plan, PlannedRun};
use crate::fsutil::atomic_write;
use crate::layout::SweepDir;
use crate::train::config::RunConfig;
use crate::train::run::RunRecord;

/// Write each run's `config.json` from the plan where it is missing or differs from the plan;
/// returns the files that differed (and were rewritten).
pub fn write_run_configs(sweep: &SweepDir, plan: &Plan) -> anyhow::Result<Vec<PathBuf>> {
    let mut rewritten = Vec::new();
    for run in &plan.runs {
        let path = sweep.run(&run.id).config();
        let wanted = serde_json::to_string_pretty(&run.config)?;
        match std::fs::read(&path) {
            Ok(bytes) if bytes == wanted.as_bytes() => continue,
            Ok(_) => rewritten.push(path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Unreadable (a directory in its place, no permission): the write below says why.
            Err(_) => rewritten.push(path.clone()),
        }
        atomic_write(&path, wanted.as_bytes())?;
    }
    Ok(rewritten)
}

/// The warning for configs [`write_run_configs`] rewrote.
pub fn rewritten_warning(rewritten: &[PathBuf]) -> Option<String> {
    let first = rewritten.first()?;
    let more = if rewritten.len() > 1 { format!(" and {} more", rewritten.len() - 1) } else { String::new() };
    Some(format!(
        "{}{more} differed from the sweep's plan (edited by hand, or damaged) and {} rewritten from plan.json: a run's id is the hash of its config, \
         so a run trains what the plan says; to change a run, change the sweep file",
        first.display(),
        if rewritten.len() > 1 { "were" } else { "was" }
    ))
}

/// Why one run's results cannot be kept or resumed.
struct Mismatch {
    id: String,
    why: String,
}

/// Refuse the sweep when a run that trained did so on another config or other data than the
/// plan names now.
pub fn check_trained_runs(sweep: &SweepDir, plan: &Plan) -> anyhow::Result<()> {
    let mut fingerprints = DataFingerprints::default();
    let mismatches: Vec<Mismatch> = plan.runs.iter().filter_map(|run| mismatch(sweep, run, &mut fingerprints)).collect();
    if mismatches.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = mismatches.iter().map(|m| format!("  runs/{}: {}", m.id, m.why)).collect();
    anyhow::bail!(
        "{}: {} run(s) trained on something other than what the plan names now, and resuming or keeping them would mix two experiments in one table:\n{}\n\
         Put the original data back to go on, or start over on the new data in a new folder (`windtunnel run SWEEP.toml --out NEW`); \
         removing a listed run's folder trains it again from the plan",
        sweep.root().display(),
        mismatches.len(),
        lines.join("\n")
    )
}

fn mismatch(sweep: &SweepDir, run: &PlannedRun, fingerprints: &mut DataFingerprints) -> Option<Mismatch> {
    let dir = sweep.run(&run.id);
    // No record: nothing trained yet. An unreadable one: `train` says so when it resumes.
    let record: RunRecord = serde_json::from_str(&std::fs::read_to_string(dir.record()).ok()?).ok()?;
    let found = |why: String| Some(Mismatch { id: run.id.clone(), why });
    if record.config_hash != run.config.hash() {
        return found(format!(
            "trained a config other than the plan's (hash {} for id {}): its config.json was edited after it started",
            record.config_hash, run.id
        ));
    }
    let now = fingerprints.of(&run.config, dir.root());
    for (was, now, what) in [
        (&record.data_fingerprint, &now.0, run.config.data.describe()),
        (&record.decay_data_fingerprint, &now.1, run.config.branch.as_ref().and_then(|b| b.data.as_ref()).map(|d| d.describe()).unwrap_or_default()),
    ] {
        if let (Some(was), Some(now)) = (was, now) {
            if was != now {
                return found(format!("trained on {what} with fingerprint {was} (size:hash); the data there is now {now}"));
            }
        }
    }
    None
}

/// Each distinct data spec's fingerprint, computed once (a corpus is hashed, not re-read per run).
#[derive(Default)]
struct DataFingerprints {
    known: HashMap<String, Option<String>>,
}

impl DataFingerprints {
    /// The fingerprints of a config's data and of its branch's decay data, as they are now;
    /// `None` where the data cannot be opened (the run's own start says why) or is synthetic.
    fn of(&mut self, config: &RunConfig, base_dir: &Path) -> (Option<String>, Option<String>) {
        let seed = config.training.data_seed;
        let data = self.of_spec(&config.data, seed, base_dir);
        let decay = config.branch.as_ref().and_then(|b| b.data.as_ref()).and_then(|d| self.of_spec(d, seed, base_dir));
        (data, decay)
    }

    fn of_spec(&mut self, spec: &crate::data::DataSpec, seed: u64, base_dir: &Path) -> Option<String> {
        let key = serde_json::to_string(spec).ok()?;
        self.known.entry(key).or_insert_with(|| crate::data::open(spec, seed, base_dir).ok().and_then(|d| d.fingerprint())).clone()
    }
}
