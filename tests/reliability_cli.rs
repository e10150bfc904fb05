//! The reliability campaign's defects, each reproduced through the real binary: two writers on
//! one run, duplicate run ids, relative data paths, absurd sizes, memory, unwritable stderr, lost
//! trunk checkpoints, and the malformed inputs around them. And the kill storm: a sweep killed
//! over and over (the whole tree, the parent alone, a worker alone) ends with the table of an
//! uninterrupted one.

mod common;
use common::{fails, json, ok, run_file, table_without_timings, windtunnel, Tmpfs, TINY};

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Start `windtunnel ARGS` in its own process group, silent.
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_windtunnel")).args(args).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).spawn().unwrap()
}

fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); look at /proc for its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
}

/// Pids of the `windtunnel train` workers whose parent is `parent`.
fn workers_of(parent: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map(|(_, a)| a.to_string()).unwrap_or_default();
            after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent)
        })
        .collect()
}

fn status_of(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap()
}

#[test]
fn a_second_writer_on_a_run_directory_is_refused_whatever_started_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(tmp.path(), "r.toml", "", 100_000, &[]);
    let out = tmp.path().join("run");
    let mut first = spawn(&["train", "--quiet", s(&file), "--out", s(&out)]);
    wait_for("the first writer to start", Duration::from_secs(60), || out.join("metrics.jsonl").exists());
    let o = windtunnel(&["train", "--quiet", s(&file), "--out", s(&out), "--resume"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("is being trained by another process") && e.contains(&format!("pid {}", first.id())), "{e}");
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock dies with its holder: the run resumes.
    let mut resumed = spawn(&["train", "--quiet", s(&file), "--out", s(&out), "--resume"]);
    wait_for("the resumed run", Duration::from_secs(60), || status_of(&out)["pid"] == resumed.id());
    resumed.kill().unwrap();
    resumed.wait().unwrap();
}

#[test]
fn workers_die_with_their_run_and_status_never_shows_a_dead_process_running() {
    let tmp = tempfile::tempdir().unwrap();
    // One long plain run per width, two at a time.
    let sweep = write(
        tmp.path(),
        "long.toml",
        &(TINY
            .split("[[grid]]")
            .next()
            .unwrap()
            .replace("tokens = 2560", "tokens = 2560000")
            .replace("eval_interval_tokens = 1280", "eval_interval_tokens = 1280000")
            + "[[grid]]\nname = \"lr\"\nmodels = { widths = [16, 32], depth = 1, head_dim = 16 }\n"),
    );
    let out = tmp.path().join("out");
    let mut run = spawn(&["run", s(&sweep), "--out", s(&out), "--parallel", "2", "--quiet"]);
    let runs = out.join("tiny").join("runs");
    wait_for("two workers training", Duration::from_secs(60), || {
        workers_of(run.id()).len() == 2 && std::fs::read_dir(&runs).map_or(0, |d| d.flatten().filter(|e| e.path().join("metrics.jsonl").exists()).count()) == 2
    });
    let workers = workers_of(run.id());
    // SIGKILL the parent alone (an OOM killer, a lost SSH session): its workers stop too, each
    // with a checkpoint.
    unsafe { libc::kill(run.id() as i32, libc::SIGKILL) };
    run.wait().unwrap();
    wait_for("the orphaned workers to stop", Duration::from_secs(30), || workers.iter().all(|&w| !alive(w)));
    let status = json(&["status", s(&out.join("tiny")), "--json"]);
    assert_eq!(status["running"], 0, "{status}");
    assert_eq!(status["interrupted"], 2, "{status}");

    // A worker SIGKILLed while its parent lives: status.json still says running, but no process
    // holds the run, so `status` says it was interrupted.
    let mut run = spawn(&["run", s(&sweep), "--out", s(&out), "--parallel", "2", "--quiet"]);
    wait_for("both workers training again", Duration::from_secs(60), || {
        let pids = workers_of(run.id());
        pids.len() == 2
            && json(&["status", s(&out.join("tiny")), "--json"])["detail"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["state"] == "running" && r["step"].as_u64() > Some(14))
    });
    let victim = workers_of(run.id())[0];
    unsafe { libc::kill(run.id() as i32, libc::SIGSTOP) };
    unsafe { libc::kill(victim, libc::SIGKILL) };
    wait_for("the worker to die", Duration::from_secs(10), || !alive(victim));
    let status = json(&["status", s(&out.join("tiny")), "--json"]);
    let dead: Vec<&serde_json::Value> =
        status["detail"].as_array().unwrap().iter().filter(|r| r["reason"].as_str().is_some_and(|r| r.contains(&format!("pid {victim}")))).collect();
    assert_eq!(dead.len(), 1, "{status}");
    assert_eq!(dead[0]["state"], "interrupted");
    assert_eq!(status["running"], 1, "{status}");
    unsafe { libc::kill(run.id() as i32, libc::SIGKILL) };
    unsafe { libc::kill(run.id() as i32, libc::SIGCONT) };
    run.wait().unwrap();
}

