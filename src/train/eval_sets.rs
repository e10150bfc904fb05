//! Evaluation on named sets: `training.evals = [{ name = "web", data = { ... } }, ...]`.
//!
//! Each set is evaluated at every evaluation, beside the default one on `[data]`'s held-out split
//! (which stays as it is), on the same number of sequences (`training.eval_tokens`, fewer when the
//! set's held-out split holds fewer). A set's sequences are those of its data's held-out split
//! under a seed fixed by the run's `training.data_seed` and the set's name, so every run with the
//! same data seed evaluates a set on the same tokens in the same order, whatever else it holds:
//! runs compare. Its loss is logged in `metrics.jsonl` under `evals.<name>`, and is the results
//! table's column `eval/<name>` ([`column`]), which the fits read like any other.
//!
//! ```toml
//! [training]
//! evals = [ { name = "web",  data = { kind = "prepared", path = "data", domain = "web" } },
//!           { name = "code", data = { kind = "prepared", path = "data", domain = "code" } } ]
//! ```

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::data::{self, DataSpec, TokenSource};

/// One named evaluation set, as the run file writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalSet {
    /// The set's name (letters, digits, `_` and `-`; unique in the run): its loss is `evals.<name>`
    /// in metrics.jsonl and the results table's column `eval/<name>`.
    pub name: String,
    /// Its data (any source; its held-out split is evaluated, training never reads it).
    pub data: DataSpec,
}

/// The results table's column (and TensorBoard's tag) of set `name`: `eval/<name>`.
pub fn column(name: &str) -> String {
    format!("eval/{name}")
}

/// The checks of `training.evals` that need no data: each name non-empty, of letters, digits,
/// `_` and `-`, and unique; each set's synthetic settings possible.
pub fn validate(sets: &[EvalSet]) -> anyhow::Result<()> {
    const FIX: &str = "name each set with letters, digits, `_` or `-`, e.g. name = \"web\"";
    for (i, set) in sets.iter().enumerate() {
        let key = format!("training.evals[{i}].name");
        anyhow::ensure!(!set.name.is_empty(), "{key} is empty; {FIX}");
        if let Some(bad) = set.name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
            anyhow::bail!("{key} = {:?} holds {bad:?}, which a set name may not (it becomes the column eval/<name>); {FIX}", set.name);
        }
        if let Some(first) = sets[..i].iter().position(|s| s.name == set.name) {
            anyhow::bail!("{key} = {:?} is also the name of training.evals[{first}]; give each set its own name", set.name);
        }
        set.data.check_synthetic().map_err(|e| anyhow::anyhow!("training.evals[{i}] ({:?}).data: {e}", set.name))?;
    }
    Ok(())
}

/// The data seed of set `name` in a run with data seed `data_seed`: fixed by the two alone.
pub fn seed(data_seed: u64, name: &str) -> u64 {
    const TAG: u64 = 0xE7A1_5E75;
    let mut parts = vec![data_seed, TAG, name.len() as u64];
    parts.extend(name.bytes().map(u64::from));
    crate::rng::mix_seed(&parts)
}

/// A named set, opened: its source and how many held-out sequences each evaluation reads.
#[derive(Debug)]
pub struct OpenedSet {
    pub name: String,
    pub source: Box<dyn TokenSource>,
    /// Sequences of seq_len + 1 tokens per evaluation: the run's eval size, or all the set holds.
    pub sequences: u64,
}

/// Open every set with its seed ([`seed`]), relative paths against `base_dir`; a set whose data
/// cannot be read, whose vocabulary is not the run's, or whose held-out split has no room for
/// one sequence is refused, naming the set.
pub fn open(sets: &[EvalSet], data_seed: u64, base_dir: &Path, vocab: usize, wanted_sequences: u64, seq_len: usize) -> anyhow::Result<Vec<OpenedSet>> {
    sets.iter()
        .enumerate()
        .map(|(i, set)| {
            let what = format!("training.evals[{i}] ({:?})", set.name);
            let source = data::open(&set.data, seed(data_seed, &set.name), base_dir).with_context(|| format!("{what}: cannot read its data"))?;
            anyhow::ensure!(
                source.vocab() == vocab,
                "{what}: its data has vocabulary {}, [data] has {vocab}; an evaluation set must share the run's vocabulary",
                source.vocab()
            );
            let sequences = source.eval_sequences(seq_len + 1).map_or(wanted_sequences, |available| available.min(wanted_sequences));
            anyhow::ensure!(
                sequences > 0,
                "{what}: {} has no held-out room for one sequence of {} tokens (seq_len + 1); use a longer file or a larger eval_fraction",
                set.data.describe(),
                seq_len + 1
            );
            Ok(OpenedSet { name: set.name.clone(), source, sequences })
        })
        .collect()
}

