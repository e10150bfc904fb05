//! `windtunnel fit law` through the real binary, on the published Chinchilla data.

mod common;
use common::{fails, json, ok};
use windtunnel::fit::transfer::known_batch_curves;

#[test]
fn chinchilla_refit_reproduces_the_published_reanalysis() {
    let r = json(&["fit", "law", "--config", "analysis/chinchilla.toml", "--bootstrap", "200", "--json"]);
    assert_eq!(r["points"], 240);
    assert_eq!(r["dropped_highest"], 5);
    let law = &r["fit"]["law"];
    let get = |k: &str| law[k].as_f64().unwrap();
    // Besiroglu et al. 2024: E = 1.82, A = 482.01, B = 2085.43, α = 0.3478, β = 0.3658.
    assert!((get("e") - 1.82).abs() < 0.02, "E = {}", get("e"));
    assert!((get("alpha") - 0.3478).abs() < 0.01, "α = {}", get("alpha"));
    assert!((get("beta") - 0.3658).abs() < 0.01, "β = {}", get("beta"));
    assert!((get("a") / 482.01 - 1.0).abs() < 0.1, "A = {}", get("a"));
    assert!((get("b") / 2085.43 - 1.0).abs() < 0.15, "B = {}", get("b"));
    // About 20 tokens per parameter at Chinchilla's budget, with an interval around it.
    let chinchilla = &r["budgets"][0];
    let ratio = chinchilla["tokens_per_param"].as_f64().unwrap();
    assert!((15.0..25.0).contains(&ratio), "D/N = {ratio}");
    let i = &chinchilla["tokens_per_param_interval"];
    assert!(i["lower"].as_f64().unwrap() < ratio && ratio < i["upper"].as_f64().unwrap());
    assert!(r["bootstrap"]["alpha"]["std_error"].as_f64().unwrap() > 0.0);
    assert!(r["fit"]["starts"] == 4500 && r["fit"]["starts_in_best_basin"].as_u64().unwrap() > 10);
}

#[test]
fn holdout_and_prediction() {
    let r = json(&[
        "fit",
        "law",
        "--input",
        "analysis/data/chinchilla_svg_extracted_data.csv",
        "--n",
        "Model Size",
        "--flops",
        "Training FLOP",
        "--loss",
        "loss",
        "--drop-highest",
        "5",
        "--holdout",
        "largest",
        "--predict",
        "7e10:1.4e12",
        "--bootstrap",
        "200",
        "--json",
    ]);
    let h = &r["holdout"];
    assert!(!h["points"].as_array().unwrap().is_empty());
    assert!(h["mean_abs_relative_error"].as_f64().unwrap() < 0.05);
    let p = &r["predictions"][0];
    let loss = p["loss"].as_f64().unwrap();
    assert!((1.8..2.2).contains(&loss), "predicted Chinchilla loss {loss}");
    // A new run scatters about the law: its interval contains the law's and is wider.
    let (law, run) = (&p["interval"], &p["prediction_interval"]);
    assert!(run["lower"].as_f64() < law["lower"].as_f64() && run["upper"].as_f64() > law["upper"].as_f64(), "{p}");
    // The held-out model's loss lies inside the interval its own fit predicted for it.
    let held = &h["points"][0];
    assert!(
        held["interval"]["lower"].as_f64().unwrap() <= held["loss"].as_f64().unwrap() && held["loss"].as_f64() <= held["interval"]["upper"].as_f64(),
        "{held}"
    );
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let one = write("one.csv", "N,D,loss\n1e6,1e7,3.0\n");
    let e = fails(&["fit", "law", "--input", &one, "--n", "N", "--tokens", "D", "--loss", "loss"]);
    assert!(e.contains("1 usable points") && e.contains("at least 6"), "{e}");
    let e = fails(&["fit", "law", "--input", &one, "--n", "params", "--tokens", "D", "--loss", "loss"]);
    assert!(e.contains("no column `params`"), "{e}");
    let e = fails(&["fit", "law", "--input", &one, "--n", "N", "--tokens", "D", "--loss", "loss", "--grid", "data"]);
    assert!(e.contains("--grid data") && e.contains("no `grid` column"), "{e}");
    let e = fails(&["fit", "lr", &one]);
    assert!(e.contains(&format!("tip: a fit reads its table or sweep directory from --input: windtunnel fit lr --input {one}")), "{e}");
    let grids = write("grids.csv", "grid,N,D,loss\nlr-scan,1e6,1e7,3.0\ndata-model,1e6,2e7,2.9\nlr-scan,2e6,1e7,2.8\n");
    let e = fails(&["fit", "law", "--input", &grids, "--n", "N", "--tokens", "D", "--loss", "loss", "--grid", "data"]);
    assert!(e.ends_with(&format!("--grid data: {grids} has no row of grid `data`; its grids are lr-scan, data-model\n")), "{e}");
    let neg = write("neg.csv", "N,D,loss\n1e6,1e7,-3.0\n");
    let e = fails(&["fit", "law", "--input", &neg, "--n", "N", "--tokens", "D", "--loss", "loss"]);
    assert!(e.contains("loss = -3"), "{e}");
    let nan = write("nan.csv", "N,D,loss\n1e6,1e7,nan\n");
    let e = fails(&["fit", "law", "--input", &nan, "--n", "N", "--tokens", "D", "--loss", "loss"]);
    assert!(e.contains("NaN"), "{e}");
    let e = fails(&["fit", "law", "--input", &one, "--n", "N", "--loss", "loss"]);
    assert!(e.contains("no column `tokens`"), "{e}");
    let e = fails(&["fit", "law", "--input", dir.path().join("missing.csv").to_str().unwrap(), "--n", "N", "--tokens", "D", "--loss", "loss"]);
    assert!(e.contains("missing.csv") && e.contains("does not exist"), "{e}");
}

