//! `windtunnel run SWEEP --adaptive`: rounds of runs chosen per FLOP on a real (tiny) sweep,
//! trunks paused where their branches need them, deterministic choices across kill -9, and the
//! `[adaptive]` block's errors.

mod common;
use common::{fails, json, ok, windtunnel};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Four sizes, each a trunk with decays at four token counts; the adaptive block asks for D/N at
/// 1e8 FLOPs within a budget well below the grid's.
const SWEEP: &str = r#"
name = "adapt"
seeds = [0]

[base]
mup = { base_width = 16 }
optimizer = { lr = 0.02 }
schedule = { kind = "constant", warmup_tokens = 256 }
training = { tokens = 5120, batch_size = 4, seq_len = 32, eval_interval_tokens = 640, eval_tokens = 256 }
data = { kind = "synthetic", vocab = 64 }

[[grid]]
name = "data"
models = { widths = [8, 16, 24, 32], depth = 1, head_dim = 8 }
wsd = { branch_tokens = [640, 1280, 2560, 5120], decay = "linear", decay_fraction = 0.25 }

[adaptive]
target = "allocation"
budget_flops = 1e8
max_flops = MAX
runs_per_round = 2
bootstrap = 40
"#;

fn write_sweep(root: &Path, max_flops: &str, extra: &str) -> PathBuf {
    let file = root.join("adapt.toml");
    std::fs::write(&file, SWEEP.replace("MAX", max_flops) + extra).unwrap();
    file
}

fn grid_flops(file: &Path) -> f64 {
    json(&["plan", file.to_str().unwrap(), "--json"])["total_flops"].as_f64().unwrap()
}

fn rounds(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("adaptive.json")).unwrap()).unwrap()
}

