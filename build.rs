//! Build script: one cfg, `windtunnel_slurm`, set when WINDTUNNEL_SLURM=1 (as `.ci/run` sets it
//! after starting a one-node Slurm). Without it the Slurm tests are marked ignored, with the
//! reason, so `cargo test` shows them as not run instead of as passed.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(windtunnel_slurm)");
    println!("cargo:rerun-if-env-changed=WINDTUNNEL_SLURM");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("WINDTUNNEL_SLURM").as_deref() == Ok("1") {
        println!("cargo:rustc-cfg=windtunnel_slurm");
    }
}
