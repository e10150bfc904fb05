//! One training run, end to end: `windtunnel train RUN_FILE --out DIR`.
//!
//! Reads and checks the run file, writes `run.json` (the resolved config with N, FLOPs per token
//! and the version), then trains: a batch per step from the data source, forward, backward,
//! AdamW with µP groups, the schedule in tokens; evaluates on the held-out split; appends
//! `metrics.jsonl`; checkpoints at the configured token counts, every few minutes, on SIGINT or
//! SIGTERM, and at the end; and keeps `status.json` current. `--resume` continues from the newest
//! checkpoint that verifies. A branch (`[branch]`) starts from its trunk's checkpoint.
//!
//! A step makes one read from the device, its loss and gradient norm, once all of its work is
//! queued; the next step's batch is made on the host before that read, while a GPU computes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::device::TrainBackend;
use crate::model::fused::FusedOps;
use anyhow::Context;
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, CheckpointHeader};
use super::config::RunConfig;
use super::eval_sets::{self, EvalSetRecord, OpenedSet};
use super::log::{now_seconds, write_status, MetricsLog, MetricsRecord, RunState, Status};
use super::optimizer::{read_to_host, AdamW};
use crate::data::{self, Batch, TokenSource};
use crate::device::{run_on, BackendJob, DeviceSpec};
use crate::fsutil::{atomic_write, FileLock};
use crate::layout::RunDir;
use crate::model::memory::{self, machine_memory_bytes, GpuMemory, MemoryEstimate};
use crate::model::precision::Precision;
use crate::model::shape::{FlopsPerToken, ModelShape};
use crate::model::transformer::Transformer;
use crate::process::{exit_interrupted, process_start, stop_signal, CannotStart, EXIT_DIVERGED};

#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    pub device: DeviceSpec,
    pub resume: bool,
    /// Resume from the newest checkpoint before this many tokens, not the newest one: trains
    /// again to write a lost or corrupt checkpoint (a branch point) and on to the end, which
    /// reproduces what was there bit for bit. Implies `resume`.
    pub resume_before_tokens: Option<u64>,
    /// No progress bar or progress lines.
    pub quiet: bool,
    /// When the run was asked for: the process start for `train`, the request for a persistent
    /// worker's run. `first_step_s` counts from here [default: the process start].
    pub requested_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Done,
    Diverged,
    /// Stopped by a signal (its number), after writing a checkpoint.
    Interrupted(i32),
    /// Stopped where its `pause.json` asked, at this many tokens, after writing a checkpoint.
    Paused(u64),
}

impl Outcome {
    /// The process exit code: 0 done (or paused where asked), 3 diverged, 128 + signal when
    /// interrupted.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Done | Self::Paused(_) => 0,
            Self::Diverged => EXIT_DIVERGED,
            Self::Interrupted(sig) => exit_interrupted(sig),
        }
    }
}

/// `run.json`: the run as it was resolved and started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub windtunnel_version: String,
    pub config: RunConfig,
    pub config_hash: String,
    pub shape: ModelShape,
    pub non_embedding_params: u64,
    pub total_params: u64,
    pub flops_per_token: FlopsPerToken,
    pub tokens_per_step: u64,
    pub steps: u64,
    /// Tokens the run trains on: steps × tokens_per_step.
    pub tokens: u64,
    pub data_vocab: usize,
    pub bytes_per_token: Option<f64>,
    pub eval_sequences: u64,
    /// The exact loss floor of the held-out split (synthetic data).
    pub oracle_eval_loss: Option<f64>,
    /// For a branch: the trunk checkpoint it started from.
    pub trunk_checkpoint: Option<PathBuf>,
    /// What identifies the data files the run reads (size and hash, see
    /// [`crate::data::TokenSource::fingerprint`]); `None` for the synthetic language and for runs
    /// recorded before fingerprints. A resume on other data is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_fingerprint: Option<String>,
    /// The same for a branch's `branch.data` (its decay's data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay_data_fingerprint: Option<String>,
    /// The named evaluation sets (`training.evals`), in the run file's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eval_sets: Vec<EvalSetRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub outcome: Outcome,
    pub out_dir: PathBuf,
    pub steps: u64,
    pub tokens: u64,
    pub final_eval_loss: Option<f64>,
    pub best_eval_loss: Option<f64>,
    pub oracle_eval_loss: Option<f64>,
    /// The final loss of each named evaluation set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub final_evals: BTreeMap<String, Option<f64>>,
    pub non_embedding_params: u64,
    pub flops: f64,
    pub wall_s: f64,
    pub tokens_per_s: f64,
    pub resumed_from_step: Option<u64>,
    /// Seconds from the process start (a persistent worker: from the request) to the end of the
    /// first training step: start-up, data, model init and, on a GPU, kernel compilation.
    pub first_step_s: Option<f64>,
}

/// Train the run described by `run_file` into `out`.
pub fn train(run_file: &Path, out: &Path, options: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let config = RunConfig::load(run_file).map_err(CannotStart)?;
    config.validate().with_context(|| format!("run file {}", run_file.display())).map_err(CannotStart)?;
    let base_dir = run_file.parent().map(Path::to_path_buf).unwrap_or_default();
    train_config(config, &base_dir, out, options)
}

