#!/usr/bin/env bash
# `fit curve` on long runs: fit time and peak memory against the number of runs and their length
# (rate logged every step or every 50 steps, a loss every 200), for both forms, without and with
# --bootstrap 100. The tables are synthetic (benches/curve_tables.py: constant, cosine and WSD
# runs of every length, losses from the annealing law with 0.2% noise), built once into
# target/curve-bench/; every run of a table is fitted (no --predict-runs).
#
#   benches/curve-fit.sh [RUNS:STEPS:LOG_EVERY ...]
#
# Default configurations: 20:1000:1 20:10000:50 20:50000:50 20:50000:1 5:100000:1 20:100000:50.
# Prints one row per fit (seconds of wall time and peak resident memory from /usr/bin/time, the
# fit's median |error| over its evaluations), and writes them as JSON lines to
# benches/results/curve-fit.jsonl (or $OUT_JSON); the last fit's progress lines are in
# target/curve-bench/progress.txt. About 12 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=target/release/windtunnel
DIR=target/curve-bench
OUT_JSON=${OUT_JSON:-benches/results/curve-fit.jsonl}
mkdir -p "$DIR" "$(dirname "$OUT_JSON")"
: > "$OUT_JSON"
if [ "$#" -eq 0 ]; then
  set -- 20:1000:1 20:10000:50 20:50000:50 20:50000:1 5:100000:1 20:100000:50
fi
printf '%-12s %5s %7s %5s %9s %9s %8s %8s %10s\n' form runs steps every rows bootstrap seconds peak_MB median_err
for config in "$@"; do
  IFS=: read -r runs steps every <<< "$config"
  table=$DIR/r$runs-s$steps-l$every.csv
  [ -f "$table" ] || python3 benches/curve_tables.py "$runs" "$steps" "$every" 200 "$table"
  rows=$(($(wc -l < "$table") - 1))
  for form in multi-power annealing; do
    for bootstrap in 0 100; do
      /usr/bin/time -f '%e %M' -o "$DIR/time" "$BIN" fit curve --input "$table" --form "$form" --bootstrap "$bootstrap" --json > "$DIR/report.json" 2> "$DIR/progress.txt"
      read -r seconds kb < "$DIR/time"
      error=$(python3 -c 'import json, sys; print("%.3f%%" % (100 * json.load(open(sys.argv[1]))["groups"][0]["fit_median_relative_error"]))' "$DIR/report.json")
      printf '%-12s %5s %7s %5s %9s %9s %8s %8s %10s\n' "$form" "$runs" "$steps" "$every" "$rows" "$bootstrap" "$seconds" "$((kb / 1024))" "$error"
      printf '{"form": "%s", "runs": %s, "steps": %s, "log_every": %s, "rows": %s, "bootstrap": %s, "seconds": %s, "peak_mb": %s, "fit_median_error": "%s"}\n' \
        "$form" "$runs" "$steps" "$every" "$rows" "$bootstrap" "$seconds" "$((kb / 1024))" "$error" >> "$OUT_JSON"
    done
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
