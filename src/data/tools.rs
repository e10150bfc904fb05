//! `windtunnel data synth` (the synthetic language as a token file other tools can train on) and
//! `windtunnel data inspect` (what a data file holds).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::files::{read_sidecar, sidecar_path, PreparedInfo, PreparedSplit, Sidecar, TokenDtype, TokenFile};
use super::synthetic::{SyntheticConfig, SyntheticLanguage};
use crate::format::{si, thousands};
use crate::fsutil::{atomic_write, atomic_write_with};
use crate::rng::Rng;

#[derive(Debug, Clone, Serialize)]
pub struct SynthReport {
    pub path: PathBuf,
    pub sidecar: PathBuf,
    pub tokens: u64,
    pub documents: u64,
    pub document_tokens: usize,
    pub dtype: TokenDtype,
    pub vocab: usize,
    /// Exact mean −log p(x_t | x_<t) over every token of the file (context restarts per document).
    pub oracle_loss_nats: f64,
    pub oracle_bits_per_token: f64,
    pub seed: u64,
}

/// Write `tokens` tokens of the synthetic language to `out` (documents of `document_tokens`),
/// with a sidecar holding the vocabulary, the generating config and the exact oracle loss.
/// Bytes free for an unprivileged writer on the file system that will hold `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a zeroed struct for statvfs to fill.
    (unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } == 0).then(|| (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

pub fn synth(config: &SyntheticConfig, seed: u64, tokens: u64, document_tokens: usize, out: &Path) -> anyhow::Result<SynthReport> {
    anyhow::ensure!(tokens > 0, "--tokens must be at least 1");
    anyhow::ensure!(document_tokens > 0, "--document-tokens must be at least 1");
    anyhow::ensure!(document_tokens <= 1 << 30, "--document-tokens {document_tokens} is beyond the largest allowed (2^30)");
    let language = SyntheticLanguage::new(config.clone()).map_err(anyhow::Error::msg)?;
    let dtype = TokenDtype::for_vocab(config.vocab);
    let bytes = tokens.saturating_mul(dtype.bytes());
    if let Some(free) = free_bytes(out) {
        anyhow::ensure!(
            bytes < free,
            "{} would hold {tokens} tokens = {} and the file system has {} free; ask for fewer --tokens",
            out.display(),
            crate::model::memory::bytes(bytes as f64),
            crate::model::memory::bytes(free as f64)
        );
    }
    let mut nll_total = 0.0;
    let mut documents = 0u64;
    atomic_write_with(out, |file| {
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut doc = Vec::with_capacity(document_tokens);
        let mut written = 0u64;
        while written < tokens {
            let len = document_tokens.min((tokens - written) as usize);
            let mut rng = Rng::derive(seed, &[0xF11E, documents]);
            language.generate(&mut rng, len, &mut doc);
            nll_total += -language.probability(&[], doc[0]).ln() + language.nll(&doc, 1).iter().sum::<f64>();
            for &t in &doc {
                match dtype {
                    TokenDtype::U16 => w.write_all(&(t as u16).to_le_bytes())?,
                    _ => w.write_all(&t.to_le_bytes())?,
                }
            }
            written += len as u64;
            documents += 1;
        }
        w.flush()?;
        Ok(())
    })
    .with_context(|| format!("writing {}", out.display()))?;
    let oracle_loss_nats = nll_total / tokens as f64;
    let sidecar = Sidecar {
        vocab: config.vocab,
        dtype,
        oracle_loss_nats: Some(oracle_loss_nats),
        document_tokens: Some(document_tokens),
        synthetic: Some(config.clone()),
        bytes_per_token: None,
        prepared: None,
    };
    let side = sidecar_path(out);
    atomic_write(&side, serde_json::to_string_pretty(&sidecar)?.as_bytes())?;
    Ok(SynthReport {
        path: out.to_path_buf(),
        sidecar: side,
        tokens,
        documents,
        document_tokens,
        dtype,
        vocab: config.vocab,
        oracle_loss_nats,
        oracle_bits_per_token: oracle_loss_nats / std::f64::consts::LN_2,
        seed,
    })
}

impl std::fmt::Display for SynthReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "wrote {} ({} tokens as {}, {} documents of {} tokens, vocab {})",
            self.path.display(),
            thousands(self.tokens),
            self.dtype,
            thousands(self.documents),
            self.document_tokens,
            self.vocab
        )?;
        writeln!(f, "sidecar {}", self.sidecar.display())?;
        write!(f, "oracle loss {:.5} nats/token ({:.5} bits/token): the exact floor no model can beat", self.oracle_loss_nats, self.oracle_bits_per_token)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenCount {
    pub token: u32,
    pub count: u64,
    pub share: f64,
    /// What the token reads as, when the tokenizer a prepared set names is at hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub path: PathBuf,
    /// "text" (bytes) or "tokens".
    pub kind: &'static str,
    pub bytes: u64,
    pub dtype: TokenDtype,
    pub tokens: u64,
    pub vocab: usize,
    pub distinct_tokens: usize,
    pub max_token: u32,
    /// Entropy of the token histogram in nats (the loss of the best context-free model).
    pub unigram_entropy_nats: f64,
    /// For text: unigram entropy in bits per byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unigram_bits_per_byte: Option<f64>,
    pub top_tokens: Vec<TokenCount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oracle_loss_nats: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SyntheticConfig>,
    /// Bytes of text per token (text: 1; prepared sets: from the sidecar).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_token: Option<f64>,
    /// How `data prepare` made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepared: Option<PreparedInfo>,
}

/// `data inspect` of a `data prepare` folder: both splits, and the first documents decoded.
#[derive(Debug, Clone, Serialize)]
pub struct PreparedSetReport {
    pub folder: PathBuf,
    pub train: InspectReport,
    pub val: InspectReport,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<DecodedDocument>,
}

/// A document of a prepared split, decoded back to text.
#[derive(Debug, Clone, Serialize)]
pub struct DecodedDocument {
    pub split: PreparedSplit,
    /// Its place in the split, from 0.
    pub index: usize,
    pub tokens: usize,
    pub text: String,
}

/// Inspect the `train.bin` and `val.bin` of a prepared folder; decode the first `show` documents
/// of each with the tokenizer the set names (which must still be there, unchanged).
pub fn inspect_prepared(folder: &Path, show: usize) -> anyhow::Result<PreparedSetReport> {
    let path = |split: PreparedSplit| folder.join(split.file_name());
    if !path(PreparedSplit::Train).exists() {
        anyhow::bail!("{} has no train.bin: it is not a `data prepare` output (give a file to inspect a single file)", folder.display());
    }
    // One tokenizer for both splits (they are made together): loaded once, for the top tokens and
    // the decoded documents.
    let prepared = read_sidecar(&path(PreparedSplit::Train))?.and_then(|s| s.prepared);
    let tokenizer = prepared.as_ref().map(|p| tokenizer_of(&path(PreparedSplit::Train), p));
    let mut samples = Vec::new();
    if show > 0 {
        let tokenizer = match &tokenizer {
            Some(Ok(t)) => t,
            Some(Err(e)) => anyhow::bail!("{e:#}"),
            None => anyhow::bail!("{} was not made by `data prepare`: nothing to decode with", folder.display()),
        };
        for split in PreparedSplit::BOTH {
            samples.extend(decode_documents(&path(split), show, tokenizer)?);
        }
    }
    let known = tokenizer.as_ref().and_then(|t| t.as_ref().ok());
    Ok(PreparedSetReport {
        folder: folder.to_path_buf(),
        train: inspect_with(&path(PreparedSplit::Train), false, None, None, known)?,
        val: inspect_with(&path(PreparedSplit::Val), false, None, None, known)?,
        samples,
    })
}

/// The tokenizer a prepared file names, if it is still where it was and unchanged.
fn tokenizer_of(bin: &Path, prepared: &PreparedInfo) -> anyhow::Result<tokenizers::Tokenizer> {
    let loaded = super::tokenizer::load(&prepared.tokenizer).with_context(|| format!("cannot decode {}: its tokenizer is gone", bin.display()))?;
    anyhow::ensure!(
        loaded.sha256 == prepared.tokenizer_sha256,
        "cannot decode {}: {} changed since the set was prepared (SHA-256 {} then, {} now)",
        bin.display(),
        prepared.tokenizer.display(),
        &prepared.tokenizer_sha256[..16],
        &loaded.sha256[..16]
    );
    Ok(loaded.tokenizer)
}

/// The first `count` documents of a prepared split, split at its end-of-document token.
fn decode_documents(bin: &Path, count: usize, tokenizer: &tokenizers::Tokenizer) -> anyhow::Result<Vec<DecodedDocument>> {
    let sidecar = read_sidecar(bin)?.with_context(|| format!("{} has no sidecar", bin.display()))?;
    let prepared = sidecar.prepared.with_context(|| format!("{} was not made by `data prepare`", bin.display()))?;
    let eod = prepared.eod_id.context("the set has no end-of-document token to split documents at")?;
    let file = TokenFile::open_tokens(bin, None, None)?;
    let (mut documents, mut current, mut at) = (Vec::new(), Vec::new(), 0u64);
    let mut chunk = Vec::new();
    while documents.len() < count && at < file.len() {
        let n = (file.len() - at).min(1 << 16) as usize;
        chunk.clear();
        file.read(at, n, &mut chunk)?;
        at += n as u64;
        for &t in &chunk {
            if t != eod {
                current.push(t);
                continue;
            }
            let text = tokenizer.decode(&current, false).map_err(|e| anyhow::anyhow!("cannot decode {}: {e}", bin.display()))?;
            documents.push(DecodedDocument { split: prepared.split, index: documents.len(), tokens: current.len(), text });
            current.clear();
            if documents.len() == count {
                break;
            }
        }
    }
    Ok(documents)
}

impl std::fmt::Display for PreparedSetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = &self.train.prepared {
            let domain = p.domain.as_ref().map(|d| format!(" (domain {d})")).unwrap_or_default();
            writeln!(f, "{}{domain}: prepared with {}", self.folder.display(), p.tokenizer.display())?;
            writeln!(f, "  tokenizer sha256 {}", p.tokenizer_sha256)?;
            let eod = p.eod_token.as_ref().map(|t| format!("{t} (id {})", p.eod_id.unwrap_or(0))).unwrap_or_else(|| "none".into());
            writeln!(f, "  end of document  {eod}; split seed {}, eval fraction {}", p.seed, p.eval_fraction)?;
            let sources = p.sources.iter().map(|s| s.bytes).sum::<u64>();
            writeln!(f, "  sources          {} files, {} bytes", p.sources.len(), thousands(sources))?;
        }
        writeln!(f, "{}", self.train)?;
        write!(f, "{}", self.val)?;
        for d in &self.samples {
            write!(f, "\n--- {:?} document {} ({} tokens) ---\n{}", d.split, d.index, d.tokens, d.text)?;
        }
        Ok(())
    }
}

