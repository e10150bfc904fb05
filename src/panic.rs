//! Panics turned into errors: burn and cubecl panic where windtunnel wants errors (no CUDA
//! driver, an out-of-memory launch), sometimes on a thread of their own. [`catch_panic`] is how
//! the device probe, the kernel cache and every training job on a backend call into them.

use std::sync::Mutex;

/// `f()`, or the message of the first panic raised while it ran: burn and cubecl panic where we
/// want errors, and burn's CUDA runtime panics on its own server thread (no driver, say), leaving
/// the caller only a closed channel. Panics are not printed while any `f` runs; the first of those
/// on `f`'s own thread or on a thread of no `f` (the runtime's) becomes the error, or, when `f`
/// survived it, a warning afterwards. Several threads may each run an `f` at once (a worker
/// training several runs): each gets its own thread's panic.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_panic_warning(f, |message| crate::stderr_line!("warning: a background thread failed and was survived: {message}"))
}

/// [`catch_panic`], handing the message of a panic `f` survived to `warn`.
fn catch_panic_warning<T>(f: impl FnOnce() -> T, warn: impl FnOnce(String)) -> Result<T, String> {
    let scope = PanicScope::enter();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let recorded = scope.exit();
    match result {
        Ok(value) => {
            if let Some(message) = recorded {
                warn(message);
            }
            Ok(value)
        }
        Err(payload) => Err(recorded.unwrap_or_else(|| panic_message(&*payload))),
    }
}

thread_local! {
    /// The first panic on this thread while it runs a [`catch_panic`] (`Some` while it does).
    static THREAD_PANIC: std::cell::RefCell<Option<Option<Panic>>> = const { std::cell::RefCell::new(None) };
}

/// Scopes open anywhere, and the panics of threads outside every scope while one was open.
static BACKGROUND: Mutex<(usize, Vec<Panic>)> = Mutex::new((0, Vec::new()));

/// A panic's message, numbered in the order panics happened.
type Panic = (u64, String);

fn numbered(message: String) -> Panic {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    (NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst), message)
}

/// One [`catch_panic`] in progress on this thread.
struct PanicScope {
    /// Background panics already recorded when it began (not its own).
    background_from: usize,
    /// The thread's state in an enclosing scope, restored when this one ends.
    enclosing: Option<Option<Panic>>,
}

impl PanicScope {
    fn enter() -> Self {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let message = || numbered(panic_message(info.payload()));
                if THREAD_PANIC.with(|p| p.borrow_mut().as_mut().map(|first| *first = first.take().or_else(|| Some(message())))).is_some() {
                    return;
                }
                let mut background = background();
                if background.0 > 0 {
                    background.1.push(message());
                } else {
                    drop(background);
                    previous(info);
                }
            }));
        });
        let enclosing = THREAD_PANIC.with(|p| p.borrow_mut().replace(None));
        let mut background = background();
        background.0 += 1;
        Self { background_from: background.1.len(), enclosing }
    }

    /// The panic this scope reports: the first of its thread's and the background ones since it began.
    fn exit(self) -> Option<String> {
        let own = THREAD_PANIC.with(|p| std::mem::replace(&mut *p.borrow_mut(), self.enclosing)).flatten();
        let mut background = background();
        let other = background.1.get(self.background_from..).and_then(|b| b.first().cloned());
        let first = own.into_iter().chain(other).min_by_key(|(number, _)| *number).map(|(_, message)| message);
        background.0 -= 1;
        if background.0 == 0 {
            background.1.clear();
        }
        first
    }
}

fn background() -> std::sync::MutexGuard<'static, (usize, Vec<Panic>)> {
    BACKGROUND.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "unknown error".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// burn's CUDA runtime fails on its own thread; the caller sees a closed channel. The error
    /// must carry the first panic's message, wherever it happened.
    #[test]
    fn a_panic_on_any_thread_becomes_the_error_message() {
        let failed = catch_panic(|| {
            let server = std::thread::spawn(|| panic!("Unable to dynamically load the \"cuda\" shared library"));
            server.join().expect("the server answered")
        });
        assert_eq!(failed.unwrap_err(), "Unable to dynamically load the \"cuda\" shared library");
        assert_eq!(catch_panic(|| panic!("on the caller's thread {}", 7)).unwrap_err(), "on the caller's thread 7");
        let mut warned = None;
        let survived = catch_panic_warning(|| std::thread::spawn(|| panic!("a logger thread")).join().is_err(), |m| warned = Some(m));
        assert_eq!(survived, Ok(true), "a panic the caller survives is a warning, not an error");
        assert_eq!(warned.as_deref(), Some("a logger thread"));
        assert_eq!(catch_panic(|| 3), Ok(3));
    }

    /// A worker training several GPU runs at once: each run's thread gets its own panic, and an
    /// enclosing scope keeps its own across an inner one.
    #[test]
    fn concurrent_scopes_each_get_their_own_panic() {
        let barrier = std::sync::Barrier::new(4);
        let messages: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        catch_panic(|| {
                            barrier.wait();
                            panic!("run {i} failed")
                        })
                        .unwrap_err()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(messages, (0..4).map(|i| format!("run {i} failed")).collect::<Vec<_>>());
        let outer = catch_panic(|| {
            assert_eq!(catch_panic(|| panic!("inner")).unwrap_err(), "inner");
            panic!("outer")
        });
        assert_eq!(outer.unwrap_err(), "outer");
    }
}
