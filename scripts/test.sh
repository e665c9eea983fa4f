#!/usr/bin/env bash
# All set-up (test extras and espeak-ng included), then the test suite: `python -m pytest`.
# Arguments go to pytest, e.g. scripts/test.sh tests/deploy -x. Skips print their reasons; under
# CI=true (as .ci/run sets) a skip that is not GPU-only fails the run (tests/ci_policy.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec "${SPIKEDELAY_VENV:-.venv}/bin/python" -m pytest "$@"
