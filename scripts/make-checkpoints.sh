#!/usr/bin/env bash
# Makes the quickstart's shipped base checkpoints (checkpoints/quickstart/):
# the students and the GQA teacher, pre-trained by vpd from the
# quickstart's own [pretrain] recipe in an empty store, then exported with
# a manifest of their records (recipe, data, metrics) and SHA-256s.
# Usage: scripts/make-checkpoints.sh [VPD]   (default target/release/vpd)
# Rebuild vpd afterwards: the checkpoints are embedded in the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
vpd=${1:-target/release/vpd}
out=checkpoints/quickstart
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
# The quickstart's [pretrain] recipe (experiments/quickstart.toml: students
# 10 epochs on the generic corpus of 2000, the GQA teacher 20 epochs on
# 6000 questions; batch 64, lr 2e-3, patience 3, seeds 0). vpd uses a
# shipped checkpoint only where its recorded recipe equals the
# experiment's, so a mismatch here shows as the quickstart training again.
"$vpd" --store "$store" pretrain students --n 2000 --epochs 10 --json > /dev/null
"$vpd" --store "$store" pretrain teacher --task gqa --n 6000 --epochs 20 --json > /dev/null
mkdir -p "$out"
for m in vqa:base:vqa loc:base:loc gqa-teacher:teacher:gqa-teacher; do
  IFS=: read -r module alias file <<< "$m"
  "$vpd" --store "$store" store export --force "$module@$alias" "$out/$file.ckpt"
done
"$vpd" --store "$store" versions --json > "$store/versions.json"
"$vpd" doctor --json > "$store/doctor.json"
made_by="vpd $(git describe --always --dirty) on $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("machine") or "")' "$store/doctor.json")"
python3 - "$store/versions.json" "$out" "$made_by" "$store/doctor.json" <<'PY'
import hashlib, json, sys
versions, out, made_by = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
doctor = json.load(open(sys.argv[4]))
# Where the recipe gives these very bytes again: this machine line (CPU,
# cores, vector extensions, torch threads) and libtorch. tests/it/shipped.rs
# demands the same bytes there and the recipe's seed spread elsewhere.
same_bytes_on = {"machine": doctor["machine"], "libtorch": doctor["libtorch"]["version"].split("+")[0]}
entries = []
for module, alias, file in [("vqa", "base", "vqa"), ("loc", "base", "loc"), ("gqa-teacher", "teacher", "gqa-teacher")]:
    v = next(v for v in versions if v["module"] == module and v["number"] == 1)
    data = open(f"{out}/{file}.ckpt", "rb").read()
    entries.append({"module": module, "alias": alias, "file": f"{file}.ckpt",
                    "sha256": hashlib.sha256(data).hexdigest(), "data": v["data"],
                    "config": v["config"], "metrics": v["metrics"]})
json.dump({"made_by": made_by, "same_bytes_on": same_bytes_on, "versions": entries}, open(f"{out}/manifest.json", "w"), indent=1)
print(f"wrote {out}/manifest.json: " + ", ".join(f"{e['module']}@{e['alias']} ({e['sha256'][:12]})" for e in entries))
PY
