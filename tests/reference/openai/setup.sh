#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# The venv with the official `openai` Python client, which tau2-serve's
# tests point at our OpenAI-compatible server; prints its python. Test
# reference only, never a runtime dependency. See ../venv.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../venv.sh" openai-client "$here/requirements.txt" \
    'import openai; print("openai", openai.__version__)'
