#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# Creates (once) the throw-away venv that runs transformers' chat templating
# for the tau2-chat parity tests, and prints the path of its python on stdout.
# All logs go to stderr. Idempotent: a complete venv (one holding .complete)
# is reused. Needs only PyPI. Test reference only; never a runtime dependency.
#
# Environment: PYTHON (default python3) picks the interpreter;
# XDG_CACHE_HOME (default ~/.cache) the cache root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
python="${PYTHON:-python3}"

log() { printf 'chat-reference setup: %s\n' "$*" >&2; }

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
venv="$cache/chat-reference-venv-$key"

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
tmp="$(mktemp -d "$cache/.chat-reference-venv-$key.tmp.XXXXXX")"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

log "creating venv in $tmp ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
"$python" -m venv "$tmp" >&2
log "installing requirements.txt (--no-deps)"
"$tmp/bin/python" -m pip --disable-pip-version-check --no-input install \
    --no-deps --only-binary=:all: -r "$req" >&2

log "checking imports"
"$tmp/bin/python" -c 'import jinja2, tokenizers, transformers; from transformers import AutoTokenizer; print("imports ok", transformers.__version__)' >&2

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