/// The kill storm: one sweep killed again and again — its whole process tree, its parent alone,
/// one worker alone — then finished, gives the uninterrupted sweep's table bit for bit, and no
/// run's metrics ever hold a step twice (collect refuses such a file).
#[test]
fn a_sweep_killed_over_and_over_ends_with_the_uninterrupted_table() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "s.toml", TINY);
    let whole = tmp.path().join("whole");
    ok(&["run", s(&sweep), "--out", s(&whole), "--parallel", "2", "--quiet"]);
    let expected = table_without_timings(&whole.join("tiny"));

    let cut = tmp.path().join("cut");
    let runs = cut.join("tiny").join("runs");
    let metric_lines = || -> usize {
        std::fs::read_dir(&runs)
            .map_or(0, |d| d.flatten().map(|e| std::fs::read_to_string(e.path().join("metrics.jsonl")).map_or(0, |t| t.lines().count())).sum())
    };
    let mut killed_mid_sweep = 0;
    for round in 0..6 {
        let mut run = spawn(&["run", s(&sweep), "--out", s(&cut), "--parallel", "2", "--quiet"]);
        let before = metric_lines();
        let started = Instant::now();
        // Let it make some progress (or finish).
        while metric_lines() < before + 8 && started.elapsed() < Duration::from_secs(60) && run.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        killed_mid_sweep += usize::from(run.try_wait().unwrap().is_none());
        match round % 3 {
            0 => unsafe {
                libc::kill(-(run.id() as i32), libc::SIGKILL);
            },
            1 => unsafe {
                libc::kill(run.id() as i32, libc::SIGKILL);
            },
            _ => {
                if let Some(&w) = workers_of(run.id()).first() {
                    unsafe { libc::kill(w, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(100));
                unsafe { libc::kill(run.id() as i32, libc::SIGKILL) };
            }
        };
        run.wait().unwrap();
    }
    assert!(killed_mid_sweep >= 4, "only {killed_mid_sweep} of 6 kills hit a running sweep; make the sweep longer");
    // Whatever is left (orphans stop by themselves), a last run finishes the sweep.
    ok(&["run", s(&sweep), "--out", s(&cut), "--parallel", "2", "--quiet"]);
    assert_eq!(table_without_timings(&cut.join("tiny")), expected);
    for run in std::fs::read_dir(&runs).unwrap().flatten() {
        let steps: Vec<u64> = std::fs::read_to_string(run.path().join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
            .collect();
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{}: steps {steps:?}", run.path().display());
        // A finished run keeps only its named checkpoints.
        let periodic = std::fs::read_dir(run.path().join("checkpoints"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|c| c.file_name().to_string_lossy().starts_with("periodic-"))
            .count();
        assert_eq!(periodic, 0, "{} kept interrupt checkpoints", run.path().display());
    }
}

#[test]
fn metrics_written_by_two_processes_are_refused_by_collect() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "s.toml", &TINY.split("[[grid]]\nname = \"data\"").next().unwrap().replace("1000.0]", "]"));
    let out = tmp.path().join("out");
    ok(&["run", s(&sweep), "--out", s(&out), "--quiet"]);
    let dir = out.join("tiny");
    let run = std::fs::read_dir(dir.join("runs")).unwrap().flatten().next().unwrap().path();
    let metrics = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let first = text.lines().next().unwrap();
    std::fs::write(&metrics, format!("{text}{first}\n")).unwrap();
    let e = fails(&["collect", s(&dir)]);
    assert!(e.contains("two processes wrote this run") && e.contains("metrics.jsonl"), "{e}");
}

#[test]
fn grid_points_that_resolve_to_one_run_are_planned_once() {
    let tmp = tempfile::tempdir().unwrap();
    let lr_grid =
        "\n[[grid]]\nname = \"lr\"\nmodels = { widths = [16, 32], depth = 1, head_dim = 16 }\nparameters.\"optimizer.lr\" = { values = [0.003, 0.01] }\n";
    let sweep = write(tmp.path(), "dup.toml", &(TINY.split("[[grid]]").next().unwrap().to_string() + lr_grid + lr_grid));
    let plan = json(&["plan", s(&sweep), "--json"]);
    let ids: Vec<&str> = plan["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((ids.len(), unique.len()), (4, 4), "{ids:?}");
    assert_eq!(plan["duplicates"].as_array().unwrap().len(), 4);
    let text = ok(&["plan", s(&sweep)]);
    assert!(text.contains("is the same run as in grid `lr`; planned once"), "{text}");
    let out = tmp.path().join("out");
    ok(&["run", s(&sweep), "--out", s(&out), "--quiet"]);
    let table = std::fs::read_to_string(out.join("tiny").join("table.csv")).unwrap();
    assert_eq!(table.lines().count(), 5, "{table}");
}

#[test]
fn relative_data_paths_resolve_against_the_sweep_file() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    ok(&["data", "synth", "--out", s(&project.join("good.bin")), "--tokens", "20000", "--vocab", "64"]);
    write(
        &project,
        "s.toml",
        &(TINY.split("[[grid]]").next().unwrap().replace("data = { kind = \"synthetic\", vocab = 64 }", "data = { kind = \"tokens\", path = \"good.bin\" }")
            + "[[grid]]\nname = \"lr\"\nmodels = { widths = [16], depth = 1, head_dim = 16 }\n"),
    );
    // Run from elsewhere, with a relative sweep path.
    let out = tmp.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_windtunnel")).current_dir(tmp.path()).args(["run", "project/s.toml", "--out", "out", "--quiet"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("tiny").join("plan.json")).unwrap()).unwrap();
    let path = plan["runs"][0]["config"]["data"]["path"].as_str().unwrap().to_string();
    assert!(Path::new(&path).is_absolute() && path.ends_with("good.bin") && Path::new(&path).exists(), "{path}");
}

#[test]
fn absurd_sizes_are_refused_with_the_key_and_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    // batch_size × seq_len overflows u64.
    let huge = TINY.replace("batch_size = 4, seq_len = 32", "batch_size = 4611686018427387904, seq_len = 4");
    let e = fails(&["plan", s(&write(tmp.path(), "huge.toml", &huge))]);
    assert!(e.contains("training.batch_size"), "{e}");
    let file = run_file(tmp.path(), "r.toml", "", 10, &[]).to_string_lossy().to_string();
    let text = std::fs::read_to_string(&file).unwrap().replace("batch_size = 4", "batch_size = 4611686018427387904").replace("seq_len = 32", "seq_len = 4");
    let bad = write(tmp.path(), "huge-run.toml", &text);
    let o = windtunnel(&["train", s(&bad), "--out", s(&tmp.path().join("r"))]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("training.batch_size") && !e.contains("panicked"), "{e}");
    // A shape with more parameters than any run can hold.
    let wide = TINY.replace("widths = [16, 32], depth = 1, head_dim = 16 }\nparameters", "widths = [1000000000], depth = 1, head_dim = 16 }\nparameters");
    let e = fails(&["plan", s(&write(tmp.path(), "wide.toml", &wide))]);
    assert!(e.contains("width 1000000000") && e.contains("parameters, beyond"), "{e}");
    // NaN, inf and negative minutes.
    let nan = TINY.replace("optimizer = { lr = 0.01 }", "optimizer = { lr = nan }");
    let e = fails(&["plan", s(&write(tmp.path(), "nan.toml", &nan))]);
    assert!(e.contains("base.optimizer.lr = NaN") && e.contains("line 7"), "{e}");
    let inf = TINY.replace("values = [0.003, 0.01, 0.03, 1000.0]", "values = [0.003, inf]");
    let e = fails(&["plan", s(&write(tmp.path(), "inf.toml", &inf))]);
    assert!(e.contains("optimizer.lr") && e.contains("inf"), "{e}");
    for minutes in ["-1", "nan"] {
        let bad = TINY.replace("eval_tokens = 256 }", &format!("eval_tokens = 256, checkpoint_every_minutes = {minutes} }}"));
        let e = fails(&["plan", s(&write(tmp.path(), "minutes.toml", &bad))]);
        assert!(e.contains("checkpoint_every_minutes"), "{e}");
    }
}

