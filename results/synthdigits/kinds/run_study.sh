#!/usr/bin/env bash
# The SynthDigits delay-kind study (issue 13, item 6): synaptic vs axonal vs dendritic learned
# delays, sparse axonal delays (S = 0.5, 0.8; random masks), and the fixed-random / no-delay
# baselines (synaptic layers), 3 seeds each: 7 variants × 3 seeds = 21 runs.
#
# Budget: the `quick` recipe (2 × 256 LIF, K = 25, 30 epochs, batch 64, 10 ms frames,
# 700 → 140 channels) on REFERENCE §7's 900-word training files; only model.delay_kind,
# model.delay_sparsity, model.delays and train.seed differ between runs (checked by compare).
# Several hours on a quiet 2-core machine: run it when the machine is quiet; rerun the same
# script to resume after an interruption (finished runs are only read back). Outputs land next
# to this script (results.md, results.json, figures/, runs/).
#
# OUT=DIR and SEEDS=N override the folder and the seed count; extra arguments go to compare,
# e.g. a 1-epoch smoke test:
#   OUT=/tmp/kinds-smoke SEEDS=1 results/synthdigits/kinds/run_study.sh \
#     --set train.epochs=1 --set 'model.hidden=[16, 16]'
set -euo pipefail
cd "$(dirname "$0")/../../.."   # repository root: the paths below are relative to it
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
spikedelay compare --config quick --seeds "${SEEDS:-3}" \
  --data ../shared/data/synthdigits-900 \
  --grid model.delay_kind=synaptic,axonal,dendritic \
  --variant axonal-S0.5:model.delay_kind=axonal,model.delay_sparsity=0.5 \
  --variant axonal-S0.8:model.delay_kind=axonal,model.delay_sparsity=0.8 \
  --variant fixed:model.delays=fixed \
  --variant none:model.delays=none \
  --out "${OUT:-results/synthdigits/kinds}" --quiet "$@"
