#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# The venv that runs transformers' chat templating (no torch) for the
# tau2-chat parity tests; prints its python. Test reference only, never a
# runtime dependency. See ../venv.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../venv.sh" chat-reference "$here/requirements.txt" \
    'import jinja2, tokenizers, transformers; from transformers import AutoTokenizer; print("imports ok", transformers.__version__)'
