#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (an H200 with torch 2.11.0
# in /opt/torch/.venv, no Rust): runs a stripped vpd built here against the
# device's own torch and writes what it measured under $OUT.
#
#   here:   make device-bundle          (builds and strips dist/vpd, ~18 MB)
#   there:  scripts/device-check.sh [dist/vpd]
#
# Steps, each under its own time limit, each leaving <step>.json or
# <step>.log under $OUT (default ./device-check-out) and a line in
# summary.txt:
#   1. vpd doctor --json           libtorch there, CUDA, the live training check
#   2. vpd run --device cuda       the quickstart end to end on the GPU
#                                  (shipped base checkpoints; distillation,
#                                  teacher and evaluations on cuda)
#   3. vpd measure --device cuda   the run's students and teacher on the
#                                  adapters' queries
#   4. vpd program run --device cuda   one program through the stored LOC and VQA
#   5. vpd bench train --device cuda   training on the GPU against the CPU
#   6. vpd bench exec --device cuda    programs/s on the GPU against both CPU modes
# The logs end up in one logs.tar.gz beside the JSON files and summary.txt
# (the device tool brings back at most 8 files).
# The steps' time limits add up to 7 min 30 s (not yet run on a GPU).
set -uo pipefail

VPD=${1:-dist/vpd}
OUT=${OUT:-$PWD/device-check-out}
PY=${VPD_TORCH_PYTHON:-/opt/torch/.venv/bin/python}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
note() { printf '%s\n' "$*" | tee -a "$SUMMARY" >&2; }

[[ -x "$VPD" ]] || { note "error: $VPD is not an executable vpd (make device-bundle builds dist/vpd)"; exit 2; }
[[ -x "$PY" ]] || { note "error: $PY not found: set VPD_TORCH_PYTHON to the python holding the device's torch"; exit 2; }
lib=$("$PY" -W ignore -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') \
  || { note "error: $PY has no importable torch"; exit 2; }
ver=$("$PY" -W ignore -c 'import torch; print(torch.__version__)')
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export VPD_TORCH_PYTHON=$PY
# A store of its own, in the machine's temporary space.
export VPD_STORE=${VPD_STORE:-$(mktemp -d)/store}
export CI=${CI:-}
note "device check: $("$VPD" --version 2>&1 | head -1), torch $ver at $lib"
note "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"

step() { # name limit_s command...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$OUT/$name.json" 2>"$OUT/$name.log"
  local rc=$?
  note "$name: exit $rc in $((SECONDS - t0)) s ($*)"
  [[ $rc -eq 0 ]] || tail -5 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY" >&2
  return 0
}

step doctor 60 "$VPD" doctor --json
step run 150 "$VPD" run --device cuda --json
step measure 60 "$VPD" measure --device cuda --limit 100 --json
syn=$(mktemp -d)
"$VPD" data synth --task gqa --out "$syn" --n 2 >/dev/null 2>&1
printf "%s\n" "BOX0=LOC(image=IMAGE,object='circle')" "IMAGE0=CROP(image=IMAGE,box=BOX0)" \
  "ANSWER0=VQA(image=IMAGE0,question='What color is the circle?')" "FINAL_RESULT=RESULT(var=ANSWER0)" >"$syn/q.prog"
step program 30 "$VPD" program run "$syn/q.prog" --image "IMAGE=$(ls "$syn"/images/*.png | head -1)" \
  --modules VQA=vqa@base LOC=loc@base --device cuda --json
step bench-train 60 "$VPD" bench train --device cuda --rounds 3 --json
step bench-exec 90 "$VPD" bench exec --device cuda --programs 300 --rounds 2 --json
(cd "$OUT" && tar -czf logs.tar.gz ./*.log && rm -f ./*.log)
note "done in $SECONDS s; files: $(cd "$OUT" && ls | tr '\n' ' ')"
