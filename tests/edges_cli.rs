//! Trust at the edges: inputs that used to be accepted with exit 0, or read without limit, are
//! refused with one message that names the file or flag and the fix.

mod common;
use common::fails;

#[test]
fn a_sweep_whose_synthetic_language_is_empty_is_refused_at_plan() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sweeps/quickstart.toml")).unwrap().replace("vocab = 128,", "vocab = 0,");
    let file = dir.path().join("v0.toml");
    std::fs::write(&file, text).unwrap();
    let e = fails(&["plan", file.to_str().unwrap()]);
    assert!(e.contains("v0.toml") && e.contains("data: `vocab` must be at least 2 (got 0)"), "{e}");
}

#[test]
fn a_sweep_file_that_never_ends_is_refused_at_once() {
    let e = fails(&["plan", "/dev/zero"]);
    assert!(e.contains("/dev/zero is over 4 MiB"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("binary.toml");
    std::fs::write(&file, [0xffu8, 0xfe, 0x00]).unwrap();
    let e = fails(&["plan", file.to_str().unwrap()]);
    assert!(e.contains("is not UTF-8 text"), "{e}");
}

#[test]
fn a_coordinate_check_needs_two_different_positive_widths() {
    let e = fails(&["coord-check", "--widths", "64,64"]);
    assert!(e.contains("--widths 64,64: give at least two different widths"), "{e}");
    let e = fails(&["coord-check", "--widths", "0,8"]);
    assert!(e.contains("--widths: a width must be at least 1"), "{e}");
}

#[test]
fn a_table_naming_a_column_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dup.csv");
    std::fs::write(&file, "N,D,N,loss\n1e6,1e7,2e6,3\n").unwrap();
    let e = fails(&["fit", "law", "--input", file.to_str().unwrap(), "--n", "N", "--tokens", "D", "--loss", "loss"]);
    assert!(e.contains("dup.csv: column `N` appears twice (columns 1 and 3)"), "{e}");
}

#[test]
fn an_allocation_no_approach_could_make_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one-run.csv");
    std::fs::write(&file, "run,N,D,loss\na,1e6,1e7,3.0\na,1e6,2e7,2.9\n").unwrap();
    let out = common::windtunnel(&["fit", "allocation", "--input", file.to_str().unwrap(), "--run", "run", "--n", "N", "--tokens", "D", "--loss", "loss"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit 0 with no allocation:\n{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("none of the three approaches gave an allocation"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).is_empty(), "the reasons are printed");
}

#[test]
fn flat_losses_give_no_learning_rate_drift() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flat.csv");
    let mut text = String::from("width,depth,lr,final_eval_loss,parameterization\n");
    for w in [32, 64, 128] {
        for lr in [0.001, 0.01, 0.1] {
            text.push_str(&format!("{w},2,{lr},3.0,mup\n"));
        }
    }
    std::fs::write(&file, text).unwrap();
    let out = common::ok(&["fit", "lr", "--input", file.to_str().unwrap()]);
    assert!(out.contains("drift: not measured") && !out.contains("+0.000 [+0.000, +0.000]"), "{out}");
}

#[test]
fn a_batch_curve_with_negative_tokens_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("curves.csv");
    std::fs::write(&file, "batch_size,tokens,loss\n64,1000,3.0\n64,-2000,2.9\n").unwrap();
    let e = fails(&["fit", "batch", "--input", file.to_str().unwrap(), "--batch-size", "batch_size", "--tokens", "tokens", "--curve-loss", "loss"]);
    assert!(e.contains("curves.csv line 3: tokens `tokens` = -2000"), "{e}");
}

#[test]
fn a_law_on_sizes_beyond_any_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge.csv");
    let mut text = String::from("N,D,loss\n");
    for (i, n) in [1e300, 2e300, 4e300, 1e301, 2e301, 4e301, 1e302].iter().enumerate() {
        text.push_str(&format!("{n:e},{:e},{}\n", 1e9 * (i + 1) as f64, 3.0 - 0.1 * i as f64));
    }
    std::fs::write(&file, text).unwrap();
    let e = fails(&["fit", "law", "--input", file.to_str().unwrap(), "--n", "N", "--tokens", "D", "--loss", "loss"]);
    assert!(e.contains("huge.csv line 2: N = 1e300 is beyond any model or corpus"), "{e}");
}

#[test]
fn a_grid_point_that_is_no_run_config_is_named_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sweeps/quickstart.toml"))
        .unwrap()
        .replace(r#"parameters."optimizer.lr" = { min = 0.01, max = 0.16, num = 5, log = true }"#, r#"parameters."optimizer.lr" = { values = ["fast"] }"#);
    let file = dir.path().join("words.toml");
    std::fs::write(&file, text).unwrap();
    let e = fails(&["plan", file.to_str().unwrap()]);
    assert!(e.contains("the base with optimizer.lr = fast") && !e.contains("[(\""), "{e}");
}

#[test]
fn a_base_that_is_not_a_run_config_is_named_without_an_empty_parameter_list() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sweeps/quickstart.toml"))
        .unwrap()
        .replace("schedule = { kind = \"cosine\", warmup_tokens = 8192 }", "schedule = { kind = \"wsd\", warmup_tokens = 8192 }");
    // Only the data-model grid, which sweeps no parameter.
    let lr_grid = text.find("[[grid]]\nname = \"lr-transfer\"").unwrap();
    let data_grid = text.find("[[grid]]\nname = \"data-model\"").unwrap();
    let text = format!("{}{}", &text[..lr_grid], &text[data_grid..]);
    let file = dir.path().join("wsd-base.toml");
    std::fs::write(&file, text).unwrap();
    let e = fails(&["plan", file.to_str().unwrap()]);
    assert!(e.contains("grid `data-model`: the base is not a valid run config: missing field `decay`"), "{e}");
    assert!(!e.contains("the base with  is"), "{e}");
}
