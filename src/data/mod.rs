//! Where tokens come from: the built-in synthetic language ([`synthetic`]), text and token files
//! ([`files`]), and weighted mixtures of those; [`tools`] holds `windtunnel data synth` and
//! `data inspect`. Relative paths in a spec resolve against the folder of the file that names
//! them (a sweep's are made absolute when it is planned: [`DataSpec::resolve_paths`]).
//!
//! Every source is split into a training stream and a held-out evaluation split that training
//! never touches (synthetic: independent sequences drawn under another tag; files: a fixed tail,
//! or a second file). Sequence `i` of a split is a pure function of (source, data seed, split, i),
//! and the training batch at global step `s` is sequences `s·batch .. (s+1)·batch`: a resumed run,
//! and every decay branch from the same trunk checkpoint, sees exactly the data an uninterrupted
//! run would have.
//!
//! A data spec, as written in a run file:
//!
//! ```toml
//! [data]
//! kind = "synthetic"          # or "text", "tokens", "mixture"
//! vocab = 256                 # ...the synthetic language's parameters
//!
//! # kind = "tokens", path = "train.bin", dtype = "u16", vocab = 50257, eval_path = "val.bin"
//! # kind = "prepared", path = "data/web"       # a `data prepare` output: train.bin + val.bin
//! # kind = "prepared", path = "data/corpus", domain = "books"   # one made with --domain books
//! # kind = "mixture", components = [ { weight = 0.9, source = { kind = "text", path = "web.txt" } },
//! #                                  { weight = 0.1, source = { kind = "text", path = "books.txt" } } ]
//! ```

pub mod corpus;
pub mod files;
pub mod prepare;
pub mod synthetic;
pub mod tokenizer;
pub mod tools;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use files::{PreparedSplit, TokenDtype, TokenFile};
use synthetic::{SyntheticConfig, SyntheticLanguage};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DataError {
    #[error("data file {path} does not exist")]
    Missing { path: PathBuf },
    #[error("data file {path} is empty")]
    Empty { path: PathBuf },
    #[error("data file {path} has {bytes} bytes, not a whole number of {dtype} tokens ({} bytes each); is `dtype` right?", dtype.bytes())]
    OddLength { path: PathBuf, bytes: u64, dtype: TokenDtype },
    #[error("data file {path}: token {token} at index {index} (byte offset {byte_offset}) is not below the vocabulary size {vocab}")]
    TokenOutOfRange { path: PathBuf, index: u64, byte_offset: u64, token: u32, vocab: usize },
    #[error("data file {path}: `vocab` must be at least 1")]
    VocabZero { path: PathBuf },
    #[error("data file {path}: no vocabulary size; give it (`vocab` in a run's [data] section, `--vocab` on the command line) or write a sidecar {path}.json with {{\"vocab\": N, \"dtype\": \"u16\"}}")]
    NoVocab { path: PathBuf },
    #[error("sidecar {path} is malformed: {message}")]
    Sidecar { path: PathBuf, message: String },
    #[error("data file {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("data file {path} holds {tokens} tokens for the {split} split, fewer than one sequence of {needed}; use a longer file or a shorter `seq_len`")]
    TooShort { path: PathBuf, split: Split, tokens: u64, needed: usize },
    #[error("[data] {message}")]
    Config { message: String },
}

/// Train or held-out evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Eval,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Train => "train",
            Self::Eval => "eval",
        })
    }
}

/// A data source, as a run file names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DataSpec {
    /// The built-in synthetic language (the default).
    Synthetic(SyntheticConfig),
    /// A text file read as bytes (vocab 256; losses also reported in bits per byte).
    Text(TextSpec),
    /// A file of u16/u32 little-endian tokens.
    Tokens(TokensSpec),
    /// A set made by `windtunnel data prepare`: its `train.bin`, held out by its `val.bin`.
    Prepared(PreparedSpec),
    /// A weighted mixture of the above.
    Mixture(MixtureSpec),
}

