//! The plan and the data are the source of truth for what a sweep's runs hold: data changed
//! under a run, a run config edited by hand, a finished run whose files were damaged.

mod common;
use common::{fails, ok, windtunnel};
use std::path::Path;

/// A text-data sweep: one WSD trunk with two decays, a second to train.
const TEXT_SWEEP: &str = r#"
name = "text"
seeds = [0]

[base]
mup = { base_width = 16 }
optimizer = { lr = 0.01 }
schedule = { kind = "cosine", warmup_tokens = 256 }
training = { tokens = 2560, batch_size = 4, seq_len = 32, eval_interval_tokens = 1280, eval_tokens = 512 }
data = { kind = "text", path = "corpus.txt" }

[[grid]]
name = "data"
models = { widths = [16], depth = 1, head_dim = 16 }
wsd = { branch_tokens = [1280, 2560], decay = "linear", decay_fraction = 0.2 }
"#;

fn corpus(words: &[&str], seed: u64) -> String {
    let mut x = seed;
    (0..4000)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            words[(x >> 33) as usize % words.len()]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn text_sweep(dir: &Path) -> String {
    std::fs::write(dir.join("corpus.txt"), corpus(&["the", "cat", "sat", "on", "a", "mat"], 1)).unwrap();
    let file = dir.join("text.toml");
    std::fs::write(&file, TEXT_SWEEP).unwrap();
    file.to_str().unwrap().to_string()
}

/// `windtunnel run`, expected to succeed; its report (on stderr).
fn run_ok(args: &[&str]) -> String {
    let out = windtunnel(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "windtunnel {args:?} failed:\n{stderr}");
    stderr
}

fn ids(sweep_file: &str) -> Vec<String> {
    let plan = common::json(&["plan", sweep_file, "--json"]);
    plan["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_sweep_whose_data_changed_after_its_runs_trained_is_refused_with_the_runs_named() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = text_sweep(dir.path());
    let out = dir.path().join("out");
    ok(&["run", &sweep, "--out", out.to_str().unwrap(), "--parallel", "1"]);
    let table = std::fs::read_to_string(out.join("text/table.csv")).unwrap();

    std::fs::write(dir.path().join("corpus.txt"), corpus(&["lorem", "ipsum", "dolor", "sit"], 2)).unwrap();
    let e = fails(&["run", &sweep, "--out", out.to_str().unwrap(), "--parallel", "1"]);
    assert!(e.contains("3 run(s) trained on something other than what the plan names now"), "{e}");
    for id in ids(&sweep) {
        assert!(e.contains(&format!("runs/{id}: trained on {}", dir.path().join("corpus.txt").display())), "{id} is not named:\n{e}");
    }
    assert!(e.contains("Put the original data back") && e.contains("--out NEW"), "{e}");
    assert_eq!(std::fs::read_to_string(out.join("text/table.csv")).unwrap(), table, "nothing was retrained or rewritten");

    // The original data back: the sweep is whole again, and nothing trains.
    std::fs::write(dir.path().join("corpus.txt"), corpus(&["the", "cat", "sat", "on", "a", "mat"], 1)).unwrap();
    let again = run_ok(&["run", &sweep, "--out", out.to_str().unwrap(), "--parallel", "1"]);
    assert!(again.contains("0 done, 0 diverged, 0 failed, 3 kept from before"), "{again}");
}

#[test]
fn a_run_config_edited_or_damaged_by_hand_is_rewritten_from_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = text_sweep(dir.path());
    let out = dir.path().join("out");
    let ids = ids(&sweep);
    // Before the sweep first runs: one pending run's config is junk, another's learning rate edited.
    let config = |id: &str| out.join("text/runs").join(id).join("config.json");
    std::fs::create_dir_all(config(&ids[0]).parent().unwrap()).unwrap();
    std::fs::write(config(&ids[0]), "junk").unwrap();
    let run = windtunnel(&["run", &sweep, "--out", out.to_str().unwrap(), "--parallel", "1"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{} differed from the sweep's plan", config(&ids[0]).display())) && stderr.contains("change the sweep file"), "{stderr}");
    let plan = common::json(&["plan", &sweep, "--json"]);
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("text/runs").join(&ids[0]).join("run.json")).unwrap()).unwrap();
    assert_eq!(record["config"], plan["runs"][0]["config"], "the run trained the plan's config");

    // A run trained from an edited config (by hand, outside the sweep) is not kept under its id.
    let branch = &ids[1];
    let edited = std::fs::read_to_string(config(branch)).unwrap().replace("\"eval_interval_tokens\": 1280", "\"eval_interval_tokens\": 640");
    let run_dir = out.join("text/runs").join(branch);
    std::fs::remove_dir_all(&run_dir).unwrap();
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(config(branch), edited).unwrap();
    ok(&["train", config(branch).to_str().unwrap(), "--out", run_dir.to_str().unwrap()]);
    let e = fails(&["run", &sweep, "--out", out.to_str().unwrap(), "--parallel", "1"]);
    assert!(e.contains(&format!("runs/{branch}: trained a config other than the plan's")), "{e}");
}

#[test]
fn a_finished_run_with_lost_metrics_or_status_says_what_happened_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = text_sweep(dir.path());
    let out = dir.path().join("out");
    ok(&["run", &sweep, "--out", out.to_str().unwrap(), "--parallel", "1"]);
    let ids = ids(&sweep);
    let sweep_dir = out.join("text");
    let run_dir = |id: &str| sweep_dir.join("runs").join(id);

    // A final metrics line without its evaluation is not "cut short".
    let metrics = run_dir(&ids[2]).join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let last = text.lines().last().unwrap().to_string();
    let mut v: serde_json::Value = serde_json::from_str(&last).unwrap();
    v["eval_loss"] = serde_json::Value::Null;
    std::fs::write(&metrics, text.replace(&last, &v.to_string())).unwrap();
    let e = fails(&["collect", sweep_dir.to_str().unwrap()]);
    assert!(e.contains("has no eval_loss (null or missing)") && !e.contains("cut short"), "{e}");
    std::fs::write(&metrics, &text).unwrap();

    // Metrics deleted: status flags the run, run and collect say what was lost and the fix.
    let losses = |path: &Path| -> Vec<(u64, String, String)> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (v["step"].as_u64().unwrap(), v["train_loss"].to_string(), v["eval_loss"].to_string()))
            .collect()
    };
    let lost = losses(&run_dir(&ids[1]).join("metrics.jsonl"));
    std::fs::remove_file(run_dir(&ids[1]).join("metrics.jsonl")).unwrap();
    let status = ok(&["status", sweep_dir.to_str().unwrap()]);
    assert!(status.contains(&ids[1]) && status.contains("its metrics.jsonl is missing"), "{status}");
    let e = fails(&["run", &sweep, "--out", out.to_str().unwrap(), "--parallel", "1"]);
    assert!(e.contains("its status.json says done but its metrics.jsonl is missing") && e.contains("Delete"), "{e}");
    std::fs::rename(run_dir(&ids[1]), dir.path().join("lost")).unwrap();
    let again = run_ok(&["run", &sweep, "--out", out.to_str().unwrap(), "--parallel", "1"]);
    assert!(again.contains("1 done, 0 diverged, 0 failed, 2 kept from before"), "{again}");
    assert_eq!(losses(&run_dir(&ids[1]).join("metrics.jsonl")), lost, "the same run bit for bit");

    // An unreadable status.json of a finished run: not "pending", and no retraining.
    std::fs::write(run_dir(&ids[2]).join("status.json"), "{\"torn").unwrap();
    let status = ok(&["status", sweep_dir.to_str().unwrap()]);
    assert!(status.contains("0 pending, 1 unreadable") && status.contains("so the run finished"), "{status}");
    ok(&["run", &sweep, "--out", out.to_str().unwrap(), "--parallel", "1"]);
    assert!(ok(&["status", sweep_dir.to_str().unwrap()]).contains("3 done"));
    assert_eq!(std::fs::read_to_string(&metrics).unwrap(), text, "the finished run's metrics are kept as they were");
}

