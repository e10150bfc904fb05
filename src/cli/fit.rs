//! `windtunnel fit law`, `fit lr`, `fit batch`, `fit mixture` and the others. On a sweep directory each keeps its report in
//! `DIR/fits/` (see `windtunnel::results::saved`), where `plot`, `report` and `export` read it back.

use anyhow::Context;
use clap::{Args, Subcommand};

use super::emit;
use windtunnel::fit::allocation::{AllocationOptions, CurveColumns};
use windtunnel::fit::definition::LawFlags;
use windtunnel::fit::hparams::{fit_hparams, HparamColumns};
use windtunnel::fit::mixture::data::MixtureColumns;
use windtunnel::fit::mixture::optimum::ConstraintSpec;
use windtunnel::fit::mixture::report::MixtureOptions;
use windtunnel::fit::scans::{BatchColumns, LrColumns};
use windtunnel::layout::{FitKind, SweepDir};
use windtunnel::results::inputs::{fit_batch, fit_law, fit_lr, observations};
use windtunnel::results::mixture::{fit_mixture_at, MixtureInputs};
use windtunnel::results::saved;

#[derive(Subcommand)]
pub enum FitCommand {
    /// The data-model law L(N, D) = E + A/N^α + B/D^β (Chinchilla approach 3), with bootstrap
    /// intervals and the compute-optimal tokens per parameter.
    #[command(after_help = "Examples:\n  windtunnel fit law --config analysis/chinchilla.toml\n  \
                            windtunnel fit law --input results.csv --n N --tokens D --loss loss --bootstrap 1000 --budgets 1e21,5.76e23\n  \
                            windtunnel fit law --input analysis/data/chinchilla_svg_extracted_data.csv --n 'Model Size' \\\n    \
                            --flops 'Training FLOP' --loss loss --drop-highest 5 --holdout largest --json")]
    Law(Box<FitLawArgs>),
    /// Learning-rate transfer: the optimal lr per width (parabola in log lr) and its drift with width.
    #[command(after_help = "Examples:\n  windtunnel fit lr --input results/quickstart\n  \
                            windtunnel fit lr --input scan.csv --lr lr --width width --loss final_eval_loss --group parameterization --json")]
    Lr(FitLrArgs),
    /// Batch size: MiniCPM's bs_opt = k / L^γ from training curves, and DeepSeek's η_opt(C), B_opt(C).
    #[command(after_help = "Examples:\n  windtunnel fit batch --input results/batch-sweep/runs\n  \
                            windtunnel fit batch --input curves.csv --runs-table results/batch-sweep/table.csv --json")]
    Batch(FitBatchArgs),
    /// The compute-optimal allocation by Chinchilla's three approaches: the envelope of training
    /// curves (on a WSD sweep, of each size's decay ends), IsoFLOP profiles and the fitted law,
    /// with bootstrap intervals and one chart.
    #[command(after_help = "Examples:\n  windtunnel fit allocation --input results/quickstart\n  \
                            windtunnel fit allocation --input results/synthetic-allocation --budgets 1e10,1e11 --bootstrap 500 --json\n  \
                            windtunnel fit allocation --input curves.csv --run run --n N --tokens D --loss loss --chart approaches.svg\n\n\
                            Writes DIR/plots/allocation-approaches.svg (N_opt against compute, the three frontiers).")]
    Allocation(FitAllocationArgs),
    /// Learning-rate and batch-size laws in N and D: per (N, D) cell the optimal lr and batch size,
    /// then lr_opt = c·N^a·D^b and B_opt = c·D^b (Step Law) and DeepSeek's forms in C.
    #[command(after_help = "Examples:\n  windtunnel fit hparams --input results/step-law-hparams\n  \
                            windtunnel fit hparams --input runs.csv --n N --tokens D --lr lr --batch bsz --loss loss --json")]
    Hparams(FitHparamsArgs),
    /// The fits a sweep keeps in DIR/fits/ (plot, report and export use them), with the command
    /// that saved each and the law's definition.
    #[command(after_help = "Examples:\n  windtunnel fit list results/quickstart\n  windtunnel fit list results/quickstart --json")]
    List(FitKeptArgs),
    /// Forget the fits a sweep keeps: plot, report and export then fit the default definition.
    #[command(after_help = "Examples:\n  windtunnel fit clear results/quickstart\n  windtunnel fit clear results/quickstart --kind law")]
    Clear(FitClearArgs),
    /// The schedule-aware curve law (multi-power, or annealing): every evaluation of every run,
    /// each run's learning rate at every step; predicts held-out runs, schedules never run, and
    /// the best decay.
    #[command(after_help = "Examples:\n  windtunnel fit curve --input results/curve-law\n  \
                            windtunnel fit curve --input results/curve-law --fit-runs 'trunk|exp-10/branch@(98304|393216)' --predict-runs 'branch|cosine'\n  \
                            windtunnel fit curve --input results/curve-law --predict-schedule 'wsd:tokens=786432,decay_fraction=0.2,decay=1-sqrt'\n  \
                            windtunnel fit curve --input results/curve-law --optimize-decay --tokens 786432\n  \
                            windtunnel fit curve --input wandb.csv --run name --step _step --lr lr --loss val_loss --form annealing --chart curves.svg --json\n\n\
                            A sweep's runs are named `ID wWIDTH GRID/KIND@TOKENS` (a branch: @ its branch point); --fit-runs and \
                            --predict-runs match those names. On a sweep the chart goes to DIR/plots/curve-law.svg.")]
    Curve(Box<FitCurveArgs>),
    /// Mixture laws: which data mixture to train the full run on, from runs whose domain weights
    /// differ. Fits RegMix's linear regression, the data mixing law L = c + k·exp(Σ t_j·r_j) and
    /// gradient-boosted trees, one per evaluation set; cross-validates each (Spearman ρ, RMSE) and
    /// uses the best; prints the optimal mixture under the constraints with a bootstrap interval
    /// beside the best mixture tried.
    #[command(after_help = "Examples:\n  windtunnel fit mixture --input results/mixture-runs\n  \
                            windtunnel fit mixture --input results/mixture-runs --objective 'web=0.5,code=0.5' --min code=0.1 \\\n    \
                            --available web=2e9,code=5e8,books=1e9 --target-tokens 1e10 --max-epochs 4\n  \
                            windtunnel fit mixture --input analysis/data/regmix_train_mixture_1m.csv --losses analysis/data/regmix_train_pile_loss_1m.csv \\\n    \
                            --key index --weights '^train_the_pile_' --loss '^metric/the_pile_(.*)_val_loss$' --objective pile_cc=1 \\\n    \
                            --predict analysis/data/regmix_test_mixture_1m.csv --predict-out predicted.csv --json\n\n\
                            On a sweep directory the report is kept in DIR/fits/mixture.json. A domain is named by the weight regex's first \
                            group, else by its column less the matched text (`weight/web` is `web`); evaluation sets likewise.")]
    Mixture(Box<FitMixtureArgs>),
}

