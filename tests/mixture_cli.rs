//! Mixture grids end to end: a `placement = "decay"` sweep whose branches restore their trunk's
//! checkpoint and change only the data (#41's "must hold"), a `placement = "run"` sweep, and the
//! results table's `mixture` and `weight/<domain>` columns.

mod common;

use std::path::Path;

use common::{fails, ok};

/// Two synthetic domains over one vocabulary, evaluated each on its own; 128 tokens per step.
const BASE: &str = r#"seeds = [0]
[base]
mup = { base_width = 16 }
optimizer = { lr = 0.01 }
schedule = { kind = "constant", warmup_tokens = 256 }
training = { tokens = 2560, batch_size = 4, seq_len = 32, eval_interval_tokens = 1280, eval_tokens = 256, log_interval_steps = 1, evals = [
    { name = "a", data = { kind = "synthetic", vocab = 64, max_order = 1, order_weights = [0.2, 0.8], rules = 64, language_seed = 1 } },
    { name = "b", data = { kind = "synthetic", vocab = 64, max_order = 1, order_weights = [0.2, 0.8], rules = 64, language_seed = 2 } },
] }
data = { kind = "synthetic", vocab = 64 }

[[grid]]
name = "mix"
models = { widths = [16], depth = 1, head_dim = 16 }
mixtures.domains.a = { kind = "synthetic", vocab = 64, max_order = 1, order_weights = [0.2, 0.8], rules = 64, language_seed = 1 }
mixtures.domains.b = { kind = "synthetic", vocab = 64, max_order = 1, order_weights = [0.2, 0.8], rules = 64, language_seed = 2 }
"#;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The table's rows as maps from column to cell.
fn table(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines.map(|l| header.iter().cloned().zip(l.split(',').map(String::from)).collect()).collect()
}

/// The weights of a row sum to 1; a row without a mixture has none.
fn check_weights(rows: &[std::collections::BTreeMap<String, String>]) {
    for row in rows {
        let weights: Vec<&String> = ["weight/a", "weight/b"].iter().map(|c| &row[*c]).collect();
        if row["mixture"].is_empty() {
            assert!(weights.iter().all(|w| w.is_empty()), "{row:?}");
            continue;
        }
        let sum: f64 = weights.iter().map(|w| w.parse::<f64>().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-12, "{row:?} sums to {sum}");
    }
}

/// A config as JSON without what a branch may change (its length, schedule, checkpoints, branch).
fn shared_part(config: &serde_json::Value) -> serde_json::Value {
    let mut c = config.clone();
    for key in ["schedule", "branch"] {
        c.as_object_mut().unwrap().remove(key);
    }
    for key in ["tokens", "checkpoint_tokens"] {
        c["training"].as_object_mut().unwrap().remove(key);
    }
    c
}

