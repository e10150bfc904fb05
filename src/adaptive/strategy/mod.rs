//! The strategies the adaptive loop chooses runs by: one file each, and one line in
//! [`STRATEGIES`]. The table is what `adapt --strategy` and `[adaptive] strategy` accept, with
//! each one's help, and the list an unknown name's error gives.
//!
//! A new strategy implements [`Strategy`] (its name, a line of help, and `choose`, which picks
//! from the candidates a [`Choosing`] prices) in a file here and adds itself to [`STRATEGIES`].

mod cheapest;
mod random;
mod variance;

use std::borrow::Cow;

pub use super::design::{Choosing, Strategy};

/// Every strategy, the default first.
pub const STRATEGIES: &[&dyn Strategy] = &[&variance::VariancePerFlop, &random::Random, &cheapest::Cheapest];

/// The strategy called `name`.
pub fn named(name: &str) -> Option<&'static dyn Strategy> {
    STRATEGIES.iter().copied().find(|s| s.name() == name)
}

/// The names, as an error lists them: "`adaptive`, `random`, `cheapest`".
fn names() -> String {
    STRATEGIES.iter().map(|s| format!("`{}`", s.name())).collect::<Vec<_>>().join(", ")
}

impl Default for &'static dyn Strategy {
    /// The first of [`STRATEGIES`]: `adaptive`.
    fn default() -> Self {
        STRATEGIES[0]
    }
}

impl PartialEq for dyn Strategy {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl std::fmt::Debug for dyn Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for dyn Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for dyn Strategy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for &'static dyn Strategy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        named(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown variant `{name}`, expected one of {}", names())))
    }
}

impl clap::ValueEnum for &'static dyn Strategy {
    fn value_variants<'a>() -> &'a [Self] {
        STRATEGIES
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.help()))
    }
}

impl schemars::JsonSchema for dyn Strategy {
    fn schema_name() -> Cow<'static, str> {
        "Strategy".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let strategies: Vec<serde_json::Value> =
            STRATEGIES.iter().map(|s| serde_json::json!({ "type": "string", "const": s.name(), "description": s.help() })).collect();
        schemars::json_schema!({ "oneOf": strategies })
    }
}
