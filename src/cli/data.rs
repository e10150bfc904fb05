//! `windtunnel data synth` and `windtunnel data inspect`.

use clap::{Args, Subcommand};

use super::emit;
use windtunnel::data::files::TokenDtype;
use windtunnel::data::synthetic::SyntheticConfig;
use windtunnel::data::tools;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Write the synthetic language as a token file (u16/u32 .bin + .json sidecar with its exact oracle loss).
    #[command(after_help = "Examples:\n  windtunnel data synth --out data/synth.bin --tokens 10000000\n  \
                            windtunnel data synth --out big.bin --tokens 1e9 --vocab 4096 --max-order 4 --order-weights 0.1,0.2,0.2,0.2,0.3")]
    Synth(SynthArgs),
    /// Summarise a text or token file: size, vocabulary use, histogram, oracle loss when known.
    #[command(after_help = "Examples:\n  windtunnel data inspect data/synth.bin\n  windtunnel data inspect corpus.txt --json\n  \
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
        DataCommand::Synth(a) => emit(&tools::synth(&a.language.config()?, a.seed, a.tokens, a.document_tokens, &a.out)?, a.json),
        DataCommand::Inspect(a) => emit(&tools::inspect(&a.file, a.text, a.dtype, a.vocab)?, a.json),
    }
}