#[test]
fn lr_transfer_from_a_table_separates_mup_and_sp() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("parameterization,width,depth,lr,final_eval_loss,status\n");
    for (p, slope) in [("mup", 0.0), ("sp", -1.0)] {
        for width in [64.0f64, 128.0, 256.0, 512.0] {
            let lr_opt = 3e-3 * (width / 64.0).powf(slope);
            for k in 0..7 {
                let lr = 1e-4 * 3f64.powi(k);
                let loss = 3.0 + 0.2 * (lr / lr_opt).ln().powi(2);
                csv.push_str(&format!("{p},{width},4,{lr},{loss},done\n"));
            }
            csv.push_str(&format!("{p},{width},4,10.0,NaN,diverged\n"));
        }
    }
    let path = dir.path().join("scan.csv");
    std::fs::write(&path, csv).unwrap();
    let r = json(&["fit", "lr", "--input", path.to_str().unwrap(), "--json"]);
    assert_eq!(r["excluded_not_done"], 8);
    let groups = r["groups"].as_array().unwrap();
    let drift = |name: &str| groups.iter().find(|g| g[0] == name).unwrap()[1]["drift"]["slope"].as_f64().unwrap();
    assert!(drift("mup").abs() < 0.01, "µP drift {}", drift("mup"));
    assert!((drift("sp") + 1.0).abs() < 0.05, "SP drift {}", drift("sp"));
}

#[test]
fn an_lr_scan_at_two_batch_sizes_is_fitted_per_batch_size_not_pooled() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("parameterization,width,depth,lr,batch_size,final_eval_loss,status\n");
    // The optimum moves with the batch size: pooled, one parabola would land between them.
    for (batch, lr_opt) in [(8, 1e-3), (64, 8e-3)] {
        for width in [64.0f64, 128.0] {
            for k in 0..7 {
                let lr = 1e-4 * 3f64.powi(k);
                csv.push_str(&format!("mup,{width},4,{lr},{batch},{},done\n", 3.0 + 0.2 * (lr / lr_opt).ln().powi(2)));
            }
        }
    }
    let path = dir.path().join("scan.csv");
    std::fs::write(&path, csv).unwrap();
    let r = json(&["fit", "lr", "--input", path.to_str().unwrap(), "--json"]);
    assert_eq!(r["grouped_by"], serde_json::json!(["batch_size"]));
    let optimum = |key: &str| r["groups"].as_array().unwrap().iter().find(|g| g[0] == key).unwrap()[1]["optima"][0]["lr_opt"].as_f64().unwrap();
    assert!((optimum("mup, batch_size=8") / 1e-3 - 1.0).abs() < 0.05, "{}", optimum("mup, batch_size=8"));
    assert!((optimum("mup, batch_size=64") / 8e-3 - 1.0).abs() < 0.05, "{}", optimum("mup, batch_size=64"));
    let text = ok(&["fit", "lr", "--input", path.to_str().unwrap()]);
    assert!(text.contains("the scans also vary batch_size: each value is fitted on its own"), "{text}");
}

