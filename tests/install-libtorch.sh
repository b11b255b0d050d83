#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# Installs libtorch 2.13.0 (the version tch 0.26 builds against) from the PyPI
# torch wheel into <repo>/.libtorch, where .cargo/config.toml points LIBTORCH.
# --no-deps keeps it to the CPU libraries plus the two small NVIDIA runtime
# wheels that libtorch_cpu.so names (see shared/spec/tch.md). Idempotent: a
# complete install is left alone. Downloads are cached under
# ~/.cache/tau2-operator/pip, so re-runs (and CI on the same machine) are quick.
#
# Environment: PYTHON (default python3); XDG_CACHE_HOME (default ~/.cache).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { echo "install-libtorch.sh: $*" >&2; }

python="${PYTHON:-python3}"
dest=.libtorch
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tau2-operator/pip"

if [[ -d "$dest/torch-2.13.0.dist-info" && -e "$dest/nvidia/cu13/lib/libcupti.so.13" \
      && -e "$dest/nvidia/cu13/lib/libcudart.so.13" ]]; then
  log "libtorch 2.13.0 already in $dest"
  exit 0
fi

# pip --target does not replace existing packages, so start clean.
rm -rf "$dest"
mkdir -p "$cache"
log "installing torch 2.13.0 (--no-deps) into $dest (about 540 MB, cached in $cache)"
"$python" -m pip install -q --disable-pip-version-check --no-input --cache-dir "$cache" \
  --no-deps --only-binary=:all: --target "$dest" \
  torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 >&2
log "ready: $dest/torch"
