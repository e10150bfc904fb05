//! Persistent workers (`run --workers persistent`, the default on GPUs) and the GPU kernel cache,
//! tested on the CPU backend where results are bit-exact.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fails, table_without_timings, windtunnel, TINY};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run_sweep(sweep: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--parallel", "2", "--quiet"];
    args.extend_from_slice(extra);
    let o = windtunnel(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn status_json(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap()
}

/// The metrics lines of a run that begin a training session (each start or resume has one).
fn session_starts(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("first_step_s").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn persistent_workers_give_the_per_run_table_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "s.toml", TINY);
    let per_run = dir.path().join("per-run");
    run_sweep(&p, &per_run, &["--workers", "per-run"]);
    // persistent: two workers (--parallel 2), run after run; shared: one worker, two runs at once.
    for (workers, processes) in [("persistent", 2), ("shared", 1)] {
        let out = dir.path().join(workers);
        run_sweep(&p, &out, &["--workers", workers]);
        let table = table_without_timings(&out.join("tiny"));
        assert_eq!(table.len(), 14);
        assert_eq!(table, table_without_timings(&per_run.join("tiny")), "{workers}: same losses, bit for bit, whichever process trained them");

        let runs = out.join("tiny").join("runs");
        let pids: HashSet<u64> = std::fs::read_dir(&runs).unwrap().flatten().map(|e| status_json(&e.path())["pid"].as_u64().unwrap()).collect();
        assert!(pids.len() <= processes, "{workers}: {} worker processes for 14 runs", pids.len());
        assert!(out.join("tiny").join("workers").join("worker-0.log").exists());
        // Every run logged its start-up cost on its first metrics line, and wrote its own
        // worker.log with its own summary.
        for e in std::fs::read_dir(&runs).unwrap().flatten() {
            assert_eq!(session_starts(&e.path()).len(), 1, "{}", e.path().display());
            let log = std::fs::read_to_string(e.path().join("worker.log")).unwrap();
            assert!(log.starts_with(&format!("{}: ", e.path().display())) && log.contains("  steps "), "{workers}: {log}");
        }
    }
}

/// The run directories under `runs` whose status says running (none while `runs` does not exist).
fn running_runs(runs: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(runs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|r| std::fs::read_to_string(r.join("status.json")).is_ok_and(|s| s.contains("\"running\"")))
        .collect()
}

/// Two runs of 4000 steps (a few seconds each), each with a checkpoint at step 100.
fn two_long_runs() -> String {
    TINY.split("[[grid]]\nname = \"data\"")
        .next()
        .unwrap()
        .replace(", 1000.0]", "]")
        .replace("0.003, ", "")
        .replace(
            "training = { tokens = 2560, batch_size = 4, seq_len = 32, eval_interval_tokens = 1280,",
            "training = { tokens = 512000, batch_size = 4, seq_len = 32, eval_interval_tokens = 128000, checkpoint_tokens = [12800],",
        )
        .replace("widths = [16, 32]", "widths = [16]")
}

