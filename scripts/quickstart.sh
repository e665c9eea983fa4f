#!/usr/bin/env bash
# All set-up, then the main job: `spikedelay train` (the `quick` recipe on the SynthDigits release
# shipped with the package; 3-4 minutes on 2 CPU cores). Arguments go to `spikedelay train`,
# e.g. scripts/quickstart.sh --set train.epochs=5. Rerun it to resume an interrupted run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${SPIKEDELAY_VENV:-.venv}/bin/spikedelay" train "$@"
