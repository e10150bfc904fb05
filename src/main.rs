//! The `windtunnel` command line: parses arguments and calls the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use windtunnel::data::files::TokenDtype;
use windtunnel::data::synthetic::SyntheticConfig;
use windtunnel::data::tools;
use windtunnel::device::DeviceSpec;
use windtunnel::model::coord_check::{coord_check, CoordCheckOptions};
use windtunnel::model::mup::{MupConfig, Parameterization};
use windtunnel::model::shape::{self, ModelShape, PRESETS};
use windtunnel::model::ModelReport;
use windtunnel::train::run::TrainOptions;

#[derive(Parser)]
#[command(
    name = "windtunnel",
    version,
    about = "Wind-tunnel scaling-law experiments on µP language models (the MiniCPM method)",
    long_about = "Train small µP proxy models, branch WSD decays off their stable phases, fit scaling laws \
                  to the losses and export the compute-optimal configuration for the full run."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model shape's exact parameter counts, FLOPs per token and µP factors.
    #[command(after_help = "Examples:\n  windtunnel model --preset minicpm-1.2b\n  windtunnel model --preset 9m --json\n  \
                            windtunnel model --width 256 --depth 8 --heads 4 --kv-heads 2 --vocab 256\n  windtunnel model --list")]
    Model(ModelArgs),
    /// Check µP: record mean |activation| per layer across widths for a few training steps.
    #[command(after_help = "Examples:\n  windtunnel coord-check\n  windtunnel coord-check --parameterization sp\n  \
                            windtunnel coord-check --widths 64,128,256,512,1024 --steps 5 --json > coord.json")]
    CoordCheck(CoordCheckArgs),
    /// Train one run from a run file; writes run.json, metrics.jsonl, status.json and checkpoints/ into --out.
    #[command(after_help = "Examples:\n  windtunnel train sweeps/runs/quickstart.toml --out results/quickstart-run\n  \
                            windtunnel train sweeps/runs/quickstart.toml --out results/quickstart-run --resume\n  \
                            windtunnel train run.toml --out runs/a --device cuda:0 --json\n\n\
                            Exit codes: 0 done, 1 failed while training (worth retrying), 2 cannot start (bad run file or data, \
                            a model too big for memory, a run directory another process is writing), 3 diverged, 130/138/143 interrupted by SIGINT/SIGUSR1/SIGTERM (a checkpoint was written; SIGUSR1 is Slurm's time-limit warning).")]
    Train(TrainArgs),
    /// Expand a sweep file into its run graph (trunks, branches, plain runs) and its compute, without running it.
    #[command(after_help = "Examples:\n  windtunnel plan sweeps/quickstart.toml\n  windtunnel plan sweeps/minicpm-data-model.toml --json")]
    Plan(PlanArgs),
    /// Run a sweep locally: every run a worker process, concurrently, resumable after any interruption.
    #[command(after_help = "Examples:\n  windtunnel run sweeps/quickstart.toml\n  \
                            windtunnel run sweeps/quickstart.toml --parallel 2\n  \
                            windtunnel run sweeps/minicpm-lr-stability.toml --devices cuda:0,1,2,3 --runs-per-device 2\n  \
                            windtunnel run sweeps/quickstart.toml --executor slurm --partition gpu --time 04:00:00 --gpus-per-task 1\n  \
                            windtunnel run sweeps/quickstart.toml --executor slurm --dry-run   (write the sbatch scripts, submit nothing)\n\n\
                            Rerunning the same command resumes: finished runs are kept, interrupted ones continue from their checkpoints.\n\
                            With --executor slurm the sweep directory must be on a file system the compute nodes share.")]
    Run(RunArgs),
    /// A sweep's progress, from its files first; for a Slurm sweep, Slurm's view of the unfinished runs.
    #[command(after_help = "Examples:\n  windtunnel status results/quickstart\n  windtunnel status results/quickstart --json")]
    Status(DirArgs),
    /// Cancel a Slurm sweep's jobs; runs keep their checkpoints and `run --executor slurm` resumes them.
    #[command(after_help = "Examples:\n  windtunnel cancel results/quickstart")]
    Cancel(DirArgs),
    /// Write the sweep's results table (table.csv and table.parquet: one row per finished run or branch).
    #[command(after_help = "Examples:\n  windtunnel collect results/quickstart")]
    Collect(DirArgs),
    /// Fit scaling laws to a results table.
    #[command(subcommand)]
    Fit(FitCommand),
    /// Make and inspect data: the synthetic language as a token file, or what a data file holds.
    #[command(subcommand)]
    Data(DataCommand),
    /// Draw every chart a sweep's data supports into DIR/plots/ (or one coordinate check).
    #[command(after_help = "Examples:\n  windtunnel plot results/quickstart\n  windtunnel plot results/quickstart --format png\n  \
                            windtunnel coord-check --json > coord.json && windtunnel plot --coord-check coord.json\n\n\
                            Charts: loss-curves, lr-transfer, law-tokens, law-compute, allocation, residuals, holdout, batch-size;\n\
                            the data-model law is refitted from the definition `fit law` saved in DIR/fits/law.json.")]
    Plot(PlotArgs),
    /// Write DIR/report.html: one self-contained page with the sweep's summary, every chart and the fits.
    #[command(after_help = "Examples:\n  windtunnel report results/quickstart\n  windtunnel report results/quickstart --out quickstart.html")]
    Report(ReportArgs),
    /// Choose the full run from the sweep's fits: shape, µP learning rates, batch size, WSD schedule, predicted loss.
    #[command(after_help = "Examples:\n  windtunnel export results/quickstart --budget-flops 1e18\n  \
                            windtunnel export results/quickstart --target-params 50e6 --vocab 73440 --seq-len 4096 --out export/\n\n\
                            Writes config.json (Hugging Face MiniCPM format) and recipe.json (the training recipe and where each number came from).")]
    Export(ExportArgs),
}

