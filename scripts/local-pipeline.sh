#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# The main job without a cluster: a whole pipeline (SFT -> RFT -> GRPO ->
# eval) on the embedded tiny Qwen3, with the real Qwen3 tokenizer, the mock
# domain and the deterministic scripted user; no external service. Installs
# what it needs first (libtorch, the tokenizer, tau2-bench data when there is
# no shared/tau2 beside the checkout), builds the worker (release), and runs
#
#   tau2-worker run -f manifests/examples/tiny-pipeline.yaml --out <dir> [more flags]
#
# Usage: scripts/local-pipeline.sh [OUT_DIR [tau2-worker run flags...]]
# (default OUT_DIR: tau2-local; MANIFEST=<file> runs another manifest).
# `tau2-worker run --help` lists the flags; `tau2-worker pipeline --local` is
# the same run built from flags instead of a manifest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-tau2-local}"
shift || true
manifest="${MANIFEST:-manifests/examples/tiny-pipeline.yaml}"

tests/install-libtorch.sh
tokenizer="$(tests/fixtures/qwen3-tokenizer.sh)"
data="$(tests/fixtures/tau2-data.sh)"
echo "== building tau2-worker (release)" >&2
cargo build --release --quiet -p tau2-worker
bin="${CARGO_TARGET_DIR:-target}/release/tau2-worker"
exec "$bin" run -f "$manifest" --out "$out" --tokenizer-dir "$tokenizer" --data "$data" "$@"
