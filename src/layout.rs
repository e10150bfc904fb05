//! The on-disk layout: every path of a sweep directory and of a run directory, named here once.
//!
//! ```text
//! OUT/<sweep name>/            SweepDir
//!   sweep.toml                 the sweep file as run
//!   plan.json                  the run graph (ids, kinds, configs)
//!   sweep.lock                 held by the `windtunnel run` executing the sweep
//!   cancel                     asks that `run` to stop its workers (`windtunnel cancel`)
//!   table.csv, table.parquet   one row per finished run (`collect`)
//!   fits/law.json, lr.json, batch.json
//!   plots/                     charts (`plot`)
//!   tensorboard/GRID/RUN/      TensorBoard event files (`tensorboard`)
//!   report.html                (`report`)
//!   export/config.json, configuration_minicpm.py, recipe.json
//!   slurm/wave-N.sbatch, jobs.json, logs/, cancelled
//!   workers/worker-N.log       a persistent worker's own stderr (between its runs)
//!   adaptive.json              the rounds of `run --adaptive`: runs chosen, FLOPs, the target's interval
//!   runs/<id>/                 RunDir
//!     config.json              the run file the worker trains
//!     run.json                 the run as resolved and started (N, FLOPs per token, ...)
//!     status.json              running | done | failed | diverged | interrupted | paused
//!     pause.json               stop at this many tokens (a trunk an adaptive sweep needs only so far)
//!     metrics.jsonl            one line per logged step, append-only
//!     run.lock                 held by the process training the run
//!     worker.log               the worker's stderr while it trained this run
//!     checkpoints/tokens-<D>.ckpt, periodic-tokens-<D>.ckpt
//! ```
//!
//! A branch names its trunk relative to its own directory (`../<trunk id>`), so a sweep
//! directory can be moved or copied whole.

use std::path::{Path, PathBuf};

/// A sweep directory: `OUT/<sweep name>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepDir {
    root: PathBuf,
}

/// The fits a sweep directory keeps, each in `fits/<name>.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitKind {
    Law,
    Lr,
    Batch,
    /// `fit mixture`'s report.
    Mixture,
}

