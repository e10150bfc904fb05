//! Fitting the laws, as mathematics over observations: what every fit reads ([`observation`]:
//! typed values per run, built by the results layer from a sweep, or from a table file by
//! [`input`], which also picks the law's points), the shape of a data-model law ([`form`]: a new
//! law form is one implementation there), fitting it and its compute-optimal allocation ([`law`]),
//! bootstrap intervals ([`bootstrap`]), what `fit law` fits, from a file and flags
//! ([`definition`]), the `fit law` report ([`report`]), one loss floor per
//! group ([`grouped`]), Chinchilla's three approaches to the allocation ([`allocation`]),
//! learning-rate transfer and batch-size laws ([`transfer`], [`scans`]), hyperparameter laws in
//! N and D ([`hparams`]), row filters ([`filter`]) and the schedule-aware curve law ([`curve`]).
//! Nothing here reads a sweep directory or a run's files: `tests/architecture.rs` keeps `fit`
//! free of `sweep`, `train` and `layout`.

pub mod allocation;
pub mod bootstrap;
pub mod curve;
pub mod definition;
pub mod filter;
pub mod form;
pub mod grouped;
pub mod hparams;
pub mod input;
pub mod law;
pub(crate) mod lbfgs;
pub mod mixture;
pub mod observation;
pub mod progress;
pub mod report;
pub mod scans;
pub mod transfer;

/// How many distinct values there are (exact comparison: values read from one table).
pub fn distinct_count(values: impl Iterator<Item = f64>) -> usize {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v.len()
}

/// `count` values from `lo` to `hi`, evenly spaced in log.
pub(crate) fn log_space(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    let (a, b) = (lo.ln(), hi.ln());
    (0..count).map(|i| (a + (b - a) * i as f64 / (count - 1).max(1) as f64).exp()).collect()
}
