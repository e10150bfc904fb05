//! Files that are never half-written or written by two processes: atomic writes (a temporary
//! file beside the target, fsynced, renamed over it, the directory fsynced) and exclusive
//! `flock` locks (a sweep directory's `sweep.lock`, a run directory's `run.lock`).

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The temporary path used while writing `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Atomically replace `path` with `bytes`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    atomic_write_with(path, |f| f.write_all(bytes).map_err(Into::into))
}

/// Atomically replace `path` with what `write` puts into the file it is given.
pub fn atomic_write_with(path: &Path, write: impl FnOnce(&mut File) -> anyhow::Result<()>) -> anyhow::Result<()> {
    refuse_non_regular(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        write(&mut file).with_context(|| format!("cannot write {}", path.display()))?;
        file.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable.
            File::open(dir).and_then(|d| d.sync_all()).ok();
        }
        Ok(())
    })();
    if result.is_err() {
        fs::remove_file(&tmp).ok();
    }
    result
}

/// A path that exists and is not a regular file (a device such as /dev/null, a folder, a pipe, a
/// socket) is never replaced by a file: the rename would swap a device for a file.
pub fn refuse_non_regular(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = fs::metadata(path) else { return Ok(()) };
    let kind = meta.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_fifo() {
        "a pipe"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    anyhow::bail!("{} is {what}, not a regular file; windtunnel writes only regular files: give a file path", path.display())
}

/// An exclusive advisory lock (`flock`) on a file: held until dropped or until the process dies
/// (the kernel releases it then, so a crash never leaves a stale lock). The file holds the
/// holder's pid, for messages.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Take the lock on `path` (created if missing) without waiting. `Ok(Err(holder))` when another
    /// process holds it, with what that process wrote into the file (`pid N`).
    pub fn try_acquire(path: &Path) -> anyhow::Result<Result<FileLock, String>> {
        let file =
            fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a valid open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) => return Ok(Err(fs::read_to_string(path).unwrap_or_default().trim().to_string())),
                // A file system without locks (Lustre mounted without `flock`): go on, and say so.
                Some(libc::ENOLCK | libc::ENOSYS | libc::EOPNOTSUPP) => {
                    crate::stderr_line!("warning: {} cannot be locked on this file system ({err}); make sure no other process writes there", path.display())
                }
                _ => return Err(err).with_context(|| format!("cannot lock {}", path.display())),
            }
        }
        file.set_len(0).with_context(|| format!("cannot write {}", path.display()))?;
        (&file).write_all(format!("pid {}", std::process::id()).as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Ok(FileLock { _file: file }))
    }

    /// Take the lock, waiting up to `patience` for a holder that is about to let go (a process that
    /// only looked at it, or one that is writing its last checkpoint).
    pub fn acquire_within(path: &Path, patience: std::time::Duration) -> anyhow::Result<Result<FileLock, String>> {
        let started = std::time::Instant::now();
        loop {
            match Self::try_acquire(path)? {
                Err(_) if started.elapsed() < patience => std::thread::sleep(std::time::Duration::from_millis(20)),
                other => return Ok(other),
            }
        }
    }

    /// Whether some process holds the lock on `path` now: `Some(holder)` if so, `None` when it is
    /// free or the file does not exist (or this file system cannot tell).
    pub fn holder(path: &Path) -> Option<String> {
        let file = File::open(path).ok()?;
        // SAFETY: flock on a valid open descriptor; a shared lock taken and dropped at once.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
            return None;
        }
        let held = std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK);
        held.then(|| fs::read_to_string(path).unwrap_or_default().trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        let failed = atomic_write_with(&p, |_| anyhow::bail!("disk on fire"));
        assert!(failed.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_device_or_a_folder_is_never_replaced_by_a_file() {
        // A socket stands in for a device: the same refusal, and a regression here would not
        // replace the machine's /dev/null.
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.toml");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let e = atomic_write(&socket, b"x").unwrap_err().to_string();
        assert_eq!(e, format!("{} is a socket, not a regular file; windtunnel writes only regular files: give a file path", socket.display()));
        assert!(std::os::unix::fs::FileTypeExt::is_socket(&fs::metadata(&socket).unwrap().file_type()));
        let folder = dir.path().join("f");
        fs::create_dir(&folder).unwrap();
        let e = atomic_write(&folder, b"x").unwrap_err().to_string();
        assert!(e.ends_with("f is a folder, not a regular file; windtunnel writes only regular files: give a file path"), "{e}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary is left");
    }

    #[test]
    fn a_lock_has_one_holder_and_is_free_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.lock");
        assert_eq!(FileLock::holder(&p), None);
        let lock = FileLock::try_acquire(&p).unwrap().unwrap();
        let holder = format!("pid {}", std::process::id());
        assert_eq!(FileLock::try_acquire(&p).unwrap().unwrap_err(), holder);
        assert_eq!(FileLock::holder(&p), Some(holder));
        drop(lock);
        assert_eq!(FileLock::holder(&p), None);
        assert!(FileLock::try_acquire(&p).unwrap().is_ok());
    }
}