/// The chosen runs of every round, with their prices: what must not change across a kill.
fn decisions(record: &serde_json::Value) -> Vec<Vec<(String, f64)>> {
    record["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["chosen"].as_array().unwrap().iter().map(|c| (c["id"].as_str().unwrap().to_string(), c["cost_flops"].as_f64().unwrap())).collect())
        .collect()
}

#[test]
fn an_adaptive_sweep_trains_a_cheap_subset_and_pauses_its_trunks() {
    let root = tempfile::tempdir().unwrap();
    let probe = write_sweep(root.path(), "1", "");
    let budget = 0.3 * grid_flops(&probe);
    let file = write_sweep(root.path(), &format!("{budget:e}"), "");
    let out = root.path().join("results");
    let report = json(&["run", file.to_str().unwrap(), "--adaptive", "--out", out.to_str().unwrap(), "--parallel", "2", "--quiet", "--json"]);
    let dir = out.join("adapt");
    let record = rounds(&dir);
    let all = record["rounds"].as_array().unwrap();
    assert_eq!(all[0]["chosen"].as_array().unwrap().len(), 8, "the seed design is 2p = 10 runs or the cheaper half's 8: {record}");
    assert!(all.len() >= 2 && all.last().unwrap()["stopped"].is_string(), "{record}");
    let spent = all.last().unwrap()["flops_spent"].as_f64().unwrap();
    assert!(spent <= budget * (1.0 + 1e-9), "spent {spent} of {budget}");
    assert_eq!(report["record"]["rounds"], record["rounds"], "--json prints the rounds adaptive.json keeps");
    // Every chosen branch is done; the table holds exactly them; no run outside the grid's.
    let chosen: Vec<String> = decisions(&record).concat().into_iter().map(|(id, _)| id).collect();
    let table = std::fs::read_to_string(dir.join("table.csv")).unwrap();
    assert_eq!(table.lines().count() - 1, chosen.len() + table.lines().filter(|l| l.contains(",trunk,")).count(), "{table}");
    for id in &chosen {
        assert!(table.contains(&format!("{id},")), "{id} not in the table");
    }
    // Spent FLOPs are what was trained: each branch's decay, and its trunk only as far as needed.
    let status = json(&["status", dir.to_str().unwrap(), "--json"]);
    assert!((status["flops_total"].as_f64().unwrap() / spent - 1.0).abs() < 1e-6, "status {} vs spent {spent}", status["flops_total"]);
    assert!(status["adaptive"]["rounds"].is_array(), "status shows the rounds");
    let text = ok(&["status", dir.to_str().unwrap()]);
    assert!(text.contains("adaptive rounds of grid `data`") && text.contains("round  1:"), "{text}");
    // A paused trunk says why, holds its pause point, and resumes when the full grid is run.
    let paused = status["detail"].as_array().unwrap().iter().filter(|r| r["state"] == "paused").count();
    assert!(paused >= 1, "no trunk was paused: {status}");
    ok(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--parallel", "2", "--quiet"]);
    let full = json(&["status", dir.to_str().unwrap(), "--json"]);
    assert_eq!(full["done"], 20, "the rest of the grid trains into the same folder: {full}");
    assert!(!std::fs::read_dir(dir.join("runs")).unwrap().flatten().any(|r| r.path().join("pause.json").exists()), "a full run leaves no pause");
    // The rounds are drawn and reported, beside the whole grid's answer now that it is trained.
    let d = dir.to_str().unwrap();
    let plots = json(&["plot", d, "--json"]);
    let chart = plots["charts"].as_array().unwrap().iter().find(|c| c["chart"] == "adaptive").cloned().unwrap();
    assert!(chart["path"].as_str().unwrap().ends_with("adaptive.svg"), "{chart}");
    ok(&["report", d]);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("Adaptive rounds") && html.contains("The whole grid, every run trained"), "the report lacks the rounds");
}

/// kill -9 in the middle of the rounds, then the same command: the same decisions as a run never
/// interrupted, to the run and the FLOP.
#[test]
fn a_killed_adaptive_sweep_continues_the_same_decisions() {
    let root = tempfile::tempdir().unwrap();
    let probe = write_sweep(root.path(), "1", "");
    let file = write_sweep(root.path(), &format!("{:e}", 0.4 * grid_flops(&probe)), "");
    let args =
        |out: &Path| ["run".to_string(), file.to_str().unwrap().into(), "--adaptive".into(), "--out".into(), out.to_str().unwrap().into(), "--quiet".into()];
    let clean = root.path().join("clean");
    let a: Vec<String> = args(&clean).to_vec();
    ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let want = decisions(&rounds(&clean.join("adapt")));

    let killed = root.path().join("killed");
    let b: Vec<String> = args(&killed).to_vec();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_windtunnel")).args(&b).stderr(std::process::Stdio::null()).spawn().unwrap();
    let record = killed.join("adapt").join("adaptive.json");
    let started = Instant::now();
    while !std::fs::read_to_string(&record).is_ok_and(|t| t.matches("\"round\"").count() >= 3) && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: killing our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let cut = decisions(&rounds(&killed.join("adapt"))).len();
    // Its workers die with it (SIGTERM from the kernel); wait until none holds a run.
    std::thread::sleep(Duration::from_millis(500));
    ok(&b.iter().map(String::as_str).collect::<Vec<_>>());
    let got = decisions(&rounds(&killed.join("adapt")));
    assert!(cut < got.len(), "killed after {cut} rounds of {}", got.len());
    assert_eq!(got, want, "the resumed rounds chose differently");
}

#[test]
fn bad_adaptive_blocks_name_the_key_and_the_fix() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("results");
    let run = |extra_block: &str, base: &str| {
        let file = root.path().join("bad.toml");
        std::fs::write(&file, base.to_string() + extra_block).unwrap();
        fails(&["run", file.to_str().unwrap(), "--adaptive", "--out", out.to_str().unwrap(), "--quiet"])
    };
    let without = &SWEEP[..SWEEP.find("[adaptive]").unwrap()];
    let e = run("", without);
    assert!(e.contains("--adaptive needs an [adaptive] block") && e.contains("max_flops"), "{e}");
    let e = run("[adaptive]\ntarget = \"allocation\"\nbudget_flops = 1e8\nmax_flops = 1e9\nrelative_intervall = 0.1\n", without);
    assert!(e.contains("relative_intervall") && e.contains("relative_interval"), "{e}");
    let e = run("[adaptive]\ntarget = \"allocation\"\nmax_flops = 1e9\n", without);
    assert!(e.contains("needs `budget_flops`"), "{e}");
    let e = run("[adaptive]\ntarget = \"loss\"\nn = 1e4\nmax_flops = 1e9\n", without);
    assert!(e.contains("needs `n` and `tokens`"), "{e}");
    let e = run("[adaptive]\ntarget = \"allocation\"\nbudget_flops = 1e8\nmax_flops = -1\n", without);
    assert!(e.contains("max_flops = -1") && e.contains("positive"), "{e}");
    // A target no candidate can speak for: what to add.
    let e = run("[adaptive]\ntarget = \"allocation\"\nbudget_flops = 10\nmax_flops = 1e9\n", without);
    assert!(e.contains("below the cheapest candidate run") && e.contains("add smaller models"), "{e}");
    let e = run("[adaptive]\ntarget = \"loss\"\nn = 1e12\ntokens = 1e13\nmax_flops = 1e9\n", without);
    assert!(e.contains("add a size near"), "{e}");
    let e = run("[adaptive]\ntarget = \"allocation\"\nbudget_flops = 1e8\nmax_flops = 1e9\ngrid = \"nope\"\n", without);
    assert!(e.contains("grid = \"nope\"") && e.contains("data"), "{e}");
    // How the loop works: the same names as `adapt`'s flags, checked the same way.
    let e = run("[adaptive]\ntarget = \"allocation\"\nbudget_flops = 1e8\nmax_flops = 1e9\nstrategy = \"greedy\"\n", without);
    assert!(e.contains("unknown variant `greedy`, expected one of `adaptive`, `random`, `cheapest`"), "{e}");
    let e = run("[adaptive]\ntarget = \"allocation\"\nbudget_flops = 1e8\nmax_flops = 1e9\nlevel = 95\n", without);
    assert!(e.contains("[adaptive] level = 95: the interval's level must be between 0 and 1"), "{e}");
    // Slurm needs --wait.
    let file = write_sweep(root.path(), "1e9", "");
    let e = fails(&["run", file.to_str().unwrap(), "--adaptive", "--executor", "slurm", "--out", out.to_str().unwrap()]);
    assert!(e.contains("needs --wait"), "{e}");
    // A different question in the same folder is refused, not mixed in.
    let file = write_sweep(root.path(), &format!("{:e}", 0.1 * grid_flops(&file)), "");
    ok(&["run", file.to_str().unwrap(), "--adaptive", "--out", out.to_str().unwrap(), "--quiet"]);
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace("budget_flops = 1e8", "budget_flops = 2e8")).unwrap();
    let o = windtunnel(&["run", file.to_str().unwrap(), "--adaptive", "--out", out.to_str().unwrap(), "--quiet"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("holds adaptive rounds chosen for") && e.contains("another --out"), "{e}");
    // So is another way of choosing them; the record names it only where it is not the default.
    let record = rounds(&out.join("adapt"));
    assert!(record["strategy"].is_null() && record["form"].is_null() && record["delta"].is_null(), "{record}");
    let text = std::fs::read_to_string(&file).unwrap().replace("budget_flops = 2e8", "budget_flops = 1e8");
    std::fs::write(&file, text + "strategy = \"cheapest\"\n").unwrap();
    let e = fails(&["run", file.to_str().unwrap(), "--adaptive", "--out", out.to_str().unwrap(), "--quiet"]);
    assert!(e.contains("strategy adaptive, form chinchilla") && e.contains("strategy cheapest, form chinchilla"), "{e}");
}
