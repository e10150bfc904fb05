//! The process: its exit codes, its start clock and its stop flag, in one place for `train`,
//! persistent workers, the local executor, the adaptive driver and the Slurm task script (which
//! gets the exit codes as parameters).
//!
//! | code | meaning | an executor |
//! |---|---|---|
//! | 0 | done (or paused where `pause.json` asked) | records it |
//! | 1 | failed while training (an I/O error, a full disk) | retries |
//! | 2 | cannot start as configured (bad run file, missing data, too big, directory locked) | does not retry |
//! | 3 | diverged | records it |
//! | 128 + signal | stopped by SIGINT, SIGUSR1 or SIGTERM after a checkpoint | resumes it later |

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::Context;

/// Exit code of a run that diverged (a normal outcome of a too-large learning rate).
pub const EXIT_DIVERGED: u8 = 3;
/// Exit code of a run that failed while training (an I/O error, a full disk): worth retrying.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a run that cannot start as configured here — a bad run file, missing data, a
/// model that does not fit in memory, a run directory another process is writing: retrying the
/// same command cannot help, so executors do not.
pub const EXIT_CANNOT_START: u8 = 2;
/// Exit code of a run stopped by signal `sig` after writing a checkpoint (SIGINT, SIGTERM, and
/// SIGUSR1, Slurm's warning before a time limit).
pub fn exit_interrupted(sig: i32) -> u8 {
    (128 + sig) as u8
}

/// An error that stops a run before it starts training (see [`EXIT_CANNOT_START`]).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct CannotStart(pub anyhow::Error);

static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// The moment this process started (as near as `main` can tell: call it first thing there).
pub fn process_start() -> Instant {
    *PROCESS_START.get_or_init(Instant::now)
}

/// The process's stop flag: the number of the last SIGINT, SIGTERM or SIGUSR1 received (SIGUSR1
/// is Slurm's warning before a time limit), 0 while none has come. Installed once per process,
/// so a persistent worker's runs share it.
pub fn stop_signal() -> anyhow::Result<Arc<AtomicUsize>> {
    static FLAG: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    if let Some(flag) = FLAG.get() {
        return Ok(flag.clone());
    }
    let flag = Arc::new(AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1] {
        signal_hook::flag::register_usize(sig, flag.clone(), sig as usize).context("cannot install signal handlers")?;
    }
    Ok(FLAG.get_or_init(|| flag).clone())
}

/// The signal that asked this process to stop, if one has (see [`stop_signal`]).
pub fn stop_requested() -> Option<i32> {
    let sig = stop_signal().ok()?.load(Ordering::SeqCst);
    (sig != 0).then_some(sig as i32)
}