#[test]
fn a_run_resumed_on_changed_data_is_refused_and_says_why_in_its_status() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("corpus.txt"), corpus(&["the", "cat", "sat", "on", "a", "mat"], 1)).unwrap();
    let run = common::run_file(dir.path(), "run.toml", "", 16, &[]);
    let text = std::fs::read_to_string(&run).unwrap().replace("kind = \"synthetic\"\nvocab = 64", "kind = \"text\"\npath = \"corpus.txt\"");
    std::fs::write(&run, text).unwrap();
    let out = dir.path().join("r");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("pause.json"), r#"{"tokens": 1024}"#).unwrap();
    ok(&["train", run.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    std::fs::remove_file(out.join("pause.json")).unwrap();
    std::fs::write(dir.path().join("corpus.txt"), corpus(&["lorem", "ipsum"], 2)).unwrap();
    let e = fails(&["train", run.to_str().unwrap(), "--out", out.to_str().unwrap(), "--resume"]);
    assert!(e.contains("the data changed since this run started") && e.contains("Put the original data back"), "{e}");
    // Its status keeps where it stopped, with this reason in place of the last one.
    let status: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "paused", "it is still where it stopped: {status}");
    assert_eq!(status["step"], 8, "{status}");
    assert!(status["reason"].as_str().unwrap().starts_with("cannot resume: ") && status["reason"].as_str().unwrap().contains("the data changed"), "{status}");
}