/// `windtunnel cancel` (SIGTERM, as Ctrl-C) stops a sweep of persistent workers, or of one shared
/// worker training both runs at once: every running run writes a checkpoint, the workers end,
/// and running the sweep again finishes it with the losses of an uninterrupted sweep.
#[test]
fn cancelling_persistent_workers_checkpoints_every_running_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "long.toml", &two_long_runs());
    let reference = dir.path().join("reference");
    run_sweep(&p, &reference, &["--workers", "per-run"]);
    for workers in ["persistent", "shared"] {
        let out = dir.path().join(workers);
        let sweep = out.join("tiny");
        let args = ["run", p.to_str().unwrap(), "--out", out.to_str().unwrap(), "--parallel", "2", "--quiet", "--workers", workers];
        let mut run = Command::new(env!("CARGO_BIN_EXE_windtunnel")).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let started = Instant::now();
        while running_runs(&sweep.join("runs")).len() < 2 {
            assert!(started.elapsed() < Duration::from_secs(60), "{workers}: the sweep never had two running runs");
            std::thread::sleep(Duration::from_millis(5));
        }
        let o = windtunnel(&["cancel", sweep.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(run.wait().unwrap().code(), Some(143));
        for e in std::fs::read_dir(sweep.join("runs")).unwrap().flatten() {
            let status = status_json(&e.path());
            assert_eq!(status["state"], "interrupted", "{workers}: {status}");
            assert!(status["reason"].as_str().unwrap().contains("checkpoint at step"), "{workers}: {status}");
        }
        let o = windtunnel(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(table_without_timings(&sweep), table_without_timings(&reference.join("tiny")), "{workers}");
    }
}

/// Killing a shared worker fails every run it held; each is retried from its own checkpoint, and
/// the sweep ends with the uninterrupted table.
#[test]
fn a_killed_shared_worker_retries_its_runs_from_their_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "long.toml", &two_long_runs());
    let reference = dir.path().join("reference");
    run_sweep(&p, &reference, &["--workers", "per-run"]);
    let out = dir.path().join("out");
    let mut run = Command::new(env!("CARGO_BIN_EXE_windtunnel"))
        .args(["run", p.to_str().unwrap(), "--out", out.to_str().unwrap(), "--parallel", "2", "--quiet", "--workers", "shared"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runs = out.join("tiny").join("runs");
    let started = Instant::now();
    // Wait until both runs are past their checkpoint, then kill the one worker training them.
    let pid = loop {
        assert!(started.elapsed() < Duration::from_secs(120), "the runs never reached their checkpoints together");
        let running = running_runs(&runs);
        if running.len() == 2 && running.iter().all(|r| has_checkpoint_at_12800(r)) {
            let pids: HashSet<i64> = running.iter().map(|r| status_json(r)["pid"].as_i64().unwrap()).collect();
            assert_eq!(pids.len(), 1, "two runs at once in one shared worker");
            break *pids.iter().next().unwrap() as i32;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(run.wait().unwrap().success(), "the sweep recovers from a killed worker");
    assert_eq!(table_without_timings(&out.join("tiny")), table_without_timings(&reference.join("tiny")), "the same table as without the kill");
    for e in std::fs::read_dir(&runs).unwrap().flatten() {
        // Started at step 1, and again right after its checkpoint at step 100 — not from scratch.
        assert_eq!(session_starts(&e.path()), vec![1, 101], "{}", e.path().display());
    }
}

#[test]
fn a_killed_worker_fails_only_its_run_which_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "long.toml", &two_long_runs());
    let reference = dir.path().join("reference");
    run_sweep(&p, &reference, &["--workers", "per-run"]);

    let out = dir.path().join("out");
    let mut run = Command::new(env!("CARGO_BIN_EXE_windtunnel"))
        .args(["run", p.to_str().unwrap(), "--out", out.to_str().unwrap(), "--parallel", "2", "--quiet", "--workers", "persistent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runs = out.join("tiny").join("runs");
    let started = Instant::now();
    // Wait until one run is past its checkpoint, then kill its worker.
    let victim = loop {
        assert!(started.elapsed() < Duration::from_secs(120), "no run reached its checkpoint");
        if let Some(r) = running_runs(&runs).into_iter().find(|r| has_checkpoint_at_12800(r)) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let pid = status_json(&victim)["pid"].as_i64().unwrap() as i32;
    assert_ne!(pid as u32, run.id(), "runs are trained by workers, not by `run` itself");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(run.wait().unwrap().success(), "the sweep recovers from a killed worker");

    assert_eq!(table_without_timings(&out.join("tiny")), table_without_timings(&reference.join("tiny")), "the same table as without the kill");
    let mut starts: Vec<(String, Vec<u64>)> =
        std::fs::read_dir(&runs).unwrap().flatten().map(|e| (e.file_name().to_string_lossy().to_string(), session_starts(&e.path()))).collect();
    starts.sort();
    let victim_id = victim.file_name().unwrap().to_string_lossy().to_string();
    for (id, s) in starts {
        if id == victim_id {
            // Started at step 1, and again right after its checkpoint at step 100 — not from scratch.
            assert_eq!(s, vec![1, 101], "{id}");
        } else {
            assert_eq!(s, vec![1], "{id} was touched by the other worker's death");
        }
    }
}

fn has_checkpoint_at_12800(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints")).is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy() == windtunnel::layout::checkpoint_name(12800)))
}

#[test]
fn an_unusable_kernel_cache_is_one_clear_error_before_any_training() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "not-a-dir", "x");
    let run_file = common::run_file(dir.path(), "run.toml", "", 4, &[]);
    let below_file = file.join("kernels");

    let e = fails(&["train", run_file.to_str().unwrap(), "--out", dir.path().join("a").to_str().unwrap(), "--kernel-cache", file.to_str().unwrap()]);
    assert!(e.contains("kernel cache") && e.contains("not-a-dir") && e.contains("is not a directory") && e.contains("--kernel-cache DIR"), "{e}");
    assert!(!dir.path().join("a").join("metrics.jsonl").exists(), "nothing trained");

    let o = Command::new(env!("CARGO_BIN_EXE_windtunnel"))
        .args(["train", run_file.to_str().unwrap(), "--out", dir.path().join("b").to_str().unwrap()])
        .env("WINDTUNNEL_KERNEL_CACHE", &below_file)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("WINDTUNNEL_KERNEL_CACHE") && e.contains("cannot be created"), "{e}");

    // A sweep's [gpu] kernel_cache, relative to the sweep file, is checked before any worker starts.
    let sweep = write(dir.path(), "s.toml", &TINY.replace("seeds = [0]\n", "seeds = [0]\n\n[gpu]\nkernel_cache = \"not-a-dir/kernels\"\n"));
    let out = dir.path().join("out");
    let e = fails(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
    assert!(e.contains("[gpu] kernel_cache") && e.contains("not-a-dir/kernels"), "{e}");
    let trained = std::fs::read_dir(out.join("tiny").join("runs")).unwrap().flatten().filter(|r| r.path().join("metrics.jsonl").exists()).count();
    assert_eq!(trained, 0);

    // A good one is created and used.
    let cache = dir.path().join("cache").join("kernels");
    let o = windtunnel(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet", "--kernel-cache", cache.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(cache.is_dir());
}

#[test]
fn gpus_without_cuda_are_refused_before_any_worker_starts() {
    if cfg!(feature = "cuda") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "s.toml", TINY);
    let out = dir.path().join("out");
    let e = fails(&["run", p.to_str().unwrap(), "--out", out.to_str().unwrap(), "--devices", "cuda:0", "--quiet"]);
    assert!(e.contains("--devices cuda:0: this windtunnel was built without CUDA support"), "{e}");
    let run_dir = std::fs::read_dir(out.join("tiny").join("runs")).unwrap().flatten().next().unwrap().path();
    assert!(!run_dir.join("worker.log").exists(), "no worker started");
}

#[test]
fn a_device_named_twice_is_refused_with_the_flag_that_means_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "s.toml", TINY);
    let out = dir.path().join("out");
    for (devices, named) in [("cpu,cpu", "cpu"), ("cuda:0,1,0", "cuda:0")] {
        let e = fails(&["run", p.to_str().unwrap(), "--out", out.to_str().unwrap(), "--devices", devices, "--quiet"]);
        assert!(e.contains(&format!("--devices {devices} names {named} twice")) && e.contains("--runs-per-device"), "{e}");
    }
}

/// A run trains on its share of the cores when it starts, whichever worker trains it: a sweep's
/// only run gets every core, even with room for four (a persistent CPU worker used to keep the
/// 1/parallel share it was started with). The first metrics line says how many it had.
#[test]
fn a_run_gets_its_share_of_the_cores_in_either_kind_of_worker() {
    let dir = tempfile::tempdir().unwrap();
    let one_run = TINY.split("[[grid]]\nname = \"data\"").next().unwrap().replace("[0.003, 0.01, 0.03, 1000.0]", "[0.01]").replace("[16, 32]", "[16]");
    let p = write(dir.path(), "one.toml", &one_run);
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    for mode in ["per-run", "persistent"] {
        let out = dir.path().join(mode);
        let o = windtunnel(&["run", p.to_str().unwrap(), "--out", out.to_str().unwrap(), "--parallel", "4", "--quiet", "--workers", mode]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let run = std::fs::read_dir(out.join("tiny").join("runs")).unwrap().flatten().next().unwrap().path();
        let first: serde_json::Value = serde_json::from_str(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().next().unwrap()).unwrap();
        assert_eq!(first["cpu_threads"].as_u64(), Some(cores), "{mode}: {first}");
    }
}

/// `--devices cuda:all` is every GPU this process can see: inside a job given GPUs 4 and 7, two
/// devices, cuda:0 and cuda:1 (a build without CUDA then refuses the first); none is an error.
#[test]
fn cuda_all_counts_the_gpus_this_process_can_see() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "s.toml", TINY);
    let out = dir.path().join("out");
    let run_with = |visible: &str| {
        let args = ["run", p.to_str().unwrap(), "--out", out.to_str().unwrap(), "--devices", "cuda:all", "--quiet"];
        let o = Command::new(env!("CARGO_BIN_EXE_windtunnel")).args(args).env("CUDA_VISIBLE_DEVICES", visible).output().unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    if !cfg!(feature = "cuda") {
        let e = run_with("4,7");
        assert!(e.contains("--devices cuda:0: this windtunnel was built without CUDA support"), "{e}");
    }
    let e = run_with("");
    assert!(e.contains("--devices cuda:all: this process sees no GPU (CUDA_VISIBLE_DEVICES=\"\" names none); use cpu"), "{e}");
}

/// The training losses of a run, as its metrics log wrote them.
fn train_losses(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v.get("train_loss").map(|l| format!("{} {l}", v["step"])))
        .collect()
}

