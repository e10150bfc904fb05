//! `windtunnel train`: one run.

use clap::Args;

use super::emit;
use windtunnel::device::DeviceSpec;
use windtunnel::train::run::TrainOptions;

#[derive(Args)]
pub struct TrainArgs {
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

/// Exit code: 0 done, 3 diverged, 128 + signal when interrupted (errors: 1, or 2 when the run
/// cannot start as configured).
pub fn train(args: TrainArgs) -> anyhow::Result<u8> {
    let options = TrainOptions { device: args.device, resume: args.resume, resume_before_tokens: args.resume_before_tokens, quiet: args.quiet };
    let summary = windtunnel::train::run::train(&args.run_file, &args.out, &options)?;
    emit(&summary, args.json)?;
    Ok(summary.outcome.exit_code())
}