/// An error before training as [`CannotStart`], unless it is an I/O error (a full disk, a file
/// system gone away): those may pass, so they stay ordinary failures, which executors retry.
fn cannot_start(e: anyhow::Error) -> anyhow::Error {
    if e.root_cause().downcast_ref::<std::io::Error>().is_some() {
        e
    } else {
        CannotStart(e).into()
    }
}

/// Take the lock of run directory `out` (created if missing), waiting a moment for a holder
/// that is about to let go; refused while another process trains the run.
pub fn lock_run_dir(out: &Path) -> anyhow::Result<FileLock> {
    anyhow::ensure!(!out.exists() || out.is_dir(), "--out {} is a file, not a run directory; give a directory", out.display());
    std::fs::create_dir_all(out).with_context(|| format!("cannot create run directory {}", out.display()))?;
    FileLock::acquire_within(&RunDir::new(out).lock(), std::time::Duration::from_secs(2))?.map_err(|holder| {
        anyhow::anyhow!(
            "{} is being trained by another process ({holder}); two writers would corrupt its metrics and checkpoints. \
             Wait for it to finish, or stop it (SIGTERM checkpoints it) and run again",
            out.display()
        )
    })
}

/// Train `config` (paths in it relative to `base_dir`) into `out`.
pub fn train_config(config: RunConfig, base_dir: &Path, out: &Path, options: &TrainOptions) -> anyhow::Result<TrainSummary> {
    // Exactly one writer per run directory, held until this function returns (or the process dies).
    let _lock = lock_run_dir(out).map_err(cannot_start)?;
    let prepared = match check_device(options.device).and_then(|()| prepare(config, base_dir, out, options)) {
        Ok(p) => p,
        Err(e) => {
            // A run that never started (missing data, bad shape) still says so in its directory, so
            // `status` shows it failed rather than pending. A run that has a status keeps its state
            // and step (an interrupted one is still stopped there) with this reason in place of the last.
            let status = match super::log::read_status(out) {
                Ok(Some(before)) => {
                    let reason = if before.state == RunState::Failed { format!("{e:#}") } else { format!("cannot resume: {e:#}") };
                    Status { reason: Some(reason), updated_at: now_seconds(), ..before }
                }
                _ => Status {
                    state: RunState::Failed,
                    reason: Some(format!("{e:#}")),
                    step: 0,
                    steps: 0,
                    tokens: 0,
                    eval_loss: None,
                    evals: BTreeMap::new(),
                    pid: std::process::id(),
                    updated_at: now_seconds(),
                },
            };
            let _ = write_status(out, &status);
            return Err(cannot_start(e));
        }
    };
    let steps = prepared.record.steps;
    let result = run_on(options.device, Job { prepared: &prepared, options }).and_then(|r| r);
    if let Err(e) = &result {
        let status = Status {
            state: RunState::Failed,
            reason: Some(format!("{e:#}")),
            step: 0,
            steps,
            tokens: 0,
            eval_loss: None,
            evals: BTreeMap::new(),
            pid: std::process::id(),
            updated_at: now_seconds(),
        };
        write_status(out, &status).ok();
    }
    result
}

/// What makes a device unusable whatever the run (no CUDA in this build, an unusable kernel
/// cache, a GPU the backend cannot start) is a [`CannotStart`]: retrying the run cannot help.
fn check_device(device: DeviceSpec) -> anyhow::Result<()> {
    if device == DeviceSpec::Cpu {
        return Ok(());
    }
    crate::device::require_built(device, "--device").map_err(CannotStart)?;
    // The probe goes through `run_on`, which installs the kernel cache first.
    crate::device::probe(device).map_err(|e| CannotStart(e).into())
}

/// Everything resolved before the backend is chosen.
struct Prepared {
    record: RunRecord,
    out: PathBuf,
    data: Box<dyn TokenSource>,
    decay_data: Option<Box<dyn TokenSource>>,
    /// The named evaluation sets, opened.
    eval_sets: Vec<OpenedSet>,
    trunk_checkpoint: Option<PathBuf>,
    signal: Arc<AtomicUsize>,
    /// Stop once this many tokens are trained (`pause.json`), when fewer than the run's.
    pause_at_tokens: Option<u64>,
}

/// The run directory's `pause.json`, if it has one: `{"tokens": T}`.
fn pause_at_tokens(out: &Path) -> anyhow::Result<Option<u64>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pause {
        tokens: u64,
    }
    let path = RunDir::new(out).pause();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let pause: Pause = serde_json::from_str(&text)
                .with_context(|| format!("{} is malformed: it must be {{\"tokens\": T}}; delete it to train the run to its end", path.display()))?;
            Ok(Some(pause.tokens))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

