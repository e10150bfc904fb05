//! What `windtunnel fit law` fits, and how: the law's definition, declared once. Each field of
//! [`LawDefinition`] is a key of an `analysis/*.toml` definition file (and of the `definition`
//! that `fits/law.json` keeps) and a flag of `fit law` ([`LawFlags`]): one declaration gives its
//! documentation and the flag's help, its key and default, and its flag. The flags given
//! override the file, the file overrides the defaults ([`LawFlags::definition`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::form::Form;
use super::input::Columns;
use super::observation::column;

/// Which points `--holdout` leaves out of the fit to test its predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Holdout {
    /// Every point of the largest N.
    Largest,
    /// Every point of the largest compute 6ND (within 10% of the maximum).
    LargestBudget,
}

impl std::str::FromStr for Holdout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "largest" | "largest-model" => Ok(Self::Largest),
            "largest-budget" => Ok(Self::LargestBudget),
            _ => Err(format!("unknown holdout `{s}`; use `largest` (model) or `largest-budget`")),
        }
    }
}

/// Declares [`LawDefinition`] and [`LawFlags`] from one list of fields. Each field is written as
/// its doc comment (the field's documentation and its flag's help), its `#[serde]` attributes
/// (its key and default in a definition file), its `#[arg]` attribute (its flag; `skip` for
/// none) and `NAME: TYPE, flag: FLAG_TYPE`, where the flag's type says how a flag given lands on
/// the field ([`Override`]). Serde cannot flatten a struct into one that denies unknown keys, and
/// a typo in a fit definition must be an error: hence one declaration for two structs.
macro_rules! law_definition {
    ($(
        $(#[doc = $doc:literal])*
        $(#[serde($($serde:tt)*)])*
        #[arg($($arg:tt)*)]
        $field:ident: $type:ty, flag: $flag:ty;
    )*) => {
        /// A fit definition, as `windtunnel fit law` flags or an `analysis/*.toml` file give it.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct LawDefinition {
            $($(#[doc = $doc])* $(#[serde($($serde)*)])* pub $field: $type,)*
        }

        /// `windtunnel fit law`'s flags, one per field of [`LawDefinition`] (a field no flag sets
        /// has `()`); [`LawFlags::definition`] lays the flags given over a definition file.
        #[derive(Debug, Clone, clap::Args)]
        pub struct LawFlags {
            $($(#[doc = $doc])* #[arg($($arg)*)] pub $field: $flag,)*
        }

        impl LawFlags {
            /// Each flag given over its own field of `def`.
            fn override_fields(&self, def: &mut LawDefinition) {
                $(Override::apply(&self.$field, &mut def.$field);)*
            }
        }
    };
}

law_definition! {
    /// A CSV or Parquet table, or a sweep directory (its results table, from its runs' files).
    #[arg(long)]
    input: PathBuf, flag: Option<PathBuf>;
    /// Column of N (non-embedding parameters) [default: non_embedding_params].
    #[arg(long)]
    n: String, flag: Option<String>;
    /// Column of D (training tokens) [default: tokens].
    #[serde(default)]
    #[arg(long, conflicts_with = "flops")]
    tokens: Option<String>, flag: Option<String>;
    /// Column of C (training FLOPs); D = C / (6N).
    #[serde(default)]
    #[arg(long)]
    flops: Option<String>, flag: Option<String>;
    /// Column of the final loss [default: final_eval_loss].
    #[arg(long)]
    loss: String, flag: Option<String>;
    /// The law's form: chinchilla (E + A/N^α + B/D^β) or kaplan ([(N_c/N)^(α_N/α_D) + D_c/D]^α_D).
    /// Several, comma-separated, are compared (AIC, held-out error); the first is the one reported.
    #[serde(default)]
    #[arg(long, value_delimiter = ',')]
    form: Form, flag: Option<Vec<Form>>;
    /// Other forms to fit and compare with `form` (AIC, residuals, held-out error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[arg(skip)]
    compare: Vec<Form>, flag: ();
    /// Hold parameters at a value instead of fitting them, comma-separated KEY=VALUE (e.g. e=2.485,
    /// a synthetic language's exact loss floor). Keys as in the JSON: e, a, b, alpha, beta (chinchilla).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[arg(long, value_delimiter = ',', value_parser = parse_fixed)]
    fix: BTreeMap<String, f64>, flag: Option<Vec<(String, f64)>>;
    /// Only rows of this sweep grid (a sweep table's `grid` column).
    #[serde(default)]
    #[arg(long)]
    grid: Option<String>, flag: Option<String>;
    /// Fit only the rows this keeps: comparisons on columns joined by `and`, e.g. "non_embedding_params < 1e6".
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    #[arg(long = "where", value_name = "EXPR")]
    where_: Option<String>, flag: Option<String>;
    /// Leave the rows this keeps out of the fit and predict them (errors and prediction intervals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "EXPR")]
    predict_where: Option<String>, flag: Option<String>;
    /// Leave out the K highest-loss points.
    #[serde(default)]
    #[arg(long)]
    drop_highest: usize, flag: Option<usize>;
    /// Huber δ.
    #[serde(default = "default_delta")]
    #[arg(long)]
    delta: f64, flag: Option<f64>;
    /// Bootstrap resamples for intervals (0: none).
    #[serde(default)]
    #[arg(long)]
    bootstrap: usize, flag: Option<usize>;
    /// Refit each resample from the full 4500-start grid instead of from the full fit.
    #[serde(default)]
    #[arg(long)]
    bootstrap_full_grid: bool, flag: bool;
    #[serde(default)]
    #[arg(long)]
    seed: u64, flag: Option<u64>;
    /// Compute budgets in FLOPs for the compute-optimal N, D and D/N, comma-separated.
    #[serde(default)]
    #[arg(long, value_delimiter = ',')]
    budgets: Vec<f64>, flag: Option<Vec<f64>>;
    /// Fit without the largest model (`largest`) or budget (`largest-budget`) and predict it.
    #[serde(default)]
    #[arg(long)]
    holdout: Option<Holdout>, flag: Option<Holdout>;
    /// Validate by rollout: for k = 2, 3, …, fit the k smallest model sizes and predict the next.
    #[serde(default)]
    #[arg(long)]
    rollout: bool, flag: bool;
    /// Predict the loss at N:D, comma-separated (e.g. 1e9:2e10).
    #[serde(default)]
    #[arg(long, value_delimiter = ',', value_parser = parse_pair)]
    predict: Vec<[f64; 2]>, flag: Option<Vec<[f64; 2]>>;
    /// Central interval level of the bootstrap intervals.
    #[serde(default = "default_level")]
    #[arg(skip)]
    level: f64, flag: ();
}

fn default_delta() -> f64 {
    LawDefinition::DEFAULT_DELTA
}
fn default_level() -> f64 {
    LawDefinition::DEFAULT_LEVEL
}

impl LawDefinition {
    /// Huber's δ unless `delta` says otherwise (the adaptive loop's default too).
    pub const DEFAULT_DELTA: f64 = 1e-3;
    /// The intervals' central level unless `level` says otherwise (the adaptive loop's default too).
    pub const DEFAULT_LEVEL: f64 = 0.95;
    /// The most bootstrap resamples a fit takes (`bootstrap = 4000000000` ran for minutes, deaf
    /// to Ctrl-C): a 95% interval settles within a few thousand.
    pub const MAX_BOOTSTRAP: usize = 100_000;

    /// The table's columns this definition reads.
    pub fn columns(&self) -> Columns {
        Columns { n: self.n.clone(), tokens: self.tokens.clone(), flops: self.flops.clone(), loss: self.loss.clone(), grid: self.grid.clone() }
    }

    /// `fit law --input TABLE` with no other flags: the results table's columns, and every other
    /// field at its default, as a definition file naming only these columns would have it.
    pub fn for_table(input: PathBuf) -> Self {
        let columns = serde_json::json!({ "input": "", "n": column::NON_EMBEDDING_PARAMS, "tokens": column::TOKENS, "loss": column::FINAL_EVAL_LOSS });
        // Every other field has a default (the unit test `the_table_defaults_are_a_definition` checks).
        let defaults: Self = serde_json::from_value(columns).expect("the results table's columns make a whole definition");
        Self { input, ..defaults }
    }

    /// What this definition fits, in one line: the columns (N, D, loss), the form, which rows
    /// (grid, `--where`, the highest-loss dropped, `--predict-where`, `--holdout`) and the fixed
    /// parameters. Every output that shows a law shows this line beside it.
    pub fn describe(&self) -> String {
        let d = match (&self.tokens, &self.flops) {
            (_, Some(flops)) => format!("C/(6N) from {flops}"),
            (Some(tokens), None) => tokens.clone(),
            (None, None) => "-".into(),
        };
        let form = if self.form == Form::Kaplan { "kaplan" } else { "chinchilla" };
        let mut parts = vec![format!("N = {}, D = {d}, loss = {}; form {form}", self.n, self.loss)];
        parts.push(self.grid.as_ref().map_or("every grid".into(), |g| format!("grid {g}")));
        parts.push(self.where_.as_ref().map_or("every row".into(), |w| format!("rows where {w}")));
        if self.drop_highest > 0 {
            parts.push(format!("the {} highest-loss rows dropped", self.drop_highest));
        }
        if let Some(p) = &self.predict_where {
            parts.push(format!("rows where {p} predicted, not fitted"));
        }
        if let Some(h) = self.holdout {
            parts.push(format!("holdout {}", if h == Holdout::Largest { "largest" } else { "largest-budget" }));
        }
        if !self.fix.is_empty() {
            parts.push(format!("fixed {}", self.fix.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")));
        }
        parts.join("; ")
    }

    /// The fields in which `self` fits another law than `other` (the input, the budgets and
    /// predictions asked for, the forms compared and rollout change what is printed, not the law).
    pub fn differs_from(&self, other: &LawDefinition) -> Vec<String> {
        let fields = |d: &LawDefinition| match serde_json::to_value(d) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let (mine, theirs) = (fields(self), fields(other));
        let shown_only = ["input", "budgets", "predict", "compare", "rollout"];
        let mut keys: Vec<&String> = mine.keys().chain(theirs.keys()).filter(|k| !shown_only.contains(&k.as_str())).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter().filter(|k| mine.get(*k) != theirs.get(*k)).cloned().collect()
    }

    /// Read an `analysis/*.toml` definition; its `input` is resolved against the file's folder.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read fit definition {}", path.display()))?;
        let mut def: Self = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        if def.input.is_relative() {
            def.input = path.parent().unwrap_or(Path::new(".")).join(&def.input);
        }
        Ok(def)
    }
}

impl LawFlags {
    /// The definition `fit law` runs: flag over file over default. The flags given override the
    /// definition file `config` when there is one, else the results table's defaults of
    /// [`LawDefinition::for_table`] (then `--input` is required).
    pub fn definition(&self, config: Option<&Path>) -> anyhow::Result<LawDefinition> {
        let mut def = match config {
            Some(path) => LawDefinition::load(path)?,
            None => LawDefinition::for_table(self.input.clone().context("--input is required")?),
        };
        self.override_fields(&mut def);
        // Two flags settle a second field too: D comes from one column, so `--tokens` or `--flops`
        // drops the file's other one; `--form A,B` reports A and compares B with it.
        if self.tokens.is_some() || self.flops.is_some() {
            (def.tokens, def.flops) = (self.tokens.clone(), self.flops.clone());
        }
        if let Some((_, others)) = self.form.as_deref().and_then(<[Form]>::split_first) {
            def.compare = others.to_vec();
        }
        Ok(def)
    }
}

/// How a flag given lands on its field: a value replaces the field's, a switch turns it on (a
/// file's `rollout = true` stays on without `--rollout`), `--fix` adds to the file's fixed
/// parameters, `--form A,B` sets the form to A, and a field no flag sets keeps its value.
trait Override<Field> {
    fn apply(&self, field: &mut Field);
}

impl<T: Clone> Override<T> for Option<T> {
    fn apply(&self, field: &mut T) {
        if let Some(value) = self {
            *field = value.clone();
        }
    }
}

impl<T: Clone> Override<Option<T>> for Option<T> {
    fn apply(&self, field: &mut Option<T>) {
        if self.is_some() {
            field.clone_from(self);
        }
    }
}

impl Override<bool> for bool {
    fn apply(&self, field: &mut bool) {
        *field |= *self;
    }
}

impl Override<BTreeMap<String, f64>> for Option<Vec<(String, f64)>> {
    fn apply(&self, field: &mut BTreeMap<String, f64>) {
        field.extend(self.iter().flatten().cloned());
    }
}

impl Override<Form> for Option<Vec<Form>> {
    fn apply(&self, field: &mut Form) {
        if let Some(&first) = self.as_deref().and_then(<[Form]>::first) {
            *field = first;
        }
    }
}

impl<T> Override<T> for () {
    fn apply(&self, _: &mut T) {}
}

/// `--fix KEY=VALUE`.
fn parse_fixed(s: &str) -> Result<(String, f64), String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("`{s}`: write KEY=VALUE, e.g. e=2.485"))?;
    let value: f64 = value.trim().parse().map_err(|_| format!("`{s}`: `{value}` is not a number"))?;
    if !value.is_finite() {
        return Err(format!("`{s}`: the value must be finite"));
    }
    Ok((key.trim().to_string(), value))
}

/// `--predict N:D`.
fn parse_pair(s: &str) -> Result<[f64; 2], String> {
    let (n, d) = s.split_once(':').ok_or_else(|| format!("`{s}`: write N:D, e.g. 1e9:2e10"))?;
    let num = |x: &str| match x.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err(format!("`{x}`: N and D must be positive finite counts, e.g. 1e9:2e10")),
        Err(_) => Err(format!("`{x}` is not a number")),
    };
    Ok([num(n)?, num(d)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct FitLaw {
        #[command(flatten)]
        law: LawFlags,
    }

    fn flags(args: &[&str]) -> LawFlags {
        FitLaw::try_parse_from(std::iter::once("fit-law").chain(args.iter().copied())).unwrap().law
    }

    #[test]
    fn the_table_defaults_are_a_definition() {
        let def = LawDefinition::for_table("results/quickstart".into());
        assert_eq!(def.input, Path::new("results/quickstart"));
        assert_eq!(
            (def.n.as_str(), def.tokens.as_deref(), def.flops.as_deref(), def.loss.as_str()),
            ("non_embedding_params", Some("tokens"), None, "final_eval_loss")
        );
        assert_eq!((def.form, def.compare.len(), def.fix.len(), def.drop_highest, def.bootstrap, def.seed), (Form::Chinchilla, 0, 0, 0, 0, 0));
        assert_eq!((def.delta, def.level, def.bootstrap_full_grid, def.rollout, def.holdout), (1e-3, 0.95, false, false, None));
        assert!(def.grid.is_none() && def.where_.is_none() && def.predict_where.is_none() && def.budgets.is_empty() && def.predict.is_empty());
    }

    /// The help states the defaults of `for_table` (clap cannot: a flag with a default would
    /// always override the file).
    #[test]
    fn the_help_names_the_defaults() {
        let def = LawDefinition::for_table(PathBuf::new());
        let command = FitLaw::command();
        let help = |id: &str| command.get_arguments().find(|a| a.get_id() == id).and_then(|a| a.get_help()).map(|h| h.to_string()).unwrap();
        assert!(help("n").ends_with(&format!("[default: {}]", def.n)), "{}", help("n"));
        assert!(help("tokens").ends_with(&format!("[default: {}]", def.tokens.unwrap())), "{}", help("tokens"));
        assert!(help("loss").ends_with(&format!("[default: {}]", def.loss)), "{}", help("loss"));
    }

    #[test]
    fn flags_override_the_file_and_the_file_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("law.toml");
        std::fs::write(
            &file,
            "input = \"t.csv\"\nn = \"N\"\nflops = \"C\"\nloss = \"L\"\ncompare = [\"kaplan\"]\nfix = { e = 1.5 }\nrollout = true\nbootstrap = 7\n",
        )
        .unwrap();
        let def = flags(&["--tokens", "D", "--fix", "a=2", "--form", "kaplan", "--bootstrap", "0", "--budgets", "1e20,1e21"]).definition(Some(&file)).unwrap();
        assert_eq!(def.input, dir.path().join("t.csv"));
        assert_eq!((def.n.as_str(), def.tokens.as_deref(), def.flops.as_deref(), def.loss.as_str()), ("N", Some("D"), None, "L"));
        assert_eq!((def.form, def.compare.clone()), (Form::Kaplan, vec![]));
        assert_eq!(def.fix, BTreeMap::from([("a".to_string(), 2.0), ("e".to_string(), 1.5)]));
        assert_eq!((def.rollout, def.bootstrap, def.budgets.clone(), def.delta), (true, 0, vec![1e20, 1e21], 1e-3));

        let def = flags(&["--input", "other.csv", "--form", "chinchilla,kaplan", "--rollout"]).definition(Some(&file)).unwrap();
        assert_eq!((def.input.as_path(), def.tokens.as_deref(), def.flops.as_deref()), (Path::new("other.csv"), None, Some("C")));
        assert_eq!((def.form, def.compare.clone(), def.bootstrap), (Form::Chinchilla, vec![Form::Kaplan], 7));

        let def = flags(&["--input", "runs.csv", "--flops", "C", "--holdout", "largest"]).definition(None).unwrap();
        assert_eq!(
            (def.n.as_str(), def.tokens.as_deref(), def.flops.as_deref(), def.holdout),
            ("non_embedding_params", None, Some("C"), Some(Holdout::Largest))
        );
    }

    #[test]
    fn a_misspelt_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("law.toml");
        std::fs::write(&file, "input = \"t.csv\"\nn = \"N\"\ntokens = \"D\"\nloss = \"L\"\nbootstraps = 10\n").unwrap();
        let e = flags(&[]).definition(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("law.toml") && e.contains("unknown field `bootstraps`"), "{e}");
    }
}
