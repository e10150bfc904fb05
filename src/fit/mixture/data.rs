//! The runs a mixture fit reads: each one's domain weights and its loss on each evaluation set,
//! chosen from observations by column (weights and losses by regular expression), checked (the
//! weights sum to 1, every domain is in some run) and, for RegMix's published files, two tables
//! joined on a key column.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Serialize;

use crate::fit::observation::{column, Observations, Value};

/// The default weight columns: a sweep's `weight/<domain>`.
pub const WEIGHTS: &str = "^weight/";
/// The default loss columns: a sweep's named evaluation sets, `eval/<name>` (else `loss`).
pub const EVALS: &str = "^eval/";
/// The column a sweep names each run's mixture by.
pub const MIXTURE: &str = "mixture";

/// Which columns hold what.
#[derive(Debug, Clone)]
pub struct MixtureColumns {
    /// The weight columns; a domain is named by the regex's first group, else by the column less
    /// the matched text.
    pub weights: Regex,
    /// The loss columns, one per evaluation set, named likewise [default: `^eval/`, else `loss`].
    pub losses: Option<Regex>,
    /// The column naming each run's mixture [default: `mixture`, else `run_id`, else the line].
    pub key: Option<String>,
    /// How far from 1 a run's weights may sum (rounded tables); they are then rescaled to 1.
    pub sum_tolerance: f64,
}

impl MixtureColumns {
    pub const DEFAULT_SUM_TOLERANCE: f64 = 0.01;
}

impl Default for MixtureColumns {
    fn default() -> Self {
        Self { weights: Regex::new(WEIGHTS).expect("a valid regex"), losses: None, key: None, sum_tolerance: Self::DEFAULT_SUM_TOLERANCE }
    }
}

/// The runs of a mixture study.
#[derive(Debug, Clone, Serialize)]
pub struct MixtureRuns {
    pub source: PathBuf,
    pub domains: Vec<String>,
    /// The evaluation sets (the loss columns' names).
    pub sets: Vec<String>,
    /// Each run's mixture key.
    pub keys: Vec<String>,
    /// Each run's weights, in the order of `domains`, summing to 1.
    pub weights: Vec<Vec<f64>>,
    /// `losses[s][i]`: run i's loss on set s.
    pub losses: Vec<Vec<f64>>,
    /// Each run's non-embedding parameters, when the table has them.
    pub sizes: Option<Vec<f64>>,
    /// Each run's training tokens, when the table has them.
    pub tokens: Option<Vec<f64>>,
    /// Rows left out: not done, without weights (a trunk on the base data) or without a loss.
    pub left_out: usize,
}

/// Columns matching `re`, each with its name: the first group, else the column less the match.
pub fn matching(columns: &[String], re: &Regex) -> Vec<(String, String)> {
    columns
        .iter()
        .filter_map(|c| {
            let caps = re.captures(c)?;
            let name = match caps.get(1) {
                Some(g) => g.as_str().to_string(),
                None => c.replacen(caps.get(0).map_or("", |m| m.as_str()), "", 1),
            };
            Some((c.clone(), if name.is_empty() { c.clone() } else { name }))
        })
        .collect()
}

