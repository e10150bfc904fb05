//! `windtunnel data prepare`: a corpus in, a prepared set out — `train.bin` and `val.bin` (the
//! little-endian u16/u32 token files the trainer memory-maps) with their sidecars, which record
//! the vocabulary, the tokenizer's SHA-256, document, token and text-byte counts, **bytes per
//! token** (so losses convert to bits per byte) and the source files.
//!
//! - Documents are read in a fixed order ([`corpus`]), tokenized in parallel a chunk at a time
//!   (memory is bounded by the chunk, whatever the corpus size), and each is followed by the
//!   end-of-document token.
//! - Document `i` goes to the validation split when a hash of (seed, i) falls below
//!   `eval_fraction`: whole documents, the same split for the same seed, whatever the chunking.
//! - Work in progress lives in `OUT/.prepare/`: the partial token files and `state.json`, written
//!   atomically after each chunk is appended and synced. A prepare that is killed resumes from
//!   the last committed chunk (the partial files are cut back to the committed length), so the
//!   result is byte-identical to an uninterrupted run. Input files committed whole are skipped
//!   unread; the file it stopped in is parsed again up to the last committed document. The
//!   finished files are renamed into `OUT` only when complete; one process at a time holds
//!   `OUT/.prepare.lock`.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::corpus::{self, CorpusFile, ReadOptions};
use super::files::{read_sidecar, sidecar_path, PreparedInfo, PreparedSplit, Sidecar, SplitCounts, TokenDtype};
use super::tokenizer::{self, LoadedTokenizer};
use crate::format::{si, thousands};
use crate::fsutil::{atomic_write, FileLock};

/// Text read before a chunk is tokenized and committed.
pub const DEFAULT_CHUNK_BYTES: usize = 16 << 20;

/// What to prepare and how.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub inputs: Vec<String>,
    pub read: ReadOptions,
    pub tokenizer: PathBuf,
    /// The output folder (with `domain`, its `domain` subfolder holds the set).
    pub out: PathBuf,
    pub domain: Option<String>,
    /// End-of-document token [default: the first of [`tokenizer::KNOWN_EOD_TOKENS`] it has].
    pub eod_token: Option<String>,
    pub no_eod: bool,
    pub dtype: Option<TokenDtype>,
    pub eval_fraction: f64,
    pub seed: u64,
    /// Replace a finished set made from other inputs, or an interrupted one with other options.
    pub force: bool,
    pub chunk_bytes: usize,
    pub quiet: bool,
}

/// `OUT/.prepare/state.json`: what the partial files hold, committed after every chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    fingerprint: String,
    /// Documents read from the inputs (both splits, empty ones skipped not counted).
    documents_read: u64,
    train: SplitCounts,
    val: SplitCounts,
    /// Documents of each input file read to its end, in input order: a resumed prepare skips
    /// these files unread and parses only the one it stopped in.
    #[serde(default)]
    file_documents: Vec<u64>,
}

impl State {
    /// Nothing prepared yet.
    fn fresh(fingerprint: &str) -> Self {
        Self { fingerprint: fingerprint.into(), documents_read: 0, train: SplitCounts::default(), val: SplitCounts::default(), file_documents: Vec::new() }
    }

    fn counts(&self, split: PreparedSplit) -> SplitCounts {
        match split {
            PreparedSplit::Train => self.train,
            PreparedSplit::Val => self.val,
        }
    }

    fn counts_mut(&mut self, split: PreparedSplit) -> &mut SplitCounts {
        match split {
            PreparedSplit::Train => &mut self.train,
            PreparedSplit::Val => &mut self.val,
        }
    }

    /// How many leading input files are committed whole, and their documents.
    fn files_committed(&self) -> (usize, u64) {
        let mut documents = 0u64;
        for (files, &n) in self.file_documents.iter().enumerate() {
            match documents.checked_add(n) {
                Some(total) if total <= self.documents_read => documents = total,
                _ => return (files, documents),
            }
        }
        (self.file_documents.len(), documents)
    }

