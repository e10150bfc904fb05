//! Schedules that were not run: `--predict-schedule 'wsd:tokens=…,decay_fraction=…,decay=…'`
//! (and `cosine:…`, `constant:…`) made into the learning rate of every step of one group's runs,
//! and the decay search of `--optimize-decay`.
//!
//! A schedule's length is `tokens=` (rounded up to whole steps; the group's runs must log tokens)
//! or `steps=`. Its peak rate, tokens per step and warmup are the group's (`warmup_tokens=`
//! overrides the warmup). `decay_fraction` is the share of the **whole run** the decay takes
//! (MiniCPM: about 10%), unlike a sweep's `wsd.decay_fraction`, which is a share of the branch
//! point. Decays end at `final_lr_fraction` of the peak [default 0]; exponential decays halve the
//! rate every `half_life_fraction` of the decay [default 0.25]. Cosine ends at
//! `final_lr_fraction` [default 0.1].

use serde::Serialize;

use super::data::Curve;
use crate::schedule::{DecayShape, ScheduleSpec};

/// What a group's runs share: the frame a new schedule is drawn in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupFrame {
    pub peak_lr: f64,
    /// Tokens per step; `None` when the group's runs did not log tokens.
    pub tokens_per_step: Option<f64>,
    pub warmup_steps: usize,
}

impl GroupFrame {
    /// The frame of a group's curves (its largest peak, the first run's tokens per step, the
    /// longest warmup).
    pub fn of(curves: &[&Curve]) -> Self {
        Self {
            peak_lr: curves.iter().map(|c| c.peak_lr()).fold(0.0, f64::max),
            tokens_per_step: curves.iter().find_map(|c| c.tokens_per_step),
            warmup_steps: curves.iter().map(|c| c.warmup_steps()).max().unwrap_or(0),
        }
    }
}

/// A schedule as `--predict-schedule` gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleRequest {
    /// The text as given.
    pub text: String,
    #[serde(skip)]
    kind: Kind,
    #[serde(skip)]
    length: Length,
    #[serde(skip)]
    warmup_tokens: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Length {
    Tokens(f64),
    Steps(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Wsd { decay: DecayShape, decay_fraction: f64, final_lr_fraction: f64, half_life_fraction: f64 },
    Cosine { final_lr_fraction: f64 },
    Constant,
}

impl std::str::FromStr for ScheduleRequest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "give KIND:KEY=VALUE,…, e.g. 'wsd:tokens=786432,decay_fraction=0.1,decay=1-sqrt', 'cosine:tokens=786432' or 'constant:steps=800'";
        let (kind, rest) = text.split_once(':').ok_or_else(|| format!("--predict-schedule `{text}`: {usage}"))?;
        let mut values = std::collections::BTreeMap::new();
        for pair in rest.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| format!("--predict-schedule `{text}`: `{pair}` is not KEY=VALUE; {usage}"))?;
            values.insert(k.trim().to_string(), v.trim().to_string());
        }
        let number = |key: &str| -> Result<Option<f64>, String> {
            values
                .get(key)
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite() && *x >= 0.0)
                        .ok_or_else(|| format!("--predict-schedule `{text}`: {key} = `{v}` is not a non-negative number"))
                })
                .transpose()
        };
        let allowed: &[&str] = match kind {
            "wsd" => &["tokens", "steps", "warmup_tokens", "decay", "decay_fraction", "final_lr_fraction", "half_life_fraction"],
            "cosine" => &["tokens", "steps", "warmup_tokens", "final_lr_fraction"],
            "constant" => &["tokens", "steps", "warmup_tokens"],
            other => return Err(format!("--predict-schedule `{text}`: unknown schedule `{other}`; use wsd, cosine or constant")),
        };
        if let Some(bad) = values.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!("--predict-schedule `{text}`: a {kind} schedule has no `{bad}`; its keys are {}", allowed.join(", ")));
        }
        let length = match (number("tokens")?, number("steps")?) {
            (Some(t), None) if t >= 1.0 => Length::Tokens(t),
            (None, Some(s)) if s >= 1.0 && s.fract() == 0.0 => Length::Steps(s as u64),
            _ => return Err(format!("--predict-schedule `{text}`: give its length as exactly one of tokens=T or steps=S (at least 1)")),
        };
        let fraction = |key: &str, default: f64| -> Result<f64, String> {
            let v = number(key)?.unwrap_or(default);
            if v > 1.0 {
                return Err(format!("--predict-schedule `{text}`: {key} = {v} must be between 0 and 1"));
            }
            Ok(v)
        };
        let kind = match kind {
            "wsd" => {
                let decay = match values.get("decay") {
                    Some(name) => name.parse::<DecayShape>().map_err(|e| format!("--predict-schedule `{text}`: {e}"))?,
                    None => DecayShape::default(),
                };
                let decay_fraction = fraction("decay_fraction", 0.1)?;
                let half_life_fraction = fraction("half_life_fraction", ScheduleSpec::DEFAULT_HALF_LIFE_FRACTION)?;
                if half_life_fraction == 0.0 {
                    return Err(format!("--predict-schedule `{text}`: half_life_fraction must be above 0"));
                }
                Kind::Wsd { decay, decay_fraction, final_lr_fraction: fraction("final_lr_fraction", 0.0)?, half_life_fraction }
            }
            "cosine" => Kind::Cosine { final_lr_fraction: fraction("final_lr_fraction", ScheduleSpec::DEFAULT_COSINE_FLOOR)? },
            _ => Kind::Constant,
        };
        Ok(Self { text: text.to_string(), kind, length, warmup_tokens: number("warmup_tokens")? })
    }
}