#[test]
fn decay_branches_restore_the_trunk_and_change_only_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("mix.toml");
    let grid = "wsd = { branch_tokens = [1280, 2560], decay_fraction = 0.2 }\nmixtures.placement = \"decay\"\n\
                mixtures.weights = [{ a = 0.5, b = 0.5 }, { a = 1.0 }]\nmixtures.sample = { count = 1, seed = 3, natural = { a = 0.5, b = 0.5 } }\n";
    std::fs::write(&sweep, format!("name = \"mix\"\n{BASE}{grid}")).unwrap();
    let plan = ok(&["plan", s(&sweep)]);
    assert!(plan.contains("mixtures: grid `mix` trains 3 mixtures as decays off its trunks (placement = \"decay\")"), "{plan}");
    let dry = ok(&["run", s(&sweep), "--dry-run", "--out", s(&dir.path().join("results"))]);
    assert!(dry.contains("as whole runs (placement = \"run\") they would need"), "{dry}");
    ok(&["run", s(&sweep), "--out", s(&dir.path().join("results")), "--quiet"]);
    let root = dir.path().join("results/mix");
    let rows = table(&root.join("table.csv"));
    assert_eq!(rows.len(), 7, "one trunk and 3 mixtures × 2 branch points");
    check_weights(&rows);
    let trunk_row = rows.iter().find(|r| r["kind"] == "trunk").unwrap();
    assert_eq!(trunk_row["mixture"], "", "the trunk trains on the base data");
    let trunk_dir = root.join("runs").join(&trunk_row["run_id"]);
    let trunk_config = read_json(&trunk_dir.join("config.json"));
    let trunk_metrics = metrics(&trunk_dir);
    let mut first_losses = std::collections::BTreeMap::new();
    for row in rows.iter().filter(|r| r["kind"] == "branch") {
        let run = root.join("runs").join(&row["run_id"]);
        let config = read_json(&run.join("config.json"));
        let branch = &config["branch"];
        let from_tokens = branch["from_tokens"].as_u64().unwrap();
        // The trunk's checkpoint at the branch point, restored: the branch goes on from its step.
        let record = read_json(&run.join("run.json"));
        let checkpoint = Path::new(record["trunk_checkpoint"].as_str().unwrap());
        assert_eq!(checkpoint.canonicalize().unwrap(), trunk_dir.join(format!("checkpoints/tokens-{from_tokens:015}.ckpt")).canonicalize().unwrap());
        assert_eq!(metrics(&run)[0]["step"].as_u64().unwrap(), from_tokens / 128 + 1);
        // Only the decay's data changed: the mixture of the row's weights; everything else is the trunk's.
        assert_eq!(shared_part(&config), shared_part(&trunk_config));
        let components = branch["data"]["components"].as_array().unwrap();
        let weight = |domain: &str| row[&format!("weight/{domain}")].parse::<f64>().unwrap();
        let expected: Vec<f64> = ["a", "b"].iter().map(|d| weight(d)).filter(|w| *w > 0.0).collect();
        assert_eq!(components.iter().map(|c| c["weight"].as_f64().unwrap()).collect::<Vec<_>>(), expected);
        assert_eq!(read_json(&run.join("run.json"))["eval_sets"], read_json(&trunk_dir.join("run.json"))["eval_sets"], "evaluation stays the trunk's");
        first_losses.entry(from_tokens).or_insert_with(Vec::new).push(metrics(&run)[0]["train_loss"].to_string());
    }
    // From one checkpoint, different mixtures train on different tokens from the first step.
    for losses in first_losses.values() {
        let distinct: std::collections::BTreeSet<&String> = losses.iter().collect();
        assert_eq!(distinct.len(), 3, "{losses:?}");
    }
    // Same weights at the branch point: a zero-length decay of a branch's own config reproduces
    // the trunk's evaluation there, bit for bit, on the default set and on each named set.
    let row = rows.iter().find(|r| r["kind"] == "branch" && r["weight/a"] == "1").unwrap();
    let mut config = read_json(&root.join("runs").join(&row["run_id"]).join("config.json"));
    let from_tokens = config["branch"]["from_tokens"].as_u64().unwrap();
    config["training"]["tokens"] = serde_json::json!(from_tokens);
    let zero = root.join("runs/zero");
    std::fs::create_dir_all(&zero).unwrap();
    std::fs::write(zero.join("run.toml"), toml::to_string(&config).unwrap()).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&ok(&["train", "--quiet", s(&zero.join("run.toml")), "--out", s(&zero.join("out")), "--json"])).unwrap();
    let at_branch = trunk_metrics.iter().find(|m| m["step"].as_u64() == Some(from_tokens / 128) && !m["eval_loss"].is_null()).unwrap();
    assert_eq!(summary["final_eval_loss"], at_branch["eval_loss"]);
    assert_eq!(summary["final_evals"], at_branch["evals"]);
}

#[test]
fn a_run_placement_trains_each_mixture_whole_and_records_its_weights() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("runs.toml");
    let grid = "mixtures.placement = \"run\"\nmixtures.weights = [{ a = 0.5, b = 0.5 }, { b = 1.0 }]\n\
                mixtures.sample = { count = 2, seed = 0, min_weight = 0.1, natural = { a = 0.5, b = 0.5 } }\n\n\
                [[grid]]\nname = \"plain\"\nmodels = { widths = [16], depth = 1, head_dim = 16 }\n";
    std::fs::write(&sweep, format!("name = \"runs\"\n{BASE}{grid}")).unwrap();
    ok(&["run", s(&sweep), "--out", s(&dir.path().join("results")), "--quiet"]);
    let root = dir.path().join("results/runs");
    let rows = table(&root.join("table.csv"));
    assert_eq!(rows.len(), 5, "4 mixtures and a run of the other grid");
    check_weights(&rows);
    let mixed: Vec<_> = rows.iter().filter(|r| r["grid"] == "mix").collect();
    let ids: std::collections::BTreeSet<&String> = mixed.iter().map(|r| &r["mixture"]).collect();
    assert_eq!(ids.len(), 4);
    assert!(mixed.iter().all(|r| r["kind"] == "plain" && r["status"] == "done" && !r["eval/a"].is_empty()));
    assert_eq!(rows.iter().find(|r| r["grid"] == "plain").unwrap()["mixture"], "", "a run without a mixture has no weights");
    // The b-only mixture trains on b alone: its config's data is that one domain.
    let b_only = mixed.iter().find(|r| r["weight/b"] == "1").unwrap();
    let config = read_json(&root.join("runs").join(&b_only["run_id"]).join("config.json"));
    let components = config["data"]["components"].as_array().unwrap();
    assert_eq!((components.len(), components[0]["source"]["language_seed"].as_u64()), (1, Some(2)));
    // Sampled weights are 0 or at least the minimum.
    for row in &mixed {
        for c in ["weight/a", "weight/b"] {
            let w: f64 = row[c].parse().unwrap();
            assert!(w == 0.0 || w >= 0.1, "{row:?}");
        }
    }
}

