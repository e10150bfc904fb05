//! Fitting the laws: reading points ([`input`]), the data-model law and compute-optimal
//! allocation ([`law`]), bootstrap intervals ([`bootstrap`]) and the `fit law` report ([`report`]).

pub mod bootstrap;
pub mod commands;
pub mod input;
pub mod law;
pub mod report;
pub mod transfer;