#[test]
fn a_model_too_big_for_memory_is_refused_before_it_allocates() {
    let tmp = tempfile::tempdir().unwrap();
    // 131072 wide, 64 deep: ~1.3e13 parameters, hundreds of terabytes to train.
    let text = std::fs::read_to_string(run_file(tmp.path(), "r.toml", "", 10, &[]))
        .unwrap()
        .replace("width = 32\ndepth = 2\nheads = 2", "width = 131072\ndepth = 64\nheads = 1024");
    let file = write(tmp.path(), "big.toml", &text);
    let out = tmp.path().join("big");
    let o = windtunnel(&["train", s(&file), "--out", s(&out)]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("needs ~") && e.contains("TiB") && e.contains("this machine has"), "{e}");
    assert_eq!(status_of(&out)["state"], "failed", "the run says why in its directory");
    // `plan` and `model` show the estimate.
    let big = TINY.replace("widths = [16, 32], depth = 1, head_dim = 16 }\nparameters", "widths = [131072], depth = 64, head_dim = 128 }\nparameters");
    let plan = ok(&["plan", s(&write(tmp.path(), "big-sweep.toml", &big))]);
    assert!(plan.contains("largest run in memory") && plan.contains("warning: that is more than"), "{plan}");
    let model = json(&["model", "--preset", "9m", "--seq-len", "512", "--batch-size", "8", "--json"]);
    assert!(model["training_memory"]["total_bytes"].as_f64().unwrap() > 1e8, "{model}");
}

