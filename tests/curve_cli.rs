//! `fit curve` through the real binary: on a tiny sweep with trunks, branches of two decay shapes
//! and cosine runs; on the same curves exported as a long CSV (as a W&B export would be); and on
//! bad curve files.

mod common;
use common::{fails, json, ok, windtunnel};

use std::path::{Path, PathBuf};

use windtunnel::results::curves::planned_rates;
use windtunnel::results::SweepResults;

/// Trunks of two widths evaluated often, exponential and 1-sqrt decays at two branch points
/// (sharing the trunks), and a cosine run of each exponential branch's length.
const CURVES: &str = r#"
name = "curves"
seeds = [0]

[base]
mup = { base_width = 16 }
optimizer = { lr = 0.02 }
schedule = { kind = "constant", warmup_tokens = 256 }
training = { tokens = 6144, batch_size = 4, seq_len = 32, eval_interval_tokens = 256, eval_tokens = 256 }
data = { kind = "synthetic", vocab = 64 }

[[grid]]
name = "exp"
models = { widths = [16, 32], depth = 1, head_dim = 16 }
wsd = { branch_tokens = [2048, 4096], decay = "exponential", decay_fraction = 0.25, cosine_baseline = true }

[[grid]]
name = "sqrt"
models = { widths = [16, 32], depth = 1, head_dim = 16 }
wsd = { branch_tokens = [2048, 4096], decay = "1-sqrt", decay_fraction = 0.5 }
"#;

