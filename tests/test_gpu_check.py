"""``benchmarks/gpu_check.sh --cpu``: the GPU check's every step, dry-run on CPU (~1-2 min).

Catches a broken step or a summary that reads keys the runs do not write (the script once read
``epoch_s``; runs write ``time_s``): the epoch times printed must be those in metrics.jsonl.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_gpu_check_dry_run_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.pop("SPIKEDELAY_KERNELS", None)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    summary = (tmp_path / "summary.txt").read_text()
    assert summary == done.stdout
    assert summary.rstrip().endswith("gpu_check: OK")
    for section in ("1. train_speed", "numerics (float64): OK", "2. quick run: 1 epochs",
                    "3. Triton kernels (interpreted, float32)", "4. DDP smoke (gloo"):
        assert section in summary, section
    kernels = re.findall(r"^ +(\w+): max rel err", summary, flags=re.M)
    assert kernels == ["lif_forward", "lif_backward", "li_forward", "li_backward",
                       "masked_bn_forward", "masked_bn_backward", "bn_lif_forward",
                       "bn_lif_backward", "gaussian_forward", "gaussian_backward",
                       "channel_delay_forward", "channel_delay_backward", "recurrent_forward",
                       "recurrent_backward", "adaptive_forward", "adaptive_backward"]
    rows = [json.loads(line) for line in
            (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    printed = re.search(r"epoch times ([\d., ]+) s", summary).group(1)
    assert [float(v) for v in printed.split(",")] == [round(r["time_s"], 1) for r in rows]
