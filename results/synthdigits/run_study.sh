#!/usr/bin/env bash
# The SynthDigits delay ablation (issue 6, item 2): no / fixed random / learned delays × 3 seeds.
#
# Budget = REFERENCE §7 (the reference code's own scores on these files: 900 training words,
# K = 25, batch 64, 30 epochs, 10 ms frames, 700 → 140 channels) except the width: 2 × 128 LIF
# neurons instead of 2 × 256, so that all 9 runs fit in under an hour on this 2-core machine.
# Run it from anywhere when the machine is quiet; rerun the same script to resume after an
# interruption (finished runs are only read back). Outputs land next to this script.
set -euo pipefail
cd "$(dirname "$0")/../.."   # repository root: the paths below are relative to it
. .venv/bin/activate
spikedelay compare --config quick --variants none,fixed,learned --seeds 3 \
  --data ../shared/data/synthdigits-900 \
  --set 'model.hidden=[128, 128]' \
  --out results/synthdigits --quiet