#[test]
fn a_plan_that_is_not_text_is_not_called_missing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.json"), [0xffu8, 0xfe, 0x00, 0x01]).unwrap();
    let e = fails(&["status", dir.path().to_str().unwrap()]);
    assert!(e.contains("plan.json is not text (damaged?)") && !e.contains("no plan.json"), "{e}");
    std::fs::remove_file(dir.path().join("plan.json")).unwrap();
    std::fs::create_dir(dir.path().join("plan.json")).unwrap();
    let e = fails(&["status", dir.path().to_str().unwrap()]);
    assert!(e.contains("cannot read") && !e.contains("no plan.json"), "{e}");
}

#[test]
fn a_stopped_worker_is_flagged_in_status() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let long = common::TINY
        .split("[[grid]]")
        .next()
        .unwrap()
        .replace("tokens = 2560", "tokens = 25600000")
        .replace("eval_interval_tokens = 1280", "eval_interval_tokens = 12800000")
        + "[[grid]]\nname = \"lr\"\nmodels = { widths = [16], depth = 1, head_dim = 16 }\n";
    let sweep = dir.path().join("long.toml");
    std::fs::write(&sweep, long).unwrap();
    let out = dir.path().join("out");
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_windtunnel"))
        .args(["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let sweep_dir = out.join("tiny");
    let started = std::time::Instant::now();
    let worker = loop {
        assert!(started.elapsed().as_secs() < 60, "no worker started");
        let status = std::fs::read_dir(sweep_dir.join("runs"))
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(e.path().join("status.json")).ok()?).ok());
        if let Some(pid) = status.filter(|s| s["state"] == "running").and_then(|s| s["pid"].as_i64()) {
            break pid as i32;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    unsafe { libc::kill(worker, libc::SIGSTOP) };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let status = common::windtunnel(&["status", sweep_dir.to_str().unwrap()]);
    let json = common::json(&["status", sweep_dir.to_str().unwrap(), "--json"]);
    unsafe {
        libc::kill(worker, libc::SIGCONT);
        libc::kill(-(run.id() as i32), libc::SIGKILL);
    }
    run.wait().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(&format!("its worker (pid {worker}) is stopped")) && text.contains(&format!("kill -CONT {worker}")), "{text}");
    assert!(json["detail"][0]["reason"].as_str().unwrap_or_default().contains("is stopped"), "{json}");
}