impl ScheduleRequest {
    /// A WSD schedule of `length` with a decay of `shape` over `decay_fraction` of the run;
    /// `length` is in tokens, or in steps where the runs logged no tokens (`in_steps`).
    pub fn wsd(length: f64, in_steps: bool, shape: DecayShape, decay_fraction: f64) -> Self {
        let (written, length) = match in_steps {
            true => (format!("steps={}", length.round() as u64), Length::Steps(length.round() as u64)),
            false => (format!("tokens={length}"), Length::Tokens(length)),
        };
        let text = format!("wsd:{written},decay_fraction={decay_fraction},decay={shape}");
        let kind = Kind::Wsd { decay: shape, decay_fraction, final_lr_fraction: 0.0, half_life_fraction: ScheduleSpec::DEFAULT_HALF_LIFE_FRACTION };
        Self { text, kind, length, warmup_tokens: None }
    }

    /// The rate of every step of this schedule in `frame`.
    pub fn rates(&self, frame: &GroupFrame) -> Result<Vec<f64>, String> {
        let tps = match (self.length, frame.tokens_per_step) {
            (Length::Tokens(_), None) => return Err(format!("`{}`: these runs logged no tokens per step; give the length as steps=", self.text)),
            (_, tps) => tps.unwrap_or(1.0),
        };
        let steps = match self.length {
            Length::Tokens(t) => (t / tps).ceil() as u64,
            Length::Steps(s) => s,
        };
        if steps > MAX_SCHEDULE_STEPS {
            return Err(format!(
                "`{}`: {steps} steps is past the longest schedule predicted here ({MAX_SCHEDULE_STEPS} steps, a rate each); give a shorter run",
                self.text
            ));
        }
        let warmup_steps = self.warmup_tokens.map_or(frame.warmup_steps as u64, |w| (w / tps).ceil() as u64);
        if warmup_steps >= steps {
            return Err(format!("`{}`: the warmup ({warmup_steps} steps) takes the whole run ({steps} steps)", self.text));
        }
        // In units where one step is one token: the schedule's own arithmetic, step by step.
        let spec = match self.kind {
            Kind::Wsd { decay, decay_fraction, final_lr_fraction, half_life_fraction } => {
                let decay_steps = ((steps as f64 * decay_fraction).round() as u64).clamp(1, steps - warmup_steps);
                let half_life = ((decay_steps as f64 * half_life_fraction).round() as u64).max(1);
                ScheduleSpec::Wsd { warmup_tokens: warmup_steps, decay, decay_tokens: decay_steps, half_life_tokens: Some(half_life), final_lr_fraction }
            }
            Kind::Cosine { final_lr_fraction } => ScheduleSpec::Cosine { warmup_tokens: warmup_steps, final_lr_fraction },
            Kind::Constant => ScheduleSpec::Constant { warmup_tokens: warmup_steps },
        };
        Ok((1..=steps).map(|k| frame.peak_lr * spec.factor(k, steps)).collect())
    }
}