/// A worker sent a second run before its first has ended trains both at once, in one process
/// (the way several runs share a GPU's context and kernels): the short one answers first, each
/// run's losses are those of a `train` process of its own, bit for bit, and each log holds its
/// own run's lines only.
#[test]
fn a_worker_trains_runs_it_is_sent_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let long = common::run_file(dir.path(), "long.toml", "", 1500, &[]);
    let short = common::run_file(dir.path(), "short.toml", "", 30, &[]);
    std::fs::write(&short, std::fs::read_to_string(&short).unwrap().replace("seed = 1", "seed = 2")).unwrap();
    let request = |run_file: &Path, out: &Path| {
        serde_json::json!({"run_file": run_file, "out": out, "resume": false, "resume_before_tokens": null, "log": out.with_extension("log"), "threads": 1})
            .to_string()
    };
    let (long_out, short_out) = (dir.path().join("long"), dir.path().join("short"));
    let mut worker = Command::new(env!("CARGO_BIN_EXE_windtunnel"))
        .args(["worker", "--device", "cpu"])
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = worker.stdin.take().unwrap();
    use std::io::Write as _;
    writeln!(stdin, "{}\n{}", request(&long, &long_out), request(&short, &short_out)).unwrap();
    drop(stdin);
    let o = worker.wait_with_output().unwrap();
    assert!(o.status.success());
    let replies: Vec<serde_json::Value> = String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!((replies[0]["out"].as_str().unwrap(), replies[0]["exit_code"].as_u64()), (short_out.to_str().unwrap(), Some(0)), "the short run answers first");
    assert_eq!((replies[1]["out"].as_str().unwrap(), replies[1]["exit_code"].as_u64()), (long_out.to_str().unwrap(), Some(0)));

    for (run_file, out) in [(&long, &long_out), (&short, &short_out)] {
        let alone = out.with_extension("alone");
        let o = windtunnel(&["train", run_file.to_str().unwrap(), "--out", alone.to_str().unwrap(), "--quiet"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(train_losses(out), train_losses(&alone), "{}: same losses, bit for bit", out.display());
        let log = std::fs::read_to_string(out.with_extension("log")).unwrap();
        assert!(log.contains(&format!("{}: done", out.display())), "{log}");
        let other = if out == &long_out { &short_out } else { &long_out };
        assert!(!log.contains(&format!("{}:", other.display())), "{log}");
    }
}
