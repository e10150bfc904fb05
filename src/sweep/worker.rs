//! Persistent workers: one long-lived `windtunnel worker` process per device slot that trains
//! runs one after another, so a GPU's CUDA context and the kernels compiled in the process are
//! paid for once per worker, not once per run.
//!
//! The protocol is one JSON object per line. The executor writes a [`Request`] on the worker's
//! stdin; the worker trains that run exactly as `windtunnel train` would (same code, same files,
//! same exit codes), with its stderr redirected into the run's `worker.log`, and answers with a
//! [`Reply`] on stdout. The worker ends when its stdin closes (the executor is done, or died), or
//! after a run a stop signal interrupted.
//!
//! Failure stays per run: a run that fails or diverges is an exit code in its reply and the
//! worker takes the next request; a worker that dies (killed, out of memory, a panic) fails only
//! the run it held, which the executor retries from its checkpoint in a fresh worker. SIGTERM or
//! SIGINT makes the current run write a checkpoint, as for `train`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;
use crate::train::run::{self, CannotStart, TrainOptions, EXIT_CANNOT_START, EXIT_FAILED};

/// Train one run: what `windtunnel train RUN_FILE --out OUT [--resume]` would do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub run_file: PathBuf,
    pub out: PathBuf,
    pub resume: bool,
    pub resume_before_tokens: Option<u64>,
    /// Where the run's stderr goes (appended).
    pub log: PathBuf,
    /// CPU threads for this run (its share of the cores when it starts, as a `train` process
    /// would get in RAYON_NUM_THREADS); absent: the worker's own pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

/// How a requested run ended: the exit code `windtunnel train` would have had.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub out: PathBuf,
    pub exit_code: u8,
}

/// Exit code reported for a run whose training panicked (the worker stops after it).
const EXIT_PANICKED: u8 = 101;

/// The worker side: answer requests from stdin until it closes. Returns the worker's exit code.
pub fn serve(device: DeviceSpec) -> anyhow::Result<u8> {
    let mut stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("worker: cannot read the next request from stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = serde_json::from_str(&line).with_context(|| format!("worker: malformed request {line:?}"))?;
        let requested_at = Instant::now();
        let exit_code = with_stderr_to(&request.log, || train_one(&request, device, requested_at))?;
        let reply = serde_json::to_string(&Reply { out: request.out.clone(), exit_code })?;
        writeln!(stdout, "{reply}").and_then(|_| stdout.flush()).context("worker: cannot answer on stdout (the executor is gone)")?;
        if exit_code == EXIT_PANICKED {
            anyhow::bail!("worker: the run {} panicked; stopping this worker (its state may be inconsistent)", request.out.display());
        }
        if let Some(sig) = run::stop_requested() {
            return Ok(run::exit_interrupted(sig));
        }
    }
    Ok(0)
}

/// One run, its errors and panics turned into `train`'s exit codes and written to its log.
fn train_one(request: &Request, device: DeviceSpec, requested_at: Instant) -> u8 {
    let options =
        TrainOptions { device, resume: request.resume, resume_before_tokens: request.resume_before_tokens, quiet: true, requested_at: Some(requested_at) };
    let train = || run::train(&request.run_file, &request.out, &options);
    let outcome = std::panic::catch_unwind(|| match (device, request.threads) {
        (DeviceSpec::Cpu, Some(threads)) => in_thread_pool(threads, train),
        _ => train(),
    });
    match outcome {
        Ok(Ok(summary)) => summary.outcome.exit_code(),
        Ok(Err(e)) => {
            crate::stderr_line!("error: {e:#}");
            if e.downcast_ref::<CannotStart>().is_some() {
                EXIT_CANNOT_START
            } else {
                EXIT_FAILED
            }
        }
        Err(_) => EXIT_PANICKED,
    }
}

/// `f` on a rayon pool of `threads` threads that flush denormals like the global one
/// ([`crate::cpu`]), so a run gets the share of the cores it was given, not the worker's first.
/// Losses do not depend on the thread count.
fn in_thread_pool<T: Send>(threads: usize, f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .start_handler(|_| crate::cpu::flush_denormals())
        .build()
        .context("worker: cannot start the run's CPU threads")?;
    pool.install(f)
}

/// Run `f` with this process's stderr (fd 2) appended to `log`, then restore it.
fn with_stderr_to<T>(log: &Path, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("worker: cannot open {}", log.display()))?;
    let _ = std::io::stderr().flush();
    // SAFETY: dup/dup2/close on file descriptors this function owns; fd 2 is restored before
    // returning, and nothing else in the process swaps it.
    let saved = unsafe { libc::dup(2) };
    anyhow::ensure!(saved >= 0, "worker: cannot duplicate stderr: {}", std::io::Error::last_os_error());
    unsafe { libc::dup2(file.as_raw_fd(), 2) };
    let result = f();
    let _ = std::io::stderr().flush();
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    Ok(result)
}

/// The executor side: a started `windtunnel worker` and the run it is training.
pub struct WorkerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<Reply>,
    /// The device slot it was started for.
    pub slot: usize,
    /// The planned run it trains now (an index into the plan), or `None` while idle.
    pub run: Option<usize>,
}

/// What a worker did since it was last asked.
pub enum Event {
    /// Still training its run, or idle.
    Nothing,
    /// Its run ended with this exit code; it is idle now.
    Finished(u8),
    /// The process ended (a crash, a kill, a stop): its run, if any, did not report.
    Exited(ExitStatus),
}

impl WorkerProcess {
    /// Start `command` (a `windtunnel worker …` with its environment set) with piped stdin and
    /// stdout and `log` as its own stderr.
    pub fn start(mut command: Command, slot: usize, log: &Path) -> anyhow::Result<Self> {
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let stderr = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr);
        let mut child = command.spawn().context("cannot start a persistent worker")?;
        let stdout = child.stdout.take().context("worker stdout not piped")?;
        let (send, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(reply) = serde_json::from_str::<Reply>(&line) {
                    if send.send(reply).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Self { stdin: child.stdin.take(), child, replies, slot, run: None })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Hand it run `run` to train. An error means the worker is gone (its stdin is closed).
    pub fn send(&mut self, run: usize, request: &Request) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("the worker's stdin is closed")?;
        let line = serde_json::to_string(request)?;
        writeln!(stdin, "{line}").and_then(|_| stdin.flush()).with_context(|| format!("cannot send a run to worker pid {}", self.child.id()))?;
        self.run = Some(run);
        Ok(())
    }

    pub fn poll(&mut self) -> anyhow::Result<Event> {
        match self.replies.try_recv() {
            Ok(reply) => {
                self.run = None;
                return Ok(Event::Finished(reply.exit_code));
            }
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {}
        }
        match self.child.try_wait()? {
            None => Ok(Event::Nothing),
            // A reply may have arrived between the two reads: it wins over the exit.
            Some(status) => Ok(match self.replies.try_recv() {
                Ok(reply) => {
                    self.run = None;
                    Event::Finished(reply.exit_code)
                }
                Err(_) => Event::Exited(status),
            }),
        }
    }

    /// Ask it to stop: a running run writes a checkpoint (SIGTERM), an idle worker sees its stdin
    /// close and ends.
    pub fn stop(&mut self) {
        self.stdin = None;
        if self.run.is_some() {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        }
    }

    /// Close its stdin (no more runs) and wait for it to end.
    pub fn finish(mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}
