#!/usr/bin/env bash
# Runs two builds of a criterion bench (benches/pipeline.rs, benches/pg_write.rs) in alternation,
# one round each turn (base, new, base, new, ...), so machine noise hits both alike, and prints
# the median throughput of each benchmark per build, and new / base.
#   benches/ab_criterion.sh BASE_BINARY NEW_BINARY [ROUNDS] [FILTER] [-- CRITERION_ARGS...]
# Build each with `cargo bench --no-run --bench pipeline` (the binary is named in its output:
# target/release/deps/pipeline-<hash>). Extra environment (PG_URL for pg_write) passes through.
set -euo pipefail
base=$1 new=$2 rounds=${3:-3} filter=${4:-pipeline_}
shift $(($# < 4 ? $# : 4))
[[ ${1:-} == -- ]] && shift
out=$(mktemp)
homes=$(mktemp -d)
for ((r = 1; r <= rounds; r++)); do
  for which in base new; do
    bin=$base; [[ $which == new ]] && bin=$new
    # a criterion home per build, so neither compares itself with the other's last run
    CRITERION_HOME=$homes/$which "$bin" --bench "$filter" "$@" 2>/dev/null |
      awk -v which="$which" '
        /^[^ ].*\// { name = $1 }
        /thrpt:/ && $5 ~ /elem\/s/ {
          v = $4; u = $5
          if (u ~ /^K/) v *= 1e3; else if (u ~ /^M/) v *= 1e6; else if (u ~ /^G/) v *= 1e9
          printf "%s %s %.0f\n", which, name, v
        }' | tee -a "$out"
  done
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "benchmark | base median /s | new median /s | new / base"
for name in $(awk '{print $2}' "$out" | sort -u); do
  b=$(awk -v n="$name" '$1 == "base" && $2 == n {print $3}' "$out" | median)
  w=$(awk -v n="$name" '$1 == "new" && $2 == n {print $3}' "$out" | median)
  awk -v n="$name" -v b="$b" -v w="$w" 'BEGIN {printf "%s | %.0f | %.0f | %.3f\n", n, b, w, (b > 0 ? w / b : 0)}'
done
rm -rf "$out" "$homes"