fn prepare(config: RunConfig, base_dir: &Path, out: &Path, options: &TrainOptions) -> anyhow::Result<Prepared> {
    let t = &config.training;
    let data = data::open(&config.data, t.data_seed, base_dir)?;
    let decay_data = config.branch.as_ref().and_then(|b| b.data.as_ref()).map(|d| data::open(d, t.data_seed, base_dir)).transpose()?;
    if let Some(d) = &decay_data {
        anyhow::ensure!(d.vocab() == data.vocab(), "branch.data has vocabulary {}, [data] has {}; they must match", d.vocab(), data.vocab());
    }
    let data_fingerprint = data.fingerprint();
    let shape = config.model.resolve(data.vocab())?;
    let wanted_eval = t.eval_tokens.div_ceil(t.seq_len as u64);
    let eval_sequences = data.eval_sequences(t.seq_len + 1).map_or(wanted_eval, |available| available.min(wanted_eval));
    anyhow::ensure!(
        eval_sequences > 0,
        "data {}: the held-out split has no room for one sequence of {} tokens (seq_len + 1); use a longer file, a larger eval_fraction or a shorter training.seq_len",
        config.data.describe(),
        t.seq_len + 1
    );
    check_memory(&shape, t.micro_batch(), t.seq_len, options.device)?;
    let oracle_eval_loss = data::oracle_eval_loss(&*data, eval_sequences, t.seq_len)?;
    let eval_sets = eval_sets::open(&t.evals, t.data_seed, base_dir, data.vocab(), wanted_eval, t.seq_len)?;
    let eval_set_records = eval_sets.iter().map(|s| s.record(t.seq_len)).collect::<anyhow::Result<Vec<_>>>()?;

    let trunk_checkpoint = match &config.branch {
        Some(b) => {
            let trunk_dir = RunDir::new(base_dir.join(&b.trunk));
            let trunk_json = trunk_dir.record();
            let trunk: RunRecord = serde_json::from_str(
                &std::fs::read_to_string(&trunk_json)
                    .with_context(|| format!("branch.trunk: cannot read {} (has the trunk started?)", trunk_json.display()))?,
            )
            .with_context(|| format!("{} is malformed", trunk_json.display()))?;
            let data = config.data.describe();
            check_same_data("this branch's trunk", &data, &trunk_json, trunk.data_fingerprint.as_deref(), data_fingerprint.as_deref())?;
            let diffs = config.differences_from_trunk(&trunk.config);
            anyhow::ensure!(
                diffs.is_empty(),
                "this branch differs from its trunk {} in what a branch must share:\n  {}",
                trunk_dir.root().display(),
                diffs.join("\n  ")
            );
            let path = trunk_dir.checkpoint(b.from_tokens);
            anyhow::ensure!(
                path.exists(),
                "branch.from_tokens = {}: the trunk has no checkpoint {} yet (its checkpoint_tokens must include {})",
                b.from_tokens,
                path.display(),
                b.from_tokens
            );
            Some(path)
        }
        None => None,
    };

    let steps = t.steps();
    let flops_per_token = shape.flops_per_token(t.seq_len);
    let record = RunRecord {
        windtunnel_version: env!("CARGO_PKG_VERSION").to_string(),
        config_hash: config.hash(),
        shape,
        non_embedding_params: shape.non_embedding_params(),
        total_params: shape.total_params(),
        flops_per_token,
        tokens_per_step: t.tokens_per_step(),
        steps,
        tokens: steps * t.tokens_per_step(),
        data_vocab: data.vocab(),
        bytes_per_token: data.bytes_per_token(),
        eval_sequences,
        oracle_eval_loss,
        trunk_checkpoint: trunk_checkpoint.clone(),
        data_fingerprint,
        decay_data_fingerprint: decay_data.as_ref().and_then(|d| d.fingerprint()),
        eval_sets: eval_set_records,
        config,
    };

    std::fs::create_dir_all(out).with_context(|| format!("cannot create run directory {}", out.display()))?;
    let run_json = RunDir::new(out).record();
    if run_json.exists() {
        let existing: RunRecord = serde_json::from_str(&std::fs::read_to_string(&run_json)?).with_context(|| format!("{} is malformed", run_json.display()))?;
        anyhow::ensure!(
            options.resume || options.resume_before_tokens.is_some(),
            "{} already holds a run; pass --resume to continue it, or choose another --out",
            out.display()
        );
        anyhow::ensure!(
            existing.config_hash == record.config_hash,
            "{} holds a run of a different config (hash {} ≠ {}); --resume continues only the same run",
            out.display(),
            existing.config_hash,
            record.config_hash
        );
        let c = &record.config;
        check_same_data("this run", &c.data.describe(), &run_json, existing.data_fingerprint.as_deref(), record.data_fingerprint.as_deref())?;
        if let Some(decay) = c.branch.as_ref().and_then(|b| b.data.as_ref()) {
            let (was, now) = (existing.decay_data_fingerprint.as_deref(), record.decay_data_fingerprint.as_deref());
            check_same_data("this run's decay", &decay.describe(), &run_json, was, now)?;
        }
        eval_sets::check_same_data(&run_json, &existing.eval_sets, &record.eval_sets)?;
    }
    atomic_write(&run_json, serde_json::to_string_pretty(&record)?.as_bytes())?;

    let signal = stop_signal()?;
    let pause_at_tokens = pause_at_tokens(out)?.filter(|&t| t < record.tokens);
    Ok(Prepared { record, out: out.to_path_buf(), data, decay_data, eval_sets, trunk_checkpoint, signal, pause_at_tokens })
}