impl DataSpec {
    /// The synthetic language's settings, wherever the spec uses it (a mixture's components too):
    /// checked when a run file is validated, so `plan` refuses what `train` would.
    pub fn check_synthetic(&self) -> Result<(), String> {
        match self {
            Self::Synthetic(config) => config.validate(),
            Self::Mixture(m) => m.components.iter().try_for_each(|c| c.source.check_synthetic()),
            _ => Ok(()),
        }
    }

    /// The files the spec reads ("synthetic" for the built-in language), for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Synthetic(_) => "the synthetic language".to_string(),
            Self::Text(TextSpec { path, eval_path, .. }) | Self::Tokens(TokensSpec { path, eval_path, .. }) => {
                let eval = eval_path.as_ref().map(|e| format!(" (held-out: {})", e.display())).unwrap_or_default();
                format!("{}{eval}", path.display())
            }
            Self::Prepared(p) => format!("the prepared set {}", p.folder().display()),
            Self::Mixture(m) => m.components.iter().map(|c| c.source.describe()).collect::<Vec<_>>().join(", "),
        }
    }

    /// Make every relative file path absolute against `base_dir` (the folder of the file that
    /// named it), so the spec reads the same files from wherever a run starts.
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base_dir.join(&*p);
            }
        };
        match self {
            Self::Synthetic(_) => {}
            Self::Text(t) => {
                resolve(&mut t.path);
                t.eval_path.as_mut().map(resolve);
            }
            Self::Tokens(t) => {
                resolve(&mut t.path);
                t.eval_path.as_mut().map(resolve);
            }
            Self::Prepared(p) => resolve(&mut p.path),
            Self::Mixture(m) => m.components.iter_mut().for_each(|c| c.source.resolve_paths(base_dir)),
        }
    }
}

impl Default for DataSpec {
    fn default() -> Self {
        Self::Synthetic(SyntheticConfig::default())
    }
}

