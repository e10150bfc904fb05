//! One loss floor per group, shared exponents: `fit law --group-e COLUMN`.
//!
//! `L_i = E_g(i) + A/N^α + B/D^β`: runs on different data mixtures or tokenizers reach different
//! irreducible losses, while the scaling exponents (and A, B) are shared — the fit Hoffmann et
//! al.'s form with one E per group of points. Same objective as `fit law` (Huber loss on log
//! residuals, δ = 1e-3 by default, log-sum-exp parametrisation, L-BFGS from the 4500 starts of the
//! Chinchilla grid, every group's E starting at the grid's e), with intervals from a bootstrap of
//! the points (refits from the full optimum).

use rayon::prelude::*;
use serde::Serialize;

use super::bootstrap::Interval;
use super::filter::Filter;
use super::form::{Chinchilla, LawForm};
use super::input::{points, Columns};
use super::law::{huber, Point};
use super::lbfgs::{self, Smooth, Stopping};
use super::observation::Observations;
use super::report::LawDefinition;
use crate::rng::Rng;

/// The fitted law: E per group, the rest shared.
#[derive(Debug, Clone, Serialize)]
pub struct GroupedLaw {
    pub groups: Vec<String>,
    pub e: Vec<f64>,
    pub a: f64,
    pub b: f64,
    pub alpha: f64,
    pub beta: f64,
}

impl GroupedLaw {
    /// θ = (log A, log B, α, β, log E_1, …, log E_G).
    fn from_theta(groups: &[String], t: &[f64]) -> Self {
        Self { groups: groups.to_vec(), e: t[4..].iter().map(|x| x.exp()).collect(), a: t[0].exp(), b: t[1].exp(), alpha: t[2], beta: t[3] }
    }

