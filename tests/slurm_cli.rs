//! The Slurm executor against a real Slurm: a sweep through Slurm gives the local table, a task
//! past its time limit is requeued and resumes from its checkpoint, a failed task is reported,
//! hostile strings in a sweep file do not execute, and a cancelled sweep resumes. One test runs a
//! task's script by hand, without Slurm.
//!
//! The others need a running Slurm whose jobs can see this machine's files (.ci/slurm-up.sh
//! starts a one-node one). They run when WINDTUNNEL_SLURM=1, as .ci/run sets it after starting
//! Slurm; then a Slurm that does not answer fails them. Without the variable they are built as
//! ignored, with the reason (build.rs sets the `windtunnel_slurm` cfg), so cargo lists them as
//! not run rather than as passed.

mod common;
use common::{fails, json, table_without_timings, windtunnel, TINY};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One Slurm test at a time: they share a two-CPU node and time limits.
static SLURM: Mutex<()> = Mutex::new(());

fn slurm_enabled(test: &str) -> bool {
    if std::env::var("WINDTUNNEL_SLURM").as_deref() != Ok("1") {
        eprintln!("{test}: not run; start Slurm (.ci/slurm-up.sh) and set WINDTUNNEL_SLURM=1 to run the Slurm tests");
        return false;
    }
    let out = Command::new("sinfo").args(["-h", "-o", "%T"]).output().expect("WINDTUNNEL_SLURM=1 but `sinfo` cannot run: Slurm's client is not installed");
    let states = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && states.lines().any(|s| s.starts_with("idle") || s.starts_with("mix") || s.starts_with("alloc")),
        "WINDTUNNEL_SLURM=1 but Slurm has no usable node (sinfo: {states:?}, {}); run .ci/slurm-up.sh",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// The common tiny sweep, a grid whose data file does not exist (a failing task), and a run long
/// enough (about 10 s) to be preempted while it trains.
fn tiny_with_failure() -> String {
    format!(
        "{TINY}\n[[grid]]\nname = \"missing-data\"\nmodels = {{ widths = [16], depth = 1, head_dim = 16 }}\n\
         parameters.data = {{ value = {{ kind = \"tokens\", path = \"/nonexistent/windtunnel-test.bin\", vocab = 64 }} }}\n\
         \n[[grid]]\nname = \"preempted\"\nmodels = {{ widths = [32], depth = 1, head_dim = 16 }}\n\
         parameters.\"training.tokens\" = {{ value = 1228800 }}\nparameters.\"training.eval_interval_tokens\" = {{ value = 409600 }}\n"
    )
}

/// One run of about `seconds` of training on one core.
fn long_sweep(name: &str, seconds: u64, slurm: &str) -> String {
    let tokens = seconds * 110_000 / 4096 * 4096;
    format!(
        r#"
name = "{name}"

[base]
mup = {{ base_width = 16 }}
optimizer = {{ lr = 0.01 }}
schedule = {{ kind = "cosine", warmup_tokens = 256 }}
training = {{ tokens = {tokens}, batch_size = 4, seq_len = 32, eval_interval_tokens = {eval}, eval_tokens = 256 }}
data = {{ kind = "synthetic", vocab = 64 }}

[[grid]]
name = "long"
models = {{ widths = [32], depth = 1, head_dim = 16 }}

[slurm]
{slurm}
"#,
        eval = tokens / 4
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Slurm delays a requeued task by two minutes (BeginTime); the tests cut that delay to a few
/// seconds so the requeue-and-resume path runs quickly. Not to zero: slurmd refuses to launch a
/// task whose new credential is stamped in the same second as the one the requeue revoked ("Job
/// credential revoked", and the task is gone), which once failed the time-limit test in CI.
fn release_requeued() {
    static SEEN: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());
    let Ok(out) = Command::new("squeue").args(["-h", "-r", "-t", "PD", "-o", "%i %r"]).output() else { return };
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((id, "BeginTime")) = line.trim().split_once(' ') {
            let since = match seen.iter().find(|(s, _)| s == id) {
                Some((_, t)) => *t,
                None => {
                    seen.push((id.to_string(), Instant::now()));
                    continue;
                }
            };
            if since.elapsed() >= Duration::from_secs(3) {
                let _ = Command::new("scontrol").args(["update", &format!("JobId={id}"), "StartTime=now"]).status();
                seen.retain(|(s, _)| s != id);
            }
        }
    }
}

/// `windtunnel run ... --executor slurm --wait`, releasing requeued tasks while it waits.
fn run_slurm_wait(args: &[&str]) -> std::process::Output {
    run_slurm_wait_and(args, || {})
}

/// The same, calling `meanwhile` on every poll (to preempt a task, say).
fn run_slurm_wait_and(args: &[&str], mut meanwhile: impl FnMut()) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_windtunnel")).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(600), "the Slurm sweep did not finish in 10 minutes");
        release_requeued();
        meanwhile();
        std::thread::sleep(Duration::from_millis(300));
    }
    child.wait_with_output().unwrap()
}

