//! A sweep file loaded: read (with a size cap), parsed and validated ([`super::spec`]), and
//! planned ([`super::plan`]) once, by [`LoadedSweep::read`]. Every command that takes a sweep
//! file (`init`, `plan`, `run`, `run --dry-run`, `run --adaptive`) and every executor starts
//! from one; nothing else reads or parses a sweep file.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::plan::{self, Plan};
use super::spec::SweepSpec;
use crate::layout::SweepDir;

/// A sweep file with its text, what it says, and its plan.
#[derive(Debug, Clone)]
pub struct LoadedSweep {
    /// The file as given on the command line (messages name it so).
    pub path: PathBuf,
    /// Its text, written unchanged into the sweep directory as `sweep.toml`.
    pub text: String,
    pub spec: SweepSpec,
    /// Every run of the sweep: trunks, branches and plain runs.
    pub plan: Plan,
}

impl LoadedSweep {
    /// The largest sweep file read.
    pub const MAX_FILE_BYTES: u64 = 4 << 20;

    /// Read, parse and plan a sweep file; errors name the file, the line and the key.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("cannot read sweep file {}", path.display()))?;
        // Read at most one byte past the cap: `/dev/zero` or a wrong path to a data file is refused
        // at once instead of read without end.
        let mut bytes = Vec::new();
        file.take(Self::MAX_FILE_BYTES + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read sweep file {}", path.display()))?;
        anyhow::ensure!(
            bytes.len() as u64 <= Self::MAX_FILE_BYTES,
            "{} is over {} MiB; a sweep file is a short TOML text (is this the right path?)",
            path.display(),
            Self::MAX_FILE_BYTES >> 20
        );
        let text = String::from_utf8(bytes)
            .map_err(|e| anyhow::anyhow!("{} is not UTF-8 text (byte {}); a sweep file is TOML", path.display(), e.utf8_error().valid_up_to()))?;
        Self::parse(text, path)
    }

    /// Parse and plan the text of a sweep file at `path` (`init` checks the file it is about to
    /// write so).
    pub fn parse(text: String, path: &Path) -> anyhow::Result<Self> {
        let spec = SweepSpec::parse(&text, path)?;
        let plan = plan::plan(&spec).with_context(|| format!("planning {}", path.display()))?;
        Ok(Self { path: path.to_path_buf(), text, spec, plan })
    }

    /// The sweep's directory under the root folder `out_root` (`run --out`): `OUT/<name>`.
    pub fn dir(&self, out_root: &Path) -> SweepDir {
        SweepDir::for_sweep(out_root, &self.spec.name)
    }
}