/// Read a whole data file and summarise it. Text unless a sidecar, `vocab` or `dtype` says tokens.
pub fn inspect(path: &Path, text: bool, dtype: Option<TokenDtype>, vocab: Option<usize>) -> anyhow::Result<InspectReport> {
    inspect_with(path, text, dtype, vocab, None)
}

/// [`inspect`], with the prepared set's tokenizer when the caller has it loaded already.
fn inspect_with(
    path: &Path,
    text: bool,
    dtype: Option<TokenDtype>,
    vocab: Option<usize>,
    known: Option<&tokenizers::Tokenizer>,
) -> anyhow::Result<InspectReport> {
    let sidecar = read_sidecar(path)?;
    let as_tokens = !text && (sidecar.is_some() || vocab.is_some() || dtype.is_some() || path.extension().is_some_and(|e| e == "bin"));
    let file = if as_tokens { TokenFile::open_tokens(path, dtype, vocab)? } else { TokenFile::open_text(path)? };
    let mut counts = vec![0u64; file.vocab()];
    let mut chunk = Vec::with_capacity(1 << 20);
    let mut at = 0;
    while at < file.len() {
        let n = (file.len() - at).min(1 << 20) as usize;
        chunk.clear();
        file.read(at, n, &mut chunk)?;
        for &t in &chunk {
            counts[t as usize] += 1;
        }
        at += n as u64;
    }
    let total = file.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total;
            -p * p.ln()
        })
        .sum();
    let mut order: Vec<usize> = (0..counts.len()).filter(|&t| counts[t] > 0).collect();
    // Top tokens read as text with the tokenizer the set was made with, when it is at hand.
    let loaded = match known {
        Some(_) => None,
        None => sidecar.as_ref().and_then(|s| s.prepared.as_ref()).and_then(|p| tokenizer_of(path, p).ok()),
    };
    let decoder = known.or(loaded.as_ref());
    order.sort_by_key(|&t| std::cmp::Reverse(counts[t]));
    Ok(InspectReport {
        path: path.to_path_buf(),
        kind: if as_tokens { "tokens" } else { "text" },
        bytes: file.len() * file.dtype().bytes(),
        dtype: file.dtype(),
        tokens: file.len(),
        vocab: file.vocab(),
        distinct_tokens: order.len(),
        max_token: order.iter().copied().max().unwrap_or(0) as u32,
        unigram_entropy_nats: entropy,
        unigram_bits_per_byte: file.bytes_per_token().map(|b| entropy / b / std::f64::consts::LN_2),
        top_tokens: order
            .iter()
            .take(10)
            .map(|&t| TokenCount {
                token: t as u32,
                count: counts[t],
                share: counts[t] as f64 / total,
                text: decoder.and_then(|d| d.decode(&[t as u32], false).ok()),
            })
            .collect(),
        oracle_loss_nats: sidecar.as_ref().and_then(|s| s.oracle_loss_nats),
        bytes_per_token: file.bytes_per_token(),
        synthetic: sidecar.as_ref().and_then(|s| s.synthetic.clone()),
        prepared: sidecar.and_then(|s| s.prepared),
    })
}