fn sweep(root: &Path) -> PathBuf {
    let file = root.join("curves.toml");
    std::fs::write(&file, CURVES).unwrap();
    let out = root.join("results");
    ok(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--parallel", "2", "--quiet"]);
    out.join("curves")
}

#[test]
fn fit_curve_on_a_sweep_and_on_its_curves_as_a_table() {
    let root = tempfile::tempdir().unwrap();
    let dir = sweep(root.path());
    let d = dir.to_str().unwrap();

    // The schedule rebuilt from each run's config is the learning rate its trainer logged, for
    // every kind of run (trunk, branches of both shapes, cosine), to the bit.
    let results = SweepResults::load(&dir).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for r in &results.runs {
        let rates = planned_rates(&r.run);
        assert!(!r.metrics.is_empty(), "{} logged nothing", r.run.id);
        for m in &r.metrics {
            assert_eq!(
                rates[m.step as usize - 1].to_bits(),
                m.lr.to_bits(),
                "{} step {}: rebuilt {} logged {}",
                r.run.id,
                m.step,
                rates[m.step as usize - 1],
                m.lr
            );
        }
        kinds.insert(windtunnel::results::curves::run_name(&r.run).split('@').next().unwrap().split(' ').next_back().unwrap().to_string());
    }
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["exp/branch", "exp/cosine", "exp/trunk", "sqrt/branch"]);

    // Fit on each size's trunk and the two exponential branches; predict the rest.
    let args = ["fit", "curve", "--input", d, "--fit-runs", "trunk|exp/branch", "--predict-runs", "branch|cosine", "--bootstrap", "30", "--json"];
    let report = json(&args);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2 * (2 + 2), "1-sqrt branches and cosines of two sizes: {report:#}");
    for r in runs {
        let name = r["run"].as_str().unwrap();
        assert!(name.contains("sqrt/branch") || name.contains("exp/cosine"), "{name}");
        let (p, a, e) = (r["predicted_final"].as_f64().unwrap(), r["actual_final"].as_f64().unwrap(), r["relative_error"].as_f64().unwrap());
        assert!((e - (p - a) / a).abs() < 1e-12);
        assert!(e.abs() < 0.2, "{name}: a prediction {p} for {a} is no prediction at all");
        assert!(r["held_out"].as_bool().unwrap());
        assert!(!r["curve"].as_array().unwrap().is_empty());
    }
    for key in ["median_relative_error", "max_relative_error"] {
        assert!(report[key].as_f64().unwrap() >= 0.0, "{key}");
    }
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    for key in ["l0", "a", "alpha", "b", "c", "beta", "gamma"] {
        assert!(groups[0]["params"][key].as_f64().unwrap().is_finite(), "{key}");
    }
    assert!(dir.join("plots/curve-law.svg").exists());
    // Deterministic: the same fit twice.
    assert_eq!(json(&args), report);
    // `run --out OUT` writes OUT/<name>, and OUT names its only sweep: to fit curve as to status.
    let parent = dir.parent().unwrap().to_str().unwrap();
    let mut via_parent = args;
    via_parent[3] = parent;
    assert_eq!(json(&via_parent), report);
    assert!(ok(&["status", parent]).starts_with(&format!("{d}: ")), "status names the sweep it found");
    let logdir = root.path().join("tb");
    ok(&["tensorboard", parent, "--out", logdir.to_str().unwrap()]);
    assert!(logdir.join("exp").is_dir(), "one event folder per grid");

    // Schedules never run, with their bootstrap interval, and the best decay.
    let text = ok(&[
        "fit",
        "curve",
        "--input",
        d,
        "--predict-schedule",
        "wsd:tokens=6144,decay_fraction=0.2,decay=linear",
        "--optimize-decay",
        "--tokens",
        "6144",
        "--bootstrap",
        "30",
    ]);
    assert!(text.contains("wsd:tokens=6144,decay_fraction=0.2,decay=linear") && text.contains("best decay for"), "{text}");
    assert!(text.contains("the sweep's exponential"), "{text}");
    let e = fails(&["fit", "curve", "--input", d, "--optimize-decay"]);
    assert!(e.contains("--optimize-decay needs the run length"), "{e}");
    let e = fails(&["fit", "curve", "--input", d, "--fit-runs", "nothing-matches"]);
    assert!(e.contains("no finished run matches --fit-runs") && e.contains("exp/trunk"), "{e}");
    // An option that leaves nothing to fit names itself, not --fit-runs (which was not given).
    let e = fails(&["fit", "curve", "--input", d, "--predict-runs", "."]);
    assert!(e.contains("--predict-runs `.` matches every finished run") && !e.contains("no finished run matches"), "{e}");
    let e = fails(&["fit", "law", "--input", d, "--from-curves", "--curve-runs", "zzz"]);
    assert!(e.contains("--curve-runs `zzz` matches no finished run") && e.contains("exp/trunk"), "{e}");
    let e = fails(&["fit", "law", "--input", d, "--from-curves", "--trunk-tokens", "0"]);
    assert!(e.contains("--trunk-tokens 0: the trunks' first evaluation is at") && !e.contains("--fit-runs"), "{e}");

    // A schedule 100× as long as the longest run fitted (48 steps): a note, and no interval.
    let far = json(&["fit", "curve", "--input", d, "--predict-schedule", "constant:steps=4800", "--bootstrap", "30", "--json"]);
    assert!(far["schedules"].as_array().unwrap().iter().all(|s| s["interval"].is_null()), "{far:#}");
    let notes: Vec<&str> = far["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(
        notes.iter().filter(|n| n.contains("constant:steps=4800: 4800 steps is 100.0× the longest run") && n.contains("without an interval")).count(),
        2,
        "{notes:?}"
    );
    // Too few refits for an interval: the header promises none, and a note says why.
    let text = ok(&["fit", "curve", "--input", d, "--predict-schedule", "wsd:tokens=6144,decay_fraction=0.2,decay=linear", "--bootstrap", "10"]);
    assert!(text.contains("\nschedules not run:\n") && !text.contains("(95% interval"), "{text}");
    assert!(text.contains("no 95% interval: 10 bootstrap refits, and an interval needs 20"), "{text}");

    // The data-model law on the trunks' predicted decays, beside the law on the real branches.
    let law = json(&["fit", "law", "--input", d, "--from-curves", "--curve-runs", "trunk|exp/branch@2048", "--bootstrap", "30", "--json"]);
    let points = law["points"].as_array().unwrap();
    // Two trunks of 4096 tokens evaluated every 256: 2048, 2304, …, 4096 each.
    assert_eq!(points.len(), 2 * 9, "a point per trunk evaluation from the first branch point");
    assert!(law["law"]["fit"]["law"]["alpha"].as_f64().is_some(), "{law:#}");
    assert!(law["budgets"][0]["tokens_per_param"]["estimate"].as_f64().unwrap() > 0.0);
    assert!(law["flops"].as_f64().unwrap() < law["branches_flops"].as_f64().unwrap());
    // As if the trunks had stopped at 3072 tokens: their evaluations up to there, and their FLOPs.
    let short =
        json(&["fit", "law", "--input", d, "--from-curves", "--curve-runs", "trunk|exp/branch@2048", "--trunk-tokens", "3072", "--bootstrap", "30", "--json"]);
    assert_eq!(short["points"].as_array().unwrap().len(), 2 * 5, "2048, 2304, …, 3072 on each trunk");
    assert_eq!(short["trunk_tokens"], 3072);
    let trunk_flops: f64 = results.runs.iter().filter(|r| r.run.kind == windtunnel::sweep::plan::RunKind::Trunk).map(|r| r.run.own_flops).sum();
    let saved = law["flops"].as_f64().unwrap() - short["flops"].as_f64().unwrap();
    assert!((saved / (trunk_flops * 1024.0 / 4096.0) - 1.0).abs() < 1e-9, "a quarter of the trunks' FLOPs saved: {saved} of {trunk_flops}");
    // Without --curve-runs, the branches past the trunks' end are left out (they would not exist).
    let default = json(&["fit", "law", "--input", d, "--from-curves", "--trunk-tokens", "3072", "--bootstrap", "0", "--json"]);
    let used: Vec<&str> =
        default["curve"]["groups"].as_array().unwrap().iter().flat_map(|g| g["runs"].as_array().unwrap()).map(|r| r.as_str().unwrap()).collect();
    assert!(used.iter().any(|r| r.contains("branch@2048")) && !used.iter().any(|r| r.contains("branch@4096")), "{used:?}");
    let e = fails(&["fit", "law", "--input", d, "--from-curves", "--curve-runs", "trunk|exp/branch@2048", "--trunk-tokens", "1024"]);
    assert!(e.contains("--trunk-tokens 1024") && e.contains("branches at 2048 tokens"), "{e}");

    // The same curves as a long table (one row per logged step, loss empty where not evaluated):
    // the same law, read from a file as another trainer would write it.
    let mut csv = String::from("name,_step,tokens,lr,val_loss,size\n");
    for r in &results.runs {
        let from = r.run.from_tokens.map_or(0, |t| t / 128);
        for m in r.metrics.iter().filter(|m| m.step > from || r.run.trunk.is_none()) {
            let loss = m.eval_loss.map_or(String::new(), |l| l.to_string());
            csv.push_str(&format!("{},{},{},{},{loss},{}\n", r.run.id, m.step, m.tokens, m.lr, r.run.width));
        }
    }
    let table = root.path().join("curves.csv");
    std::fs::write(&table, csv).unwrap();
    let t = table.to_str().unwrap();
    let chart = root.path().join("table.svg");
    let c = chart.to_str().unwrap();
    let from_table = json(&[
        "fit",
        "curve",
        "--input",
        t,
        "--run",
        "name",
        "--step",
        "_step",
        "--lr",
        "lr",
        "--loss",
        "val_loss",
        "--tokens",
        "tokens",
        "--group",
        "size",
        "--bootstrap",
        "0",
        "--json",
        "--chart",
        c,
    ]);
    assert_eq!(from_table["groups"].as_array().unwrap().len(), 2);
    assert!(chart.exists());
    // Without a tokens column the run length is in steps: the best decay for a 48-step run (at
    // 128 tokens per step, the sweep's 6144 tokens) is the one found in tokens.
    let table_args =
        ["fit", "curve", "--input", t, "--run", "name", "--step", "_step", "--lr", "lr", "--loss", "val_loss", "--group", "size", "--bootstrap", "0"];
    let in_steps = json(&[&table_args[..], &["--optimize-decay", "--at-tokens", "48", "--json"]].concat());
    let in_tokens = json(&[&table_args[..], &["--tokens", "tokens", "--optimize-decay", "--at-tokens", "6144", "--json"]].concat());
    let best = |r: &serde_json::Value| r["decay_optima"].as_array().unwrap().iter().map(|o| o["best_per_shape"].clone()).collect::<Vec<_>>();
    assert!(!best(&in_steps).is_empty());
    assert_eq!(best(&in_steps), best(&in_tokens));
}