fn metrics_steps(run_dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect()
}

fn only_run(sweep: &Path) -> PathBuf {
    std::fs::read_dir(sweep.join("runs")).unwrap().flatten().map(|e| e.path()).next().unwrap()
}

#[test]
#[cfg_attr(not(windtunnel_slurm), ignore = "needs a running Slurm: sudo .ci/slurm-up.sh, then WINDTUNNEL_SLURM=1 cargo test --release")]
fn a_sweep_through_slurm_gives_the_local_table() {
    if !slurm_enabled("a_sweep_through_slurm_gives_the_local_table") {
        return;
    }
    let _serial = SLURM.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let sweep_file = write(root.path(), "tiny.toml", &tiny_with_failure());
    let s = sweep_file.to_str().unwrap();

    let local = root.path().join("local");
    let o = windtunnel(&["run", s, "--out", local.to_str().unwrap(), "--parallel", "2", "--max-retries", "0", "--quiet"]);
    assert!(!o.status.success(), "the run without data fails the local sweep");

    let remote = root.path().join("slurm");
    let sweep = remote.join("tiny");
    // Preempt the long run once while it trains, as a scheduler would (requeue: TERM, then back
    // to the queue); it must resume from its checkpoint and still give the local result.
    let long_run =
        json(&["plan", s, "--json"])["runs"].as_array().unwrap().iter().find(|r| r["grid"] == "preempted").unwrap()["id"].as_str().unwrap().to_string();
    let long_dir = sweep.join("runs").join(&long_run);
    let mut preempted = false;
    let o = run_slurm_wait_and(&["run", s, "--out", remote.to_str().unwrap(), "--executor", "slurm", "--max-retries", "0", "--wait"], || {
        if preempted {
            return;
        }
        let Ok(text) = std::fs::read_to_string(long_dir.join("status.json")) else { return };
        let Ok(status) = serde_json::from_str::<serde_json::Value>(&text) else { return };
        if status["state"] == "running" && status["step"].as_u64().unwrap_or(0) > 1000 {
            let jobs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sweep.join("slurm").join("jobs.json")).unwrap()).unwrap();
            let task = jobs["tasks"][&long_run].as_str().unwrap();
            assert!(Command::new("scontrol").args(["requeue", task]).status().unwrap().success());
            preempted = true;
        }
    });
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(preempted, "the long run was never seen running");
    assert!(stderr.contains("submitted 16 run(s)"), "{stderr}");
    let log = std::fs::read_to_string(long_dir.join("slurm.log")).unwrap();
    assert!(log.contains("restarts=1") && log.contains("exit=143"), "{log}");
    assert!(std::fs::read_to_string(long_dir.join("worker.log")).unwrap().contains("resumed from the checkpoint"));

    // The same table, up to timings; trunks, dependent branches, a diverged run and the
    // preempted run alike.
    assert_eq!(table_without_timings(&sweep), table_without_timings(&local.join("tiny")));
    let status = json(&["status", sweep.to_str().unwrap(), "--json"]);
    assert_eq!((status["done"].as_u64(), status["diverged"].as_u64(), status["failed"].as_u64()), (Some(13), Some(2), Some(1)), "{status}");
    let failed = status["detail"].as_array().unwrap().iter().find(|r| r["state"] == "failed").unwrap();
    assert!(failed["reason"].as_str().unwrap().contains("/nonexistent/windtunnel-test.bin"), "{failed}");
    assert!(failed["live"]["handle"].as_str().is_some(), "an unfinished run shows its Slurm task: {failed}");

    // Scripts a person can read and resubmit; every run's task recorded.
    let scripts = remote.join("tiny").join("slurm");
    let wave2 = std::fs::read_to_string(scripts.join("wave-2.sbatch")).unwrap();
    assert!(wave2.contains("--dependency=afterok:") && wave2.contains("#SBATCH --signal=B:USR1@"), "{wave2}");
    let jobs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(scripts.join("jobs.json")).unwrap()).unwrap();
    assert_eq!(jobs["tasks"].as_object().unwrap().len(), 16);

    // Submitting again leaves finished runs alone and resubmits only the failed one.
    let o = run_slurm_wait(&["run", s, "--out", remote.to_str().unwrap(), "--executor", "slurm", "--max-retries", "0", "--wait"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("submitted 1 run(s)") && stderr.contains("15 already finished"), "{stderr}");
}

