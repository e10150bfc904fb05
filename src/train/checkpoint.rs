//! Checkpoints: model weights, AdamW moments, and the position of the run (step, tokens, wall
//! time) in one file, written atomically and sealed with a checksum.
//!
//! The data position is the step itself: the batch at step s is a pure function of (data, seed,
//! s), and training draws no other random numbers (no dropout), so (step, weights, moments) is the
//! whole state.
//!
//! File layout (`checkpoints/tokens-<D>.ckpt`, little-endian):
//!
//! ```text
//! b"WTCKPT01" | u64 header length | header (JSON) | f32 tensor data | u64 checksum of all before it
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::optimizer::{AdamW, Moments};
use crate::fsutil::atomic_write;
use crate::model::transformer::Transformer;

const MAGIC: &[u8; 8] = b"WTCKPT01";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    /// Offset into the data section, in f32 elements.
    pub offset: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointHeader {
    /// Completed optimizer steps.
    pub step: u64,
    /// Training tokens seen.
    pub tokens: u64,
    /// Wall seconds spent training up to here (summed over resumes).
    pub wall_seconds: f64,
    /// Hash of the run's resolved config, to refuse a checkpoint of another run.
    pub config_hash: String,
    /// The first training loss of the run (for divergence detection after a resume).
    pub first_loss: Option<f64>,
    /// Why it was written: "tokens" (a configured point), "periodic", "final", "interrupt".
    pub reason: String,
    pub tensors: Vec<TensorEntry>,
}

/// Everything a run needs to continue.
pub struct TrainState<B: AutodiffBackend> {
    pub model: Transformer<B>,
    pub optimizer: AdamW<B>,
    pub header: CheckpointHeader,
}

pub use crate::rng::checksum;

pub use crate::layout::checkpoint_name;

/// Collect every parameter's values by id.
struct Collect<'a> {
    values: &'a mut HashMap<ParamId, (Vec<usize>, Vec<f32>)>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let data = t.into_data().convert::<f32>().to_vec::<f32>().expect("f32 parameter");
        self.values.insert(param.id, (shape, data));
    }
}

/// Write the state atomically to `path`.
pub fn save<B: AutodiffBackend>(path: &Path, model: &Transformer<B>, optimizer: &AdamW<B>, mut header: CheckpointHeader) -> anyhow::Result<()> {
    let mut values = HashMap::new();
    model.visit(&mut Collect { values: &mut values });
    let mut data: Vec<f32> = Vec::new();
    header.tensors.clear();
    for info in model.param_infos() {
        let (shape, v) = values.remove(&info.id).context("parameter missing from the model")?;
        header.tensors.push(TensorEntry { name: info.name.clone(), shape: shape.clone(), offset: data.len() });
        data.extend_from_slice(&v);
        if let Some(m) = optimizer.moments.get(&info.id) {
            for (kind, t) in [("adam_m", &m.m), ("adam_v", &m.v)] {
                let v = t.clone().into_data().convert::<f32>().to_vec::<f32>().expect("f32 moment");
                header.tensors.push(TensorEntry { name: format!("{}#{kind}", info.name), shape: vec![v.len()], offset: data.len() });
                data.extend_from_slice(&v);
            }
        }
    }
    let header_json = serde_json::to_vec(&header)?;
    let mut bytes = Vec::with_capacity(16 + header_json.len() + 4 * data.len() + 8);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header_json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header_json);
    for x in &data {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    atomic_write(path, &bytes).with_context(|| format!("writing checkpoint {}", path.display()))
}

/// A checkpoint read and verified, not yet loaded into a model.
pub struct CheckpointFile {
    pub path: PathBuf,
    pub header: CheckpointHeader,
    data: Vec<f32>,
}

