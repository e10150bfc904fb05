//! `windtunnel adapt --replay TABLE`: the adaptive wind tunnel's loop over runs already made.

use clap::Args;

use super::emit;
use windtunnel::adaptive::replay::{replay, ReplayColumns, RowSelection};
use windtunnel::adaptive::settings::{AdaptiveSpec, Written};
use windtunnel::adaptive::target::Target;
use windtunnel::results::inputs::observations;

#[derive(Args)]
pub struct AdaptArgs {
    /// A CSV or Parquet table of runs already made (one row per run): each row is a candidate,
    /// and choosing it reveals its loss.
    #[arg(long, value_name = "TABLE")]
    replay: std::path::PathBuf,
    /// Column of N (non-embedding parameters).
    #[arg(long, default_value = "non_embedding_params")]
    n: String,
    /// Column of D (training tokens) [default: tokens, when the table has it and --flops is not
    /// given]; without it, D = C / 6N from --flops.
    #[arg(long)]
    tokens: Option<String>,
    /// Column of a row's cost in FLOPs [default: 6·N·D].
    #[arg(long)]
    flops: Option<String>,
    /// Column of the final loss.
    #[arg(long, default_value = "final_eval_loss")]
    loss: String,
    /// What to learn: `allocation:C` (D/N at C FLOPs) or `loss:N,D` (a planned run's loss).
    #[arg(long)]
    target: Target,
    /// The loop's budget in FLOPs.
    #[arg(long, conflicts_with = "max_flops_fraction")]
    max_flops: Option<f64>,
    /// The loop's budget as a fraction of all rows' FLOPs [default: 1, every row].
    #[arg(long)]
    max_flops_fraction: Option<f64>,
    // How the loop works: the flags a sweep file's `[adaptive]` block writes as keys.
    #[command(flatten)]
    settings: AdaptiveSpec,
    /// Rows chosen per round.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Only rows of this sweep grid (a sweep table's `grid` column), as `fit law --grid`.
    #[arg(long)]
    grid: Option<String>,
    /// Replay only the rows this keeps, as `fit law --where`: comparisons on columns joined by
    /// `and`, e.g. "non_embedding_params < 1e6".
    #[arg(long = "where", value_name = "EXPR")]
    where_: Option<String>,
    /// Leave out the highest-loss rows (as `fit law --drop-highest`).
    #[arg(long, default_value_t = 0)]
    drop_highest: usize,
    #[arg(long)]
    json: bool,
}

pub fn adapt(args: AdaptArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    args.settings.validate_method(Written::AsFlags)?;
    let table = observations(&args.replay)?;
    // windtunnel's own table has D in its `tokens` column.
    let tokens = args.tokens.or_else(|| (args.flops.is_none() && table.has(windtunnel::fit::observation::column::TOKENS)).then(|| "tokens".to_string()));
    let columns = ReplayColumns { n: args.n, tokens, flops: args.flops, loss: args.loss };
    let rows = RowSelection { grid: args.grid, where_: args.where_ };
    let max_flops = match (args.max_flops, args.max_flops_fraction) {
        (Some(f), _) => {
            anyhow::ensure!(f.is_finite() && f > 0.0, "--max-flops {f}: give a positive FLOP count");
            f
        }
        (None, Some(x)) => {
            anyhow::ensure!(x.is_finite() && x > 0.0, "--max-flops-fraction {x}: give a positive fraction of all rows' FLOPs");
            f64::INFINITY
        }
        (None, None) => f64::INFINITY,
    };
    let settings = args.settings.settings(args.target, max_flops, args.batch, Vec::new());
    emit(&replay(&table, &columns, &rows, args.drop_highest, &settings, args.max_flops_fraction.filter(|_| args.max_flops.is_none()))?, args.json)
}
