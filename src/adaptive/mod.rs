//! The adaptive wind tunnel: choose the next runs by what they teach about the answer per FLOP,
//! and stop when the answer is good enough.
//!
//! A hand-made grid spends its runs evenly; most of them move the answer little. Here the user
//! names the answer (a [`target::Target`]: D/N at a compute budget, or the loss of a planned run),
//! a budget and a precision; [`design`] runs a small seed design, then rounds of fit → choose →
//! run, choosing by the criterion of [`criterion`] (expected reduction of the target's variance
//! per FLOP, derived there); [`sweep`] runs it on a sweep's own runs (`run --adaptive`), and
//! [`replay`] over a table of runs already made (`adapt --replay`). How the next runs are chosen
//! is a [`strategy`] (one file each); what the loop is asked, a sweep file's `[adaptive]` block
//! and `adapt`'s flags alike, is [`settings`].

pub mod criterion;
pub mod design;
pub mod replay;
pub mod settings;
pub mod strategy;
pub mod sweep;
pub mod target;
