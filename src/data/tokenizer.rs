//! Hugging Face tokenizers (`tokenizer.json`, through the `tokenizers` crate, the library behind
//! the Python package): loading one with a clear error, its SHA-256 (recorded in every prepared
//! set, so two sets made with different tokenizers are never mixed up), its end-of-document token,
//! and training a byte-level BPE on a corpus (`windtunnel data tokenizer`) for users without one.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use super::corpus::{self, CorpusFile, ReadOptions};

/// End-of-document tokens looked for, in order, when none is named.
pub const KNOWN_EOD_TOKENS: [&str; 5] = ["<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>"];

/// A loaded tokenizer and what identifies it.
pub struct LoadedTokenizer {
    pub tokenizer: Tokenizer,
    pub path: PathBuf,
    pub sha256: String,
    /// Vocabulary size including added (special) tokens: every id it can emit is below it.
    pub vocab: usize,
}

pub fn load(path: &Path) -> anyhow::Result<LoadedTokenizer> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read tokenizer {}", path.display()))?;
    let tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a Hugging Face tokenizer.json ({e}); give the tokenizer.json a model ships, or make one with `windtunnel data tokenizer`",
            path.display()
        )
    })?;
    // Ids are dense from 0 in every model `tokenizers` saves; the largest id + 1 bounds them.
    let largest = tokenizer.get_vocab(true).into_values().max().unwrap_or(0);
    let vocab = (largest as usize + 1).max(tokenizer.get_vocab_size(true));
    Ok(LoadedTokenizer { tokenizer, path: path.to_path_buf(), sha256: sha256_hex(&bytes), vocab })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl LoadedTokenizer {
    /// The end-of-document token: `named`, else the first of [`KNOWN_EOD_TOKENS`] the vocabulary has.
    pub fn eod(&self, named: Option<&str>) -> anyhow::Result<(String, u32)> {
        if let Some(token) = named {
            let id = self.tokenizer.token_to_id(token).with_context(|| format!("--eod-token {token:?} is not in {}'s vocabulary", self.path.display()))?;
            return Ok((token.to_string(), id));
        }
        KNOWN_EOD_TOKENS.iter().find_map(|t| self.tokenizer.token_to_id(t).map(|id| (t.to_string(), id))).with_context(|| {
            format!(
                "{} has none of the end-of-document tokens {}; name one with --eod-token, or pass --no-eod",
                self.path.display(),
                KNOWN_EOD_TOKENS.join(" ")
            )
        })
    }
}

/// What `windtunnel data tokenizer` made.
#[derive(Debug, Clone, Serialize)]
pub struct TrainedTokenizer {
    pub path: PathBuf,
    pub vocab: usize,
    pub documents: u64,
    pub sha256: String,
}

/// Train a byte-level BPE (GPT-2's scheme: every byte is a token, so any text encodes and decodes
/// back exactly) with `vocab` tokens, `<|endoftext|>` among them, on the first documents of `files`
/// up to `max_text_bytes` of text (held in memory while training).
pub fn train_bpe(files: &[CorpusFile], options: &ReadOptions, vocab: usize, max_text_bytes: u64, out: &Path) -> anyhow::Result<TrainedTokenizer> {
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, TokenizerBuilder};

    let byte_level = ByteLevel::new(false, true, true);
    anyhow::ensure!(vocab > 257, "--vocab {vocab} is too small: a byte-level BPE needs the 256 bytes and <|endoftext|>");
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(vec![AddedToken::from("<|endoftext|>".to_string(), true)])
        .build();
    let mut tokenizer = TokenizerBuilder::<BPE, _, _, _, _>::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(byte_level))
        .with_post_processor(Some(byte_level))
        .with_decoder(Some(byte_level))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build a BPE tokenizer: {e}"))?;
    let (mut documents, mut text_bytes) = (Vec::new(), 0u64);
    corpus::for_each_document(files, options, &Arc::new(AtomicU64::new(0)), |text, _| {
        if text_bytes < max_text_bytes {
            text_bytes += text.len() as u64;
            documents.push(text);
        }
        Ok(())
    })?;
    anyhow::ensure!(!documents.is_empty(), "the inputs hold no documents to train a tokenizer on");
    tokenizer.train(&mut trainer, documents.iter()).map_err(|e| anyhow::anyhow!("training the tokenizer failed: {e}"))?;
    let json = tokenizer.to_string(false).map_err(|e| anyhow::anyhow!("cannot serialise the tokenizer: {e}"))?;
    crate::fsutil::atomic_write(out, json.as_bytes())?;
    let trained = load(out)?;
    Ok(TrainedTokenizer { path: out.to_path_buf(), vocab: trained.vocab, documents: documents.len() as u64, sha256: trained.sha256 })
}

impl std::fmt::Display for TrainedTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "wrote {}: byte-level BPE, vocab {}, trained on {} documents", self.path.display(), self.vocab, self.documents)?;
        write!(f, "  sha256 {}", self.sha256)
    }
}
