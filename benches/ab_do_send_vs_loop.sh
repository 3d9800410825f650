#!/usr/bin/env bash
# Runs two builds of examples/do_send_vs_loop in alternation, one round each turn, so machine
# noise hits both alike, and prints the median of each figure per build.
#   benches/ab_do_send_vs_loop.sh BASE_BINARY NEW_BINARY [ROUNDS] [EVENTS]
# (build each with `cargo build --release --example do_send_vs_loop`).
set -euo pipefail
base=$1 new=$2 rounds=${3:-3} events=${4:-300000}
out=$(mktemp)
for ((r = 1; r <= rounds; r++)); do
  for which in base new; do
    bin=$base; [[ $which == new ]] && bin=$new
    line=$("$bin" "$events" 1 | grep '^round')
    echo "$which $line" | tee -a "$out"
  done
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for which in base new; do
  loop=$(grep "^$which " "$out" | sed -E 's/.*loop +([0-9]+).*/\1/' | median)
  burst=$(grep "^$which " "$out" | sed -E 's/.*burst +([0-9]+).*/\1/' | median)
  inter=$(grep "^$which " "$out" | sed -E 's/.*interleaved +([0-9]+).*/\1/' | median)
  echo "$which medians: loop $loop  pipeline burst $burst  interleaved $inter events/s"
done
rm -f "$out"
