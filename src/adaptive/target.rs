//! What the user wants to know from a wind tunnel: one number of the fitted law, with its
//! interval.
//!
//! - `allocation:C`: the compute-optimal tokens per parameter D/N at a training budget of C FLOPs
//!   (with N_opt and D_opt beside it; C = 6ND, as in `fit law --budgets`);
//! - `loss:N,D`: the loss of a planned full run of N non-embedding parameters on D tokens.
//!
//! In a sweep file: `[adaptive] target = "allocation"` with `budget_flops = 1e10`, or
//! `target = "loss"` with `n = …` and `tokens = …`.

use serde::{Deserialize, Serialize};

use crate::fit::law::Law;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// D_opt / N_opt at this compute budget.
    Allocation { budget_flops: f64 },
    /// L̂(N, D) of one planned run.
    Loss { n: f64, tokens: f64 },
}

impl Target {
    /// The target's value under `law`.
    pub fn value(&self, law: &Law) -> f64 {
        match *self {
            Self::Allocation { budget_flops } => {
                let (n, d) = law.compute_optimal(budget_flops);
                d / n
            }
            Self::Loss { n, tokens } => law.loss(n, tokens),
        }
    }

    /// Where the target sits in (N, D) under `law`: the compute-optimal (N_opt, D_opt) at the
    /// budget, or the planned run itself.
    pub fn point(&self, law: &Law) -> (f64, f64) {
        match *self {
            Self::Allocation { budget_flops } => law.compute_optimal(budget_flops),
            Self::Loss { n, tokens } => (n, tokens),
        }
    }

    /// What it is called in reports ("D/N at 1e24 FLOPs").
    pub fn describe(&self) -> String {
        match *self {
            Self::Allocation { budget_flops } => format!("D/N at {budget_flops:.3e} FLOPs"),
            Self::Loss { n, tokens } => format!("the loss at N = {}, D = {}", crate::format::si(n), crate::format::si(tokens)),
        }
    }

    /// How far beyond the dearest candidate's compute an allocation target may lie: 100× in N
    /// (the loss target's limit) is about 10⁴× in compute, N_opt growing about as √C.
    pub const MAX_COMPUTE_EXTRAPOLATION: f64 = 1e4;

