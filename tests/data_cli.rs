//! `windtunnel data synth` and `windtunnel data inspect` through the real binary.

mod common;
use common::{fails, json};

#[test]
fn synth_then_inspect_reports_the_exact_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.bin");
    let out_s = out.to_str().unwrap();
    let synth = json(&["data", "synth", "--out", out_s, "--tokens", "2e4", "--vocab", "100", "--seed", "3", "--json"]);
    assert_eq!(synth["tokens"], 20_000);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 40_000);
    let oracle = synth["oracle_loss_nats"].as_f64().unwrap();
    let inspect = json(&["data", "inspect", out_s, "--json"]);
    assert_eq!(inspect["vocab"], 100);
    assert_eq!(inspect["oracle_loss_nats"].as_f64().unwrap(), oracle);
    assert!(inspect["unigram_entropy_nats"].as_f64().unwrap() > oracle);
    // A uniform language has oracle log V exactly.
    let uniform = dir.path().join("u.bin");
    let u = json(&[
        "data",
        "synth",
        "--out",
        uniform.to_str().unwrap(),
        "--tokens",
        "1000",
        "--vocab",
        "50",
        "--max-order",
        "0",
        "--order-weights",
        "1",
        "--zipf-exponent",
        "0",
        "--json",
    ]);
    assert!((u["oracle_loss_nats"].as_f64().unwrap() - 50f64.ln()).abs() < 1e-12);
}

#[test]
fn broken_files_and_settings_give_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(&["data", "inspect", dir.path().join("missing.bin").to_str().unwrap()]);
    assert!(e.contains("missing.bin") && e.contains("does not exist"), "{e}");
    let odd = dir.path().join("odd.bin");
    std::fs::write(&odd, [1u8, 2, 3]).unwrap();
    let e = fails(&["data", "inspect", odd.to_str().unwrap(), "--vocab", "10"]);
    assert!(e.contains("3 bytes") && e.contains("u16"), "{e}");
    let big = dir.path().join("big.bin");
    std::fs::write(&big, [1u8, 0, 200, 0]).unwrap();
    let e = fails(&["data", "inspect", big.to_str().unwrap(), "--vocab", "100"]);
    assert!(e.contains("token 200") && e.contains("index 1"), "{e}");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    assert!(fails(&["data", "inspect", empty.to_str().unwrap()]).contains("is empty"));
    let e = fails(&["data", "synth", "--out", dir.path().join("x.bin").to_str().unwrap(), "--tokens", "10", "--vocab", "0"]);
    assert!(e.contains("`vocab`"), "{e}");
    let e = fails(&["data", "synth", "--out", dir.path().join("x.bin").to_str().unwrap(), "--tokens", "10", "--max-order", "2"]);
    assert!(e.contains("--order-weights"), "{e}");
}