/// `fit::transfer::known_batch_curves` as a CSV with the given header.
fn batch_curves(header: &str, k: f64, gamma: f64, noise: f64) -> String {
    let rows: String = known_batch_curves(k, gamma, noise).iter().map(|p| format!("{},{},{}\n", p.batch_size, p.tokens, p.loss)).collect();
    format!("{header}\n{rows}")
}

#[test]
fn fit_batch_reads_named_columns_and_warns_when_gamma_is_unconstrained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.csv");
    std::fs::write(&path, batch_curves("bs_tokens,seen,val_loss", 1.3e7, 4.0, 0.0)).unwrap();
    let args = ["fit", "batch", "--input", path.to_str().unwrap(), "--batch-size", "bs_tokens", "--tokens", "seen", "--curve-loss", "val_loss"];
    let r = json(&[&args[..], &["--json"]].concat());
    assert!((r["minicpm"]["gamma"].as_f64().unwrap() - 4.0).abs() < 0.3, "{}", r["minicpm"]);
    assert!(!ok(&args).contains("warning"));
    let e = fails(&["fit", "batch", "--input", path.to_str().unwrap()]);
    assert!(e.contains("batch_size"), "the default column is named when missing: {e}");
    // A noisy optimum that does not move with the loss: γ ≈ 0 and its interval spans zero.
    std::fs::write(&path, batch_curves("batch_size,tokens,loss", 1.6e5, 0.0, 0.3)).unwrap();
    let text = ok(&["fit", "batch", "--input", path.to_str().unwrap()]);
    assert!(text.contains("warning: γ is not constrained"), "{text}");
}

#[test]
fn another_law_form_is_one_flag() {
    let r = json(&["fit", "law", "--config", "analysis/chinchilla.toml", "--form", "kaplan", "--bootstrap", "0", "--json"]);
    let law = &r["fit"]["law"];
    assert_eq!(law["form"], "kaplan");
    for key in ["n_c", "d_c", "alpha_n", "alpha_d"] {
        assert!(law[key].as_f64().unwrap() > 0.0, "{law}");
    }
    // Without an irreducible loss the form fits Chinchilla's data worse than E + A/N^α + B/D^β.
    let chinchilla = json(&["fit", "law", "--config", "analysis/chinchilla.toml", "--bootstrap", "0", "--json"]);
    assert!(r["residual_rms"].as_f64().unwrap() > 1.5 * chinchilla["residual_rms"].as_f64().unwrap());
    // Both at once: compared on the same points, the reported (first) form listed first.
    let both = json(&["fit", "law", "--config", "analysis/chinchilla.toml", "--form", "chinchilla,kaplan", "--bootstrap", "0", "--json"]);
    let forms: Vec<&str> = both["comparison"].as_array().unwrap().iter().map(|c| c["form"].as_str().unwrap()).collect();
    assert_eq!(forms, ["chinchilla", "kaplan"]);
    let aic = |i: usize| both["comparison"][i]["aic"].as_f64().unwrap();
    assert!(aic(0) + 10.0 < aic(1), "Chinchilla's form is decisively better on its own data: {} vs {}", aic(0), aic(1));
    assert_eq!(both["fit"]["law"]["form"], "chinchilla");
    let e = fails(&["fit", "law", "--config", "analysis/chinchilla.toml", "--form", "hoffmann"]);
    assert!(e.contains("unknown law form `hoffmann`") && e.contains("kaplan"), "{e}");
}

/// CSV rows `N,D,loss{suffix}` of the exact law E + 400/N^0.34 + 1500/D^0.3: five sizes, 3× apart,
/// each at four token counts.
fn exact_law_rows(e: f64, suffix: &str) -> String {
    let mut rows = String::new();
    for i in 0..5 {
        let n = 1e7 * 3f64.powi(i);
        for j in 0..4 {
            let d = n * 5.0 * 2.5f64.powi(j);
            rows.push_str(&format!("{n},{d},{}{suffix}\n", e + 400.0 / n.powf(0.34) + 1500.0 / d.powf(0.3)));
        }
    }
    rows
}