/// Refuse to go on from a model trained on data whose fingerprint (`was`, recorded in `record`
/// when `who` started) differs from what the data `what` has now: resuming would mix two corpora
/// into one run with nothing to show for it. A record without a fingerprint (synthetic data, an
/// older version) has nothing to compare.
fn check_same_data(who: &str, what: &str, record: &Path, was: Option<&str>, now: Option<&str>) -> anyhow::Result<()> {
    let (Some(was), Some(now)) = (was, now) else { return Ok(()) };
    anyhow::ensure!(
        was == now,
        "{}: the data changed since {who} started: {what} had fingerprint {was} then and has {now} now (size:hash). \
         Resuming would mix two corpora in one run. Put the original data back to resume it, or, to train on the new data, \
         start over in a new output folder (a sweep: `windtunnel run SWEEP.toml --out NEW`)",
        record.display()
    );
    Ok(())
}

/// Refuse a run whose estimated memory exceeds what its device has, before anything is
/// allocated: the machine's memory (or its cgroup's limit) on the CPU, the GPU's whole memory as
/// `nvidia-smi` reports it on a GPU (what other processes hold is theirs to give back, so it is
/// not counted). Activations are those of one micro-batch.
fn check_memory(shape: &ModelShape, micro_batch: usize, seq_len: usize, device: DeviceSpec) -> anyhow::Result<()> {
    let need = MemoryEstimate::training(shape, micro_batch, seq_len);
    let have = match device {
        DeviceSpec::Cpu => machine_memory_bytes().map(|b| (b, "this machine has".to_string())),
        DeviceSpec::Cuda(index) => {
            let id = crate::device::machine_gpu_id(index, crate::device::cuda_visible_devices().as_deref())?;
            GpuMemory::query(&id).map(|g| (g.total_bytes - memory::CUDA_CONTEXT_BYTES, format!("{device} ({}) has", g.name)))
        }
    };
    if let Some((have, what)) = have {
        anyhow::ensure!(
            need.total_bytes <= have,
            "model: training width {} × depth {} (N = {:.3e}) at {micro_batch} sequences per pass × seq_len {seq_len} needs {need}, more than the {} {what}; \
             use a smaller model or seq_len, or a smaller training.micro_batch_size (gradient accumulation keeps the batch)",
            shape.width,
            shape.depth,
            shape.non_embedding_params() as f64,
            memory::bytes(have)
        );
    }
    Ok(())
}

struct Job<'a> {
    prepared: &'a Prepared,
    options: &'a TrainOptions,
}

impl BackendJob for Job<'_> {
    type Output = anyhow::Result<TrainSummary>;
    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<TrainSummary> {
        Trainer::<B>::start(self.prepared, self.options, device)?.run()
    }
}

/// Token tensors of a batch: inputs `[b, seq]`, targets `[b, seq]` (shifted by one).
pub fn batch_tensors<B: Backend>(batch: &Batch, device: &B::Device) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let tokens: Vec<i64> = batch.tokens.iter().map(|&t| t as i64).collect();
    let all = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [batch.batch_size, batch.seq_len + 1]), device);
    (all.clone().narrow(1, 0, batch.seq_len), all.narrow(1, 1, batch.seq_len))
}

/// Mean held-out loss of `model` over the first `sequences` evaluation sequences.
pub fn evaluate<B: FusedOps>(
    model: &Transformer<B>,
    data: &dyn TokenSource,
    sequences: u64,
    batch_size: usize,
    seq_len: usize,
    device: &B::Device,
) -> anyhow::Result<f64> {
    // Every batch's mean loss stays on the device until all are queued, then one read.
    let mut losses = Vec::new();
    let mut batch_rows = Vec::new();
    let mut first = 0u64;
    while first < sequences {
        let rows = (sequences - first).min(batch_size as u64) as usize;
        let batch = data::eval_batch(data, first, rows, seq_len)?;
        let (inputs, targets) = batch_tensors::<B>(&batch, device);
        losses.push(model.loss(inputs, targets));
        batch_rows.push(rows);
        first += rows as u64;
    }
    if losses.is_empty() {
        return Ok(f64::NAN);
    }
    let values = Tensor::cat(losses, 0).into_data();
    let total: f64 = values.iter::<f64>().zip(batch_rows).map(|(loss, rows)| loss * rows as f64).sum();
    Ok(total / sequences as f64)
}

struct Trainer<'a, B: TrainBackend> {
    /// The run as resolved before training: its record, data, trunk checkpoint and stop flag.
    prepared: &'a Prepared,
    options: &'a TrainOptions,
    device: B::Device,
    /// Taken out for each optimizer step (which consumes it) and put back.
    model: Option<Transformer<B>>,
    optimizer: AdamW<B>,
    step: u64,
    first_loss: Option<f64>,
    wall_before: f64,
    resumed_from: Option<u64>,
    metrics: MetricsLog,
    checkpoint_steps: Vec<u64>,
    last_eval: Option<f64>,
    best_eval: Option<f64>,
    /// The latest loss of each named evaluation set.
    last_evals: BTreeMap<String, Option<f64>>,
}

