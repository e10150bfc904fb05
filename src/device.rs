//! Which backend runs a job: `--device cpu` (burn's flex backend) or `--device cuda:N` (burn's
//! CUDA backend, compiled in with the `cuda` cargo feature).
//!
//! Work that needs a backend implements [`BackendJob`]; [`run_on`] picks the backend at run time
//! and calls it with the concrete autodiff backend type and device.
//!
//! On a GPU, `WINDTUNNEL_CUDA_FUSION=off` trains on burn's CubeCL backend without its fusion
//! layer ([`CudaUnfused`]): fusion compiles a kernel for every chain of operations it fuses (each
//! shape its own), unfused every operation runs its own kernel. The GPU check measures both.

use crate::model::fused::FusedOps;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The CPU backend, with autodiff.
pub type CpuBackend = burn::backend::Autodiff<burn::backend::Flex>;

/// The CUDA backend, with autodiff.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Autodiff<burn::backend::Cuda>;

/// burn's CUDA backend without its fusion layer (`WINDTUNNEL_CUDA_FUSION=off`).
#[cfg(feature = "cuda")]
pub type CudaUnfused = burn_cubecl::CubeBackend<burn::cubecl::cuda::CudaRuntime, f32, i32, u8>;

/// What training needs of a backend: autodiff with windtunnel's fused operations
/// ([`crate::model::fused`]) on both levels. Every backend above has it.
pub trait TrainBackend: AutodiffBackend<InnerBackend: FusedOps> + FusedOps {}
impl<T: AutodiffBackend<InnerBackend: FusedOps> + FusedOps> TrainBackend for T {}

/// The environment variable that turns burn's kernel fusion off on GPUs.
pub const CUDA_FUSION_VAR: &str = "WINDTUNNEL_CUDA_FUSION";

