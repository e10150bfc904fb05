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
//! with the decay shapes of [`DECAY_SHAPES`], one row each (x = D − S, progress = x / decay_tokens):
//! - `exponential`: f(x) = 0.5^(x / half_life)                          (MiniCPM)
//! - `linear`:      f(x) = 1 − (1 − floor) · progress
//! - `1-sqrt`:      f(x) = 1 − (1 − floor) · √progress                  (Hägele et al. 2024)
//!
//! That table is the one place a decay shape is defined: the schedule's factor, the names run
//! files and sweep files accept (and the list their errors give), the curve law's
//! `--predict-schedule` parser and the shapes `fit curve --optimize-decay` tries all read it, so a
//! new shape is one row.
//!
//! The baseline WSD is compared with is `cosine`: warmup, then
//! `η · (floor + (1 − floor) · ½(1 + cos(π · (D − W) / (T − W))))` to the end T; and `constant`
//! (warmup, then η forever) is a WSD trunk's schedule before any decay.
//!
//! A schedule's family ([`ScheduleFamily`]: constant, cosine, or WSD with one of the table's
//! decay shapes) is what `fit curve` compares the runs it predicts with the runs it fitted by; it
//! is read from a run's rates, so other trainers' curves have one too.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// One decay shape: how files and flags name it, and its multiplier of η.
pub struct DecayShapeDef {
    /// Its name in run files, sweep files, `--predict-schedule` and reports (`decay = "1-sqrt"`).
    pub name: &'static str,
    /// Other names run files and sweep files accept for it.
    pub aliases: &'static [&'static str],
    /// What it does, in a line.
    pub help: &'static str,
    /// f: the multiplier of η at a point of the decay.
    pub factor: fn(&DecayPoint) -> f64,
}

/// Where a decay is, and what a WSD schedule says of it: what a shape's factor reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecayPoint {
    /// Tokens since the decay began (x).
    pub tokens: f64,
    /// `tokens` over the decay's length, at most 1.
    pub progress: f64,
    /// Tokens per halving: `half_life_tokens`, else [`ScheduleSpec::default_half_life`].
    pub half_life_tokens: f64,
    /// The fraction of η the decay ends at (`final_lr_fraction`).
    pub final_lr_fraction: f64,
}

/// Every decay shape, the default (MiniCPM's exponential) first. A new shape is one row here.
pub const DECAY_SHAPES: &[DecayShapeDef] = &[
    DecayShapeDef { name: "exponential", aliases: &[], help: "0.5^(x / half_life_tokens) (MiniCPM).", factor: |d| 0.5f64.powf(d.tokens / d.half_life_tokens) },
    DecayShapeDef { name: "linear", aliases: &[], help: "Linear to `final_lr_fraction`.", factor: |d| 1.0 - (1.0 - d.final_lr_fraction) * d.progress },
    DecayShapeDef {
        name: "1-sqrt",
        aliases: &["one_minus_sqrt"],
        help: "1 − √x to `final_lr_fraction` (Hägele et al. 2024).",
        factor: |d| 1.0 - (1.0 - d.final_lr_fraction) * d.progress.sqrt(),
    },
    // Test builds only: a shape in this row alone, which every reader of the table must accept
    // (see the test `every_reader_accepts_the_tables_shapes_and_no_other`).
    #[cfg(test)]
    DecayShapeDef {
        name: "test-quadratic",
        aliases: &[],
        help: "1 − x² to `final_lr_fraction` (test builds only).",
        factor: |d| 1.0 - (1.0 - d.final_lr_fraction) * d.progress * d.progress,
    },
];

/// Every name run files and sweep files accept, each shape's name then its aliases: the list an
/// unknown name's error gives.
const ACCEPTED_NAMES: [&str; accepted_name_count()] = {
    let mut names = [""; accepted_name_count()];
    let (mut i, mut at) = (0, 0);
    while i < DECAY_SHAPES.len() {
        names[at] = DECAY_SHAPES[i].name;
        at += 1;
        let mut a = 0;
        while a < DECAY_SHAPES[i].aliases.len() {
            names[at] = DECAY_SHAPES[i].aliases[a];
            at += 1;
            a += 1;
        }
        i += 1;
    }
    names
};

const fn accepted_name_count() -> usize {
    let (mut i, mut count) = (0, 0);
    while i < DECAY_SHAPES.len() {
        count += 1 + DECAY_SHAPES[i].aliases.len();
        i += 1;
    }
    count
}

