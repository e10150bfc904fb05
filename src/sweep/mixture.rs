//! Mixture grids: a grid's `mixtures` axis, each point a data mixture over named domains.
//!
//! ```toml
//! [[grid]]
//! name = "mix"
//! models = { widths = [32], depth = 2, head_dim = 16 }
//! wsd = { branch_tokens = [65536], decay_fraction = 0.2 }
//! mixtures.placement = "decay"          # each mixture a decay branch off one trunk; or "run"
//! mixtures.domains.web = { kind = "prepared", path = "data", domain = "web" }
//! mixtures.domains.code = { kind = "prepared", path = "data", domain = "code" }
//! mixtures.weights = [{ web = 0.5, code = 0.5 }, { web = 0.9, code = 0.1 }]
//! mixtures.sample = { count = 16, seed = 0, min_weight = 0.02 }   # RegMix's sampling
//! ```
//!
//! A mixture is written as a table keyed by domain name (TOML tables have no order), a domain it
//! leaves out weighing 0; its weights must sum to 1 within [`WEIGHT_SUM_TOLERANCE`]. Sampled
//! mixtures are Dirichlet draws around the domains' natural distribution ([`MixtureSample`]), a
//! pure function of the sample's settings. Each mixture becomes a `kind = "mixture"` data source
//! (the run's `[data]` under `placement = "run"`, the branch's decay data under `"decay"`), so a
//! run's id hashes its mixture; its weights and a stable mixture id ([`PlannedMixture::id`]) go
//! into the results table as `weight/<domain>` and `mixture`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::{DataSpec, MixtureComponent, MixtureSpec};
use crate::rng::Rng;

/// How far from 1 the weights of a written mixture may sum.
pub const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;
/// The most mixtures one grid may sample.
pub const MAX_SAMPLED: usize = 10_000;

/// A grid's mixture axis (`[[grid]] mixtures = { ... }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixtureGrid {
    /// The domains by name, each a data source (any kind but a mixture; relative paths: to the
    /// sweep file's folder), e.g. `web = { kind = "prepared", path = "data", domain = "web" }`.
    #[schemars(with = "BTreeMap<String, DataSpec>")]
    pub domains: BTreeMap<String, toml::Value>,
    /// Mixtures written out, each a table of weights keyed by domain (a domain left out weighs 0),
    /// summing to 1 within 1e-6: `[{ web = 0.5, code = 0.3, books = 0.2 }, ...]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<BTreeMap<String, f64>>,
    /// Mixtures drawn at random (RegMix), after the written ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<MixtureSample>,
    /// `run`: each mixture is a whole run (its trunk and branches too, with a `wsd` block);
    /// `decay`: one trunk on `[base]`'s data, each mixture a decay branch off it at every branch
    /// point (MiniCPM's second stage; needs `wsd`, and replaces `wsd.decay_data`).
    #[serde(default)]
    pub placement: Placement,
}

/// Where a grid's mixtures train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Each mixture a whole run (RegMix).
    #[default]
    Run,
    /// Each mixture a decay branch off a trunk on the base data.
    Decay,
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Run => "run",
            Self::Decay => "decay",
        })
    }
}

/// RegMix's sampling: mixture `i` is a Dirichlet draw with concentrations
/// `concentrations[i mod len] × natural`, whose mean is the natural distribution (a small
/// concentration: far from it, often at a corner; a large one: near it); weights below
/// `min_weight` are set to 0 and the rest renormalised, so each weight is 0 or at least
/// `min_weight`. A draw equal (at 6 decimals) to one before it or to a written mixture is drawn
/// again. The draws are a pure function of these settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixtureSample {
    /// How many mixtures to draw.
    pub count: usize,
    /// The seed of the draws.
    #[serde(default)]
    pub seed: u64,
    /// The Dirichlet concentrations, used in turn.
    #[serde(default = "MixtureSample::default_concentrations")]
    pub concentrations: Vec<f64>,
    /// A weight below this becomes 0 (at most 1 / the number of domains).
    #[serde(default)]
    pub min_weight: f64,
    /// The natural distribution, keyed by domain, summing to 1 [default: the domains' shares of
    /// training tokens, where every domain is a file; synthetic domains need it written].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub natural: Option<BTreeMap<String, f64>>,
}