#[test]
fn bad_curve_files_are_refused_naming_the_file_the_row_and_the_fix() {
    let root = tempfile::tempdir().unwrap();
    let cases = [
        ("run,step,lr\na,1,0.1\n", "no column `loss`"),
        ("run,step,lr,loss\na,5,0.1,3\na,4,0.1,3\n", "line 3: run `a` goes from step 5 back to 4"),
        ("run,step,lr,loss\na,1,-0.1,3\n", "learning rate -0.1"),
        ("run,step,lr,loss\na,1,NaN,3\n", "learning rate NaN"),
        ("run,step,lr,loss\na,1,0.1,\na,2,0.1,\n", "run `a` has no loss"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = root.path().join(format!("bad{i}.csv"));
        std::fs::write(&file, text).unwrap();
        let e = fails(&["fit", "curve", "--input", file.to_str().unwrap()]);
        assert!(e.contains(want) && e.contains(&format!("bad{i}.csv")), "{text:?}: {e}");
    }
    // Tokens that go down along a run (786,432 tokens would become a few steps' worth).
    let file = root.path().join("tokens.csv");
    std::fs::write(&file, "run,step,tokens,lr,loss\na,1,786432,0.1,3\na,2,1024,0.1,2.9\n").unwrap();
    let e = fails(&["fit", "curve", "--input", file.to_str().unwrap(), "--tokens", "tokens"]);
    assert!(e.contains("line 3: run `a` goes from 786432 tokens back to 1024 at step 2"), "{e}");
    let o = windtunnel(&["fit", "curve", "--input", "/nonexistent.csv"]);
    assert!(!o.status.success());
    let e = fails(&["fit", "curve", "--input", "x.csv", "--predict-schedule", "wsd:tokens=10,decay=cubic"]);
    assert!(e.contains("decay `cubic`"), "{e}");
}

/// The schedule families of #46: a held-out run or a `--predict-schedule` of a family no fitted
/// run belongs to gets one warning per family (text and JSON), and none once such a run is
/// fitted; notes about runs come once, not once per run; the chart says "fitted" unless runs
/// were held out, and orders its panels by N.
#[test]
fn fit_curve_warns_of_schedule_families_it_never_fitted() {
    let root = tempfile::tempdir().unwrap();
    let dir = sweep(root.path());
    let d = dir.to_str().unwrap();
    let warnings = |args: &[&str]| -> Vec<String> {
        let report = json(&[&["fit", "curve", "--input", d, "--bootstrap", "0", "--json"], args].concat());
        report["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_string()).collect()
    };
    // Trunks (constant) and exponential branches fitted: the cosines and the 1-sqrt branches
    // predicted are families the law never saw, one warning each.
    let w = warnings(&["--fit-runs", "trunk|exp/branch", "--predict-runs", "branch|cosine"]);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("cosine schedules predicted (") && w[0].contains("exp/cosine@"), "{w:?}");
    assert!(w[0].contains("and 1 more), and no run the law was fitted on in their group is one: it saw constant, WSD (exponential decay) only"), "{w:?}");
    assert!(w[1].starts_with("WSD (1-sqrt decay) schedules predicted ("), "{w:?}");
    let text = ok(&["fit", "curve", "--input", d, "--fit-runs", "trunk|exp/branch", "--predict-runs", "branch|cosine", "--bootstrap", "0"]);
    assert_eq!(text.matches("\nwarning: ").count(), 2, "{text}");
    // With a cosine fitted in each size, the cosine is a family the law has seen.
    let w = warnings(&["--fit-runs", "trunk|exp/branch|exp/cosine@2560", "--predict-runs", "sqrt/branch|cosine@5120"]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("WSD (1-sqrt decay) schedules predicted") && w[0].contains("cosine"), "the family list names the cosine fitted: {w:?}");
    // --predict-schedule, by the same rule.
    let asked = ["--predict-schedule", "cosine:tokens=6144"];
    assert!(warnings(&[&["--fit-runs", "trunk|exp/cosine"][..], &asked].concat()).is_empty());
    let w = warnings(&[&["--fit-runs", "trunk|exp/branch"][..], &asked].concat());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("cosine schedules predicted (cosine:tokens=6144)"), "{w:?}");

    // The runs of a size with no law: one note for all of them.
    let report = json(&["fit", "curve", "--input", d, "--fit-runs", " w16 ", "--predict-runs", " w32 ", "--bootstrap", "0", "--json"]);
    let notes: Vec<&str> = report["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let lawless: Vec<&&str> = notes.iter().filter(|n| n.contains("have no law")).collect();
    assert_eq!(lawless.len(), 1, "{notes:?}");
    assert!(lawless[0].starts_with("7 run(s) have no law, none of the runs of their group(s) `N=") && lawless[0].contains("and 4 more"), "{notes:?}");
    assert!(report["groups"][0]["not_identified"].is_array(), "{report:#}");

    // The chart: "fitted" finals when nothing was held out, "held-out" when runs were.
    let svg = dir.join("plots/curve-law.svg");
    ok(&["fit", "curve", "--input", d, "--bootstrap", "0"]);
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.contains("every evaluation; fitted finals: median") && !drawn.contains("held-out finals"), "the chart's residual panel");
    ok(&["fit", "curve", "--input", d, "--fit-runs", "trunk|exp/branch", "--predict-runs", "cosine", "--bootstrap", "0"]);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("every evaluation; held-out finals: median"));
}

