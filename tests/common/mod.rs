//! Helpers for end-to-end tests that run the real `windtunnel` binary.
#![allow(dead_code)]

use std::process::{Command, Output};

pub fn windtunnel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_windtunnel")).args(args).output().expect("run windtunnel")
}

/// Run and expect success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = windtunnel(args);
    assert!(
        out.status.success(),
        "windtunnel {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
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