impl<'a, B: TrainBackend> Trainer<'a, B> {
    fn start(prepared: &'a Prepared, options: &'a TrainOptions, device: B::Device) -> anyhow::Result<Self> {
        let c = &prepared.record.config;
        let precision = if options.device == DeviceSpec::Cpu { Precision::Fp32 } else { c.training.precision };
        if precision != c.training.precision {
            crate::stderr_line!("note: precision = \"{}\" applies on GPUs; the CPU backend trains in fp32", c.training.precision);
        }
        let mut model = Transformer::<B>::new(&prepared.record.shape, &c.mup, c.training.seq_len, c.seed, &device).with_precision(precision);
        let mut optimizer = AdamW::new(c.optimizer.adamw(), &model, &c.mup);
        let (mut step, mut first_loss, mut wall_before, mut resumed_from) = (0, None, 0.0, None);
        let ckpt_dir = RunDir::new(&prepared.out).checkpoints();
        let own = if options.resume || options.resume_before_tokens.is_some() {
            checkpoint::newest_valid(&ckpt_dir, options.resume_before_tokens, |w| crate::stderr_line!("warning: {w}"))
        } else {
            None
        };
        let restore_from = match own {
            Some(ck) => {
                anyhow::ensure!(
                    ck.header.config_hash == prepared.record.config_hash,
                    "checkpoint {} belongs to a different config; move it away or use another --out",
                    ck.path.display()
                );
                wall_before = ck.header.wall_seconds;
                resumed_from = Some(ck.header.step);
                Some(ck)
            }
            None => match &prepared.trunk_checkpoint {
                Some(path) => Some(checkpoint::read(path)?),
                None => None,
            },
        };
        if let Some(ck) = restore_from {
            model = ck.restore(model, &mut optimizer, &device)?;
            step = ck.header.step;
            first_loss = ck.header.first_loss;
        }
        let metrics = MetricsLog::open(&prepared.out, step)?;
        let t = &c.training;
        let mut checkpoint_steps: Vec<u64> = t.checkpoint_tokens.iter().map(|&k| t.step_at_tokens(k)).collect();
        checkpoint_steps.sort_unstable();
        checkpoint_steps.dedup();
        Ok(Self {
            prepared,
            options,
            device,
            model: Some(model),
            optimizer,
            step,
            first_loss,
            wall_before,
            resumed_from,
            metrics,
            checkpoint_steps,
            last_eval: None,
            best_eval: None,
            last_evals: BTreeMap::new(),
        })
    }

    fn model(&self) -> &Transformer<B> {
        self.model.as_ref().expect("model present between steps")
    }

    fn status(&self, state: RunState, reason: Option<String>) -> anyhow::Result<()> {
        let r = &self.prepared.record;
        write_status(
            &self.prepared.out,
            &Status {
                state,
                reason,
                step: self.step,
                steps: r.steps,
                tokens: self.step * r.tokens_per_step,
                eval_loss: self.last_eval,
                evals: self.last_evals.clone(),
                pid: std::process::id(),
                updated_at: now_seconds(),
            },
        )
    }

    fn save(&self, reason: &str, wall: f64) -> anyhow::Result<()> {
        let r = &self.prepared.record;
        let tokens = self.step * r.tokens_per_step;
        let dir = RunDir::new(&self.prepared.out).checkpoints();
        let header = CheckpointHeader {
            step: self.step,
            tokens,
            wall_seconds: wall,
            config_hash: r.config_hash.clone(),
            first_loss: self.first_loss,
            reason: reason.to_string(),
            tensors: Vec::new(),
        };
        let name = checkpoint::checkpoint_name(tokens);
        if reason == "tokens" || reason == "final" {
            checkpoint::save(&dir.join(&name), self.model(), &self.optimizer, header)
        } else {
            // Periodic and interrupt checkpoints replace each other.
            let path = dir.join(format!("periodic-{name}"));
            checkpoint::save(&path, self.model(), &self.optimizer, header)?;
            checkpoint::remove_periodic(&dir, Some(&path));
            Ok(())
        }
    }

    /// The mean loss of a step's batch (`[1]`, on the device) and its gradients, `micro_batch`
    /// sequences per forward and backward pass: each micro-batch's mean loss is divided by their
    /// number, so the summed gradients are those of the whole batch's mean loss (gradient
    /// accumulation). The whole batch at once is the plain forward and backward pass, bit for bit.
    fn loss_and_gradients(&self, batch: &Batch, micro_batch: usize) -> (Tensor<B::InnerBackend, 1>, GradientsParams) {
        let model = self.model();
        let (inputs, targets) = batch_tensors::<B>(batch, &self.device);
        let micro_batches = batch.batch_size / micro_batch;
        if micro_batches <= 1 {
            let loss = model.loss(inputs, targets);
            return (loss.clone().inner(), GradientsParams::from_grads(loss.backward(), model));
        }
        let mut accumulated = GradientsAccumulator::new();
        let mut total: Option<Tensor<B::InnerBackend, 1>> = None;
        for i in 0..micro_batches {
            let rows = |t: &Tensor<B, 2, Int>| t.clone().narrow(0, i * micro_batch, micro_batch);
            let loss = model.loss(rows(&inputs), rows(&targets)).div_scalar(micro_batches as f64);
            let value = loss.clone().inner();
            total = Some(match total {
                Some(sum) => sum + value,
                None => value,
            });
            accumulated.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
        }
        (total.expect("at least two micro-batches"), accumulated.grads())
    }

