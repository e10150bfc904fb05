//! The devices a sweep's workers run on (`run --devices`, read by [`parse_devices`]): a slot per
//! device (the CPU, shared by every worker, or a GPU taking `runs_per_device`), the warning when
//! that many runs may not fit in a GPU's memory, the command that starts a worker on a slot (its
//! threads or GPU, the kernel cache, and death with its `run`), and the kernel cache the workers
//! are given.

use std::path::PathBuf;
use std::process::Command;

use super::{ExecOptions, Scheduler};
use crate::device::DeviceSpec;
use crate::kernel_cache::KernelCache;
use crate::model::memory::{self, GpuMemory};
use crate::sweep::plan::Plan;

/// The warning for `device` when `at_once` runs as large as `largest` (its id and estimated
/// bytes), plus a CUDA context each, may not fit in `gpu`'s free memory, with the runs-per-device
/// that would.
fn gpu_memory_warning(device: DeviceSpec, gpu: &GpuMemory, at_once: usize, largest: (&str, f64)) -> Option<String> {
    let per_run = largest.1 + memory::CUDA_CONTEXT_BYTES;
    let fit = (gpu.free_bytes() / per_run).floor() as usize;
    if fit >= at_once {
        return None;
    }
    let advice = match fit {
        0 => "even one may not fit: lower training.micro_batch_size in the sweep file (gradient accumulation keeps the batch)".to_string(),
        n => format!("--runs-per-device {n} would fit"),
    };
    Some(format!(
        "warning: {device} ({}, {} free of {}) may not hold {at_once} runs at once of up to ~{} each ({}, the largest, plus a CUDA context); {advice}",
        gpu.name,
        memory::bytes(gpu.free_bytes()),
        memory::bytes(gpu.total_bytes),
        memory::bytes(per_run),
        largest.0
    ))
}

/// `run --devices`: `cpu`, or GPUs as `cuda:0,1,2` or `cuda:all` (every GPU this process sees).
pub fn parse_devices(s: &str) -> anyhow::Result<Vec<DeviceSpec>> {
    if s.trim() == "cuda:all" {
        let visible = crate::device::cuda_visible_devices();
        let count = crate::device::visible_gpu_count(visible.as_deref(), crate::device::nvidia_smi_listing).map_err(|e| anyhow::anyhow!("--devices {e}"))?;
        return Ok((0..count).map(DeviceSpec::Cuda).collect());
    }
    let devices: Vec<DeviceSpec> = match s.strip_prefix("cuda:") {
        Some(list) => list
            .split(',')
            .map(|i| i.trim().parse().map(DeviceSpec::Cuda).map_err(|_| anyhow::anyhow!("--devices {s}: `{i}` is not a GPU index")))
            .collect::<anyhow::Result<_>>()?,
        None => s.split(',').map(|d| d.parse::<DeviceSpec>().map_err(anyhow::Error::msg)).collect::<anyhow::Result<_>>()?,
    };
    if let Some(twice) = devices.iter().enumerate().find_map(|(i, d)| devices[..i].contains(d).then_some(d)) {
        anyhow::bail!("--devices {s} names {twice} twice; to train several runs on one device at once, use --runs-per-device (or --parallel on the CPU)");
    }
    Ok(devices)
}