#[derive(Args)]
struct PlotArgs {
    /// The sweep directory (results/NAME).
    #[arg(required_unless_present = "coord_check")]
    dir: Option<std::path::PathBuf>,
    /// Draw this coordinate check (the JSON of `windtunnel coord-check --json`) instead of a sweep.
    #[arg(long, conflicts_with = "dir")]
    coord_check: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value = "svg")]
    format: windtunnel::plot::ImageFormat,
    /// Output file for --coord-check [default: beside the JSON file].
    #[arg(long, requires = "coord_check")]
    out: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ReportArgs {
    /// The sweep directory.
    dir: std::path::PathBuf,
    /// Where to write the page [default: DIR/report.html].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    /// The sweep directory whose fits to use.
    dir: std::path::PathBuf,
    /// Training compute of the full run in FLOPs (C = 6ND): take the compute-optimal N and D.
    #[arg(long, conflicts_with = "target_params", required_unless_present = "target_params")]
    budget_flops: Option<f64>,
    /// Non-embedding parameters of the full run: D from the law's compute-optimal tokens per parameter.
    #[arg(long)]
    target_params: Option<f64>,
    /// Vocabulary of the full run [default: the sweep's].
    #[arg(long)]
    vocab: Option<usize>,
    /// Sequence length of the full run [default: the sweep's].
    #[arg(long)]
    seq_len: Option<usize>,
    /// Key/value heads as a divisor of the query heads: 1 = multi-head attention, 3 = MiniCPM-1.2B's GQA.
    #[arg(long, default_value_t = 1)]
    gqa_group: usize,
    /// Width / depth of the exported shape (MiniCPM-1.2B: 30, 2.4B: 58, its Table 8 proxies: 40-56).
    #[arg(long, default_value_t = 40.0)]
    aspect_ratio: f64,
    /// Take the learning-rate optimum from this sweep instead (a µP learning-rate scan).
    #[arg(long)]
    lr_sweep: Option<std::path::PathBuf>,
    /// Take the batch-size law from this sweep instead (runs at 3 or more batch sizes).
    #[arg(long)]
    batch_sweep: Option<std::path::PathBuf>,
    /// Where to write config.json and recipe.json [default: DIR/export].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// The run file (TOML, or JSON by extension).
    run_file: std::path::PathBuf,
    /// Directory for run.json, metrics.jsonl, status.json and checkpoints/.
    #[arg(long)]
    out: std::path::PathBuf,
    /// Continue from the newest valid checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Continue from the newest valid checkpoint before this many tokens (to write a lost branch
    /// point again; the rest of the run is reproduced bit for bit). Implies --resume.
    #[arg(long, value_name = "TOKENS")]
    resume_before_tokens: Option<u64>,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// No progress output on stderr.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PlanArgs {
    sweep: std::path::PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    sweep: std::path::PathBuf,
    /// Root folder; the sweep writes into OUT/<sweep name>.
    #[arg(long, default_value = "results")]
    out: std::path::PathBuf,
    /// Workers at a time [default: devices × runs-per-device].
    #[arg(long)]
    parallel: Option<usize>,
    /// cpu, or GPUs as cuda:0,1,2 (each worker sees one GPU).
    #[arg(long, default_value = "cpu")]
    devices: String,
    /// Concurrent runs per device.
    #[arg(long, default_value_t = 1)]
    runs_per_device: usize,
    /// Retries of a failed run [default: 2]; Slurm: requeues of a task after a failure, time limit
    /// or preemption [default: the [slurm] block's max_requeues, else 3].
    #[arg(long)]
    max_retries: Option<usize>,
    #[arg(long)]
    quiet: bool,
    /// Where the runs execute: here (local) or as Slurm job arrays (slurm).
    #[arg(long, value_enum, default_value = "local")]
    executor: Executor,
    #[command(flatten)]
    slurm: SlurmArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Executor {
    Local,
    Slurm,
}

/// Overrides of the sweep file's [slurm] block (with --executor slurm).
#[derive(Args)]
#[command(next_help_heading = "Slurm (with --executor slurm; each overrides the sweep file's [slurm] key)")]
struct SlurmArgs {
    #[arg(long)]
    partition: Option<String>,
    #[arg(long)]
    account: Option<String>,
    #[arg(long)]
    qos: Option<String>,
    /// Time limit per task: "MM", "HH:MM:SS" or "D-HH:MM".
    #[arg(long)]
    time: Option<String>,
    #[arg(long)]
    gpus_per_task: Option<u32>,
    #[arg(long)]
    cpus_per_task: Option<u32>,
    /// Memory per node, e.g. 16G.
    #[arg(long)]
    mem: Option<String>,
    #[arg(long)]
    constraint: Option<String>,
    /// At most K tasks of an array at once.
    #[arg(long)]
    array_throttle: Option<u32>,
    /// An extra #SBATCH option (repeatable), e.g. --sbatch=--exclusive.
    #[arg(long = "sbatch", allow_hyphen_values = true)]
    sbatch_lines: Vec<String>,
    /// A shell line to run before the worker (repeatable), e.g. --setup "module load cuda".
    #[arg(long)]
    setup: Vec<String>,
    /// Seconds before the time limit at which the task is told to checkpoint [default: 120].
    #[arg(long)]
    signal_seconds: Option<u32>,
    /// Write the sbatch scripts into DIR/slurm/ without submitting them.
    #[arg(long)]
    dry_run: bool,
    /// Stay until Slurm has finished the sweep, then collect its table.
    #[arg(long)]
    wait: bool,
}

#[derive(Args)]
struct DirArgs {
    /// The sweep directory (results/<name>).
    dir: std::path::PathBuf,
    #[arg(long)]
    json: bool,
}

fn parse_devices(s: &str) -> anyhow::Result<Vec<DeviceSpec>> {
    if let Some(list) = s.strip_prefix("cuda:") {
        return list
            .split(',')
            .map(|i| i.trim().parse().map(DeviceSpec::Cuda).map_err(|_| anyhow::anyhow!("--devices {s}: `{i}` is not a GPU index")))
            .collect();
    }
    s.split(',').map(|d| d.parse::<DeviceSpec>().map_err(anyhow::Error::msg)).collect()
}

#[derive(Subcommand)]
enum FitCommand {
    /// The data-model law L(N, D) = E + A/N^α + B/D^β (Chinchilla approach 3), with bootstrap
    /// intervals and the compute-optimal tokens per parameter.
    #[command(after_help = "Examples:\n  windtunnel fit law --config analysis/chinchilla.toml\n  \
                            windtunnel fit law --input results.csv --n N --tokens D --loss loss --bootstrap 1000 --budgets 1e21,5.76e23\n  \
                            windtunnel fit law --input analysis/data/chinchilla_svg_extracted_data.csv --n 'Model Size' \\\n    \
                            --flops 'Training FLOP' --loss loss --drop-highest 5 --holdout largest --json")]
    Law(FitLawArgs),
    /// Learning-rate transfer: the optimal lr per width (parabola in log lr) and its drift with width.
    #[command(after_help = "Examples:\n  windtunnel fit lr --input results/quickstart\n  \
                            windtunnel fit lr --input scan.csv --lr lr --width width --loss final_eval_loss --group parameterization --json")]
    Lr(FitLrArgs),
    /// Batch size: MiniCPM's bs_opt = k / L^γ from training curves, and DeepSeek's η_opt(C), B_opt(C).
    #[command(after_help = "Examples:\n  windtunnel fit batch --input results/batch-sweep/runs\n  \
                            windtunnel fit batch --input curves.csv --runs-table results/batch-sweep/table.csv --json")]
    Batch(FitBatchArgs),
}

#[derive(Args)]
struct FitLrArgs {
    /// A CSV or Parquet table, or a sweep directory (its table.csv).
    #[arg(long)]
    input: std::path::PathBuf,
    #[arg(long, default_value = "lr")]
    lr: String,
    #[arg(long, default_value = "width")]
    width: String,
    /// Depth column (used when present).
    #[arg(long, default_value = "depth")]
    depth: String,
    #[arg(long, default_value = "final_eval_loss")]
    loss: String,
    /// Analyse each value of this column separately (when present).
    #[arg(long, default_value = "parameterization")]
    group: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FitBatchArgs {
    /// A folder of run directories (their metrics.jsonl), or a CSV with batch_size, tokens, loss.
    #[arg(long)]
    input: std::path::PathBuf,
    /// Use training loss instead of eval loss for the curves.
    #[arg(long)]
    train_loss: bool,
    /// A table of finished runs (flops, lr, batch_size, loss column) for DeepSeek's laws.
    #[arg(long)]
    runs_table: Option<std::path::PathBuf>,
    #[arg(long, default_value = "final_eval_loss")]
    loss: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FitLawArgs {
    /// A fit definition (TOML, e.g. analysis/chinchilla.toml); flags given too override it.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// A CSV or Parquet table, or a sweep directory (its table.csv).
    #[arg(long, required_unless_present = "config")]
    input: Option<std::path::PathBuf>,
    /// Column of N (non-embedding parameters) [default: non_embedding_params].
    #[arg(long)]
    n: Option<String>,
    /// Column of D (training tokens) [default: tokens].
    #[arg(long, conflicts_with = "flops")]
    tokens: Option<String>,
    /// Column of C (training FLOPs); D = C / (6N).
    #[arg(long)]
    flops: Option<String>,
    /// Column of the final loss [default: final_eval_loss].
    #[arg(long)]
    loss: Option<String>,
    /// Only rows of this sweep grid (a sweep table's `grid` column).
    #[arg(long)]
    grid: Option<String>,
    /// Leave out the K highest-loss points.
    #[arg(long)]
    drop_highest: Option<usize>,
    /// Huber δ.
    #[arg(long)]
    delta: Option<f64>,
    /// Bootstrap resamples for intervals (0: none).
    #[arg(long)]
    bootstrap: Option<usize>,
    /// Refit each resample from the full 4500-start grid instead of from the full fit.
    #[arg(long)]
    bootstrap_full_grid: bool,
    #[arg(long)]
    seed: Option<u64>,
    /// Compute budgets in FLOPs for the compute-optimal N, D and D/N, comma-separated.
    #[arg(long, value_delimiter = ',')]
    budgets: Option<Vec<f64>>,
    /// Fit without the largest model (`largest`) or budget (`largest-budget`) and predict it.
    #[arg(long)]
    holdout: Option<windtunnel::fit::report::Holdout>,
    /// Predict the loss at N:D, comma-separated (e.g. 1e9:2e10).
    #[arg(long, value_delimiter = ',', value_parser = parse_pair)]
    predict: Option<Vec<[f64; 2]>>,
    /// Also write the report as JSON to this file [default for a sweep directory: DIR/fits/law.json].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

fn parse_pair(s: &str) -> Result<[f64; 2], String> {
    let (n, d) = s.split_once(':').ok_or_else(|| format!("`{s}`: write N:D, e.g. 1e9:2e10"))?;
    let num = |x: &str| match x.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err(format!("`{x}`: N and D must be positive finite counts, e.g. 1e9:2e10")),
        Err(_) => Err(format!("`{x}` is not a number")),
    };
    Ok([num(n)?, num(d)?])
}

impl FitLawArgs {
    fn definition(&self) -> anyhow::Result<windtunnel::fit::report::LawDefinition> {
        use windtunnel::fit::report::LawDefinition;
        let mut def = match &self.config {
            Some(path) => LawDefinition::load(path)?,
            // Without --config the defaults are the results table's columns.
            None => LawDefinition::for_table(self.input.clone().context("--input is required")?),
        };
        if let Some(v) = &self.input {
            def.input = v.clone();
        }
        if let Some(v) = &self.n {
            def.n = v.clone();
        }
        if let Some(v) = &self.loss {
            def.loss = v.clone();
        }
        if self.tokens.is_some() || self.flops.is_some() {
            def.tokens = self.tokens.clone();
            def.flops = self.flops.clone();
        }
        if let Some(v) = self.drop_highest {
            def.drop_highest = v;
        }
        if self.grid.is_some() {
            def.grid = self.grid.clone();
        }
        if let Some(v) = self.delta {
            def.delta = v;
        }
        if let Some(v) = self.bootstrap {
            def.bootstrap = v;
        }
        def.bootstrap_full_grid |= self.bootstrap_full_grid;
        if let Some(v) = self.seed {
            def.seed = v;
        }
        if let Some(v) = &self.budgets {
            def.budgets = v.clone();
        }
        if self.holdout.is_some() {
            def.holdout = self.holdout;
        }
        if let Some(v) = &self.predict {
            def.predict = v.clone();
        }
        Ok(def)
    }
}

#[derive(Subcommand)]
enum DataCommand {
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
struct SynthArgs {
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

/// The synthetic language's parameters (see `src/data/synthetic.rs`).
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
    #[arg(long, default_value_t = 0)]
    language_seed: u64,
}

impl SyntheticArgs {
    fn config(&self) -> anyhow::Result<SyntheticConfig> {
        let order_weights = match &self.order_weights {
            Some(w) => w.clone(),
            None if self.max_order == SyntheticConfig::default().max_order => SyntheticConfig::default().order_weights,
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
struct InspectArgs {
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

#[derive(Args)]
struct ShapeArgs {
    /// A named shape: minicpm-1.2b, minicpm-2.4b, or a MiniCPM Table 8 proxy (9m, 36m, 66m, 109m, 166m, 241m, 499m).
    #[arg(long, conflicts_with_all = ["width", "depth", "heads", "kv_heads", "ffn_width"])]
    preset: Option<String>,
    /// d_model.
    #[arg(long, required_unless_present_any = ["preset", "list"])]
    width: Option<usize>,
    /// Number of transformer blocks.
    #[arg(long, required_unless_present_any = ["preset", "list"])]
    depth: Option<usize>,
    /// Query heads (must divide width).
    #[arg(long, required_unless_present_any = ["preset", "list"])]
    heads: Option<usize>,
    /// Key/value heads for grouped-query attention (must divide heads) [default: heads].
    #[arg(long)]
    kv_heads: Option<usize>,
    /// SwiGLU hidden size [default: 2.5 × width].
    #[arg(long)]
    ffn_width: Option<usize>,
    /// Vocabulary size [default: the preset's, or MiniCPM-1.2B's 73,440].
    #[arg(long)]
    vocab: Option<usize>,
}

#[derive(Args)]
struct MupArgs {
    /// mup (MiniCPM's µP) or sp (standard parameterization).
    #[arg(long, default_value = "mup")]
    parameterization: Parameterization,
    /// µP base width d_base (m = width / base_width).
    #[arg(long)]
    base_width: Option<usize>,
    #[arg(long, default_value_t = 12.0)]
    scale_emb: f64,
    #[arg(long, default_value_t = 1.4)]
    scale_depth: f64,
    #[arg(long, default_value_t = 0.1)]
    init_std: f64,
}

impl MupArgs {
    fn config(&self, default_base_width: usize) -> MupConfig {
        MupConfig {
            parameterization: self.parameterization,
            base_width: self.base_width.unwrap_or(default_base_width),
            scale_emb: self.scale_emb,
            scale_depth: self.scale_depth,
            init_std: self.init_std,
        }
    }
}

#[derive(Args)]
struct ModelArgs {
    #[command(flatten)]
    shape: ShapeArgs,
    /// Sequence length for the attention FLOPs and the memory estimate.
    #[arg(long, default_value_t = 4096)]
    seq_len: usize,
    /// Sequences per batch for the training-memory estimate.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    #[command(flatten)]
    mup: MupArgs,
    /// List the presets.
    #[arg(long)]
    list: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CoordCheckArgs {
    /// Widths to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256,512")]
    widths: Vec<usize>,
    /// Optimizer steps (activations are recorded before the first and after each).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    depth: usize,
    /// Head dimension, fixed across widths.
    #[arg(long, default_value_t = 32)]
    head_dim: usize,
    #[arg(long, default_value_t = 256)]
    vocab: usize,
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Base learning rate (Adam; hidden matrices get lr/m under µP).
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    mup: MupArgs,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    // Output piped into `head` ends quietly, as with other Unix tools, instead of a panic on EPIPE.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    windtunnel::alloc::tune_for_training();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            windtunnel::stderr_line!("error: {e:#}");
            let cannot_start = e.downcast_ref::<windtunnel::train::run::CannotStart>().is_some();
            ExitCode::from(if cannot_start { windtunnel::train::run::EXIT_CANNOT_START } else { windtunnel::train::run::EXIT_FAILED })
        }
    }
}

/// Runs a command; the exit code is 0 unless a command says otherwise (train: diverged, interrupted).
fn run(cli: Cli) -> anyhow::Result<u8> {
    if let Command::Train(args) = &cli.command {
        let options = TrainOptions { device: args.device, resume: args.resume, resume_before_tokens: args.resume_before_tokens, quiet: args.quiet };
        let summary = windtunnel::train::run::train(&args.run_file, &args.out, &options)?;
        // The run is done and written; an unwritable stdout must not turn it into a panic.
        use std::io::Write as _;
        let text = if args.json { serde_json::to_string_pretty(&summary)? } else { summary.to_string() };
        writeln!(std::io::stdout(), "{text}").context("cannot write the summary to stdout")?;
        return Ok(summary.outcome.exit_code());
    }
    run_simple(cli).map(|()| 0)
}

fn run_simple(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(_) => unreachable!("handled in run"),
        Command::Model(args) => model(args),
        Command::CoordCheck(args) => coord(args),
        Command::Plan(args) => {
            let spec = windtunnel::sweep::spec::SweepSpec::load(&args.sweep)?;
            let plan = windtunnel::sweep::plan::plan(&spec).with_context(|| format!("planning {}", args.sweep.display()))?;
            if args.json {
                print_json(&plan)
            } else {
                println!("{plan}");
                Ok(())
            }
        }
        Command::Run(args) => run_sweep(args),
        Command::Status(args) => {
            let status = windtunnel::sweep::collect::status_with_slurm(&args.dir)?;
            if args.json {
                print_json(&status)
            } else {
                print!("{status}");
                Ok(())
            }
        }
        Command::Cancel(args) => {
            let cancelled = windtunnel::sweep::slurm::cancel(&args.dir)?;
            if args.json {
                print_json(&cancelled)
            } else {
                println!(
                    "cancelled Slurm job(s) {} of {}; interrupted runs keep their checkpoints: resume with `windtunnel run SWEEP.toml --executor slurm`",
                    cancelled.job_ids.join(", "),
                    args.dir.display()
                );
                Ok(())
            }
        }
        Command::Collect(args) => {
            let summary = windtunnel::sweep::collect::collect(&args.dir)?;
            if args.json {
                print_json(&summary)
            } else {
                println!(
                    "wrote {} and {} ({} rows; {} runs not finished)",
                    summary.table.display(),
                    summary.parquet.display(),
                    summary.rows,
                    summary.unfinished
                );
                summary.warnings.iter().for_each(|w| windtunnel::stderr_line!("warning: {w}"));
                Ok(())
            }
        }
        Command::Fit(FitCommand::Law(args)) => {
            let definition = args.definition()?;
            let report = windtunnel::fit::report::fit_law(&definition)?;
            // A sweep directory keeps its fits beside its table: DIR/fits/law.json.
            let out = args.out.clone().or_else(|| definition.input.is_dir().then(|| definition.input.join("fits").join("law.json")));
            if let Some(out) = &out {
                windtunnel::fsutil::atomic_write(out, serde_json::to_string_pretty(&report)?.as_bytes())?;
            }
            if args.json {
                print_json(&report)
            } else {
                println!("{report}");
                Ok(())
            }
        }
        Command::Fit(FitCommand::Lr(args)) => {
            let columns =
                windtunnel::fit::commands::LrColumns { lr: args.lr, width: args.width, depth: Some(args.depth), loss: args.loss, group: Some(args.group) };
            let report = windtunnel::fit::commands::fit_lr(&args.input, &columns, args.seed)?;
            if args.input.is_dir() {
                windtunnel::fsutil::atomic_write(&args.input.join("fits").join("lr.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
            }
            if args.json {
                print_json(&report)
            } else {
                print!("{report}");
                Ok(())
            }
        }
        Command::Fit(FitCommand::Batch(args)) => {
            let runs = args.runs_table.as_deref().map(|t| (t, args.loss.as_str()));
            // A sweep directory: its batch-size grid's curves, and the report kept in DIR/fits/.
            let sweep = args.input.join("plan.json").exists() && runs.is_none() && !args.train_loss;
            let report = if sweep {
                windtunnel::fit::commands::fit_batch_sweep(&args.input)?
            } else {
                windtunnel::fit::commands::fit_batch(&args.input, !args.train_loss, runs)?
            };
            if sweep {
                windtunnel::fsutil::atomic_write(&args.input.join("fits").join("batch.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
            }
            if args.json {
                print_json(&report)
            } else {
                print!("{report}");
                Ok(())
            }
        }
        Command::Plot(args) => {
            let summary = match &args.coord_check {
                Some(file) => windtunnel::plot::plot_coord_check(file, args.format, args.out.as_deref())?,
                None => windtunnel::plot::plot_sweep(args.dir.as_deref().context("give a sweep directory or --coord-check FILE")?, args.format)?,
            };
            if args.json {
                print_json(&summary)
            } else {
                print!("{summary}");
                Ok(())
            }
        }
        Command::Report(args) => {
            let out = args.out.unwrap_or_else(|| args.dir.join("report.html"));
            let report = windtunnel::report::write_report(&args.dir, &out)?;
            println!("{report}");
            Ok(())
        }
        Command::Export(args) => {
            use windtunnel::export::{export, ExportRequest, Target};
            let target = match (args.budget_flops, args.target_params) {
                (Some(c), _) => Target::BudgetFlops(c),
                (None, Some(n)) => Target::Params(n),
                (None, None) => anyhow::bail!("give --budget-flops C or --target-params N"),
            };
            let request = ExportRequest {
                dir: args.dir.clone(),
                target,
                vocab: args.vocab,
                seq_len: args.seq_len,
                gqa_group: args.gqa_group,
                aspect_ratio: args.aspect_ratio,
                lr_sweep: args.lr_sweep,
                batch_sweep: args.batch_sweep,
            };
            let exported = export(&request)?;
            let out = args.out.unwrap_or_else(|| args.dir.join("export"));
            exported.write(&out)?;
            if args.json {
                print_json(&exported.recipe)
            } else {
                print!("{exported}");
                println!("wrote {} and {}", out.join("config.json").display(), out.join("recipe.json").display());
                Ok(())
            }
        }
        Command::Data(DataCommand::Synth(args)) => {
            let report = tools::synth(&args.language.config()?, args.seed, args.tokens, args.document_tokens, &args.out)?;
            if args.json {
                print_json(&report)
            } else {
                println!("{report}");
                Ok(())
            }
        }
        Command::Data(DataCommand::Inspect(args)) => {
            let report = tools::inspect(&args.file, args.text, args.dtype, args.vocab)?;
            if args.json {
                print_json(&report)
            } else {
                println!("{report}");
                Ok(())
            }
        }
    }
}

fn run_sweep(args: RunArgs) -> anyhow::Result<()> {
    use windtunnel::sweep::exec::ExecOptions;
    if args.executor == Executor::Slurm {
        return run_slurm(args);
    }
    let options = ExecOptions {
        parallel: args.parallel,
        devices: parse_devices(&args.devices)?,
        runs_per_device: args.runs_per_device,
        max_retries: args.max_retries.unwrap_or(2),
        worker: std::env::current_exe().context("cannot find the windtunnel binary")?,
        quiet: args.quiet,
    };
    let out = windtunnel::sweep::run(&args.sweep, &args.out, &options)?;
    let (s, t) = (&out.exec, &out.table);
    windtunnel::stderr_line!(
        "{}: {} done, {} diverged, {} failed, {} kept from before; {} ({} rows)",
        out.dir.display(),
        s.done,
        s.diverged,
        s.failed,
        s.skipped_already_done,
        t.table.display(),
        t.rows
    );
    t.warnings.iter().for_each(|w| windtunnel::stderr_line!("warning: {w}"));
    if let Some(sig) = s.stopped_by_signal {
        windtunnel::stderr_line!("stopped by signal {sig}; run the same command again to resume");
        std::process::exit(128 + sig);
    }
    anyhow::ensure!(s.failed == 0, "{} run(s) failed; see their worker.log in {}/runs/", s.failed, out.dir.display());
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn model(args: ModelArgs) -> anyhow::Result<()> {
    if args.list {
        if args.json {
            let list: Vec<_> = PRESETS.iter().map(|p| ModelReport::new(Some(p.name), p.shape, args.seq_len, args.batch_size, args.mup.config(256))).collect();
            return print_json(&list);
        }
        println!("{:<14} {:>6} {:>6} {:>6} {:>9} {:>8} {:>15}  description", "preset", "width", "depth", "heads", "kv_heads", "ffn", "N");
        for p in PRESETS {
            let s = p.shape;
            println!(
                "{:<14} {:>6} {:>6} {:>6} {:>9} {:>8} {:>15}  {}",
                p.name,
                s.width,
                s.depth,
                s.heads,
                s.kv_heads,
                s.ffn_width,
                windtunnel::format::thousands(s.non_embedding_params()),
                p.description
            );
        }
        return Ok(());
    }
    let a = &args.shape;
    let shape = match &a.preset {
        Some(name) => {
            let mut s = shape::preset(name)?;
            if let Some(v) = a.vocab {
                s.vocab = v;
            }
            s
        }
        None => {
            let width = a.width.context("--width is required without --preset")?;
            let heads = a.heads.context("--heads is required without --preset")?;
            ModelShape {
                width,
                depth: a.depth.context("--depth is required without --preset")?,
                heads,
                kv_heads: a.kv_heads.unwrap_or(heads),
                ffn_width: a.ffn_width.unwrap_or(width * 5 / 2),
                vocab: a.vocab.unwrap_or(shape::MINICPM_1_2B_VOCAB),
            }
        }
    };
    shape.validate().context("impossible model shape")?;
    anyhow::ensure!(args.seq_len > 0, "--seq-len must be at least 1");
    let mup = args.mup.config(256);
    mup.validate().map_err(anyhow::Error::msg)?;
    let report = ModelReport::new(a.preset.as_deref(), shape, args.seq_len, args.batch_size, mup);
    if args.json {
        print_json(&report)
    } else {
        println!("{report}");
        Ok(())
    }
}

fn coord(args: CoordCheckArgs) -> anyhow::Result<()> {
    let smallest = args.widths.iter().copied().min().unwrap_or(64);
    let options = CoordCheckOptions {
        widths: args.widths,
        steps: args.steps,
        mup: args.mup.config(smallest),
        depth: args.depth,
        head_dim: args.head_dim,
        vocab: args.vocab,
        seq_len: args.seq_len,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
    };
    let result = coord_check(&options, args.device)?;
    if args.json {
        print_json(&result)
    } else {
        println!("{result}");
        Ok(())
    }
}

fn run_slurm(args: RunArgs) -> anyhow::Result<()> {
    use windtunnel::sweep::slurm::{SlurmOptions, SlurmSpec};
    let a = args.slurm;
    let spec = SlurmSpec {
        partition: a.partition,
        account: a.account,
        qos: a.qos,
        time: a.time,
        gpus_per_task: a.gpus_per_task,
        cpus_per_task: a.cpus_per_task,
        mem: a.mem,
        constraint: a.constraint,
        array_throttle: a.array_throttle,
        sbatch: a.sbatch_lines,
        setup: a.setup,
        signal_seconds: a.signal_seconds,
        max_requeues: args.max_retries.map(|r| r as u32),
        windtunnel: None,
    };
    let options = SlurmOptions {
        spec,
        worker: std::env::current_exe().context("cannot find the windtunnel binary")?,
        dry_run: a.dry_run,
        wait: a.wait,
        quiet: args.quiet,
    };
    let out = windtunnel::sweep::run_slurm(&args.sweep, &args.out, &options)?;
    windtunnel::stderr_line!("{}: {}", out.dir.display(), out.submitted);
    match &out.finished {
        Some((status, table)) => {
            eprint!("{status}");
            windtunnel::stderr_line!("{} ({} rows)", table.table.display(), table.rows);
        }
        None if !a.dry_run => {
            windtunnel::stderr_line!("watch it with `windtunnel status {}`; stop it with `windtunnel cancel {}`", out.dir.display(), out.dir.display())
        }
        None => {}
    }
    Ok(())
}