fn default_eval_fraction() -> f64 {
    0.01
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    /// The text file (relative paths: to the sweep or run file's folder).
    pub path: PathBuf,
    /// A separate evaluation file; without it the last `eval_fraction` of `path` is held out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_path: Option<PathBuf>,
    /// The fraction of `path` held out at its end for evaluation, without `eval_path`.
    #[serde(default = "default_eval_fraction")]
    pub eval_fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokensSpec {
    /// The token file (little-endian; relative paths: to the sweep or run file's folder).
    pub path: PathBuf,
    /// u16 or u32 [default: the sidecar's, else the narrowest that holds `vocab`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<TokenDtype>,
    /// [default: the sidecar's].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<usize>,
    /// A separate evaluation file; without it the last `eval_fraction` of `path` is held out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_path: Option<PathBuf>,
    /// The fraction of `path` held out at its end for evaluation, without `eval_path`.
    #[serde(default = "default_eval_fraction")]
    pub eval_fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreparedSpec {
    /// The folder `data prepare --out` wrote.
    pub path: PathBuf,
    /// The `--domain` it was prepared under (a subfolder of `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

impl PreparedSpec {
    /// The folder holding `train.bin` and `val.bin`.
    pub fn folder(&self) -> PathBuf {
        match &self.domain {
            Some(d) => self.path.join(d),
            None => self.path.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixtureSpec {
    /// The sources and their weights: each sequence comes whole from one, drawn by weight.
    pub components: Vec<MixtureComponent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixtureComponent {
    /// Relative weight (normalised over the components).
    pub weight: f64,
    /// A source (any kind but a mixture).
    pub source: DataSpec,
}

/// What every source can do.
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    fn vocab(&self) -> usize;
    /// Write sequence `index` of `split` (`len` tokens) into `out` (cleared first).
    fn sequence(&self, split: Split, index: u64, len: usize, out: &mut Vec<u32>) -> Result<(), DataError>;
    /// Exact −log p(x_t | x_<t) in nats of every token of `sequence` after the first, when the
    /// source knows its own probabilities (the synthetic language does).
    fn oracle_nll(&self, _sequence: &[u32]) -> Option<Vec<f64>> {
        None
    }
    /// Bytes of text per token, when known (text: 1), for bits per byte.
    fn bytes_per_token(&self) -> Option<f64> {
        None
    }
    /// How many distinct evaluation sequences of `len` tokens exist (None: unlimited).
    fn eval_sequences(&self, _len: usize) -> Option<u64> {
        None
    }
    /// How many tokens the training split holds (None: unlimited, as the synthetic language).
    fn train_tokens(&self) -> Option<u64> {
        None
    }
    /// What identifies the files the source reads ([`TokenFile::fingerprint`] of each); `None`
    /// for the synthetic language, which its config defines whole.
    fn fingerprint(&self) -> Option<String> {
        None
    }
}

/// Open a data spec with the run's data seed. Relative paths resolve against `base_dir`.
pub fn open(spec: &DataSpec, seed: u64, base_dir: &Path) -> Result<Box<dyn TokenSource>, DataError> {
    Ok(match spec {
        DataSpec::Synthetic(config) => {
            let language = SyntheticLanguage::new(config.clone()).map_err(|message| DataError::Config { message })?;
            Box::new(SyntheticSource { language, seed })
        }
        DataSpec::Text(t) => {
            let train = TokenFile::open_text(&base_dir.join(&t.path))?;
            let eval = t.eval_path.as_ref().map(|p| TokenFile::open_text(&base_dir.join(p))).transpose()?;
            Box::new(FileSource::new(train, eval, t.eval_fraction, seed)?)
        }
        DataSpec::Tokens(t) => {
            let train = TokenFile::open_tokens(&base_dir.join(&t.path), t.dtype, t.vocab)?;
            let eval = t.eval_path.as_ref().map(|p| TokenFile::open_tokens(&base_dir.join(p), t.dtype, Some(train.vocab()))).transpose()?;
            Box::new(FileSource::new(train, eval, t.eval_fraction, seed)?)
        }
        DataSpec::Prepared(p) => {
            let folder = base_dir.join(p.folder());
            if !folder.join(PreparedSplit::Train.file_name()).exists() && folder.is_dir() && p.domain.is_none() {
                let domains: Vec<String> = std::fs::read_dir(&folder)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .filter(|e| e.path().join(PreparedSplit::Train.file_name()).exists())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                if !domains.is_empty() {
                    return Err(DataError::Config {
                        message: format!("{} holds the prepared domains {}; name one with `domain`", folder.display(), domains.join(", ")),
                    });
                }
            }
            let train = TokenFile::open_tokens(&folder.join(PreparedSplit::Train.file_name()), None, None)?;
            let eval = TokenFile::open_tokens(&folder.join(PreparedSplit::Val.file_name()), None, Some(train.vocab()))?;
            Box::new(FileSource::new(train, Some(eval), 0.0, seed)?)
        }
        DataSpec::Mixture(m) => Box::new(Mixture::new(m, seed, base_dir)?),
    })
}

const TRAIN_TAG: u64 = 0x7A11;
const EVAL_TAG: u64 = 0xE7A1;

fn split_tag(split: Split) -> u64 {
    match split {
        Split::Train => TRAIN_TAG,
        Split::Eval => EVAL_TAG,
    }
}

/// The synthetic language as a source: every sequence is an independent document.
#[derive(Debug)]
pub struct SyntheticSource {
    pub language: SyntheticLanguage,
    pub seed: u64,
}

impl TokenSource for SyntheticSource {
    fn vocab(&self) -> usize {
        self.language.vocab()
    }
    fn sequence(&self, split: Split, index: u64, len: usize, out: &mut Vec<u32>) -> Result<(), DataError> {
        let mut rng = Rng::derive(self.seed, &[split_tag(split), index]);
        self.language.generate(&mut rng, len, out);
        Ok(())
    }
    fn oracle_nll(&self, sequence: &[u32]) -> Option<Vec<f64>> {
        Some(self.language.nll(sequence, 1))
    }
}

/// A training file and its held-out part (a tail of the same file, or a second file).
#[derive(Debug)]
pub struct FileSource {
    train: TokenFile,
    train_tokens: u64,
    eval: Option<TokenFile>,
    eval_start: u64,
    eval_tokens: u64,
    seed: u64,
    bytes_per_token: Option<f64>,
}

impl FileSource {
    /// Bits per byte use the held-out file's bytes per token (the eval loss is measured on it).
    fn new(train: TokenFile, eval: Option<TokenFile>, eval_fraction: f64, seed: u64) -> Result<Self, DataError> {
        let bytes_per_token = eval.as_ref().unwrap_or(&train).bytes_per_token();
        if let Some(e) = &eval {
            if e.vocab() != train.vocab() {
                return Err(DataError::Config {
                    message: format!("eval file {} has vocab {}, train file {} has {}", e.path().display(), e.vocab(), train.path().display(), train.vocab()),
                });
            }
            let (train_tokens, eval_tokens) = (train.len(), e.len());
            return Ok(Self { train, train_tokens, eval, eval_start: 0, eval_tokens, seed, bytes_per_token });
        }
        if !(eval_fraction > 0.0 && eval_fraction < 1.0) {
            return Err(DataError::Config { message: format!("`eval_fraction` must be in (0, 1) when there is no `eval_path` (got {eval_fraction})") });
        }
        let eval_tokens = ((train.len() as f64 * eval_fraction).ceil() as u64).max(1);
        let train_tokens = train.len() - eval_tokens;
        Ok(Self { eval_start: train_tokens, train_tokens, eval_tokens, train, eval: None, seed, bytes_per_token })
    }

    fn eval_file(&self) -> &TokenFile {
        self.eval.as_ref().unwrap_or(&self.train)
    }
}

impl TokenSource for FileSource {
    fn vocab(&self) -> usize {
        self.train.vocab()
    }

    fn sequence(&self, split: Split, index: u64, len: usize, out: &mut Vec<u32>) -> Result<(), DataError> {
        out.clear();
        match split {
            Split::Train => {
                if self.train_tokens < len as u64 {
                    return Err(DataError::TooShort { path: self.train.path().into(), split, tokens: self.train_tokens, needed: len });
                }
                // A window starting anywhere in the training part, chosen by (seed, index).
                let start = Rng::derive(self.seed, &[TRAIN_TAG, index]).below(self.train_tokens - len as u64 + 1);
                self.train.read(start, len, out)
            }
            Split::Eval => {
                // Consecutive windows of the held-out part, in order, cycling if asked for more.
                let windows = self.eval_tokens / len as u64;
                if windows == 0 {
                    return Err(DataError::TooShort { path: self.eval_file().path().into(), split, tokens: self.eval_tokens, needed: len });
                }
                self.eval_file().read(self.eval_start + (index % windows) * len as u64, len, out)
            }
        }
    }

    fn bytes_per_token(&self) -> Option<f64> {
        self.bytes_per_token
    }

    fn eval_sequences(&self, len: usize) -> Option<u64> {
        Some(self.eval_tokens / len as u64)
    }

    fn train_tokens(&self) -> Option<u64> {
        Some(self.train_tokens)
    }

    fn fingerprint(&self) -> Option<String> {
        let eval = self.eval.as_ref().map(|e| format!(" + {}", e.fingerprint())).unwrap_or_default();
        Some(format!("{}{eval}", self.train.fingerprint()))
    }
}

/// A weighted mixture: each sequence comes whole from one component, chosen by (seed, split, index).
#[derive(Debug)]
pub struct Mixture {
    components: Vec<Box<dyn TokenSource>>,
    /// Cumulative normalised weights.
    cumulative: Vec<f64>,
    seed: u64,
}

impl Mixture {
    fn new(spec: &MixtureSpec, seed: u64, base_dir: &Path) -> Result<Self, DataError> {
        let config = |message: String| DataError::Config { message };
        if spec.components.is_empty() {
            return Err(config("a mixture needs at least one entry in `components`".into()));
        }
        let total: f64 = spec.components.iter().map(|c| c.weight).sum();
        if spec.components.iter().any(|c| !(c.weight.is_finite() && c.weight >= 0.0)) || total <= 0.0 {
            return Err(config("mixture `weight`s must be non-negative with a positive sum".into()));
        }
        let mut components = Vec::new();
        let mut cumulative = Vec::new();
        let mut acc = 0.0;
        for (i, c) in spec.components.iter().enumerate() {
            if matches!(c.source, DataSpec::Mixture(_)) {
                return Err(config(format!("mixture component {i} is itself a mixture; list its parts directly")));
            }
            components.push(open(&c.source, crate::rng::mix_seed(&[seed, i as u64]), base_dir)?);
            acc += c.weight / total;
            cumulative.push(acc);
        }
        let vocab = components[0].vocab();
        if let Some(i) = components.iter().position(|c| c.vocab() != vocab) {
            return Err(config(format!("mixture components must share one vocabulary: component 0 has {vocab}, component {i} has {}", components[i].vocab())));
        }
        Ok(Self { components, cumulative, seed })
    }

    fn pick(&self, split: Split, index: u64) -> usize {
        let u = Rng::derive(self.seed, &[0x313C, split_tag(split), index]).next_f64();
        self.cumulative.partition_point(|&c| c <= u).min(self.components.len() - 1)
    }
}

impl TokenSource for Mixture {
    fn vocab(&self) -> usize {
        self.components[0].vocab()
    }
    fn sequence(&self, split: Split, index: u64, len: usize, out: &mut Vec<u32>) -> Result<(), DataError> {
        self.components[self.pick(split, index)].sequence(split, index, len, out)
    }
    fn bytes_per_token(&self) -> Option<f64> {
        let first = self.components[0].bytes_per_token()?;
        self.components.iter().all(|c| c.bytes_per_token() == Some(first)).then_some(first)
    }
    fn fingerprint(&self) -> Option<String> {
        let parts: Vec<String> = self.components.iter().map(|c| c.fingerprint().unwrap_or_else(|| "synthetic".into())).collect();
        parts.iter().any(|p| p != "synthetic").then(|| format!("[{}]", parts.join(", ")))
    }
}

/// A batch of `batch_size` rows of `seq_len + 1` tokens: inputs are `row[..seq_len]`, targets
/// `row[1..]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub batch_size: usize,
    pub seq_len: usize,
    pub tokens: Vec<u32>,
}

/// The training batch at global step `step`: a pure function of (source, seed, step, shape).
pub fn train_batch(source: &dyn TokenSource, step: u64, batch_size: usize, seq_len: usize) -> Result<Batch, DataError> {
    rows(source, Split::Train, step * batch_size as u64, batch_size, seq_len)
}

/// Held-out sequences `first .. first + rows` as a batch.
pub fn eval_batch(source: &dyn TokenSource, first: u64, rows: usize, seq_len: usize) -> Result<Batch, DataError> {
    self::rows(source, Split::Eval, first, rows, seq_len)
}

fn rows(source: &dyn TokenSource, split: Split, first: u64, batch_size: usize, seq_len: usize) -> Result<Batch, DataError> {
    let mut tokens = Vec::with_capacity(batch_size * (seq_len + 1));
    let mut row = Vec::with_capacity(seq_len + 1);
    for b in 0..batch_size as u64 {
        source.sequence(split, first + b, seq_len + 1, &mut row)?;
        tokens.extend_from_slice(&row);
    }
    Ok(Batch { batch_size, seq_len, tokens })
}

/// The exact oracle loss (mean nats per target token) of the first `sequences` evaluation
/// sequences, when the source knows it.
pub fn oracle_eval_loss(source: &dyn TokenSource, sequences: u64, seq_len: usize) -> Result<Option<f64>, DataError> {
    let mut total = 0.0;
    let mut count = 0usize;
    let mut row = Vec::new();
    for i in 0..sequences {
        source.sequence(Split::Eval, i, seq_len + 1, &mut row)?;
        match source.oracle_nll(&row) {
            Some(nll) => {
                count += nll.len();
                total += nll.iter().sum::<f64>();
            }
            None => return Ok(None),
        }
    }
    Ok((count > 0).then(|| total / count as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic() -> Box<dyn TokenSource> {
        open(&DataSpec::default(), 42, Path::new(".")).unwrap()
    }

    #[test]
    fn batch_at_step_s_does_not_depend_on_earlier_steps() {
        let s = synthetic();
        let direct = train_batch(&*s, 7, 4, 32).unwrap();
        for step in 0..7 {
            train_batch(&*s, step, 4, 32).unwrap();
        }
        assert_eq!(train_batch(&*s, 7, 4, 32).unwrap(), direct);
        assert_ne!(train_batch(&*s, 8, 4, 32).unwrap(), direct);
        let other_seed = open(&DataSpec::default(), 43, Path::new(".")).unwrap();
        assert_ne!(train_batch(&*other_seed, 7, 4, 32).unwrap(), direct);
    }

    #[test]
    fn eval_split_is_disjoint_from_training() {
        let s = synthetic();
        let train: Vec<Vec<u32>> = (0..50).map(|i| train_batch(&*s, i, 2, 16).unwrap().tokens).collect();
        let eval = eval_batch(&*s, 0, 2, 16).unwrap().tokens;
        assert!(train.iter().all(|t| *t != eval));
        let oracle = oracle_eval_loss(&*s, 8, 64).unwrap().unwrap();
        assert!(oracle > 0.5 && oracle < 5.0, "oracle {oracle}");
    }

    fn text_file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn text_files_hold_out_their_tail_and_report_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let body: String = (0..2000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        text_file(dir.path(), "t.txt", &body);
        let spec: DataSpec = toml::from_str("kind = \"text\"\npath = \"t.txt\"\neval_fraction = 0.1").unwrap();
        let s = open(&spec, 1, dir.path()).unwrap();
        assert_eq!(s.vocab(), 256);
        assert_eq!(s.bytes_per_token(), Some(1.0));
        // Training windows never reach the held-out last 200 bytes.
        for i in 0..200 {
            let mut row = Vec::new();
            s.sequence(Split::Train, i, 17, &mut row).unwrap();
            let text: String = row.iter().map(|&b| b as u8 as char).collect();
            let at = body[..1800].find(&text).expect("window inside the training part");
            assert!(at + 17 <= 1800);
        }
        let eval = eval_batch(&*s, 0, 1, 16).unwrap().tokens;
        assert_eq!(eval, body.as_bytes()[1800..1817].iter().map(|&b| b as u32).collect::<Vec<_>>());
    }

    #[test]
    fn mixtures_follow_their_weights_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        text_file(dir.path(), "a.txt", &"a".repeat(1000));
        text_file(dir.path(), "b.txt", &"b".repeat(1000));
        let spec: DataSpec = toml::from_str(
            r#"kind = "mixture"
               components = [ { weight = 9, source = { kind = "text", path = "a.txt" } },
                              { weight = 1, source = { kind = "text", path = "b.txt" } } ]"#,
        )
        .unwrap();
        let s = open(&spec, 5, dir.path()).unwrap();
        let batch = train_batch(&*s, 0, 2000, 7).unwrap();
        let from_b = batch.tokens.chunks(8).filter(|r| r[0] == b'b' as u32).count();
        assert!((150..250).contains(&from_b), "{from_b} of 2000 rows from the 10% component");
        assert_eq!(train_batch(&*open(&spec, 5, dir.path()).unwrap(), 0, 2000, 7).unwrap(), batch);
        assert!(s.bytes_per_token() == Some(1.0));
    }

    #[test]
    fn specs_refuse_unknown_keys_and_bad_values() {
        let e = toml::from_str::<DataSpec>("kind = \"text\"\npath = \"x\"\nevalfraction = 0.1").unwrap_err().to_string();
        assert!(e.contains("evalfraction"), "{e}");
        let e = toml::from_str::<DataSpec>("kind = \"synthetic\"\nvocabulary = 3").unwrap_err().to_string();
        assert!(e.contains("vocabulary"), "{e}");
        let e = open(&toml::from_str("kind = \"synthetic\"\nvocab = 0").unwrap(), 0, Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("`vocab`"), "{e}");
        let e = open(&toml::from_str("kind = \"mixture\"\ncomponents = []").unwrap(), 0, Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("components"), "{e}");
        let e = open(&toml::from_str("kind = \"text\"\npath = \"/nonexistent/x.txt\"").unwrap(), 0, Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x.txt") && e.contains("does not exist"), "{e}");
    }
}
