//! `windtunnel data prepare`, `data tokenizer`, `data synth` and `data inspect`.

use clap::{Args, Subcommand};

use super::emit;
use windtunnel::data::corpus::{self, InputFormat, ReadOptions};
use windtunnel::data::files::TokenDtype;
use windtunnel::data::prepare::{self, PrepareOptions};
use windtunnel::data::synthetic::SyntheticConfig;
use windtunnel::data::tokenizer;
use windtunnel::data::tools;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Tokenize a corpus (text, JSON Lines, Parquet; .gz/.zst) with a Hugging Face tokenizer.json into train.bin + val.bin.
    #[command(after_help = "Writes OUT/train.bin and OUT/val.bin (u16 or u32 tokens, an end-of-document token after each\n\
                            document) and their .json sidecars: vocabulary, tokenizer SHA-256, documents, tokens, bytes per\n\
                            token, sources. Documents go to val.bin whole, chosen by --seed. Interrupted? Run the same\n\
                            command again: it resumes after the last complete chunk. Use the set in a run file as\n\
                            [data] kind = \"prepared\", path = \"OUT\".\n\n\
                            Examples:\n  windtunnel data prepare --tokenizer tokenizer.json --input corpus.jsonl.gz --out data/web\n  \
                            windtunnel data prepare --tokenizer tokenizer.json --input 'fineweb/*.parquet' --out data/corpus --domain web\n  \
                            windtunnel data prepare --tokenizer tokenizer.json --input books/ --out data/corpus --domain books --eval-fraction 0.02\n  \
                            windtunnel data prepare --tokenizer tokenizer.json --input lines.txt --lines --skip-empty --out data/lines")]
    Prepare(PrepareArgs),
    /// Train a byte-level BPE tokenizer.json (GPT-2's scheme, with <|endoftext|>) on a corpus.
    #[command(after_help = "Examples:\n  windtunnel data tokenizer --input corpus.jsonl.gz --vocab 4096 --out tokenizer.json\n  \
                            windtunnel data tokenizer --input 'shards/*.parquet' --text-field content --vocab 32000 --out tok.json")]
    Tokenizer(TokenizerArgs),
    /// Write the synthetic language as a token file (u16/u32 .bin + .json sidecar with its exact oracle loss).
    #[command(after_help = "Examples:\n  windtunnel data synth --out data/synth.bin --tokens 10000000\n  \
                            windtunnel data synth --out big.bin --tokens 1e9 --vocab 4096 --max-order 4 --order-weights 0.1,0.2,0.2,0.2,0.3")]
    Synth(SynthArgs),
    /// Summarise a prepared set, a text or a token file: size, vocabulary use, histogram, oracle loss when known.
    #[command(after_help = "Examples:\n  windtunnel data inspect data/web            (a `data prepare` folder: both splits)\n  \
                            windtunnel data inspect data/web --show 2   (and its first 2 documents of each split, decoded)\n  \
                            windtunnel data inspect data/synth.bin\n  windtunnel data inspect corpus.txt --json\n  \
                            windtunnel data inspect train.bin --dtype u16 --vocab 50257")]
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct SynthArgs {
    /// Output token file; its sidecar is written to OUT.json.
    #[arg(long)]
    out: std::path::PathBuf,
    /// How many tokens to write (scientific notation allowed: 1e8).
    #[arg(long, value_parser = parse_count)]
    tokens: u64,
    /// Tokens per independent document.
    #[arg(long, default_value_t = 1024)]
    document_tokens: usize,
    /// Seed of the token stream.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    language: SyntheticArgs,
    #[arg(long)]
    json: bool,
}

/// The synthetic language's parameters (see `src/data/synthetic.rs`); defaults are its own.
#[derive(Args)]
struct SyntheticArgs {
    #[arg(long, default_value_t = SyntheticConfig::default().vocab)]
    vocab: usize,
    /// Longest context a rule looks at.
    #[arg(long, default_value_t = SyntheticConfig::default().max_order)]
    max_order: usize,
    /// Weights of orders 0..=max-order, comma-separated [default: 0.1,0.3,0.3,0.3].
    #[arg(long, value_delimiter = ',')]
    order_weights: Option<Vec<f64>>,
    /// Rules (distinct next-token distributions) per order.
    #[arg(long, default_value_t = SyntheticConfig::default().rules)]
    rules: usize,
    #[arg(long, default_value_t = SyntheticConfig::default().zipf_exponent)]
    zipf_exponent: f64,
    /// Tokens each rule can emit.
    #[arg(long, default_value_t = SyntheticConfig::default().support)]
    support: usize,
    #[arg(long, default_value_t = SyntheticConfig::default().peak_decay)]
    peak_decay: f64,
    #[arg(long, default_value_t = SyntheticConfig::default().smoothing)]
    smoothing: f64,
    /// Seed of the language itself (its rules), independent of the stream seed.
    #[arg(long, default_value_t = SyntheticConfig::default().language_seed)]
    language_seed: u64,
}

impl SyntheticArgs {
    fn config(&self) -> anyhow::Result<SyntheticConfig> {
        let defaults = SyntheticConfig::default();
        let order_weights = match &self.order_weights {
            Some(w) => w.clone(),
            None if self.max_order == defaults.max_order => defaults.order_weights,
            None => anyhow::bail!("--max-order {} needs --order-weights with {} entries (orders 0..={})", self.max_order, self.max_order + 1, self.max_order),
        };
        let config = SyntheticConfig {
            vocab: self.vocab,
            max_order: self.max_order,
            order_weights,
            rules: self.rules,
            zipf_exponent: self.zipf_exponent,
            support: self.support,
            peak_decay: self.peak_decay,
            smoothing: self.smoothing,
            language_seed: self.language_seed,
        };
        config.validate().map_err(|e| anyhow::anyhow!("synthetic language: {e}"))?;
        Ok(config)
    }
}

