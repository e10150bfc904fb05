//! windtunnel: wind-tunnel scaling-law experiments on µP language models (the method of MiniCPM,
//! arXiv 2404.06395). The modules follow the data flow, layers pointing down only (tests/architecture.rs
//! keeps them free of import loops): data → model → train → sweep → adaptive → results →
//! plot/report/serve/export/tensorboard; the fits (`fit`, the mathematics over observations) and
//! the WSD schedule (`schedule`) sit below sweep, for the results table, the adaptive loop and the
//! results layer to use. The user
//! guide's layout chapter (docs/src/contributing/layout.md) says what each holds.

/// `eprintln!` that never panics: when stderr is a full disk or a closed file the line is lost,
/// not the run (std's `eprintln!` panics, which would turn a finished run into exit 101). On a
/// thread training a persistent worker's run, the line goes to that run's log ([`stderr`]).
#[macro_export]
macro_rules! stderr_line {
    ($($arg:tt)*) => {
        $crate::stderr::line(format_args!($($arg)*))
    };
}

pub mod adaptive;
pub mod cpu;
pub mod data;
pub mod device;
pub mod export;
pub mod fit;
pub mod format;
pub mod fsutil;
pub mod kernel_cache;
pub mod layout;
pub mod model;
pub mod nvidia_smi;
pub mod panic;
pub mod plot;
pub mod process;
pub mod report;
pub mod results;
pub mod rng;
pub mod schedule;
pub mod serve;
pub mod stderr;
pub mod sweep;
pub mod tensorboard;
pub mod train;
