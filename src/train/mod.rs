//! One training run: the run file ([`config`]), µP AdamW ([`optimizer`]), schedules in tokens
//! ([`schedule`]), checkpoints ([`checkpoint`]), metrics and status files ([`log`]), and the loop
//! that ties them together ([`run`]).

pub mod checkpoint;
pub mod config;
pub mod log;
pub mod optimizer;
pub mod progress;
pub mod run;
pub mod schedule;