#[derive(Args)]
pub struct InspectArgs {
    file: std::path::PathBuf,
    /// Read the file as text bytes even if it looks like tokens.
    #[arg(long)]
    text: bool,
    /// Token width, u16 or u32 [default: the sidecar's].
    #[arg(long)]
    dtype: Option<TokenDtype>,
    /// Vocabulary size [default: the sidecar's].
    #[arg(long)]
    vocab: Option<usize>,
    /// For a prepared folder: decode and print its first N documents of each split.
    #[arg(long, default_value_t = 0)]
    show: usize,
    #[arg(long)]
    json: bool,
}

/// Where documents come from (shared by `prepare` and `tokenizer`).
#[derive(Args)]
struct CorpusArgs {
    /// Corpus files, folders (every file inside) or quoted globs ('shards/*.parquet'), read in order.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<String>,
    /// Format of every input [default: from the extension: .jsonl/.json/.ndjson, .parquet, else text].
    #[arg(long)]
    format: Option<InputFormat>,
    /// Plain-text inputs hold a document per line (default: a document per file).
    #[arg(long)]
    lines: bool,
    /// The JSON field or Parquet column holding the text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Drop empty (and null) documents instead of stopping at the first.
    #[arg(long)]
    skip_empty: bool,
}

impl CorpusArgs {
    fn options(&self) -> ReadOptions {
        ReadOptions { format: self.format, lines: self.lines, text_field: self.text_field.clone(), skip_empty: self.skip_empty }
    }
}

#[derive(Args)]
pub struct PrepareArgs {
    /// A Hugging Face tokenizer.json.
    #[arg(long)]
    tokenizer: std::path::PathBuf,
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Output folder (created); with --domain, its DOMAIN subfolder.
    #[arg(long)]
    out: std::path::PathBuf,
    /// Name of this corpus among several prepared under one --out (mixtures and decay data name it).
    #[arg(long)]
    domain: Option<String>,
    /// Share of documents held out in val.bin.
    #[arg(long, default_value_t = 0.01)]
    eval_fraction: f64,
    /// Seed of the document split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// End-of-document token [default: the first of <|endoftext|>, <|end_of_text|>, </s>, <eos>, <|im_end|> the tokenizer has].
    #[arg(long, conflicts_with = "no_eod")]
    eod_token: Option<String>,
    /// Append no end-of-document token.
    #[arg(long)]
    no_eod: bool,
    /// Token width [default: u16 when the vocabulary fits, else u32].
    #[arg(long)]
    dtype: Option<TokenDtype>,
    /// Replace a finished set (or discard an interrupted one) made from other inputs or options.
    #[arg(long)]
    force: bool,
    /// Bytes of text tokenized and committed at a time.
    #[arg(long, default_value_t = prepare::DEFAULT_CHUNK_BYTES, hide = true)]
    chunk_bytes: usize,
    /// No progress bar or progress lines.
    #[arg(long)]
    quiet: bool,
    /// The report as JSON on stdout (implies --quiet).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TokenizerArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Vocabulary size, <|endoftext|> and the 256 bytes included.
    #[arg(long)]
    vocab: usize,
    /// Where to write the tokenizer.json.
    #[arg(long)]
    out: std::path::PathBuf,
    /// Train on at most this many bytes of text (the first documents).
    #[arg(long, value_parser = parse_count, default_value = "1000000000")]
    max_text_bytes: u64,
    #[arg(long)]
    json: bool,
}

/// Parse a count that may be written as 1e9 or 1_000_000.
fn parse_count(s: &str) -> Result<u64, String> {
    let clean = s.replace('_', "");
    if let Ok(n) = clean.parse::<u64>() {
        return Ok(n);
    }
    match clean.parse::<f64>() {
        Ok(x) if x >= 0.0 && x.fract() == 0.0 && x < 1.8e19 => Ok(x as u64),
        _ => Err(format!("`{s}` is not a whole number of tokens")),
    }
}

pub fn data(command: DataCommand) -> anyhow::Result<u8> {
    match command {
        DataCommand::Prepare(a) => {
            let options = PrepareOptions {
                inputs: a.corpus.input.clone(),
                read: a.corpus.options(),
                tokenizer: a.tokenizer,
                out: a.out,
                domain: a.domain,
                eod_token: a.eod_token,
                no_eod: a.no_eod,
                dtype: a.dtype,
                eval_fraction: a.eval_fraction,
                seed: a.seed,
                force: a.force,
                chunk_bytes: a.chunk_bytes,
                quiet: a.quiet || a.json,
            };
            emit(&prepare::prepare(&options)?, a.json)
        }
        DataCommand::Tokenizer(a) => {
            let files = corpus::list_files(&a.corpus.input, &a.corpus.options())?;
            emit(&tokenizer::train_bpe(&files, &a.corpus.options(), a.vocab, a.max_text_bytes, &a.out)?, a.json)
        }
        DataCommand::Synth(a) => emit(&tools::synth(&a.language.config()?, a.seed, a.tokens, a.document_tokens, &a.out)?, a.json),
        DataCommand::Inspect(a) if a.file.is_dir() => emit(&tools::inspect_prepared(&a.file, a.show)?, a.json),
        DataCommand::Inspect(a) => emit(&tools::inspect(&a.file, a.text, a.dtype, a.vocab)?, a.json),
    }
}
