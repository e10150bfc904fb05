//! The GPU check (`benches/gpu_check.py`) runs once per GPU window, and a window is minutes long
//! and rare: an error in the script's own flow would cost the window. Here it runs through every
//! step with no time to train (each is skipped at once), which exercises every group's code and
//! the summary it writes; `GPU_CHECK_DEVICE=cpu` with a real budget is the full dry run.

use std::process::Command;

#[test]
fn the_gpu_check_runs_through_every_group_without_a_gpu() {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new("python3")
        .arg("benches/gpu_check.py")
        .arg(env!("CARGO_BIN_EXE_windtunnel"))
        .arg(out.path())
        .arg("12") // seconds: every step finds too little time left and is skipped
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GPU_CHECK_DEVICE", "cpu")
        .env_remove("GPU_CHECK_GROUPS")
        .env_remove("GPU_CHECK_SEED_CACHE")
        .output()
        .expect("python3 runs benches/gpu_check.py");
    let log = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{log}");
    let text = std::fs::read_to_string(out.path().join("gpu-check.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    for section in ["summary", "fusion", "step_profile_9m", "precision", "concurrency"] {
        assert!(report.get(section).is_some(), "no `{section}` in {text}");
    }
    let steps = report["steps"].as_object().unwrap();
    for step in [
        "torch_eager_tf32_36m",
        "windtunnel_w128_cold",
        "windtunnel_36m_second",
        "windtunnel_9m_unfused",
        "kernel_profile_9m_8",
        "windtunnel_w128_bf16_mixed",
        "concurrent_9m_x8",
        "concurrent_shared_9m_x8",
        "sweep_9m_lr4_per-run",
        "sweep_9m_lr4_shared_x4",
        "coord_check_bf16-mixed",
        "torch_compile_fp32_w128",
    ] {
        assert!(steps.contains_key(step), "step `{step}` never ran: {log}");
    }
    assert!(log.contains("done with"), "{log}");
}