#[test]
fn an_unwritable_stderr_never_turns_into_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(tmp.path(), "r.toml", "", 20, &[]);
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_windtunnel"))
        .args(["train", s(&file), "--out", s(&tmp.path().join("r"))])
        .stderr(full.try_clone().unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "a finished run exits 0 whatever stderr is");
    let o = Command::new(env!("CARGO_BIN_EXE_windtunnel")).args(["train", s(&file), "--out", s(&tmp.path().join("r"))]).stderr(full).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "an existing run without --resume: the documented code, not a panic's 101");
}

#[test]
fn a_lost_or_corrupt_trunk_checkpoint_is_written_again() {
    let tmp = tempfile::tempdir().unwrap();
    let data_only = TINY.split("[[grid]]\nname = \"lr\"").next().unwrap().to_string()
        + "[[grid]]\nname = \"data\""
        + TINY.split("[[grid]]\nname = \"data\"").nth(1).unwrap();
    let sweep = write(tmp.path(), "s.toml", &data_only);
    let out = tmp.path().join("out");
    ok(&["run", s(&sweep), "--out", s(&out), "--quiet"]);
    let dir = out.join("tiny");
    let table = table_without_timings(&dir);
    let plan = json(&["plan", s(&sweep), "--json"]);
    let runs = plan["runs"].as_array().unwrap();
    let branch = runs.iter().find(|r| r["kind"] == "branch" && r["from_tokens"] == 1280).unwrap();
    let (branch_id, trunk_id) = (branch["id"].as_str().unwrap(), branch["trunk"].as_str().unwrap());
    let checkpoint = dir.join("runs").join(trunk_id).join("checkpoints").join(format!("tokens-{:015}.ckpt", 1280));
    let trunk_metrics = std::fs::read_to_string(dir.join("runs").join(trunk_id).join("metrics.jsonl")).unwrap();

    // A flipped byte, and the branch gone: the trunk trains again from before the branch point.
    let mut bytes = std::fs::read(&checkpoint).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5A;
    std::fs::write(&checkpoint, bytes).unwrap();
    std::fs::remove_dir_all(dir.join("runs").join(branch_id)).unwrap();
    let o = windtunnel(&["run", s(&sweep), "--out", s(&out)]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("is corrupt") && e.contains(&format!("trunk {trunk_id}")), "{e}");
    assert_eq!(table_without_timings(&dir), table);
    let strip = |t: &str| t.lines().map(|l| l.split("\"tokens_per_s\"").next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(strip(&std::fs::read_to_string(dir.join("runs").join(trunk_id).join("metrics.jsonl")).unwrap()), strip(&trunk_metrics));

    // The checkpoint deleted outright: the same.
    std::fs::remove_file(&checkpoint).unwrap();
    std::fs::remove_dir_all(dir.join("runs").join(branch_id)).unwrap();
    ok(&["run", s(&sweep), "--out", s(&out), "--quiet"]);
    assert_eq!(table_without_timings(&dir), table);
    assert!(checkpoint.exists());
}

#[test]
fn malformed_inputs_get_one_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let with_data = |name: &str, data: &str| {
        let text = std::fs::read_to_string(run_file(tmp.path(), "base.toml", "", 10, &[])).unwrap().replace("kind = \"synthetic\"\nvocab = 64", data);
        write(tmp.path(), name, &text)
    };
    // A directory as a data path.
    std::fs::create_dir_all(tmp.path().join("corpus")).unwrap();
    let o = windtunnel(&["train", s(&with_data("dir.toml", "kind = \"tokens\"\npath = \"corpus\"\nvocab = 64")), "--out", s(&tmp.path().join("a"))]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("corpus") && e.contains("is a directory"), "{e}");
    // A file too short for one held-out sequence names the file.
    std::fs::write(tmp.path().join("four.bin"), [1u8, 0, 2, 0, 3, 0, 4, 0]).unwrap();
    let o = windtunnel(&["train", s(&with_data("four.toml", "kind = \"tokens\"\npath = \"four.bin\"\nvocab = 64")), "--out", s(&tmp.path().join("b"))]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("four.bin") && !e.contains("panicked"), "{e}");
    assert_eq!(o.status.code(), Some(2), "{e}");
    // --predict at zero.
    let e = fails(&["fit", "law", "--input", "x.csv", "--predict=0:0"]);
    assert!(e.contains("positive finite"), "{e}");
    // Sizes that would exhaust memory or disk are refused before anything is allocated.
    let o = windtunnel(&["train", s(&with_data("huge-vocab.toml", "kind = \"synthetic\"\nvocab = 4000000000")), "--out", s(&tmp.path().join("c"))]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(2) && e.contains("`vocab` must be at most"), "{e}");
    let e = fails(&["data", "synth", "--out", s(&tmp.path().join("x.bin")), "--tokens", "1e15"]);
    assert!(e.contains("free") && e.contains("fewer --tokens"), "{e}");
    let e = fails(&["data", "synth", "--out", s(&tmp.path().join("x.bin")), "--tokens", "100", "--document-tokens", "1000000000000"]);
    assert!(e.contains("--document-tokens"), "{e}");
    let random = TINY.replace("name = \"lr\"\n", "name = \"lr\"\nmethod = \"random\"\nsamples = 1000000000000\n");
    let e = fails(&["plan", s(&write(tmp.path(), "random.toml", &random))]);
    assert!(e.contains("beyond the 100000 one sweep may plan"), "{e}");
}

