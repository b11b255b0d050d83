#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# Creates (once) the throw-away venv that runs transformers' Qwen3 (torch
# 2.13.0, transformers 5.23.0) for the model parity tests, and prints the
# path of its python on stdout.  All logs go to stderr.  Idempotent: a
# complete venv (one holding .complete) is reused.  Needs only PyPI; wheels
# are cached under ~/.cache/tau2-operator/pip (about 2.7 GB: torch's CUDA
# dependencies are needed for `import torch` even on a CPU machine).  Test
# reference only; never a runtime dependency.
#
# Environment: PYTHON (default python3) picks the interpreter;
# XDG_CACHE_HOME (default ~/.cache) the cache root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
python="${PYTHON:-python3}"

log() { printf 'model-reference setup: %s\n' "$*" >&2; }

# Key: sha256 of requirements.txt + the python version.
key="$("$python" - "$req" <<'PY'
import hashlib, platform, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    h.update(f.read())
h.update(platform.python_version().encode())
print(h.hexdigest()[:16])
PY
)"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/tau2-operator"
venv="$cache/model-reference-venv-$key"

if [[ -f "$venv/.complete" ]]; then
    log "reusing $venv"
    echo "$venv/bin/python"
    exit 0
fi
if [[ -e "$venv" ]]; then
    log "removing incomplete $venv"
    rm -rf "$venv"
fi

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.model-reference-venv-$key.tmp.XXXXXX")"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

log "creating venv in $tmp ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
"$python" -m venv "$tmp" >&2

log "installing requirements.txt (--no-deps; a few minutes the first time)"
"$tmp/bin/python" -m pip --disable-pip-version-check --no-input install -q \
    --cache-dir "$cache/pip" --no-deps --only-binary=:all: -r "$req" >&2

log "checking imports"
(cd "$tmp" && "$tmp/bin/python" -c \
    'import torch, transformers, safetensors; from transformers import Qwen3ForCausalLM; print("torch", torch.__version__, "transformers", transformers.__version__)' >&2)

# Only bin/python is used afterwards: it keeps working after the rename.
touch "$tmp/.complete"
if ! "$python" -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$tmp" "$venv" 2>/dev/null; then
    if [[ -f "$venv/.complete" ]]; then
        log "another setup finished first; using it"
    else
        log "could not move $tmp to $venv"
        exit 1
    fi
fi
log "ready: $venv"
echo "$venv/bin/python"
