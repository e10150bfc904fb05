//! `windtunnel train`: one run.

use clap::Args;

use super::emit;
use windtunnel::device::DeviceSpec;
use windtunnel::kernel_cache::{self, KernelCache};
use windtunnel::process::CannotStart;
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
    /// cpu or cuda:N (on a GPU, WINDTUNNEL_CUDA_FUSION=off turns burn's kernel fusion off).
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Where compiled GPU kernels and autotune results are kept between processes
    /// [default: $WINDTUNNEL_KERNEL_CACHE, else ~/.cache/windtunnel/kernels].
    #[arg(long, value_name = "DIR")]
    kernel_cache: Option<std::path::PathBuf>,
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
    select_kernel_cache(args.kernel_cache.as_deref())?;
    let options =
        TrainOptions { device: args.device, resume: args.resume, resume_before_tokens: args.resume_before_tokens, quiet: args.quiet, requested_at: None };
    let summary = windtunnel::train::run::train(&args.run_file, &args.out, &options)?;
    emit(&summary, args.json)?;
    Ok(summary.outcome.exit_code())
}

/// The kernel cache of this process: `--kernel-cache`, else `WINDTUNNEL_KERNEL_CACHE`, else the
/// default; one chosen explicitly is checked now, before any training (exit 2 when unusable).
pub(super) fn select_kernel_cache(flag: Option<&std::path::Path>) -> anyhow::Result<()> {
    match KernelCache::resolve(flag, None) {
        Some(cache) => kernel_cache::select(cache).map_err(|e| CannotStart(e).into()),
        None => Ok(()),
    }
}

#[derive(Args)]
pub struct WorkerArgs {
    /// cpu or cuda:N: the device of every run this worker trains.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// As for `train`.
    #[arg(long, value_name = "DIR")]
    kernel_cache: Option<std::path::PathBuf>,
}

/// A persistent worker: trains the runs `run` sends on stdin, one after another.
pub fn worker(args: WorkerArgs) -> anyhow::Result<u8> {
    select_kernel_cache(args.kernel_cache.as_deref())?;
    windtunnel::sweep::worker::serve(args.device)
}
