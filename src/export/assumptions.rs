//! What an export assumes beyond what the sweep measured. The law was fitted on the proxies'
//! points: a range of N, of compute and of tokens per parameter, at the proxies' vocabulary,
//! depths, heads and sequence length. An export outside that range still gets its numbers, and a
//! warning for each way it leaves the range: N or compute more than `--extrapolation-limit`
//! times beyond the points, a shape or sequence length no proxy had, tokens per parameter the law
//! never saw. The predicted loss's interval is widened by how far it is extrapolated.

use serde::Serialize;

use crate::fit::bootstrap::Interval;
use crate::fit::report::LawReport;
use crate::format::{si, thousands};
use crate::layout::SweepDir;
use crate::model::shape::ModelShape;
use crate::results::SweepResults;

/// How far beyond the sweep's N or compute an export goes before it is warned of, by default.
pub const DEFAULT_EXTRAPOLATION_LIMIT: f64 = 10.0;

/// What the law and its proxies covered.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRange {
    /// Smallest and largest N of the law's points.
    pub n: [f64; 2],
    /// Smallest and largest 6ND of the law's points.
    pub flops_6nd: [f64; 2],
    /// Smallest and largest D/N of the law's points.
    pub tokens_per_param: [f64; 2],
    /// The proxies' vocabularies, depths, query heads and sequence lengths (the runs of the law's
    /// grid that started).
    pub vocab: Vec<usize>,
    pub depth: Vec<usize>,
    pub heads: Vec<usize>,
    pub seq_len: Vec<usize>,
}

/// The export's assumptions: the sweep's range, how far the export lies beyond it, and what that
/// does to the predicted loss's interval.
#[derive(Debug, Clone, Serialize)]
pub struct Assumptions {
    pub sweep_range: SweepRange,
    /// The largest of N / N_max, N_min / N, C / C_max and C_min / C (1: inside the range).
    pub extrapolation_factor: f64,
    /// Warn beyond this factor (`--extrapolation-limit`).
    pub extrapolation_limit: f64,
    /// What the predicted loss's bounds are: "interval", "widened interval" or "point estimate".
    pub predicted_loss: String,
}

fn span(values: impl Iterator<Item = f64>) -> [f64; 2] {
    values.fold([f64::INFINITY, f64::NEG_INFINITY], |[lo, hi], v| [lo.min(v), hi.max(v)])
}