#[test]
fn rollout_fits_the_smallest_sizes_and_predicts_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let csv = format!("N,D,loss\n{}", exact_law_rows(1.8, ""));
    let path = dir.path().join("law.csv");
    std::fs::write(&path, csv).unwrap();
    let args = ["fit", "law", "--input", path.to_str().unwrap(), "--n", "N", "--tokens", "D", "--loss", "loss", "--rollout"];
    let r = json(&[&args[..], &["--json"]].concat());
    let steps = r["rollout"].as_array().unwrap();
    // k = 2 has 8 points for 5 parameters; k = 2, 3, 4 predict the 3rd, 4th and 5th sizes.
    assert_eq!(steps.iter().map(|s| s["fitted_sizes"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 3, 4]);
    for s in steps {
        assert_eq!(s["points"].as_array().unwrap().len(), 4);
        // Two sizes cannot separate E from A/N^α (a small error); from three on the law is exact.
        let limit = if s["fitted_sizes"] == 2 { 1e-2 } else { 1e-3 };
        assert!(s["mean_abs_relative_error"].as_f64().unwrap() < limit, "{s}");
    }
    assert!(ok(&args).contains("rollout: fit the smallest sizes, predict the next"));
    let two = "N,D,loss\n1e7,1e8,3\n1e7,2e8,2.9\n1e7,4e8,2.8\n2e7,1e8,2.9\n2e7,2e8,2.8\n2e7,4e8,2.7\n2e7,8e8,2.6\n";
    std::fs::write(&path, two).unwrap();
    let e = fails(&args);
    assert!(e.contains("--rollout needs at least 3 model sizes"), "{e}");
}

#[test]
fn where_and_predict_where_choose_the_fit_set_and_the_predicted_set() {
    let dir = tempfile::tempdir().unwrap();
    // Rows of another data mixture (a lower floor) the fit must not see.
    let csv = format!("N,D,loss,mixture\n{}{}", exact_law_rows(1.8, ",web"), exact_law_rows(1.2, ",code"));
    let path = dir.path().join("law.csv");
    std::fs::write(&path, csv).unwrap();
    let base = ["fit", "law", "--input", path.to_str().unwrap(), "--n", "N", "--tokens", "D", "--loss", "loss", "--bootstrap", "100"];
    let r = json(&[&base[..], &["--where", "mixture == web", "--predict-where", "N > 5e8 and mixture == web", "--json"]].concat());
    // The 4 smaller sizes × 4 token counts of `web` are fitted; the largest size's 4 are predicted.
    assert_eq!(r["points"], 16);
    let predicted = &r["predicted"];
    assert_eq!(predicted["expression"], "N > 5e8 and mixture == web");
    let points = predicted["points"].as_array().unwrap();
    assert_eq!(points.len(), 4);
    assert!(predicted["mean_abs_relative_error"].as_f64().unwrap() < 1e-3, "{predicted}");
    assert!(points.iter().all(|p| p["interval"]["lower"].as_f64().is_some()));
    let e = fails(&[&base[..], &["--where", "mixture ~ web"]].concat());
    assert!(e.contains("--where") && e.contains("COLUMN OP VALUE"), "{e}");
    let e = fails(&[&base[..], &["--predict-where", "N > 1e20"]].concat());
    assert!(e.contains("keeps no finished row"), "{e}");
}

#[test]
fn fix_holds_a_parameter_at_a_known_value() {
    let r = json(&["fit", "law", "--config", "analysis/chinchilla.toml", "--fix", "e=1.69", "--bootstrap", "20", "--json"]);
    assert_eq!(r["fit"]["law"]["e"], 1.69);
    assert_eq!(r["definition"]["fix"]["e"], 1.69);
    assert!(r["bootstrap"]["e"]["std_error"].as_f64().unwrap() < 1e-12, "a fixed parameter does not vary across the bootstrap");
    assert!(r["bootstrap"]["alpha"]["std_error"].as_f64().unwrap() > 0.0);
    let e = fails(&["fit", "law", "--config", "analysis/chinchilla.toml", "--fix", "E=1.69"]);
    assert!(e.contains("no parameter `E`"), "{e}");
    let e = fails(&["fit", "law", "--config", "analysis/chinchilla.toml", "--fix", "e"]);
    assert!(e.contains("KEY=VALUE"), "{e}");
}

