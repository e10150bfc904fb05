//! Hyperparameter laws in N and D: `windtunnel fit hparams`.
//!
//! From a table of runs that scan the learning rate and the batch size at several model sizes N
//! and data sizes D (the Step Law study's design, Li et al. 2025), per (N, D) cell:
//!
//! - the optimal learning rate: a parabola in log lr through the losses at the cell's best batch
//!   size (the batch size of its lowest loss);
//! - the optimal batch size: a parabola in log batch through the losses at the cell's best
//!   learning rate (when the cell scans three or more batch sizes there).
//!
//! Cells never pool over anything else the table varies: every other swept column (`param.*`)
//! splits cells further. Seeds are replicates: each (learning rate, batch size) point of a cell is
//! the mean loss of its seeds, so the parabolas see one point per scanned value. Then the laws, by least squares in
//! log space: the Step Law forms `lr_opt = c·N^a·D^b` and `B_opt = c·D^b`, and DeepSeek's forms in
//! compute C = 6ND, `lr_opt = c·C^p` and `B_opt = c·C^q`; intervals by the bootstrap over cells.
//!
//! **Depth.** When the cells span several depths L (the table's `depth` column), the learning-rate
//! law gains a factor, `lr_opt = c·N^a·D^b·L^g`: g is how the optimum moves with depth at a fixed
//! N and D, the question a deep-and-thin target raises (under CompleteP's depth rules g should be
//! near 0; `fit lr` measures the same drift at one width). When N varies only through depth (one
//! width, as in `sweeps/depth-transfer.toml`), N and L cannot be told apart and the law is
//! `c·L^g·D^b`. The batch-size law keeps the Step Law's form.

use serde::Serialize;

use super::bootstrap::Interval;
use super::distinct_count;
use super::filter::Filter;
use super::observation::{column, Observations};
use super::transfer::{fit_line, least_squares, least_squares3, parabola_optimum};
use crate::rng::Rng;

/// Which columns hold what.
#[derive(Debug, Clone)]
pub struct HparamColumns {
    pub n: String,
    pub tokens: String,
    pub lr: String,
    pub batch: String,
    pub loss: String,
    /// The model's depth; used when the table has the column and the cells span two or more depths.
    pub depth: String,
}

impl Default for HparamColumns {
    fn default() -> Self {
        Self {
            n: column::NON_EMBEDDING_PARAMS.into(),
            tokens: column::TOKENS.into(),
            lr: column::LR.into(),
            batch: column::BATCH_SIZE.into(),
            loss: column::FINAL_EVAL_LOSS.into(),
            depth: column::DEPTH.into(),
        }
    }
}

/// The optima of one cell.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub n: f64,
    pub tokens: f64,
    /// The depth, when the table has a depth column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<f64>,
    /// The other swept columns that split the cell (`param.x = value`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub split_by: Vec<String>,
    pub lr_opt: f64,
    /// The batch size the lr scan was read at.
    pub at_batch: f64,
    pub batch_opt: Option<f64>,
    /// The learning rate the batch scan was read at.
    pub at_lr: f64,
    pub notes: Vec<String>,
}