fn distinct(values: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut v: Vec<usize> = values.collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl SweepRange {
    /// The range of `report`'s points and of the runs of its grid (all grids when it has none).
    pub fn of(data: &SweepResults, report: &LawReport) -> Self {
        let points = &report.data;
        let grid = report.definition.grid.as_deref();
        let sweep = SweepDir::new(&data.dir);
        let records: Vec<crate::train::run::RunRecord> = data
            .plan
            .runs
            .iter()
            .filter(|r| grid.is_none_or(|g| r.grid == g))
            .filter_map(|r| std::fs::read_to_string(sweep.run(&r.id).record()).ok())
            .filter_map(|t| serde_json::from_str(&t).ok())
            .collect();
        Self {
            n: span(points.iter().map(|p| p.n)),
            flops_6nd: span(points.iter().map(|p| 6.0 * p.n * p.d)),
            tokens_per_param: span(points.iter().map(|p| p.d / p.n)),
            vocab: distinct(records.iter().map(|r| r.shape.vocab)),
            depth: distinct(records.iter().map(|r| r.shape.depth)),
            heads: distinct(records.iter().map(|r| r.shape.heads)),
            seq_len: distinct(records.iter().map(|r| r.config.training.seq_len)),
        }
    }
}

/// How many times `value` lies beyond `[lo, hi]` (1 inside).
fn beyond(value: f64, [lo, hi]: [f64; 2]) -> f64 {
    (value / hi).max(lo / value).max(1.0)
}

/// Tokens per parameter: one decimal, or three significant digits below 0.1.
fn per_param(x: f64) -> String {
    if x >= 0.1 {
        format!("{x:.1}")
    } else {
        format!("{x:.2e}")
    }
}

fn list(values: &[usize]) -> String {
    values.iter().map(|&v| thousands(v as u64)).collect::<Vec<_>>().join(", ")
}

/// The export at `shape` (N = its non-embedding count), `tokens` and `seq_len` against `range`:
/// its assumptions, and a warning in `warnings` for each way it leaves the range.
pub fn check(range: SweepRange, shape: &ModelShape, seq_len: usize, tokens: f64, limit: f64, warnings: &mut Vec<String>) -> Assumptions {
    let n = shape.non_embedding_params() as f64;
    let flops = 6.0 * n * tokens;
    let (n_factor, c_factor) = (beyond(n, range.n), beyond(flops, range.flops_6nd));
    let times =
        |f: f64, value: f64, [lo, hi]: [f64; 2]| if value > hi { format!("{f:.0}× the largest") } else { format!("1/{:.0} of the smallest", lo / value) };
    if n_factor > limit {
        warnings.push(format!(
            "N = {} is {} N the law was fitted on ({} to {}): the law is extrapolated beyond {limit}× (--extrapolation-limit), and its interval widened",
            si(n),
            times(n_factor, n, range.n),
            si(range.n[0]),
            si(range.n[1])
        ));
    }
    if c_factor > limit {
        warnings.push(format!(
            "C = 6ND = {flops:.3e} FLOPs is {} compute of the law's points ({:.3e} to {:.3e}): extrapolated beyond {limit}×",
            times(c_factor, flops, range.flops_6nd),
            range.flops_6nd[0],
            range.flops_6nd[1]
        ));
    }
    let ratio = tokens / n;
    let [lo, hi] = range.tokens_per_param;
    if ratio < lo || ratio > hi {
        let (ratio, lo, hi) = (per_param(ratio), per_param(lo), per_param(hi));
        warnings.push(format!("{ratio} tokens per parameter lies outside the {lo} to {hi} of the law's points: the law never saw this allocation"));
    }
    let unlike = |what: &str, value: usize, proxies: &[usize]| {
        (!proxies.is_empty() && !proxies.contains(&value)).then(|| format!("{what} {} differs from every proxy's ({})", thousands(value as u64), list(proxies)))
    };
    let shape_notes = [
        unlike("the vocabulary", shape.vocab, &range.vocab)
            .map(|w| format!("{w}: the law's losses are nats per token of the proxies' vocabulary, not of this one")),
        unlike("the depth", shape.depth, &range.depth).map(|w| format!("{w}: the law and the learning rate were measured at the proxies' depths")),
        unlike("the number of heads", shape.heads, &range.heads).map(|w| format!("{w}: µP transfers width, not the head count")),
        unlike("the sequence length", seq_len, &range.seq_len).map(|w| format!("{w}: the law's losses are averages over the proxies' context")),
    ];
    warnings.extend(shape_notes.into_iter().flatten());
    let extrapolation_factor = n_factor.max(c_factor);
    Assumptions { sweep_range: range, extrapolation_factor, extrapolation_limit: limit, predicted_loss: String::new() }
}

impl Assumptions {
    /// The predicted loss's interval as the export reports it: the law's own inside the range;
    /// beyond it, each side widened by 1 + log10 of the extrapolation factor (the bootstrap only
    /// knows the points' noise, not how the form holds that far out); none: a point estimate.
    pub fn widen(&mut self, interval: Option<Interval>) -> Option<Interval> {
        let Some(i) = interval else {
            self.predicted_loss = "point estimate".into();
            return None;
        };
        if self.extrapolation_factor <= 1.0 {
            self.predicted_loss = "interval".into();
            return Some(i);
        }
        let w = 1.0 + self.extrapolation_factor.log10();
        self.predicted_loss = format!("widened interval (×{w:.2}: the law's interval, extrapolated {:.0}×)", self.extrapolation_factor);
        Some(Interval {
            estimate: i.estimate,
            std_error: i.std_error * w,
            lower: i.estimate - (i.estimate - i.lower) * w,
            upper: i.estimate + (i.upper - i.estimate) * w,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> SweepRange {
        SweepRange {
            n: [1e4, 1e5],
            flops_6nd: [6e9, 6e11],
            tokens_per_param: [2.0, 40.0],
            vocab: vec![128],
            depth: vec![2],
            heads: vec![2, 4, 8],
            seq_len: vec![128],
        }
    }

    fn shape(width: usize, depth: usize, vocab: usize) -> ModelShape {
        ModelShape { width, depth, heads: width / 8, kv_heads: width / 8, ffn_width: width * 5 / 2, vocab }
    }

    #[test]
    fn an_export_inside_the_range_assumes_nothing() {
        let s = shape(32, 2, 128);
        let n = s.non_embedding_params() as f64;
        let mut warnings = Vec::new();
        let mut a = check(range(), &s, 128, 10.0 * n, DEFAULT_EXTRAPOLATION_LIMIT, &mut warnings);
        assert!(warnings.is_empty(), "{warnings:?}");
        let i = Interval { estimate: 2.0, std_error: 0.01, lower: 1.98, upper: 2.03 };
        assert_eq!(a.widen(Some(i)).unwrap().upper, 2.03);
        assert_eq!(a.predicted_loss, "interval");
        assert!(a.widen(None).is_none());
        assert_eq!(a.predicted_loss, "point estimate");
    }

    #[test]
    fn each_way_out_of_the_range_is_named_and_the_interval_widens() {
        let s = shape(1024, 15, 73440);
        let n = s.non_embedding_params() as f64;
        let mut warnings = Vec::new();
        let mut a = check(range(), &s, 4096, 0.5 * n, DEFAULT_EXTRAPOLATION_LIMIT, &mut warnings);
        let text = warnings.join("\n");
        for expected in [
            "the law is extrapolated beyond 10×",
            "compute of the law's points",
            "0.5 tokens per parameter lies outside the 2.0 to 40.0",
            "the vocabulary 73,440 differs from every proxy's (128)",
            "the depth 15 differs from every proxy's (2)",
            "the number of heads 128 differs from every proxy's (2, 4, 8)",
            "the sequence length 4,096 differs from every proxy's (128)",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
        let i = a.widen(Some(Interval { estimate: 2.0, std_error: 0.01, lower: 1.9, upper: 2.1 })).unwrap();
        let w = 1.0 + a.extrapolation_factor.log10();
        assert!(w > 2.0 && (i.upper - 2.0 - 0.1 * w).abs() < 1e-12 && (2.0 - i.lower - 0.1 * w).abs() < 1e-12);
        assert!(a.predicted_loss.starts_with("widened interval"));
    }

    #[test]
    fn the_limit_is_the_users() {
        let s = shape(256, 2, 128);
        let n = s.non_embedding_params() as f64;
        assert!(n > 10.0 * 1e5, "{n}");
        let mut warnings = Vec::new();
        check(range(), &s, 128, 10.0 * n, 1e6, &mut warnings);
        assert!(!warnings.iter().any(|w| w.contains("extrapolated")), "{warnings:?}");
    }
}