/// `fit hparams` on a table made from known laws, lr* = 0.3·N^−0.25·D^0.1 and B* = 0.02·D^0.5:
/// the Step Law exponents come back, and `--json` names them plainly.
#[test]
fn fit_hparams_recovers_known_exponents_from_a_csv() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("N,D,lr,bsz,loss\n");
    for n in [1e6f64, 4e6, 16e6] {
        for d in [1e8f64, 4e8, 16e8] {
            let (lr_star, b_star) = (0.3 * n.powf(-0.25) * d.powf(0.1), 0.02 * d.powf(0.5));
            for i in -2..=2 {
                for j in -2..=2 {
                    let (lr, b) = (lr_star * 1.7f64.powi(i) * 1.1, b_star * 1.6f64.powi(j) * 0.9);
                    let loss = 2.0 + 40.0 / n.powf(0.3) + 0.05 * (lr / lr_star).ln().powi(2) + 0.03 * (b / b_star).ln().powi(2);
                    csv.push_str(&format!("{n},{d},{lr},{b},{loss}\n"));
                }
            }
        }
    }
    let path = dir.path().join("scan.csv");
    std::fs::write(&path, csv).unwrap();
    let args = ["fit", "hparams", "--input", path.to_str().unwrap(), "--n", "N", "--tokens", "D", "--batch", "bsz", "--loss", "loss"];
    let report = json(&[&args[..], &["--json"]].concat());
    let exp = |v: &serde_json::Value| v.as_f64().unwrap();
    assert!((exp(&report["lr"]["n_exponent"]) + 0.25).abs() < 0.01, "{}", report["lr"]);
    assert!((exp(&report["lr"]["d_exponent"]) - 0.1).abs() < 0.01, "{}", report["lr"]);
    assert!((exp(&report["batch"]["d_exponent"]) - 0.5).abs() < 0.01, "{}", report["batch"]);
    assert!(report["lr_compute"]["c_exponent"].as_f64().is_some() && report["batch_compute"]["c_exponent"].as_f64().is_some());
    let text = ok(&args);
    assert!(text.contains("Step Law:  lr_opt = ") && text.contains("DeepSeek:"), "{text}");
    let e = fails(&["fit", "hparams", "--input", path.to_str().unwrap(), "--n", "params"]);
    assert!(e.contains("params"), "{e}");
}

/// `fit law --group-e COLUMN`: two data mixtures with their own loss floors and shared exponents.
#[test]
fn fit_law_group_e_fits_one_floor_per_mixture() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("mix,N,D,loss\n");
    for (mix, e) in [("web", 1.8), ("code", 2.3)] {
        for i in 0..5 {
            for j in 0..4 {
                let n = 1e6 * 3f64.powi(i);
                let d = n * 4.0 * 3f64.powi(j);
                csv.push_str(&format!("{mix},{n},{d},{}\n", e + 400.0 / n.powf(0.34) + 900.0 / d.powf(0.30)));
            }
        }
    }
    let path = dir.path().join("mixtures.csv");
    std::fs::write(&path, csv).unwrap();
    let p = path.to_str().unwrap();
    let report = json(&["fit", "law", "--input", p, "--n", "N", "--tokens", "D", "--loss", "loss", "--group-e", "mix", "--bootstrap", "20", "--json"]);
    let e: Vec<f64> = report["law"]["e"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!((e[0] - 1.8).abs() < 1e-3 && (e[1] - 2.3).abs() < 1e-3, "{report}");
    assert!((report["law"]["alpha"].as_f64().unwrap() - 0.34).abs() < 1e-3, "{report}");
    let text = ok(&["fit", "law", "--input", p, "--n", "N", "--tokens", "D", "--loss", "loss", "--group-e", "mix", "--bootstrap", "20"]);
    assert!(text.contains("E[web] = 1.8000") && text.contains("E[code] = 2.3000"), "{text}");
    let e = fails(&["fit", "law", "--input", p, "--n", "N", "--tokens", "D", "--loss", "loss", "--group-e", "mixture"]);
    assert!(e.contains("mixture"), "{e}");
}