#[test]
fn a_mixture_that_does_not_sum_to_one_is_refused_by_plan() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("bad.toml");
    std::fs::write(&sweep, format!("name = \"bad\"\n{BASE}mixtures.weights = [{{ a = 0.6, b = 0.6 }}]\n")).unwrap();
    let e = fails(&["plan", s(&sweep)]);
    assert_eq!(
        e.trim_end(),
        format!(
            "error: {} (line 18): grid `mix`: mixtures.weights[0] sums to 1.2 (a 0.6 + b 0.6); the weights of a mixture must sum to 1 (within 1e-6): scale them",
            sweep.display()
        )
    );
}

/// The hand-off of a mixture (#41, deliverable 4): `fit mixture` on a decay sweep, then `export`
/// of a law sweep with `--mixture-sweep` carries the chosen weights into recipe.json and writes
/// mixture.toml, a `decay_data` block that reads back as the chosen mixture; a sweep without a
/// mixture fit is named with the command that makes one.
#[test]
fn export_carries_the_chosen_mixture_as_a_decay_data_block() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("mix.toml");
    let grid = "wsd = { branch_tokens = [2560], decay_fraction = 0.2 }\nmixtures.placement = \"decay\"\n\
                mixtures.weights = [{ a = 0.5, b = 0.5 }, { a = 1.0 }, { b = 1.0 }]\n\
                mixtures.sample = { count = 9, seed = 3, natural = { a = 0.5, b = 0.5 } }\n";
    std::fs::write(&sweep, format!("name = \"mix\"\n{BASE}{grid}")).unwrap();
    let results = dir.path().join("results");
    ok(&["run", s(&sweep), "--out", s(&results), "--parallel", "2", "--quiet"]);
    let mix = results.join("mix");
    ok(&["fit", "mixture", "--input", s(&mix), "--form", "linear", "--bootstrap", "0"]);
    let fit = read_json(&mix.join("fits/mixture.json"));

    let law = common::trained_law_sweep(&dir.path().join("law"));
    let missing = fails(&["export", s(&law), "--target-params", "4.7e4", "--allow-implausible", "--mixture-sweep", s(&law)]);
    assert!(missing.contains(&format!("run `windtunnel fit mixture --input {}` first", law.display())), "{missing}");

    let out = dir.path().join("export");
    let printed = ok(&["export", s(&law), "--target-params", "4.7e4", "--allow-implausible", "--mixture-sweep", s(&mix), "--out", s(&out)]);
    assert!(printed.contains("measured on decay branches: the full run's decay (wsd.decay_data)"), "{printed}");
    let recipe = read_json(&out.join("recipe.json"));
    let chosen: Vec<(String, f64)> = serde_json::from_value(recipe["mixture"]["weights"].clone()).unwrap();
    let domains: Vec<String> = serde_json::from_value(fit["domains"].clone()).unwrap();
    let optimum: Vec<f64> = serde_json::from_value(fit["optimum"]["weights"].clone()).unwrap();
    assert_eq!(chosen, domains.into_iter().zip(optimum).collect::<Vec<_>>());
    assert_eq!(recipe["mixture"]["stage"], "decay");
    let block: toml::Table = toml::from_str(&std::fs::read_to_string(out.join("mixture.toml")).unwrap()).unwrap();
    let data = &block["decay_data"];
    assert_eq!(data["kind"].as_str(), Some("mixture"));
    let weights: Vec<f64> = data["components"].as_array().unwrap().iter().map(|c| c["weight"].as_float().unwrap()).collect();
    let expected: Vec<f64> = chosen.iter().map(|(_, w)| (w * 1e6).round() / 1e6).filter(|w| *w > 0.0).collect();
    assert_eq!(weights, expected);
    let seeds: Vec<i64> = data["components"].as_array().unwrap().iter().map(|c| c["source"]["language_seed"].as_integer().unwrap()).collect();
    let expected_seeds: Vec<i64> = chosen.iter().filter(|(_, w)| (w * 1e6).round() > 0.0).map(|(d, _)| if d == "a" { 1 } else { 2 }).collect();
    assert_eq!(seeds, expected_seeds, "each component is its domain's data");
}
