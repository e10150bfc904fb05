//! Persistent workers: one long-lived `windtunnel worker` process per device slot that trains
//! runs one after another, so a GPU's CUDA context and the kernels compiled in the process are
//! paid for once per worker, not once per run.
//!
//! The protocol is one JSON object per line. The executor writes a [`Request`] on the worker's
//! stdin; the worker trains that run exactly as `windtunnel train` would (same code, same files,
//! same exit codes, the same summary), its lines going to the run's `worker.log`
//! ([`crate::stderr`]), and answers with a [`Reply`] on stdout. Each run trains on a thread of its
//! own, so a request sent before the last reply trains at once with the runs in progress: several
//! runs share one process, its CUDA context and its compiled kernels (on a GPU, cubecl gives each
//! thread its own stream). Replies come as runs end and name their run. The worker ends when its
//! stdin closes (the executor is done, or died) and its runs have ended, or when the runs a stop
//! signal interrupted have.
//!
//! Failure stays per run: a run that fails or diverges is an exit code in its reply and the
//! worker takes the next request; a worker that dies (killed, out of memory, a panic) fails only
//! the runs it held, which the executor retries from their checkpoints in a fresh worker. SIGTERM or
//! SIGINT makes every running run write a checkpoint, as for `train`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;
use crate::process::{self, CannotStart, EXIT_CANNOT_START, EXIT_FAILED};
use crate::train::run::{self, TrainOptions};

/// What trains a sweep's runs (`run --workers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// A `windtunnel train` process per run.
    PerRun,
    /// Persistent `windtunnel worker`s, one per run at a time of a device, each training run
    /// after run (the CUDA context and compiled kernels made once per worker).
    Persistent,
    /// One persistent worker per device, training all of the device's runs at a time at once,
    /// each on a thread of its own (one CUDA context and kernel cache for all of them).
    Shared,
}

impl Workers {
    /// The `run --workers` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerRun => "per-run",
            Self::Persistent => "persistent",
            Self::Shared => "shared",
        }
    }
}

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

/// What the worker's main loop waits for.
enum Inbox {
    /// A request line from stdin.
    Request(String),
    /// stdin closed (or failed): no more requests.
    Closed,
    /// A run ended; its reply.
    Ended(Reply),
}

/// Stack of a run's thread (training ran on the main thread's 8 MiB before runs had threads).
const RUN_STACK_BYTES: usize = 64 << 20;

/// The worker side: answer requests from stdin until it closes. Each request trains on a thread
/// of its own, so the executor may send the next before the last has ended (runs at once share
/// the process: its CUDA context and compiled kernels); each reply names its run (`out`). After a
/// stop signal or a panic the worker takes no new runs and ends when its runs have. Returns the
/// worker's exit code.
pub fn serve(device: DeviceSpec) -> anyhow::Result<u8> {
    let (events, next) = mpsc::channel();
    let requests = events.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if requests.send(Inbox::Request(line)).is_err() {
                return;
            }
        }
        let _ = requests.send(Inbox::Closed);
    });
    let (mut running, mut accepting, mut panicked) = (0usize, true, None);
    let mut stdout = std::io::stdout();
    while let Ok(event) = next.recv() {
        match event {
            Inbox::Request(line) if line.trim().is_empty() => continue,
            Inbox::Request(line) => {
                let request: Request = serde_json::from_str(&line).with_context(|| format!("worker: malformed request {line:?}"))?;
                // After a stop signal or a panic, a new run is left to the executor's next worker.
                if !accepting {
                    continue;
                }
                let out = request.out.clone();
                match start_run(request, device, events.clone()) {
                    Ok(()) => running += 1,
                    Err(e) => {
                        crate::stderr_line!("error: {e:#}");
                        answer(&mut stdout, &Reply { out, exit_code: EXIT_FAILED })?;
                    }
                }
            }
            Inbox::Closed => accepting = false,
            Inbox::Ended(reply) => {
                running -= 1;
                answer(&mut stdout, &reply)?;
                if reply.exit_code == EXIT_PANICKED {
                    panicked = Some(reply.out);
                    accepting = false;
                }
                accepting &= process::stop_requested().is_none();
            }
        }
        if !accepting && running == 0 {
            break;
        }
    }
    if let Some(out) = panicked {
        anyhow::bail!("worker: the run {} panicked; stopping this worker (its state may be inconsistent)", out.display());
    }
    Ok(process::stop_requested().map_or(0, process::exit_interrupted))
}

fn answer(stdout: &mut std::io::Stdout, reply: &Reply) -> anyhow::Result<()> {
    let line = serde_json::to_string(reply)?;
    writeln!(stdout, "{line}").and_then(|_| stdout.flush()).context("worker: cannot answer on stdout (the executor is gone)")
}