/// `y = c · x1^e1 · x2^e2` (or one factor), with bootstrap intervals on the exponents.
#[derive(Debug, Clone, Serialize)]
pub struct PowerLaw {
    pub coefficient: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_exponent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_interval: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_exponent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_interval: Option<Interval>,
    /// The exponent of the depth L, when the cells span several depths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth_exponent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth_interval: Option<Interval>,
    /// DeepSeek's form: the exponent of C.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c_exponent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c_interval: Option<Interval>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HparamsReport {
    pub input: std::path::PathBuf,
    pub runs: usize,
    pub cells: Vec<Cell>,
    /// Step Law: lr_opt = c·N^a·D^b (·L^g when the cells span depths).
    pub lr: PowerLaw,
    /// Step Law: B_opt = c·D^b (None without batch scans).
    pub batch: Option<PowerLaw>,
    /// DeepSeek: lr_opt = c·C^p.
    pub lr_compute: PowerLaw,
    /// DeepSeek: B_opt = c·C^q.
    pub batch_compute: Option<PowerLaw>,
    /// What the laws' factors are, where that is not the plain Step Law (depth).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

/// One usable row.
#[derive(Debug, Clone)]
struct Run {
    key: Vec<String>,
    n: f64,
    tokens: f64,
    depth: Option<f64>,
    lr: f64,
    batch: f64,
    loss: f64,
}

/// Fit the hyperparameter laws of `table`'s rows that `where_` (a `--where` filter) keeps.
pub fn fit_hparams(table: &Observations, columns: &HparamColumns, where_: Option<&str>, bootstrap: usize, seed: u64) -> anyhow::Result<HparamsReport> {
    let keep = Filter::rows_where("--where", where_, table)?;
    let runs = usable_runs(table, columns, keep.as_deref())?;
    let cells = cells_of(&runs, columns)?;
    anyhow::ensure!(
        cells.len() >= 3,
        "{}: {} (N, D) cell(s); the laws need 3 or more (scan lr and batch size at more model and data sizes)",
        table.source.display(),
        cells.len()
    );
    let batch_cells: Vec<&Cell> = cells.iter().filter(|c| c.batch_opt.is_some()).collect();
    let mut warnings = pooled_warning(&cells);
    let all: Vec<&Cell> = cells.iter().collect();
    let depth = DepthTerm::of(&all);
    let lr = laws_with_bootstrap(&all, |c| Some(c.lr_opt), Some(depth), bootstrap, seed)
        .ok_or_else(|| anyhow::anyhow!("{}: the cells do not span N or D, so no law in them can be fitted", table.source.display()))?;
    let lr_compute = compute_law(&cells.iter().collect::<Vec<_>>(), |c| Some(c.lr_opt), bootstrap, seed).expect("cells span N or D");
    let (batch, batch_compute) = if batch_cells.len() >= 3 {
        (laws_with_bootstrap(&batch_cells, |c| c.batch_opt, None, bootstrap, seed), compute_law(&batch_cells, |c| c.batch_opt, bootstrap, seed))
    } else {
        warnings.push(format!("{} cell(s) scan 3 or more batch sizes at their best learning rate: no batch-size law", batch_cells.len()));
        (None, None)
    };
    for (name, law) in [("lr", Some(&lr)), ("batch", batch.as_ref())] {
        // Not the depth's: an interval about zero there is transfer, the answer hoped for.
        for (what, iv) in [("N", law.and_then(|l| l.n_interval)), ("D", law.and_then(|l| l.d_interval))] {
            if iv.is_some_and(|i| i.lower < 0.0 && i.upper > 0.0) {
                warnings.push(format!("the {what} exponent of {name}_opt is not constrained: its interval spans zero"));
            }
        }
    }
    let notes = depth.note(&columns.depth).into_iter().collect();
    Ok(HparamsReport { input: table.source.clone(), runs: runs.len(), cells, lr, batch, lr_compute, batch_compute, notes, warnings })
}

/// Finished rows with finite, positive values, each with its cell key (the other swept columns).
fn usable_runs(table: &Observations, columns: &HparamColumns, keep: Option<&[bool]>) -> anyhow::Result<Vec<Run>> {
    let get = |name: &str| table.numbers(name);
    let (n, tokens, lr, batch, loss) = (get(&columns.n)?, get(&columns.tokens)?, get(&columns.lr)?, get(&columns.batch)?, get(&columns.loss)?);
    // The depth is optional: a table from elsewhere may not have it.
    let depth = table.has(&columns.depth).then(|| get(&columns.depth)).transpose()?;
    let named = [&columns.n, &columns.tokens, &columns.lr, &columns.batch, &columns.loss];
    let splitting: Vec<usize> = (0..table.columns.len())
        .filter(|&i| {
            let c = &table.columns[i];
            let named_elsewhere = c.ends_with(".lr") || c.ends_with(".batch_size") || c.ends_with(".tokens") || (depth.is_some() && c.ends_with(".depth"));
            c.starts_with("param.") && !named_elsewhere && !named.contains(&c)
        })
        .collect();
    let mut runs = Vec::new();
    for (i, row) in table.rows.iter().enumerate() {
        if !row.is_done() || keep.is_some_and(|k| !k[i]) {
            continue;
        }
        let values = [n[i], tokens[i], lr[i], batch[i], loss[i]];
        if values.iter().all(|v| v.is_finite() && *v > 0.0) {
            let key = splitting.iter().map(|&c| format!("{} = {}", table.columns[c], row.values[c])).collect();
            let depth = depth.as_ref().map(|d| d[i]).filter(|d| d.is_finite() && *d > 0.0);
            runs.push(Run { key, n: n[i], tokens: tokens[i], depth, lr: lr[i], batch: batch[i], loss: loss[i] });
        }
    }
    anyhow::ensure!(
        !runs.is_empty(),
        "{}: no finished runs with positive {}, {}, {}, {} and {}",
        table.source.display(),
        named[0],
        named[1],
        named[2],
        named[3],
        named[4]
    );
    Ok(runs)
}

/// The optima of every (N, D, depth, other swept values) cell.
fn cells_of(runs: &[Run], columns: &HparamColumns) -> anyhow::Result<Vec<Cell>> {
    let same_cell = |a: &Run, b: &Run| a.n == b.n && a.tokens == b.tokens && a.depth == b.depth && a.key == b.key;
    let mut firsts: Vec<&Run> = Vec::new();
    for r in runs {
        if !firsts.iter().any(|f| same_cell(f, r)) {
            firsts.push(r);
        }
    }
    firsts.sort_by(|a, b| a.n.total_cmp(&b.n).then(a.tokens.total_cmp(&b.tokens)));
    firsts
        .iter()
        .map(|first| {
            let members: Vec<&Run> = runs.iter().filter(|r| same_cell(first, r)).collect();
            cell(&members, first, columns)
        })
        .collect()
}

/// The cell's (lr, batch, mean loss over seeds) points.
fn seed_means(members: &[&Run]) -> Vec<(f64, f64, f64)> {
    let mut points: Vec<(f64, f64, Vec<f64>)> = Vec::new();
    for r in members {
        match points.iter_mut().find(|p| p.0 == r.lr && p.1 == r.batch) {
            Some(p) => p.2.push(r.loss),
            None => points.push((r.lr, r.batch, vec![r.loss])),
        }
    }
    points.into_iter().map(|(lr, batch, losses)| (lr, batch, losses.iter().sum::<f64>() / losses.len() as f64)).collect()
}

fn cell(members: &[&Run], first: &Run, columns: &HparamColumns) -> anyhow::Result<Cell> {
    let (n, tokens, key) = (first.n, first.tokens, &first.key);
    let points = seed_means(members);
    let &(best_lr, best_batch, _) = points.iter().min_by(|a, b| a.2.total_cmp(&b.2)).expect("a cell has runs");
    let depth = first.depth.map(|d| format!(", {} = {d}", columns.depth)).unwrap_or_default();
    let name = format!("cell {} = {n}, {} = {tokens}{depth}{}", columns.n, columns.tokens, key.iter().map(|k| format!(", {k}")).collect::<String>());
    let lr_scan: Vec<(f64, f64)> = points.iter().filter(|p| p.1 == best_batch).map(|p| (p.0.ln(), p.2)).collect();
    let lrs = distinct_count(lr_scan.iter().map(|p| p.0));
    anyhow::ensure!(
        lrs >= 3,
        "{name}: {lrs} learning rate(s) at its best batch size {}; a parabola needs 3 or more (scan more rates, or leave the cell out with --where)",
        best_batch
    );
    let mut notes = Vec::new();
    let lr_opt = optimum(&lr_scan, "learning rate", &mut notes);
    let batch_scan: Vec<(f64, f64)> = points.iter().filter(|p| p.0 == best_lr).map(|p| (p.1.ln(), p.2)).collect();
    let batch_opt = (distinct_count(batch_scan.iter().map(|p| p.0)) >= 3).then(|| optimum(&batch_scan, "batch size", &mut notes));
    Ok(Cell { n, tokens, depth: first.depth, split_by: key.to_vec(), lr_opt, at_batch: best_batch, batch_opt, at_lr: best_lr, notes })
}

/// exp of the parabola's vertex in log x, with a note when it is at the scan's edge or not convex.
fn optimum(scan: &[(f64, f64)], what: &str, notes: &mut Vec<String>) -> f64 {
    let (x, _, inside, convex) = parabola_optimum(scan).expect("three finite points");
    if !inside {
        notes.push(format!("the best {what} is at the edge of the scan"));
    }
    if !convex {
        notes.push(format!("losses not convex in log {what}: the best scanned value, not a vertex"));
    }
    x.exp()
}

/// How the depth L enters the learning-rate law; decided once on all cells, so every bootstrap
/// resample fits the same form.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DepthTerm {
    /// One depth, or no depth column: the Step Law as published.
    Absent,
    /// `c·N^a·D^b·L^g`: the cells vary width and depth apart.
    BesideN,
    /// `c·L^g·D^b`: N varies only through depth (one width), so N and L cannot be told apart.
    InsteadOfN,
}

