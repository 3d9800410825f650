#!/usr/bin/env python3
"""Runs NAB's contextOSE detector (CAD OSE) with the value range it would have in a stream.

NAB hands every detector each file's minimum and maximum before the first row. contextOSE
quantises each value into 2^3 levels of that range, so the range decides what it sees. This
script runs NAB's own `ContextualAnomalyDetectorOSE` (imported from a NAB checkout, not
copied) with one of three ranges and writes result CSVs that `nab_eval --score-dir` scores:

- `file`: the file's minimum and maximum, as NAB gives them (reproduces NAB's results);
- `so-far`: the smallest and largest value seen so far (what a stream knows), the detector's
  memory kept when the range grows;
- `first:N`: the range of the first N values, then fixed; a value below it becomes one fact
  per level below (above it, the quantiser's own extra bits do the same). The first N values
  train the detector and score 0.

With `--blend-with DIR` it also writes, per row, `max(ours, w * contextOSE)` for our result
CSVs in DIR (`nab_eval --out DIR` writes them, prefix `eventbatch_`), into `OUT/blend`.

    git clone https://github.com/numenta/NAB && git -C NAB checkout ea702d7
    python3 cli/examples/contextose_range.py --nab-repo NAB --nab tests/data/nab \
        --range first:750 --out /tmp/cad
    cargo run --release --example nab_eval -- --score-dir /tmp/cad --prefix contextOSE_

docs/detection.md ("What the published detectors know that a stream does not") has the
figures.
"""

import argparse
import csv
import json
import math
import os
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nab-repo", required=True, help="a checkout of numenta/NAB")
    p.add_argument("--nab", required=True, help="data/ and combined_windows.json")
    p.add_argument("--range", default="file", help="file, so-far or first:N")
    p.add_argument("--out", required=True)
    p.add_argument("--blend-with", help="our result CSVs (nab_eval --out)")
    p.add_argument("--weight", type=float, default=1.0, help="w in max(ours, w * theirs)")
    return p.parse_args()


def probation(n):
    """NAB's probationary period: 15% of the file, at most 750 rows."""
    return min(math.floor(0.15 * n), 750)


def set_range(cad, lo, hi):
    cad.minValue = lo
    cad.fullValueRange = hi - lo if hi > lo else cad.maxBinValue
    cad.minValueStep = cad.fullValueRange / cad.maxBinValue


def below_range(cad, value, lo):
    """One fact per quantisation step below `lo`, scored like any other value."""
    steps = int((lo - value) / cad.minValueStep) + 1
    active, added = cad.step({1000 + steps})
    score = (1.0 - active + added) / 2.0
    rest = cad.aScoresHistory[-int(cad.restPeriod):]
    returned = score if max(rest) < cad.baseThreshold else 0.0
    cad.aScoresHistory.append(score)
    return returned


def run(detector, values, policy):
    n = len(values)
    rest = probation(n) / 5.0  # what NAB passes
    if policy == "file":
        cad = detector(minValue=min(values), maxValue=max(values), restPeriod=rest)
        return [cad.getAnomalyScore({"value": v}) for v in values]
    if policy == "so-far":
        lo = hi = values[0]
        cad = detector(minValue=lo, maxValue=hi, restPeriod=rest)
        scores = []
        for v in values:
            if v < lo or v > hi:
                lo, hi = min(lo, v), max(hi, v)
                set_range(cad, lo, hi)
            scores.append(cad.getAnomalyScore({"value": v}))
        return scores
    if policy.startswith("first:"):
        first = max(2, min(int(policy.split(":")[1]), n))
        lo, hi = min(values[:first]), max(values[:first])
        cad = detector(minValue=lo, maxValue=hi, restPeriod=rest)
        scores = []
        for i, v in enumerate(values):
            if i < first:
                cad.getAnomalyScore({"value": v})
                scores.append(0.0)
            elif v < lo:
                scores.append(below_range(cad, v, lo))
            else:
                scores.append(cad.getAnomalyScore({"value": v}))
        return scores
    sys.exit(f"unknown --range {policy!r}: file, so-far or first:N")


def write(path, rows, scores):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("timestamp,value,anomaly_score\n")
        for (ts, value), s in zip(rows, scores):
            f.write(f"{ts},{value},{s}\n")


def read_scores(path):
    with open(path) as f:
        return [float(r["anomaly_score"]) for r in csv.DictReader(f)]


def main():
    args = parse_args()
    sys.path.insert(0, os.path.abspath(args.nab_repo))
    from nab.detectors.context_ose.cad_ose import ContextualAnomalyDetectorOSE

    with open(os.path.join(args.nab, "combined_windows.json")) as f:
        names = sorted(json.load(f))
    for name in names:
        category, file = name.split("/")
        with open(os.path.join(args.nab, "data", name)) as f:
            rows = [(r["timestamp"], r["value"]) for r in csv.DictReader(f)]
        values = [float(v) for _, v in rows]
        scores = run(ContextualAnomalyDetectorOSE, values, args.range)
        write(os.path.join(args.out, category, "contextOSE_" + file), rows, scores)
        if args.blend_with:
            ours = read_scores(os.path.join(args.blend_with, category, "eventbatch_" + file))
            if len(ours) != len(scores):
                sys.exit(f"{name}: {len(ours)} rows of ours, {len(scores)} of contextOSE")
            blended = [max(a, args.weight * b) for a, b in zip(ours, scores)]
            write(os.path.join(args.out, "blend", category, "blend_" + file), rows, blended)
        print(f"{name}: {len(values)} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