impl SweepDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory of sweep `name` under the output root `out`.
    pub fn for_sweep(out: &Path, name: &str) -> Self {
        Self::new(out.join(name))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is a sweep directory (it has a plan).
    pub fn exists(&self) -> bool {
        self.plan().exists()
    }

    /// The sweep a path names: the sweep directory itself, or the one sweep directly inside it
    /// (`run --out OUT` writes OUT/<name>, so OUT names its only sweep). Otherwise the path as
    /// given, for the caller's own error.
    pub fn open(path: &Path) -> Self {
        let sweep = Self::new(path);
        if !sweep.exists() {
            if let [only] = Self::children(path).as_slice() {
                return Self::new(only);
            }
        }
        sweep
    }

    /// What to say of a `path` that is no sweep directory but holds sweeps: the one to give, or
    /// the several to choose from. `None` when it holds none.
    pub fn sweeps_inside(path: &Path) -> Option<String> {
        let inside: Vec<String> = Self::children(path).iter().map(|c| c.display().to_string()).collect();
        match inside.as_slice() {
            [] => None,
            [only] => Some(format!("{} is not a sweep directory but holds one: give {only}", path.display())),
            _ => Some(format!("{} holds several sweeps; give one of them: {}", path.display(), inside.join(", "))),
        }
    }

    /// The sweep directories directly inside `parent` (what `run --out PARENT` makes), sorted.
    pub fn children(parent: &Path) -> Vec<PathBuf> {
        // Folders (or links) only, by the entry's type: a parent holding 100,000 files costs no
        // stat per file.
        let candidate = |e: &std::fs::DirEntry| e.file_type().is_ok_and(|t| t.is_dir() || t.is_symlink());
        let mut found: Vec<PathBuf> = std::fs::read_dir(parent)
            .map(|d| d.flatten().filter(candidate).map(|e| e.path()).filter(|p| SweepDir::new(p).plan().is_file()).collect())
            .unwrap_or_default();
        found.sort();
        found
    }

    pub fn sweep_file(&self) -> PathBuf {
        self.root.join("sweep.toml")
    }

    pub fn plan(&self) -> PathBuf {
        self.root.join("plan.json")
    }

    pub fn lock(&self) -> PathBuf {
        self.root.join("sweep.lock")
    }

    /// Written by `windtunnel cancel`: the `run` executing the sweep stops its workers.
    pub fn cancel_request(&self) -> PathBuf {
        self.root.join("cancel")
    }

    pub fn table_csv(&self) -> PathBuf {
        self.root.join("table.csv")
    }

    pub fn table_parquet(&self) -> PathBuf {
        self.root.join("table.parquet")
    }

    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn run(&self, id: &str) -> RunDir {
        RunDir::new(self.runs().join(id))
    }

    pub fn fit(&self, kind: FitKind) -> PathBuf {
        let name = match kind {
            FitKind::Law => "law.json",
            FitKind::Lr => "lr.json",
            FitKind::Batch => "batch.json",
            FitKind::Mixture => "mixture.json",
        };
        self.root.join("fits").join(name)
    }

    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }

    /// `windtunnel tensorboard`'s event files, a folder per run.
    pub fn tensorboard(&self) -> PathBuf {
        self.root.join("tensorboard")
    }

    pub fn report(&self) -> PathBuf {
        self.root.join("report.html")
    }

    pub fn export(&self) -> PathBuf {
        self.root.join("export")
    }

    pub fn slurm(&self) -> PathBuf {
        self.root.join("slurm")
    }

    pub fn slurm_jobs(&self) -> PathBuf {
        self.slurm().join("jobs.json")
    }

    pub fn slurm_logs(&self) -> PathBuf {
        self.slurm().join("logs")
    }

    pub fn slurm_cancelled(&self) -> PathBuf {
        self.slurm().join("cancelled")
    }

    /// The rounds of an adaptive sweep (`run --adaptive`).
    pub fn adaptive(&self) -> PathBuf {
        self.root.join("adaptive.json")
    }

    /// The stderr of persistent worker `n` outside its runs (each run's own lines go to the
    /// run's `worker.log`).
    pub fn worker_log(&self, n: usize) -> PathBuf {
        self.root.join("workers").join(format!("worker-{n}.log"))
    }
}

/// A run directory: `runs/<id>/` in a sweep, or any `train --out DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// `run.json`: the run as resolved and started.
    pub fn record(&self) -> PathBuf {
        self.root.join("run.json")
    }

    pub fn status(&self) -> PathBuf {
        self.root.join("status.json")
    }

    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    pub fn lock(&self) -> PathBuf {
        self.root.join("run.lock")
    }

    /// `pause.json`: `{"tokens": T}` stops the run once it has trained T tokens (status `paused`,
    /// exit 0); training it again without the file, or with a later T, continues it from there.
    pub fn pause(&self) -> PathBuf {
        self.root.join("pause.json")
    }

    pub fn worker_log(&self) -> PathBuf {
        self.root.join("worker.log")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The kept checkpoint at `tokens` (a branch point, or the end of the run).
    pub fn checkpoint(&self, tokens: u64) -> PathBuf {
        self.checkpoints().join(checkpoint_name(tokens))
    }

    /// How a branch's config names its trunk: relative to the branch's own directory.
    pub fn trunk_reference(trunk_id: &str) -> PathBuf {
        Path::new("..").join(trunk_id)
    }
}

/// The files `export` writes into its folder: the Hugging Face `config.json`, the configuration
/// class its `auto_map` names, and `recipe.json`.
pub fn export_files(out: &Path) -> [PathBuf; 3] {
    [out.join("config.json"), out.join("configuration_minicpm.py"), out.join("recipe.json")]
}

/// The file name of the kept checkpoint at `tokens` (zero-padded, so names sort by tokens).
pub fn checkpoint_name(tokens: u64) -> String {
    format!("tokens-{tokens:015}.ckpt")
}
