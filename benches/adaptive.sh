#!/usr/bin/env bash
# The adaptive wind tunnel against the grids it replaces, in two parts (benches/adaptive.py):
#
#  replay    `adapt --replay` on the Chinchilla points (analysis/data, 240 runs after Epoch AI's 5
#            highest-loss ones are dropped): D/N at 1e24 FLOPs, each strategy (adaptive, random,
#            cheapest) with SEEDS seeds and a budget of 30% of every row's FLOPs. For each: the
#            FLOPs fraction at which its 95% interval first is as narrow as every row's, the
#            interval's width at 5%, 10% and 20% of the FLOPs (median over seeds), and whether the
#            estimate there lies inside every row's interval.
#  training  sweeps/adaptive-allocation.toml trained by `run --adaptive` (D/N at 1e10 FLOPs on the
#            quickstart's language, at most 20% of the grid's FLOPs), then the rest of the grid
#            trained into a copy of its folder (the same runs: a full grid), and both fitted: FLOPs,
#            wall time, D/N and E with their intervals, against the exact loss floor.
#
#   benches/adaptive.sh [SEEDS] [PARTS]        (defaults: 10 seeds, "replay training")
#
# Results: a summary on stdout, JSON in benches/results/adaptive.json (or $OUT_JSON). About
# 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 benches/adaptive.py target/release/windtunnel "${1:-10}" "${2:-replay training}" "${OUT_JSON:-benches/results/adaptive.json}"