impl DepthTerm {
    fn of(cells: &[&Cell]) -> Self {
        let depths: Option<Vec<f64>> = cells.iter().map(|c| c.depth.map(f64::ln)).collect();
        let Some(depths) = depths.filter(|d| distinct_count(d.iter().copied()) >= 2) else { return Self::Absent };
        // N follows depth when ln N is a line in ln L to within 1%.
        let points: Vec<(f64, f64)> = depths.iter().zip(cells).map(|(&l, c)| (l, c.n.ln())).collect();
        let Some(line) = fit_line(&points) else { return Self::Absent };
        let through_depth = points.iter().all(|&(l, n)| (n - line.intercept - line.slope * l).abs() < 0.01);
        if through_depth {
            Self::InsteadOfN
        } else {
            Self::BesideN
        }
    }

    fn note(self, column: &str) -> Option<String> {
        match self {
            Self::Absent => None,
            Self::BesideN => Some(format!("L is the depth (`{column}`): L's exponent is how the optimal learning rate moves with depth at a fixed N and D")),
            Self::InsteadOfN => Some(format!(
                "N varies only through the depth L (`{column}`; one width), so the learning-rate law is in L, not N: L's exponent is the optimum's drift in depth"
            )),
        }
    }
}

/// The Step Law form (`depth` given: the learning rate's c·N^a·D^b, with L as `DepthTerm` says;
/// `None`: the batch size's c·D^b) with bootstrap intervals over cells.
fn laws_with_bootstrap(cells: &[&Cell], y: fn(&Cell) -> Option<f64>, depth: Option<DepthTerm>, bootstrap: usize, seed: u64) -> Option<PowerLaw> {
    let fit = |cells: &[&Cell]| step_law(cells, y, depth);
    let full = fit(cells)?;
    let samples = resample(cells, bootstrap, seed, fit);
    let interval = |est: Option<f64>, pick: fn(&PowerLaw) -> Option<f64>| {
        est.filter(|_| samples.len() >= bootstrap / 2 && bootstrap > 0)
            .map(|e| Interval::from_samples(e, &samples.iter().filter_map(pick).collect::<Vec<_>>(), 0.95))
    };
    Some(PowerLaw {
        n_interval: interval(full.n_exponent, |l| l.n_exponent),
        d_interval: interval(full.d_exponent, |l| l.d_exponent),
        depth_interval: interval(full.depth_exponent, |l| l.depth_exponent),
        ..full
    })
}