#[derive(Args)]
pub struct FitMixtureArgs {
    /// A sweep directory (its `weight/<domain>` and `eval/<set>` columns), or a CSV or Parquet table
    /// with one row per run.
    #[arg(long)]
    input: std::path::PathBuf,
    /// A second table with the runs' losses, joined to --input on the --key column.
    #[arg(long, value_name = "TABLE")]
    losses: Option<std::path::PathBuf>,
    /// The column naming each run's mixture (joins --losses; names the rows of --predict) [default:
    /// `mixture`, else `run_id`].
    #[arg(long, value_name = "COLUMN")]
    key: Option<String>,
    /// The weight columns, one per domain (a regular expression).
    #[arg(long, value_name = "REGEX", default_value = windtunnel::fit::mixture::data::WEIGHTS)]
    weights: regex::Regex,
    /// The loss columns, one per evaluation set (a regular expression) [default: `^eval/`, else `loss`].
    #[arg(long, value_name = "REGEX")]
    loss: Option<regex::Regex>,
    /// How far from 1 a run's weights may sum (a rounded table); they are rescaled to sum to 1.
    #[arg(long, default_value_t = MixtureColumns::DEFAULT_SUM_TOLERANCE)]
    sum_tolerance: f64,
    /// The form: linear, mixing-law or trees [default: the best by cross-validation].
    #[arg(long)]
    form: Option<windtunnel::fit::mixture::model::MixtureForm>,
    /// What to minimise: one evaluation set, or a weighted sum, e.g. 'web=0.5,code=0.5' [default:
    /// the mean over every set].
    #[arg(long, value_name = "SET=WEIGHT,...", value_delimiter = ',', value_parser = parse_named)]
    objective: Vec<(String, f64)>,
    /// A domain's lowest weight, e.g. 'code=0.1,books=0.05'.
    #[arg(long, value_name = "DOMAIN=WEIGHT,...", value_delimiter = ',', value_parser = parse_named)]
    min: Vec<(String, f64)>,
    /// A domain's highest weight, e.g. 'web=0.6'.
    #[arg(long, value_name = "DOMAIN=WEIGHT,...", value_delimiter = ',', value_parser = parse_named)]
    max: Vec<(String, f64)>,
    /// The tokens each domain has, e.g. 'web=2e9,code=5e8': with --target-tokens and --max-epochs,
    /// a domain's weight is at most available × max_epochs / target_tokens.
    #[arg(long, value_name = "DOMAIN=TOKENS,...", value_delimiter = ',', value_parser = parse_named)]
    available: Vec<(String, f64)>,
    /// The planned run's training tokens.
    #[arg(long, value_name = "TOKENS")]
    target_tokens: Option<f64>,
    /// The most times the planned run may repeat a domain's tokens.
    #[arg(long, default_value_t = ConstraintSpec::DEFAULT_MAX_EPOCHS)]
    max_epochs: f64,
    /// Let the optimum give a domain more weight than any run did (the models have no data there).
    #[arg(long)]
    extrapolate: bool,
    /// Folds of the cross-validation.
    #[arg(long, default_value_t = MixtureOptions::default().folds)]
    folds: usize,
    /// Bootstrap refits over runs, for the optimum's interval.
    #[arg(long, default_value_t = MixtureOptions::default().bootstrap)]
    bootstrap: usize,
    /// Sampled candidate mixtures the optimum is sought among.
    #[arg(long, default_value_t = MixtureOptions::default().candidates)]
    candidates: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A table of mixtures (CSV or Parquet, the same weight columns) to predict the objective of.
    #[arg(long, value_name = "TABLE")]
    predict: Option<std::path::PathBuf>,
    /// Write --predict's predictions here as CSV: its key column, the weights, `predicted_objective`.
    #[arg(long, value_name = "FILE", requires = "predict")]
    predict_out: Option<std::path::PathBuf>,
    /// Also write the report as JSON to this file [default for a sweep directory: DIR/fits/mixture.json].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

/// `NAME=VALUE` (a domain or evaluation set and a number).
fn parse_named(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s.split_once('=').ok_or_else(|| format!("`{s}`: write NAME=VALUE, e.g. web=0.5"))?;
    let value: f64 = value.trim().parse().map_err(|_| format!("`{s}`: `{value}` is not a number"))?;
    if !value.is_finite() {
        return Err(format!("`{s}`: the value must be finite"));
    }
    Ok((name.trim().to_string(), value))
}

fn fit_mixture(args: &FitMixtureArgs) -> anyhow::Result<u8> {
    let columns = MixtureColumns { weights: args.weights.clone(), losses: args.loss.clone(), key: args.key.clone(), sum_tolerance: args.sum_tolerance };
    anyhow::ensure!(args.sum_tolerance.is_finite() && args.sum_tolerance >= 0.0, "--sum-tolerance {}: a non-negative number", args.sum_tolerance);
    anyhow::ensure!(args.folds >= 2, "--folds {}: cross-validation needs at least 2 folds", args.folds);
    anyhow::ensure!(args.candidates >= 1, "--candidates {}: at least one", args.candidates);
    anyhow::ensure!(args.max_epochs.is_finite() && args.max_epochs > 0.0, "--max-epochs {}: a positive number", args.max_epochs);
    let constraints = ConstraintSpec {
        min: args.min.iter().cloned().collect(),
        max: args.max.iter().cloned().collect(),
        available: args.available.iter().cloned().collect(),
        target_tokens: args.target_tokens,
        max_epochs: args.max_epochs,
        extrapolate: args.extrapolate,
    };
    let options = MixtureOptions {
        form: args.form,
        objective: args.objective.clone(),
        constraints,
        folds: args.folds,
        bootstrap: args.bootstrap,
        candidates: args.candidates,
        seed: args.seed,
        progress: true,
    };
    let inputs =
        MixtureInputs { input: &args.input, losses: args.losses.as_deref(), predict: args.predict.as_deref(), predict_out: args.predict_out.as_deref() };
    let (report, _) = fit_mixture_at(&inputs, &columns, &options)?;
    saved::keep(&args.input, FitKind::Mixture, &report, args.out.as_deref())?;
    emit(&report, args.json)
}

#[derive(Args)]
pub struct FitCurveArgs {
    /// A sweep directory, or a long CSV or Parquet table with one row per logged step.
    #[arg(long)]
    input: std::path::PathBuf,
    /// The law: multi-power (Luo et al. 2025) or annealing (Tissue et al. 2024).
    #[arg(long, default_value = "multi-power")]
    form: windtunnel::fit::curve::form::CurveFormKind,
    /// One law over all model sizes: L0, A and α per size, the response to the decay (K, φ) shared.
    #[arg(long)]
    joint: bool,
    /// Fit only the runs whose name this regular expression matches [default: every finished run
    /// not predicted].
    #[arg(long, value_name = "REGEX")]
    fit_runs: Option<regex::Regex>,
    /// Predict the runs this matches (and that are not fitted) from the others, and compare. A
    /// schedule family (constant, cosine, WSD by decay shape) predicted here or by
    /// --predict-schedule that no fitted run belongs to gets a warning.
    #[arg(long, value_name = "REGEX")]
    predict_runs: Option<regex::Regex>,
    /// A schedule to predict for every group, e.g. 'wsd:tokens=786432,decay_fraction=0.1,decay=1-sqrt',
    /// 'cosine:tokens=786432,final_lr_fraction=0.1' or 'constant:steps=800' (repeatable; decay_fraction
    /// is the share of the whole run).
    #[arg(long = "predict-schedule", value_name = "SPEC")]
    predict_schedule: Vec<windtunnel::fit::curve::schedules::ScheduleRequest>,
    /// Find the decay shape and length that minimise the final loss at --tokens T (on a sweep) or
    /// --at-tokens T, with the gain over the sweep's own decay.
    #[arg(long)]
    optimize_decay: bool,
    /// The run length --optimize-decay optimises for (tokens; steps where the runs logged none).
    #[arg(long, value_name = "T")]
    at_tokens: Option<f64>,
    /// Table: the column naming each run.
    #[arg(long, default_value = "run")]
    run: String,
    /// Table: the step column.
    #[arg(long, default_value = "step")]
    step: String,
    /// Table: the learning rate at each step (linear between rows).
    #[arg(long, default_value = "lr")]
    lr: String,
    /// Table: the evaluated loss (empty where a step was not evaluated).
    #[arg(long, default_value = "loss")]
    loss: String,
    /// Table: the column of tokens seen (gives tokens per step). On a sweep: the run length for
    /// --optimize-decay.
    #[arg(long, value_name = "COL|T")]
    tokens: Option<String>,
    /// Table: fit each value of this column separately [default: one law over every run].
    #[arg(long)]
    group: Option<String>,
    /// Bootstrap refits over runs, for the intervals of --predict-schedule and --optimize-decay.
    #[arg(long, default_value_t = 100)]
    bootstrap: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to draw the chart [default on a sweep: DIR/plots/curve-law.svg; on a table: none].
    #[arg(long)]
    chart: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value = "svg")]
    format: windtunnel::plot::ImageFormat,
    #[arg(long)]
    json: bool,
    /// Print the time each stage took (reading, the points, the fit, the bootstrap, the
    /// predictions) on stderr. Without it, a fit that takes more than a few seconds prints a
    /// progress line every few seconds.
    #[arg(long)]
    verbose: bool,
}