/// What `run.json` records of a named set: its evaluation size, its exact loss floor (synthetic
/// data) and what identifies its files, so that a resume on other data is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSetRecord {
    pub name: String,
    pub eval_sequences: u64,
    pub oracle_eval_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_fingerprint: Option<String>,
}

impl OpenedSet {
    /// Its record, with its oracle loss over the sequences it evaluates.
    pub fn record(&self, seq_len: usize) -> anyhow::Result<EvalSetRecord> {
        let oracle_eval_loss = data::oracle_eval_loss(&*self.source, self.sequences, seq_len).with_context(|| format!("training.evals {:?}", self.name))?;
        Ok(EvalSetRecord { name: self.name.clone(), eval_sequences: self.sequences, oracle_eval_loss, data_fingerprint: self.source.fingerprint() })
    }
}

/// Refuse to resume a run (recorded in `run_json`) whose named sets' files changed since it
/// started (`was`: its record's; `now`: as opened now): its losses would change mid-run.
pub fn check_same_data(run_json: &Path, was: &[EvalSetRecord], now: &[EvalSetRecord]) -> anyhow::Result<()> {
    for set in now {
        let before = was.iter().find(|w| w.name == set.name).and_then(|w| w.data_fingerprint.as_deref());
        if let (Some(before), Some(after)) = (before, set.data_fingerprint.as_deref()) {
            anyhow::ensure!(
                before == after,
                "{}: the data of evaluation set {:?} changed since this run started (fingerprint {before} then, {after} now; size:hash): \
                 its losses would not compare across the resume. Put the original data back to resume it, or start over in a new output folder",
                run_json.display(),
                set.name
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(names: &[&str]) -> Vec<EvalSet> {
        names.iter().map(|n| EvalSet { name: n.to_string(), data: DataSpec::default() }).collect()
    }

    #[test]
    fn names_are_checked_with_the_key_and_the_fix() {
        validate(&sets(&["web", "code_2", "Books-1"])).unwrap();
        let e = validate(&sets(&["web", ""])).unwrap_err().to_string();
        assert!(e.contains("training.evals[1].name is empty") && e.contains("name = \"web\""), "{e}");
        let e = validate(&sets(&["web", "co de"])).unwrap_err().to_string();
        assert!(e.contains("training.evals[1].name = \"co de\" holds ' '") && e.contains("letters, digits"), "{e}");
        let e = validate(&sets(&["eval/web"])).unwrap_err().to_string();
        assert!(e.contains("'/'"), "{e}");
        let e = validate(&sets(&["web", "code", "web"])).unwrap_err().to_string();
        assert!(e.contains("training.evals[2].name = \"web\" is also the name of training.evals[0]") && e.contains("its own name"), "{e}");
    }

    #[test]
    fn a_sets_seed_is_fixed_by_the_data_seed_and_its_name() {
        assert_eq!(seed(0, "web"), seed(0, "web"));
        assert_ne!(seed(0, "web"), seed(1, "web"));
        assert_ne!(seed(0, "web"), seed(0, "code"));
        assert_ne!(seed(0, "ab"), seed(0, "a\u{62}\u{0}"));
    }

    #[test]
    fn a_set_that_cannot_be_read_is_named() {
        let bad = vec![EvalSet { name: "web".into(), data: toml::from_str("kind = \"text\"\npath = \"/nonexistent/web.txt\"").unwrap() }];
        let e = format!("{:#}", open(&bad, 0, Path::new("."), 256, 4, 16).unwrap_err());
        assert!(e.contains("training.evals[0] (\"web\")") && e.contains("/nonexistent/web.txt"), "{e}");
        let opened = open(&sets(&["web"]), 0, Path::new("."), 256, 4, 16).unwrap();
        assert_eq!((opened[0].name.as_str(), opened[0].sequences), ("web", 4));
    }
}
