//! Sweeps: the sweep file ([`spec`]), the run graph with WSD trunks and branches ([`plan`]), the
//! local executor ([`exec`]), and the status and results table read back from the files
//! ([`collect`]).

pub mod collect;
pub mod exec;
pub mod plan;
pub mod spec;