#[test]
#[cfg_attr(not(windtunnel_slurm), ignore = "needs a running Slurm: sudo .ci/slurm-up.sh, then WINDTUNNEL_SLURM=1 cargo test --release")]
fn a_task_past_its_time_limit_is_requeued_and_resumes() {
    if !slurm_enabled("a_task_past_its_time_limit_is_requeued_and_resumes") {
        return;
    }
    let _serial = SLURM.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    // A minute's limit with the warning 40 s before it, and a run far longer than that: the task
    // is warned, checkpoints, requeues itself and goes on, whatever this machine's speed.
    let sweep_file = write(root.path(), "long.toml", &long_sweep("long", 600, "time = \"1\"\nsignal_seconds = 40\nmax_requeues = 6"));
    let out = root.path().join("results");
    let o = windtunnel(&["run", sweep_file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--executor", "slurm"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sweep = out.join("long");
    let run = only_run(&sweep);
    let started = Instant::now();
    let mut before_requeue: Option<(u64, String)> = None;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no requeue and resume within 5 minutes:\n{}\nthe queue:\n{}",
            std::fs::read_to_string(run.join("slurm.log")).unwrap_or_default(),
            Command::new("squeue").args(["-h", "-r", "-o", "%i %T %r %S"]).output().map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default()
        );
        release_requeued();
        let log = std::fs::read_to_string(run.join("slurm.log")).unwrap_or_default();
        let worker = std::fs::read_to_string(run.join("worker.log")).unwrap_or_default();
        if before_requeue.is_none() && log.contains("requeue after exit 138") {
            // The first warning stopped the worker at a checkpoint: remember the step and the
            // metrics written so far (their wall times would differ if the run started over).
            let step =
                worker.lines().find_map(|l| l.trim().strip_prefix("steps ").and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok())).unwrap();
            before_requeue = Some((step, std::fs::read_to_string(run.join("metrics.jsonl")).unwrap()));
        }
        if let Some((step, _)) = &before_requeue {
            let status: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap();
            if worker.contains(&format!("resumed from the checkpoint at step {step}")) || status["step"].as_u64().unwrap() > step + 2000 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = windtunnel(&["cancel", sweep.to_str().unwrap()]);
    let (step, metrics_then) = before_requeue.unwrap();
    let log = std::fs::read_to_string(run.join("slurm.log")).unwrap();
    assert!(log.matches(" start=").count() >= 2 && log.contains("restarts=1"), "{log}");
    // Resumed, not restarted: the lines logged before the requeue are still there, unchanged, and
    // the steps go on past the checkpoint without repeating.
    let started = Instant::now();
    while json(&["status", sweep.to_str().unwrap(), "--json"])["running"].as_u64() != Some(0) {
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(300));
    }
    let metrics_now = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let kept: String = metrics_then
        .lines()
        .take_while(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap() <= step)
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!kept.is_empty() && metrics_now.starts_with(&kept), "the metrics before the checkpoint were rewritten: the run started over");
    let steps = metrics_steps(&run);
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "steps repeat");
    assert!(*steps.last().unwrap() > step, "no step after the checkpoint at {step}");
}

