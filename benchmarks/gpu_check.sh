#!/usr/bin/env bash
# GPU check (issue 12): every GPU number in one run, under 8 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh          # needs a CUDA GPU
#   bash benchmarks/gpu_check.sh --cpu    # the same steps on CPU, CI-sized (a dry run; Triton
#                                         # interpreted, gloo instead of NCCL)
#
# 1. train_speed.py: a training step of the SHD recipe (batch 256, 2 x 256, K 25) against the
#    reference formulation (dcls + SpikingJelly), samples/s and peak memory, both sides in the
#    same run with TF32 off, plus the float64 loss/gradient comparison;
# 2. a 5-epoch `quick` run through the CLI (epoch times from metrics.jsonl's `time_s`) and the
#    150-epoch SHD recipe projected from step 1;
# 3. triton_check.py: every Triton kernel compiled for real against the torch backend;
# 4. ddp_smoke.py: a one-process NCCL DDP run (wrapper + BatchNorm all-reduce).
#
# Output: $OUT (default /tmp/gpu_check) holds every JSON, the run folder and summary.txt.
set -euo pipefail

DEVICE=cuda
BENCH_ARGS=(--batch 256)
TRAIN_SETS=(--set train.epochs=5)
TIMEOUT_BENCH=300 TIMEOUT_TRAIN=240 TIMEOUT_CHECK=120
if [[ "${1:-}" == "--cpu" ]]; then
  DEVICE=cpu
  BENCH_ARGS=(--quick --sigma final)
  TRAIN_SETS=(--set train.epochs=1 --set train.batch_size=64 --set model.hidden=[16,16]
              --set model.max_delay=9)
  TIMEOUT_BENCH=240 TIMEOUT_TRAIN=240 TIMEOUT_CHECK=240
elif [[ -n "${1:-}" ]]; then
  echo "usage: bash benchmarks/gpu_check.sh [--cpu]" >&2
  exit 2
fi
OUT="${OUT:-/tmp/gpu_check}"
PY="${PYTHON:-python}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE/../src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
rm -rf "$OUT/run" "$OUT"/*.json "$OUT/gpu.txt"

if [[ "$DEVICE" == cuda ]]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    > "$OUT/gpu.txt" 2>/dev/null || true
fi

step() {  # step NAME TIMEOUT CMD... : run, keep the log, say which step failed
  local name=$1 limit=$2
  shift 2
  local t0
  t0=$(date +%s)
  if ! timeout "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.log"; then
    echo "gpu_check: step '$name' failed; last lines of its log:" >&2
    tail -20 "$OUT/$name.log" >&2
    exit 1
  fi
  echo "$name $(( $(date +%s) - t0 ))" >> "$OUT/times.txt"
}
: > "$OUT/times.txt"

step train_speed "$TIMEOUT_BENCH" "$PY" "$HERE/train_speed.py" --device "$DEVICE" \
  "${BENCH_ARGS[@]}" --json
step quick_run "$TIMEOUT_TRAIN" "$PY" -m spikedelay train --config quick "${TRAIN_SETS[@]}" \
  --set "train.device=$DEVICE" --out "$OUT/run" --quiet
step triton_check "$TIMEOUT_CHECK" "$PY" "$HERE/triton_check.py" --device "$DEVICE" --json
step ddp_smoke "$TIMEOUT_CHECK" "$PY" "$HERE/ddp_smoke.py" --device "$DEVICE"

"$PY" - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
times = dict(line.split() for line in (out / "times.txt").read_text().splitlines())
r = json.loads((out / "train_speed.out").read_text())
gpu = (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").exists() else r["device"]
print(f"device: {gpu}")
cfg = r["config"]
print(f"1. train_speed (batch {cfg['batch']}, hidden {cfg['hidden']}, K {cfg['max_delay']}, "
      f"{cfg['frames']} frames, TF32 off both sides), {times['train_speed']} s:")
mem = "max_memory_allocated_mb" if r["device"].startswith("cuda") else "peak_rss_mb"
for run in r["runs"]:
    a, b = run["reference"], run["spikedelay"]
    print(f"   sigma {run['sigma']:g}: reference {a['samples_per_s']:.1f}/s {a[mem]:.0f} MB, "
          f"spikedelay {b['samples_per_s']:.1f}/s {b[mem]:.0f} MB -> speedup "
          f"{run['speedup']:.1f}x, memory ratio {run['memory_ratio']:.2f}")
num = r.get("numerics", {})
print(f"   numerics ({num.get('dtype')}): {'OK' if num.get('ok') else 'MISMATCH'}")
weighted = r.get("schedule_weighted")
if weighted:
    print(f"   schedule-weighted speedup over 150 epochs: {weighted['speedup']:.1f}x")
    shd_train = 8156  # SHD training samples (the validation split takes part of them)
    steps = -(-shd_train // cfg["batch"])
    hours = 150 * steps * weighted["step_s"]["spikedelay"] / 3600
    print(f"   projected SHD recipe, 150 epochs x {steps} steps: {hours:.2f} h of training "
          f"steps (reference formulation: "
          f"{150 * steps * weighted['step_s']['reference'] / 3600:.2f} h)")
metrics = out / "run" / "metrics.jsonl"
rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
epoch_s = [row["time_s"] for row in rows]
print(f"2. quick run: {len(rows)} epochs in {times['quick_run']} s; epoch times "
      + ", ".join(f"{t:.1f}" for t in epoch_s) + " s")
if len(epoch_s) > 1:
    steady = sorted(epoch_s[1:])[len(epoch_s[1:]) // 2]
    print(f"   steady epoch (median after the first, which compiles): {steady:.2f} s")
last = rows[-1]
print(f"   last epoch: train_loss {last['train_loss']:.3f}, train_acc {last['train_acc']:.3f}"
      + (f", val_acc {last['val_acc']:.3f}" if "val_acc" in last else ""))
t = json.loads((out / "triton_check.out").read_text())
mode = "interpreted" if t["interpreted"] else "compiled"
print(f"3. Triton kernels ({mode}, {t['dtype']}) vs torch backend, {times['triton_check']} s:")
for k in t["kernels"]:
    print(f"   {k['kernel']:>18}: max rel err {k['max_rel_err']:.1e}, spike mismatches "
          f"{k['spike_mismatches']}, {k['triton_ms']:.2f} ms vs {k['torch_ms']:.2f} ms "
          f"({k['speedup']:.1f}x) {'OK' if k['ok'] else 'FAIL'}")
d = json.loads((out / "ddp_smoke.out").read_text())
print(f"4. DDP smoke ({d['backend']}, 1 process, {d['steps']} steps): max rel diff to no DDP "
      f"{d['max_rel_diff']:.1e} {'OK' if d['ok'] else 'FAIL'}")
ok = num.get("ok") and t["ok"] and d["ok"]
print("gpu_check: " + ("OK" if ok else "FAILED"))
sys.exit(0 if ok else 1)
EOF
