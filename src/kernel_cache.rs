//! The GPU kernel cache: where burn's CUDA backend keeps the kernels it compiled (PTX from NVRTC)
//! and the autotune results it measured, so that every process after the first on a machine
//! starts training in seconds instead of compiling for minutes.
//!
//! One directory serves every worker of every sweep. It is chosen, first match wins, by
//! `--kernel-cache DIR` (`train`, `run`, `worker`, `coord-check`), the `WINDTUNNEL_KERNEL_CACHE` environment
//! variable, a sweep file's `[gpu] kernel_cache`, or the default `$XDG_CACHE_HOME/windtunnel/kernels`
//! (`~/.cache/windtunnel/kernels`). It is checked before any training: a path that is a file, or a
//! directory this process cannot write, is one clear error.
//!
//! cubecl (under burn) versions its entries (`cuda/<cubecl version>/…`) and keys each kernel by a
//! stable hash of its definition; concurrent processes are safe on a local file system (its table
//! of contents is written under a file lock, kernels are appended whole to an `O_APPEND` file, and
//! a torn entry is skipped when read; a test here writes into one cache from eight processes at
//! once through those very types). On a cluster, prefer a node-local path (`/tmp/…`, a local
//! scratch disk) over a network file system, whose appends are not atomic.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;

/// The environment variable that names the cache directory (executors set it for their workers).
pub const ENV: &str = "WINDTUNNEL_KERNEL_CACHE";

/// A kernel-cache directory and where it was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelCache {
    pub dir: PathBuf,
    /// "--kernel-cache", "WINDTUNNEL_KERNEL_CACHE", "[gpu] kernel_cache in FILE" or "default".
    pub source: String,
}

