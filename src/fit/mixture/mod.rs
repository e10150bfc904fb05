//! Mixture laws: which data mixture to train the full run on, from runs whose domain weights
//! differ (`windtunnel fit mixture`). The runs and their checks ([`data`]); three forms of model,
//! one per evaluation set ([`model`]: RegMix's [`linear`] regression, the Data Mixing Laws'
//! exponential law [`mixing_law`], gradient-boosted [`trees`]); k-fold cross-validation with
//! Spearman's ρ ([`cv`]); the optimum under constraints ([`optimum`]); the report ([`report`],
//! printed by [`show`]) and `--predict` ([`predict`]).

pub mod cv;
pub mod data;
pub mod linear;
pub mod mixing_law;
pub mod model;
pub mod optimum;
pub mod report;
pub mod show;
pub mod trees;

use data::{matching, MixtureColumns};
use model::ObjectiveModel;
use report::Prediction;

use crate::fit::observation::Observations;

/// The predicted objective of every mixture in `table` (its weight columns found as the runs'
/// were, the same domains; predicted at the weights rescaled to sum to 1, listed as the table has
/// them), each row named by its `key` column (else `mixture`, else its first column).
pub fn predict(model: &ObjectiveModel, domains: &[String], table: &Observations, columns: &MixtureColumns) -> anyhow::Result<(String, Vec<Prediction>)> {
    let source = table.source.display();
    let found = matching(&table.columns, &columns.weights);
    let names: Vec<&String> = found.iter().map(|(_, n)| n).collect();
    for d in domains {
        anyhow::ensure!(
            names.contains(&d),
            "--predict {source}: no weight column for domain `{d}` (columns matching `{}`: {})",
            columns.weights,
            found.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    for n in &names {
        anyhow::ensure!(domains.contains(n), "--predict {source}: domain `{n}` is not one the model was fitted on ({})", domains.join(", "));
    }
    let key = match &columns.key {
        Some(k) => Some(table.column(k)?),
        None => table.columns.iter().position(|c| c == data::MIXTURE).or((!table.columns.is_empty()).then_some(0)),
    };
    let key_name = key.map_or("line".to_string(), |k| table.columns[k].clone());
    let cols: Vec<Vec<f64>> =
        domains.iter().map(|d| table.numbers(&found[names.iter().position(|n| *n == d).expect("checked")].0)).collect::<anyhow::Result<_>>()?;
    let mut out = Vec::new();
    for (i, row) in table.rows.iter().enumerate() {
        let w: Vec<f64> = cols.iter().map(|c| c[i]).collect();
        let sum: f64 = w.iter().sum();
        anyhow::ensure!(
            w.iter().all(|x| x.is_finite() && *x >= 0.0) && (sum - 1.0).abs() <= columns.sum_tolerance,
            "--predict {source} line {}: the weights sum to {sum}, not 1 (tolerance {}); rescale them so they sum to 1",
            row.line,
            columns.sum_tolerance
        );
        let rescaled: Vec<f64> = w.iter().map(|x| x / sum).collect();
        let name = key.map_or_else(|| format!("{}", row.line), |k| row.values[k].to_string());
        out.push(Prediction { key: name, predicted: model.predict(&rescaled), weights: w });
    }
    Ok((key_name, out))
}
