//! Learning-rate schedules, in tokens.
//!
//! Warmup-Stable-Decay (MiniCPM §4): with peak rate η, warmup W, decay start S and D the tokens
//! seen once a step is done (so the first step trains and the last one ends the decay),
//!
//! ```text
//! lr(D) = η · D / W          D < W            (linear warmup)
//!       = η                  W ≤ D < S        (stable)
//!       = η · f(D − S)       S ≤ D            (decay)
//! ```
//!
//! with the decay shapes
//! - `exponential`: f(x) = 0.5^(x / half_life)                    (MiniCPM)
//! - `linear`:      f(x) = 1 − (1 − floor) · x / decay_tokens
//! - `1-sqrt`:      f(x) = 1 − (1 − floor) · √(x / decay_tokens)  (Hägele et al. 2024)
//!
//! The baseline WSD is compared with is `cosine`: warmup, then
//! `η · (floor + (1 − floor) · ½(1 + cos(π · (D − W) / (T − W))))` to the end T; and `constant`
//! (warmup, then η forever) is a WSD trunk's schedule before any decay.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecayShape {
    /// 0.5^(x / half_life_tokens) (MiniCPM).
    Exponential,
    /// Linear to `final_lr_fraction`.
    Linear,
    /// 1 − √x to `final_lr_fraction` (Hägele et al. 2024).
    #[serde(rename = "1-sqrt", alias = "one_minus_sqrt")]
    OneMinusSqrt,
}

impl std::fmt::Display for DecayShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Exponential => "exponential",
            Self::Linear => "linear",
            Self::OneMinusSqrt => "1-sqrt",
        })
    }
}

/// A schedule as a run file writes it (all lengths in tokens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleSpec {
    /// Warmup, then a constant rate: a WSD trunk (its decays are branches).
    Constant {
        /// Linear warmup from 0 to η over this many tokens.
        warmup_tokens: u64,
    },
    /// Warmup, stable, and a decay over the last `decay_tokens` of the run.
    Wsd {
        /// Linear warmup from 0 to η over this many tokens.
        warmup_tokens: u64,
        /// The decay's shape.
        decay: DecayShape,
        /// Length of the decay; the stable phase is what remains.
        decay_tokens: u64,
        /// Exponential decay only: tokens per halving [default: decay_tokens / 4, see
        /// `DEFAULT_HALF_LIFE_FRACTION`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        half_life_tokens: Option<u64>,
        /// Linear and 1-sqrt: the fraction of η reached at the end.
        #[serde(default)]
        final_lr_fraction: f64,
    },
    /// Warmup, then cosine to `final_lr_fraction` · η at the end of the run.
    Cosine {
        /// Linear warmup from 0 to η over this many tokens.
        warmup_tokens: u64,
        /// The fraction of η reached at the end.
        #[serde(default = "default_cosine_floor")]
        final_lr_fraction: f64,
    },
}

fn default_cosine_floor() -> f64 {
    ScheduleSpec::DEFAULT_COSINE_FLOOR
}

impl ScheduleSpec {
    /// The fraction of η a cosine schedule ends at unless `final_lr_fraction` says otherwise.
    pub const DEFAULT_COSINE_FLOOR: f64 = 0.1;
    /// An exponential decay halves the rate every this fraction of its length unless
    /// `half_life_tokens` says otherwise (so it ends at 0.5⁴ = 1/16 of η).
    pub const DEFAULT_HALF_LIFE_FRACTION: f64 = 0.25;

    /// The half-life of an exponential decay of `decay_tokens` without `half_life_tokens`.
    pub fn default_half_life(decay_tokens: u64) -> u64 {
        ((decay_tokens as f64 * Self::DEFAULT_HALF_LIFE_FRACTION) as u64).max(1)
    }

    pub fn warmup_tokens(&self) -> u64 {
        match *self {
            Self::Constant { warmup_tokens } | Self::Wsd { warmup_tokens, .. } | Self::Cosine { warmup_tokens, .. } => warmup_tokens,
        }
    }

