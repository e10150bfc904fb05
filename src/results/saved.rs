//! The fits a sweep directory keeps: `fits/law.json`, `fits/lr.json`, `fits/batch.json`, written
//! by `windtunnel fit` on a sweep directory and read back by `plot`, `report` and `export` (the
//! charts redraw the law the user fitted, with its `--holdout` or `--drop-highest`), and
//! `fits/mixture.json`, the report of `fit mixture`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::fit::report::LawDefinition;
use crate::fsutil::atomic_write;
use crate::layout::{FitKind, SweepDir};

/// Keep `report`: in `out` when given, else in the sweep directory `input` when it is one.
/// Returns where it was written.
pub fn keep<T: Serialize>(input: &Path, kind: FitKind, report: &T, out: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    let sweep = SweepDir::open(input);
    let Some(path) = out.map(Path::to_path_buf).or_else(|| sweep.exists().then(|| sweep.fit(kind))) else { return Ok(None) };
    atomic_write(&path, serde_json::to_string_pretty(report)?.as_bytes()).with_context(|| format!("cannot keep the fit in {}", path.display()))?;
    Ok(Some(path))
}

/// The data-model fit to draw: the definition `fit law` saved in `DIR/fits/law.json` (so the
/// plots show the fit the user made, e.g. with `--holdout`), else the defaults with a bootstrap.
pub fn law_definition(sweep: &SweepDir) -> anyhow::Result<LawDefinition> {
    let dir = sweep.root();
    let saved = sweep.fit(FitKind::Law);
    if saved.exists() {
        let text = std::fs::read_to_string(&saved).with_context(|| format!("cannot read {}", saved.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is malformed; delete it or rerun `windtunnel fit law --input {}`", saved.display(), dir.display()))?;
        if let Some(def) = value.get("definition") {
            let mut def: LawDefinition = serde_json::from_value(def.clone()).with_context(|| format!("{}: `definition` is malformed", saved.display()))?;
            // The directory may have moved since the fit was made.
            def.input = dir.to_path_buf();
            if def.bootstrap == 0 {
                def.bootstrap = 200;
            }
            return Ok(def);
        }
    }
    let mut def = LawDefinition::for_table(dir.to_path_buf());
    def.bootstrap = 200;
    Ok(def)
}