/// `fit curve` on a sweep directory or a long table.
fn fit_curve(args: &FitCurveArgs) -> anyhow::Result<u8> {
    use windtunnel::fit::curve::{data, progress::Progress, report};
    let sweep = SweepDir::open(&args.input);
    let mut options = report::CurveOptions {
        form: args.form,
        joint: args.joint,
        fit_runs: args.fit_runs.clone(),
        predict_runs: args.predict_runs.clone(),
        bootstrap: args.bootstrap,
        seed: args.seed,
        schedules: args.predict_schedule.clone(),
        optimize_decay_tokens: None,
        reference_decay: None,
        progress: if args.verbose { Progress::Verbose } else { Progress::Lines },
    };
    anyhow::ensure!(
        args.bootstrap <= windtunnel::fit::definition::LawDefinition::MAX_BOOTSTRAP,
        "--bootstrap {}: at most {} resamples (a 95% interval settles within a few thousand)",
        args.bootstrap,
        windtunnel::fit::definition::LawDefinition::MAX_BOOTSTRAP
    );
    let started = std::time::Instant::now();
    let positive = |flag: &str, t: f64| if t.is_finite() && t >= 1.0 { Ok(t) } else { Err(anyhow::anyhow!("{flag} {t}: give a run length of at least 1")) };
    let (curves, name, chart) = if sweep.exists() {
        let results = windtunnel::results::SweepResults::load(sweep.root())?;
        let tokens = match &args.tokens {
            Some(t) => Some(
                t.parse::<f64>()
                    .ok()
                    .with_context(|| format!("--tokens {t}: on a sweep, --tokens is the run length for --optimize-decay (a number of tokens)"))?,
            ),
            None => None,
        };
        options.reference_decay = results.branch_decay();
        options.optimize_decay_tokens = args.at_tokens.or(tokens).map(|t| positive("--tokens", t)).transpose()?;
        let chart = args.chart.clone().unwrap_or_else(|| sweep.plots().join(format!("curve-law.{}", args.format.extension())));
        (results.loss_curves(), results.plan.name.clone(), Some(chart))
    } else {
        let columns = data::LongColumns {
            run: args.run.clone(),
            step: args.step.clone(),
            lr: args.lr.clone(),
            loss: args.loss.clone(),
            tokens: args.tokens.clone(),
            group: args.group.clone(),
        };
        options.optimize_decay_tokens = args.at_tokens.map(|t| positive("--at-tokens", t)).transpose()?;
        let name = args.input.file_stem().map_or("curves".into(), |s| s.to_string_lossy().to_string());
        (data::read_long_table(&args.input, &columns)?, name, args.chart.clone())
    };
    anyhow::ensure!(
        !args.optimize_decay || options.optimize_decay_tokens.is_some(),
        "--optimize-decay needs the run length: --tokens T on a sweep, --at-tokens T on a table"
    );
    if !args.optimize_decay {
        options.optimize_decay_tokens = None;
    }
    let took = |what: String, since: std::time::Instant| {
        if args.verbose {
            windtunnel::stderr_line!("fit curve: {what} in {:.2} s", since.elapsed().as_secs_f64());
        }
    };
    took(format!("read {} runs ({} steps)", curves.len(), curves.iter().map(|c| c.lr.len()).sum::<usize>()), started);
    let mut report = report::fit_curves(&curves, &options)?;
    if let Some(path) = chart {
        let drawing = std::time::Instant::now();
        windtunnel::plot::write_curve_chart(&name, &report, &path, args.format)?;
        took(format!("chart {}", path.display()), drawing);
        report.chart = Some(path);
    }
    emit(&report, args.json)
}

