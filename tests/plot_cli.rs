//! Charts, the HTML report and the export, through the real binary on a real (tiny) sweep, and on
//! the edge cases: one run, a diverged run, runs without evaluations, a run never started.

mod common;
use common::{fails, json, ok, windtunnel, TINY};

use std::path::{Path, PathBuf};

/// The common tiny sweep, evaluated more often, with a third width and branch point (enough points
/// for the law) and a batch-size grid.
fn plots_sweep() -> String {
    TINY.replace("name = \"tiny\"", "name = \"plots\"").replace("eval_interval_tokens = 1280", "eval_interval_tokens = 640").replace(
        "widths = [16, 32], depth = 1, head_dim = 16 }\nwsd = { branch_tokens = [1280, 2560]",
        "widths = [16, 32, 48], depth = 1, head_dim = 16 }\nwsd = { branch_tokens = [640, 1280, 2560]",
    ) + r#"
[[grid]]
name = "batch"
models = { widths = [16], depth = 1, head_dim = 16 }
parameters."training.batch_size" = { values = [1, 2, 4, 8, 16] }
parameters."training.tokens" = { value = 10240 }
parameters."training.eval_interval_tokens" = { value = 512 }
parameters."schedule" = { value = { kind = "constant", warmup_tokens = 256 } }
"#
}

/// One run: the tiny sweep's base and a single-width grid.
fn one_run() -> String {
    TINY[..TINY.find("[[grid]]").unwrap()].replace("name = \"tiny\"", "name = \"one\"")
        + "[[grid]]\nname = \"single\"\nmodels = { widths = [16], depth = 1, head_dim = 16 }\n"
}

fn run_sweep(root: &Path, name: &str, text: &str) -> PathBuf {
    let file = root.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    let out = root.join("results");
    let o = windtunnel(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--parallel", "2", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.join(name)
}

fn charts_in(dir: &Path, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("plots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(ext))
        .map(|n| n.trim_end_matches(ext).to_string())
        .collect();
    names.sort();
    names
}

fn assert_svg(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{} is not XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg", "{}", path.display());
    assert!(doc.descendants().filter(|n| n.has_tag_name("text")).count() > 5, "{} has no labels", path.display());
}

/// The y-axis tick values of a one-panel SVG chart (right-aligned numeric labels).
fn y_ticks(path: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("text") && n.attribute("text-anchor") == Some("end"))
        .filter_map(|n| n.text()?.trim().parse::<f64>().ok())
        .collect()
}

/// The law-compute chart's loss axis spans the measured losses, not the law at a handful of
/// tokens (it ran to ~70 nats); the allocation chart marks what lies past the sweep's compute.
fn assert_axes_fit_the_data(sweep: &Path, table: &str) {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "final_eval_loss").unwrap();
    let highest = lines.filter_map(|l| l.split(',').nth(column)?.parse::<f64>().ok()).fold(0.0, f64::max);
    let ticks = y_ticks(&sweep.join("plots/law-compute.svg"));
    let top = ticks.iter().cloned().fold(0.0, f64::max);
    assert!(!ticks.is_empty() && top < 2.0 * highest, "law-compute's loss axis runs to {top}, the highest loss is {highest}: {ticks:?}");
    let allocation = std::fs::read_to_string(sweep.join("plots/allocation.svg")).unwrap();
    assert!(allocation.contains("measured up to C = ") && allocation.contains("extrapolated past the sweep"), "the extrapolation is not marked");
}

fn assert_png(path: &Path) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert!(info.width >= 600 && info.height >= 400, "{}: {}x{}", path.display(), info.width, info.height);
    // Not a blank canvas: some pixels are neither white nor one flat colour.
    assert!(pixels.chunks(3).filter(|p| p != &[255, 255, 255]).count() > 5000, "{} is blank", path.display());
}