impl MixtureSample {
    fn default_concentrations() -> Vec<f64> {
        vec![0.3, 1.0, 3.0, 10.0]
    }
}

/// One mixture of a planned run: its id, its weights by domain (summing to 1), and its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedMixture {
    /// `mix-` and 8 hex digits of a hash of the weights: the same mixture has the same id in
    /// every grid, at every size and placement.
    pub id: String,
    pub weights: BTreeMap<String, f64>,
}

/// Where a message points: the sweep file and the line of a key.
pub type At<'a> = &'a dyn Fn(&str) -> String;

impl MixtureGrid {
    /// The checks that need no data: domains with data, weights over known domains summing to 1,
    /// sample settings that can be met.
    pub fn validate(&self, grid: &str, at: At) -> anyhow::Result<()> {
        let here = at("mixtures");
        anyhow::ensure!(
            !self.domains.is_empty(),
            "{here}: grid `{grid}`: mixtures.domains is empty; name each domain's data, e.g. mixtures.domains.web = {{ kind = \"prepared\", path = \"data\", domain = \"web\" }}"
        );
        self.domain_specs(grid, at)?;
        anyhow::ensure!(
            !self.weights.is_empty() || self.sample.is_some(),
            "{here}: grid `{grid}`: mixtures needs `weights` (a list of mixtures) or `sample` (e.g. sample = {{ count = 16, seed = 0 }})"
        );
        for (i, mixture) in self.weights.iter().enumerate() {
            self.check_weights(mixture, &format!("mixtures.weights[{i}]"), grid, &at("mixtures.weights"))?;
        }
        if let Some(sample) = &self.sample {
            self.check_sample(sample, grid, &at("sample"))?;
        }
        Ok(())
    }

    /// Each domain's data, parsed: a domain with no `kind`, or a mixture, is refused.
    pub fn domain_specs(&self, grid: &str, at: At) -> anyhow::Result<BTreeMap<String, DataSpec>> {
        let mut specs = BTreeMap::new();
        for (name, value) in &self.domains {
            let here = at("domains");
            let key = format!("mixtures.domains.{name}");
            let example = format!("{name} = {{ kind = \"prepared\", path = \"data\", domain = \"{name}\" }}");
            let empty = value.as_table().is_some_and(|t| !t.contains_key("kind"));
            anyhow::ensure!(!empty, "{here}: grid `{grid}`: {key} has no data (no `kind`); give it a source, e.g. {example}");
            let spec = DataSpec::deserialize(value.clone()).map_err(|e| anyhow::anyhow!("{here}: grid `{grid}`: {key}: {}", e.to_string().trim_end()))?;
            anyhow::ensure!(!matches!(spec, DataSpec::Mixture(_)), "{here}: grid `{grid}`: {key} is itself a mixture; list its parts as domains of their own");
            spec.check_synthetic().map_err(|e| anyhow::anyhow!("{here}: grid `{grid}`: {key}: {e}"))?;
            specs.insert(name.clone(), spec);
        }
        Ok(specs)
    }

    /// A mixture's weights: known domains, finite and non-negative, summing to 1.
    fn check_weights(&self, weights: &BTreeMap<String, f64>, key: &str, grid: &str, here: &str) -> anyhow::Result<()> {
        let known = self.domains.keys().cloned().collect::<Vec<_>>().join(", ");
        for (domain, &w) in weights {
            anyhow::ensure!(
                self.domains.contains_key(domain),
                "{here}: grid `{grid}`: {key} names the domain `{domain}`, which mixtures.domains does not have (it has {known}); add it there or fix the name"
            );
            anyhow::ensure!(w.is_finite() && w >= 0.0, "{here}: grid `{grid}`: {key}.{domain} = {w}: a weight must be a number ≥ 0");
        }
        let sum: f64 = weights.values().sum();
        anyhow::ensure!(
            (sum - 1.0).abs() <= WEIGHT_SUM_TOLERANCE,
            "{here}: grid `{grid}`: {key} sums to {sum} ({}); the weights of a mixture must sum to 1 (within {WEIGHT_SUM_TOLERANCE:e}): scale them",
            weights.iter().map(|(d, w)| format!("{d} {w}")).collect::<Vec<_>>().join(" + ")
        );
        Ok(())
    }