    /// Check the schedule against the run length, naming the field.
    pub fn validate(&self, total_tokens: u64) -> Result<(), String> {
        let floor_ok = |f: f64| (0.0..=1.0).contains(&f);
        match *self {
            Self::Constant { warmup_tokens } => {
                if warmup_tokens > total_tokens {
                    return Err(format!("schedule.warmup_tokens ({warmup_tokens}) exceeds the run's tokens ({total_tokens})"));
                }
            }
            Self::Wsd { warmup_tokens, decay_tokens, half_life_tokens, final_lr_fraction, .. } => {
                if warmup_tokens.saturating_add(decay_tokens) > total_tokens {
                    return Err(format!(
                        "schedule.warmup_tokens + schedule.decay_tokens ({warmup_tokens} + {decay_tokens}) exceed the run's tokens ({total_tokens})"
                    ));
                }
                if half_life_tokens == Some(0) {
                    return Err("schedule.half_life_tokens must be positive".into());
                }
                if !floor_ok(final_lr_fraction) {
                    return Err(format!("schedule.final_lr_fraction must be in [0, 1] (got {final_lr_fraction})"));
                }
            }
            Self::Cosine { warmup_tokens, final_lr_fraction } => {
                if warmup_tokens >= total_tokens {
                    return Err(format!("schedule.warmup_tokens ({warmup_tokens}) must be below the run's tokens ({total_tokens})"));
                }
                if !floor_ok(final_lr_fraction) {
                    return Err(format!("schedule.final_lr_fraction must be in [0, 1] (got {final_lr_fraction})"));
                }
            }
        }
        Ok(())
    }

    /// The multiplier of η after `tokens` tokens of a run of `total_tokens`.
    pub fn factor(&self, tokens: u64, total_tokens: u64) -> f64 {
        let warmup = self.warmup_tokens();
        if tokens < warmup {
            return tokens as f64 / warmup as f64;
        }
        match *self {
            Self::Constant { .. } => 1.0,
            Self::Wsd { decay, decay_tokens, half_life_tokens, final_lr_fraction, .. } => {
                let start = total_tokens - decay_tokens;
                if tokens < start {
                    return 1.0;
                }
                let x = (tokens - start) as f64;
                let progress = (x / decay_tokens.max(1) as f64).min(1.0);
                match decay {
                    DecayShape::Exponential => {
                        let half_life = half_life_tokens.unwrap_or(Self::default_half_life(decay_tokens)) as f64;
                        0.5f64.powf(x / half_life)
                    }
                    DecayShape::Linear => 1.0 - (1.0 - final_lr_fraction) * progress,
                    DecayShape::OneMinusSqrt => 1.0 - (1.0 - final_lr_fraction) * progress.sqrt(),
                }
            }
            Self::Cosine { final_lr_fraction, .. } => {
                let progress = ((tokens - warmup) as f64 / (total_tokens - warmup) as f64).min(1.0);
                final_lr_fraction + (1.0 - final_lr_fraction) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_000_000;

    fn wsd(decay: DecayShape) -> ScheduleSpec {
        ScheduleSpec::Wsd { warmup_tokens: 10_000, decay, decay_tokens: 100_000, half_life_tokens: Some(20_000), final_lr_fraction: 0.1 }
    }

    #[test]
    fn warmup_and_stable_corners() {
        let s = wsd(DecayShape::Linear);
        assert_eq!(s.factor(0, T), 0.0);
        assert_eq!(s.factor(5_000, T), 0.5);
        assert_eq!(s.factor(10_000, T), 1.0); // end of warmup
        assert_eq!(s.factor(899_999, T), 1.0); // last stable token
        assert_eq!(s.factor(900_000, T), 1.0); // start of decay
    }

    #[test]
    fn decay_shapes_at_their_corners() {
        let lin = wsd(DecayShape::Linear);
        assert!((lin.factor(950_000, T) - 0.55).abs() < 1e-12);
        assert!((lin.factor(T, T) - 0.1).abs() < 1e-12); // end of decay: the floor
        let sq = wsd(DecayShape::OneMinusSqrt);
        assert!((sq.factor(925_000, T) - (1.0 - 0.9 * 0.5)).abs() < 1e-12); // x = 1/4 → √x = 1/2
        assert!((sq.factor(T, T) - 0.1).abs() < 1e-12);
        let exp = wsd(DecayShape::Exponential);
        assert!((exp.factor(920_000, T) - 0.5).abs() < 1e-12); // one half-life
        assert!((exp.factor(940_000, T) - 0.25).abs() < 1e-12);
        assert!((exp.factor(T, T) - 0.5f64.powi(5)).abs() < 1e-12);
    }

    #[test]
    fn cosine_baseline_corners() {
        let c = ScheduleSpec::Cosine { warmup_tokens: 10_000, final_lr_fraction: 0.1 };
        assert_eq!(c.factor(10_000, T), 1.0);
        assert!((c.factor(505_000, T) - 0.55).abs() < 1e-12); // halfway: floor + (1 − floor)/2
        assert!((c.factor(T, T) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn schedules_that_do_not_fit_the_run_are_refused() {
        let e = wsd(DecayShape::Linear).validate(50_000).unwrap_err();
        assert!(e.contains("decay_tokens"), "{e}");
        let e = ScheduleSpec::Constant { warmup_tokens: 10 }.validate(5).unwrap_err();
        assert!(e.contains("warmup_tokens"), "{e}");
    }
}