impl MixtureRuns {
    /// The runs of `obs`: every done row with weights and every loss.
    pub fn from_observations(obs: &Observations, columns: &MixtureColumns) -> anyhow::Result<Self> {
        let source = obs.source.display().to_string();
        let weight_columns = matching(&obs.columns, &columns.weights);
        anyhow::ensure!(
            !weight_columns.is_empty(),
            "{source} has no weight columns matching `{}`; its columns are: {}. Name them with --weights REGEX (e.g. '^train_')",
            columns.weights,
            obs.columns.join(", ")
        );
        let loss_columns = loss_columns(obs, columns.losses.as_ref())?;
        let key = key_column(obs, columns.key.as_deref())?;
        let weights_of: Vec<Vec<f64>> = weight_columns.iter().map(|(c, _)| obs.numbers(c)).collect::<anyhow::Result<_>>()?;
        let losses_of: Vec<Vec<f64>> = loss_columns.iter().map(|(c, _)| obs.numbers(c)).collect::<anyhow::Result<_>>()?;
        let sizes_of = obs.has(column::NON_EMBEDDING_PARAMS).then(|| obs.numbers(column::NON_EMBEDDING_PARAMS)).transpose()?;
        let tokens_of = obs.has(column::TOKENS).then(|| obs.numbers(column::TOKENS)).transpose()?;
        let mut runs = Self {
            source: obs.source.clone(),
            domains: weight_columns.iter().map(|(_, n)| n.clone()).collect(),
            sets: loss_columns.iter().map(|(_, n)| n.clone()).collect(),
            keys: Vec::new(),
            weights: Vec::new(),
            losses: vec![Vec::new(); loss_columns.len()],
            sizes: sizes_of.as_ref().map(|_| Vec::new()),
            tokens: tokens_of.as_ref().map(|_| Vec::new()),
            left_out: 0,
        };
        for (i, row) in obs.rows.iter().enumerate() {
            let w: Vec<f64> = weights_of.iter().map(|c| c[i]).collect();
            let l: Vec<f64> = losses_of.iter().map(|c| c[i]).collect();
            if !row.is_done() || w.iter().all(|x| x.is_nan()) || l.iter().any(|x| !x.is_finite()) {
                runs.left_out += 1;
                continue;
            }
            let w = checked_weights(&source, row.line, &weight_columns, w, columns.sum_tolerance)?;
            runs.keys.push(key.map_or_else(|| format!("line {}", row.line), |k| key_text(&row.values[k])));
            runs.weights.push(w);
            l.into_iter().zip(&mut runs.losses).for_each(|(x, s)| s.push(x));
            if let (Some(all), Some(kept)) = (&sizes_of, &mut runs.sizes) {
                kept.push(all[i]);
            }
            if let (Some(all), Some(kept)) = (&tokens_of, &mut runs.tokens) {
                kept.push(all[i]);
            }
        }
        anyhow::ensure!(!runs.weights.is_empty(), "{source}: no finished run has weights and a loss on every evaluation set ({} rows left out)", runs.left_out);
        runs.refuse_unused_domains(&weight_columns)?;
        Ok(runs)
    }

    /// A domain with weight 0 in every run says nothing about what it does.
    fn refuse_unused_domains(&self, weight_columns: &[(String, String)]) -> anyhow::Result<()> {
        for (j, (column, name)) in weight_columns.iter().enumerate() {
            anyhow::ensure!(
                self.weights.iter().any(|w| w[j] > 0.0),
                "{}: domain `{name}` (column `{column}`) has weight 0 in every run, so no run says what it does; add runs that train on it, \
                 or leave it out of the study (drop its column and rescale the weights)",
                self.source.display()
            );
        }
        Ok(())
    }

    /// The index of domain `name`; an error lists the domains.
    pub fn domain(&self, name: &str, flag: &str) -> anyhow::Result<usize> {
        self.domains
            .iter()
            .position(|d| d == name)
            .ok_or_else(|| anyhow::anyhow!("{flag} {name}: {} has no domain `{name}`; its domains are: {}", self.source.display(), self.domains.join(", ")))
    }

    /// The runs at `rows` only.
    /// Each run's scale, (N, tokens), where the table has either (missing ones read 0): runs of
    /// one scale are compared with each other, never pooled across scales (a branch point decayed
    /// at more tokens has lower losses whatever its mixture).
    pub fn scales(&self) -> Option<Vec<(f64, f64)>> {
        if self.sizes.is_none() && self.tokens.is_none() {
            return None;
        }
        let at = |column: &Option<Vec<f64>>, i: usize| column.as_ref().map_or(0.0, |c| c[i]);
        Some((0..self.weights.len()).map(|i| (at(&self.sizes, i), at(&self.tokens, i))).collect())
    }

    pub fn subset(&self, rows: &[usize]) -> Self {
        let pick = |v: &Vec<f64>| rows.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        Self {
            source: self.source.clone(),
            domains: self.domains.clone(),
            sets: self.sets.clone(),
            keys: rows.iter().map(|&i| self.keys[i].clone()).collect(),
            weights: rows.iter().map(|&i| self.weights[i].clone()).collect(),
            losses: self.losses.iter().map(pick).collect(),
            sizes: self.sizes.as_ref().map(pick),
            tokens: self.tokens.as_ref().map(pick),
            left_out: self.left_out,
        }
    }
}