/// The chart's panels go by model size, whatever order the table's groups come in.
#[test]
fn curve_law_panels_are_ordered_by_model_size() {
    let root = tempfile::tempdir().unwrap();
    let mut csv = String::from("run,step,lr,loss,size\n");
    // Three groups, the largest first in the file; each a constant run and a decay.
    for (size, floor) in [("400M", 2.5), ("25M", 3.2), ("100M", 2.8)] {
        for (run, decay_from) in [("constant", 400), ("wsd", 300)] {
            for step in (10..=400).step_by(10) {
                let lr = if step <= decay_from { 1e-3 } else { 1e-3 * (400 - step) as f64 / 100.0 };
                let drop = if step > decay_from { 0.1 * (step - decay_from) as f64 / 100.0 } else { 0.0 };
                let loss = floor + 3.0 * (step as f64).powf(-0.5) - drop;
                csv.push_str(&format!("{size}/{run},{step},{lr},{loss},{size}\n"));
            }
        }
    }
    let table = root.path().join("curves.csv");
    std::fs::write(&table, csv).unwrap();
    let chart = root.path().join("chart.svg");
    ok(&["fit", "curve", "--input", table.to_str().unwrap(), "--group", "size", "--bootstrap", "0", "--chart", chart.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&chart).unwrap();
    let at = |title: &str| svg.find(&format!(">\n{title}\n<")).unwrap_or_else(|| panic!("no panel {title}"));
    assert!(at("25M") < at("100M") && at("100M") < at("400M"), "panels by N: 25M at {}, 100M at {}, 400M at {}", at("25M"), at("100M"), at("400M"));
}
