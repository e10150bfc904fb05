//! The `windtunnel` command line: the argument types of each command (one file per group of
//! commands, beside the function that runs them), one dispatch line per command, and one helper
//! that prints a report as text or `--json`. Every command returns its exit code; the library
//! does the work, and saves what it makes next to the code that reads it back.

mod adapt;
mod data;
mod fit;
mod model;
mod outputs;
mod reference;
mod sweep;
mod train;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;

use windtunnel::process::{CannotStart, EXIT_CANNOT_START, EXIT_FAILED};

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
    /// Print a model shape's exact parameter counts, FLOPs per token, training memory and µP factors.
    #[command(after_help = "Examples:\n  windtunnel model --preset minicpm-1.2b\n  windtunnel model --preset 9m --json\n  \
                            windtunnel model --preset 9m --seq-len 512 --batch-size 8   (training memory at that batch)\n  \
                            windtunnel model --width 256 --depth 8 --heads 4 --kv-heads 2 --vocab 256\n  windtunnel model --list")]
    Model(model::ModelArgs),
    /// Check µP: record mean |activation| per layer across widths for a few training steps.
    #[command(after_help = "Examples:\n  windtunnel coord-check\n  windtunnel coord-check --parameterization sp\n  \
                            windtunnel coord-check --widths 64,128,256,512,1024 --steps 5 --json > coord.json\n  \
                            windtunnel coord-check --device cuda:0 --precision bf16-mixed --kernel-cache /tmp/windtunnel-kernels")]
    CoordCheck(model::CoordCheckArgs),
    /// Train one run from a run file; writes run.json, metrics.jsonl, status.json and checkpoints/ into --out.
    #[command(after_help = "Examples:\n  windtunnel train sweeps/runs/quickstart.toml --out results/quickstart-run\n  \
                            windtunnel train sweeps/runs/quickstart.toml --out results/quickstart-run --resume\n  \
                            windtunnel train run.toml --out runs/a --device cuda:0 --json\n\n\
                            Exit codes: 0 done, 1 failed while training (worth retrying), 2 cannot start (bad run file or data, \
                            a model too big for memory, a run directory another process is writing), 3 diverged, \
                            130/138/143 interrupted by SIGINT/SIGUSR1/SIGTERM (a checkpoint was written; SIGUSR1 is Slurm's time-limit warning).")]
    Train(train::TrainArgs),
    /// A persistent worker, started by `run` (one per device slot): trains the runs it is sent on stdin, one after another.
    #[command(after_help = "Started by `windtunnel run` with persistent workers (the default on GPUs; `run --workers persistent`),\n\
                            by the local executor (one per device slot) and by each Slurm task (fed through FIFOs by its batch script).\n\
                            Protocol: one JSON request per line on stdin, {\"run_file\", \"out\", \"resume\", \"resume_before_tokens\", \"log\", \"threads\"}\n\
                            (threads: optional, the run's CPU threads);\n\
                            one JSON reply per line on stdout, {\"out\", \"exit_code\"} (the exit code `train` would have had).\n\
                            A request sent before the last one's reply trains at once with it, on a thread of its own (runs share the process,\n\
                            its CUDA context and compiled kernels); replies come as runs end. A run's lines go to its log.\n\
                            It ends when stdin closes and its runs have ended. Example (by hand):\n  \
                            echo '{\"run_file\":\"run.toml\",\"out\":\"runs/a\",\"resume\":false,\"resume_before_tokens\":null,\"log\":\"a.log\"}' | windtunnel worker --device cpu")]
    Worker(train::WorkerArgs),
    /// Write a commented starting sweep file: a half-minute wind tunnel on the CPU, with the optional sections shown.
    #[command(after_help = "Examples:\n  windtunnel init                 (writes sweep.toml, named `sweep`)\n  \
                            windtunnel init tunnel.toml     (named `tunnel`)\n  windtunnel init tunnel.toml --force   (replace it)\n\n\
                            Every key, its type, default and meaning: the user guide's sweep-file reference (`windtunnel reference --sweep-file`).")]
    Init(sweep::InitArgs),
    /// Expand a sweep file into its run graph (trunks, branches, plain runs) and its compute, without running it.
    #[command(after_help = "Examples:\n  windtunnel plan sweeps/quickstart.toml\n  windtunnel plan sweeps/minicpm-data-model.toml --json")]
    Plan(sweep::PlanArgs),
    /// Run a sweep: every run a worker process (here, or as Slurm job arrays), resumable after any interruption.
    #[command(after_help = "Examples:\n  windtunnel run sweeps/quickstart.toml\n  \
                            windtunnel run sweeps/quickstart.toml --parallel 2\n  \
                            windtunnel run sweeps/minicpm-lr-stability.toml --devices cuda:0,1,2,3 --runs-per-device 2\n  \
                            windtunnel run sweeps/minicpm-mup-search.toml --devices cuda:all   (every GPU this process sees)\n  \
                            windtunnel run sweeps/quickstart.toml --workers persistent --kernel-cache /tmp/windtunnel-kernels\n  \
                            windtunnel run sweeps/quickstart.toml --executor slurm --partition gpu --time 04:00:00 --gpus-per-task 1\n  \
                            windtunnel run sweeps/minicpm-mup-search.toml --executor slurm --gpus-per-task 1 --runs-per-device 4 --runs-per-task 16\n  \
                            windtunnel run sweeps/quickstart.toml --executor slurm --dry-run   (write the sbatch scripts, submit nothing)\n  \
                            windtunnel run sweeps/adaptive-allocation.toml --adaptive --parallel 2   (only the runs that teach most per FLOP)\n\n\
                            Rerunning the same command resumes: finished runs are kept, interrupted ones continue from their checkpoints.\n\
                            With --executor slurm the sweep directory must be on a file system the compute nodes share.")]
    Run(sweep::RunArgs),
    /// A sweep's progress, from its files first; for a Slurm sweep, Slurm's view of the unfinished runs.
    #[command(after_help = "Examples:\n  windtunnel status results/quickstart\n  windtunnel status results/quickstart --json")]
    Status(sweep::DirArgs),
    /// Stop a sweep: a local `run` stops its workers, a Slurm sweep's jobs are cancelled; runs keep their checkpoints.
    #[command(after_help = "Examples:\n  windtunnel cancel results/quickstart\n\n\
                            Running the sweep again resumes every interrupted run from its checkpoint.")]
    Cancel(sweep::DirArgs),
    /// Write the sweep's results table (table.csv and table.parquet: one row per finished run or branch).
    #[command(after_help = "Examples:\n  windtunnel collect results/quickstart")]
    Collect(sweep::DirArgs),
    /// Fit scaling laws to a results table.
    #[command(subcommand)]
    Fit(fit::FitCommand),
    /// The adaptive wind tunnel's loop replayed over runs already made: which runs it would have
    /// chosen, and how few FLOPs it needs to pin the target.
    #[command(after_help = "Examples:\n  windtunnel adapt --replay analysis/data/chinchilla_svg_extracted_data.csv --n 'Model Size' \\\n    \
                            --flops 'Training FLOP' --loss loss --drop-highest 5 --target allocation:1e24 --relative-interval 0.2\n  \
                            windtunnel adapt --replay runs.csv --n N --tokens D --loss loss --target loss:1e9,2e10 --max-flops-fraction 0.1 --strategy random --json\n\n\
                            Each round refits the law with a bootstrap and chooses the rows that most reduce the target's variance per FLOP\n\
                            (--strategy random and cheapest are the baselines); `final` is the loop's answer, `full` the same target fitted on every row.")]
    Adapt(adapt::AdaptArgs),
    /// Make and inspect data: the synthetic language as a token file, or what a data file holds.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Draw every chart a sweep's data supports into DIR/plots/ (or one coordinate check).
    #[command(after_help = "Examples:\n  windtunnel plot results/quickstart\n  windtunnel plot results/quickstart --format png\n  \
                            windtunnel coord-check --json > coord.json && windtunnel plot --coord-check coord.json\n\n\
                            Charts: loss-curves, lr-transfer, law-tokens, law-compute, allocation, allocation-approaches, residuals, holdout, batch-size, curve-law (and adaptive);\n\
                            the data-model law is refitted from the definition `fit law` saved in DIR/fits/law.json.")]
    Plot(outputs::PlotArgs),
    /// Write DIR/report.html: one self-contained page with the sweep's summary, every chart and the fits.
    #[command(after_help = "Examples:\n  windtunnel report results/quickstart\n  windtunnel report results/quickstart --out quickstart.html")]
    Report(outputs::ReportArgs),
    /// Choose the full run from the sweep's fits: shape, µP learning rates, batch size, WSD schedule, predicted loss.
    #[command(after_help = "Examples:\n  windtunnel export results/quickstart --budget-flops 1e18\n  \
                            windtunnel export results/my-sweep --budget-flops 1e13 --allow-implausible   (a law too loose to trust, exported anyway; its warnings stay in recipe.json)\n  \
                            windtunnel export results/quickstart --target-params 50e6 --vocab 73440 --seq-len 4096 --out export/\n  \
                            windtunnel export results/quickstart --budget-flops 1e18 --format megatron   (megatron_args.sh: Megatron-LM's arguments)\n  \
                            windtunnel export results/quickstart --budget-flops 1e18 --format nanotron   (nanotron.yaml)\n\n\
                            Writes config.json (Hugging Face MiniCPM format: AutoConfig.from_pretrained(DIR, trust_remote_code=True) loads it),\n\
                            configuration_minicpm.py (the class its auto_map names) and recipe.json (the training recipe and where each number came from);\n\
                            with --format megatron or nanotron, that trainer's file and recipe.json, which list what the trainer cannot express.")]
    Export(outputs::ExportArgs),
    /// Watch sweeps live in a browser: progress, loss curves, fits as runs finish, every run (read-only, local).
    #[command(after_help = "Examples:\n  windtunnel serve results/quickstart            (then open http://127.0.0.1:8080/)\n  \
                            windtunnel serve results/                      (every sweep in the folder, new ones as they start)\n  \
                            windtunnel serve results/ --bind 127.0.0.1:9000\n  \
                            windtunnel serve /shared/results --bind 0.0.0.0:8080   (other machines may connect: read-only, no login)\n\n\
                            On a cluster: serve on the login node and tunnel: ssh -L 8080:localhost:8080 LOGIN-NODE.")]
    Serve(outputs::ServeArgs),
    /// Write every run's metrics as TensorBoard event files (offline; --follow keeps them current while the sweep trains).
    #[command(after_help = "Examples:\n  windtunnel tensorboard results/quickstart && tensorboard --logdir results/quickstart/tensorboard\n  \
                            windtunnel tensorboard results/quickstart --follow     (rewrites runs as they log, until Ctrl-C)\n  \
                            wandb sync --sync-tensorboard -p PROJECT results/quickstart/tensorboard/GRID/RUN   (one run to W&B)\n\n\
                            One folder per run, DIR/tensorboard/<grid>/<kind>-w<width>-<id>; the step is tokens trained.")]
    Tensorboard(outputs::TensorboardArgs),
    /// Print the command reference of the user guide (every command's help, as Markdown), or with
    /// --sweep-file the sweep-file reference (every key, its type, default and meaning).
    #[command(hide = true)]
    Reference(reference::ReferenceArgs),
}

