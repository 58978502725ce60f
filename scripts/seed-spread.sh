#!/usr/bin/env bash
# The spread of the quickstart's pre-training recipe over training seeds:
# pre-trains the students (generic corpus of 2000, 10 epochs) and the GQA
# teacher (6000 questions, 20 epochs) with seeds 0..N-1 (data seed 0), each
# in an empty store, and prints every seed's test metrics and each metric's
# lowest and highest value. tests/it/shipped.rs takes that range as how far
# a re-derivation may land on another kind of machine.
# Usage: scripts/seed-spread.sh [SEEDS] [VPD]   (default 5, target/release/vpd)
# About 4 minutes a seed on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-5}
vpd=${2:-target/release/vpd}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$vpd" doctor --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("on " + d["machine"] + ", libtorch " + d["libtorch"]["version"])'
for ((s = 0; s < seeds; s++)); do
  st="$work/s$s"
  "$vpd" --store "$st" pretrain students --n 2000 --epochs 10 --seed "$s" --json > /dev/null
  "$vpd" --store "$st" pretrain teacher --task gqa --n 6000 --epochs 20 --seed "$s" --json > /dev/null
  "$vpd" --store "$st" versions --json > "$work/v$s.json"
done
python3 - "$work" "$seeds" <<'PY'
import json, sys
work, seeds = sys.argv[1], int(sys.argv[2])
metrics = [("vqa", "test_accuracy"), ("loc", "test_recall"), ("loc", "test_precision"), ("gqa-teacher", "test_accuracy")]
rows = {m: [] for m in metrics}
for s in range(seeds):
    vs = json.load(open(f"{work}/v{s}.json"))
    got = {(v["module"], k): v["metrics"][k] for v in vs for (_, k) in metrics if k in v["metrics"]}
    print(f"seed {s}: " + ", ".join(f"{m} {k} {got[(m, k)]:.2f}" for m, k in metrics))
    for m in metrics:
        rows[m].append(got[m])
for (m, k), xs in rows.items():
    print(f"{m} {k}: lowest {min(xs):.2f}, highest {max(xs):.2f}")
PY
