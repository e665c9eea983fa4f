#!/usr/bin/env bash
# Recurrent and adaptive models against today's delays on SynthDigits (issue 14, item 5).
#
# Budget = the `quick` recipe's: ../shared/data/synthdigits-900, 10 ms frames, 700 -> 140
# channels, 30 epochs, batch 64, validation on 10 % of the training speakers, 3 seeds; test
# accuracy of the best-validation epoch. Models (2 hidden layers each):
#   lif-synaptic      quick as it is: 2 x 256 LIF, learned synaptic delays (K = 25)
#   delrec            delrec-shd's architecture: 2 x 256, layer 2 recurrent-delayed (DelRec)
#   plain-recurrent   the same, layer 2 with plain (one-step) recurrence, no delays
#   se-adlif          se-adlif-shd's neurons (recurrent, no delays), 2 x 256
#   se-adlif-synaptic the same with learned synaptic feed-forward delays (K = 25)
#   se-adlif-axonal   the same with learned axonal feed-forward delays (needs model.delay_kind)
# Each model keeps its own recipe's other settings (lr, tau, dropout, ...). Rerun the script to
# resume after an interruption (finished runs are only read back). Then summarize.py writes
# results.md next to this script. Smoke test: EPOCHS=1 SEEDS=1 OUT=/tmp/study bash run_study.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../../.."   # repository root
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-3}
OUT=${OUT:-results/synthdigits/models}
DATA=${DATA:-../shared/data/synthdigits-900}
BUDGET=(--set data.dataset=synthdigits --set data.bin_ms=10.0 --set data.val_fraction=0.1
        --set data.max_frames=null --set model.n_classes=20
        --set train.epochs="$EPOCHS" --set train.batch_size=64)
W256="--set model.hidden=[256,256]"
declare -A MODELS=(
  [lif-synaptic]="quick"
  [delrec]="delrec-shd"
  [plain-recurrent]="delrec-shd --set model.recurrent=[none,plain]"
  [se-adlif]="se-adlif-shd $W256"
  [se-adlif-synaptic]="se-adlif-shd $W256 --set model.delays=learned --set model.max_delay=25"
  [se-adlif-axonal]="se-adlif-shd $W256 --set model.delays=learned --set model.max_delay=25 --set model.delay_kind=axonal"
)
ORDER=(lif-synaptic delrec plain-recurrent se-adlif se-adlif-synaptic se-adlif-axonal)
for name in "${ORDER[@]}"; do
  if [[ $name == *axonal ]] && ! spikedelay configs quick | grep -q delay_kind; then
    echo "== $name skipped: this spikedelay has no model.delay_kind (axonal delays)"
    continue
  fi
  read -r -a spec <<< "${MODELS[$name]}"
  config=${spec[0]}
  extra=("${spec[@]:1}")
  for ((seed = 0; seed < SEEDS; seed++)); do
    echo "== $name seed $seed"
    spikedelay train --config "$config" --data "$DATA" "${BUDGET[@]}" "${extra[@]}" \
      --set train.seed="$seed" --out "$OUT/runs/$name-s$seed" --quiet
  done
done
python "$HERE/summarize.py" "$OUT" --command "bash results/synthdigits/models/run_study.sh"
