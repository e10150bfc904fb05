//! The export's data mixture: the mixture `fit mixture` chose (its saved report,
//! `fits/mixture.json`) carried into the recipe, with a block to paste into the full run's sweep
//! file.
//!
//! The block says where the mixture belongs. A mixture chosen from decay branches
//! (`placement = "decay"`, MiniCPM's second stage) was measured as the data of the decay: the
//! block is `wsd.decay_data` and the stable phase stays on the base data. A mixture chosen from
//! whole runs (`placement = "run"`, RegMix) is the run's `data`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::data::{DataSpec, MixtureComponent, MixtureSpec};
use crate::fit::bootstrap::Interval;
use crate::layout::{FitKind, SweepDir};
use crate::sweep::mixture::domain_sources;
use crate::sweep::plan::{Plan, RunKind};

/// Where the mixture was measured, and so where the full run uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MixtureStage {
    /// Decay branches on each mixture: the mixture of the decay (`wsd.decay_data`).
    Decay,
    /// Whole runs on each mixture: the run's `data`.
    Run,
}

/// The chosen mixture as the export carries it.
#[derive(Debug, Clone, Serialize)]
pub struct MixtureChoice {
    /// The `fit mixture` report it comes from.
    pub fit_file: PathBuf,
    /// The command that saved it, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved: Option<crate::results::saved::SavedBy>,
    pub form: String,
    /// (evaluation set, weight) of the objective the mixture minimises.
    pub objective: Vec<(String, f64)>,
    /// Weight per domain, summing to 1, in the domains' order.
    pub weights: Vec<(String, f64)>,
    /// The objective the fit predicts at these weights (nats/token).
    pub predicted: f64,
    /// Its bootstrap interval over runs, when the fit made one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    pub stage: MixtureStage,
    /// The TOML to paste into the full run's sweep file (under `[base]`, or in `[grid.wsd]` for a
    /// decay mixture); `None` when the mixture sweep's plan does not name a domain's data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_block: Option<String>,
    /// The fit's own warnings (rank agreement across sizes, repetitions), carried over.
    pub fit_warnings: Vec<String>,
}

/// The mixture of `sweep` (a sweep folder whose `fit mixture` report is kept), or `None` when it
/// has none and `required` is false.
pub fn chosen(sweep: &Path, plan: Option<&Plan>, required: bool) -> anyhow::Result<Option<MixtureChoice>> {
    let dir = SweepDir::open(sweep);
    let file = dir.fit(FitKind::Mixture);
    if !file.exists() {
        anyhow::ensure!(
            !required,
            "--mixture-sweep {}: it keeps no mixture fit ({} is missing); run `windtunnel fit mixture --input {}` first",
            sweep.display(),
            file.display(),
            sweep.display()
        );
        return Ok(None);
    }
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let report: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not a `fit mixture` report", file.display()))?;
    let owned_plan;
    let plan = match plan {
        Some(p) => p,
        None => {
            owned_plan = crate::sweep::status::read_plan(&dir)?;
            &owned_plan
        }
    };
    choice_of(&report, plan, file).map(Some)
}

fn choice_of(report: &serde_json::Value, plan: &Plan, fit_file: PathBuf) -> anyhow::Result<MixtureChoice> {
    let bad = |field: &str| anyhow::anyhow!("{}: `{field}` is missing or malformed; run `windtunnel fit mixture` again", fit_file.display());
    let domains: Vec<String> = serde_json::from_value(report["domains"].clone()).map_err(|_| bad("domains"))?;
    let weights: Vec<f64> = serde_json::from_value(report["optimum"]["weights"].clone()).map_err(|_| bad("optimum.weights"))?;
    anyhow::ensure!(weights.len() == domains.len(), bad("optimum.weights"));
    let weights: Vec<(String, f64)> = domains.into_iter().zip(weights).collect();
    let stage = stage_of(plan);
    let sources = sources_of(plan);
    let data_block = block(&weights, &sources, stage);
    Ok(MixtureChoice {
        saved: serde_json::from_value(report["saved"].clone()).ok(),
        form: report["form"].as_str().ok_or_else(|| bad("form"))?.to_string(),
        objective: serde_json::from_value(report["objective"].clone()).map_err(|_| bad("objective"))?,
        predicted: report["optimum"]["predicted"].as_f64().ok_or_else(|| bad("optimum.predicted"))?,
        interval: serde_json::from_value(report["interval"].clone()).ok(),
        fit_warnings: serde_json::from_value(report["warnings"].clone()).unwrap_or_default(),
        weights,
        stage,
        data_block,
        fit_file,
    })
}