    fn check_sample(&self, sample: &MixtureSample, grid: &str, here: &str) -> anyhow::Result<()> {
        let k = self.domains.len();
        anyhow::ensure!(
            (1..=MAX_SAMPLED).contains(&sample.count),
            "{here}: grid `{grid}`: mixtures.sample.count = {} must be between 1 and {MAX_SAMPLED}",
            sample.count
        );
        anyhow::ensure!(
            !sample.concentrations.is_empty() && sample.concentrations.iter().all(|c| c.is_finite() && *c > 0.0),
            "{here}: grid `{grid}`: mixtures.sample.concentrations must be positive numbers, e.g. [0.3, 1, 3, 10]"
        );
        anyhow::ensure!(
            sample.min_weight >= 0.0 && sample.min_weight <= 1.0 / k as f64,
            "{here}: grid `{grid}`: mixtures.sample.min_weight = {} must be in [0, 1/{k}] (1 / the number of domains), or no mixture could meet it",
            sample.min_weight
        );
        if let Some(natural) = &sample.natural {
            self.check_weights(natural, "mixtures.sample.natural", grid, here)?;
            if let Some(domain) = self.domains.keys().find(|d| natural.get(*d).is_none_or(|w| *w <= 0.0)) {
                anyhow::bail!(
                    "{here}: grid `{grid}`: mixtures.sample.natural gives the domain `{domain}` no weight; every domain needs a positive natural share (its part of the tokens)"
                );
            }
        }
        Ok(())
    }

    /// Every mixture of the grid, the written ones first, with each domain's data made absolute
    /// against `base_dir`; the natural distribution is read from the domains' files when the
    /// sample does not give it.
    pub fn expand(&self, grid: &str, base_dir: &Path) -> anyhow::Result<Vec<(PlannedMixture, DataSpec)>> {
        let mut domains = self.domain_specs(grid, &|_| "sweep file".to_string())?;
        domains.values_mut().for_each(|d| d.resolve_paths(base_dir));
        let mut all: Vec<BTreeMap<String, f64>> = self.weights.iter().map(|w| normalised(w, &domains)).collect();
        if let Some(sample) = &self.sample {
            let natural = match &sample.natural {
                Some(n) => normalised(n, &domains),
                None => natural_shares(&domains, base_dir).map_err(|e| anyhow::anyhow!("grid `{grid}`: {e}"))?,
            };
            let sampled = sample_mixtures(sample, &natural, &all).map_err(|e| anyhow::anyhow!("grid `{grid}`: {e}"))?;
            all.extend(sampled);
        }
        Ok(all.into_iter().map(|weights| (PlannedMixture { id: mixture_id(&weights), weights: weights.clone() }, data_spec(&weights, &domains))).collect())
    }
}

/// Every domain's weight (0 where left out), divided by their sum.
fn normalised(weights: &BTreeMap<String, f64>, domains: &BTreeMap<String, DataSpec>) -> BTreeMap<String, f64> {
    let sum: f64 = weights.values().sum();
    domains.keys().map(|d| (d.clone(), weights.get(d).copied().unwrap_or(0.0) / sum)).collect()
}

/// The domains' shares of training tokens, when each is a file that knows its size.
fn natural_shares(domains: &BTreeMap<String, DataSpec>, base_dir: &Path) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut tokens = BTreeMap::new();
    for (name, spec) in domains {
        let source = crate::data::open(spec, 0, base_dir).map_err(|e| anyhow::anyhow!("mixtures.domains.{name}: {e}; or give mixtures.sample.natural"))?;
        let count = source.train_tokens().ok_or_else(|| {
            anyhow::anyhow!(
                "mixtures.domains.{name} ({}) has no token count to take its natural share from; give mixtures.sample.natural = {{ {name} = ..., ... }}",
                spec.describe()
            )
        })?;
        tokens.insert(name.clone(), count as f64);
    }
    let total: f64 = tokens.values().sum();
    Ok(tokens.into_iter().map(|(d, t)| (d, t / total)).collect())
}