    /// The held-out loss on [data], and on each named set.
    fn eval(&mut self) -> anyhow::Result<f64> {
        let c = &self.prepared.record.config.training;
        let valid = self.model().valid();
        let loss = evaluate(&valid, &*self.prepared.data, self.prepared.record.eval_sequences, c.micro_batch(), c.seq_len, &self.device)?;
        let mut sets = BTreeMap::new();
        for set in &self.prepared.eval_sets {
            let set_loss = evaluate(&valid, &*set.source, set.sequences, c.micro_batch(), c.seq_len, &self.device)?;
            sets.insert(set.name.clone(), set_loss.is_finite().then_some(set_loss));
        }
        self.last_eval = Some(loss);
        self.best_eval = Some(self.best_eval.map_or(loss, |b| b.min(loss)));
        self.last_evals = sets;
        Ok(loss)
    }

    /// Stop at `pause` tokens, as `pause.json` asks: keep a checkpoint there (a branch point has
    /// one already) and say so in the status.
    fn pause(&mut self, pause: u64, wall: f64) -> anyhow::Result<Outcome> {
        if self.checkpoint_steps.binary_search(&self.step).is_err() {
            self.save("tokens", wall)?;
        }
        let tokens = self.step * self.prepared.record.tokens_per_step;
        self.status(RunState::Paused, Some(format!("paused at {tokens} tokens, where its pause.json asks ({pause}); training it again continues from there")))?;
        Ok(Outcome::Paused(tokens))
    }

    /// The end of a run that finished or diverged: a finished run's final evaluation (when it had
    /// nothing left to train), last checkpoint and status; either keeps only its named checkpoints.
    fn finish(&mut self, outcome: &Outcome, start_step: u64, wall: f64) -> anyhow::Result<()> {
        if *outcome == Outcome::Done {
            if self.step == start_step {
                // Nothing left to train (a finished run resumed, or a zero-length branch).
                self.eval()?;
            }
            let last_written = self.step > start_step && self.checkpoint_steps.binary_search(&self.step).is_ok();
            if !last_written {
                self.save("final", wall)?;
            }
            self.status(RunState::Done, None)?;
        }
        if matches!(outcome, Outcome::Done | Outcome::Diverged) {
            // A finished run keeps its named checkpoints (branch points, final); the periodic and
            // interrupt ones only served to resume it.
            checkpoint::remove_periodic(&RunDir::new(&self.prepared.out).checkpoints(), None);
        }
        Ok(())
    }

    /// Train to the run's end (or a divergence, a signal, a pause), then finish the run.
    fn run(mut self) -> anyhow::Result<TrainSummary> {
        let record = &self.prepared.record;
        self.status(RunState::Running, None)?;
        let progress = super::progress::Progress::new(record.steps, self.step, record.tokens_per_step, self.options.quiet);
        let mut clocks = Clocks::new(self.step, self.options);
        let outcome = self.train_steps(&mut clocks, &progress)?;
        let wall = self.wall(&clocks);
        self.finish(&outcome, clocks.start_step, wall)?;
        progress.finish();
        Ok(self.summary(outcome, &clocks, wall))
    }

    /// Step after step, each evaluated, logged and checkpointed when due, until the run's end, a
    /// divergence, or a signal or pause that stops it.
    fn train_steps(&mut self, clocks: &mut Clocks, progress: &super::progress::Progress) -> anyhow::Result<Outcome> {
        let record = &self.prepared.record;
        let training = &record.config.training;
        // The next step's batch, made on the host while the device works through this step.
        let mut next_batch = None;
        while self.step < record.steps {
            if let Some(stopped) = self.stop_requested(clocks)? {
                return Ok(stopped);
            }
            let tokens_before = self.step * record.tokens_per_step;
            let step = self.optimizer_step(&mut next_batch, clocks)?;
            let first = *self.first_loss.get_or_insert(step.loss);
            let diverged = !step.loss.is_finite() || step.loss > training.divergence_factor * first;
            let eval_loss = if self.eval_due(tokens_before) && !diverged { Some(self.eval()?) } else { None };
            let wall = self.wall(clocks);
            if self.step.is_multiple_of(training.log_interval_steps) || eval_loss.is_some() || diverged || self.step == record.steps {
                self.log_metrics(&step, eval_loss, wall, clocks, progress)?;
            }
            if diverged {
                let reason = format!("loss {} at step {} (first loss {first:.4}, limit {}×)", step.loss, self.step, training.divergence_factor);
                self.status(RunState::Diverged, Some(reason))?;
                return Ok(Outcome::Diverged);
            }
            self.checkpoint_if_due(wall, clocks)?;
            if clocks.last_status.elapsed() > std::time::Duration::from_secs(2) {
                // Progress for `windtunnel status` and the sweep display.
                self.status(RunState::Running, None)?;
                clocks.last_status = Instant::now();
            }
        }
        Ok(Outcome::Done)
    }

