//! The fits a sweep directory keeps: `fits/law.json`, `fits/lr.json`, `fits/batch.json`, written
//! by `windtunnel fit` on a sweep directory and read back by `plot`, `report` and `export` (the
//! charts redraw the law the user fitted, with its `--holdout` or `--drop-highest`), and
//! `fits/mixture.json`, the report of `fit mixture`. Each file records the command that saved it
//! and when (`saved`); an output that uses a saved definition other than the default says so
//! ([`SavedFitNote`]), `--fresh` ignores it, and `fit list` / `fit clear` show and forget what is
//! kept.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::fit::report::LawDefinition;
use crate::fsutil::atomic_write;
use crate::layout::{FitKind, SweepDir};

/// The bootstrap resamples the outputs give a law saved without one (so the charts have bands).
pub const OUTPUTS_BOOTSTRAP: usize = 200;

/// Who saved a fit, and when: the `saved` object of `fits/*.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedBy {
    /// The command line, as a shell would take it back.
    pub command: String,
    /// UTC, `YYYY-MM-DD HH:MM`.
    pub at: String,
}

impl SavedBy {
    /// This process's command line, now.
    pub fn now() -> Self {
        let words: Vec<String> = std::env::args().enumerate().map(|(i, a)| if i == 0 { "windtunnel".into() } else { shell_word(&a) }).collect();
        Self { command: words.join(" "), at: utc_minutes(std::time::SystemTime::now()) }
    }
}

/// `word` quoted for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `YYYY-MM-DD HH:MM` UTC (Howard Hinnant's days-to-civil algorithm).
fn utc_minutes(time: std::time::SystemTime) -> String {
    let secs = time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3600, rest % 3600 / 60)
}

/// Keep `report`: in `out` when given, else in the sweep directory `input` when it is one, with
/// the command that saved it (`saved`). Returns where it was written.
pub fn keep<T: Serialize>(input: &Path, kind: FitKind, report: &T, out: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    let sweep = SweepDir::open(input);
    let Some(path) = out.map(Path::to_path_buf).or_else(|| sweep.exists().then(|| sweep.fit(kind))) else { return Ok(None) };
    let mut value = serde_json::to_value(report)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("saved".into(), serde_json::to_value(SavedBy::now())?);
    }
    atomic_write(&path, serde_json::to_string_pretty(&value)?.as_bytes()).with_context(|| format!("cannot keep the fit in {}", path.display()))?;
    Ok(Some(path))
}

/// Which data-model law definition a sweep's outputs fit.
#[derive(Debug, Clone, Default)]
pub enum LawChoice {
    /// The definition `fit law` saved in `fits/law.json`, announced when it is not the default.
    #[default]
    Saved,
    /// The default (`--fresh`), whatever is saved.
    Fresh,
    /// This definition (a command's own flags).
    Given(Box<LawDefinition>),
}

/// A saved definition that is not the default: what saved it, when, and how it differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavedFitNote {
    /// The command that saved it (`None` for a file saved before windtunnel recorded it).
    pub command: Option<String>,
    pub at: Option<String>,
    /// The definition's fields that differ from the default (`grid`, `where`, ...).
    pub differs_in: Vec<String>,
}

impl std::fmt::Display for SavedFitNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.command, &self.at) {
            (Some(command), Some(at)) => write!(f, "using the fit saved by `{command}` on {at}")?,
            _ => write!(f, "using the fit saved in fits/law.json by an earlier `windtunnel fit law`")?,
        }
        write!(f, " (not the default: {}); `--fresh` for the default, `windtunnel fit clear` to forget it", self.differs_in.join(", "))
    }
}

/// The default definition of a sweep's outputs: `fit law`'s, with a bootstrap for the bands.
pub fn default_law_definition(dir: &Path) -> LawDefinition {
    let mut def = LawDefinition::for_table(dir.to_path_buf());
    def.bootstrap = OUTPUTS_BOOTSTRAP;
    def
}

/// The data-model fit to draw and export, as `choice` says, and the note to show when it is a
/// saved definition other than the default.
pub fn law_definition(sweep: &SweepDir, choice: &LawChoice) -> anyhow::Result<(LawDefinition, Option<SavedFitNote>)> {
    let dir = sweep.root();
    let default = default_law_definition(dir);
    match choice {
        LawChoice::Fresh => return Ok((default, None)),
        LawChoice::Given(def) => return Ok(((**def).clone(), None)),
        LawChoice::Saved => {}
    }
    let Some((mut def, saved)) = read_saved_law(sweep)? else { return Ok((default, None)) };
    // The directory may have moved since the fit was made.
    def.input = dir.to_path_buf();
    if def.bootstrap == 0 {
        def.bootstrap = OUTPUTS_BOOTSTRAP;
    }
    let differs_in = def.differs_from(&default);
    let note = (!differs_in.is_empty()).then(|| SavedFitNote { command: saved.as_ref().map(|s| s.command.clone()), at: saved.map(|s| s.at), differs_in });
    Ok((def, note))
}

