//! Where this process's diagnostic lines go ([`crate::stderr_line!`]): stderr, or, on a thread
//! that trains a run for a persistent worker, that run's log. A worker trains several runs at
//! once on threads of its own, so each thread's lines must land in its own run's `worker.log`
//! (redirecting the process's fd 2 would mix them).

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;

thread_local! {
    static SINK: RefCell<Option<File>> = const { RefCell::new(None) };
}

/// Write one line to this thread's run log, else to stderr. Never panics: a line that cannot be
/// written (a full disk, a closed stderr) is lost, not the run.
pub fn line(args: std::fmt::Arguments) {
    let written = SINK.with(|sink| sink.borrow_mut().as_mut().map(|file| writeln!(file, "{args}")));
    if written.is_none() {
        let _ = writeln!(std::io::stderr(), "{args}");
    }
}

/// `f()` with this thread's lines appended to `log`; the thread's previous destination is
/// restored afterwards, also when `f` panics.
pub fn to_file<T>(log: &File, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<File>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SINK.with(|sink| *sink.borrow_mut() = self.0.take());
        }
    }
    let file = log.try_clone().ok();
    let _restore = Restore(SINK.with(|sink| std::mem::replace(&mut *sink.borrow_mut(), file)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_writes_to_its_own_log() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [dir.path().join("a.log"), dir.path().join("b.log")];
        std::thread::scope(|s| {
            for (i, path) in paths.iter().enumerate() {
                s.spawn(move || {
                    let file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
                    to_file(&file, || {
                        for k in 0..100 {
                            crate::stderr_line!("run {i} line {k}");
                        }
                    });
                });
            }
        });
        for (i, path) in paths.iter().enumerate() {
            let text = std::fs::read_to_string(path).unwrap();
            assert_eq!(text.lines().count(), 100);
            assert!(text.lines().all(|l| l.starts_with(&format!("run {i} "))), "{text}");
        }
        // Restored after a panic inside.
        let file = std::fs::File::create(dir.path().join("c.log")).unwrap();
        let _ = std::panic::catch_unwind(|| to_file(&file, || panic!("inside")));
        assert!(SINK.with(|s| s.borrow().is_none()));
    }
}