/// `sample.count` distinct mixtures (see [`MixtureSample`]), none of them one of `written`, each
/// weight rounded to 6 decimals.
pub fn sample_mixtures(
    sample: &MixtureSample,
    natural: &BTreeMap<String, f64>,
    written: &[BTreeMap<String, f64>],
) -> anyhow::Result<Vec<BTreeMap<String, f64>>> {
    let mut rng = Rng::derive(sample.seed, &[0x313C_5A3E]);
    let mut out: Vec<BTreeMap<String, f64>> = Vec::with_capacity(sample.count);
    let mut tries = 0usize;
    while out.len() < sample.count {
        tries += 1;
        anyhow::ensure!(
            tries <= sample.count.saturating_mul(100),
            "mixtures.sample: only {} distinct mixtures in {} draws; lower `count`, or raise `concentrations` or lower `min_weight`",
            out.len(),
            tries - 1
        );
        let concentration = sample.concentrations[out.len() % sample.concentrations.len()];
        let alphas: Vec<f64> = natural.values().map(|p| concentration * p).collect();
        let weights = with_minimum(dirichlet(&mut rng, &alphas), sample.min_weight);
        let mixture: BTreeMap<String, f64> = natural.keys().cloned().zip(weights).collect();
        if !out.contains(&mixture) && !written.contains(&mixture) {
            out.push(mixture);
        }
    }
    Ok(out)
}

/// One Dirichlet draw: Gamma(αᵢ) draws normalised, in logs so that tiny αᵢ do not underflow.
fn dirichlet(rng: &mut Rng, alphas: &[f64]) -> Vec<f64> {
    let logs: Vec<f64> = alphas.iter().map(|&a| log_gamma_draw(rng, a)).collect();
    let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// The log of a Gamma(α, 1) draw: Marsaglia and Tsang (2000) for α ≥ 1; for α < 1,
/// Gamma(α + 1)·U^(1/α).
fn log_gamma_draw(rng: &mut Rng, alpha: f64) -> f64 {
    if alpha < 1.0 {
        let u = 1.0 - rng.next_f64(); // (0, 1]
        return log_gamma_draw(rng, alpha + 1.0) + u.ln() / alpha;
    }
    let d = alpha - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - rng.next_f64();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d.ln() + v.ln();
        }
    }
}

/// Weights below `min_weight` set to 0, the rest renormalised and rounded to 6 decimals, the
/// largest taking what rounding left so that they sum to 1. Renormalising only raises a weight,
/// so each is 0 or at least `min_weight`.
pub fn with_minimum(weights: Vec<f64>, min_weight: f64) -> Vec<f64> {
    let kept: Vec<f64> = weights.iter().map(|&w| if w < min_weight { 0.0 } else { w }).collect();
    let sum: f64 = kept.iter().sum();
    // In millionths, so that the largest takes exactly what the others leave.
    let mut millionths: Vec<i64> = kept.iter().map(|w| (w / sum * 1e6).round() as i64).collect();
    let largest = (0..millionths.len()).max_by_key(|&i| millionths[i]).unwrap_or(0);
    let rest: i64 = millionths.iter().enumerate().filter(|(i, _)| *i != largest).map(|(_, w)| w).sum();
    millionths[largest] = 1_000_000 - rest;
    millionths.iter().map(|&m| m as f64 / 1e6).collect()
}

/// `mix-` and 8 hex digits of a hash of the weights written at 6 decimals.
pub fn mixture_id(weights: &BTreeMap<String, f64>) -> String {
    let text: Vec<String> = weights.iter().map(|(d, w)| format!("{d}={w:.6}")).collect();
    format!("mix-{:08x}", crate::rng::checksum(text.join(",").as_bytes()) >> 32)
}

