//! How much memory training a shape needs, from the shape alone, so a run that cannot fit is
//! refused before it allocates anything (and `plan` and `model` can show the figure).
//!
//! Everything is fp32 (the CPU backend's precision). Peak resident memory of a training step is
//! about
//!
//! ```text
//!   40 B × P                                weights, gradients, AdamW's two moments, and the
//!                                           copy a checkpoint makes of weights and moments
//! + 4 B × B·T × (L × (28·d + 1.2·h·T) + 2·V)  activations kept for the backward pass: per layer
//!                                           ~28 floats per unit of width (projections, norms,
//!                                           residuals, SwiGLU) and the attention scores and
//!                                           probabilities; then the logits and their softmax
//! + 16 MiB                                  the process itself
//! ```
//!
//! with P the total parameters (embedding included), B·T the tokens of a batch, L the depth, d the
//! width, h the heads and V the vocabulary. The coefficients were fitted to the peak RSS of
//! `windtunnel train` on seven shapes (width 64–768, seq_len 64–1024, vocab 256–32,000); the
//! estimate is within about ±40% of them, which is enough to refuse a shape that cannot fit, not
//! to pack a machine to the last gigabyte.
//!
//! On a GPU the same estimate is compared with the GPU's memory as `nvidia-smi` reports it
//! ([`GpuMemory`]): `train` refuses a run larger than the whole GPU, and `run` warns when its
//! runs per GPU may not fit in what is free. It has not been fitted to GPU peaks yet (the GPU
//! check records them beside it), so on a GPU it warns rather than packs.

use serde::Serialize;

use super::shape::ModelShape;

/// The estimate, by part, in bytes (f64: an absurd shape must not overflow the arithmetic).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemoryEstimate {
    /// Weights, gradients, AdamW moments and a checkpoint's copy.
    pub parameter_bytes: f64,
    /// Activations kept for the backward pass of one batch.
    pub activation_bytes: f64,
    pub total_bytes: f64,
}

const BYTES_PER_PARAMETER: f64 = 40.0;
const FLOATS_PER_WIDTH: f64 = 28.0;
const FLOATS_PER_ATTENTION_SCORE: f64 = 1.2;
const FLOATS_PER_LOGIT: f64 = 2.0;
const PROCESS_BYTES: f64 = 16.0 * 1024.0 * 1024.0;

impl MemoryEstimate {
    /// Training `shape` on batches of `batch_size` sequences of `seq_len` tokens.
    pub fn training(shape: &ModelShape, batch_size: usize, seq_len: usize) -> Self {
        let (d, l, h, v) = (shape.width as f64, shape.depth as f64, shape.heads as f64, shape.vocab as f64);
        let (t, tokens) = (seq_len as f64, batch_size as f64 * seq_len as f64);
        let ffn = shape.ffn_width as f64;
        let params = l * (4.0 * d * d + 3.0 * d * ffn + 2.0 * d) + d + v * d;
        let parameter_bytes = BYTES_PER_PARAMETER * params;
        let activation_bytes = 4.0 * tokens * (l * (FLOATS_PER_WIDTH * d + FLOATS_PER_ATTENTION_SCORE * h * t) + FLOATS_PER_LOGIT * v);
        Self { parameter_bytes, activation_bytes, total_bytes: parameter_bytes + activation_bytes + PROCESS_BYTES }
    }
}

impl std::fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "~{} ({} parameters and optimizer state, {} activations)", bytes(self.total_bytes), bytes(self.parameter_bytes), bytes(self.activation_bytes))
    }
}

/// Bytes in binary units: "1.5 GiB".
pub fn bytes(b: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = b;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit + 1 == UNITS.len() && value >= 1024.0 {
        return format!("{b:.3e} B");
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Memory this machine can give a process: the smaller of physical memory and the cgroup's limit
/// (a Slurm job or a container), in bytes. `None` where it cannot be read.
pub fn machine_memory_bytes() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kib: f64 = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    let mut total = total_kib * 1024.0;
    for limit_file in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
        if let Some(limit) = std::fs::read_to_string(limit_file).ok().and_then(|s| s.trim().parse::<f64>().ok()) {
            total = total.min(limit);
        }
    }
    Some(total)
}

