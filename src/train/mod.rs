//! One training run: the run file ([`config`]), µP AdamW ([`optimizer`]), schedules in tokens
//! ([`schedule`]), checkpoints ([`checkpoint`]), metrics and status files ([`log`]), progress on
//! stderr ([`progress`]), evaluation on named sets ([`eval_sets`]), and the loop that ties them
//! together ([`run`]); and the µP coordinate
//! check ([`coord_check`]), a few training steps across widths.

pub mod checkpoint;
pub mod config;
pub mod coord_check;
pub mod eval_sets;
pub mod log;
pub mod optimizer;
pub mod progress;
pub mod run;