    /// Seconds this run has trained, over every process that trained it.
    fn wall(&self, clocks: &Clocks) -> f64 {
        self.wall_before + clocks.start.elapsed().as_secs_f64()
    }

    /// Stop before the next step where `pause.json` or a signal asks: a checkpoint and the status
    /// say where.
    fn stop_requested(&mut self, clocks: &Clocks) -> anyhow::Result<Option<Outcome>> {
        let tokens = self.step * self.prepared.record.tokens_per_step;
        if let Some(pause) = self.prepared.pause_at_tokens.filter(|&p| tokens >= p) {
            return self.pause(pause, self.wall(clocks)).map(Some);
        }
        let sig = self.prepared.signal.load(Ordering::SeqCst);
        if sig == 0 {
            return Ok(None);
        }
        self.save("interrupt", self.wall(clocks))?;
        self.status(RunState::Interrupted, Some(format!("signal {sig}; checkpoint at step {}", self.step)))?;
        Ok(Some(Outcome::Interrupted(sig as i32)))
    }

    /// One optimizer step on the step's batch (made ahead in `next_batch`, or now), with the
    /// learning rate of the schedule; makes the next step's batch, then reads the step's loss and
    /// gradient norm from the device.
    fn optimizer_step(&mut self, next_batch: &mut Option<Result<Batch, data::DataError>>, clocks: &mut Clocks) -> anyhow::Result<StepResult> {
        let prepared = self.prepared;
        let (record, training) = (&prepared.record, &prepared.record.config.training);
        let train_data: &dyn TokenSource = match (&prepared.decay_data, record.config.branch.is_some()) {
            (Some(d), true) => &**d,
            _ => &*prepared.data,
        };
        let step_started = Instant::now();
        let tps = record.tokens_per_step;
        // The schedule is read at the tokens seen once this step is done: the first step trains
        // (lr > 0) and the last one runs at the end of the decay.
        let lr = record.config.optimizer.lr * record.config.schedule.factor(self.step * tps + tps, record.tokens);
        let batch = next_batch.take().unwrap_or_else(|| data::train_batch(train_data, self.step, training.batch_size, training.seq_len))?;
        let (loss, grads) = self.loss_and_gradients(&batch, training.micro_batch());
        let model = self.model.take().expect("model present between steps");
        let (model, report) = self.optimizer.step_with(model, grads, lr);
        self.model = Some(model);
        self.step += 1;
        if self.step < record.steps {
            *next_batch = Some(data::train_batch(train_data, self.step, training.batch_size, training.seq_len));
        }
        // The step's one read from the device, after all of its work was queued: a GPU runs the
        // forward pass, backward pass, clipping and update without waiting for the host.
        let [loss, grad_norm_squared] = read_to_host([loss, report.grad_norm_squared]);
        // The loss was read back, so the step's work is done (a GPU has synchronised).
        clocks.first_step_s.get_or_insert_with(|| clocks.requested_at.elapsed().as_secs_f64());
        clocks.interval_seconds += step_started.elapsed().as_secs_f64();
        clocks.interval_steps += 1;
        Ok(StepResult { lr, loss, grad_norm: grad_norm_squared.sqrt() })
    }

    /// Whether the step just done (from `tokens_before`) crossed an evaluation point, or ended the run.
    fn eval_due(&self, tokens_before: u64) -> bool {
        let record = &self.prepared.record;
        let interval = record.config.training.eval_interval_tokens;
        self.step == record.steps || self.step * record.tokens_per_step / interval > tokens_before / interval
    }

    /// Append the step's line to `metrics.jsonl` (and the progress display): its loss, the
    /// evaluation if there was one, and the throughput since the last line.
    fn log_metrics(
        &mut self,
        step: &StepResult,
        eval_loss: Option<f64>,
        wall: f64,
        clocks: &mut Clocks,
        progress: &super::progress::Progress,
    ) -> anyhow::Result<()> {
        let record = &self.prepared.record;
        let tokens = self.step * record.tokens_per_step;
        let tokens_per_s = clocks.interval_steps as f64 * record.tokens_per_step as f64 / clocks.interval_seconds.max(1e-9);
        (clocks.interval_seconds, clocks.interval_steps) = (0.0, 0);
        let line = MetricsRecord {
            step: self.step,
            tokens,
            flops: tokens as f64 * record.flops_per_token.total as f64,
            flops_6nd: 6.0 * record.non_embedding_params as f64 * tokens as f64,
            lr: step.lr,
            train_loss: step.loss,
            eval_loss,
            evals: if eval_loss.is_some() { self.last_evals.clone() } else { BTreeMap::new() },
            eval_bits_per_byte: eval_loss.zip(record.bytes_per_token).map(|(l, b)| l / b / std::f64::consts::LN_2),
            oracle_loss: eval_loss.and(record.oracle_eval_loss),
            grad_norm: step.grad_norm,
            tokens_per_s,
            wall_s: wall,
            first_step_s: if clocks.first_step_logged { None } else { clocks.first_step_s },
            cpu_threads: (!clocks.first_step_logged && self.options.device == DeviceSpec::Cpu).then(rayon::current_num_threads),
        };
        clocks.first_step_logged = true;
        self.metrics.append(&line)?;
        progress.update(&line);
        Ok(())
    }

