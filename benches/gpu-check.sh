#!/usr/bin/env bash
# The GPU check of a `--features cuda` build, bounded in time (default 450 s): PyTorch eager on the
# same shapes, windtunnel's first step with a cold and a warm kernel cache, steady tokens/s and
# MFU, concurrent runs on one GPU, a sweep with persistent workers vs a process per run. See
# benches/gpu_check.py for the steps and the JSON fields.
#
#   cargo build --release --features cuda
#   COMMIT=$(git rev-parse HEAD) benches/gpu-check.sh target/release/windtunnel /tmp/gpu-check [SECONDS]
#
# On a GPU machine without a Rust toolchain, build elsewhere and take the stripped binary along
# (about 50 MiB; compiling needs no CUDA toolkit):
#   CARGO_TARGET_DIR=target/cuda cargo build --release --features cuda
#   strip -o target/cuda/windtunnel-gpu target/cuda/release/windtunnel
#
# Results: OUTDIR/gpu-check.json (rewritten after every step), OUTDIR/logs.tar.gz (every step's log) and
# OUTDIR/kernel-cache.tar.gz (the cache it compiled): three files, as a device window returns few.
set -uo pipefail
BIN=${1:?usage: gpu-check.sh WINDTUNNEL_BINARY OUTDIR [SECONDS]}
OUT=${2:?usage: gpu-check.sh WINDTUNNEL_BINARY OUTDIR [SECONDS]}
exec python3 "$(dirname "$0")/gpu_check.py" "$BIN" "$OUT" "${3:-450}"