    /// Text bytes and tokens over both splits.
    fn totals(&self) -> (u64, u64) {
        (self.train.text_bytes + self.val.text_bytes, self.train.tokens + self.val.tokens)
    }
}

/// What a prepare did, for the terminal and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct PrepareReport {
    pub out: PathBuf,
    pub vocab: usize,
    pub dtype: TokenDtype,
    pub tokenizer_sha256: String,
    pub train: SplitCounts,
    pub val: SplitCounts,
    pub train_bytes_per_token: Option<f64>,
    pub val_bytes_per_token: Option<f64>,
    /// Documents a previous, interrupted prepare had already committed.
    pub resumed_after_documents: u64,
    /// Nothing to do: `out` already held this very set.
    pub up_to_date: bool,
    pub seconds: f64,
    pub text_mb_per_s: f64,
    pub tokens_per_s: f64,
}

/// Whether document `index` belongs to the validation split.
pub fn is_validation(seed: u64, index: u64, eval_fraction: f64) -> bool {
    let u = (crate::rng::mix_seed(&[seed, 0x5A11_7E57, index]) >> 11) as f64 / (1u64 << 53) as f64;
    u < eval_fraction
}

struct Job {
    options: PrepareOptions,
    files: Vec<CorpusFile>,
    tokenizer: LoadedTokenizer,
    eod: Option<(String, u32)>,
    dtype: TokenDtype,
    out: PathBuf,
    work: PathBuf,
    fingerprint: String,
}

pub fn prepare(options: &PrepareOptions) -> anyhow::Result<PrepareReport> {
    let started = Instant::now();
    let job = Job::new(options)?;
    std::fs::create_dir_all(&job.out).with_context(|| format!("cannot create {}", job.out.display()))?;
    let _lock = FileLock::try_acquire(&job.out.join(".prepare.lock"))?
        .map_err(|holder| anyhow::anyhow!("another `data prepare` ({holder}) is writing {}; wait for it or stop it", job.out.display()))?;
    if let Some(report) = job.already_done()? {
        return Ok(report);
    }
    let mut state = job.start_or_resume()?;
    let (resumed_after, (text_before, tokens_before)) = (state.documents_read, state.totals());
    if resumed_after > 0 && !options.quiet {
        let files = state.files_committed().0;
        crate::stderr_line!(
            "resuming {}: {} documents already prepared ({files} of {} input files skipped unread)",
            job.out.display(),
            resumed_after,
            job.files.len()
        );
    }
    job.tokenize_all(&mut state)?;
    job.finish(&state)?;
    // Rates of this invocation: what an interrupted one committed is not counted again.
    let seconds = started.elapsed().as_secs_f64();
    let (text, tokens) = state.totals();
    Ok(PrepareReport {
        resumed_after_documents: resumed_after,
        seconds,
        text_mb_per_s: (text - text_before) as f64 / 1e6 / seconds.max(1e-9),
        tokens_per_s: (tokens - tokens_before) as f64 / seconds.max(1e-9),
        ..job.report(&state)
    })
}