#[test]
fn a_sweep_plots_reports_and_exports() {
    let root = tempfile::tempdir().unwrap();
    let sweep = run_sweep(root.path(), "plots", &plots_sweep());
    let s = sweep.to_str().unwrap();
    // Reading writes nothing: plot, report and export build the results table in memory.
    let table = std::fs::read(sweep.join("table.csv")).unwrap();
    std::fs::remove_file(sweep.join("table.csv")).unwrap();
    std::fs::remove_file(sweep.join("table.parquet")).unwrap();
    // Without a held-out fit there is no holdout chart, and the summary says how to get one.
    let summary = json(&["plot", s, "--json"]);
    let skipped: Vec<&serde_json::Value> = summary["charts"].as_array().unwrap().iter().filter(|c| c["path"].is_null()).collect();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["chart"], "holdout");
    assert!(skipped[0]["skipped"].as_str().unwrap().contains("--holdout"), "{skipped:?}");
    // A fit with a held-out check, whose definition the plots reuse.
    ok(&["fit", "law", "--input", s, "--holdout", "largest", "--bootstrap", "50"]);

    let summary = json(&["plot", s, "--json"]);
    let expected =
        ["allocation", "allocation-approaches", "batch-size", "curve-law", "holdout", "law-compute", "law-tokens", "loss-curves", "lr-transfer", "residuals"];
    assert_eq!(charts_in(&sweep, ".svg"), expected);
    for name in expected {
        assert_svg(&sweep.join("plots").join(format!("{name}.svg")));
    }
    assert!(summary["charts"].as_array().unwrap().iter().all(|c| c["skipped"].is_null()), "{summary}");
    assert_axes_fit_the_data(&sweep, &String::from_utf8_lossy(&table));

    ok(&["plot", s, "--format", "png"]);
    assert_eq!(charts_in(&sweep, ".png"), expected);
    for name in expected {
        assert_png(&sweep.join("plots").join(format!("{name}.png")));
    }

    // The report: one self-contained page holding every chart.
    let printed = ok(&["report", s]);
    assert!(printed.contains("10 charts"), "{printed}");
    assert!(std::fs::read_to_string(sweep.join("report.html")).unwrap().contains("<h3>Curve law</h3>"));
    let html = std::fs::read_to_string(sweep.join("report.html")).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "the report references the network");
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("<img"), "the report loads something");
    assert_eq!(html.matches("<svg").count(), expected.len());
    for name in expected {
        assert!(html.contains(&format!("<figure id=\"{name}\">")), "{name} missing from the report");
    }
    assert!(html.contains("diverged") && html.contains("WSD saving") && html.contains("Data-model law"));

    // Chinchilla's three approaches, kept apart in the JSON, with their chart.
    let allocation = json(&["fit", "allocation", "--input", s, "--budgets", "1e12", "--bootstrap", "50", "--json"]);
    for k in ["approach_1", "approach_2", "approach_3"] {
        let a = &allocation[k];
        assert!(a["n_exponent"].as_f64().is_some() || a["unavailable"].as_str().is_some(), "{k}: {a}");
    }
    let three = &allocation["approach_3"];
    assert!((three["n_exponent"].as_f64().unwrap() + three["d_exponent"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{three}");
    assert_eq!(three["budgets"][0]["flops"].as_f64(), Some(1e12));
    assert_svg(Path::new(allocation["chart"].as_str().unwrap()));
    // The results table is not a table of curves: the missing column is named.
    let results_table = root.path().join("results-table.csv");
    std::fs::write(&results_table, &table).unwrap();
    let e = fails(&["fit", "allocation", "--input", results_table.to_str().unwrap()]);
    assert!(e.contains("eval_loss"), "{e}");
    // Its data-model runs do not scan the learning rate: a cell of one rate is named; its lr grid
    // scans two (N, D) cells: too few for hyperparameter laws, and it says so.
    let e = fails(&["fit", "hparams", "--input", s]);
    assert!(e.contains("1 learning rate(s) at its best batch size") && e.contains("--where"), "{e}");
    let e = fails(&["fit", "hparams", "--input", s, "--where", "grid == lr"]);
    assert!(e.contains("2 (N, D) cell(s); the laws need 3 or more"), "{e}");
    let e = fails(&["fit", "hparams", "--input", s, "--where", "grid ==="]);
    assert!(e.contains("--where"), "{e}");

    // The export: the printed N is the model's own count of the exported shape, and the learning
    // rates follow µP for the target width.
    let out = root.path().join("export");
    let recipe = json(&["export", s, "--budget-flops", "1e13", "--out", out.to_str().unwrap(), "--json"]);
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "minicpm");
    assert_eq!(config["architectures"][0], "MiniCPMForCausalLM");
    let arg = |k: &str| config[k].to_string();
    let model = json(&[
        "model",
        "--width",
        &arg("hidden_size"),
        "--depth",
        &arg("num_hidden_layers"),
        "--heads",
        &arg("num_attention_heads"),
        "--kv-heads",
        &arg("num_key_value_heads"),
        "--ffn-width",
        &arg("intermediate_size"),
        "--vocab",
        &arg("vocab_size"),
        "--json",
    ]);
    assert_eq!(model["non_embedding_params"], recipe["non_embedding_params"]);
    assert_eq!(config["vocab_size"], 64, "the sweep's vocabulary by default");
    assert_eq!(config["hidden_size"].as_u64().unwrap() % 64, 0);
    assert_eq!(config["hidden_size"].as_u64().unwrap() / config["num_attention_heads"].as_u64().unwrap(), 64);
    assert_eq!(config["dim_model_base"], 16);
    let width = config["hidden_size"].as_f64().unwrap();
    let lr = &recipe["learning_rates"];
    let base = lr["base"].as_f64().unwrap();
    assert!((lr["hidden_matrices"].as_f64().unwrap() - base * 16.0 / width).abs() < 1e-12 * base);
    assert_eq!(lr["embedding"].as_f64().unwrap(), base);
    assert!(lr["source"].as_str().unwrap().contains("learning-rate optimum"), "{lr}");
    // The batch size comes from the sweep's batch-size law at the predicted loss.
    assert!(recipe["batch"]["source"].as_str().unwrap().contains("batch-size law"), "{}", recipe["batch"]);
    assert!(recipe["batch"]["law_tokens"].as_f64().unwrap() > 0.0);
    let steps = recipe["schedule"]["total_steps"].as_u64().unwrap();
    assert_eq!(recipe["tokens"].as_u64().unwrap(), steps * recipe["batch"]["tokens"].as_u64().unwrap());
    // Every output reads one results layer: the export's law is the fit `fit law` kept, its
    // batch law the one `fit batch` reports, and its predicted loss that law's, to the bit.
    let kept: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sweep.join("fits/law.json")).unwrap()).unwrap();
    assert_eq!(recipe["law"], kept["fit"]["law"], "export and fit law disagree");
    let batch = json(&["fit", "batch", "--input", s, "--json"]);
    let (k, gamma) = (batch["minicpm"]["k"].as_f64().unwrap(), batch["minicpm"]["gamma"].as_f64().unwrap());
    assert!(recipe["batch"]["source"].as_str().unwrap().contains(&format!("bs = {k:.3e} / L^{gamma:.3}")), "{} vs k {k} γ {gamma}", recipe["batch"]);
    let predicted = recipe["predicted_loss"].as_f64().unwrap();
    let law = &kept["fit"]["law"];
    let [e, a, b, alpha, beta] = ["e", "a", "b", "alpha", "beta"].map(|p| law[p].as_f64().unwrap());
    let (n, d) = (recipe["non_embedding_params"].as_f64().unwrap(), recipe["tokens"].as_f64().unwrap());
    assert_eq!(predicted, e + a / n.powf(alpha) + b / d.powf(beta));
    // A given N takes its D from the law.
    let by_n = json(&["export", s, "--target-params", "2e5", "--out", out.to_str().unwrap(), "--json"]);
    assert!(by_n["tokens"].as_u64().unwrap() > 0);
    let e = fails(&["export", s, "--budget-flops=-1"]);
    assert!(e.contains("budget"), "{e}");
    // Requests beyond what the law or the shape rules can serve are refused, never written.
    let absurd = root.path().join("absurd");
    for args in [["--budget-flops", "1e40"], ["--budget-flops", "1e300"], ["--target-params", "1e30"]] {
        let e = fails(&["export", s, args[0], args[1], "--out", absurd.to_str().unwrap()]);
        assert!(e.contains("beyond") || e.contains("outside what a run can count"), "{args:?}: {e}");
    }
    // Flags it cannot honour are refused too (they used to export a 38.9B model for a 401.6K
    // target, a recipe train refuses, or be silently ignored).
    for (flag, value, want) in [
        ("--gqa-group", "1000", "comes within 50% of N"),
        ("--seq-len", "1", "--seq-len 1"),
        ("--vocab", "1", "--vocab 1"),
        ("--aspect-ratio", "1e9", "between 1 and 10000"),
        ("--aspect-ratio", "1e-9", "between 1 and 10000"),
    ] {
        let e = fails(&["export", s, "--budget-flops", "1e13", flag, value, "--out", absurd.to_str().unwrap()]);
        assert!(e.contains(want), "{flag} {value}: {e}");
    }
    assert!(!absurd.exists(), "a refused export writes nothing");
    // `run --out OUT` writes OUT/<name>: fits given OUT take its one sweep.
    let parent = sweep.parent().unwrap().to_str().unwrap();
    let from_parent = ok(&["fit", "lr", "--input", parent]);
    assert!(from_parent.contains(s), "{from_parent}");
    assert!(!sweep.join("table.csv").exists() && !sweep.join("table.parquet").exists(), "plot, report, fit and export wrote the results table");
    ok(&["collect", s]);
    assert_eq!(std::fs::read(sweep.join("table.csv")).unwrap(), table, "collect writes the table the runs give");

    // Runs never started still plot.
    let plan = json(&["plan", root.path().join("plots.toml").to_str().unwrap(), "--json"]);
    let runs = plan["runs"].as_array().unwrap();
    let branch = runs.iter().find(|r| r["kind"] == "branch").unwrap()["id"].as_str().unwrap().to_string();
    let plain = runs.iter().find(|r| r["kind"] == "plain").unwrap()["id"].as_str().unwrap().to_string();
    let metrics = sweep.join("runs").join(&branch).join("metrics.jsonl");
    let without_evals: String = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("eval_loss");
            v.to_string() + "\n"
        })
        .collect();
    std::fs::write(&metrics, without_evals).unwrap();
    // A finished run whose log lost its final evaluation is named, with the repair.
    let e = fails(&["plot", s]);
    assert!(e.contains(&branch) && e.contains("has no eval_loss") && e.contains("Delete"), "{e}");
    std::fs::remove_dir_all(sweep.join("runs").join(&branch)).unwrap();
    std::fs::remove_dir_all(sweep.join("runs").join(&plain)).unwrap();
    ok(&["plot", s]);
    assert_svg(&sweep.join("plots").join("loss-curves.svg"));
}

