#!/usr/bin/env bash
# The test command: installs what the tests need (tests/setup.sh), checks
# formatting and lints, starts the test control plane, runs every test
# (including those that need the cluster) and stops the control plane.
# The last line is the total: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tests/setup.sh
TAU2_REFERENCE_PYTHON=$(tests/reference/setup.sh)
export TAU2_REFERENCE_PYTHON
TAU2_QWEN3_TOKENIZER_DIR=$(tests/fixtures/qwen3-tokenizer.sh)
TAU2_CHAT_REFERENCE_PYTHON=$(tests/reference/chat/setup.sh)
export TAU2_QWEN3_TOKENIZER_DIR TAU2_CHAT_REFERENCE_PYTHON
TAU2_MODEL_REFERENCE_PYTHON=$(tests/reference/model/setup.sh)
TAU2_OPENAI_PYTHON=$(tests/reference/openai/setup.sh)
export TAU2_MODEL_REFERENCE_PYTHON TAU2_OPENAI_PYTHON
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings

dir=$(tests/control-plane/cluster.sh up)
trap 'tests/control-plane/cluster.sh down "$dir"' EXIT
# shellcheck disable=SC1091
. "$dir/env"

echo "== cargo test" >&2
log=$(mktemp)
set +e
cargo test --workspace --all-features --no-fail-fast -- --include-ignored 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
trap - EXIT
tests/control-plane/cluster.sh down "$dir"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
     END { printf "tests: %d passed, %d failed", p, f; if (g) printf ", %d skipped", g; printf "\n" }' "$log"
rm -f "$log"
exit "$status"