/// Read and verify a checkpoint: magic, lengths and checksum.
pub fn read(path: &Path) -> anyhow::Result<CheckpointFile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let corrupt = |why: &str| anyhow::anyhow!("checkpoint {} is corrupt: {why}", path.display());
    if bytes.len() < 24 || &bytes[..8] != MAGIC {
        return Err(corrupt("not a windtunnel checkpoint (bad magic or truncated)"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if checksum(body) != u64::from_le_bytes(sum.try_into().unwrap()) {
        return Err(corrupt("checksum mismatch (truncated or modified)"));
    }
    let header_len = u64::from_le_bytes(body[8..16].try_into().unwrap()) as usize;
    let header_end = 16usize.checked_add(header_len).filter(|&e| e <= body.len()).ok_or_else(|| corrupt("header length out of range"))?;
    let header: CheckpointHeader = serde_json::from_slice(&body[16..header_end]).map_err(|e| corrupt(&format!("bad header: {e}")))?;
    let raw = &body[header_end..];
    if raw.len() % 4 != 0 {
        return Err(corrupt("tensor data is not a whole number of f32"));
    }
    let data: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    for t in &header.tensors {
        let n: usize = t.shape.iter().product();
        if t.offset + n > data.len() {
            return Err(corrupt(&format!("tensor {} runs past the end of the data", t.name)));
        }
    }
    Ok(CheckpointFile { path: path.to_path_buf(), header, data })
}

struct Load<'a, B: Backend> {
    values: &'a HashMap<ParamId, (Vec<usize>, &'a [f32])>,
    device: B::Device,
    missing: Vec<ParamId>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Load<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        match self.values.get(&id) {
            Some((shape, data)) if shape.as_slice() == tensor.dims().as_slice() => {
                let t = Tensor::<B, D>::from_data(TensorData::new(data.to_vec(), shape.clone()), &self.device).require_grad();
                Param::from_mapped_value(id, t, mapper)
            }
            _ => {
                self.missing.push(id);
                Param::from_mapped_value(id, tensor, mapper)
            }
        }
    }
}

impl CheckpointFile {
    fn tensor(&self, name: &str) -> Option<(&TensorEntry, &[f32])> {
        self.header.tensors.iter().find(|t| t.name == name).map(|t| {
            let n: usize = t.shape.iter().product();
            (t, &self.data[t.offset..t.offset + n])
        })
    }

    /// Put the weights and moments into `model` and `optimizer` (built from the same config).
    pub fn restore<B: AutodiffBackend>(&self, model: Transformer<B>, optimizer: &mut AdamW<B>, device: &B::Device) -> anyhow::Result<Transformer<B>> {
        let infos = model.param_infos();
        let mut values = HashMap::new();
        for info in &infos {
            let (entry, data) = self
                .tensor(&info.name)
                .with_context(|| format!("checkpoint {} has no tensor `{}`: it belongs to a different model shape", self.path.display(), info.name))?;
            anyhow::ensure!(
                entry.shape == info.shape,
                "checkpoint {}: tensor `{}` has shape {:?}, the model expects {:?}",
                self.path.display(),
                info.name,
                entry.shape,
                info.shape
            );
            values.insert(info.id, (entry.shape.clone(), data));
        }
        let mut loader = Load::<B> { values: &values, device: device.clone(), missing: Vec::new() };
        let model = model.map(&mut loader);
        anyhow::ensure!(loader.missing.is_empty(), "checkpoint {}: {} parameters could not be restored", self.path.display(), loader.missing.len());
        optimizer.moments.clear();
        for info in &infos {
            let m = self.tensor(&format!("{}#adam_m", info.name));
            let v = self.tensor(&format!("{}#adam_v", info.name));
            if let (Some((_, m)), Some((_, v))) = (m, v) {
                let t = |d: &[f32]| Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(d.to_vec(), [d.len()]), device);
                optimizer.moments.insert(info.id, Moments { m: t(m), v: t(v) });
            }
        }
        optimizer.step = self.header.step;
        Ok(model)
    }
}

/// Checkpoints in `dir` with their token counts, newest (most tokens) first.
fn list_with_tokens(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            // `tokens-<D>.ckpt` (kept) or `periodic-tokens-<D>.ckpt` (replaced by the next one).
            let tokens = name.trim_start_matches("periodic-").strip_prefix("tokens-")?.strip_suffix(".ckpt")?.parse().ok()?;
            Some((tokens, e.path()))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found
}

/// Checkpoints in `dir`, newest (most tokens) first.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    list_with_tokens(dir).into_iter().map(|(_, p)| p).collect()
}

/// The newest checkpoint in `dir` that verifies, among those before `before_tokens` when given
/// (to write a lost checkpoint again); corrupt ones are reported through `warn` and skipped.
pub fn newest_valid(dir: &Path, before_tokens: Option<u64>, mut warn: impl FnMut(String)) -> Option<CheckpointFile> {
    for (tokens, path) in list_with_tokens(dir) {
        if before_tokens.is_some_and(|limit| tokens >= limit) {
            continue;
        }
        match read(&path) {
            Ok(c) => return Some(c),
            Err(e) => warn(format!("{e:#}; skipping it for an older checkpoint")),
        }
    }
    None
}

/// Remove the periodic and interrupt checkpoints in `dir` but `keep` (the named ones stay:
/// branches start from them).
pub fn remove_periodic(dir: &Path, keep: Option<&Path>) {
    for path in list(dir) {
        if Some(path.as_path()) != keep && path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("periodic-")) {
            std::fs::remove_file(path).ok();
        }
    }
}