/// A decay shape: a row of [`DECAY_SHAPES`]. Written and read by its name (or an alias).
#[derive(Clone, Copy)]
pub struct DecayShape(&'static DecayShapeDef);

impl DecayShape {
    /// Every shape, in the table's order.
    pub fn all() -> impl Iterator<Item = DecayShape> {
        DECAY_SHAPES.iter().map(DecayShape)
    }

    /// The shape called `name` (or with `name` as an alias).
    pub fn named(name: &str) -> Option<Self> {
        Self::all().find(|s| s.0.name == name || s.0.aliases.contains(&name))
    }

    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// f at `point` of a decay.
    pub fn factor(self, point: &DecayPoint) -> f64 {
        (self.0.factor)(point)
    }

    /// The shapes' names as a sentence lists them: "exponential, linear or 1-sqrt".
    pub fn names_in_words() -> String {
        let names: Vec<&str> = Self::all().map(Self::name).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }
}

impl Default for DecayShape {
    /// The table's first row: exponential (MiniCPM).
    fn default() -> Self {
        Self(&DECAY_SHAPES[0])
    }
}

impl PartialEq for DecayShape {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for DecayShape {}

impl std::hash::Hash for DecayShape {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl std::fmt::Debug for DecayShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for DecayShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DecayShape {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        Self::named(name).ok_or_else(|| format!("decay `{name}` is not {}", Self::names_in_words()))
    }
}

impl Serialize for DecayShape {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for DecayShape {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ByName)
    }
}

/// Reads a shape's name; an unknown one is refused with every accepted name.
struct ByName;

impl serde::de::Visitor<'_> for ByName {
    type Value = DecayShape;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a decay shape: {}", DecayShape::names_in_words())
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<DecayShape, E> {
        DecayShape::named(name).ok_or_else(|| E::unknown_variant(name, &ACCEPTED_NAMES))
    }
}

impl schemars::JsonSchema for DecayShape {
    fn schema_name() -> Cow<'static, str> {
        "DecayShape".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let shapes: Vec<serde_json::Value> =
            DECAY_SHAPES.iter().map(|s| serde_json::json!({ "type": "string", "const": s.name, "description": s.help })).collect();
        schemars::json_schema!({ "oneOf": shapes })
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
                let half_life_tokens = half_life_tokens.unwrap_or(Self::default_half_life(decay_tokens)) as f64;
                decay.factor(&DecayPoint { tokens: x, progress, half_life_tokens, final_lr_fraction })
            }
            Self::Cosine { final_lr_fraction, .. } => {
                let progress = ((tokens - warmup) as f64 / (total_tokens - warmup) as f64).min(1.0);
                final_lr_fraction + (1.0 - final_lr_fraction) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// A schedule's family: constant, cosine, or WSD with a decay of one shape of [`DECAY_SHAPES`]
/// (and `Other` for a rate sequence that is none of those, such as a two-stage drop). `fit curve`
/// warns when it is asked to predict a family none of its fitted runs belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScheduleFamily {
    Constant,
    Cosine,
    Wsd(DecayShape),
    Other,
}

impl ScheduleSpec {
    /// The schedule's family.
    pub fn family(&self) -> ScheduleFamily {
        match *self {
            Self::Constant { .. } => ScheduleFamily::Constant,
            Self::Cosine { .. } => ScheduleFamily::Cosine,
            Self::Wsd { decay, .. } => ScheduleFamily::Wsd(decay),
        }
    }
}

impl ScheduleFamily {
    /// How far (in units of the peak) a rate may stray from a family's schedule and still be
    /// read as it: rates logged every few hundred steps and read linearly between rows, and
    /// decays a few steps long, stay well within; the shapes differ by 0.2 or more mid-decay.
    pub const TOLERANCE: f64 = 0.05;