/// What a CUDA context costs on its GPU besides a run's tensors (driver state, loaded kernels),
/// per process: a few hundred MiB on current drivers; counted once per run sharing a GPU.
pub const CUDA_CONTEXT_BYTES: f64 = 512.0 * 1024.0 * 1024.0;

/// A GPU's memory, as `nvidia-smi` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuMemory {
    pub name: String,
    pub total_bytes: f64,
    /// In use by every process on the GPU (this job's and others').
    pub used_bytes: f64,
}

impl GpuMemory {
    /// The GPU the machine calls `id` (an index or a UUID: [`crate::device::machine_gpu_id`]), or
    /// `None` where `nvidia-smi` is missing, does not know it or does not answer in time; the
    /// checks that use this then leave it to the run to fail with the backend's out-of-memory
    /// message.
    pub fn query(id: &str) -> Option<Self> {
        let answer =
            crate::nvidia_smi::ask(&["--query-gpu=name,memory.total,memory.used", "--format=csv,noheader,nounits", "-i", id], crate::nvidia_smi::TIMEOUT)?;
        Self::parse(&answer)
    }

    /// `NAME, TOTAL_MIB, USED_MIB`, the first line of nvidia-smi's answer.
    fn parse(text: &str) -> Option<Self> {
        let mut fields = text.lines().next()?.rsplitn(3, ',').map(str::trim);
        let mib = |f: Option<&str>| f?.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).map(|v| v * 1024.0 * 1024.0);
        let (used_bytes, total_bytes) = (mib(fields.next())?, mib(fields.next())?);
        let name = fields.next()?.to_string();
        Some(Self { name, total_bytes, used_bytes })
    }

    pub fn free_bytes(&self) -> f64 {
        (self.total_bytes - self.used_bytes).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_tracks_measured_peaks_and_never_overflows() {
        // Measured peak RSS of `windtunnel train`: width 256, depth 4, 4 heads, vocab 4096,
        // batch 8 × 256 → 406 MB; width 768, depth 2, 12 heads, vocab 32,000, batch 4 × 256 → 1724 MB.
        let a = ModelShape { width: 256, depth: 4, heads: 4, kv_heads: 4, ffn_width: 640, vocab: 4096 };
        let b = ModelShape { width: 768, depth: 2, heads: 12, kv_heads: 12, ffn_width: 1920, vocab: 32_000 };
        for (shape, batch, measured) in [(a, 8, 406e6), (b, 4, 1724e6)] {
            let e = MemoryEstimate::training(&shape, batch, 256).total_bytes;
            assert!((e / measured - 1.0).abs() < 0.4, "{e} vs {measured}");
        }
        let absurd = ModelShape { width: 1_000_000_000, depth: 1000, heads: 1, kv_heads: 1, ffn_width: 2_500_000_000, vocab: 1 << 30 };
        let e = MemoryEstimate::training(&absurd, usize::MAX, usize::MAX);
        assert!(e.total_bytes.is_finite() && e.total_bytes > 1e30);
        assert!(bytes(e.total_bytes).ends_with(" B"), "{}", bytes(e.total_bytes));
        assert_eq!(bytes(1536.0 * 1024.0 * 1024.0), "1.5 GiB");
    }

    #[test]
    fn reads_nvidia_smis_memory_line() {
        let g = GpuMemory::parse("NVIDIA H200, 143771, 1024\n").unwrap();
        assert_eq!(g.name, "NVIDIA H200");
        assert_eq!(g.total_bytes, 143771.0 * 1048576.0);
        assert_eq!(g.free_bytes(), (143771.0 - 1024.0) * 1048576.0);
        assert_eq!(GpuMemory::parse("Tesla V100-SXM2-16GB, 16384, 0").unwrap().name, "Tesla V100-SXM2-16GB");
        assert_eq!(GpuMemory::parse("No devices were found"), None);
        assert_eq!(GpuMemory::parse("A100, [N/A], 3"), None);
        assert_eq!(GpuMemory::parse(""), None);
    }
}