impl Job {
    fn new(options: &PrepareOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (0.0..1.0).contains(&options.eval_fraction),
            "--eval-fraction {} must be at least 0 and below 1 (0.01 holds out 1% of documents)",
            options.eval_fraction
        );
        if options.eval_fraction == 0.0 {
            // Deliberate (every token in train.bin, e.g. to compare with another tokenizer run),
            // but never silent: a run on this set alone has nothing to evaluate on.
            crate::stderr_line!(
                "warning: --eval-fraction 0 holds nothing out: val.bin is empty, and a run on this set has no held-out loss; \
                 give 0.01 (1% of documents) unless you evaluate elsewhere"
            );
        }
        anyhow::ensure!(options.chunk_bytes > 0, "--chunk-bytes must be at least 1");
        if let Some(domain) = &options.domain {
            let plain = !domain.is_empty() && domain.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !domain.starts_with('.');
            anyhow::ensure!(plain, "--domain {domain:?} must be a plain name (letters, digits, - _ .), it names a folder");
        }
        let files = corpus::list_files(&options.inputs, &options.read)?;
        let tokenizer = tokenizer::load(&options.tokenizer)?;
        let eod = if options.no_eod { None } else { Some(tokenizer.eod(options.eod_token.as_deref())?) };
        let fits = TokenDtype::for_vocab(tokenizer.vocab);
        let dtype = match options.dtype {
            Some(TokenDtype::U16) if fits == TokenDtype::U32 => bail!(
                "--dtype u16 cannot hold {}'s vocabulary of {} tokens (u16 holds ids below 65536); use --dtype u32 or leave --dtype out",
                options.tokenizer.display(),
                tokenizer.vocab
            ),
            Some(TokenDtype::U8) => bail!("--dtype u8 is for text bytes; prepared tokens are u16 or u32"),
            Some(d) => d,
            None => fits,
        };
        let out = match &options.domain {
            Some(d) => options.out.join(d),
            None => options.out.clone(),
        };
        let fingerprint = fingerprint(options, &files, &tokenizer.sha256, &eod, dtype)?;
        Ok(Self { work: out.join(".prepare"), out, options: options.clone(), files, tokenizer, eod, dtype, fingerprint })
    }

    fn partial(&self, split: PreparedSplit) -> PathBuf {
        self.work.join(split.file_name())
    }

    /// `Some` when `out` already holds this set; an error when it holds another (unless --force).
    fn already_done(&self) -> anyhow::Result<Option<PrepareReport>> {
        if self.work.join("state.json").exists() {
            return Ok(None);
        }
        let train = self.out.join(PreparedSplit::Train.file_name());
        let Some(sidecar) = read_sidecar(&train)? else { return Ok(None) };
        let made_from = sidecar.prepared.as_ref();
        if made_from.is_some_and(|p| p.fingerprint == self.fingerprint) && self.out.join(PreparedSplit::Val.file_name()).exists() {
            let val = read_sidecar(&self.out.join(PreparedSplit::Val.file_name()))?.and_then(|s| s.prepared);
            let count = |p: Option<&PreparedInfo>| p.map(|p| p.counts).unwrap_or_default();
            let state = State { train: count(made_from), val: count(val.as_ref()), ..State::fresh(&self.fingerprint) };
            return Ok(Some(PrepareReport { up_to_date: true, ..self.report(&state) }));
        }
        if self.options.force {
            return Ok(None);
        }
        bail!(
            "{} already holds a prepared set made from other inputs or options; choose another --out (or --domain), or pass --force to replace it once the new one is complete",
            self.out.display()
        )
    }

    fn start_or_resume(&self) -> anyhow::Result<State> {
        let state_path = self.work.join("state.json");
        let fresh = State::fresh(&self.fingerprint);
        let state = match std::fs::read_to_string(&state_path) {
            Ok(text) => {
                let state: State = serde_json::from_str(&text)
                    .with_context(|| format!("{} is malformed; delete {} to start over", state_path.display(), self.work.display()))?;
                if state.fingerprint == self.fingerprint {
                    state
                } else if self.options.force || state.documents_read == 0 {
                    fresh
                } else {
                    bail!(
                        "{} holds an interrupted prepare of other inputs or options; re-run it with the same arguments to finish it (it has {} documents), or pass --force to discard it",
                        self.out.display(),
                        state.documents_read
                    )
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fresh,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", state_path.display())),
        };
        std::fs::create_dir_all(&self.work).with_context(|| format!("cannot create {}", self.work.display()))?;
        // Cut the partial files back to what the state committed (a killed run may have appended more).
        for split in PreparedSplit::BOTH {
            let committed = state.counts(split).tokens.checked_mul(self.dtype.bytes()).context("token count overflows")?;
            let path = self.partial(split);
            let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            let length = file.metadata().with_context(|| format!("cannot read {}", path.display()))?.len();
            anyhow::ensure!(
                length >= committed,
                "{} is shorter than its committed {committed} bytes; delete {} to start over",
                path.display(),
                self.work.display()
            );
            file.set_len(committed).with_context(|| format!("cannot truncate {}", path.display()))?;
            file.sync_all().with_context(|| format!("cannot sync {}", path.display()))?;
        }
        atomic_write(&state_path, serde_json::to_string_pretty(&state)?.as_bytes())?;
        Ok(state)
    }

    /// Read, tokenize and append every document not yet committed.
    fn tokenize_all(&self, state: &mut State) -> anyhow::Result<()> {
        let open = |split| OpenOptions::new().append(true).open(self.partial(split)).with_context(|| format!("cannot open {}", self.partial(split).display()));
        let mut writers = [open(PreparedSplit::Train)?, open(PreparedSplit::Val)?];
        let consumed = Arc::new(AtomicU64::new(0));
        let progress = Progress::new(&self.files, self.options.quiet);
        let (mut chunk, mut chunk_text) = (Vec::<String>::new(), 0usize);
        // Files committed whole are skipped unread; documents of the next one up to the last
        // committed are read again (to find where it stopped) but not tokenized.
        let (first_file, mut index) = state.files_committed();
        state.file_documents.truncate(first_file);
        consumed.store(self.files[..first_file].iter().map(|f| f.bytes).sum(), Ordering::Relaxed);
        let (skip, mut chunks) = (state.documents_read, 0u64);
        for file in &self.files[first_file..] {
            let before = index;
            corpus::for_each_document(std::slice::from_ref(file), &self.options.read, &consumed, |text, _| {
                index += 1;
                if index <= skip {
                    return Ok(());
                }
                chunk_text += text.len();
                chunk.push(text);
                if chunk_text >= self.options.chunk_bytes {
                    chunks += 1;
                    self.commit_chunk(std::mem::take(&mut chunk), state, &mut writers, chunks)?;
                    chunk_text = 0;
                    progress.update(consumed.load(Ordering::Relaxed), state);
                }
                Ok(())
            })?;
            // Recorded with the next commit, when every document of this file is committed.
            state.file_documents.push(index - before);
        }
        if !chunk.is_empty() {
            self.commit_chunk(chunk, state, &mut writers, chunks + 1)?;
        }
        progress.update(consumed.load(Ordering::Relaxed), state);
        progress.finish();
        Ok(())
    }

    /// Tokenize `documents` (in parallel), append them to their splits, sync, commit the state.
    fn commit_chunk(&self, documents: Vec<String>, state: &mut State, writers: &mut [File; 2], number: u64) -> anyhow::Result<()> {
        let encoded: Vec<Vec<u32>> = documents
            .par_iter()
            .map(|d| self.tokenizer.tokenizer.encode_fast(d.as_str(), false).map(|e| e.get_ids().to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("the tokenizer failed on a document after document {}: {e}", state.documents_read))?;
        let mut bytes = [Vec::new(), Vec::new()];
        for (text, ids) in documents.iter().zip(&encoded) {
            let split =
                if is_validation(self.options.seed, state.documents_read, self.options.eval_fraction) { PreparedSplit::Val } else { PreparedSplit::Train };
            let out = &mut bytes[split as usize];
            let eod = self.eod.as_ref().map(|(_, id)| *id);
            for &id in ids.iter().chain(eod.as_ref()) {
                match self.dtype {
                    TokenDtype::U16 => out.extend_from_slice(&(id as u16).to_le_bytes()),
                    _ => out.extend_from_slice(&id.to_le_bytes()),
                }
            }
            let counts = state.counts_mut(split);
            counts.documents += 1;
            counts.tokens += ids.len() as u64 + u64::from(eod.is_some());
            counts.text_bytes += text.len() as u64;
            state.documents_read += 1;
        }
        for (split, writer) in PreparedSplit::BOTH.into_iter().zip(writers.iter_mut()) {
            let path = self.partial(split);
            writer.write_all(&bytes[split as usize]).and_then(|_| writer.sync_data()).map_err(|e| {
                anyhow::anyhow!("cannot write {} ({e}); free space and re-run the same command: it resumes after the last complete chunk", path.display())
            })?;
        }
        crash_for_tests(number);
        atomic_write(&self.work.join("state.json"), serde_json::to_string_pretty(state)?.as_bytes())
            .context("cannot record the progress; free space and re-run the same command: it resumes after the last complete chunk")
    }

    /// Check the splits, write the sidecars, move the set into place, drop the work folder.
    fn finish(&self, state: &State) -> anyhow::Result<()> {
        let total = state.train.documents + state.val.documents;
        anyhow::ensure!(total > 0, "the inputs hold no documents");
        anyhow::ensure!(
            state.train.documents > 0,
            "no document went to the training split ({total} documents, --eval-fraction {}); lower --eval-fraction",
            self.options.eval_fraction
        );
        anyhow::ensure!(
            self.options.eval_fraction == 0.0 || state.val.documents > 0,
            "no document went to the validation split ({total} documents, --eval-fraction {}); raise --eval-fraction or give more documents",
            self.options.eval_fraction
        );
        for split in PreparedSplit::BOTH {
            let counts = state.counts(split);
            let sidecar = Sidecar {
                vocab: self.tokenizer.vocab,
                dtype: self.dtype,
                bytes_per_token: counts.bytes_per_token(),
                prepared: Some(self.info(split, counts)),
                oracle_loss_nats: None,
                document_tokens: None,
                synthetic: None,
            };
            atomic_write(&sidecar_path(&self.partial(split)), serde_json::to_string_pretty(&sidecar)?.as_bytes())?;
        }
        // Token files first, sidecars last: a set is complete when its sidecars are in place.
        for split in PreparedSplit::BOTH {
            let from = self.partial(split);
            std::fs::rename(&from, self.out.join(split.file_name())).with_context(|| format!("cannot move {} into {}", from.display(), self.out.display()))?;
        }
        for split in PreparedSplit::BOTH {
            let from = sidecar_path(&self.partial(split));
            std::fs::rename(&from, sidecar_path(&self.out.join(split.file_name())))
                .with_context(|| format!("cannot move {} into {}", from.display(), self.out.display()))?;
        }
        File::open(&self.out).and_then(|d| d.sync_all()).ok();
        std::fs::remove_dir_all(&self.work).with_context(|| format!("cannot remove {}", self.work.display()))
    }

    fn info(&self, split: PreparedSplit, counts: SplitCounts) -> PreparedInfo {
        PreparedInfo {
            split,
            domain: self.options.domain.clone(),
            tokenizer: self.options.tokenizer.clone(),
            tokenizer_sha256: self.tokenizer.sha256.clone(),
            eod_token: self.eod.as_ref().map(|(t, _)| t.clone()),
            eod_id: self.eod.as_ref().map(|(_, id)| *id),
            counts,
            eval_fraction: self.options.eval_fraction,
            seed: self.options.seed,
            sources: self.files.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }

    fn report(&self, state: &State) -> PrepareReport {
        PrepareReport {
            out: self.out.clone(),
            vocab: self.tokenizer.vocab,
            dtype: self.dtype,
            tokenizer_sha256: self.tokenizer.sha256.clone(),
            train: state.train,
            val: state.val,
            train_bytes_per_token: state.train.bytes_per_token(),
            val_bytes_per_token: state.val.bytes_per_token(),
            resumed_after_documents: 0,
            up_to_date: false,
            seconds: 0.0,
            text_mb_per_s: 0.0,
            tokens_per_s: 0.0,
        }
    }
}

/// SHA-256 over everything that decides the output bytes.
fn fingerprint(
    options: &PrepareOptions,
    files: &[CorpusFile],
    tokenizer_sha256: &str,
    eod: &Option<(String, u32)>,
    dtype: TokenDtype,
) -> anyhow::Result<String> {
    let modified: Vec<Option<u128>> = files
        .iter()
        .map(|f| {
            std::fs::metadata(&f.path).ok().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos())
        })
        .collect();
    let decided_by = serde_json::json!({
        "files": files, "modified": modified, "read": options.read, "tokenizer_sha256": tokenizer_sha256,
        "eod": eod, "dtype": dtype, "eval_fraction": options.eval_fraction, "seed": options.seed, "domain": options.domain,
    });
    Ok(tokenizer::sha256_hex(serde_json::to_string(&decided_by)?.as_bytes()))
}

/// Tests kill a prepare mid-way: `WINDTUNNEL_TEST_KILL_PREPARE_AT_CHUNK=N` sends SIGKILL to this
/// process after chunk N's tokens are written and synced, before its state is committed (the
/// worst moment: the partial files hold tokens the state does not).
fn crash_for_tests(chunk: u64) {
    if std::env::var("WINDTUNNEL_TEST_KILL_PREPARE_AT_CHUNK").ok().and_then(|v| v.parse::<u64>().ok()) == Some(chunk) {
        // SAFETY: signalling our own pid.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// A bar over the input bytes on a terminal; a plain line every 10 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    started: Instant,
    last_line: std::cell::Cell<Instant>,
    total: u64,
}

impl Progress {
    fn new(files: &[CorpusFile], quiet: bool) -> Self {
        let total = files.iter().map(|f| f.bytes).sum();
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes}  {msg}  ETA {eta}")
                    .expect("valid template"),
            );
            bar
        });
        Self { bar, plain: !quiet && !terminal, started: Instant::now(), last_line: std::cell::Cell::new(Instant::now()), total }
    }

    fn update(&self, consumed: u64, state: &State) {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        let text = (state.train.text_bytes + state.val.text_bytes) as f64;
        let tokens = (state.train.tokens + state.val.tokens) as f64;
        let msg = format!("{} docs, {} tokens, {}B/s text, {} tokens/s", si(state.documents_read as f64), si(tokens), si(text / seconds), si(tokens / seconds));
        if let Some(bar) = &self.bar {
            bar.set_position(consumed);
            bar.set_message(msg);
        } else if self.plain && self.last_line.get().elapsed() >= Duration::from_secs(10) {
            crate::stderr_line!("prepare: {}/{} input bytes, {msg}", si(consumed as f64), si(self.total as f64));
            self.last_line.set(Instant::now());
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl std::fmt::Display for PrepareReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = if self.up_to_date { " (already prepared; nothing to do)" } else { "" };
        writeln!(f, "prepared {}{status}", self.out.display())?;
        writeln!(f, "  tokenizer  vocab {} as {}, sha256 {}", self.vocab, self.dtype, &self.tokenizer_sha256[..16])?;
        for (name, c, bpt) in [("train", self.train, self.train_bytes_per_token), ("val", self.val, self.val_bytes_per_token)] {
            let bpt = bpt.map(|b| format!(", {b:.3} bytes/token")).unwrap_or_default();
            writeln!(f, "  {name:<10} {} documents, {} tokens, {} text bytes{bpt}", thousands(c.documents), thousands(c.tokens), thousands(c.text_bytes))?;
        }
        if self.resumed_after_documents > 0 {
            writeln!(f, "  resumed after {} documents of an interrupted prepare", thousands(self.resumed_after_documents))?;
        }
        if !self.up_to_date {
            write!(f, "  {:.1} s: {:.2} MB/s of text, {} tokens/s", self.seconds, self.text_mb_per_s, si(self.tokens_per_s))?;
        }
        Ok(())
    }
}