    /// Refuse a target no law fitted to `points` (N, D) can speak for: a budget below the cheapest
    /// of them or more than [`Self::MAX_COMPUTE_EXTRAPOLATION`] times the dearest, or a loss target far outside the sizes (more than 100× beyond the largest, or
    /// below the smallest). The message says what to add.
    pub fn check_reachable(&self, points: &[(f64, f64)], what: &str) -> anyhow::Result<()> {
        anyhow::ensure!(!points.is_empty(), "{what} has no candidate runs");
        let cheapest = points.iter().map(|(n, d)| 6.0 * n * d).fold(f64::INFINITY, f64::min);
        let dearest = points.iter().map(|(n, d)| 6.0 * n * d).fold(0.0f64, f64::max);
        let (n_min, n_max) = points.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), (n, _)| (lo.min(*n), hi.max(*n)));
        match *self {
            Self::Allocation { budget_flops } if !(budget_flops.is_finite() && budget_flops >= cheapest) => anyhow::bail!(
                "the target budget {budget_flops:.3e} FLOPs is below the cheapest candidate run of {what} ({cheapest:.3e} FLOPs by 6ND): \
                 no run can say what is optimal there; raise the budget, or add smaller models or token counts"
            ),
            Self::Allocation { budget_flops } if budget_flops > Self::MAX_COMPUTE_EXTRAPOLATION * dearest => anyhow::bail!(
                "the target budget {budget_flops:.3e} FLOPs is {:.1e}× the dearest candidate run of {what} ({dearest:.3e} FLOPs by 6ND): \
                 a law extrapolates at most {:.0e}× beyond the compute it saw (100× in N, as the loss target); lower the budget, \
                 or add larger models or token counts",
                budget_flops / dearest,
                Self::MAX_COMPUTE_EXTRAPOLATION
            ),
            Self::Allocation { .. } => {}
            Self::Loss { n, tokens } => {
                anyhow::ensure!(n.is_finite() && tokens.is_finite() && n > 0.0 && tokens > 0.0, "the loss target needs a positive N and D");
                anyhow::ensure!(
                    n >= n_min && n <= 100.0 * n_max,
                    "the loss target's N = {} is outside what {what} can reach (sizes {} to {}; a law extrapolates at most 100× beyond \
                     its largest size): add a size near {}",
                    crate::format::si(n),
                    crate::format::si(n_min),
                    crate::format::si(n_max),
                    crate::format::si(n)
                );
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    /// `allocation:1e24` or `loss:1e9,2e10`.
    fn from_str(s: &str) -> Result<Self, String> {
        let number = |v: &str, what: &str| -> Result<f64, String> {
            let x: f64 = v.trim().parse().map_err(|_| format!("--target {s}: {what} `{v}` is not a number"))?;
            if x.is_finite() && x > 0.0 {
                Ok(x)
            } else {
                Err(format!("--target {s}: {what} must be positive"))
            }
        };
        match s.split_once(':') {
            Some(("allocation", c)) => Ok(Self::Allocation { budget_flops: number(c, "the budget")? }),
            Some(("loss", nd)) => {
                let (n, d) = nd.split_once(',').ok_or_else(|| format!("--target {s}: a loss target is `loss:N,D`, e.g. loss:1e9,2e10"))?;
                Ok(Self::Loss { n: number(n, "N")?, tokens: number(d, "D")? })
            }
            _ => Err(format!("--target {s}: use `allocation:C` (D/N at C FLOPs, e.g. allocation:1e24) or `loss:N,D` (e.g. loss:1e9,2e10)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets_and_explains_bad_ones() {
        assert_eq!("allocation:1e24".parse::<Target>().unwrap(), Target::Allocation { budget_flops: 1e24 });
        assert_eq!("loss:1e9,2e10".parse::<Target>().unwrap(), Target::Loss { n: 1e9, tokens: 2e10 });
        assert!("allocation:-1".parse::<Target>().unwrap_err().contains("positive"));
        assert!("loss:1e9".parse::<Target>().unwrap_err().contains("loss:N,D"));
        assert!("optimum".parse::<Target>().unwrap_err().contains("allocation:C"));
    }

    #[test]
    fn the_allocation_target_is_the_laws_d_over_n() {
        let law = Law::chinchilla(1.82, 482.0, 2085.4, 0.348, 0.366);
        let (n, d) = law.compute_optimal(5.76e23);
        assert_eq!(Target::Allocation { budget_flops: 5.76e23 }.value(&law), d / n);
        assert_eq!(Target::Loss { n: 7e10, tokens: 1.4e12 }.value(&law), law.loss(7e10, 1.4e12));
    }

    #[test]
    fn unreachable_targets_say_what_to_add() {
        let points = [(1e6, 1e8), (1e7, 1e9)];
        let e = Target::Allocation { budget_flops: 1e10 }.check_reachable(&points, "t.csv").unwrap_err().to_string();
        assert!(e.contains("below the cheapest") && e.contains("add smaller models"), "{e}");
        let e = Target::Loss { n: 1e12, tokens: 1e13 }.check_reachable(&points, "t.csv").unwrap_err().to_string();
        assert!(e.contains("add a size near 1.000T"), "{e}");
        Target::Allocation { budget_flops: 1e18 }.check_reachable(&points, "t.csv").unwrap();
        // 1e300 FLOPs trained four rounds of nonsense and wrote `null` into adaptive.json.
        let e = Target::Allocation { budget_flops: 1e300 }.check_reachable(&points, "t.csv").unwrap_err().to_string();
        assert_eq!(
            e,
            "the target budget 1.000e300 FLOPs is 1.7e283× the dearest candidate run of t.csv (6.000e16 FLOPs by 6ND): a law extrapolates \
             at most 1e4× beyond the compute it saw (100× in N, as the loss target); lower the budget, or add larger models or token counts"
        );
        Target::Allocation { budget_flops: 6e20 }.check_reachable(&points, "t.csv").unwrap();
    }
}