/// ln y = ln c + a ln N + b ln D (+ g ln L) by least squares; a factor that does not vary is left out.
fn step_law(cells: &[&Cell], y: fn(&Cell) -> Option<f64>, depth: Option<DepthTerm>) -> Option<PowerLaw> {
    let with_n = depth.is_some();
    if let Some(term @ (DepthTerm::BesideN | DepthTerm::InsteadOfN)) = depth {
        return law_with_depth(cells, y, term);
    }
    let pts: Vec<(f64, f64, f64)> = cells.iter().filter_map(|c| Some((c.n.ln(), c.tokens.ln(), y(c)?.ln()))).collect();
    let varies = |f: fn(&(f64, f64, f64)) -> f64| distinct_count(pts.iter().map(f)) >= 2;
    let (n_varies, d_varies) = (with_n && varies(|p| p.0), varies(|p| p.1));
    let law = |c: f64, a: Option<f64>, b: Option<f64>| PowerLaw { n_exponent: a, d_exponent: b, ..PowerLaw::constant(c) };
    match (n_varies, d_varies) {
        (true, true) => {
            let rows: Vec<([f64; 3], f64)> = pts.iter().map(|&(n, d, y)| ([1.0, n, d], y)).collect();
            let [c, a, b] = least_squares3(&rows)?;
            Some(law(c, Some(a), Some(b)))
        }
        (true, false) => fit_line(&pts.iter().map(|p| (p.0, p.2)).collect::<Vec<_>>()).map(|l| law(l.intercept, Some(l.slope), None)),
        (false, true) => fit_line(&pts.iter().map(|p| (p.1, p.2)).collect::<Vec<_>>()).map(|l| law(l.intercept, None, Some(l.slope))),
        (false, false) => None,
    }
}