/// A key cell as text (a count without a decimal point).
fn key_text(v: &Value) -> String {
    match v {
        Value::Number(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", *x as i64),
        other => other.to_string(),
    }
}

fn loss_columns(obs: &Observations, losses: Option<&Regex>) -> anyhow::Result<Vec<(String, String)>> {
    let source = obs.source.display();
    if let Some(re) = losses {
        let found = matching(&obs.columns, re);
        anyhow::ensure!(!found.is_empty(), "{source} has no loss columns matching `{re}`; its columns are: {}", obs.columns.join(", "));
        return Ok(found);
    }
    let evals = matching(&obs.columns, &Regex::new(EVALS).expect("a valid regex"));
    if !evals.is_empty() {
        return Ok(evals);
    }
    anyhow::ensure!(
        obs.has("loss"),
        "{source} has no `eval/<set>` columns and no `loss` column; name the loss columns with --loss REGEX. Its columns are: {}",
        obs.columns.join(", ")
    );
    Ok(vec![("loss".into(), "loss".into())])
}

/// The key column's index: the one named, else `mixture`, else `run_id`, else none.
fn key_column(obs: &Observations, key: Option<&str>) -> anyhow::Result<Option<usize>> {
    match key {
        Some(k) => obs.column(k).map(Some),
        None => Ok([MIXTURE, column::RUN_ID].iter().find_map(|k| obs.columns.iter().position(|c| c == k))),
    }
}

/// A run's weights, checked and rescaled to sum to exactly 1.
fn checked_weights(source: &str, line: usize, columns: &[(String, String)], w: Vec<f64>, tolerance: f64) -> anyhow::Result<Vec<f64>> {
    for (x, (c, _)) in w.iter().zip(columns) {
        anyhow::ensure!(
            x.is_finite() && *x >= 0.0,
            "{source} line {line}: weight column `{c}` holds {x}; weights are fractions from 0 to 1 (an empty cell is not 0: write 0)"
        );
    }
    let sum: f64 = w.iter().sum();
    anyhow::ensure!(
        (sum - 1.0).abs() <= tolerance,
        "{source} line {line}: the weights sum to {sum}, not 1 (tolerance {tolerance}); rescale them so each run's weights sum to 1, \
         or widen --sum-tolerance if the table rounds them"
    );
    Ok(w.into_iter().map(|x| x / sum).collect())
}

/// Two tables as one: each row of `weights` with the row of `losses` that has its `key`; every key
/// must be in both, once.
pub fn join(weights: &Observations, losses: &Observations, key: &str) -> anyhow::Result<Observations> {
    let (kw, kl) = (weights.column(key)?, losses.column(key)?);
    let mut index = std::collections::HashMap::new();
    for (i, row) in losses.rows.iter().enumerate() {
        let k = key_text(&row.values[kl]);
        anyhow::ensure!(
            index.insert(k.clone(), i).is_none(),
            "{} line {}: key `{k}` (column `{key}`) is on two rows; a key names one run",
            losses.source.display(),
            row.line
        );
    }
    let extra: Vec<usize> = (0..losses.columns.len()).filter(|&c| c != kl).collect();
    let mut columns = weights.columns.clone();
    for &c in &extra {
        let name = &losses.columns[c];
        anyhow::ensure!(!columns.contains(name), "{} and {} both have a column `{name}`; rename one", weights.source.display(), losses.source.display());
        columns.push(name.clone());
    }
    let mut seen = std::collections::HashSet::new();
    let rows = weights
        .rows
        .iter()
        .map(|row| {
            let k = key_text(&row.values[kw]);
            anyhow::ensure!(
                seen.insert(k.clone()),
                "{} line {}: key `{k}` (column `{key}`) is on two rows; a key names one run",
                weights.source.display(),
                row.line
            );
            let Some(&j) = index.get(&k) else {
                anyhow::bail!(
                    "{} line {}: key `{k}` (column `{key}`) has no row in {}; join on a column both tables share with --key",
                    weights.source.display(),
                    row.line,
                    losses.source.display()
                )
            };
            let mut values = row.values.clone();
            values.extend(extra.iter().map(|&c| losses.rows[j].values[c].clone()));
            Ok((row.line, values))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Observations::new(Path::new(&format!("{} + {}", weights.source.display(), losses.source.display())), columns, rows)
}