impl KernelCache {
    /// The cache a command uses: its flag, else the environment, else `from_file` (a sweep's
    /// `[gpu] kernel_cache`), else the default. `None` only when no home directory is known.
    pub fn resolve(flag: Option<&Path>, from_file: Option<KernelCache>) -> Option<Self> {
        if let Some(dir) = flag {
            return Some(Self { dir: absolute(dir), source: "--kernel-cache".into() });
        }
        if let Some(dir) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
            return Some(Self { dir: absolute(Path::new(&dir)), source: ENV.into() });
        }
        from_file.or_else(Self::default_dir)
    }

    /// `$XDG_CACHE_HOME/windtunnel/kernels`, else `$HOME/.cache/windtunnel/kernels`.
    pub fn default_dir() -> Option<Self> {
        let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
        let root = xdg.or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
        Some(Self { dir: root.join("windtunnel").join("kernels"), source: "default".into() })
    }

    /// Whether the user chose this cache (rather than the default).
    pub fn is_explicit(&self) -> bool {
        self.source != "default"
    }

    /// Create the directory and prove it writable, or say what is wrong and how to fix it.
    pub fn check(&self) -> anyhow::Result<()> {
        let dir = &self.dir;
        let fix = format!("give a writable directory with --kernel-cache DIR or {ENV}=DIR");
        anyhow::ensure!(!dir.exists() || dir.is_dir(), "kernel cache {} (from {}) is not a directory; {fix}", dir.display(), self.source);
        std::fs::create_dir_all(dir).with_context(|| format!("kernel cache {} (from {}) cannot be created; {fix}", dir.display(), self.source))?;
        let probe = dir.join(format!(".windtunnel-probe-{}", std::process::id()));
        std::fs::write(&probe, b"probe").with_context(|| format!("kernel cache {} (from {}) is not writable; {fix}", dir.display(), self.source))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The cache this process was told to use (set once, before the first GPU job).
static SELECTED: OnceLock<KernelCache> = OnceLock::new();
/// The cache handed to cubecl, which takes its configuration once per process.
static INSTALLED: OnceLock<PathBuf> = OnceLock::new();

/// Choose this process's cache (`--kernel-cache`, or an executor's setting); checked at once
/// when chosen explicitly, so a bad directory stops the command before any training.
pub fn select(cache: KernelCache) -> anyhow::Result<()> {
    if cache.is_explicit() {
        cache.check()?;
    }
    let _ = SELECTED.set(cache);
    Ok(())
}

/// The selected cache, or the one [`KernelCache::resolve`] finds from the environment.
pub fn selected() -> Option<KernelCache> {
    SELECTED.get().cloned().or_else(|| KernelCache::resolve(None, None))
}

/// Point cubecl's compilation and autotune caches at the selected directory, before the first
/// CUDA device is created. Later calls are no-ops (cubecl's configuration is per process).
pub fn install_for_gpu() -> anyhow::Result<Option<PathBuf>> {
    if let Some(dir) = INSTALLED.get() {
        return Ok(Some(dir.clone()));
    }
    let Some(cache) = selected() else { return Ok(None) };
    cache.check()?;
    configure_cubecl(&cache.dir)?;
    let _ = INSTALLED.set(cache.dir.clone());
    Ok(Some(cache.dir))
}

#[cfg(feature = "cuda")]
fn configure_cubecl(dir: &Path) -> anyhow::Result<()> {
    use burn::cubecl::config::{cache::CacheConfig, CubeClRuntimeConfig, RuntimeConfig};
    if CubeClRuntimeConfig::storage().lock().is_some() {
        // Something read cubecl's configuration already; it cannot change now (not expected:
        // this runs before the first device is created).
        crate::stderr_line!("warning: cubecl was configured before the kernel cache; kernels are not cached in {}", dir.display());
        return Ok(());
    }
    // Start from what a cubecl.toml / burn.toml and CUBECL_* variables say (cubecl panics on a
    // malformed file; that is an error here), then set the caches.
    let mut config = crate::panic::catch_panic(|| CubeClRuntimeConfig::from_current_dir().override_from_env()).map_err(|message| {
        anyhow::anyhow!("a cubecl.toml or burn.toml in the current directory or a folder above it cannot be read ({message}); fix or remove it")
    })?;
    config.compilation.cache = Some(CacheConfig::File(dir.to_path_buf()));
    config.autotune.cache = CacheConfig::File(dir.to_path_buf());
    CubeClRuntimeConfig::set(config);
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn configure_cubecl(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cubecl_common::cache::{Cache, CacheOption};
    use cubecl_common::compilation_cache::CompilationCache;

    #[test]
    fn a_file_or_an_unwritable_directory_is_one_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let cache = KernelCache { dir: file.clone(), source: "--kernel-cache".into() };
        let e = format!("{:#}", cache.check().unwrap_err());
        assert!(e.contains("is not a directory") && e.contains("--kernel-cache"), "{e}");

        let below_file = KernelCache { dir: file.join("sub"), source: ENV.into() };
        let e = format!("{:#}", below_file.check().unwrap_err());
        assert!(e.contains("cannot be created") && e.contains(ENV), "{e}");

        let fresh = KernelCache { dir: tmp.path().join("a/b/kernels"), source: "--kernel-cache".into() };
        fresh.check().unwrap();
        assert!(fresh.dir.is_dir());
        assert_eq!(std::fs::read_dir(&fresh.dir).unwrap().count(), 0, "the probe file is removed");
    }

    /// What one writer process does (`cache_writer_process`): what burn's CUDA backend does
    /// when it compiles a kernel or tunes an operation — look it up, and insert it when missing.
    const WRITER_ENV: &str = "WINDTUNNEL_TEST_CACHE_WRITER";
    const KERNELS: u128 = 400;

    /// The shape of cubecl-cuda's PTX entry (its fields are private there).
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq, Clone, Debug)]
    struct PtxEntry {
        entrypoint_name: String,
        shared_mem_bytes: usize,
        ptx: Vec<i8>,
    }

    fn ptx_of(key: u128) -> PtxEntry {
        let len = 1_000 + (key as usize * 37) % 20_000;
        PtxEntry { entrypoint_name: format!("kernel_{key}"), shared_mem_bytes: key as usize, ptx: (0..len).map(|i| (i as u128 ^ key) as i8).collect() }
    }

    /// The kernels writer `id` of a test compiles: 300 of the 400, overlapping every other writer's.
    fn kernels_of(id: u128) -> impl Iterator<Item = u128> {
        (0..300).map(move |i| (i * 7 + id * 13) % KERNELS)
    }

    /// cubecl's two caches under `root`, named and versioned as the CUDA backend names them.
    fn caches(root: &Path) -> (CompilationCache<u128, PtxEntry>, Cache<String, String>) {
        let ptx = CompilationCache::new("ptx", CacheOption::default().name("cuda").root(root));
        let tune = Cache::new("autotune/device/matmul", CacheOption::default().name("autotune").root(root));
        (ptx, tune)
    }

    /// The body of the writer processes of the next test; does nothing when run as a test itself.
    #[test]
    fn cache_writer_process() {
        let Some(spec) = std::env::var_os(WRITER_ENV) else { return };
        let (root, id) = spec.to_str().unwrap().rsplit_once(',').unwrap();
        let (mut ptx, mut tune) = caches(Path::new(root));
        for key in kernels_of(id.parse().unwrap()) {
            if ptx.get(&key).is_none() {
                ptx.insert(key, ptx_of(key)).unwrap();
            }
            if tune.get(&key.to_string()).is_none() {
                tune.insert(key.to_string(), format!("tile-{key}")).unwrap();
            }
        }
    }

    /// A sweep's GPU workers share one kernel cache: eight processes compiling overlapping
    /// kernels into an empty cache at once, through cubecl's own cache types, leave every kernel
    /// and autotune result whole for the next process to read.
    #[test]
    fn concurrent_workers_neither_lose_nor_corrupt_cache_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let writers: Vec<_> = (0..8u128)
            .map(|id| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["kernel_cache::tests::cache_writer_process", "--exact", "--test-threads=1"])
                    .env(WRITER_ENV, format!("{},{id}", tmp.path().display()))
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut writer in writers {
            assert!(writer.wait().unwrap().success(), "a writer failed");
        }
        let (ptx, tune) = caches(tmp.path());
        let written: std::collections::BTreeSet<u128> = (0..8).flat_map(kernels_of).collect();
        assert_eq!(written.len(), KERNELS as usize);
        for key in written {
            assert_eq!(ptx.get(&key), Some(&ptx_of(key)), "kernel {key}");
            assert_eq!(tune.get(&key.to_string()), Some(&format!("tile-{key}")), "autotune result {key}");
        }
    }

    #[test]
    fn the_flag_wins_over_the_file_and_the_default() {
        let from_file = KernelCache { dir: "/x/file-cache".into(), source: "[gpu] kernel_cache in s.toml".into() };
        let flag = KernelCache::resolve(Some(Path::new("/x/flag")), Some(from_file.clone())).unwrap();
        assert_eq!((flag.dir.as_path(), flag.source.as_str()), (Path::new("/x/flag"), "--kernel-cache"));
        if std::env::var_os(ENV).is_none() {
            assert_eq!(KernelCache::resolve(None, Some(from_file.clone())), Some(from_file));
        }
    }
}
