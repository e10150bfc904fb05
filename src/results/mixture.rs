//! Where `fit mixture` reads its runs: a sweep directory (its results table's `weight/<domain>`
//! and `eval/<set>` columns), a folder holding a `table.csv`, or a CSV or Parquet table, with an
//! optional second table of losses joined on a key column (RegMix publishes its mixtures and its
//! losses as two files). The fit itself is `fit::mixture`'s.

use std::path::Path;

use crate::fit::input::Table;
use crate::fit::mixture::data::{join, MixtureColumns, MixtureRuns, MIXTURE};
use crate::fit::mixture::model::ObjectiveModel;
use crate::fit::mixture::report::{fit_mixture, MixtureOptions, MixtureReport};
use crate::fit::mixture::show::predictions_csv;
use crate::fsutil::atomic_write;

use super::inputs::observations;

/// Where to read from, and what else to do.
#[derive(Debug, Clone)]
pub struct MixtureInputs<'a> {
    pub input: &'a Path,
    /// A second table holding the losses, joined on the key column.
    pub losses: Option<&'a Path>,
    /// Mixtures to predict.
    pub predict: Option<&'a Path>,
    /// Where to write the predictions as CSV.
    pub predict_out: Option<&'a Path>,
}

/// The runs at `inputs`, joined when there are two tables.
pub fn mixture_runs(inputs: &MixtureInputs, columns: &MixtureColumns) -> anyhow::Result<MixtureRuns> {
    let first = observations(inputs.input)?;
    let obs = match inputs.losses {
        Some(losses) => {
            let key = columns.key.as_deref().unwrap_or(MIXTURE);
            join(&first, &Table::observations(losses)?, key)?
        }
        None => first,
    };
    MixtureRuns::from_observations(&obs, columns)
}

/// `fit mixture`: read, fit, and predict the mixtures of `--predict` (written to `--predict-out`
/// as CSV when given).
pub fn fit_mixture_at(inputs: &MixtureInputs, columns: &MixtureColumns, options: &MixtureOptions) -> anyhow::Result<(MixtureReport, ObjectiveModel)> {
    let runs = mixture_runs(inputs, columns)?;
    let (mut report, model) = fit_mixture(&runs, options)?;
    if let Some(table) = inputs.predict {
        let predict_columns = MixtureColumns { key: None, ..columns.clone() };
        let (key, predictions) = crate::fit::mixture::predict(&model, &runs.domains, &Table::observations(table)?, &predict_columns)?;
        if let Some(out) = inputs.predict_out {
            atomic_write(out, predictions_csv(&key, &runs.domains, &predictions).as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot write the predictions to {}: {e}", out.display()))?;
        }
        report.predictions = predictions;
    }
    Ok((report, model))
}
