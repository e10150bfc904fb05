//! Sweeps through the real binary: planning, running, resuming after SIGKILL, the lock,
//! divergence, and malformed sweep files.

mod common;
use common::{fails, json, table_without_timings, windtunnel, TINY};

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn plan(path: &Path) -> serde_json::Value {
    json(&["plan", path.to_str().unwrap(), "--json"])
}

fn ids(plan: &serde_json::Value) -> Vec<String> {
    plan["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn planning_expands_grids_and_wsd_graphs_with_stable_ids() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "s.toml", TINY);
    let a = plan(&p);
    let runs = a["runs"].as_array().unwrap();
    let count = |kind: &str| runs.iter().filter(|r| r["kind"] == kind).count();
    // 2 widths × 4 lrs plain runs; per width one trunk and two branches.
    assert_eq!((count("plain"), count("trunk"), count("branch")), (8, 2, 4));
    assert_eq!(ids(&a), ids(&plan(&p)), "ids are stable");
    let trunk = runs.iter().find(|r| r["kind"] == "trunk").unwrap();
    assert_eq!(trunk["tokens"], 2560);
    assert_eq!(trunk["config"]["training"]["checkpoint_tokens"], serde_json::json!([1280, 2560]));
    let branch = runs.iter().find(|r| r["kind"] == "branch" && r["from_tokens"] == 1280).unwrap();
    assert_eq!(branch["trunk"], trunk["id"]);
    assert_eq!(branch["tokens"], 1280 + 256);
    // Compute adds up: the total is every run's own FLOPs; from scratch, every branch in full.
    let own: f64 = runs.iter().map(|r| r["own_flops"].as_f64().unwrap()).sum();
    assert!((a["total_flops"].as_f64().unwrap() / own - 1.0).abs() < 1e-12);
    let scratch: f64 = runs.iter().filter(|r| r["kind"] != "trunk").map(|r| r["flops"].as_f64().unwrap()).sum();
    assert!((a["from_scratch_flops"].as_f64().unwrap() / scratch - 1.0).abs() < 1e-12);

    // Adding a width keeps every old id; changing one value changes only the runs it touches.
    let wider = write(
        dir.path(),
        "w.toml",
        &TINY.replace("widths = [16, 32], depth = 1, head_dim = 16 }\nparameters", "widths = [16, 32, 48], depth = 1, head_dim = 16 }\nparameters"),
    );
    let b = ids(&plan(&wider));
    assert_eq!(b.len(), 14 + 4); // four more lr runs at width 48
    assert!(ids(&a).iter().all(|id| b.contains(id)));
    let changed = write(dir.path(), "c.toml", &TINY.replace("0.003, 0.01, 0.03, 1000.0", "0.004, 0.01, 0.03, 1000.0"));
    let c = ids(&plan(&changed));
    let kept = ids(&a).iter().filter(|id| c.contains(id)).count();
    assert_eq!(kept, ids(&a).len() - 2, "only the two lr = 0.003 runs change");
}

/// The learning rates the `lr` grid of a plan gives width 16.
fn lrs_at_width_16(plan: &serde_json::Value) -> Vec<f64> {
    let runs = plan["runs"].as_array().unwrap();
    runs.iter().filter(|r| r["grid"] == "lr" && r["width"] == 16).map(|r| r["config"]["optimizer"]["lr"].as_f64().unwrap()).collect()
}

#[test]
fn ranges_and_random_search_expand_to_the_right_values() {
    let dir = tempfile::tempdir().unwrap();
    let log = TINY.replace("{ values = [0.003, 0.01, 0.03, 1000.0] }", "{ min = 0.001, max = 0.1, num = 3, log = true }");
    let p = write(dir.path(), "log.toml", &log);
    assert_eq!(lrs_at_width_16(&plan(&p)), vec![0.001, 0.01, 0.1]);
    let random = log.replace("name = \"lr\"\n", "name = \"lr\"\nmethod = \"random\"\nsamples = 5\n");
    let p = write(dir.path(), "random.toml", &random);
    let lrs = lrs_at_width_16(&plan(&p));
    assert_eq!(lrs.len(), 5);
    assert!(lrs.iter().all(|&x| (0.001..=0.1).contains(&x)));
}

#[test]
fn malformed_sweep_files_give_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, text: String, want: &[&str]| {
        let p = write(dir.path(), name, &text);
        let e = fails(&["plan", p.to_str().unwrap()]);
        for w in want {
            assert!(e.contains(w), "{name}: expected `{w}` in:\n{e}");
        }
    };
    check("unknown.toml", TINY.replace("seeds = [0]", "seeds = [0]\nseedz = [1]"), &["unknown.toml", "seedz"]);
    check("type.toml", TINY.replace("seeds = [0]", "seeds = \"zero\""), &["type.toml", "seeds", "line"]);
    check("empty.toml", TINY.replace("[0.003, 0.01, 0.03, 1000.0]", "[]"), &["empty.toml", "optimizer.lr", "empty", "line"]);
    check(
        "heads.toml",
        TINY.replace("widths = [16, 32], depth = 1, head_dim = 16 }\nparameters", "widths = [16, 40], depth = 1, head_dim = 16 }\nparameters"),
        &["heads.toml", "width 40", "head_dim"],
    );
    check("early.toml", TINY.replace("branch_tokens = [1280, 2560]", "branch_tokens = [128, 2560]"), &["branch point", "warmup"]);
    check("runkey.toml", TINY.replace("optimizer = { lr = 0.01 }", "optimizer = { lr = 0.01, momentum = 0.9 }"), &["momentum"]);
}

