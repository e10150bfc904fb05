//! Helpers for end-to-end tests that run the real `windtunnel` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn windtunnel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_windtunnel")).args(args).output().expect("run windtunnel")
}

/// Run and expect success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = windtunnel(args);
    assert!(out.status.success(), "windtunnel {args:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Run and expect a clean failure (non-zero exit, no panic); returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = windtunnel(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "windtunnel {args:?} should have failed");
    assert!(!stderr.contains("panicked"), "windtunnel {args:?} panicked:\n{stderr}");
    stderr
}

pub fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).expect("valid JSON on stdout")
}

/// A tiny sweep: a learning-rate grid with one diverging rate, and a WSD data-model grid.
pub const TINY: &str = r#"
name = "tiny"
seeds = [0]

[base]
mup = { base_width = 16 }
optimizer = { lr = 0.01 }
schedule = { kind = "cosine", warmup_tokens = 256 }
training = { tokens = 2560, batch_size = 4, seq_len = 32, eval_interval_tokens = 1280, eval_tokens = 256 }
data = { kind = "synthetic", vocab = 64 }

[[grid]]
name = "lr"
models = { widths = [16, 32], depth = 1, head_dim = 16 }
parameters."optimizer.lr" = { values = [0.003, 0.01, 0.03, 1000.0] }
parameters."optimizer.grad_clip" = { value = 0.0 }

[[grid]]
name = "data"
models = { widths = [16, 32], depth = 1, head_dim = 16 }
wsd = { branch_tokens = [1280, 2560], decay = "linear", decay_fraction = 0.2 }
"#;

/// The sweep's table without its timing columns, rows sorted: what two executions must agree on.
pub fn table_without_timings(dir: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("table.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let skip: Vec<usize> = ["wall_s", "tokens_per_s"].iter().map(|c| header.iter().position(|h| h == c).unwrap()).collect();
    let mut rows: Vec<String> =
        lines.map(|l| l.split(',').enumerate().filter(|(i, _)| !skip.contains(i)).map(|(_, v)| v).collect::<Vec<_>>().join(",")).collect();
    rows.sort();
    rows
}

/// A tiny run: 128 tokens per step.
pub fn run_file(dir: &Path, name: &str, extra: &str, steps: u64, checkpoint_steps: &[u64]) -> PathBuf {
    let checkpoints: Vec<String> = checkpoint_steps.iter().map(|s| (s * 128).to_string()).collect();
    let text = format!(
        r#"seed = 1
[model]
width = 32
depth = 2
heads = 2
kv_heads = 1
[mup]
base_width = 32
[optimizer]
lr = 0.01
[schedule]
kind = "constant"
warmup_tokens = 1280
[training]
tokens = {tokens}
batch_size = 4
seq_len = 32
eval_interval_tokens = 1280
eval_tokens = 256
checkpoint_tokens = [{checkpoints}]
log_interval_steps = 1
[data]
kind = "synthetic"
vocab = 64
{extra}"#,
        tokens = steps * 128,
        checkpoints = checkpoints.join(", "),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A tmpfs of `size` mounted on a fresh folder; unmounted when dropped. `None` where this process
/// may not mount (not root): the test then says it did not run.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.path().to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|st| st.success());
        ok.then_some(Self { dir })
    }

    pub fn resize(&self, size: &str) {
        assert!(std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}"), self.dir.path().to_str().unwrap()])
            .status()
            .unwrap()
            .success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

/// TINY with a data-model grid large enough for a law (3 sizes × 3 decays), trained in
/// DIR/results; returns the sweep's folder (an export needs a law).
pub fn trained_law_sweep(dir: &Path) -> PathBuf {
    let data_grid = TINY.find("name = \"data\"").unwrap();
    let text = TINY[..data_grid].to_string()
        + &TINY[data_grid..]
            .replacen("widths = [16, 32]", "widths = [16, 32, 48]", 1)
            .replace("branch_tokens = [1280, 2560]", "branch_tokens = [640, 1280, 2560]");
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("tiny.toml");
    std::fs::write(&file, text).unwrap();
    let out = dir.join("results");
    let run = windtunnel(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    out.join("tiny")
}