/// `fit allocation` on a long-format CSV of evaluation curves from an exact Chinchilla law
/// (eight sizes, each with decays at eight token counts): the IsoFLOP and fitted-law estimates of
/// a recover β/(α+β), and the chart is drawn where asked.
#[test]
fn fit_allocation_reads_a_table_of_curves() {
    let dir = tempfile::tempdir().unwrap();
    let (e, a, b, alpha, beta) = (1.7, 400.0, 410.0, 0.34, 0.28);
    let loss = |n: f64, d: f64| e + a / n.powf(alpha) + b / d.powf(beta);
    let mut csv = String::from("run,N,D,loss\n");
    for i in 0..8 {
        let n = 1e6 * 1.5f64.powi(i);
        for k in 0..8 {
            let end = n * 2.5 * 2f64.powi(k);
            for j in 1..=4 {
                let d = end * j as f64 / 4.0;
                csv.push_str(&format!("r{i}-{k},{n},{d},{}\n", loss(n, d) + if j < 4 { 0.05 } else { 0.0 }));
            }
        }
    }
    let path = dir.path().join("curves.csv");
    std::fs::write(&path, csv).unwrap();
    let chart = dir.path().join("approaches.svg");
    let args = ["fit", "allocation", "--input", path.to_str().unwrap(), "--run", "run", "--n", "N", "--tokens", "D", "--loss", "loss", "--bootstrap", "30"];
    let report = json(&[&args[..], &["--chart", chart.to_str().unwrap(), "--json"]].concat());
    let truth = beta / (alpha + beta);
    for k in ["approach_2", "approach_3"] {
        let got = report[k]["n_exponent"].as_f64().unwrap_or_else(|| panic!("{k}: {}", report[k]));
        assert!((got - truth).abs() < 0.03, "{k}: a = {got} vs {truth}");
    }
    assert!(report["approach_1"]["n_exponent"].as_f64().is_some(), "{}", report["approach_1"]);
    assert!(std::fs::read_to_string(&chart).unwrap().contains("<svg"));
    let e = fails(&[&args[..], &["--grid", "data"]].concat());
    assert!(e.contains("--grid selects runs of a sweep directory"), "{e}");
}

/// A data-model grid whose runs evaluate two named sets: the run's own language and another.
const NAMED_SETS_SWEEP: &str = r#"
name = "named-sets"
seeds = [0]

[base]
mup = { base_width = 16 }
optimizer = { lr = 0.01 }
schedule = { kind = "cosine", warmup_tokens = 256 }
training = { tokens = 2560, batch_size = 4, seq_len = 32, eval_interval_tokens = 1280, eval_tokens = 256, evals = [
  { name = "same", data = { kind = "synthetic", vocab = 64 } },
  { name = "other-lang", data = { kind = "synthetic", vocab = 64, language_seed = 7 } },
] }
data = { kind = "synthetic", vocab = 64 }

[[grid]]
name = "data"
models = { widths = [16, 32, 48], depth = 1, head_dim = 16 }
wsd = { branch_tokens = [1280, 2560], decay = "linear", decay_fraction = 0.2 }
"#;

#[test]
fn a_sweeps_named_eval_sets_are_table_columns_the_fits_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("named.toml");
    std::fs::write(&file, NAMED_SETS_SWEEP).unwrap();
    let out = dir.path().join("results");
    ok(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--parallel", "2", "--quiet"]);
    let sweep = out.join("named-sets");
    let table = std::fs::read_to_string(sweep.join("table.csv")).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    let (same, other, final_eval) = (at("eval/same"), at("eval/other-lang"), at("final_eval_loss"));
    assert_eq!((same, other), (at("tokens_per_s") + 1, at("tokens_per_s") + 2), "the sets' columns follow the fixed ones, in the run file's order");
    let rows: Vec<Vec<&str>> = table.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 9, "3 trunks and 6 branches");
    for row in &rows {
        let (s, o, e): (f64, f64, f64) = (row[same].parse().unwrap(), row[other].parse().unwrap(), row[final_eval].parse().unwrap());
        assert!(s.is_finite() && o.is_finite() && s != o && e.is_finite(), "{row:?}");
    }
    // The fits read a set's column like any other: its points and losses are that column's.
    let law = json(&["fit", "law", "--input", sweep.to_str().unwrap(), "--loss", "eval/other-lang", "--bootstrap", "0", "--json"]);
    assert_eq!(law["points"], 6, "{law}");
    let default = json(&["fit", "law", "--input", sweep.to_str().unwrap(), "--bootstrap", "0", "--json"]);
    assert_ne!(law["fit"]["law"], default["fit"]["law"], "another loss column, another law");
    let e = fails(&["fit", "law", "--input", sweep.to_str().unwrap(), "--loss", "eval/books"]);
    assert!(e.contains("no column `eval/books`") && e.contains("eval/other-lang"), "{e}");
    // The Parquet table has the same columns: the same law from it.
    let parquet = sweep.join("table.parquet");
    let from_parquet = json(&["fit", "law", "--input", parquet.to_str().unwrap(), "--loss", "eval/other-lang", "--bootstrap", "0", "--json"]);
    assert_eq!(from_parquet["fit"]["law"], law["fit"]["law"]);
    assert!(law["fit"]["law"]["e"].is_f64(), "{law}");
}
