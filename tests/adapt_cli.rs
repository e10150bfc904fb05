//! `windtunnel adapt --replay`: the adaptive loop over a table, through the real binary.

mod common;
use common::{fails, json};

use std::path::Path;

/// The Chinchilla law of Besiroglu et al. and its D/N at 1e22 FLOPs.
const LAW: [f64; 5] = [1.82, 482.0, 2085.4, 0.348, 0.366];

fn loss(n: f64, d: f64) -> f64 {
    let [e, a, b, alpha, beta] = LAW;
    e + a / n.powf(alpha) + b / d.powf(beta)
}

/// Six sizes, each at six token counts, losses from the law times a small deterministic wobble
/// (±0.3%), in a table whose columns are named as a user's would be.
fn table(dir: &Path, wobble: f64) -> String {
    let mut text = String::from("model,params,tokens,flops,final_loss\n");
    for i in 0..6 {
        let n = 2e7 * 2.5f64.powi(i);
        for j in 0..6 {
            let d = n * 4.0 * 2.2f64.powi(j);
            let w = wobble * (((i * 7 + j * 3) % 5) as f64 - 2.0) / 2.0;
            text.push_str(&format!("m{i}-{j},{n},{d},{},{}\n", 6.0 * n * d, loss(n, d) * (1.0 + w)));
        }
    }
    let path = dir.join("runs.csv");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn replay(path: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["adapt", "--replay", path, "--n", "params", "--tokens", "tokens", "--loss", "final_loss", "--bootstrap", "50", "--json"];
    args.extend_from_slice(extra);
    json(&args)
}

/// Random selection on a table made from a known law recovers the law, and the JSON has the
/// rounds, the final answer and the every-row reference.
#[test]
fn random_replay_recovers_a_known_law() {
    let dir = tempfile::tempdir().unwrap();
    let path = table(dir.path(), 0.0);
    let report = replay(&path, &["--target", "allocation:1e22", "--strategy", "random", "--max-flops-fraction", "0.5", "--seed", "3"]);
    let law = &report["final"]["law"];
    for (key, want) in ["e", "a", "b", "alpha", "beta"].iter().zip(LAW) {
        let got = law[*key].as_f64().unwrap();
        assert!((got / want - 1.0).abs() < 1e-3, "{key}: {got} vs {want}");
    }
    let rounds = report["rounds"].as_array().unwrap();
    assert!(rounds.len() >= 2, "{report}");
    assert!(rounds[0]["estimate"].is_null(), "the seed design comes before any fit");
    assert!(rounds[0]["rows"].as_array().unwrap().iter().all(|r| r.as_u64().unwrap() >= 2));
    let fraction = report["final"]["flops_fraction"].as_f64().unwrap();
    assert!(fraction > 0.0 && fraction <= 0.5, "{fraction}");
    assert_eq!(report["full"]["points"], 36);
    assert_eq!(report["full"]["flops_fraction"], 1.0);
    let (e, lo, hi) = (report["final"]["estimate"].as_f64().unwrap(), report["final"]["lower"].as_f64().unwrap(), report["final"]["upper"].as_f64().unwrap());
    assert!(lo <= e && e <= hi, "{e} [{lo}, {hi}]");
}

/// The same seed makes the same choices; the FLOPs of a row come from --flops when given; a loss
/// target is predicted; the budget is kept.
#[test]
fn choices_are_deterministic_and_budgets_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = table(dir.path(), 0.003);
    let args = ["--target", "loss:3e9,6e10", "--max-flops-fraction", "0.2", "--batch", "3", "--seed", "7"];
    let a = replay(&path, &args);
    let b = replay(&path, &args);
    assert_eq!(a["rounds"], b["rounds"], "the same seed chose differently");
    assert!(a["final"]["flops_fraction"].as_f64().unwrap() <= 0.2 + 1e-9);
    let predicted = a["final"]["estimate"].as_f64().unwrap();
    assert!((predicted / loss(3e9, 6e10) - 1.0).abs() < 0.02, "{predicted} vs {}", loss(3e9, 6e10));
    // D from FLOPs when there is no token column: the same rows, the same answer.
    let by_flops = json(&[
        "adapt",
        "--replay",
        &path,
        "--n",
        "params",
        "--flops",
        "flops",
        "--loss",
        "final_loss",
        "--bootstrap",
        "50",
        "--json",
        "--target",
        "loss:3e9,6e10",
        "--max-flops-fraction",
        "0.2",
        "--batch",
        "3",
        "--seed",
        "7",
    ]);
    assert_eq!(by_flops["full"]["points"], 36);
    assert!((by_flops["full"]["estimate"].as_f64().unwrap() / a["full"]["estimate"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    // A precision to stop at: the loop ends once the interval is that narrow.
    let stopped = replay(&path, &["--target", "allocation:1e22", "--relative-interval", "0.5", "--seed", "1"]);
    let last = stopped["rounds"].as_array().unwrap().last().unwrap().clone();
    assert!(last["stopped"].as_str().unwrap().contains("within ±50.0%"), "{last}");
}

/// Targets no row can speak for, and bad flags, are refused with what to do.
#[test]
fn unreachable_targets_and_bad_tables_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = table(dir.path(), 0.0);
    let base = ["adapt", "--replay", &path, "--n", "params", "--tokens", "tokens", "--loss", "final_loss"];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }
    let e = fails(&with(&base, &["--target", "allocation:1e3"]));
    assert!(e.contains("below the cheapest candidate run") && e.contains("add smaller models"), "{e}");
    let e = fails(&with(&base, &["--target", "loss:1e15,1e16"]));
    assert!(e.contains("add a size near"), "{e}");
    let e = fails(&with(&base, &["--target", "optimum"]));
    assert!(e.contains("allocation:C") && e.contains("loss:N,D"), "{e}");
    let e = fails(&with(&base, &["--target", "allocation:1e22", "--max-flops-fraction", "0"]));
    assert!(e.contains("--max-flops-fraction"), "{e}");
    let e = fails(&["adapt", "--replay", &path, "--n", "N", "--tokens", "tokens", "--loss", "final_loss", "--target", "allocation:1e22"]);
    assert!(e.contains("no column `N`") && e.contains("params"), "{e}");
    // Without --tokens, D is the table's `tokens` column (windtunnel's own tables have one); a
    // table without it needs --tokens or --flops.
    let question = ["--loss", "final_loss", "--bootstrap", "50", "--target", "allocation:1e22", "--max-flops-fraction", "0.3", "--json"];
    let default_tokens = json(&[&["adapt", "--replay", &path, "--n", "params"][..], &question].concat());
    let given = replay(&path, &["--target", "allocation:1e22", "--max-flops-fraction", "0.3"]);
    assert_eq!(default_tokens["final"], given["final"]);
    let no_tokens = dir.path().join("no-tokens.csv");
    std::fs::write(&no_tokens, std::fs::read_to_string(&path).unwrap().replace("model,params,tokens,", "model,params,d,")).unwrap();
    let e = fails(&["adapt", "--replay", no_tokens.to_str().unwrap(), "--n", "params", "--loss", "final_loss", "--target", "allocation:1e22"]);
    assert!(e.contains("--tokens COL, or --flops COL"), "{e}");
    std::fs::write(dir.path().join("bad.csv"), "params,tokens,final_loss\n1e6,1e8,3.0\n2e6,-5,2.9\n").unwrap();
    let bad = dir.path().join("bad.csv");
    let e = fails(&["adapt", "--replay", bad.to_str().unwrap(), "--n", "params", "--tokens", "tokens", "--loss", "final_loss", "--target", "allocation:1e16"]);
    assert!(e.contains("line 3") && e.contains("D = -5"), "{e}");
}

/// How the loop works is the same flags as an `[adaptive]` block's keys: the strategy, the law's
/// form and the interval's level reach the loop, and a bad value names its flag.
#[test]
fn the_loops_settings_are_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = table(dir.path(), 0.003);
    let question = ["--target", "allocation:1e22", "--max-flops-fraction", "0.3"];
    // The cheapest baseline's first round after the seed design: the cheapest rows left.
    let cheapest = replay(&path, &[&question[..], &["--strategy", "cheapest"]].concat());
    assert_eq!(cheapest["strategy"], "cheapest");
    let cost = |line: u64| {
        let (i, j) = ((line - 2) / 6, (line - 2) % 6);
        let n = 2e7 * 2.5f64.powi(i as i32);
        6.0 * n * n * 4.0 * 2.2f64.powi(j as i32)
    };
    let rows = |round: usize| -> Vec<u64> { cheapest["rounds"][round]["rows"].as_array().unwrap().iter().map(|r| r.as_u64().unwrap()).collect() };
    let (seed_design, first) = (rows(0), rows(1));
    assert!(!first.is_empty(), "{cheapest}");
    let left = (2..38).filter(|l| !seed_design.contains(l) && !first.contains(l));
    let dearest_chosen = first.iter().map(|&l| cost(l)).fold(0.0, f64::max);
    assert!(left.map(cost).all(|c| c >= dearest_chosen), "round 1 chose {first:?} after {seed_design:?}");
    // Kaplan's law is fitted where asked for.
    let kaplan = replay(&path, &[&question[..], &["--form", "kaplan"]].concat());
    assert!(kaplan["final"]["law"]["alpha_n"].is_number() && kaplan["final"]["law"]["e"].is_null(), "{}", kaplan["final"]["law"]);
    // A 90% interval sits inside the 95% one of the same bootstrap, and the text says which.
    let width = |report: &serde_json::Value| report["full"]["upper"].as_f64().unwrap() - report["full"]["lower"].as_f64().unwrap();
    let at_95 = replay(&path, &question);
    let at_90 = replay(&path, &[&question[..], &["--level", "0.9"]].concat());
    assert!(width(&at_90) < width(&at_95), "{} vs {}", width(&at_90), width(&at_95));
    let text = common::ok(
        &[
            &["adapt", "--replay", &path, "--n", "params", "--tokens", "tokens", "--loss", "final_loss", "--bootstrap", "50"][..],
            &question,
            &["--level", "0.9"],
        ]
        .concat(),
    );
    assert!(text.contains("estimate [90% interval]"), "{text}");
    let e = fails(&[&["adapt", "--replay", &path, "--n", "params", "--tokens", "tokens", "--loss", "final_loss"][..], &question, &["--delta", "0"]].concat());
    assert!(e.contains("--delta 0: Huber's δ must be positive"), "{e}");
    let e = fails(
        &[&["adapt", "--replay", &path, "--n", "params", "--tokens", "tokens", "--loss", "final_loss"][..], &question, &["--strategy", "greedy"]].concat(),
    );
    assert!(e.contains("adaptive") && e.contains("cheapest"), "{e}");
}