/// The most steps a schedule to predict may have: its rates are held step by step (80 MB at
/// this length), and a length from a typo (`steps=18446744073709551616`) must be an error, not an
/// allocation that aborts.
pub const MAX_SCHEDULE_STEPS: u64 = 10_000_000;

/// The decay fractions `--optimize-decay` tries: 2% to 60% of the run.
pub fn decay_fractions() -> Vec<f64> {
    (1..=30).map(|i| 0.02 * i as f64).collect()
}

/// The decay shapes `--optimize-decay` tries: every row of [`crate::schedule::DECAY_SHAPES`].
pub fn decay_shapes() -> impl Iterator<Item = DecayShape> {
    DecayShape::all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requested_schedule_is_the_trainers_schedule_in_the_groups_frame() {
        let frame = GroupFrame { peak_lr: 0.04, tokens_per_step: Some(1024.0), warmup_steps: 8 };
        let r: ScheduleRequest = "wsd:tokens=102400,decay_fraction=0.2,decay=linear".parse().unwrap();
        let lr = r.rates(&frame).unwrap();
        assert_eq!(lr.len(), 100);
        let decay = "linear".parse().unwrap();
        let spec = ScheduleSpec::Wsd { warmup_tokens: 8 * 1024, decay, decay_tokens: 20 * 1024, half_life_tokens: None, final_lr_fraction: 0.0 };
        for (k, x) in lr.iter().enumerate() {
            let want = 0.04 * spec.factor((k as u64 + 1) * 1024, 102_400);
            assert!((x - want).abs() < 1e-15, "step {}: {x} vs {want}", k + 1);
        }
        let cosine: ScheduleRequest = "cosine:steps=50".parse().unwrap();
        assert!((cosine.rates(&frame).unwrap()[49] - 0.004).abs() < 1e-12);
    }

    #[test]
    fn a_schedule_too_long_to_hold_is_refused_not_allocated() {
        let frame = GroupFrame { peak_lr: 0.04, tokens_per_step: Some(1024.0), warmup_steps: 8 };
        for text in ["constant:steps=18446744073709551616", "constant:steps=4000000000", "cosine:tokens=1e30"] {
            let e = text.parse::<ScheduleRequest>().unwrap().rates(&frame).unwrap_err();
            assert!(e.contains("past the longest schedule predicted here (10000000 steps") && e.contains("give a shorter run"), "{text}: {e}");
        }
        let most: ScheduleRequest = format!("constant:steps={MAX_SCHEDULE_STEPS}").parse().unwrap();
        assert_eq!(most.rates(&frame).unwrap().len() as u64, MAX_SCHEDULE_STEPS);
    }

    #[test]
    fn bad_schedules_are_refused_with_the_fix() {
        for (text, want) in [
            ("wsd", "KIND:KEY=VALUE"),
            ("wsd:tokens=100,steps=3", "exactly one of tokens=T or steps=S"),
            ("wsd:tokens=100,decay=cubic", "decay `cubic`"),
            ("wsd:tokens=100,decay_fraction=2", "between 0 and 1"),
            ("cosine:tokens=100,decay=linear", "has no `decay`"),
            ("warmup:tokens=100", "unknown schedule `warmup`"),
            ("constant:tokens=-5", "not a non-negative number"),
        ] {
            let e = text.parse::<ScheduleRequest>().unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        let frame = GroupFrame { peak_lr: 1.0, tokens_per_step: None, warmup_steps: 8 };
        let e = "constant:tokens=100".parse::<ScheduleRequest>().unwrap().rates(&frame).unwrap_err();
        assert!(e.contains("steps="), "{e}");
    }
}