#[test]
fn a_sweep_runs_to_its_table_and_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "s.toml", TINY);
    let whole = dir.path().join("whole");
    let o = windtunnel(&["run", p.to_str().unwrap(), "--out", whole.to_str().unwrap(), "--parallel", "2", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sweep = whole.join("tiny");
    let table = table_without_timings(&sweep);
    assert_eq!(table.len(), 14);
    // The diverging learning rate is a result, and the others finished beside it.
    assert_eq!(table.iter().filter(|r| r.contains(",diverged,")).count(), 2);
    // The same table as Parquet, readable by any Parquet reader.
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(sweep.join("table.parquet")).unwrap()).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 14);
    let schema = reader.metadata().file_metadata().schema_descr();
    let names: Vec<String> = (0..schema.num_columns()).map(|i| schema.column(i).name().to_string()).collect();
    assert!(names.iter().any(|n| n == "final_eval_loss") && names.iter().any(|n| n == "param.optimizer.lr"), "{names:?}");
    let status = json(&["status", sweep.to_str().unwrap(), "--json"]);
    assert_eq!((status["done"].as_u64(), status["diverged"].as_u64()), (Some(12), Some(2)));

    // Kill the whole tree mid-sweep, rerun, and compare.
    let cut = dir.path().join("cut");
    let mut child = Command::new(env!("CARGO_BIN_EXE_windtunnel"))
        .args(["run", p.to_str().unwrap(), "--out", cut.to_str().unwrap(), "--parallel", "2", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let runs = cut.join("tiny").join("runs");
    let started = Instant::now();
    let done_count = || {
        std::fs::read_dir(&runs)
            .map_or(0, |d| d.flatten().filter(|e| std::fs::read_to_string(e.path().join("status.json")).is_ok_and(|s| s.contains("\"done\""))).count())
    };
    while done_count() < 3 {
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    let finished_before: Vec<(PathBuf, String)> = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let s = std::fs::read_to_string(e.path().join("status.json")).ok()?;
            s.contains("\"done\"").then(|| (e.path(), s))
        })
        .collect();
    assert!(finished_before.len() < 12, "the sweep finished before it could be killed");

    // A second `run` on a directory another process holds is refused (here: hold the lock ourselves).
    let lock = std::fs::File::open(cut.join("tiny").join("sweep.lock")).unwrap();
    use std::os::unix::io::AsRawFd;
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let e = fails(&["run", p.to_str().unwrap(), "--out", cut.to_str().unwrap(), "--quiet"]);
    assert!(e.contains("another `windtunnel run` is using"), "{e}");
    drop(lock);

    let o = windtunnel(&["run", p.to_str().unwrap(), "--out", cut.to_str().unwrap(), "--parallel", "2", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (path, status) in finished_before {
        assert_eq!(std::fs::read_to_string(path.join("status.json")).unwrap(), status, "{} was retrained", path.display());
    }
    assert_eq!(table_without_timings(&cut.join("tiny")), table, "a resumed sweep gives the uninterrupted sweep's table");

    // The table feeds the fitters, as CSV and as Parquet alike.
    let lr = json(&["fit", "lr", "--input", sweep.to_str().unwrap(), "--json"]);
    assert_eq!(lr["groups"][0][1]["optima"].as_array().unwrap().len(), 2);
    assert!(sweep.join("fits").join("lr.json").exists(), "a sweep keeps its fits in DIR/fits/");
    let from_parquet = json(&["fit", "lr", "--input", sweep.join("table.parquet").to_str().unwrap(), "--json"]);
    assert_eq!(from_parquet["groups"][0][1]["optima"], lr["groups"][0][1]["optima"]);
}

#[test]
fn slurm_dry_run_writes_readable_scripts_of_at_most_1000_tasks() {
    // No Slurm needed: --dry-run writes the scripts and submits nothing.
    let dir = tempfile::tempdir().unwrap();
    let big = TINY
        .replace("name = \"lr\"\n", "name = \"lr\"\nmethod = \"random\"\nsamples = 600\n")
        .replace("{ values = [0.003, 0.01, 0.03, 1000.0] }", "{ min = 0.001, max = 0.1, log = true }");
    let p = write(dir.path(), "big.toml", &big);
    let out = dir.path().join("it's here");
    let o = windtunnel(&[
        "run",
        p.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--executor",
        "slurm",
        "--dry-run",
        "--partition",
        "gpu",
        "--time",
        "01:00:00",
        "--setup",
        "echo setting up",
        "--kernel-cache",
        "/tmp/wt kernels",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let slurm = out.join("tiny").join("slurm");
    // 1200 lr runs and 2 trunks: two wave-1 scripts (Slurm's MaxArraySize), one wave-2 script.
    let ids = |name: &str| {
        let text = std::fs::read_to_string(slurm.join(name)).unwrap();
        let line = text.lines().find(|l| l.starts_with("RUN_IDS=(")).unwrap().to_string();
        (line.matches('\'').count() / 2, text)
    };
    let (first, text) = ids("wave-1-1.sbatch");
    let (second, _) = ids("wave-1-2.sbatch");
    assert_eq!((first, second), (1000, 202));
    assert!(text.contains("#SBATCH --partition=gpu") && text.contains("#SBATCH --time=01:00:00") && text.contains("\necho setting up\n"), "{text}");
    // An explicit kernel cache reaches every task, quoted.
    assert!(text.contains("\nexport WINDTUNNEL_KERNEL_CACHE='/tmp/wt kernels'\n"), "{text}");
    // The sweep directory's path reaches the script single-quoted, its quote escaped.
    assert!(text.contains(r"SWEEP_DIR='") && text.contains(r"it'\''s here/tiny'"), "{text}");
    let (branches, wave2) = ids("wave-2.sbatch");
    assert_eq!(branches, 4);
    assert!(wave2.contains("--dependency=afterok:<trunk job>"), "{wave2}");
    assert!(!slurm.join("jobs.json").exists(), "a dry run records no jobs");
}

#[test]
fn a_local_sweep_is_cancelled_gracefully_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let long = TINY.replace("tokens = 2560,", "tokens = 256000,").replace("eval_interval_tokens = 1280,", "eval_interval_tokens = 64000,");
    let p = write(dir.path(), "long.toml", &long.split("[[grid]]\nname = \"data\"").next().unwrap().replace(", 1000.0]", "]"));
    let out = dir.path().join("out");
    let sweep = out.join("tiny");
    let e = fails(&["cancel", sweep.to_str().unwrap()]);
    assert!(e.contains("not a sweep directory"), "{e}");
    let mut run = Command::new(env!("CARGO_BIN_EXE_windtunnel"))
        .args(["run", p.to_str().unwrap(), "--out", out.to_str().unwrap(), "--parallel", "2", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !sweep.join("plan.json").exists() || json(&["status", sweep.to_str().unwrap(), "--json"])["running"].as_u64() != Some(2) {
        assert!(started.elapsed() < Duration::from_secs(60), "the sweep never had two running runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    let printed = windtunnel(&["cancel", sweep.to_str().unwrap()]);
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    assert!(String::from_utf8_lossy(&printed.stdout).contains("stopped the local `windtunnel run`"));
    // `cancel` returns once the run has stopped: its workers checkpointed, it exited like SIGTERM.
    assert_eq!(run.wait().unwrap().code(), Some(143));
    let status = json(&["status", sweep.to_str().unwrap(), "--json"]);
    assert_eq!((status["running"].as_u64(), status["interrupted"].as_u64()), (Some(0), Some(2)), "{status}");
    let e = fails(&["cancel", sweep.to_str().unwrap()]);
    assert!(e.contains("nothing is running"), "{e}");
}

/// A sweep over a `schedule.*` key: every value is its own run; in a WSD grid the decays branch
/// off one shared trunk.
#[test]
fn a_sweep_over_schedule_keys_trains_each_value() {
    let dir = tempfile::tempdir().unwrap();
    let base = TINY.split("[[grid]]").next().unwrap().replace(
        "schedule = { kind = \"cosine\", warmup_tokens = 256 }",
        "schedule = { kind = \"wsd\", warmup_tokens = 256, decay = \"linear\", decay_tokens = 512 }",
    );
    let grids = "[[grid]]\nname = \"decays\"\nmodels = { widths = [16], depth = 1, head_dim = 16 }\n\
                 wsd = { branch_tokens = [1280], decay_fraction = 0.4 }\n\
                 parameters.\"schedule.decay\" = { values = [\"linear\", \"1-sqrt\", \"exponential\"] }\n\
                 [[grid]]\nname = \"floors\"\nmodels = { widths = [16], depth = 1, head_dim = 16 }\n\
                 parameters.\"schedule.final_lr_fraction\" = { values = [0.0, 0.5] }\n";
    let p = write(dir.path(), "s.toml", &(base + grids));
    let out = dir.path().join("out");
    let o = windtunnel(&["run", p.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = std::fs::read_to_string(out.join("tiny").join("table.csv")).unwrap();
    let rows: Vec<&str> = table.lines().skip(1).collect();
    let count = |needle: &str| rows.iter().filter(|r| r.contains(needle)).count();
    assert_eq!((count(",trunk,decays,"), count(",branch,decays,"), count(",plain,floors,")), (1, 3, 2), "{table}");
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let loss = header.iter().position(|h| *h == "final_eval_loss").unwrap();
    let mut losses: Vec<&str> = rows.iter().filter(|r| r.contains(",branch,")).map(|r| r.split(',').nth(loss).unwrap()).collect();
    losses.sort();
    losses.dedup();
    assert_eq!(losses.len(), 3, "each decay shape trains its own branch: {table}");
}

/// Every sweep file shipped in sweeps/ plans: a user's first `plan` of one never meets an error.
#[test]
fn every_shipped_sweep_file_plans() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps");
    let mut planned = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "toml")) {
        let plan = plan(&entry.path());
        assert!(!plan["runs"].as_array().unwrap().is_empty(), "{}", entry.path().display());
        planned += 1;
    }
    assert!(planned >= 8, "{planned} sweep files");
}

/// `run --dry-run` on the local executor trains nothing and writes nothing: it says what would
/// train and what it would cost, and after a real run, that nothing is left.
#[test]
fn a_local_dry_run_never_trains() {
    let root = tempfile::tempdir().unwrap();
    let file = write(root.path(), "tiny.toml", TINY);
    let out = root.path().join("out");
    let (f, o) = (file.to_str().unwrap(), out.to_str().unwrap());
    let dry = json(&["run", f, "--out", o, "--dry-run", "--json"]);
    let planned = plan(&file);
    assert_eq!(dry["would_train"].as_array().unwrap().len(), planned["runs"].as_array().unwrap().len());
    assert!((dry["flops"].as_f64().unwrap() / planned["total_flops"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{dry}");
    assert!(!out.exists(), "a dry run wrote {}", out.display());
    let text = common::ok(&["run", f, "--out", o, "--dry-run"]);
    assert!(text.contains("dry run: nothing trained") && text.contains("would train"), "{text}");
    common::ok(&["run", f, "--out", o, "--parallel", "2", "--quiet"]);
    let after = json(&["run", f, "--out", o, "--dry-run", "--json"]);
    assert_eq!(after["would_train"].as_array().unwrap().len(), 0, "{after}");
    assert_eq!(after["already_finished"], planned["runs"].as_array().unwrap().len());
    // Nothing left costs 0 FLOPs, not -0 (an empty float sum is -0.0).
    assert_eq!(after["flops"].to_string(), "0.0", "{after}");
    let text = common::ok(&["run", f, "--out", o, "--dry-run"]);
    assert!(text.ends_with("0 run(s) would train, 0.000e0 FLOPs; run without --dry-run to train them\n"), "{text}");
}

/// A folder holding several sweeps (`run --out OUT` with two sweep files) is not one of them:
/// status says which to give.
#[test]
fn a_folder_of_several_sweeps_asks_for_one() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        std::fs::create_dir(dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join(name).join("plan.json"), "{}").unwrap();
    }
    let e = fails(&["status", dir.path().to_str().unwrap()]);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    assert!(e.contains(&format!("holds several sweeps; give one of them: {}, {}", a.display(), b.display())), "{e}");
}
