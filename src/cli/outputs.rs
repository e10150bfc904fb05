//! `windtunnel plot`, `report` and `export`: what a sweep's data and fits become. Each reads the
//! sweep directory and writes only its own output.

use anyhow::Context;
use clap::Args;

use super::{emit, emit_json};
use windtunnel::export::formats::FormattedExport;
use windtunnel::export::{export as choose, ExportRequest, Target};
use windtunnel::layout::SweepDir;

#[derive(Args)]
pub struct PlotArgs {
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
    /// Fit the data-model law with the default definition, not the one `fit law` saved in
    /// DIR/fits/law.json (an output that uses a saved definition says so).
    #[arg(long)]
    fresh: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ReportArgs {
    /// The sweep directory.
    dir: std::path::PathBuf,
    /// Where to write the page [default: DIR/report.html].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Fit the data-model law with the default definition, not the one `fit law` saved in
    /// DIR/fits/law.json (an output that uses a saved definition says so).
    #[arg(long)]
    fresh: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Sweep directories (results/NAME), or folders of them (results/).
    #[arg(required = true)]
    dirs: Vec<std::path::PathBuf>,
    /// Address and port to listen on; loopback unless you say otherwise (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: std::net::SocketAddr,
    /// Flag a running run as stalled after this many seconds without new metrics.
    #[arg(long, default_value_t = 300.0)]
    stall_after_s: f64,
}

pub fn serve(a: ServeArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(a.stall_after_s.is_finite() && a.stall_after_s > 0.0, "--stall-after-s must be a positive number of seconds");
    windtunnel::serve::serve(windtunnel::serve::ServeOptions { dirs: a.dirs, bind: a.bind, stall_after: std::time::Duration::from_secs_f64(a.stall_after_s) })?;
    Ok(0)
}

#[derive(Args)]
pub struct TensorboardArgs {
    /// The sweep directory.
    dir: std::path::PathBuf,
    /// Where the event files go [default: DIR/tensorboard].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Keep rewriting runs whose metrics grew, every --every-s seconds, until Ctrl-C.
    #[arg(long)]
    follow: bool,
    #[arg(long, default_value_t = 5.0)]
    every_s: f64,
    #[arg(long)]
    json: bool,
}

pub fn tensorboard(a: TensorboardArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        a.every_s.is_finite() && a.every_s > 0.0 && a.every_s <= 86_400.0,
        "--every-s {}: give a positive number of seconds, at most a day (86400)",
        a.every_s
    );
    let dir = SweepDir::open(&a.dir);
    let summary = windtunnel::tensorboard::run(dir.root(), a.out, a.follow, std::time::Duration::from_secs_f64(a.every_s))?;
    emit(&summary, a.json)
}

#[derive(Args)]
pub struct ExportArgs {
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
    /// Export even when the law is implausible or there is no learning-rate optimum (both are
    /// refused otherwise); the warnings stay in recipe.json.
    #[arg(long)]
    allow_implausible: bool,
    /// The trainer to write the full run for: hf (config.json for transformers), megatron
    /// (megatron_args.sh, Megatron-LM's pretrain_gpt.py arguments) or nanotron (nanotron.yaml).
    /// What a trainer cannot express is listed in its file, the summary and recipe.json.
    #[arg(long, value_enum, default_value = "hf")]
    format: windtunnel::export::formats::Format,
    /// Fit the data-model law with the default definition, not the one `fit law` saved in
    /// DIR/fits/law.json (an output that uses a saved definition says so).
    #[arg(long)]
    fresh: bool,
    /// Warn when the exported N or compute lies more than this many times beyond the law's points
    /// (the predicted loss's interval is widened however far beyond them it lies).
    #[arg(long, default_value_t = windtunnel::export::assumptions::DEFAULT_EXTRAPOLATION_LIMIT)]
    extrapolation_limit: f64,
    /// Take the data mixture from this sweep's `fit mixture` (fits/mixture.json) [default: DIR's
    /// own, when it keeps one]; written as mixture.toml, a block for the full run's sweep file.
    #[arg(long)]
    mixture_sweep: Option<std::path::PathBuf>,
    /// Where to write the format's files and recipe.json [default: DIR/export].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

/// `--fresh`: the default definition; else the one `fit law` saved (announced).
fn law_choice(fresh: bool) -> windtunnel::results::saved::LawChoice {
    if fresh {
        windtunnel::results::saved::LawChoice::Fresh
    } else {
        windtunnel::results::saved::LawChoice::Saved
    }
}

pub fn plot(args: PlotArgs) -> anyhow::Result<u8> {
    let summary = match &args.coord_check {
        Some(file) => windtunnel::plot::plot_coord_check(file, args.format, args.out.as_deref())?,
        None => {
            let dir = args.dir.as_deref().context("give a sweep directory or --coord-check FILE")?;
            windtunnel::plot::plot_sweep(SweepDir::open(dir).root(), args.format, law_choice(args.fresh))?
        }
    };
    emit(&summary, args.json)
}

pub fn report(args: ReportArgs) -> anyhow::Result<u8> {
    let sweep = SweepDir::open(&args.dir);
    let out = args.out.unwrap_or_else(|| sweep.report());
    emit(&windtunnel::report::write_report(sweep.root(), &out, law_choice(args.fresh))?, args.json)
}

pub fn export(args: ExportArgs) -> anyhow::Result<u8> {
    let target = match (args.budget_flops, args.target_params) {
        (Some(c), _) => Target::BudgetFlops(c),
        (None, Some(n)) => Target::Params(n),
        (None, None) => anyhow::bail!("give --budget-flops C or --target-params N"),
    };
    let request = ExportRequest {
        dir: SweepDir::open(&args.dir).root().to_path_buf(),
        target,
        vocab: args.vocab,
        seq_len: args.seq_len,
        gqa_group: args.gqa_group,
        aspect_ratio: args.aspect_ratio,
        lr_sweep: args.lr_sweep,
        batch_sweep: args.batch_sweep,
        allow_implausible: args.allow_implausible,
        fresh: args.fresh,
        extrapolation_limit: args.extrapolation_limit,
        mixture_sweep: args.mixture_sweep,
    };
    anyhow::ensure!(
        args.extrapolation_limit.is_finite() && args.extrapolation_limit >= 1.0,
        "--extrapolation-limit {}: give a factor of at least 1 (the default is 10)",
        args.extrapolation_limit
    );
    let exported = FormattedExport::new(choose(&request)?, args.format)?;
    let out = args.out.unwrap_or_else(|| SweepDir::new(&request.dir).export());
    let written = exported.write(&out)?;
    if args.json {
        return emit_json(&exported.recipe_json()?);
    }
    emit(&format!("{exported}wrote {}", written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")), false)
}
