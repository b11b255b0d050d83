#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# The venv that runs transformers' Qwen3 (torch 2.13.0, transformers 5.23.0)
# for the model parity tests; prints its python. About 2.7 GB the first time:
# torch's CUDA dependencies are needed for `import torch` even on a CPU.
# Test reference only, never a runtime dependency. See ../venv.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../venv.sh" model-reference "$here/requirements.txt" \
    'import torch, transformers, safetensors; from transformers import Qwen3ForCausalLM; print("torch", torch.__version__, "transformers", transformers.__version__)'
