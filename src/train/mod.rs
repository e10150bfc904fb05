//! Training one run. So far: the µP AdamW optimizer ([`optimizer`]).

pub mod optimizer;
