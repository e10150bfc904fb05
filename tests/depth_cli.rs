//! Transfer across depth: the depth rules through the real binary — the coordinate check in depth
//! (flat under CompleteP, growing without a depth rule), the sweep that shows learning-rate
//! transfer across depth, and the rule's settings refused when incomplete.

mod common;
use common::{fails, json, ok};

/// The slope against log depth of one summary after the last step.
fn depth_slope(rule: &str, summary: &str) -> f64 {
    let r = json(&[
        "coord-check",
        "--widths",
        "64",
        "--depths",
        "2,4,8,16",
        "--steps",
        "3",
        "--depth-rule",
        rule,
        "--head-dim",
        "16",
        "--vocab",
        "128",
        "--seq-len",
        "32",
        "--json",
    ]);
    r["depth_slopes"].as_array().unwrap().iter().find(|s| s["step"] == 3 && s["layer"] == summary).unwrap()["slope"].as_f64().unwrap()
}

#[test]
fn the_coordinate_check_in_depth_is_flat_under_completep_and_grows_without_a_rule() {
    // Measured: CompleteP −0.12 (residual update) and −0.00 (logits update); MiniCPM's 1/√L
    // +0.08 and +0.06; no rule +0.51 and +0.11 (depths 2 to 16, width 64, 3 steps).
    let completep = depth_slope("completep", "Δresidual");
    let none = depth_slope("none", "Δresidual");
    assert!(completep.abs() < 0.2, "CompleteP: the residual stream's update should not grow with depth (slope {completep:+.3})");
    assert!(none > 0.35, "without a depth rule the update grows with depth (slope {none:+.3})");
    assert!(depth_slope("completep", "Δlogits").abs() < 0.05);
    assert!(depth_slope("none", "Δlogits") > 0.08);
}

#[test]
fn the_depth_transfer_sweep_plans_each_rule_at_each_depth() {
    let sweep = concat!(env!("CARGO_MANIFEST_DIR"), "/sweeps/depth-transfer.toml");
    let plan = json(&["plan", sweep, "--json"]);
    let runs = plan["runs"].as_array().unwrap();
    // 5 depths × 6 learning rates × 3 rules × 3 seeds.
    assert_eq!(runs.len(), 5 * 6 * 3 * 3);
    let mut ids: Vec<&str> = runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), runs.len(), "every rule is its own run");
    for rule in ["minicpm", "completep", "none"] {
        assert_eq!(runs.iter().filter(|r| r["config"]["mup"]["depth_rule"].as_str().unwrap_or("minicpm") == rule).count(), 90, "{rule}");
    }
}

#[test]
fn a_depth_rule_without_its_base_depth_is_refused() {
    let e = fails(&["model", "--preset", "9m", "--depth-rule", "completep"]);
    assert!(e.contains("needs `base_depth`"), "{e}");
    let text = ok(&["model", "--preset", "9m", "--depth-rule", "completep", "--base-depth", "4"]);
    assert!(text.contains("residual"), "{text}");
}

/// The results table names each run's depth rule in a column of its own, whether the sweep sets
/// the rule in its base or sweeps it.
#[test]
fn the_results_table_has_a_depth_rule_column() {
    let dir = tempfile::tempdir().unwrap();
    let lr_grid = common::TINY.split("[[grid]]\nname = \"data\"").next().unwrap().replace(", 1000.0]", "]");
    let text = lr_grid.replace("mup = { base_width = 16 }", "mup = { base_width = 16, depth_rule = \"completep\", base_depth = 1 }")
        + "\n[[grid]]\nname = \"default-rule\"\nmodels = { widths = [16], depth = 1, head_dim = 16 }\nparameters.\"mup.depth_rule\" = { value = \"minicpm\" }\n";
    let file = dir.path().join("rules.toml");
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("out");
    let run = common::windtunnel(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let table = std::fs::read_to_string(out.join("tiny/table.csv")).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "depth_rule").expect("a depth_rule column");
    assert_eq!(header[column - 1], "parameterization", "{header:?}");
    let rules: Vec<(&str, &str)> = table
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            (cells[3], cells[column])
        })
        .collect();
    assert!(rules.iter().filter(|(grid, _)| *grid == "lr").all(|(_, rule)| *rule == "completep"), "{rules:?}");
    assert!(rules.iter().any(|(grid, rule)| *grid == "default-rule" && *rule == "minicpm"), "{rules:?}");
}