/// `fits/law.json`'s definition and who saved it, when there is one.
fn read_saved_law(sweep: &SweepDir) -> anyhow::Result<Option<(LawDefinition, Option<SavedBy>)>> {
    let saved = sweep.fit(FitKind::Law);
    if !saved.exists() {
        return Ok(None);
    }
    let value = read_json(&saved, sweep.root())?;
    let Some(def) = value.get("definition") else { return Ok(None) };
    let def: LawDefinition = serde_json::from_value(def.clone()).with_context(|| format!("{}: `definition` is malformed", saved.display()))?;
    let by = value.get("saved").and_then(|s| serde_json::from_value(s.clone()).ok());
    Ok(Some((def, by)))
}

fn read_json(path: &Path, dir: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is malformed; delete it (`windtunnel fit clear {}`) or rerun `windtunnel fit`", path.display(), dir.display()))
}

/// One fit a sweep keeps (`fit list`).
#[derive(Debug, Clone, Serialize)]
pub struct KeptFit {
    pub kind: String,
    pub path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved: Option<SavedBy>,
    /// The data-model law's definition, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// The data-model law's fields that differ from the default the outputs would use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differs_in: Vec<String>,
}

/// `fit list DIR`: the fits the sweep keeps.
#[derive(Debug, Clone, Serialize)]
pub struct KeptFits {
    pub dir: PathBuf,
    pub fits: Vec<KeptFit>,
}

const KINDS: [(FitKind, &str); 4] = [(FitKind::Law, "law"), (FitKind::Lr, "lr"), (FitKind::Batch, "batch"), (FitKind::Mixture, "mixture")];

/// The fits `sweep` keeps, with who saved them and, for the law, its definition.
pub fn list(sweep: &SweepDir) -> anyhow::Result<KeptFits> {
    anyhow::ensure!(sweep.exists(), "{} is not a sweep directory (it has no plan.json)", sweep.root().display());
    let mut fits = Vec::new();
    for (kind, name) in KINDS {
        let path = sweep.fit(kind);
        if !path.exists() {
            continue;
        }
        let value = read_json(&path, sweep.root())?;
        let saved = value.get("saved").and_then(|s| serde_json::from_value(s.clone()).ok());
        let (definition, differs_in) = if kind == FitKind::Law {
            let (def, note) = law_definition(sweep, &LawChoice::Saved)?;
            (Some(def.describe()), note.map(|n| n.differs_in).unwrap_or_default())
        } else {
            (None, Vec::new())
        };
        fits.push(KeptFit { kind: name.into(), path, saved, definition, differs_in });
    }
    Ok(KeptFits { dir: sweep.root().to_path_buf(), fits })
}

/// `fit clear DIR`: forget the fits `kinds` names (all when empty); returns the files removed.
pub fn clear(sweep: &SweepDir, kinds: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(sweep.exists(), "{} is not a sweep directory (it has no plan.json)", sweep.root().display());
    for k in kinds {
        anyhow::ensure!(KINDS.iter().any(|(_, name)| name == k), "--kind {k}: a sweep keeps the fits {}", KINDS.map(|(_, name)| name).join(", "));
    }
    let mut removed = Vec::new();
    for (kind, name) in KINDS {
        let path = sweep.fit(kind);
        if (kinds.is_empty() || kinds.iter().any(|k| k == name)) && path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

impl std::fmt::Display for KeptFits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.fits.is_empty() {
            return write!(f, "{}: no saved fits; plot, report and export fit the default definition", self.dir.display());
        }
        writeln!(f, "{}: saved fits (plot, report and export use them; `windtunnel fit clear {}` forgets them)", self.dir.display(), self.dir.display())?;
        for fit in &self.fits {
            let by = fit.saved.as_ref().map_or("saved before windtunnel recorded the command".into(), |s| format!("`{}` on {}", s.command, s.at));
            writeln!(f, "  {:<6} {}: {by}", fit.kind, fit.path.display())?;
            if let Some(d) = &fit.definition {
                writeln!(f, "         definition: {d}")?;
                match fit.differs_in.as_slice() {
                    [] => writeln!(f, "         the default definition")?,
                    fields => writeln!(f, "         not the default: {} (outputs announce it; `--fresh` ignores it)", fields.join(", "))?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        let at = |secs: u64| utc_minutes(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01 00:00 UTC");
        assert_eq!(at(951_782_400 + 3_600 * 13 + 60 * 7), "2000-02-29 13:07 UTC");
        assert_eq!(at(1_796_601_600), "2026-12-07 00:00 UTC");
    }

    #[test]
    fn command_words_are_quoted_only_when_a_shell_needs_it() {
        assert_eq!(shell_word("--input"), "--input");
        assert_eq!(shell_word("non_embedding_params < 5e4"), "'non_embedding_params < 5e4'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