/// Parse the command line, run the command, and turn its result into the process's exit code.
pub fn main() -> ExitCode {
    // Output piped into `head` ends quietly, as with other Unix tools, instead of a panic on EPIPE.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    windtunnel::process::process_start();
    windtunnel::cpu::tune_for_training();
    let cli = Cli::try_parse().unwrap_or_else(|e| exit_on_parse_error(e));
    match dispatch(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            windtunnel::stderr_line!("error: {e:#}");
            ExitCode::from(if e.downcast_ref::<CannotStart>().is_some() { EXIT_CANNOT_START } else { EXIT_FAILED })
        }
    }
}

/// clap's message for a command line it cannot parse, and its exit; a path given to a `fit`
/// command without `--input` (as `fit law results/quickstart`) gets the line that fixes it.
fn exit_on_parse_error(e: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let args: Vec<String> = std::env::args().collect();
    if let (ErrorKind::UnknownArgument, Some(ContextValue::String(arg))) = (e.kind(), e.get(ContextKind::InvalidArg)) {
        if args.get(1).is_some_and(|a| a == "fit") && !arg.starts_with('-') {
            let fit = args.get(2).map_or("law", String::as_str);
            let _ = e.print();
            windtunnel::stderr_line!("tip: a fit reads its table or sweep directory from --input: windtunnel fit {fit} --input {arg}");
            std::process::exit(e.exit_code());
        }
    }
    e.exit()
}

