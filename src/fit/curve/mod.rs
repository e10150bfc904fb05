//! The schedule-aware curve law: every evaluation of every run, under any learning-rate schedule.
//! See [`form`] for the laws, [`decay`] for what their decay terms read (and what that costs),
//! [`fit`] for how they are fitted, [`data`] for the curves, [`schedules`] for schedules that were
//! not run, [`report`] for `fit curve` (and [`baseline`] for the naive prediction it compares with),
//! and [`progress`] for what it says while it works.

pub mod baseline;
pub mod data;
pub mod decay;
pub mod fit;
pub mod form;
pub use crate::fit::progress;
pub mod report;
pub mod schedules;