#[derive(Args)]
pub struct FitKeptArgs {
    /// The sweep directory.
    dir: std::path::PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct FitClearArgs {
    /// The sweep directory.
    dir: std::path::PathBuf,
    /// Only these fits: law, lr, batch, mixture (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',')]
    kind: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct FitHparamsArgs {
    /// A CSV or Parquet table, or a sweep directory.
    #[arg(long)]
    input: std::path::PathBuf,
    #[arg(long, default_value_t = HparamColumns::default().n)]
    n: String,
    #[arg(long, default_value_t = HparamColumns::default().tokens)]
    tokens: String,
    #[arg(long, default_value_t = HparamColumns::default().lr)]
    lr: String,
    #[arg(long, default_value_t = HparamColumns::default().batch)]
    batch: String,
    #[arg(long, default_value_t = HparamColumns::default().loss)]
    loss: String,
    /// The depth column: when the table has it and the cells span two or more depths, the
    /// learning-rate law gains a factor L^g (a table without the column is fitted without it).
    #[arg(long, default_value_t = HparamColumns::default().depth)]
    depth: String,
    /// Only the rows this filter keeps, e.g. `grid == lr-batch and N < 1e8` (comparisons on
    /// columns joined by `and`).
    #[arg(long = "where", value_name = "EXPR")]
    where_: Option<String>,
    /// Bootstrap resamples of the cells for the exponents' intervals.
    #[arg(long, default_value_t = 500)]
    bootstrap: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct FitAllocationArgs {
    /// A sweep directory (its runs' evaluation curves and final losses), or a CSV/Parquet table of
    /// curves: one row per evaluation, with --run, --n, --tokens and --loss columns.
    #[arg(long)]
    input: std::path::PathBuf,
    /// Table input: the column naming each run.
    #[arg(long, default_value_t = CurveColumns::default().run)]
    run: String,
    /// Table input: the column of N.
    #[arg(long, default_value_t = CurveColumns::default().n)]
    n: String,
    /// Table input: the column of tokens trained at the evaluation.
    #[arg(long, default_value_t = CurveColumns::default().tokens)]
    tokens: String,
    /// Table input: the column of the evaluation loss.
    #[arg(long, default_value_t = CurveColumns::default().loss)]
    loss: String,
    /// Table input: where to draw the chart (a sweep's goes to DIR/plots/).
    #[arg(long)]
    chart: Option<std::path::PathBuf>,
    /// Only the runs of this sweep grid [default: the grid of the sweep's `fit law`, else all].
    #[arg(long)]
    grid: Option<String>,
    /// Compute budgets in FLOPs for N_opt, D_opt and D/N, comma-separated.
    #[arg(long, value_delimiter = ',')]
    budgets: Vec<f64>,
    /// Bootstrap resamples of the runs for the intervals on a and b (approaches 1 and 2).
    #[arg(long, default_value_t = 200)]
    bootstrap: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Chart format.
    #[arg(long, value_enum, default_value = "svg")]
    format: windtunnel::plot::ImageFormat,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct FitLrArgs {
    /// A CSV or Parquet table, or a sweep directory (its results table, from its runs' files).
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
pub struct FitBatchArgs {
    /// A folder of run directories (their metrics.jsonl), or a CSV with batch_size, tokens, loss.
    #[arg(long)]
    input: std::path::PathBuf,
    /// Use training loss instead of eval loss for the curves.
    #[arg(long)]
    train_loss: bool,
    /// A table of finished runs (FLOPs, learning rate, batch size and loss columns) for DeepSeek's laws.
    #[arg(long)]
    runs_table: Option<std::path::PathBuf>,
    /// Runs table: the final-loss column that picks each budget's best run.
    #[arg(long, default_value_t = BatchColumns::default().loss)]
    loss: String,
    /// Runs table: the training-FLOPs column.
    #[arg(long, default_value_t = BatchColumns::default().flops)]
    flops: String,
    /// Runs table: the learning-rate column.
    #[arg(long, default_value_t = BatchColumns::default().lr)]
    lr: String,
    /// Curves CSV and runs table: the batch-size column.
    #[arg(long, default_value_t = BatchColumns::default().batch_size)]
    batch_size: String,
    /// Curves CSV: the column of tokens trained so far.
    #[arg(long, default_value_t = BatchColumns::default().tokens)]
    tokens: String,
    /// Curves CSV: the loss column.
    #[arg(long, default_value_t = BatchColumns::default().curve_loss)]
    curve_loss: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(mut_arg("input", |input| input.required_unless_present("config")))]
pub struct FitLawArgs {
    /// A fit definition (TOML, e.g. analysis/chinchilla.toml); flags given too override it.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// One loss floor E per value of this column (a data mixture, a tokenizer), A, B, α and β
    /// shared: L = E_g + A/N^α + B/D^β (the chinchilla form; uses --where, --bootstrap, --seed, --delta).
    #[arg(long, value_name = "COLUMN")]
    group_e: Option<String>,
    // Every field of the law's definition as a flag, --input to --predict.
    #[command(flatten)]
    law: LawFlags,
    /// On a sweep: fit the law to the decays the curve law predicts from every trunk evaluation
    /// (see `fit curve`), beside the law on the real branches; its intervals resample both the
    /// curve law's runs and the predicted points.
    #[arg(long)]
    from_curves: bool,
    /// With --from-curves: the runs the curve law is fitted on, e.g. 'trunk|branch@(98304|393216)'
    /// [default: every finished run].
    #[arg(long, value_name = "REGEX", requires = "from_curves")]
    curve_runs: Option<regex::Regex>,
    /// With --from-curves: use the trunks as if trained to T tokens only (their later evaluations
    /// and FLOPs left out, and the branches that would start later): what shorter trunks would
    /// have given.
    #[arg(long, value_name = "T", requires = "from_curves")]
    trunk_tokens: Option<u64>,
    /// Also write the report as JSON to this file [default for a sweep directory: DIR/fits/law.json].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn fit(command: FitCommand) -> anyhow::Result<u8> {
    match command {
        FitCommand::Curve(args) => fit_curve(&args),
        FitCommand::Mixture(args) => fit_mixture(&args),
        FitCommand::List(args) => emit(&saved::list(&SweepDir::open(&args.dir))?, args.json),
        FitCommand::Clear(args) => {
            let removed = saved::clear(&SweepDir::open(&args.dir), &args.kind)?;
            if args.json {
                return super::emit_json(&removed);
            }
            let names: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
            emit(&if names.is_empty() { "no saved fits to forget".to_string() } else { format!("forgot {}", names.join(", ")) }, false)
        }
        FitCommand::Law(args) => {
            let definition = args.law.definition(args.config.as_deref())?;
            if args.from_curves {
                let sweep = SweepDir::open(&definition.input);
                anyhow::ensure!(sweep.exists(), "--from-curves reads a sweep directory's runs; {} is not one", definition.input.display());
                // The law on the real branches it is compared with is this command's own definition
                // (its --grid, --where, ...), never one an earlier `fit law` saved.
                let mut branches = definition.clone();
                branches.input = sweep.root().to_path_buf();
                branches.bootstrap = saved::OUTPUTS_BOOTSTRAP;
                let results = windtunnel::results::SweepResults::load(sweep.root())?.with_law(saved::LawChoice::Given(Box::new(branches)));
                let budgets = if definition.budgets.is_empty() { vec![1e10] } else { definition.budgets.clone() };
                let options = windtunnel::results::curves::FromCurvesOptions {
                    curve_runs: args.curve_runs.clone(),
                    form: Default::default(),
                    joint: false,
                    bootstrap: definition.bootstrap.min(200),
                    seed: definition.seed,
                    budgets,
                    trunk_tokens: args.trunk_tokens,
                };
                return emit(&results.law_from_curves(&options)?, args.json);
            }
            if let Some(column) = &args.group_e {
                return emit(&windtunnel::fit::grouped::fit_grouped(&definition, &observations(&definition.input)?, column)?, args.json);
            }
            let report = fit_law(&definition)?;
            saved::keep(&definition.input, FitKind::Law, &report, args.out.as_deref())?;
            emit(&report, args.json)
        }
        FitCommand::Allocation(args) => {
            for &c in &args.budgets {
                anyhow::ensure!(c.is_finite() && c > 0.0, "--budgets: {c} is not a positive FLOP count");
            }
            let options = AllocationOptions { budgets: args.budgets, bootstrap: args.bootstrap, level: 0.95, seed: args.seed };
            let sweep = SweepDir::open(&args.input);
            let report = if sweep.exists() {
                windtunnel::plot::allocation_sweep(sweep.root(), &options, args.grid.as_deref(), args.format)?
            } else {
                anyhow::ensure!(args.grid.is_none(), "--grid selects runs of a sweep directory; {} is a table", args.input.display());
                let columns = CurveColumns { run: args.run, n: args.n, tokens: args.tokens, loss: args.loss };
                windtunnel::plot::allocation_table(&args.input, &columns, &options, args.chart.as_deref(), args.format)?
            };
            emit(&report, args.json)?;
            // Printed first, so the reasons are there; then a failure a script can see.
            let none = [&report.approach_1, &report.approach_2, &report.approach_3].iter().all(|o| o.frontier().is_none());
            anyhow::ensure!(!none, "{}: none of the three approaches gave an allocation (each says why above)", args.input.display());
            Ok(0)
        }
        FitCommand::Hparams(args) => {
            let columns = HparamColumns { n: args.n, tokens: args.tokens, lr: args.lr, batch: args.batch, loss: args.loss, depth: args.depth };
            let table = observations(&args.input)?;
            emit(&fit_hparams(&table, &columns, args.where_.as_deref(), args.bootstrap, args.seed)?, args.json)
        }
        FitCommand::Lr(args) => {
            let columns = LrColumns { lr: args.lr, width: args.width, depth: Some(args.depth), loss: args.loss, group: Some(args.group) };
            let report = fit_lr(&args.input, &columns, args.seed)?;
            saved::keep(&args.input, FitKind::Lr, &report, None)?;
            emit(&report, args.json)
        }
        FitCommand::Batch(args) => {
            // A sweep directory: its batch-size grid's curves, and the report kept in DIR/fits/.
            let sweep = SweepDir::open(&args.input);
            if sweep.exists() && args.runs_table.is_none() && !args.train_loss {
                let results = windtunnel::results::SweepResults::load(sweep.root())?;
                let report = results.batch().clone().map_err(anyhow::Error::msg)?;
                saved::keep(&args.input, FitKind::Batch, &report, None)?;
                return emit(&report, args.json);
            }
            let columns =
                BatchColumns { batch_size: args.batch_size, tokens: args.tokens, curve_loss: args.curve_loss, flops: args.flops, lr: args.lr, loss: args.loss };
            emit(&fit_batch(&args.input, !args.train_loss, args.runs_table.as_deref(), &columns)?, args.json)
        }
    }
}