/// Whether GPU work runs through burn's fusion layer: `on` (the default) or `off`, from
/// `WINDTUNNEL_CUDA_FUSION` (`value`: its value, when set).
pub fn cuda_fusion(value: Option<&str>) -> anyhow::Result<bool> {
    match value.map(str::trim) {
        None | Some("") | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => anyhow::bail!("{CUDA_FUSION_VAR}={other}: expected `on` (the default: burn's kernel fusion) or `off` (every operation its own kernel)"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s == "cpu" {
            return Ok(Self::Cpu);
        }
        if s == "cuda" || s == "gpu" {
            return Ok(Self::Cuda(0));
        }
        if let Some(index) = s.strip_prefix("cuda:") {
            return index.parse().map(Self::Cuda).map_err(|_| format!("bad device `{s}`: the GPU index after `cuda:` must be a number, as in `cuda:0`"));
        }
        Err(format!("unknown device `{s}`; use `cpu` or `cuda:N` (N = GPU index)"))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

/// Work generic over the backend.
pub trait BackendJob {
    type Output;
    fn run<B: TrainBackend>(self, device: B::Device) -> Self::Output;
}

/// Whether this binary was built with CUDA support.
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

/// Run `job` on the backend and device that `spec` names.
pub fn run_on<J: BackendJob>(spec: DeviceSpec, job: J) -> anyhow::Result<J::Output> {
    match spec {
        DeviceSpec::Cpu => Ok(job.run::<CpuBackend>(Default::default())),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(index) => {
            // Compiled kernels and autotune results persist across processes (checked before any work).
            crate::kernel_cache::install_for_gpu()?;
            // burn's CUDA runtime panics when no driver or device is found; turn that into an error.
            let fusion = cuda_fusion(std::env::var(CUDA_FUSION_VAR).ok().as_deref())?;
            let device = burn::backend::cuda::CudaDevice::new(index);
            let run = || match fusion {
                true => job.run::<CudaBackend>(device),
                false => job.run::<burn::backend::Autodiff<CudaUnfused>>(device),
            };
            // The hint names the GPU as nvidia-smi does (a sweep's worker sees its GPU as cuda:0).
            let gpu = machine_gpu_id(index, cuda_visible_devices().as_deref()).unwrap_or_else(|_| index.to_string());
            crate::panic::catch_panic(run)
                .map_err(|message| anyhow::anyhow!("--device {spec}: the CUDA backend failed ({message}); {}", gpu_failure_hint(&message, &gpu)))
        }
        #[cfg(not(feature = "cuda"))]
        // Without the `cuda` feature `require_built` always refuses a GPU with the rebuild message.
        DeviceSpec::Cuda(_) => require_built(spec, "--device").and_then(|()| Err(anyhow::anyhow!("--device {spec}: no CUDA backend in this build"))),
    }
}

/// What to do about a failure of the CUDA backend, from its message: running out of GPU memory
/// (cubecl 0.10 says "can't allocate buffer" or "out-of-memory"), or anything else, which at start
/// is most often a missing driver, NVRTC library or device (`gpu`: the machine's name for it).
pub fn gpu_failure_hint(message: &str, gpu: &str) -> String {
    let message = message.to_lowercase().replace(['-', '_'], " ");
    if message.contains("out of memory") || message.contains("can't allocate buffer") {
        "GPU memory ran out: lower `training.micro_batch_size` in the run file (gradient accumulation keeps the batch; \
         `windtunnel plan` estimates each run's memory), or run fewer runs per GPU (`run --runs-per-device`)"
            .into()
    } else {
        format!("check that the NVIDIA driver and the CUDA toolkit's NVRTC library are installed and that GPU {gpu} exists (nvidia-smi -L)")
    }
}

/// The machine's name for `cuda:N` (an index or a UUID, as `CUDA_VISIBLE_DEVICES` and
/// `nvidia-smi -i` take it), which a sweep worker for `cuda:N` gets as its `CUDA_VISIBLE_DEVICES`.
/// `cuda:N` counts the GPUs this process can see, as CUDA and PyTorch do: all of the machine's
/// when `visible` (this process's own `CUDA_VISIBLE_DEVICES`) is unset, else the N-th entry of
/// that list, which is how Slurm (`--gpus`, `--gres=gpu:K`) and containers hand a job its GPUs.
/// Passing N itself to a worker would give it the machine's GPU N, which may be another job's.
pub fn machine_gpu_id(index: usize, visible: Option<&str>) -> anyhow::Result<String> {
    let Some(visible) = visible else { return Ok(index.to_string()) };
    let entries = visible_entries(visible);
    entries.get(index).map(|e| e.to_string()).ok_or_else(|| {
        let seen = match entries.len() {
            0 => "no GPU".to_string(),
            1 => "one GPU, cuda:0".to_string(),
            n => format!("{n} GPUs, cuda:0 to cuda:{}", n - 1),
        };
        anyhow::anyhow!(
            "cuda:{index} is not a GPU this process can see: CUDA_VISIBLE_DEVICES={visible:?} (set by Slurm, a container or you) \
             leaves it {seen}, and cuda:N counts those; name only those, or unset CUDA_VISIBLE_DEVICES to count all of the machine's"
        )
    })
}

/// How many GPUs this process can see, for `run --devices cuda:all`: the entries of
/// `CUDA_VISIBLE_DEVICES` (`visible`) when it is set, else the GPUs `nvidia-smi -L` lists
/// (`listing`: its output, `None` when it cannot run). MIG slices are not counted.
pub fn visible_gpu_count(visible: Option<&str>, listing: impl FnOnce() -> Option<String>) -> anyhow::Result<usize> {
    let count = match visible {
        Some(v) => visible_entries(v).len(),
        None => {
            let listing = listing().ok_or_else(|| {
                anyhow::anyhow!(
                    "cuda:all: cannot count the GPUs (`nvidia-smi -L` is missing, failed or did not answer within 10 s); name them, as in cuda:0,1,2,3"
                )
            })?;
            listing.lines().filter(|l| l.starts_with("GPU ")).count()
        }
    };
    if count == 0 {
        let why = visible.map_or("`nvidia-smi -L` lists none".to_string(), |v| format!("CUDA_VISIBLE_DEVICES={v:?} names none"));
        anyhow::bail!("cuda:all: this process sees no GPU ({why}); use cpu");
    }
    Ok(count)
}

/// This process's `CUDA_VISIBLE_DEVICES`, when set: the `visible` of [`machine_gpu_id`] and
/// [`visible_gpu_count`].
pub fn cuda_visible_devices() -> Option<String> {
    std::env::var("CUDA_VISIBLE_DEVICES").ok()
}

/// The GPUs a `CUDA_VISIBLE_DEVICES` value names, in order.
fn visible_entries(visible: &str) -> Vec<&str> {
    visible.split(',').map(str::trim).filter(|e| !e.is_empty()).collect()
}

/// `nvidia-smi -L`'s output, or `None` where it cannot run or answer in time.
pub fn nvidia_smi_listing() -> Option<String> {
    crate::nvidia_smi::ask(&["-L"], crate::nvidia_smi::TIMEOUT)
}

/// Start the backend `spec` names and run one tiny operation on it, so that a GPU whose driver,
/// NVRTC library or device is missing fails before any work, with the backend's own reason.
pub fn probe(spec: DeviceSpec) -> anyhow::Result<()> {
    struct Probe;
    impl BackendJob for Probe {
        type Output = f32;
        fn run<B: TrainBackend>(self, device: B::Device) -> f32 {
            use burn::tensor::{ElementConversion, Tensor};
            (Tensor::<B, 1>::from_floats([1.0], &device) + 1.0).into_scalar().elem()
        }
    }
    run_on(spec, Probe).map(|_| ())
}

/// An error unless this binary can run on `spec` (a GPU needs the `cuda` feature); `flag` is the
/// option that named the device, for the message.
pub fn require_built(spec: DeviceSpec, flag: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        spec == DeviceSpec::Cpu || CUDA_COMPILED,
        "{flag} {spec}: this windtunnel was built without CUDA support; rebuild with `cargo build --release --features cuda` \
         (needs the CUDA toolkit at run time), or use the CPU ({flag} cpu)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages cubecl 0.10 and the CUDA driver give for exhausted GPU memory point at the
    /// micro-batch; anything else at the installation.
    #[test]
    fn a_gpu_out_of_memory_points_at_the_micro_batch() {
        for message in [
            "can't allocate buffer of size: 34359738368",
            "An out-of-memory error happened during launch",
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
        ] {
            assert!(gpu_failure_hint(message, "0").contains("micro_batch_size"), "{message}");
        }
        let hint = gpu_failure_hint("Unable to dynamically load the \"cuda\" shared library", "3");
        assert!(hint.contains("NVIDIA driver") && hint.contains("GPU 3"), "{hint}");
    }

    #[test]
    fn fusion_is_on_unless_turned_off_by_name() {
        assert!(cuda_fusion(None).unwrap());
        assert!(cuda_fusion(Some("on")).unwrap());
        assert!(!cuda_fusion(Some("off")).unwrap());
        let e = cuda_fusion(Some("no")).unwrap_err().to_string();
        assert!(e.contains("WINDTUNNEL_CUDA_FUSION=no") && e.contains("`off`"), "{e}");
    }

    #[test]
    fn the_cpu_backend_passes_the_probe() {
        probe(DeviceSpec::Cpu).unwrap();
    }

    /// Inside a Slurm job given GPUs 2 and 5, `cuda:1` must be the machine's GPU 5, not GPU 1.
    #[test]
    fn a_worker_gets_the_nth_gpu_this_process_can_see() {
        assert_eq!(machine_gpu_id(3, None).unwrap(), "3");
        assert_eq!(machine_gpu_id(1, Some("2,5")).unwrap(), "5");
        assert_eq!(machine_gpu_id(0, Some(" GPU-8f2a1c3e-aaaa ,GPU-77")).unwrap(), "GPU-8f2a1c3e-aaaa");
        let e = machine_gpu_id(2, Some("2,5")).unwrap_err().to_string();
        assert!(e.contains("cuda:2") && e.contains("\"2,5\"") && e.contains("2 GPUs, cuda:0 to cuda:1"), "{e}");
        let e = machine_gpu_id(0, Some("")).unwrap_err().to_string();
        assert!(e.contains("no GPU") && e.contains("unset CUDA_VISIBLE_DEVICES"), "{e}");
    }

    #[test]
    fn all_gpus_are_those_this_process_can_see() {
        let listing = || Some("GPU 0: NVIDIA H200 (UUID: GPU-1)\nGPU 1: NVIDIA H200 (UUID: GPU-2)\n  MIG 1g.18gb Device 0: (UUID: MIG-3)\n".to_string());
        assert_eq!(visible_gpu_count(None, listing).unwrap(), 2);
        assert_eq!(visible_gpu_count(Some("4,7,5"), || unreachable!("CUDA_VISIBLE_DEVICES decides")).unwrap(), 3);
        assert!(visible_gpu_count(Some(""), listing).unwrap_err().to_string().contains("sees no GPU (CUDA_VISIBLE_DEVICES=\"\" names none)"));
        assert!(visible_gpu_count(None, || Some(String::new())).unwrap_err().to_string().contains("`nvidia-smi -L` lists none"));
        assert!(visible_gpu_count(None, || None).unwrap_err().to_string().contains("name them"));
    }

    #[test]
    fn parses_devices_and_rejects_nonsense() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert!("cuda:x".parse::<DeviceSpec>().unwrap_err().contains("must be a number"));
        assert!("tpu".parse::<DeviceSpec>().unwrap_err().contains("unknown device"));
    }
}
