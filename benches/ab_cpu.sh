#!/usr/bin/env bash
# Runs two builds of examples/cpu_per_event.rs in alternation (base, new, base, new, ...), each
# process 2 rounds of EVENTS events, and prints the median of each figure per
# build and new / base: wall-clock events/s, and CPU ns per event of the process, the
# application's thread, the writer's and the stages' (see the example's docs).
#   benches/ab_cpu.sh BASE_BINARY NEW_BINARY [RUNS] [EVENTS]
# Build each with `cargo build --release --example cpu_per_event` (the binary is
# target/release/examples/cpu_per_event; copy it aside before building the other).
set -euo pipefail
base=$1 new=$2 runs=${3:-8} events=${4:-1000000}
out=$(mktemp)
for ((r = 1; r <= runs; r++)); do
  for which in base new; do
    bin=$base; [[ $which == new ]] && bin=$new
    "$bin" "$events" 2 | awk -v which="$which" '{ print which, $2, $4, $6, $8, $10, $12 }' >> "$out"
  done
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
names=("" "" "events/s" "CPU ns/event, process" "CPU ns/event, application thread" \
  "CPU ns/event, writer thread" "CPU ns/event, stages thread" "CPU ns/event, system (process)")
echo "figure | base median | new median | new / base"
for col in 2 3 4 5 6 7; do
  b=$(awk -v c=$col '$1 == "base" {print $c}' "$out" | median)
  w=$(awk -v c=$col '$1 == "new" {print $c}' "$out" | median)
  awk -v n="${names[$col]}" -v b="$b" -v w="$w" \
    'BEGIN {printf "%s | %.1f | %.1f | %.3f\n", n, b, w, (b > 0 ? w / b : 0)}'
done
rm -f "$out"
