//! `windtunnel fit mixture` through the real binary: on a CSV written from a known mixing law, on
//! the same runs as two tables joined on a key, with `--predict`, and its refusals.

mod common;
use std::path::{Path, PathBuf};

use common::{fails, json, ok};

/// Two evaluation sets, each helped most by its own domain (t centred: mean 0).
fn law(set: usize, r: &[f64]) -> f64 {
    let (c, k, t) = if set == 0 { (2.0, 1.0, [-1.5, 0.2, -0.3]) } else { (1.5, 1.2, [0.3, -2.0, 0.1]) };
    c + k * t.iter().zip(r).map(|(t, x)| t * x).sum::<f64>().exp()
}

/// The mixtures of a grid on the simplex (steps of 1/7), with a small deterministic scatter.
fn mixtures() -> Vec<[f64; 3]> {
    let n = 7;
    (0..=n).flat_map(|a| (0..=n - a).map(move |b| [a as f64 / n as f64, b as f64 / n as f64, (n - a - b) as f64 / n as f64])).collect()
}

fn scatter(i: usize) -> f64 {
    1.0 + 0.002 * (i as f64 * 1.7).sin()
}

/// One table as a sweep writes it: `mixture`, `status`, `weight/<domain>`, `eval/<set>`; a
/// diverged run at the end.
fn sweep_table(dir: &Path) -> PathBuf {
    let mut text = String::from("mixture,status,weight/web,weight/code,weight/books,eval/web,eval/code\n");
    for (i, r) in mixtures().iter().enumerate() {
        text += &format!("m{i},done,{},{},{},{},{}\n", r[0], r[1], r[2], law(0, r) * scatter(i), law(1, r) * scatter(i + 100));
    }
    text += "m99,diverged,0.2,0.3,0.5,,\n";
    let p = dir.join("runs.csv");
    std::fs::write(&p, text).unwrap();
    p
}

/// The same runs as RegMix publishes them: weights and losses in two files, joined on `index`.
fn two_tables(dir: &Path) -> (PathBuf, PathBuf) {
    let (mut w, mut l) = (String::from("index,w_web,w_code,w_books\n"), String::from("index,loss_web,loss_code\n"));
    for (i, r) in mixtures().iter().enumerate().rev() {
        w += &format!("{i},{},{},{}\n", r[0], r[1], r[2]);
    }
    for (i, r) in mixtures().iter().enumerate() {
        l += &format!("{i},{},{}\n", law(0, r) * scatter(i), law(1, r) * scatter(i + 100));
    }
    let (pw, pl) = (dir.join("weights.csv"), dir.join("losses.csv"));
    std::fs::write(&pw, w).unwrap();
    std::fs::write(&pl, l).unwrap();
    (pw, pl)
}