fn dispatch(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Model(args) => model::model(args),
        Command::CoordCheck(args) => model::coord_check(args),
        Command::Train(args) => train::train(args),
        Command::Worker(args) => train::worker(args),
        Command::Init(args) => sweep::init(args),
        Command::Plan(args) => sweep::plan(args),
        Command::Run(args) => sweep::run(args),
        Command::Status(args) => sweep::status(args),
        Command::Cancel(args) => sweep::cancel(args),
        Command::Collect(args) => sweep::collect(args),
        Command::Fit(command) => fit::fit(command),
        Command::Adapt(args) => adapt::adapt(args),
        Command::Data(command) => data::data(command),
        Command::Plot(args) => outputs::plot(args),
        Command::Report(args) => outputs::report(args),
        Command::Export(args) => outputs::export(args),
        Command::Serve(args) => outputs::serve(args),
        Command::Tensorboard(args) => outputs::tensorboard(args),
        Command::Reference(a) => reference::reference(a),
    }
}

/// Print `report` on stdout as text, or as JSON with `--json`; exit code 0. A closed or full
/// stdout is an error, never a panic.
fn emit<T: Serialize + std::fmt::Display>(report: &T, json: bool) -> anyhow::Result<u8> {
    if json {
        return emit_json(report);
    }
    writeln!(std::io::stdout(), "{}", report.to_string().trim_end()).context("cannot write to stdout")?;
    Ok(0)
}

/// Print `value` on stdout as JSON; exit code 0.
fn emit_json<T: Serialize>(value: &T) -> anyhow::Result<u8> {
    writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(value)?).context("cannot write to stdout")?;
    Ok(0)
}

/// The `windtunnel` binary itself, which executors start as their workers.
fn this_binary() -> anyhow::Result<std::path::PathBuf> {
    std::env::current_exe().context("cannot find the windtunnel binary")
}
