//! Questions to `nvidia-smi`, the one tool every machine with an NVIDIA driver has: how many GPUs
//! there are and how much memory each has. Every answer is optional (no driver, no tool, a GPU it
//! does not know), and bounded in time: on a GPU that has fallen off the bus `nvidia-smi` can hang
//! for minutes, and a sweep must not hang with it.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long an answer may take before it is given up on.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// `nvidia-smi ARGS`'s standard output, or `None` when it cannot run, fails, or takes longer than
/// `timeout` (it is then killed).
pub fn ask(args: &[&str], timeout: Duration) -> Option<String> {
    ask_program("nvidia-smi", args, timeout)
}

fn ask_program(program: &str, args: &[&str], timeout: Duration) -> Option<String> {
    let mut child = Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().ok()?;
    // Read on a thread, so a long answer cannot fill the pipe and stall the child.
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).ok().map(|_| text)
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let text = reader.join().ok()??;
    status.success().then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_a_failure_and_a_hang() {
        assert_eq!(ask_program("sh", &["-c", "echo 'GPU 0: X'"], TIMEOUT).as_deref(), Some("GPU 0: X\n"));
        assert_eq!(ask_program("sh", &["-c", "echo partial; exit 3"], TIMEOUT), None);
        assert_eq!(ask_program("/nonexistent/nvidia-smi", &[], TIMEOUT), None);
        let started = Instant::now();
        assert_eq!(ask_program("sleep", &["30"], Duration::from_millis(200)), None);
        assert!(started.elapsed() < Duration::from_secs(5), "a hung tool is killed at the timeout");
    }
}