    /// The family of a run from the rate of each of its steps (1..=T): constant when the rate
    /// never leaves its peak after reaching it; else the schedule, among a cosine from the first
    /// step at the peak and a WSD decay of each shape from the last, that stays closest to the
    /// rates (each ending at the run's last rate, an exponential halving as often as it must to
    /// get there; a decay starting anywhere within the step after the last at the peak), when it
    /// stays within [`Self::TOLERANCE`]; else `Other`.
    pub fn of_rates(lr: &[f64]) -> Self {
        let peak = lr.iter().copied().fold(0.0, f64::max);
        let (Some(first), Some(last)) = (lr.iter().position(|&x| x == peak), lr.iter().rposition(|&x| x == peak)) else {
            return Self::Other;
        };
        let steps = lr.len();
        if peak <= 0.0 || last + 1 == steps {
            return if peak > 0.0 { Self::Constant } else { Self::Other };
        }
        let floor = lr[steps - 1] / peak;
        let cosine = ScheduleSpec::Cosine { warmup_tokens: first as u64 + 1, final_lr_fraction: floor };
        let worst = |f: &dyn Fn(usize) -> f64| (first + 1..steps).map(|i| (lr[i] / peak - f(i + 1)).abs()).fold(0.0, f64::max);
        let mut best = (Self::Other, Self::TOLERANCE);
        let cosine_gap = worst(&|k| cosine.factor(k as u64, steps as u64));
        if cosine_gap <= best.1 {
            best = (Self::Cosine, cosine_gap);
        }
        // The decay starts after the last step at the peak, within a step of it (a decay in
        // tokens need not start on a step's boundary).
        for start in [0.0, 0.25, 0.5, 0.75].map(|within| (last + 1) as f64 + within) {
            let decay_steps = steps as f64 - start;
            let half_life =
                if floor > 0.0 && floor < 1.0 { decay_steps / (1.0 / floor).log2() } else { decay_steps * ScheduleSpec::DEFAULT_HALF_LIFE_FRACTION };
            for shape in DecayShape::all() {
                let factor = |k: usize| {
                    let x = (k as f64 - start).max(0.0);
                    shape.factor(&DecayPoint { tokens: x, progress: (x / decay_steps).min(1.0), half_life_tokens: half_life, final_lr_fraction: floor })
                };
                let gap = worst(&factor);
                if gap < best.1 {
                    best = (Self::Wsd(shape), gap);
                }
            }
        }
        best.0
    }
}

impl std::fmt::Display for ScheduleFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Constant => f.write_str("constant"),
            Self::Cosine => f.write_str("cosine"),
            Self::Wsd(shape) => write!(f, "WSD ({shape} decay)"),
            Self::Other => f.write_str("other (neither constant, cosine nor a WSD decay of a known shape)"),
        }
    }
}

impl Serialize for ScheduleFamily {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_000_000;

    fn wsd(decay: &str) -> ScheduleSpec {
        let decay = DecayShape::named(decay).unwrap();
        ScheduleSpec::Wsd { warmup_tokens: 10_000, decay, decay_tokens: 100_000, half_life_tokens: Some(20_000), final_lr_fraction: 0.1 }
    }

    #[test]
    fn warmup_and_stable_corners() {
        let s = wsd("linear");
        assert_eq!(s.factor(0, T), 0.0);
        assert_eq!(s.factor(5_000, T), 0.5);
        assert_eq!(s.factor(10_000, T), 1.0); // end of warmup
        assert_eq!(s.factor(899_999, T), 1.0); // last stable token
        assert_eq!(s.factor(900_000, T), 1.0); // start of decay
    }

    #[test]
    fn decay_shapes_at_their_corners() {
        let lin = wsd("linear");
        assert!((lin.factor(950_000, T) - 0.55).abs() < 1e-12);
        assert!((lin.factor(T, T) - 0.1).abs() < 1e-12); // end of decay: the floor
        let sq = wsd("1-sqrt");
        assert!((sq.factor(925_000, T) - (1.0 - 0.9 * 0.5)).abs() < 1e-12); // x = 1/4 → √x = 1/2
        assert!((sq.factor(T, T) - 0.1).abs() < 1e-12);
        let exp = wsd("exponential");
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
        let e = wsd("linear").validate(50_000).unwrap_err();
        assert!(e.contains("decay_tokens"), "{e}");
        let e = ScheduleSpec::Constant { warmup_tokens: 10 }.validate(5).unwrap_err();
        assert!(e.contains("warmup_tokens"), "{e}");
    }

