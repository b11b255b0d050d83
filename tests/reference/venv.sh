#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# Creates (once) a throw-away venv for a parity reference and prints the path
# of its python on stdout; all logs go to stderr. Shared by the references'
# setup.sh scripts:
#
#   venv.sh NAME REQUIREMENTS CHECK [HASHED_REQUIREMENTS]
#
# NAME names the venv (~/.cache/tau2-operator/NAME-venv-<key>, keyed by the
# requirement files and the python version); REQUIREMENTS is a fully pinned
# closure installed with --no-deps; CHECK is python code that must run in the
# new venv (imports); HASHED_REQUIREMENTS, if given, is installed first with
# --require-hashes. Idempotent: a complete venv (holding .complete) is
# reused; wheels are cached under ~/.cache/tau2-operator/pip. Needs only PyPI.
#
# Environment: PYTHON (default python3); XDG_CACHE_HOME (default ~/.cache).
set -euo pipefail

name="$1" req="$2" check="$3" hashed="${4:-}"
python="${PYTHON:-python3}"
log() { printf '%s setup: %s\n' "$name" "$*" >&2; }

key="$("$python" - "$req" $hashed <<'PY'
import hashlib, platform, sys
h = hashlib.sha256()
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        h.update(f.read())
h.update(platform.python_version().encode())
print(h.hexdigest()[:16])
PY
)"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/tau2-operator"
venv="$cache/$name-venv-$key"

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
tmp="$(mktemp -d "$cache/.$name-venv-$key.tmp.XXXXXX")"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

log "creating venv in $tmp ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
"$python" -m venv "$tmp" >&2
pip=("$tmp/bin/python" -m pip --disable-pip-version-check --no-input install -q
     --cache-dir "$cache/pip" --no-deps --only-binary=:all:)
if [[ -n "$hashed" ]]; then
    log "installing $hashed (hash-checked)"
    "${pip[@]}" --require-hashes -r "$hashed" >&2
fi
log "installing $req"
"${pip[@]}" -r "$req" >&2

log "checking imports"
(cd "$tmp" && "$tmp/bin/python" -c "$check" >&2)

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
