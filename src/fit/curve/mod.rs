//! The schedule-aware curve law: every evaluation of every run, under any learning-rate schedule.
//! See [`form`] for the laws, [`fit`] for how they are fitted, [`data`] for the curves,
//! [`schedules`] for schedules that were not run, and [`report`] for `fit curve`.

pub mod data;
pub mod fit;
pub mod form;
pub mod report;
pub mod schedules;