    /// A run's family read from its rates is its schedule's, for every shape of the table, at a
    /// few tokens per step and with decays a few steps long; a two-stage drop is none of them.
    #[test]
    fn a_runs_family_is_read_from_its_rates() {
        let rates = |spec: &ScheduleSpec, steps: u64, tokens_per_step: u64| -> Vec<f64> {
            (1..=steps).map(|k| 0.04 * spec.factor(k * tokens_per_step, steps * tokens_per_step)).collect()
        };
        let mut specs = vec![ScheduleSpec::Constant { warmup_tokens: 8192 }, ScheduleSpec::Cosine { warmup_tokens: 8192, final_lr_fraction: 0.1 }];
        for shape in DecayShape::all() {
            for (decay_tokens, final_lr_fraction) in [(9830, 0.0), (20_000, 0.1), (50_000, 0.0)] {
                specs.push(ScheduleSpec::Wsd { warmup_tokens: 8192, decay: shape, decay_tokens, half_life_tokens: None, final_lr_fraction });
            }
        }
        for spec in &specs {
            for steps in [60, 768] {
                assert_eq!(ScheduleFamily::of_rates(&rates(spec, steps, 1024)), spec.family(), "{spec:?} over {steps} steps");
            }
        }
        // Two stages: the peak, then 30% of it to the end.
        let two_stage: Vec<f64> = (1..=800).map(|k| if k < 300 { 1.0 } else { 0.3 }).collect();
        assert_eq!(ScheduleFamily::of_rates(&two_stage), ScheduleFamily::Other);
        assert_eq!(ScheduleFamily::of_rates(&[0.0; 5]), ScheduleFamily::Other);
        assert_eq!(ScheduleFamily::Wsd(DecayShape::named("1-sqrt").unwrap()).to_string(), "WSD (1-sqrt decay)");
    }

    /// Every reader of decay shapes accepts the table's shapes and no other: the run file, the
    /// sweep file, `--predict-schedule`, and `--optimize-decay`'s list. The test-only row of
    /// [`DECAY_SHAPES`] is among them, so a shape in the table alone reaches every one.
    #[test]
    fn every_reader_accepts_the_tables_shapes_and_no_other() {
        use crate::fit::curve::schedules::{decay_shapes, ScheduleRequest};
        use crate::sweep::spec::WsdSpec;
        let table: Vec<&str> = DECAY_SHAPES.iter().map(|s| s.name).collect();
        assert!(table.contains(&"test-quadratic"), "{table:?}");
        let tried: Vec<&str> = table.iter().copied().chain(["cubic", "Linear", ""]).collect();
        let accepted = |reads: &dyn Fn(&str) -> bool| -> Vec<&str> { tried.iter().copied().filter(|name| reads(name)).collect() };
        let run_file =
            |name: &str| toml::from_str::<ScheduleSpec>(&format!("kind = \"wsd\"\nwarmup_tokens = 10\ndecay = \"{name}\"\ndecay_tokens = 50")).is_ok();
        let sweep_file = |name: &str| toml::from_str::<WsdSpec>(&format!("branch_tokens = [100]\ndecay = \"{name}\"")).is_ok();
        let predict = |name: &str| format!("wsd:tokens=100,decay={name}").parse::<ScheduleRequest>().is_ok();
        let optimized: Vec<String> = decay_shapes().map(|s| s.to_string()).collect();
        assert_eq!(accepted(&run_file), table, "the run file's schedule");
        assert_eq!(accepted(&sweep_file), table, "the sweep file's wsd.decay");
        assert_eq!(accepted(&predict), table, "fit curve --predict-schedule");
        assert_eq!(optimized, table, "fit curve --optimize-decay");
        // The schedule computes each: from 1 at the decay's start to its end.
        for shape in DecayShape::all() {
            let s = ScheduleSpec::Wsd { warmup_tokens: 0, decay: shape, decay_tokens: 100, half_life_tokens: None, final_lr_fraction: 0.1 };
            let (start, end) = (s.factor(900, 1000), s.factor(1000, 1000));
            assert!(start == 1.0 && (0.0..1.0).contains(&end), "{shape}: {start} → {end}");
        }
        // An unknown name is refused with every name the table accepts.
        let e = toml::from_str::<WsdSpec>("decay = \"cubic\"").unwrap_err().to_string();
        assert!(e.contains("unknown variant `cubic`, expected one of `exponential`, `linear`, `1-sqrt`, `one_minus_sqrt`, `test-quadratic`"), "{e}");
        assert_eq!(DecayShape::named("one_minus_sqrt"), DecayShape::named("1-sqrt"));
    }
}