/// Train `request` on a thread of its own, which sends its reply to `ended`.
fn start_run(request: Request, device: DeviceSpec, ended: mpsc::Sender<Inbox>) -> anyhow::Result<()> {
    let requested_at = Instant::now();
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(&request.log).with_context(|| format!("worker: cannot open {}", request.log.display()))?;
    std::thread::Builder::new()
        .name(format!("run {}", request.out.display()))
        .stack_size(RUN_STACK_BYTES)
        .spawn(move || {
            let exit_code = crate::stderr::to_file(&log, || train_one(&request, &log, device, requested_at));
            let _ = ended.send(Inbox::Ended(Reply { out: request.out, exit_code }));
        })
        .context("worker: cannot start a thread for the run")?;
    Ok(())
}

/// One run, its errors and panics turned into `train`'s exit codes; its lines (the summary
/// `train` prints, or the error) go to its log.
fn train_one(request: &Request, log: &std::fs::File, device: DeviceSpec, requested_at: Instant) -> u8 {
    let options =
        TrainOptions { device, resume: request.resume, resume_before_tokens: request.resume_before_tokens, quiet: true, requested_at: Some(requested_at) };
    let train = || run::train(&request.run_file, &request.out, &options);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match (device, request.threads) {
        // This thread's lines already go to the run's log; on the run's own pool they must too.
        (DeviceSpec::Cpu, Some(threads)) => in_thread_pool(threads, || crate::stderr::to_file(log, train)),
        _ => train(),
    }));
    match outcome {
        Ok(Ok(summary)) => {
            crate::stderr_line!("{summary}");
            summary.outcome.exit_code()
        }
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

/// The executor side: a started `windtunnel worker` and the runs it is training.
pub struct WorkerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<Reply>,
    /// The device slot it was started for.
    pub slot: usize,
    /// The planned runs it trains now (indices into the plan) and their directories.
    running: Vec<(usize, PathBuf)>,
    /// Runs that ended, with their exit codes, not yet collected by [`Self::poll`].
    ended: Vec<(usize, u8)>,
    /// How the process ended, once it has.
    exited: Option<ExitStatus>,
}

/// What became of a run since it was last asked about.
pub enum Event {
    /// Still training.
    Nothing,
    /// It ended with this exit code.
    Finished(u8),
    /// The worker process ended (a crash, a kill, a stop) before the run reported.
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
        Ok(Self { stdin: child.stdin.take(), child, replies, slot, running: Vec::new(), ended: Vec::new(), exited: None })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs it trains now.
    pub fn busy(&self) -> usize {
        self.running.len()
    }

    /// Whether it takes runs (not stopped, and not found gone when last sent one).
    pub fn open(&self) -> bool {
        self.stdin.is_some()
    }

    /// Hand it run `run` to train. An error means the worker is gone (its stdin is closed): it
    /// takes no more runs, and those it has report as it ends.
    pub fn send(&mut self, run: usize, request: &Request) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("the worker's stdin is closed")?;
        let line = serde_json::to_string(request)?;
        if let Err(e) = writeln!(stdin, "{line}").and_then(|_| stdin.flush()) {
            self.stdin = None;
            return Err(e).with_context(|| format!("cannot send a run to worker pid {}", self.child.id()));
        }
        self.running.push((run, request.out.clone()));
        Ok(())
    }

    /// What became of `run`, one of its runs.
    pub fn poll(&mut self, run: usize) -> anyhow::Result<Event> {
        self.collect_replies();
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
            // A reply may have arrived between the two reads: it wins over the exit.
            self.collect_replies();
        }
        if let Some(i) = self.ended.iter().position(|&(r, _)| r == run) {
            return Ok(Event::Finished(self.ended.swap_remove(i).1));
        }
        match self.exited {
            Some(status) if self.running.iter().any(|&(r, _)| r == run) => {
                self.running.retain(|&(r, _)| r != run);
                Ok(Event::Exited(status))
            }
            _ => Ok(Event::Nothing),
        }
    }

    /// Whether the process has ended and every run it had was reported: it can be forgotten.
    pub fn gone(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited.is_some() && self.running.is_empty() && self.ended.is_empty()
    }

    /// Move the replies that arrived into `ended`.
    fn collect_replies(&mut self) {
        while let Ok(reply) = self.replies.try_recv() {
            if let Some(i) = self.running.iter().position(|(_, out)| *out == reply.out) {
                let (run, _) = self.running.swap_remove(i);
                self.ended.push((run, reply.exit_code));
            }
        }
    }

    /// Ask it to stop: running runs write a checkpoint (SIGTERM), an idle worker sees its stdin
    /// close and ends.
    pub fn stop(&mut self) {
        self.stdin = None;
        if !self.running.is_empty() {
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