/// ln y = ln c (+ a ln N) (+ b ln D) + g ln L, each factor in only when it varies among `cells`.
fn law_with_depth(cells: &[&Cell], y: fn(&Cell) -> Option<f64>, term: DepthTerm) -> Option<PowerLaw> {
    let pts: Vec<[f64; 4]> = cells.iter().filter_map(|c| Some([c.n.ln(), c.tokens.ln(), c.depth?.ln(), y(c)?.ln()])).collect();
    let varies = |i: usize| distinct_count(pts.iter().map(|p| p[i])) >= 2;
    let factors: Vec<usize> =
        [(0, term == DepthTerm::BesideN), (1, true), (2, true)].into_iter().filter(|&(i, wanted)| wanted && varies(i)).map(|(i, _)| i).collect();
    if !factors.contains(&2) {
        return None;
    }
    let xs: Vec<Vec<f64>> = pts.iter().map(|p| std::iter::once(1.0).chain(factors.iter().map(|&i| p[i])).collect()).collect();
    let rows: Vec<(&[f64], f64)> = xs.iter().zip(&pts).map(|(x, p)| (&x[..], p[3])).collect();
    let b = least_squares(&rows)?;
    let exponent = |i: usize| factors.iter().position(|&f| f == i).map(|k| b[k + 1]);
    Some(PowerLaw { n_exponent: exponent(0), d_exponent: exponent(1), depth_exponent: exponent(2), ..PowerLaw::constant(b[0]) })
}

impl PowerLaw {
    /// `y = exp(ln_c)`, no factor yet.
    fn constant(ln_c: f64) -> Self {
        Self {
            coefficient: ln_c.exp(),
            n_exponent: None,
            n_interval: None,
            d_exponent: None,
            d_interval: None,
            depth_exponent: None,
            depth_interval: None,
            c_exponent: None,
            c_interval: None,
        }
    }
}

/// A warning when the laws pool cells that differ in another swept column (a rule, a
/// parameterization), with the filter that fits one of them.
fn pooled_warning(cells: &[Cell]) -> Vec<String> {
    let column = |k: &str| k.split(" = ").next().unwrap_or(k).to_string();
    let mut differing: Vec<String> = Vec::new();
    for c in cells {
        for k in &c.split_by {
            if cells.iter().any(|o| !o.split_by.contains(k)) && !differing.contains(&column(k)) {
                differing.push(column(k));
            }
        }
    }
    differing
        .iter()
        .map(|col| {
            let value = cells.iter().flat_map(|c| &c.split_by).find(|k| column(k) == *col).and_then(|k| k.split(" = ").nth(1)).unwrap_or("…");
            format!("the laws pool cells that differ in `{col}`; fit each value on its own, e.g. --where '{col} == {value}'")
        })
        .collect()
}

/// DeepSeek's y = c·C^p with C = 6ND, and its bootstrap interval.
fn compute_law(cells: &[&Cell], y: fn(&Cell) -> Option<f64>, bootstrap: usize, seed: u64) -> Option<PowerLaw> {
    let fit = |cells: &[&Cell]| {
        let line = fit_line(&cells.iter().filter_map(|c| Some(((6.0 * c.n * c.tokens).ln(), y(c)?.ln()))).collect::<Vec<_>>())?;
        Some(PowerLaw { c_exponent: Some(line.slope), ..PowerLaw::constant(line.intercept) })
    };
    let full = fit(cells)?;
    let samples: Vec<f64> = resample(cells, bootstrap, seed, fit).iter().filter_map(|l| l.c_exponent).collect();
    let c_interval = (bootstrap > 0 && samples.len() >= bootstrap / 2).then(|| Interval::from_samples(full.c_exponent.unwrap_or(f64::NAN), &samples, 0.95));
    Some(PowerLaw { c_interval, ..full })
}