/// The mixture as a data source: the domains with a positive weight, in name order.
fn data_spec(weights: &BTreeMap<String, f64>, domains: &BTreeMap<String, DataSpec>) -> DataSpec {
    let components = weights.iter().filter(|(_, w)| **w > 0.0).map(|(d, &weight)| MixtureComponent { weight, source: domains[d].clone() }).collect();
    DataSpec::Mixture(MixtureSpec { components })
}

/// Each domain's data in `data`, a mixture built by [`data_spec`] for `mixture` (its components
/// are the domains with a positive weight, in name order).
pub fn domain_sources(mixture: &PlannedMixture, data: &DataSpec) -> Vec<(String, DataSpec)> {
    let DataSpec::Mixture(MixtureSpec { components }) = data else { return Vec::new() };
    let domains = mixture.weights.iter().filter(|(_, w)| **w > 0.0).map(|(d, _)| d.clone());
    domains.zip(components.iter().map(|c| c.source.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn natural() -> BTreeMap<String, f64> {
        [("books", 0.2), ("code", 0.3), ("web", 0.5)].into_iter().map(|(d, w)| (d.to_string(), w)).collect()
    }

    fn sample(count: usize, seed: u64, min_weight: f64) -> MixtureSample {
        MixtureSample { count, seed, concentrations: MixtureSample::default_concentrations(), min_weight, natural: None }
    }

    #[test]
    fn sampled_mixtures_are_a_function_of_the_seed() {
        let a = sample_mixtures(&sample(64, 0, 0.0), &natural(), &[]).unwrap();
        assert_eq!(a, sample_mixtures(&sample(64, 0, 0.0), &natural(), &[]).unwrap());
        assert_ne!(a, sample_mixtures(&sample(64, 1, 0.0), &natural(), &[]).unwrap());
        // The first draws do not depend on how many are asked for.
        assert_eq!(a[..16], sample_mixtures(&sample(16, 0, 0.0), &natural(), &[]).unwrap()[..]);
        // Pinned: the first mixtures of seed 0, so a change to the sampler shows (ids stay stable).
        assert_eq!(a[..2].iter().map(mixture_id).collect::<Vec<_>>(), ["mix-93015d29", "mix-56ca4529"]);
    }

    #[test]
    fn sampled_weights_sum_to_one_respect_the_minimum_and_reach_zero() {
        let mixtures = sample_mixtures(&sample(256, 3, 0.05), &natural(), &[]).unwrap();
        let mut zeros = 0;
        for m in &mixtures {
            let sum: f64 = m.values().sum();
            assert!((sum - 1.0).abs() < 1e-12, "{m:?} sums to {sum}");
            for &w in m.values() {
                assert!(w == 0.0 || w >= 0.05, "{m:?}: {w} is neither 0 nor ≥ 0.05");
                zeros += usize::from(w == 0.0);
            }
        }
        assert!(zeros > 20, "small concentrations put mixtures near the corners: {zeros} zeros in 256 draws");
        let distinct: std::collections::BTreeSet<String> = mixtures.iter().map(mixture_id).collect();
        assert_eq!(distinct.len(), 256, "every draw is a different mixture");
        // Around the natural distribution: the mean of many draws is near it.
        for (domain, p) in natural() {
            let mean = mixtures.iter().map(|m| m[&domain]).sum::<f64>() / 256.0;
            assert!((mean - p).abs() < 0.06, "{domain}: mean {mean}, natural {p}");
        }
    }

    #[test]
    fn the_minimum_rounds_and_renormalises() {
        assert_eq!(with_minimum(vec![0.5, 0.3, 0.19, 0.01], 0.02), vec![0.505051, 0.30303, 0.191919, 0.0]);
        assert_eq!(with_minimum(vec![0.25; 4], 0.25), vec![0.25; 4]);
    }

    const SWEEP: &str = r#"name = "s"
[base]
optimizer = { lr = 0.01 }
schedule = { kind = "constant", warmup_tokens = 256 }
training = { tokens = 2560, batch_size = 4, seq_len = 32, eval_interval_tokens = 1280, eval_tokens = 256 }
data = { kind = "synthetic", vocab = 64 }

[[grid]]
name = "mix"
models = { widths = [16], depth = 1, head_dim = 16 }
wsd = { branch_tokens = [1280] }
mixtures.placement = "decay"
mixtures.domains = { a = { kind = "synthetic", vocab = 64, language_seed = 1 }, b = { kind = "synthetic", vocab = 64, language_seed = 2 } }
mixtures.weights = [{ a = 0.5, b = 0.5 }, { a = 1.0 }]
mixtures.sample = { count = 4, natural = { a = 0.5, b = 0.5 } }
"#;

    fn error(from: &str, to: &str) -> String {
        let text = SWEEP.replace(from, to);
        assert_ne!(text, SWEEP, "{from:?} is in the sweep");
        format!("{:#}", crate::sweep::spec::SweepSpec::parse(&text, Path::new("sweep.toml")).unwrap_err())
    }

    #[test]
    fn bad_mixtures_are_refused_naming_the_file_the_field_and_the_fix() {
        crate::sweep::spec::SweepSpec::parse(SWEEP, Path::new("sweep.toml")).unwrap();
        let cases = [
            (
                "{ a = 1.0 }",
                "{ a = 0.5, b = 0.4 }",
                "sweep.toml (line 14): grid `mix`: mixtures.weights[1] sums to 0.9 (a 0.5 + b 0.4); the weights of a mixture must sum to 1 (within 1e-6): scale them",
            ),
            (
                "{ a = 1.0 }",
                "{ a = 0.5, c = 0.5 }",
                "sweep.toml (line 14): grid `mix`: mixtures.weights[1] names the domain `c`, which mixtures.domains does not have (it has a, b); add it there or fix the name",
            ),
            ("{ a = 1.0 }", "{ a = 1.5, b = -0.5 }", "sweep.toml (line 14): grid `mix`: mixtures.weights[1].b = -0.5: a weight must be a number ≥ 0"),
            (
                "b = { kind = \"synthetic\", vocab = 64, language_seed = 2 }",
                "b = {}",
                "sweep.toml (line 13): grid `mix`: mixtures.domains.b has no data (no `kind`); give it a source, e.g. b = { kind = \"prepared\", path = \"data\", domain = \"b\" }",
            ),
            (
                "natural = { a = 0.5, b = 0.5 }",
                "natural = { a = 1.0 }",
                "sweep.toml (line 15): grid `mix`: mixtures.sample.natural gives the domain `b` no weight; every domain needs a positive natural share (its part of the tokens)",
            ),
            (
                "count = 4,",
                "count = 4, min_weight = 0.6,",
                "sweep.toml (line 15): grid `mix`: mixtures.sample.min_weight = 0.6 must be in [0, 1/2] (1 / the number of domains), or no mixture could meet it",
            ),
            (
                "wsd = { branch_tokens = [1280] }\n",
                "",
                "sweep.toml (line 11): grid `mix`: mixtures.placement = \"decay\" branches each mixture off a trunk, so the grid needs a `wsd` block, e.g. wsd = { branch_tokens = [65536], decay_fraction = 0.2 }; or use placement = \"run\"",
            ),
            (
                "branch_tokens = [1280] }",
                "branch_tokens = [1280], decay_data = { kind = \"synthetic\" } }",
                "sweep.toml (line 12): grid `mix`: mixtures.placement = \"decay\" sets each branch's decay data to its mixture; remove wsd.decay_data",
            ),
        ];
        for (from, to, message) in cases {
            assert_eq!(error(from, to), message);
        }
    }

    #[test]
    fn a_mixture_id_depends_on_the_weights_alone() {
        let m = natural();
        assert_eq!(mixture_id(&m), mixture_id(&m.clone()));
        let mut other = m.clone();
        other.insert("web".into(), 0.4);
        other.insert("books".into(), 0.3);
        assert_ne!(mixture_id(&m), mixture_id(&other));
        assert!(mixture_id(&m).starts_with("mix-") && mixture_id(&m).len() == 12);
    }
}
