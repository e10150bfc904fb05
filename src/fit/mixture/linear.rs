//! RegMix's linear regression: one evaluation set's loss as a weighted sum of the domain weights,
//! `L(r) = Σ_j β_j·r_j`, by least squares. The weights sum to 1, so an intercept would be the same
//! model written twice (β_j + b for every j); it is left out and the fit is unique.

use serde::{Deserialize, Serialize};

/// A fitted linear model: one coefficient per domain (nats at a mixture of that domain alone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub coefficients: Vec<f64>,
}

impl Linear {
    /// Least squares of `losses` on `weights` (one row per run); a ridge of 1e-10 of the Gram
    /// matrix's trace keeps it solvable when a domain is in few runs.
    pub fn fit(weights: &[Vec<f64>], losses: &[f64]) -> Option<Self> {
        let d = weights.first()?.len();
        let mut gram = vec![vec![0.0; d]; d];
        let mut rhs = vec![0.0; d];
        for (r, &l) in weights.iter().zip(losses) {
            for i in 0..d {
                rhs[i] += r[i] * l;
                for j in 0..d {
                    gram[i][j] += r[i] * r[j];
                }
            }
        }
        let ridge = 1e-10 * (0..d).map(|i| gram[i][i]).sum::<f64>().max(1e-300);
        (0..d).for_each(|i| gram[i][i] += ridge);
        solve(gram, rhs).map(|coefficients| Self { coefficients })
    }

    pub fn predict(&self, r: &[f64]) -> f64 {
        self.coefficients.iter().zip(r).map(|(b, x)| b * x).sum()
    }
}

/// Solve A x = b by Gaussian elimination with partial pivoting; `None` when A is singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col].clone();
        for row in col + 1..n {
            let f = a[row][col] / pivot_row[col];
            a[row][col..].iter_mut().zip(&pivot_row[col..]).for_each(|(x, p)| *x -= f * p);
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_exact_coefficients() {
        let weights = vec![vec![1.0, 0.0, 0.0], vec![0.5, 0.5, 0.0], vec![0.2, 0.3, 0.5], vec![0.0, 0.1, 0.9], vec![0.3, 0.3, 0.4]];
        let truth = Linear { coefficients: vec![3.0, 4.0, 5.5] };
        let losses: Vec<f64> = weights.iter().map(|r| truth.predict(r)).collect();
        let fit = Linear::fit(&weights, &losses).unwrap();
        for (got, want) in fit.coefficients.iter().zip(&truth.coefficients) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
}