/// `fit` on `bootstrap` resamples of the cells (with replacement); the fits that succeeded.
fn resample(cells: &[&Cell], bootstrap: usize, seed: u64, fit: impl Fn(&[&Cell]) -> Option<PowerLaw>) -> Vec<PowerLaw> {
    let mut rng = Rng::new(seed);
    (0..bootstrap)
        .filter_map(|_| {
            let sample = rng.resample(cells);
            fit(&sample)
        })
        .collect()
}

impl std::fmt::Display for HparamsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "hyperparameter laws of {} ({} runs, {} cells)", self.input.display(), self.runs, self.cells.len())?;
        // The depth gets a column when the cells span depths (the law then has a depth factor).
        let depths = distinct_count(self.cells.iter().filter_map(|c| c.depth)) >= 2;
        let depth = |c: Option<f64>| if depths { format!(" {:>6}", c.map_or("-".into(), |d| d.to_string())) } else { String::new() };
        writeln!(f, "{:>12} {:>12}{} {:>12} {:>10} {:>12} {:>10}", "N", "D", if depths { "  depth" } else { "" }, "lr_opt", "at batch", "batch_opt", "at lr")?;
        for c in &self.cells {
            let b = c.batch_opt.map_or("-".to_string(), |b| format!("{b:.1}"));
            write!(f, "{:>12.4e} {:>12.4e}{} {:>12.4e} {:>10} {:>12} {:>10.3e}", c.n, c.tokens, depth(c.depth), c.lr_opt, c.at_batch, b, c.at_lr)?;
            let extra: Vec<&str> = c.split_by.iter().chain(&c.notes).map(String::as_str).collect();
            writeln!(f, "{}", if extra.is_empty() { String::new() } else { format!("  ({})", extra.join("; ")) })?;
        }
        let exp = |name: &str, e: Option<f64>, iv: Option<Interval>| {
            e.map(|e| format!(" · {name}^{e:.3}{}", iv.map(|i| format!(" [{:.3}, {:.3}]", i.lower, i.upper)).unwrap_or_default())).unwrap_or_default()
        };
        let law = |l: &PowerLaw| {
            format!(
                "{:.4e}{}{}{}{}",
                l.coefficient,
                exp("N", l.n_exponent, l.n_interval),
                exp("D", l.d_exponent, l.d_interval),
                exp("L", l.depth_exponent, l.depth_interval),
                exp("C", l.c_exponent, l.c_interval)
            )
        };
        writeln!(f, "Step Law:  lr_opt = {}", law(&self.lr))?;
        if let Some(b) = &self.batch {
            writeln!(f, "           B_opt  = {}", law(b))?;
        }
        writeln!(f, "DeepSeek:  lr_opt = {}", law(&self.lr_compute))?;
        if let Some(b) = &self.batch_compute {
            writeln!(f, "           B_opt  = {}", law(b))?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::input::Table;
    use super::*;

    /// A table from known laws: loss = L(N, D) + k·(ln lr − ln lr*)² + k·(ln B − ln B*)², with
    /// lr* = 0.3·N^−0.25·D^0.1 and B* = 0.02·D^0.5, scanned on a grid around the optima.
    fn known_table(noise: f64) -> Observations {
        known_rows(noise).into_observations().unwrap()
    }

    fn known_rows(noise: f64) -> Table {
        let mut rng = Rng::new(3);
        let columns = ["status", "non_embedding_params", "tokens", "lr", "batch_size", "final_eval_loss"].map(String::from).to_vec();
        let mut rows = Vec::new();
        for n in [1e6f64, 4e6, 16e6] {
            for d in [1e8f64, 4e8, 16e8] {
                let (lr_star, b_star) = (0.3 * n.powf(-0.25) * d.powf(0.1), 0.02 * d.powf(0.5));
                for i in -3..=3 {
                    for j in -3..=3 {
                        let (lr, b) = (lr_star * 1.6f64.powi(i) * 1.13, (b_star * 1.5f64.powi(j) * 0.93).round());
                        let loss = 2.0
                            + 50.0 / n.powf(0.3)
                            + 80.0 / d.powf(0.3)
                            + 0.05 * (lr / lr_star).ln().powi(2)
                            + 0.03 * (b / b_star).ln().powi(2)
                            + noise * rng.normal();
                        rows.push(["done".to_string(), n.to_string(), d.to_string(), lr.to_string(), b.to_string(), loss.to_string()].to_vec());
                    }
                }
            }
        }
        Table { path: "known.csv".into(), columns, rows }
    }

    #[test]
    fn recovers_known_exponents_of_lr_and_batch() {
        for (noise, tolerance) in [(0.0, 0.01), (0.003, 0.06)] {
            let report = fit_hparams(&known_table(noise), &HparamColumns::default(), None, 200, 1).unwrap();
            assert_eq!(report.cells.len(), 9);
            let (a, b) = (report.lr.n_exponent.unwrap(), report.lr.d_exponent.unwrap());
            assert!((a + 0.25).abs() < tolerance && (b - 0.1).abs() < tolerance, "noise {noise}: lr ∝ N^{a} D^{b}");
            let batch = report.batch.as_ref().unwrap();
            assert!((batch.d_exponent.unwrap() - 0.5).abs() < tolerance, "noise {noise}: B ∝ D^{:?}", batch.d_exponent);
            assert!(batch.n_exponent.is_none(), "the Step Law batch form has no N");
            if noise > 0.0 {
                let iv = report.lr.n_interval.unwrap();
                assert!(iv.lower < iv.upper && iv.contains(-0.25), "{iv:?}");
            }
        }
    }

    /// A table of lr scans at widths × depths, with lr* = 0.3·N^−0.25·D^0.1·L^g and N the
    /// non-embedding parameters of a width-w, depth-L model (12·L·w² + w).
    fn depth_table(widths: &[f64], g: f64) -> Observations {
        let columns =
            ["status", "non_embedding_params", "tokens", "depth", "param.models.depth", "lr", "batch_size", "final_eval_loss"].map(String::from).to_vec();
        let mut rows = Vec::new();
        for &w in widths {
            for depth in [2.0f64, 4.0, 8.0, 16.0] {
                let n = 12.0 * depth * w * w + w;
                for d in [1e8f64, 4e8] {
                    let lr_star = 0.3 * n.powf(-0.25) * d.powf(0.1) * depth.powf(g);
                    for i in -3..=3 {
                        let lr = lr_star * 1.6f64.powi(i) * 1.13;
                        let loss = 2.0 + 50.0 / n.powf(0.3) + 0.05 * (lr / lr_star).ln().powi(2);
                        rows.push(
                            ["done".into(), n.to_string(), d.to_string(), depth.to_string(), depth.to_string(), lr.to_string(), "32".into(), loss.to_string()]
                                .to_vec(),
                        );
                    }
                }
            }
        }
        Table { path: "depth.csv".into(), columns, rows }.into_observations().unwrap()
    }

    #[test]
    fn the_learning_rate_law_gains_a_depth_exponent_when_cells_span_depths() {
        // Widths and depths varied apart: N's exponent and L's both recovered.
        let report = fit_hparams(&depth_table(&[64.0, 128.0, 256.0], -0.5), &HparamColumns::default(), None, 100, 1).unwrap();
        assert_eq!(report.cells.len(), 24);
        let lr = &report.lr;
        assert!((lr.n_exponent.unwrap() + 0.25).abs() < 0.01 && (lr.d_exponent.unwrap() - 0.1).abs() < 0.01, "{lr:?}");
        assert!((lr.depth_exponent.unwrap() + 0.5).abs() < 0.01, "{lr:?}");
        assert!(lr.depth_interval.unwrap().contains(-0.5), "{lr:?}");
        assert!(report.notes[0].contains("at a fixed N and D"), "{:?}", report.notes);
        assert!(report.cells.iter().all(|c| c.split_by.is_empty()), "the swept depth names the depth, not a split");
        assert!(report.to_string().contains(" · L^-0.500"), "{report}");

        // One width: N follows depth, so the law is in L and D; L's exponent is the whole drift,
        // N's and L's together (N ∝ L here).
        let report = fit_hparams(&depth_table(&[64.0], -0.5), &HparamColumns::default(), None, 100, 1).unwrap();
        let lr = &report.lr;
        assert!(lr.n_exponent.is_none(), "{lr:?}");
        assert!((lr.depth_exponent.unwrap() - (-0.5 - 0.25)).abs() < 0.01, "{lr:?}");
        assert!(report.notes[0].contains("in L, not N"), "{:?}", report.notes);

        // Without a depth column: the Step Law as before.
        let mut table = depth_table(&[64.0, 128.0, 256.0], 0.0);
        let columns = HparamColumns { depth: "layers".into(), ..HparamColumns::default() };
        table.columns.retain(|c| c != "param.models.depth");
        for r in &mut table.rows {
            r.values.remove(4);
        }
        let report = fit_hparams(&table, &columns, None, 0, 1).unwrap();
        assert!(report.lr.depth_exponent.is_none() && report.notes.is_empty());
        assert!((report.lr.n_exponent.unwrap() + 0.25).abs() < 0.01);
    }

    #[test]
    fn pooling_cells_of_another_swept_value_is_warned_with_the_filter() {
        let mut table = known_rows(0.0);
        table.columns.push("param.mup.depth_rule".into());
        for (i, r) in table.rows.iter_mut().enumerate() {
            r.push(if i < 49 { "none" } else { "completep" }.into());
        }
        let report = fit_hparams(&table.into_observations().unwrap(), &HparamColumns::default(), None, 0, 1).unwrap();
        assert_eq!(
            report.warnings,
            ["the laws pool cells that differ in `param.mup.depth_rule`; fit each value on its own, e.g. --where 'param.mup.depth_rule == none'"]
        );
    }

    #[test]
    fn seeds_are_averaged_not_pooled() {
        // Three seeds per point, offset by a seed effect bigger than the curvature between
        // neighbouring rates: pooled, the best point's window would hold one or two rates.
        let clean = known_rows(0.0);
        let mut table = clean.clone();
        let loss = table.columns.iter().position(|c| c == "final_eval_loss").unwrap();
        table.columns.push("seed".into());
        table.rows = clean
            .rows
            .iter()
            .flat_map(|r| {
                [-0.02, 0.0, 0.02].into_iter().enumerate().map(move |(seed, offset)| {
                    let mut r = r.clone();
                    r[loss] = (r[loss].parse::<f64>().unwrap() + offset).to_string();
                    r.push(seed.to_string());
                    r
                })
            })
            .collect();
        let (table, clean) = (table.into_observations().unwrap(), clean.into_observations().unwrap());
        let (seeded, once) =
            (fit_hparams(&table, &HparamColumns::default(), None, 0, 1).unwrap(), fit_hparams(&clean, &HparamColumns::default(), None, 0, 1).unwrap());
        for (a, b) in seeded.cells.iter().zip(&once.cells) {
            assert!((a.lr_opt / b.lr_opt - 1.0).abs() < 1e-9, "{} vs {}", a.lr_opt, b.lr_opt);
            assert!((a.batch_opt.unwrap() / b.batch_opt.unwrap() - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn a_cell_with_two_learning_rates_is_one_clear_error() {
        let mut table = known_rows(0.0);
        let lr = table.columns.iter().position(|c| c == "lr").unwrap();
        // Keep two learning rates in the first cell.
        let first: Vec<String> = table.rows.iter().take(49).map(|r| r[lr].clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let keep: Vec<String> = first[..2].to_vec();
        table.rows = table.rows.into_iter().enumerate().filter(|(i, r)| *i >= 49 || keep.contains(&r[lr])).map(|(_, r)| r).collect();
        let e = format!("{:#}", fit_hparams(&table.into_observations().unwrap(), &HparamColumns::default(), None, 0, 0).unwrap_err());
        assert!(e.contains("cell non_embedding_params = 1000000") && e.contains("2 learning rate(s)") && e.contains("--where"), "{e}");
    }
}