/// Decay when the sweep's mixtures were decay branches.
fn stage_of(plan: &Plan) -> MixtureStage {
    if plan.runs.iter().any(|r| r.mixture.is_some() && r.kind == RunKind::Branch && r.config.branch.as_ref().is_some_and(|b| b.data.is_some())) {
        MixtureStage::Decay
    } else {
        MixtureStage::Run
    }
}

/// Each domain's data, as the plan's mixture runs train on it.
fn sources_of(plan: &Plan) -> BTreeMap<String, DataSpec> {
    let mut sources = BTreeMap::new();
    for run in &plan.runs {
        let Some(mixture) = &run.mixture else { continue };
        let data = run.config.branch.as_ref().and_then(|b| b.data.as_ref()).unwrap_or(&run.config.data);
        sources.extend(domain_sources(mixture, data));
    }
    sources
}

/// `data = { kind = "mixture", ... }` (or `decay_data = ...`) for the weights, or `None` when a
/// domain with weight has no known source.
fn block(weights: &[(String, f64)], sources: &BTreeMap<String, DataSpec>, stage: MixtureStage) -> Option<String> {
    let mut components = Vec::new();
    // Weights in millionths (a domain below half a millionth is left out, not written as 0).
    for (domain, weight) in weights.iter().map(|(d, w)| (d, (w * 1e6).round() / 1e6)).filter(|(_, w)| *w > 0.0) {
        components.push(MixtureComponent { weight, source: sources.get(domain)?.clone() });
    }
    let key = match stage {
        MixtureStage::Decay => "decay_data",
        MixtureStage::Run => "data",
    };
    let value = toml::Value::try_from(DataSpec::Mixture(MixtureSpec { components })).ok()?;
    Some(format!("{key} = {value}"))
}

impl std::fmt::Display for MixtureChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let weights: Vec<String> = self.weights.iter().map(|(d, w)| format!("{d} {w:.3}")).collect();
        writeln!(f, "  mixture  {}", weights.join(" · "))?;
        let interval = self.interval.as_ref().map_or(" (a point estimate)".to_string(), |i| format!(" [{:.4}, {:.4}]", i.lower, i.upper));
        let objective: Vec<String> = self.objective.iter().map(|(s, w)| format!("{s}={w:.3}")).collect();
        writeln!(f, "           predicted objective ({}) {:.4}{interval} nats/token; form {}", objective.join(","), self.predicted, self.form)?;
        let by = self.saved.as_ref().map_or(String::new(), |s| format!(", saved by `{}` on {}", s.command, s.at));
        writeln!(f, "           from {}{by}", self.fit_file.display())?;
        let stage = match self.stage {
            MixtureStage::Decay => "measured on decay branches: the full run's decay (wsd.decay_data), its stable phase on the base data",
            MixtureStage::Run => "measured on whole runs: the full run's data",
        };
        writeln!(f, "           {stage}")?;
        for warning in &self.fit_warnings {
            writeln!(f, "           warning (fit mixture): {warning}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_is_a_mixture_the_sweep_file_reads_back() {
        let web = DataSpec::Text(toml::from_str("path = \"/data/web.txt\"").unwrap());
        let code = DataSpec::Text(toml::from_str("path = \"/data/code.txt\"").unwrap());
        let sources = BTreeMap::from([("web".to_string(), web.clone()), ("code".to_string(), code.clone())]);
        let weights = vec![("code".to_string(), 0.25), ("web".to_string(), 0.75), ("books".to_string(), 1e-9)];
        let text = block(&weights, &sources, MixtureStage::Run).unwrap();
        assert!(text.starts_with("data = "), "{text}");
        let table: toml::Table = toml::from_str(&text).unwrap();
        let back: DataSpec = table["data"].clone().try_into().unwrap();
        let DataSpec::Mixture(m) = back else { panic!("{text}") };
        assert_eq!(m.components.iter().map(|c| c.weight).collect::<Vec<_>>(), [0.25, 0.75]);
        assert_eq!((m.components[0].source.clone(), m.components[1].source.clone()), (code, web));
        let decay = block(&weights, &sources, MixtureStage::Decay).unwrap();
        assert!(decay.starts_with("decay_data = "), "{decay}");
        // A domain with weight whose data the plan does not name: no block rather than a wrong one.
        assert_eq!(block(&[("news".to_string(), 1.0)], &sources, MixtureStage::Run), None);
    }
}
