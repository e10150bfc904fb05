#!/usr/bin/env bash
# Two windtunnel binaries' CPU training step, interleaved on vs-torch.sh's shapes: did a change make
# the step slower? Each round trains A then B on the same shape and threads, so a noisy machine
# slows both alike; read each round's B/A ratio, not the tokens/s.
#
#   benches/ab.sh A_BINARY B_BINARY [ROUNDS] [THREADS]      (defaults: 4 rounds, 2 threads)
#
# e.g. an older commit against today's (a second worktree, the same target directory):
#   repo=$PWD; git worktree add /tmp/old COMMIT
#   (cd /tmp/old && CARGO_TARGET_DIR="$repo/target" cargo build --release)   # reuses the built deps
#   cp target/release/windtunnel /tmp/windtunnel-old && cargo build --release   # relinks today's
#   benches/ab.sh /tmp/windtunnel-old target/release/windtunnel
# tokens/s is the steady rate of the steps after the third, as in vs-torch.sh.
set -euo pipefail
A=${1:?usage: benches/ab.sh A_BINARY B_BINARY [ROUNDS] [THREADS]}
B=${2:?usage: benches/ab.sh A_BINARY B_BINARY [ROUNDS] [THREADS]}
ROUNDS=${3:-4}
THREADS=${4:-2}
STEPS=${STEPS:-30}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# shellcheck source=benches/windtunnel-step-rate.sh
source "$(dirname "$0")/windtunnel-step-rate.sh"

echo "A = $A, B = $B; $THREADS threads, $ROUNDS rounds, $STEPS timed steps"
printf '%-6s %5s %12s %12s %8s\n' shape round A_tok/s B_tok/s B/A
for shape in "w128 128 4 4 2" "w256 256 8 8 4"; do
  read -r name width depth heads kv <<< "$shape"
  for round in $(seq 1 "$ROUNDS"); do
    a=$(windtunnel_tps "$A" "$WORK" "$THREADS" "$STEPS" "$width" "$depth" "$heads" "$kv")
    b=$(windtunnel_tps "$B" "$WORK" "$THREADS" "$STEPS" "$width" "$depth" "$heads" "$kv")
    printf '%-6s %5s %12s %12s %8s\n' "$name" "$round" "$a" "$b" "$(python3 -c "print(f'{$b / $a:.3f}x')")"
  done
done
