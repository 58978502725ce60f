#!/usr/bin/env bash
# Finds or installs libtorch 2.11.0 (the version tch 0.24 needs; the lent GPU
# machines carry torch 2.11.0, so a vpd built here runs there) and prints,
# on stdout, shell lines to eval:
#   export LIBTORCH='<folder holding lib/ and include/>'
#   export VPD_TORCH_PYTHON='<python with that torch>'   (when there is one)
# Everything else goes to stderr. Usage: eval "$(scripts/libtorch.sh)"
#
# Order of preference:
#   1. LIBTORCH set by the user: used as it is (must hold lib/libtorch_cpu.so).
#   2. LIBTORCH_USE_PYTORCH=1 with a python3 on PATH (an active venv): that
#      python's torch, which must be 2.11.0.
#   3. The project's own venv in VPD_TORCH_VENV (default
#      ${XDG_CACHE_HOME:-$HOME/.cache}/visprog-distiller/torch-2.11.0),
#      created with `pip install torch==2.11.0` when missing or broken.
set -euo pipefail

WANT=2.11.0
say() { printf 'libtorch: %s\n' "$*" >&2; }
die() { printf 'libtorch: error: %s\n' "$*" >&2; exit 1; }

emit() { # libtorch dir, python (may be empty)
  printf "export LIBTORCH='%s'\n" "$1"
  printf "unset LIBTORCH_USE_PYTORCH\n"
  [[ -n "$2" ]] && printf "export VPD_TORCH_PYTHON='%s'\n" "$2"
  return 0
}

torch_dir_of() { # python -> prints torch dir, fails when torch is absent
  "$1" -W ignore - "$WANT" <<'PY'
import os, sys
try:
    import torch
except Exception as e:  # noqa: BLE001
    sys.stderr.write(f"torch is not importable: {e}\n"); sys.exit(3)
v = torch.__version__.split("+")[0]
if v != sys.argv[1]:
    sys.stderr.write(f"torch {torch.__version__} found, {sys.argv[1]} needed\n"); sys.exit(4)
print(os.path.dirname(torch.__file__))
PY
}

if [[ -n "${LIBTORCH:-}" ]]; then
  [[ -f "$LIBTORCH/lib/libtorch_cpu.so" ]] || die "LIBTORCH=$LIBTORCH has no lib/libtorch_cpu.so; point it at a libtorch $WANT folder or unset it"
  say "using LIBTORCH=$LIBTORCH"
  emit "$LIBTORCH" "${VPD_TORCH_PYTHON:-}"; exit 0
fi

if [[ "${LIBTORCH_USE_PYTORCH:-}" == 1 ]]; then
  py=$(command -v python3 || true)
  [[ -n "$py" ]] || die "LIBTORCH_USE_PYTORCH=1 but no python3 on PATH; activate the venv holding torch $WANT"
  dir=$(torch_dir_of "$py") || die "LIBTORCH_USE_PYTORCH=1: $py has no usable torch $WANT; run: $py -m pip install torch==$WANT"
  say "using $py's torch at $dir"
  emit "$dir" "$py"; exit 0
fi

VENV=${VPD_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/visprog-distiller/torch-$WANT}
if [[ -x "$VENV/bin/python" ]] && dir=$(torch_dir_of "$VENV/bin/python" 2>/dev/null); then
  emit "$dir" "$VENV/bin/python"; exit 0
fi

command -v python3 >/dev/null || die "python3 not found; install Python 3.9-3.13 with venv and pip (Debian: apt-get install python3 python3-venv python3-pip), or set LIBTORCH to a libtorch $WANT folder"
say "installing torch==$WANT into $VENV (about 4.7 GB, once)"
mkdir -p "$(dirname "$VENV")"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV" || die "python3 -m venv failed; install the venv module (Debian: apt-get install python3-venv)"
fi
"$VENV/bin/python" -m pip --version >/dev/null 2>&1 || die "$VENV has no pip; remove $VENV and install pip for python3 (Debian: apt-get install python3-pip)"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q "torch==$WANT" >&2 \
  || die "pip install torch==$WANT failed (see above); a proxy or an offline machine needs LIBTORCH set to a libtorch $WANT folder"
dir=$(torch_dir_of "$VENV/bin/python") || die "torch $WANT installed into $VENV but does not import"
say "installed torch $WANT at $dir"
emit "$dir" "$VENV/bin/python"
