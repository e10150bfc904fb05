//! `windtunnel model` and `windtunnel coord-check` through the real binary.

mod common;
use common::{fails, json, ok};

#[test]
fn minicpm_presets_give_the_published_non_embedding_counts() {
    let small = json(&["model", "--preset", "minicpm-1.2b", "--json"]);
    assert_eq!(small["non_embedding_params"], 1_247_442_432u64);
    assert_eq!(small["vocab"], 73_440);
    let big = json(&["model", "--preset", "minicpm-2.4b", "--json"]);
    assert_eq!(big["non_embedding_params"], 2_442_057_984u64);
    assert_eq!(big["total_params"], 2_442_057_984u64 + 122_753 * 2304);
}

#[test]
fn every_preset_prints_counts_and_flops_parts_that_add_up() {
    for preset in ["minicpm-1.2b", "minicpm-2.4b", "9m", "36m", "66m", "109m", "166m", "241m", "499m"] {
        let r = json(&["model", "--preset", preset, "--json", "--seq-len", "2048"]);
        let parts = ["flops_per_token_dense", "flops_per_token_attention", "flops_per_token_lm_head"];
        let sum: u64 = parts.iter().map(|k| r[k].as_u64().unwrap()).sum();
        assert_eq!(r["flops_per_token"].as_u64().unwrap(), sum, "{preset}");
        assert_eq!(r["flops_per_token_dense"].as_u64().unwrap(), 6 * r["non_embedding_params"].as_u64().unwrap());
        let text = ok(&["model", "--preset", preset]);
        assert!(text.contains("non-embedding (N)"), "{text}");
    }
    let list = ok(&["model", "--list"]);
    assert!(list.contains("499m") && list.contains("1,247,442,432"), "{list}");
}

#[test]
fn custom_shapes_with_gqa_and_vocab_override() {
    let r = json(&["model", "--width", "256", "--depth", "4", "--heads", "8", "--kv-heads", "2", "--vocab", "256", "--json"]);
    // attention 2·256² + 2·256·64, ffn 3·256·640, norms 2·256, ×4, + final norm 256
    let per_layer = 2 * 256 * 256 + 2 * 256 * 64 + 3 * 256 * 640 + 2 * 256;
    assert_eq!(r["non_embedding_params"], 4 * per_layer + 256);
    assert_eq!(r["total_params"], 4 * per_layer + 256 + 256 * 256);
    let proxy = json(&["model", "--preset", "9m", "--vocab", "256", "--json"]);
    assert_eq!(proxy["vocab"], 256);
    assert_eq!(proxy["non_embedding_params"], 9_426_240);
}

#[test]
fn impossible_shapes_are_refused_naming_the_field() {
    let e = fails(&["model", "--width", "100", "--depth", "2", "--heads", "3"]);
    assert!(e.contains("`heads` (3) must divide `width` (100)"), "{e}");
    let e = fails(&["model", "--width", "96", "--depth", "2", "--heads", "6", "--kv-heads", "4"]);
    assert!(e.contains("`kv_heads` (4) must divide `heads` (6)"), "{e}");
    let e = fails(&["model", "--width", "96", "--depth", "0", "--heads", "6"]);
    assert!(e.contains("`depth` must be at least 1"), "{e}");
    let e = fails(&["model", "--preset", "7b"]);
    assert!(e.contains("unknown preset `7b`") && e.contains("minicpm-2.4b"), "{e}");
    let e = fails(&["coord-check", "--widths", "64,100"]);
    assert!(e.contains("width 100"), "{e}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_device_without_cuda_build_is_a_clear_error() {
    let e = fails(&["coord-check", "--device", "cuda:0", "--widths", "64,128", "--steps", "1"]);
    assert!(e.contains("built without CUDA support"), "{e}");
}

fn hidden_slopes(result: &serde_json::Value) -> Vec<f64> {
    result["slopes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"].as_u64().unwrap() >= 1)
        .filter(|s| {
            let layer = s["layer"].as_str().unwrap();
            layer.ends_with(".attention") || layer.ends_with(".ffn")
        })
        .map(|s| s["slope"].as_f64().unwrap())
        .collect()
}

#[test]
fn coordinate_check_is_flat_under_mup_and_grows_under_sp() {
    let args = ["coord-check", "--widths", "64,128,256", "--steps", "3", "--json"];
    let mup = json(&args);
    let slopes = hidden_slopes(&mup);
    assert!(!slopes.is_empty());
    assert!(slopes.iter().all(|s| s.abs() < 0.15), "µP hidden slopes should be near 0: {slopes:?}");

    let sp = json(&[&args[..], &["--parameterization", "sp"]].concat());
    let slopes = hidden_slopes(&sp);
    assert!(slopes.iter().all(|&s| s > 0.5), "SP hidden activations should grow with width: {slopes:?}");
    // Every layer is recorded for every width and step.
    let records = mup["records"].as_array().unwrap().len();
    assert_eq!(records, 3 * 4 * (1 + 2 * 2 + 3)); // widths × steps+1 × (embedding, 2 blocks × 2, residual stream, final norm, logits)
}

/// `--precision bf16-mixed` (honoured by the coordinate check on the CPU too) moves every mean |x|
/// by well under 1% and every slope by under 0.02: bf16 products do not change what µP shows.
#[test]
fn coordinate_check_under_bf16_mixed_agrees_with_fp32() {
    let args = ["coord-check", "--widths", "64,128", "--steps", "2", "--seq-len", "32", "--batch-size", "4", "--json"];
    let fp32 = json(&args);
    let bf16 = json(&[&args[..], &["--precision", "bf16-mixed"]].concat());
    assert_eq!(bf16["options"]["precision"], "bf16-mixed");
    let (a, b) = (fp32["records"].as_array().unwrap(), bf16["records"].as_array().unwrap());
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b, "bf16-mixed computes its products in bf16");
    for (x, y) in a.iter().zip(b) {
        assert_eq!((&x["width"], &x["step"], &x["layer"]), (&y["width"], &y["step"], &y["layer"]));
        let (x, y) = (x["mean_abs"].as_f64().unwrap(), y["mean_abs"].as_f64().unwrap());
        assert!((x - y).abs() / x < 0.01, "mean |x| {x} (fp32) vs {y} (bf16-mixed)");
    }
    for (x, y) in fp32["slopes"].as_array().unwrap().iter().zip(bf16["slopes"].as_array().unwrap()) {
        let (x, y) = (x["slope"].as_f64().unwrap(), y["slope"].as_f64().unwrap());
        assert!((x - y).abs() < 0.02, "slope {x} (fp32) vs {y} (bf16-mixed)");
    }
    let e = fails(&["coord-check", "--precision", "bf16"]);
    assert!(e.contains("unknown precision `bf16`; use fp32, tf32 or bf16-mixed"), "{e}");
}
