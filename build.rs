//! Build script: cfgs for tests that need what a machine may not have. `windtunnel_slurm` is set
//! when WINDTUNNEL_SLURM=1 (as `.ci/run` sets it after starting a one-node Slurm),
//! `windtunnel_browser` when WINDTUNNEL_BROWSER=1 (as `.ci/run` sets it after installing
//! Chromium), and `windtunnel_python` when WINDTUNNEL_PYTHON names a Python with transformers,
//! tensorboard and megatron-core (as `.ci/run` sets it after making target/interop-venv). Without them those tests are marked ignored, with the reason, so `cargo test` shows
//! them as not run instead of as passed.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(windtunnel_slurm)");
    println!("cargo:rustc-check-cfg=cfg(windtunnel_browser)");
    println!("cargo:rustc-check-cfg=cfg(windtunnel_python)");
    println!("cargo:rerun-if-env-changed=WINDTUNNEL_PYTHON");
    println!("cargo:rerun-if-env-changed=WINDTUNNEL_SLURM");
    println!("cargo:rerun-if-env-changed=WINDTUNNEL_BROWSER");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("WINDTUNNEL_SLURM").as_deref() == Ok("1") {
        println!("cargo:rustc-cfg=windtunnel_slurm");
    }
    if std::env::var("WINDTUNNEL_PYTHON").is_ok_and(|p| !p.is_empty()) {
        println!("cargo:rustc-cfg=windtunnel_python");
    }
    if std::env::var("WINDTUNNEL_BROWSER").as_deref() == Ok("1") {
        println!("cargo:rustc-cfg=windtunnel_browser");
    }
}