    pub fn loss(&self, group: usize, n: f64, d: f64) -> f64 {
        self.e[group] + self.a / n.powf(self.alpha) + self.b / d.powf(self.beta)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupedReport {
    pub input: std::path::PathBuf,
    pub group_column: String,
    /// Points per group, in the order of `law.groups`.
    pub points: Vec<usize>,
    pub law: GroupedLaw,
    pub objective: f64,
    pub residual_rms: f64,
    /// Bootstrap intervals: one per group's E, then α and β.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e_intervals: Option<Vec<Interval>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha_interval: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_interval: Option<Interval>,
}

/// `fit law --group-e COLUMN`: the definition's points of `table` (its columns, grid and
/// `--where`), one E per value of `column`; the bootstrap defaults to 200 resamples.
pub fn fit_grouped(def: &LawDefinition, table: &Observations, column: &str) -> anyhow::Result<GroupedReport> {
    let keep = Filter::rows_where("--where", def.where_.as_deref(), table)?;
    let bootstrap = if def.bootstrap == 0 { 200 } else { def.bootstrap };
    fit_grouped_table(table, &def.columns(), column, keep.as_deref(), bootstrap, def.seed, def.delta)
}

/// Fit the grouped law to `table`'s points (as `fit law` selects them), grouped by `group_column`.
pub fn fit_grouped_table(
    table: &Observations,
    columns: &Columns,
    group_column: &str,
    keep: Option<&[bool]>,
    bootstrap: usize,
    seed: u64,
    delta: f64,
) -> anyhow::Result<GroupedReport> {
    let g = table.column(group_column)?;
    let group_of_row: Vec<String> = table.rows.iter().map(|r| r.values[g].to_string()).collect();
    let mut names: Vec<String> = Vec::new();
    for name in &group_of_row {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let (mut all, mut group_of, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for (k, name) in names.iter().enumerate() {
        let mask: Vec<bool> = group_of_row.iter().enumerate().map(|(i, r)| r == name && keep.is_none_or(|m| m[i])).collect();
        let p = points(table, columns, 0, Some(&mask))?.points;
        counts.push(p.len());
        group_of.extend(std::iter::repeat_n(k, p.len()));
        all.extend(p);
    }
    anyhow::ensure!(names.len() >= 2, "--group-e {group_column}: the column has one value; fit without --group-e");
    for (name, &count) in names.iter().zip(&counts) {
        anyhow::ensure!(count >= 2, "--group-e {group_column}: group `{name}` has {count} point(s); each group needs 2 or more to pin its E");
    }
    let data = GroupedData::new(&all, &group_of, names.len(), delta);
    let (theta, cost) = fit_from_grid(&data).ok_or_else(|| anyhow::anyhow!("the grouped fit did not converge from any start"))?;
    let law = GroupedLaw::from_theta(&names, &theta);
    let residuals: Vec<f64> = all.iter().zip(&group_of).map(|(p, &k)| p.loss.ln() - law.loss(k, p.n, p.d).ln()).collect();
    let residual_rms = (residuals.iter().map(|r| r * r).sum::<f64>() / residuals.len() as f64).sqrt();
    let refits = bootstrap_refits(&all, &group_of, names.len(), delta, &theta, bootstrap, seed);
    let interval = |est: f64, i: usize, f: fn(f64) -> f64| Interval::from_samples(est, &refits.iter().map(|t| f(t[i])).collect::<Vec<_>>(), 0.95);
    let enough = bootstrap > 0 && refits.len() * 2 >= bootstrap;
    Ok(GroupedReport {
        input: table.source.clone(),
        group_column: group_column.to_string(),
        points: counts,
        objective: cost,
        residual_rms,
        e_intervals: enough.then(|| law.e.iter().enumerate().map(|(k, &e)| interval(e, 4 + k, f64::exp)).collect()),
        alpha_interval: enough.then(|| interval(law.alpha, 2, |x| x)),
        beta_interval: enough.then(|| interval(law.beta, 3, |x| x)),
        law,
    })
}

/// Best of L-BFGS runs from the Chinchilla start grid (each group's log E at the grid's e).
fn fit_from_grid(data: &GroupedData) -> Option<(Vec<f64>, f64)> {
    let groups = data.groups;
    let starts: Vec<Vec<f64>> = Chinchilla
        .start_grid()
        .into_iter()
        .map(|s| {
            let mut t = vec![s[0], s[1], s[3], s[4]];
            t.extend(std::iter::repeat_n(s[2], groups));
            t
        })
        .collect();
    starts.par_iter().filter_map(|s| data.minimise(s)).filter(|(t, _)| t[2] > 0.0 && t[3] > 0.0).min_by(|a, b| a.1.total_cmp(&b.1))
}

fn bootstrap_refits(points: &[Point], group_of: &[usize], groups: usize, delta: f64, theta: &[f64], samples: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Rng::new(seed);
    let draws: Vec<Vec<usize>> = (0..samples).map(|_| (0..points.len()).map(|_| rng.below(points.len() as u64) as usize).collect()).collect();
    draws
        .par_iter()
        .filter_map(|idx| {
            let p: Vec<Point> = idx.iter().map(|&i| points[i]).collect();
            let g: Vec<usize> = idx.iter().map(|&i| group_of[i]).collect();
            GroupedData::new(&p, &g, groups, delta).minimise(theta).map(|(t, _)| t)
        })
        .collect()
}

/// The points of a grouped fit, in log space.
#[derive(Clone)]
struct GroupedData {
    log_n: Vec<f64>,
    log_d: Vec<f64>,
    log_loss: Vec<f64>,
    group_of: Vec<usize>,
    groups: usize,
    delta: f64,
}

impl GroupedData {
    fn new(points: &[Point], group_of: &[usize], groups: usize, delta: f64) -> Self {
        Self {
            log_n: points.iter().map(|p| p.n.ln()).collect(),
            log_d: points.iter().map(|p| p.d.ln()).collect(),
            log_loss: points.iter().map(|p| p.loss.ln()).collect(),
            group_of: group_of.to_vec(),
            groups,
            delta,
        }
    }

    /// One L-BFGS run from `start`: (θ, objective).
    fn minimise(&self, start: &[f64]) -> Option<(Vec<f64>, f64)> {
        let stopping = Stopping { tolerance_grad: 1e-9, tolerance_cost: 1e-12, max_iters: 1000, max_evaluations: u64::MAX };
        let (theta, cost, _) = lbfgs::minimise(self, start.to_vec(), stopping)?;
        theta.iter().all(|x| x.is_finite()).then_some((theta, cost))
    }
}

// The summed Huber loss of log residuals, and its gradient, over θ = (log A, log B, α, β, log E_g…).
impl Smooth for GroupedData {
    fn value_and_gradient(&self, t: &[f64]) -> (f64, Vec<f64>) {
        let d = self;
        let (mut cost, mut grad, mut point) = (0.0, vec![0.0; t.len()], [0.0; 5]);
        for i in 0..d.log_n.len() {
            let e = 4 + d.group_of[i];
            // Chinchilla's θ order: (log A, log B, log E, α, β).
            let log_loss = Chinchilla.log_loss(&[t[0], t[1], t[e], t[2], t[3]], d.log_n[i], d.log_d[i], &mut point);
            let (h, dh) = huber(log_loss - d.log_loss[i], d.delta);
            cost += h;
            for (k, j) in [(0, 0), (1, 1), (2, e), (3, 2), (4, 3)] {
                grad[j] += dh * point[k];
            }
        }
        (cost, grad)
    }
}

impl std::fmt::Display for GroupedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.law;
        writeln!(f, "L(N, D) = E_g + A/N^α + B/D^β, one E per `{}` ({} points), shared A, B, α, β", self.group_column, self.points.iter().sum::<usize>())?;
        let iv = |i: Option<&Interval>| i.map(|i| format!(" [{:.3}, {:.3}]", i.lower, i.upper)).unwrap_or_default();
        for (k, name) in l.groups.iter().enumerate() {
            writeln!(f, "  E[{name}] = {:.4}{}  ({} points)", l.e[k], iv(self.e_intervals.as_ref().map(|v| &v[k])), self.points[k])?;
        }
        writeln!(f, "  A = {:.4e}  B = {:.4e}", l.a, l.b)?;
        writeln!(f, "  α = {:.4}{}  β = {:.4}{}", l.alpha, iv(self.alpha_interval.as_ref()), l.beta, iv(self.beta_interval.as_ref()))?;
        write!(f, "  rms log residual {:.4}", self.residual_rms)
    }
}

#[cfg(test)]
mod tests {
    use super::super::input::Table;
    use super::*;

    /// Two mixtures with different floors and the same exponents: each E and the shared α, β come back.
    #[test]
    fn recovers_one_floor_per_group_and_shared_exponents() {
        let (e, a, b, alpha, beta) = ([1.8, 2.3], 400.0, 900.0, 0.34, 0.30);
        let mut rows = Vec::new();
        for (k, mix) in ["web", "code"].iter().enumerate() {
            for i in 0..5 {
                for j in 0..4 {
                    let n = 1e6 * 3f64.powi(i);
                    let d = n * 4.0 * 3f64.powi(j);
                    let loss: f64 = e[k] + a / n.powf(alpha) + b / d.powf(beta);
                    rows.push(vec![mix.to_string(), n.to_string(), d.to_string(), loss.to_string()]);
                }
            }
        }
        let table = Table { path: "mixtures.csv".into(), columns: ["mix", "N", "D", "loss"].map(String::from).to_vec(), rows };
        let columns = Columns { n: "N".into(), tokens: Some("D".into()), flops: None, loss: "loss".into(), grid: None };
        let report = fit_grouped_table(&table.clone().into_observations().unwrap(), &columns, "mix", None, 20, 1, 1e-3).unwrap();
        assert_eq!(report.law.groups, ["web", "code"]);
        for (k, (fitted, truth)) in report.law.e.iter().zip(e).enumerate() {
            assert!((fitted - truth).abs() < 1e-3, "E[{k}] = {fitted}");
        }
        assert!((report.law.alpha - alpha).abs() < 1e-3 && (report.law.beta - beta).abs() < 1e-3, "{report}");
        assert!(report.residual_rms < 1e-6);

        let one = Table { rows: table.rows.iter().filter(|r| r[0] == "web").cloned().collect(), ..table.clone() };
        let e = format!("{:#}", fit_grouped_table(&one.into_observations().unwrap(), &columns, "mix", None, 0, 1, 1e-3).unwrap_err());
        assert!(e.contains("one value"), "{e}");
    }
}