#[test]
fn one_run_plots_what_it_can_and_export_names_the_missing_fit() {
    let root = tempfile::tempdir().unwrap();
    let sweep = run_sweep(root.path(), "one", &one_run());
    let s = sweep.to_str().unwrap();
    let printed = ok(&["plot", s]);
    assert_eq!(charts_in(&sweep, ".svg"), ["loss-curves"]);
    assert_svg(&sweep.join("plots").join("loss-curves.svg"));
    assert!(printed.contains("no law-tokens, law-compute") && printed.contains("at least 6"), "{printed}");
    ok(&["report", s]);
    let html = std::fs::read_to_string(sweep.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 1);
    let e = fails(&["export", s, "--budget-flops", "1e15"]);
    assert!(e.contains("data-model law") && e.contains("minicpm-data-model.toml"), "{e}");
    // A sweep without a batch-size grid: the export says which sweep would give the law.
    let quick = run_sweep(
        root.path(),
        "plots",
        plots_sweep()
            .replace("[[grid]]\nname = \"batch\"", "[[grid]]\nname = \"lr2\"")
            .replace("parameters.\"training.batch_size\" = { values = [1, 2, 4, 8, 16] }", "parameters.\"optimizer.lr\" = { values = [0.003, 0.01, 0.03] }")
            .as_str(),
    );
    let recipe = json(&["export", quick.to_str().unwrap(), "--budget-flops", "1e13", "--json"]);
    assert!(recipe["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("minicpm-batch-size.toml")), "{}", recipe["warnings"]);
    // No learning-rate optimum (the lr sweep has no µP scan): refused, unless asked for anyway.
    let e = fails(&["export", quick.to_str().unwrap(), "--budget-flops", "1e13", "--lr-sweep", s]);
    assert!(e.contains("no learning-rate optimum") && e.contains("--allow-implausible"), "{e}");
    let recipe = json(&["export", quick.to_str().unwrap(), "--budget-flops", "1e13", "--lr-sweep", s, "--allow-implausible", "--json"]);
    assert!(recipe["learning_rates"]["source"].as_str().unwrap().contains("base learning rate"), "{}", recipe["learning_rates"]);
    assert!(recipe["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("no learning-rate optimum")));
}

#[test]
fn coordinate_checks_and_bad_inputs() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("coord.json");
    std::fs::write(&file, ok(&["coord-check", "--widths", "32,64", "--steps", "1", "--seq-len", "16", "--batch-size", "2", "--json"])).unwrap();
    let printed = ok(&["plot", "--coord-check", file.to_str().unwrap()]);
    assert!(printed.contains("coord.svg"), "{printed}");
    assert_svg(&root.path().join("coord.svg"));
    let png = root.path().join("c.png");
    ok(&["plot", "--coord-check", file.to_str().unwrap(), "--format", "png", "--out", png.to_str().unwrap()]);
    assert_png(&png);

    let e = fails(&["plot", root.path().join("nowhere").to_str().unwrap()]);
    assert!(e.contains("not a sweep directory") && e.contains("windtunnel run"), "{e}");
    std::fs::write(root.path().join("bad.json"), "{}").unwrap();
    let e = fails(&["plot", "--coord-check", root.path().join("bad.json").to_str().unwrap()]);
    assert!(e.contains("bad.json") && e.contains("coord-check --json"), "{e}");
}