    /// A checkpoint at a configured token count (a branch point), else a periodic one when its
    /// minutes have passed.
    fn checkpoint_if_due(&mut self, wall: f64, clocks: &mut Clocks) -> anyhow::Result<()> {
        let training = &self.prepared.record.config.training;
        if self.checkpoint_steps.binary_search(&self.step).is_ok() {
            self.save("tokens", wall)?;
        } else if training.checkpoint_every_minutes > 0.0 && clocks.last_periodic.elapsed().as_secs_f64() > 60.0 * training.checkpoint_every_minutes {
            self.save("periodic", wall)?;
            clocks.last_periodic = Instant::now();
        }
        Ok(())
    }

    /// What `train` reports of the run.
    fn summary(&self, outcome: Outcome, clocks: &Clocks, wall: f64) -> TrainSummary {
        let record = &self.prepared.record;
        let tps = record.tokens_per_step;
        let trained = (self.step - clocks.start_step) * tps;
        TrainSummary {
            outcome,
            out_dir: self.prepared.out.clone(),
            steps: self.step,
            tokens: self.step * tps,
            final_eval_loss: self.last_eval,
            best_eval_loss: self.best_eval,
            oracle_eval_loss: record.oracle_eval_loss,
            final_evals: self.last_evals.clone(),
            non_embedding_params: record.non_embedding_params,
            flops: (self.step * tps) as f64 * record.flops_per_token.total as f64,
            wall_s: wall,
            tokens_per_s: trained as f64 / clocks.start.elapsed().as_secs_f64().max(1e-9),
            resumed_from_step: self.resumed_from,
            first_step_s: clocks.first_step_s,
        }
    }
}

/// One optimizer step, as read back from the device.
struct StepResult {
    lr: f64,
    /// The mean training loss of the step's batch.
    loss: f64,
    grad_norm: f64,
}

/// The training loop's clocks and counters, kept from step to step.
struct Clocks {
    /// When this process began training.
    start: Instant,
    /// The step it began at (a resumed run's checkpoint, else 0).
    start_step: u64,
    /// When the run was asked for, and how long after that the first step ended.
    requested_at: Instant,
    first_step_s: Option<f64>,
    /// Whether a metrics line has carried `first_step_s`.
    first_step_logged: bool,
    /// Training time and steps since the last metrics line (evaluation and checkpoints excluded).
    interval_seconds: f64,
    interval_steps: u64,
    last_periodic: Instant,
    last_status: Instant,
}

impl Clocks {
    fn new(start_step: u64, options: &TrainOptions) -> Self {
        let now = Instant::now();
        Self {
            start: now,
            start_step,
            requested_at: options.requested_at.unwrap_or_else(process_start),
            first_step_s: None,
            first_step_logged: false,
            interval_seconds: 0.0,
            interval_steps: 0,
            last_periodic: now,
            last_status: now,
        }
    }
}

impl std::fmt::Display for TrainSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.outcome {
            Outcome::Done => "done".to_string(),
            Outcome::Diverged => "diverged".to_string(),
            Outcome::Interrupted(sig) => format!("interrupted by signal {sig} (checkpoint written; resume with --resume)"),
            Outcome::Paused(tokens) => format!("paused at {tokens} tokens as its pause.json asks (checkpoint written; resume with --resume)"),
        };
        writeln!(f, "{}: {state}", self.out_dir.display())?;
        if let Some(step) = self.resumed_from_step {
            writeln!(f, "  resumed from the checkpoint at step {step}")?;
        }
        writeln!(
            f,
            "  steps {}  tokens {}  FLOPs {:.3e}  N {}",
            self.steps,
            crate::format::thousands(self.tokens),
            self.flops,
            crate::format::thousands(self.non_embedding_params)
        )?;
        if let Some(l) = self.final_eval_loss {
            write!(f, "  eval loss {l:.4} nats/token")?;
            if let Some(b) = self.best_eval_loss {
                write!(f, " (best {b:.4})")?;
            }
            if let Some(o) = self.oracle_eval_loss {
                write!(f, "  oracle {o:.4} (gap {:.4})", l - o)?;
            }
            writeln!(f)?;
        }
        if !self.final_evals.is_empty() {
            let sets: Vec<String> = self.final_evals.iter().map(|(name, l)| format!("{} {}", eval_sets::column(name), loss_text(*l))).collect();
            writeln!(f, "  {}", sets.join("  "))?;
        }
        write!(f, "  wall {:.1}s  {:.0} tokens/s", self.wall_s, self.tokens_per_s)?;
        if let Some(s) = self.first_step_s {
            write!(f, "  first step done {s:.1}s after start")?;
        }
        Ok(())
    }
}

/// A loss as the summary shows it: four decimals, or "n/a" where it was not a finite number.
fn loss_text(loss: Option<f64>) -> String {
    loss.map_or("n/a".to_string(), |l| format!("{l:.4}"))
}