/// A learning-rate scan across depth at one width reaches both `fit hparams` and `export`: the
/// Step Law gains a depth factor equal to `fit lr`'s drift, and the exported learning rate at
/// the exported depth applies that drift and says so.
#[test]
fn a_depth_scan_moves_fit_hparams_and_the_exported_learning_rate() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::TINY
        .split("[[grid]]")
        .next()
        .unwrap()
        .replace("mup = { base_width = 16 }", "mup = { base_width = 16, depth_rule = \"completep\", base_depth = 1 }");
    let grids: String = [1, 2, 4]
        .map(|depth| {
            format!(
                "[[grid]]\nname = \"depth-{depth}\"\nmodels = {{ widths = [16], depth = {depth}, head_dim = 16 }}\nparameters.\"optimizer.lr\" = {{ values = [0.003, 0.01, 0.03, 0.1] }}\n\n"
            )
        })
        .concat();
    let file = dir.path().join("depth.toml");
    std::fs::write(&file, base.replace("name = \"tiny\"", "name = \"depth\"") + &grids).unwrap();
    let scan = dir.path().join("scan");
    ok(&["run", file.to_str().unwrap(), "--out", scan.to_str().unwrap(), "--quiet"]);
    let scan = scan.join("depth");
    let s = scan.to_str().unwrap();

    let lr = json(&["fit", "lr", "--input", s, "--json"]);
    let drift = &lr["groups"][0][1]["depth_drift"];
    let (slope, intercept) = (drift["slope"].as_f64().unwrap(), drift["intercept"].as_f64().unwrap());
    let hparams = json(&["fit", "hparams", "--input", s, "--json"]);
    let law = &hparams["lr"];
    assert!(law.get("n_exponent").is_none(), "one width: the law is in depth, not N: {law}");
    assert!((law["depth_exponent"].as_f64().unwrap() - slope).abs() < 1e-9, "fit hparams {law} vs fit lr's drift {slope}");
    assert!(hparams["notes"][0].as_str().unwrap().contains("in L, not N"), "{hparams}");
    assert!(ok(&["fit", "hparams", "--input", s]).contains(&format!(" · L^{slope:.3}")));

    // The data-model sweep to export from, with its learning rate taken from the depth scan.
    let tiny = dir.path().join("tiny.toml");
    let data_model = common::TINY.replace("eval_interval_tokens = 1280", "eval_interval_tokens = 640").replace(
        "widths = [16, 32], depth = 1, head_dim = 16 }\nwsd = { branch_tokens = [1280, 2560]",
        "widths = [16, 32, 48], depth = 1, head_dim = 16 }\nwsd = { branch_tokens = [640, 1280, 2560]",
    );
    std::fs::write(&tiny, data_model).unwrap();
    let sweep = dir.path().join("sweep");
    ok(&["run", tiny.to_str().unwrap(), "--out", sweep.to_str().unwrap(), "--quiet"]);
    let out = dir.path().join("export");
    let sweep = sweep.join("tiny");
    let recipe = json(&["export", sweep.to_str().unwrap(), "--budget-flops", "1e13", "--lr-sweep", s, "--out", out.to_str().unwrap(), "--json"]);
    let depth = recipe["learning_rates"]["depth"]["depth"].as_f64().unwrap();
    let source = recipe["learning_rates"]["source"].as_str().unwrap();
    assert!(source.contains("drift in depth") && source.contains(&format!("applied at depth {depth}")), "{source}");
    let base = recipe["learning_rates"]["base"].as_f64().unwrap();
    assert!((base / (intercept + slope * depth.ln()).exp() - 1.0).abs() < 1e-12, "{base} at depth {depth}");
    assert!(recipe["warnings"].to_string().contains("extrapolated in depth"), "scans to depth 4, export at {depth}: {}", recipe["warnings"]);
}