#[test]
#[cfg_attr(not(windtunnel_slurm), ignore = "needs a running Slurm: sudo .ci/slurm-up.sh, then WINDTUNNEL_SLURM=1 cargo test --release")]
fn hostile_strings_in_a_sweep_file_do_not_execute() {
    if !slurm_enabled("hostile_strings_in_a_sweep_file_do_not_execute") {
        return;
    }
    let _serial = SLURM.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let hostile = r#"it's $(touch pwned1); touch pwned2 `touch pwned3` "q""#;
    let text = TINY
        .replace("name = \"tiny\"", &format!("name = {}", toml::Value::String(hostile.into())))
        .replace("name = \"lr\"", &format!("name = {}", toml::Value::String("lr$(touch pwned4)'".into())))
        + "\n[slurm]\nsbatch = [\"--comment=$(touch${IFS}pwned5)\"]\n";
    assert!(text.contains("pwned1") && text.contains("pwned4"));
    let sweep_file = write(root.path(), "hostile.toml", &text);
    let out = root.path().join("results");
    // Through persistent workers, whose requests carry the sweep directory's path as JSON text.
    let o = run_slurm_wait(&["run", sweep_file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--executor", "slurm", "--workers", "persistent", "--wait"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sweep = out.join(hostile);
    assert_eq!(table_without_timings(&sweep).len(), 14, "the sweep with hostile names ran to its table");
    let found: Vec<String> = walk(root.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pwned")))
        .map(|p| p.display().to_string())
        .collect();
    assert!(found.is_empty(), "hostile strings executed: {found:?}");

    // A value that would break out of its #SBATCH line is refused before anything is written.
    let e = fails(&[
        "run",
        sweep_file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--executor",
        "slurm",
        "--partition",
        "debug\n#SBATCH --wrap=touch pwned6",
    ]);
    assert!(e.contains("slurm.partition") && e.contains("control character"), "{e}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

#[test]
#[cfg_attr(not(windtunnel_slurm), ignore = "needs a running Slurm: sudo .ci/slurm-up.sh, then WINDTUNNEL_SLURM=1 cargo test --release")]
fn a_cancelled_sweep_resumes_from_its_checkpoints() {
    if !slurm_enabled("a_cancelled_sweep_resumes_from_its_checkpoints") {
        return;
    }
    let _serial = SLURM.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    // Two runs in one task, trained at once by two persistent workers (`--runs-per-device 2`; the
    // resume below trains them one after another, a `train` process each): scancel's TERM reaches
    // both workers through the batch shell and its two lanes.
    let text = long_sweep("cancel-me", 15, "time = \"10\"").replace("widths = [32]", "widths = [32, 48]");
    let sweep_file = write(root.path(), "c.toml", &text);
    let out = root.path().join("results");
    let first = ["--executor", "slurm", "--workers", "persistent", "--runs-per-device", "2"];
    let o = windtunnel(&[&["run", sweep_file.to_str().unwrap(), "--out", out.to_str().unwrap()][..], &first].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sweep = out.join("cancel-me");
    let jobs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sweep.join("slurm").join("jobs.json")).unwrap()).unwrap();
    let tasks: std::collections::HashSet<&str> = jobs["tasks"].as_object().unwrap().values().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tasks.len(), 1, "two runs, one task: {jobs}");
    // Wait until both have trained a while, then cancel.
    let started = Instant::now();
    loop {
        let status = json(&["status", sweep.to_str().unwrap(), "--json"]);
        if status["detail"].as_array().unwrap().iter().all(|d| d["step"].as_u64().unwrap_or(0) > 500) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the runs never started together: {status}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let printed = String::from_utf8(windtunnel(&["cancel", sweep.to_str().unwrap()]).stdout).unwrap();
    assert!(printed.contains("cancelled Slurm job"), "{printed}");
    // The workers checkpoint on the TERM scancel sends, and the task does not requeue itself.
    let started = Instant::now();
    loop {
        let status = json(&["status", sweep.to_str().unwrap(), "--json"]);
        let details = status["detail"].as_array().unwrap();
        let live = |d: &serde_json::Value| d["live"]["state"].as_str().is_some_and(|s| s == "RUNNING" || s == "PENDING" || s == "COMPLETING");
        if details.iter().all(|d| d["state"] != "running" && !live(d)) {
            assert!(details.iter().all(|d| d["state"] == "interrupted"), "{status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the cancelled task still runs: {status}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let runs: Vec<PathBuf> = std::fs::read_dir(sweep.join("runs")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(runs.len(), 2);
    let pid = |run: &Path| serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap()["pid"].clone();
    assert_ne!(pid(&runs[0]), pid(&runs[1]), "the two runs were not trained by two workers");
    for run in &runs {
        assert!(*metrics_steps(run).last().unwrap() < 1_000_000);
    }

    // Resuming: submit again; the runs continue from their checkpoints.
    let o = run_slurm_wait(&["run", sweep_file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--executor", "slurm", "--wait"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for run in &runs {
        let status: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap();
        assert_eq!(status["state"], "done");
        let steps = metrics_steps(run);
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "steps repeat: the resumed run restarted from zero");
        let log = std::fs::read_to_string(run.join("slurm.log")).unwrap();
        assert_eq!(log.matches(" start=").count(), 2, "{log}");
        assert!(!log.contains("requeue"), "a cancelled task requeued itself:\n{log}");
    }
}

/// `--runs-per-task K`: an array task trains up to K short runs one after another (trunks keep a
/// task each, so their branches wait on them alone); the table is the local one, with a `train`
/// process per run, with persistent workers per task, and with one shared worker per task.
#[test]
#[cfg_attr(not(windtunnel_slurm), ignore = "needs a running Slurm: sudo .ci/slurm-up.sh, then WINDTUNNEL_SLURM=1 cargo test --release")]
fn queued_runs_per_task_give_the_local_table() {
    if !slurm_enabled("queued_runs_per_task_give_the_local_table") {
        return;
    }
    let _serial = SLURM.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let sweep_file = write(root.path(), "tiny.toml", TINY);
    let s = sweep_file.to_str().unwrap();
    let local = root.path().join("local");
    let o = windtunnel(&["run", s, "--out", local.to_str().unwrap(), "--parallel", "2", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan = json(&["plan", s, "--json"]);

    // (workers, runs trained at once in a task)
    for (workers, lanes) in [("per-run", 1), ("persistent", 1), ("persistent", 2), ("shared", 2)] {
        let remote = root.path().join(format!("{workers}-{lanes}"));
        let at_once = lanes.to_string();
        let o = run_slurm_wait(&[
            "run",
            s,
            "--out",
            remote.to_str().unwrap(),
            "--executor",
            "slurm",
            "--runs-per-task",
            "4",
            "--runs-per-device",
            &at_once,
            "--workers",
            workers,
            "--wait",
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{workers}: {stderr}");
        let sweep = remote.join("tiny");
        assert_eq!(table_without_timings(&sweep), table_without_timings(&local.join("tiny")), "{workers}");
        let script = std::fs::read_to_string(sweep.join("slurm").join("wave-1.sbatch")).unwrap();
        assert!(script.contains(&format!("\nWORKERS={workers}\n")), "{workers}");

        // 8 plain runs in 2 tasks, 2 trunks in one task each, 4 branches in one task per trunk.
        let jobs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sweep.join("slurm").join("jobs.json")).unwrap()).unwrap();
        let tasks = jobs["tasks"].as_object().unwrap();
        assert_eq!(tasks.len(), 14);
        let distinct: std::collections::HashSet<&str> = tasks.values().map(|t| t.as_str().unwrap()).collect();
        assert_eq!(distinct.len(), 6, "{tasks:?}");
        for trunk in plan["runs"].as_array().unwrap().iter().filter(|r| r["kind"] == "trunk") {
            let task = &tasks[trunk["id"].as_str().unwrap()];
            assert_eq!(tasks.values().filter(|t| *t == task).count(), 1, "a trunk shares its task");
        }
        // Which process trained each run (status.json's pid): a task's runs share its persistent
        // workers (one per run trained at once) or its one shared worker (two runs at once on
        // threads), and each has a `train` of its own per run.
        let pid = |id: &str| {
            let status: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sweep.join("runs").join(id).join("status.json")).unwrap()).unwrap();
            status["pid"].as_u64().unwrap()
        };
        for task in &distinct {
            let pids: std::collections::HashSet<u64> = tasks.iter().filter(|(_, t)| t.as_str() == Some(*task)).map(|(id, _)| pid(id)).collect();
            let runs = tasks.values().filter(|t| t.as_str() == Some(*task)).count();
            let expected = match workers {
                "persistent" => runs.min(lanes),
                "shared" => 1,
                _ => runs,
            };
            assert_eq!(pids.len(), expected, "{workers}: task {task} trained {runs} run(s) in {} process(es)", pids.len());
        }
    }
}

/// A task script run by hand, as Slurm would run array task 0 (no Slurm needed): where the worker's
/// FIFOs cannot be made (`$TMPDIR` unwritable) the runs train in a `train` process each, with one
/// clear line saying so, in each kind of worker.
#[test]
fn a_task_without_fifos_trains_its_runs_in_processes() {
    let root = tempfile::tempdir().unwrap();
    let sweep_file = write(root.path(), "tiny.toml", TINY);
    for workers in ["persistent", "shared"] {
        let out = root.path().join(workers);
        let o = windtunnel(&[
            "run",
            sweep_file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--executor",
            "slurm",
            "--dry-run",
            "--workers",
            workers,
            "--runs-per-task",
            "4",
            "--runs-per-device",
            "2",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let sweep = out.join("tiny");
        let o = Command::new("bash")
            .arg("slurm/wave-1.sbatch")
            .current_dir(&sweep)
            .env("SLURM_ARRAY_JOB_ID", "7")
            .env("SLURM_ARRAY_TASK_ID", "0")
            .env("TMPDIR", root.path().join("missing"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{workers}: {stderr}");
        assert!(stderr.contains("cannot make the worker's FIFOs") && stderr.contains("set TMPDIR"), "{workers}: {stderr}");
        let logs: Vec<String> =
            std::fs::read_dir(sweep.join("runs")).unwrap().flatten().filter_map(|e| std::fs::read_to_string(e.path().join("slurm.log")).ok()).collect();
        assert_eq!(logs.len(), 4, "{workers}: task 0 trains four runs");
        assert!(logs.iter().all(|l| l.contains("7_0 end=") && !l.contains("exit=1")), "{workers}: {logs:?}");
    }
}

/// `run --adaptive` through Slurm (each round a wave of tasks, `--wait`ed for) with persistent
/// workers makes the local adaptive sweep's decisions and gives its table: the rounds depend on
/// the losses alone, and a trunk paused in one task resumes in another.
#[test]
#[cfg_attr(not(windtunnel_slurm), ignore = "needs a running Slurm: sudo .ci/slurm-up.sh, then WINDTUNNEL_SLURM=1 cargo test --release")]
fn an_adaptive_sweep_through_slurm_makes_the_local_decisions() {
    if !slurm_enabled("an_adaptive_sweep_through_slurm_makes_the_local_decisions") {
        return;
    }
    let _serial = SLURM.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let adaptive = TINY.replace("[[grid]]\nname = \"lr\"", "[[grid]]\nname = \"lr-unused\"").replace(
        "widths = [16, 32], depth = 1, head_dim = 16 }\nwsd = { branch_tokens = [1280, 2560]",
        "widths = [16, 32, 48], depth = 1, head_dim = 16 }\nwsd = { branch_tokens = [640, 1280, 2560]",
    ) + "\n[adaptive]\ntarget = \"allocation\"\nbudget_flops = 1e8\nmax_flops = 2e8\nruns_per_round = 2\nbootstrap = 30\ngrid = \"data\"\n";
    let sweep_file = write(root.path(), "adaptive.toml", &adaptive);
    let s = sweep_file.to_str().unwrap();
    let local = root.path().join("local");
    let o = windtunnel(&["run", s, "--adaptive", "--out", local.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let remote = root.path().join("slurm");
    let o = run_slurm_wait(&["run", s, "--adaptive", "--out", remote.to_str().unwrap(), "--executor", "slurm", "--workers", "persistent", "--wait", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rounds = |dir: &Path| {
        let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("tiny").join("adaptive.json")).unwrap()).unwrap();
        record["rounds"].as_array().unwrap().iter().map(|r| r["chosen"].clone()).collect::<Vec<_>>()
    };
    let want = rounds(&local);
    assert!(want.len() >= 2, "{want:?}");
    assert_eq!(rounds(&remote), want, "Slurm's rounds chose differently");
    assert_eq!(table_without_timings(&remote.join("tiny")), table_without_timings(&local.join("tiny")));
}
