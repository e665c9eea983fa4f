#!/usr/bin/env bash
# GPU check (issue 4): training-step benchmark vs the reference on the GPU, then a 5-epoch
# training run on SynthDigits through the CLI, then one summary. Budget: under 8 minutes.
#
#   bash benchmarks/gpu_check.sh              # needs a CUDA GPU
#   bash benchmarks/gpu_check.sh --cpu        # the same script on CPU, CI-sized (a dry run)
#
# Output: $OUT (default /tmp/gpu_check) holds train_speed.json, the run folder and summary.txt.
set -euo pipefail

DEVICE=cuda
BENCH_ARGS=(--batch 256)
TRAIN_SETS=(--set train.epochs=5)
if [[ "${1:-}" == "--cpu" ]]; then
  DEVICE=cpu
  BENCH_ARGS=(--quick)
  TRAIN_SETS=(--set train.epochs=1 --set train.batch_size=32 --set model.hidden=[32,32])
fi
OUT="${OUT:-/tmp/gpu_check}"
PY="${PYTHON:-python}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$OUT"
rm -rf "$OUT/run"

if [[ "$DEVICE" == cuda ]]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    > "$OUT/gpu.txt" || true
fi

t0=$(date +%s)
timeout 300 "$PY" "$HERE/train_speed.py" --device "$DEVICE" "${BENCH_ARGS[@]}" --json \
  > "$OUT/train_speed.json"
t1=$(date +%s)
timeout 240 spikedelay train --config quick "${TRAIN_SETS[@]}" --set "train.device=$DEVICE" \
  --out "$OUT/run" --quiet > "$OUT/train.log" 2>&1 || { tail -20 "$OUT/train.log"; exit 1; }
t2=$(date +%s)

"$PY" - "$OUT" "$((t1 - t0))" "$((t2 - t1))" <<'EOF' | tee "$OUT/summary.txt"
import json, pathlib, sys
out, bench_s, train_s = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
r = json.loads((out / "train_speed.json").read_text())
gpu = (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").exists() else r["device"]
print(f"device: {gpu}")
cfg = r["config"]
print(f"train_speed (batch {cfg['batch']}, hidden {cfg['hidden']}, K {cfg['max_delay']}, "
      f"{cfg['frames']} frames), {bench_s} s:")
mem = "max_memory_allocated_mb" if r["device"].startswith("cuda") else "peak_rss_mb"
for run in r["runs"]:
    a, b = run["reference"], run["spikedelay"]
    print(f"  sigma {run['sigma']:g}: reference {a['samples_per_s']:.1f}/s {a[mem]:.0f} MB, "
          f"spikedelay {b['samples_per_s']:.1f}/s {b[mem]:.0f} MB -> speedup "
          f"{run['speedup']:.1f}x, memory ratio {run['memory_ratio']:.2f}")
num = r.get("numerics", {})
print(f"  numerics ({num.get('dtype')}): {'OK' if num.get('ok') else 'MISMATCH'}")
metrics = out / "run" / "metrics.jsonl"
rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] \
    if metrics.exists() else []
print(f"training run: {len(rows)} metric rows in {train_s} s")
for row in rows[-3:]:
    keys = [k for k in ("epoch", "train_loss", "train_acc", "val_acc", "epoch_s") if k in row]
    print("  " + ", ".join(f"{k}={row[k]}" for k in keys))
EOF
