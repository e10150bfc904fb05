//! windtunnel: wind-tunnel scaling-law experiments on µP language models (the method of MiniCPM,
//! arXiv 2404.06395). See `DESIGN.md` for the data flow; each module is one stage of it.

pub mod alloc;
pub mod data;
pub mod export;
pub mod device;
pub mod fit;
pub mod format;
pub mod fsutil;
pub mod model;
pub mod plot;
pub mod report;
pub mod rng;
pub mod sweep;
pub mod train;