fn numbers(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// The true optimum of the even objective (a grid search of the law above in steps of 0.001):
/// web 0.429, code 0.571, books 0, where the objective is 2.2623.
const OPTIMUM: [f64; 3] = [0.429, 0.571, 0.0];

#[test]
fn a_sweep_table_gives_the_known_optimum_and_the_form_cross_validation_prefers() {
    let dir = tempfile::tempdir().unwrap();
    let table = sweep_table(dir.path());
    let out = dir.path().join("mixture.json");
    let input = table.to_str().unwrap();
    let r = json(&["fit", "mixture", "--input", input, "--bootstrap", "40", "--out", out.to_str().unwrap(), "--json"]);
    assert_eq!(r["runs"], 36);
    assert_eq!(r["left_out"], 1);
    assert_eq!(r["domains"], serde_json::json!(["web", "code", "books"]));
    assert_eq!(r["sets"], serde_json::json!(["web", "code"]));
    assert_eq!(r["chosen_by"], "cross-validation");
    let best = r["forms"].as_array().unwrap().iter().max_by(|a, b| a["spearman"].as_f64().unwrap().total_cmp(&b["spearman"].as_f64().unwrap())).unwrap();
    assert_eq!(r["form"], best["form"]);
    assert_eq!(r["form"], "mixing-law", "the law the runs were drawn from predicts them best: {}", r["forms"]);
    for (got, want) in numbers(&r["optimum"]["weights"]).iter().zip(OPTIMUM) {
        assert!((got - want).abs() < 0.02, "optimum {} vs {OPTIMUM:?}", r["optimum"]["weights"]);
    }
    let (lower, upper) = (r["interval"]["lower"].as_f64().unwrap(), r["interval"]["upper"].as_f64().unwrap());
    let predicted = r["optimum"]["predicted"].as_f64().unwrap();
    assert!(lower <= predicted && predicted <= upper, "{predicted} outside {lower} – {upper}");
    assert!(lower <= 2.2623 && 2.2623 <= upper, "the true optimum's objective outside {lower} – {upper}");
    // The best tried is the grid point nearest the optimum, (3/7, 4/7, 0).
    assert_eq!(numbers(&r["best_tried"]["weights"]), [3.0 / 7.0, 4.0 / 7.0, 0.0]);
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(saved["optimum"], r["optimum"]);
    let text = ok(&["fit", "mixture", "--input", input, "--bootstrap", "0"]);
    assert!(text.contains("form: mixing-law (the best by cross-validation)"), "{text}");
    assert!(text.contains("optimal mixture: web 0.4") && text.contains("best tried mixture (m"), "{text}");
}

#[test]
fn two_tables_joined_on_a_key_give_the_same_fit_and_predict_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let one = sweep_table(dir.path());
    let (weights, losses) = two_tables(dir.path());
    let common = ["--bootstrap", "0", "--form", "linear", "--json"];
    let single = json(&[&["fit", "mixture", "--input", one.to_str().unwrap()][..], &common].concat());
    let joined_args = [
        "fit",
        "mixture",
        "--input",
        weights.to_str().unwrap(),
        "--losses",
        losses.to_str().unwrap(),
        "--key",
        "index",
        "--weights",
        "^w_",
        "--loss",
        "^loss_",
    ];
    let predict = dir.path().join("new.csv");
    std::fs::write(&predict, "index,w_web,w_code,w_books\nnatural,0.6,0.3,0.1\neven,0.3333,0.3333,0.3334\n").unwrap();
    let out = dir.path().join("predicted.csv");
    let extra = ["--predict", predict.to_str().unwrap(), "--predict-out", out.to_str().unwrap()];
    let joined = json(&[&joined_args[..], &common, &extra].concat());
    assert_eq!(joined["runs"], 36);
    assert_eq!(joined["domains"], serde_json::json!(["web", "code", "books"]));
    for (a, b) in numbers(&single["optimum"]["weights"]).iter().zip(numbers(&joined["optimum"]["weights"])) {
        assert!((a - b).abs() < 1e-9, "{} vs {}", single["optimum"], joined["optimum"]);
    }
    let p = joined["predictions"].as_array().unwrap();
    assert_eq!((p[0]["key"].as_str(), p[1]["key"].as_str()), (Some("natural"), Some("even")));
    // The linear model's own prediction of the first: Σ_set ½ Σ_j β_j·r_j.
    let by_hand: f64 =
        joined["fits"].as_array().unwrap().iter().map(|f| 0.5 * numbers(&f["coefficients"]).iter().zip([0.6, 0.3, 0.1]).map(|(b, r)| b * r).sum::<f64>()).sum();
    assert!((p[0]["predicted"].as_f64().unwrap() - by_hand).abs() < 1e-9, "{} vs {by_hand}", p[0]);
    let csv = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "index,web,code,books,predicted_objective");
    assert!(lines[1].starts_with("natural,0.6,0.3,0.1,") && lines[2].starts_with("even,"), "{csv}");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn refusals_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let table = sweep_table(dir.path());
    let input = table.to_str().unwrap();
    let bad = write(dir.path(), "sum.csv", "weight/web,weight/code,eval/web\n0.5,0.5,3.0\n0.5,0.4,3.1\n");
    assert_eq!(
        fails(&["fit", "mixture", "--input", &bad]).trim(),
        format!("error: {bad} line 3: the weights sum to 0.9, not 1 (tolerance 0.01); rescale them so each run's weights sum to 1, or widen --sum-tolerance if the table rounds them")
    );
    let unused = write(dir.path(), "zero.csv", "weight/web,weight/code,eval/web\n1,0,3.0\n1,0,3.1\n");
    assert_eq!(
        fails(&["fit", "mixture", "--input", &unused]).trim(),
        format!("error: {unused}: domain `code` (column `weight/code`) has weight 0 in every run, so no run says what it does; add runs that train on it, or leave it out of the study (drop its column and rescale the weights)")
    );
    assert_eq!(
        fails(&["fit", "mixture", "--input", input, "--min", "web=0.7,code=0.5"]).trim(),
        "error: no mixture satisfies the constraints: the --min weights sum to 1.2 > 1; lower them"
    );
    assert_eq!(
        fails(&["fit", "mixture", "--input", input, "--available", "web=1e8,code=1e8,books=1e8", "--target-tokens", "1e10"]).trim(),
        "error: no mixture satisfies the constraints: the highest weights allowed sum to 0.1200 < 1 (web ≤ 0.0400 (1e8 tokens × 4 epochs / 1e10), \
         code ≤ 0.0400 (1e8 tokens × 4 epochs / 1e10), books ≤ 0.0400 (1e8 tokens × 4 epochs / 1e10)); raise --max, --available or --max-epochs, or lower --target-tokens"
    );
    assert_eq!(
        fails(&["fit", "mixture", "--input", input, "--min", "paper=0.1"]).trim(),
        format!("error: --min paper: {input} has no domain `paper`; its domains are: web, code, books")
    );
    let few = write(dir.path(), "few.csv", "weight/web,weight/code,weight/books,eval/web\n1,0,0,3\n0,1,0,3.2\n0,0,1,3.1\n0.5,0.5,0,2.9\n");
    assert_eq!(
        fails(&["fit", "mixture", "--input", &few, "--form", "mixing-law"]).trim(),
        format!("error: {few}: 4 runs are fewer than mixing-law needs on 3 domains (6: one more than its parameters per evaluation set); add runs, or choose a form that needs fewer (runs needed: linear 4, mixing-law 6, trees 10)")
    );
    assert_eq!(
        fails(&["fit", "mixture", "--input", &few]).trim(),
        format!("error: {few}: 4 runs on 3 domains are too few to cross-validate any form with 5 folds: each fold fits on the other folds' runs, and the forms need at least linear 4, mixing-law 6, trees 10 runs; add runs, use fewer --folds, or name a form with --form")
    );
}