impl Scheduler<'_> {
    /// Say, before any GPU worker starts, when `runs_per_device` runs of the sweep's largest run
    /// may not fit in a GPU's free memory (nvidia-smi's; the estimate is `plan`'s, plus a CUDA
    /// context per run). A warning, not a refusal: the estimate is a rough one on a GPU.
    pub(super) fn warn_gpu_memory(&self) {
        let Some(big) = self.plan.runs.iter().max_by(|a, b| a.memory_bytes.total_cmp(&b.memory_bytes)) else { return };
        let at_once = self.options.runs_per_device.max(1).min(self.parallel);
        for slot in &self.slots {
            let Some(gpu) = slot.visible_gpu.as_deref().and_then(GpuMemory::query) else { continue };
            if let Some(warning) = gpu_memory_warning(slot.device, &gpu, at_once, (&big.id, big.memory_bytes)) {
                match &self.bars {
                    Some(b) => b.println(&warning),
                    None => crate::stderr_line!("{warning}"),
                }
            }
        }
    }

    /// A device with room for one more worker: the CPU is shared by every worker, a GPU takes
    /// `runs_per_device`.
    pub(super) fn free_slot(&self) -> Option<usize> {
        let capacity = |d: DeviceSpec| if d == DeviceSpec::Cpu { self.parallel } else { self.options.runs_per_device.max(1) };
        (0..self.slots.len()).find(|&s| self.slots[s].busy < capacity(self.slots[s].device))
    }

    /// `windtunnel SUBCOMMAND --device …` for a worker on `slot`, with its threads or GPU, the
    /// kernel cache, and death with this process.
    pub(super) fn worker_command(&self, subcommand: &str, slot: usize, threads: usize) -> Command {
        let mut cmd = Command::new(&self.options.worker);
        cmd.arg(subcommand);
        die_with_parent(&mut cmd);
        match &self.slots[slot].visible_gpu {
            None => cmd.arg("--device").arg("cpu").env("RAYON_NUM_THREADS", threads.to_string()),
            Some(gpu) => cmd.arg("--device").arg("cuda:0").env("CUDA_VISIBLE_DEVICES", gpu),
        };
        if let Some(dir) = &self.kernel_cache {
            cmd.env(crate::kernel_cache::ENV, dir);
        }
        cmd
    }
}

/// The kernel cache for the workers: `run --kernel-cache`, `WINDTUNNEL_KERNEL_CACHE`, the sweep
/// file's `[gpu] kernel_cache`, or the default. Checked here, before any worker starts, when it
/// was chosen explicitly or a GPU will use it.
pub(super) fn workers_kernel_cache(options: &ExecOptions, plan: &Plan, devices: &[DeviceSpec]) -> anyhow::Result<Option<PathBuf>> {
    let from_file = plan.kernel_cache.clone().map(|dir| KernelCache { dir, source: "the sweep file's [gpu] kernel_cache".into() });
    let Some(cache) = KernelCache::resolve(options.kernel_cache.as_deref(), from_file) else { return Ok(None) };
    if cache.is_explicit() || devices.iter().any(|&d| d != DeviceSpec::Cpu) {
        cache.check()?;
    }
    Ok(cache.is_explicit().then_some(cache.dir))
}

/// Workers do not outlive their `run`: on Linux the kernel sends a worker SIGTERM (it writes a
/// checkpoint and stops) when the `run` that started it dies, even by SIGKILL; a worker whose
/// parent died before it could ask for that stops at once.
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl and getppid are async-signal-safe, and nothing here allocates.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 runs of ~9.5 GiB (9 + a CUDA context) in 30 GiB free: three fit, and the warning says so.
    #[test]
    fn warns_when_the_runs_per_gpu_may_not_fit_and_names_what_would() {
        const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
        let gpu = GpuMemory { name: "NVIDIA A100-SXM4-40GB".into(), total_bytes: 40.0 * GIB, used_bytes: 10.0 * GIB };
        let largest = ("m36-lr0.01", 9.0 * GIB);
        assert_eq!(gpu_memory_warning(DeviceSpec::Cuda(1), &gpu, 3, largest), None);
        let w = gpu_memory_warning(DeviceSpec::Cuda(1), &gpu, 4, largest).unwrap();
        assert_eq!(
            w,
            "warning: cuda:1 (NVIDIA A100-SXM4-40GB, 30.0 GiB free of 40.0 GiB) may not hold 4 runs at once of up to ~9.5 GiB each \
             (m36-lr0.01, the largest, plus a CUDA context); --runs-per-device 3 would fit"
        );
        let w = gpu_memory_warning(DeviceSpec::Cuda(0), &gpu, 1, ("big", 40.0 * GIB)).unwrap();
        assert!(w.contains("even one may not fit: lower training.micro_batch_size"), "{w}");
    }
}