#[test]
fn cut_metrics_and_torn_status_files_are_named_with_their_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "s.toml", &TINY.split("[[grid]]\nname = \"data\"").next().unwrap().replace(", 1000.0]", "]"));
    let out = tmp.path().join("out");
    ok(&["run", s(&sweep), "--out", s(&out), "--quiet"]);
    let dir = out.join("tiny");
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs")).unwrap().flatten().map(|e| e.path()).collect();
    runs.sort();
    // A finished run whose metrics lost their last line (its final evaluation).
    let metrics = runs[0].join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let cut: Vec<&str> = text.lines().collect();
    std::fs::write(&metrics, cut[..cut.len() - 1].join("\n") + "\n").unwrap();
    let e = fails(&["collect", s(&dir)]);
    assert!(e.contains("metrics.jsonl") && e.contains("cut short") && e.contains("Delete"), "{e}");
    let e = fails(&["plot", s(&dir)]);
    assert!(e.contains("cut short"), "{e}");
    std::fs::write(&metrics, "").unwrap();
    let e = fails(&["report", s(&dir)]);
    assert!(e.contains("cut short"), "{e}");
    std::fs::remove_dir_all(&runs[0]).unwrap();

    // A torn status.json: named, treated as unknown, and repaired by running the sweep again.
    let status = runs[1].join("status.json");
    let text = std::fs::read_to_string(&status).unwrap();
    std::fs::write(&status, &text[..text.len() / 2]).unwrap();
    let st = json(&["status", s(&dir), "--json"]);
    let unknown = st["detail"].as_array().unwrap().iter().find(|r| r["state"] == "unknown").expect("an unknown run");
    assert!(unknown["reason"].as_str().unwrap().contains("status.json"), "{st}");
    let o = windtunnel(&["collect", s(&dir)]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("left out of the table"));
    ok(&["run", s(&sweep), "--out", s(&out), "--quiet"]);
    let st = json(&["status", s(&dir), "--json"]);
    assert_eq!(st["done"], st["runs"], "{st}");
}

#[test]
fn a_full_disk_names_the_file_and_the_sweep_resumes_bit_exact_once_there_is_room() {
    let Some(disk) = Tmpfs::mount("300k") else {
        println!("not run: cannot mount a tmpfs here (needs root)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "s.toml", TINY);
    let whole = tmp.path().join("whole");
    ok(&["run", s(&sweep), "--out", s(&whole), "--quiet"]);
    let o = windtunnel(&["run", s(&sweep), "--out", s(disk.dir.path())]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.contains("No space left on device") && e.contains(&format!("cannot write {}", disk.dir.path().display())), "{e}");
    assert!(e.contains("the sweep ran (") || e.contains("failed"), "a summary: {e}");
    disk.resize("50M");
    ok(&["run", s(&sweep), "--out", s(disk.dir.path()), "--quiet"]);
    assert_eq!(table_without_timings(&disk.dir.path().join("tiny")), table_without_timings(&whole.join("tiny")));
}