#[test]
fn runs_at_two_sizes_give_their_rank_agreement_each_optimum_and_a_warning_when_it_is_weak() {
    let dir = tempfile::tempdir().unwrap();
    // The same mixtures at two sizes: the larger's losses lower, and with `flip` its preference
    // between web and code reversed.
    let table = |flip: bool| {
        let mut text = String::from("mixture,non_embedding_params,tokens,weight/web,weight/code,weight/books,eval/web,eval/code\n");
        for (i, r) in mixtures().iter().enumerate() {
            text += &format!("m{i},1e6,1e8,{},{},{},{},{}\n", r[0], r[1], r[2], law(0, r) * scatter(i), law(1, r) * scatter(i + 100));
            let big = if flip { [r[1], r[0], r[2]] } else { *r };
            text += &format!("m{i},4e6,4e8,{},{},{},{},{}\n", r[0], r[1], r[2], 0.8 * law(0, &big) * scatter(i), 0.8 * law(1, &big) * scatter(i + 100));
        }
        write(dir.path(), if flip { "flip.csv" } else { "same.csv" }, &text)
    };
    let args = |input: &str| -> Vec<String> {
        [
            "fit",
            "mixture",
            "--input",
            input,
            "--form",
            "mixing-law",
            "--bootstrap",
            "0",
            "--available",
            "web=1e8,code=1e8,books=1e8",
            "--target-tokens",
            "1e9",
            "--json",
        ]
        .map(String::from)
        .to_vec()
    };
    let same = table(false);
    let r = json(&args(&same).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r["fitted_size"], 4e6);
    assert_eq!(r["runs"], 36);
    let a = &r["agreement"][0];
    assert_eq!((a["smaller"].as_f64(), a["larger"].as_f64(), a["mixtures"].as_u64()), (Some(1e6), Some(4e6), Some(36)));
    assert!(a["spearman"].as_f64().unwrap() > 0.99, "{a}");
    assert_eq!(r["sizes"].as_array().unwrap().len(), 2);
    for s in r["sizes"].as_array().unwrap() {
        assert!((numbers(&s["optimum"]["weights"])[0] - OPTIMUM[0]).abs() < 0.03, "{s}");
    }
    // 1e9 tokens at web 0.43 repeat web's 1e8 tokens 4.3 times; the proxies saw it at most 4
    // times (4e8 tokens of web alone), and --max-epochs 4 caps it at 0.4.
    let w = numbers(&r["optimum"]["weights"]);
    assert!(w[0] <= 0.4 + 1e-9, "{w:?}");
    let flipped = table(true);
    let r = json(&args(&flipped).iter().map(String::as_str).collect::<Vec<_>>());
    let rho = r["agreement"][0]["spearman"].as_f64().unwrap();
    assert!(rho < 0.9, "{rho}");
    let warnings: Vec<&str> = r["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(
        warnings[0],
        format!("the ranking of mixtures changes with scale: ρ = {rho:.3} between N = 1.000e6, D = 1.000e8 and N = 4.000e6, D = 4.000e8 over 36 mixtures (below 0.9); a proxy's best mixture may not be the target's")
    );
}
