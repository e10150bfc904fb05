//! The executors, one line each: what `run --executor` accepts (and its help says), what builds
//! the one `run` names, and which of them `status` and `cancel` consult for a sweep directory.
//! A new executor is a file implementing [`Executor`] (beside `local/` and `slurm.rs`) and its
//! line here.

use super::executor::{Executor, RunOptions};
use super::loaded::LoadedSweep;
use super::{local, slurm};
use crate::layout::SweepDir;

/// Every executor, in the order `--help` lists them and `status` and `cancel` consult them.
pub const EXECUTORS: &[Registered] = &[
    Registered { name: "local", help: "here", executes_dry_runs: false, for_run: local::for_run, for_sweep_dir: local::for_sweep_dir },
    Registered { name: "slurm", help: "as Slurm job arrays", executes_dry_runs: true, for_run: slurm::for_run, for_sweep_dir: slurm::for_sweep_dir },
];

/// An executor as the command line knows it.
#[derive(Clone, Copy)]
pub struct Registered {
    /// Its value of `run --executor`.
    pub name: &'static str,
    /// Where it runs the runs, as `--executor`'s help says it ("here").
    pub help: &'static str,
    /// Whether `run --dry-run` goes through it (Slurm's writes the sbatch scripts and submits
    /// nothing); otherwise `run --dry-run` only prints what would train, writing nothing.
    pub executes_dry_runs: bool,
    /// The executor for `windtunnel run`, from the command line's options and the sweep file.
    pub for_run: fn(&RunOptions, &LoadedSweep) -> anyhow::Result<Box<dyn Executor>>,
    /// The executor for `status` and `cancel` of a sweep directory, when it may hold some of the
    /// sweep's state (the local one always; Slurm's when the sweep was submitted to it).
    pub for_sweep_dir: fn(&SweepDir) -> Option<Box<dyn Executor>>,
}

/// The executors that may hold state of the sweep in `sweep`.
pub fn executors_of(sweep: &SweepDir) -> Vec<Box<dyn Executor>> {
    EXECUTORS.iter().filter_map(|e| (e.for_sweep_dir)(sweep)).collect()
}

/// `run --executor`'s help: "Where the runs execute: here (local) or as Slurm job arrays (slurm)".
pub fn executor_help() -> String {
    let each: Vec<String> = EXECUTORS.iter().map(|e| format!("{} ({})", e.help, e.name)).collect();
    let list = match each.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    format!("Where the runs execute: {list}")
}

/// `run --executor NAME` picks the registered executor of that name.
impl clap::ValueEnum for Registered {
    fn value_variants<'a>() -> &'a [Self] {
        EXECUTORS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_names_every_executor_and_names_are_distinct() {
        let help = executor_help();
        assert!(EXECUTORS.iter().all(|e| help.contains(&format!("{} ({})", e.help, e.name))), "{help}");
        let mut names: Vec<&str> = EXECUTORS.iter().map(|e| e.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), EXECUTORS.len());
    }
}