impl std::fmt::Display for InspectReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} ({})", self.path.display(), self.kind)?;
        writeln!(f, "  size          {} bytes, {} tokens as {}", thousands(self.bytes), thousands(self.tokens), self.dtype)?;
        if let Some(p) = &self.prepared {
            let bpt = self.bytes_per_token.map(|b| format!(", {b:.3} bytes of text per token")).unwrap_or_default();
            writeln!(f, "  documents     {} ({} bytes of text{bpt})", thousands(p.counts.documents), thousands(p.counts.text_bytes))?;
        }
        writeln!(
            f,
            "  vocab         {} ({} used, {:.1}%; largest token {})",
            thousands(self.vocab as u64),
            thousands(self.distinct_tokens as u64),
            100.0 * self.distinct_tokens as f64 / self.vocab as f64,
            self.max_token
        )?;
        write!(f, "  unigram       {:.4} nats/token", self.unigram_entropy_nats)?;
        if let Some(bpb) = self.unigram_bits_per_byte {
            write!(f, " = {bpb:.4} bits/byte")?;
        }
        writeln!(f, " (loss of the best model without context)")?;
        if let Some(o) = self.oracle_loss_nats {
            writeln!(f, "  oracle loss   {o:.5} nats/token (exact: the file was generated by the synthetic language)")?;
        }
        write!(f, "  top tokens   ")?;
        for t in &self.top_tokens {
            if let Some(text) = &t.text {
                write!(f, " {text:?} {:.1}%", 100.0 * t.share)?;
            } else if self.kind == "text" && (0x20..0x7f).contains(&t.token) {
                write!(f, " {:?} {:.1}%", t.token as u8 as char, 100.0 * t.share)?;
            } else {
                write!(f, " {} {:.1}%", t.token, 100.0 * t.share)?;
            }
        }
        if self.tokens > 1_000_000 {
            write!(f, "\n  ({} tokens)", si(self.tokens as f64))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synth_writes_a_file_whose_oracle_inspect_reports() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s.bin");
        let config = SyntheticConfig { vocab: 64, ..Default::default() };
        let r = synth(&config, 3, 10_000, 256, &out).unwrap();
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 20_000);
        assert_eq!(r.documents, 40);
        let i = inspect(&out, false, None, None).unwrap();
        assert_eq!((i.kind, i.tokens, i.vocab), ("tokens", 10_000, 64));
        assert_eq!(i.oracle_loss_nats, Some(r.oracle_loss_nats));
        assert!(r.oracle_loss_nats < i.unigram_entropy_nats, "context must help: {} vs {}", r.oracle_loss_nats, i.unigram_entropy_nats);
        // Same seed, same file.
        let again = dir.path().join("t.bin");
        synth(&config, 3, 10_000, 256, &again).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    }
}
