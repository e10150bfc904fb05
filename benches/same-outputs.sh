#!/usr/bin/env bash
# Every output a refactor must leave unchanged, written to files so two binaries can be diffed:
# each sweep file's plan and dry run, a slurm dry run's sbatch scripts, the quickstart trained
# (its table, metrics and every fit, chart, report and export read back from it), and the fits
# on the published Chinchilla table. Timings are masked ("seconds", wall_s, tokens_per_s).
#
#   benches/same-outputs.sh BINARY OUT_DIR [SWEEP_DIR]
#
# SWEEP_DIR: an already trained quickstart to read (skips training; the table is still compared).
# Run both binaries from the same checkout (a run id hashes its data files' paths); OUT_DIR, the
# checkout and the scratch folder are written as OUT, REPO and TMP. A refactor's check:
#   benches/same-outputs.sh /tmp/windtunnel-old /tmp/outputs-old
#   benches/same-outputs.sh target/release/windtunnel /tmp/outputs-new /tmp/outputs-old/results/quickstart
#   diff -r /tmp/outputs-old /tmp/outputs-new --exclude results
set -euo pipefail
BIN=$(realpath "${1:?usage: benches/same-outputs.sh BINARY OUT_DIR [SWEEP_DIR]}")
OUT=$(realpath -m "${2:?usage: benches/same-outputs.sh BINARY OUT_DIR [SWEEP_DIR]}")
SWEEP=${3:-}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT

# Masks what differs from run to run: durations, rates and the folders.
mask() { sed -E "s#$OUT#OUT#g; s#$SCRATCH#TMP#g; s#$PWD#REPO#g" | sed -E 's/("(seconds|wall_s|tokens_per_s|elapsed_s|started_at|finished_at|time)": )[-0-9.e+"T:Z]+/\1X/g; s/ in [0-9.]+(ms|s)\b/ in X/g; s/[0-9.]+ ?(ms|s) elapsed/X elapsed/g'; }
# Runs one command; its stdout, stderr and exit code go to OUT/NAME.
out() {
  local name=$1; shift
  set +e
  "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
  echo "exit $?" >> "$OUT/$name.out"
  set -e
  mask < "$OUT/$name.out" > "$OUT/$name.tmp" && mv "$OUT/$name.tmp" "$OUT/$name.out"
  grep -v -E 'ETA|elapsed| [0-9.]+/s' "$OUT/$name.err" | mask > "$OUT/$name.tmp" || true
  mv "$OUT/$name.tmp" "$OUT/$name.err"
}

for sweep in sweeps/*.toml; do
  name=$(basename "$sweep" .toml)
  out "plan-$name" "$BIN" plan "$sweep" --json
  out "plan-text-$name" "$BIN" plan "$sweep"
  out "dry-run-$name" "$BIN" run "$sweep" --dry-run --out "$OUT/empty" --json
done
out slurm-dry-run "$BIN" run sweeps/quickstart.toml --executor slurm --dry-run --partition debug --time 10 --out "$OUT/slurm"
find "$OUT/slurm" -name '*.sh' -o -name '*.sbatch' | sort | while read -r f; do sed "s#$OUT#OUT#g; s#$BIN#BIN#g" "$f"; done > "$OUT/slurm-scripts.txt" || true
rm -rf "$OUT/slurm" "$OUT/empty"
out init "$BIN" init "$OUT/init.toml" && mv "$OUT/init.toml" "$OUT/init.toml.txt" 2>/dev/null || true

if [ -z "$SWEEP" ]; then
  out run-quickstart "$BIN" run sweeps/quickstart.toml --parallel 2 --quiet --out "$OUT/results"
  SWEEP=$OUT/results/quickstart
fi
Q=$SCRATCH/quickstart
cp -r "$SWEEP" "$Q"
rm -rf "$Q/fits" "$Q/plots" "$Q/report.html" "$Q/export"
out collect "$BIN" collect "$Q" --json
cut -d, -f1-25 "$Q/table.csv" > "$OUT/table.csv"
out status "$BIN" status "$Q" --json
out fit-lr "$BIN" fit lr --input "$Q" --json
out fit-lr-text "$BIN" fit lr --input "$Q"
out fit-law "$BIN" fit law --input "$Q" --bootstrap 50 --budgets 1e13 --json
out fit-law-text "$BIN" fit law --input "$Q" --bootstrap 50 --budgets 1e13
out fit-law-where "$BIN" fit law --input "$Q" --where 'non_embedding_params < 5e4' --predict-where 'non_embedding_params > 1e5' --json
out fit-law-grid "$BIN" fit law --input "$Q" --grid data-model --holdout largest --rollout --form chinchilla,kaplan --json
out fit-allocation "$BIN" fit allocation --input "$Q" --bootstrap 20 --json
out fit-curve "$BIN" fit curve --input "$Q" --bootstrap 5 --json
out fit-curve-text "$BIN" fit curve --input "$Q" --bootstrap 5 --predict-schedule 'wsd:tokens=200000,decay_fraction=0.2,decay=1-sqrt'
out from-curves "$BIN" fit law --input "$Q" --from-curves --bootstrap 10 --json
out fit-hparams "$BIN" fit hparams --input "$Q" --json
out plot "$BIN" plot "$Q"
for f in "$Q"/plots/*.svg; do cp "$f" "$OUT/plot-$(basename "$f")"; done
out report "$BIN" report "$Q"
mask < "$Q/report.html" > "$OUT/report.html" || true
out export "$BIN" export "$Q" --budget-flops 1e13 --out "$Q/export" --json
for f in "$Q"/export/*; do mask < "$f" > "$OUT/export-$(basename "$f")"; done
ls "$Q/fits" > "$OUT/fits-listing.txt"
for f in "$Q"/fits/*.json; do mask < "$f" > "$OUT/fits-$(basename "$f")"; done
rm -rf "$Q"

C=analysis/data/chinchilla_svg_extracted_data.csv
out chinchilla "$BIN" fit law --config analysis/chinchilla.toml --json
out chinchilla-text "$BIN" fit law --input "$C" --n 'Model Size' --flops 'Training FLOP' --loss loss --drop-highest 5 --holdout largest --bootstrap 50
out adapt-replay "$BIN" adapt --replay "$C" --n 'Model Size' --flops 'Training FLOP' --loss loss --target allocation:1e21 --json
echo "wrote $OUT"
