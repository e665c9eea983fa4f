"""Data-parallel training: 2 CPU processes under torchrun (gloo) give the weights of one process
with the same global batch (BatchNorm statistics and loss taken over the global batch). The
batch size 7 makes the two shares unequal (4 + 3), so a per-process mean loss would show.

Runs in ~30-60 s on 2 loaded cores (mostly the start-up of three Python processes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from spikedelay.checkpoint import load_checkpoint
from spikedelay.config import load_config
from spikedelay.train.distributed import World
from spikedelay.train.run import train_run
from spikedelay.train.setup import build_model

TINY = """\
data: {dataset: shd, bin_ms: 20.0, channel_group: 50, val_fraction: 0.2}
model: {in_features: 14, hidden: [12, 12], n_classes: 3, max_delay: 9, dropout: 0.0}
train: {epochs: 3, batch_size: 7, deterministic: true, device: cpu, threads: 1}
"""


@pytest.mark.parametrize("n,size", [(8, 2), (7, 2), (1, 2), (10, 3), (5, 1)])
def test_shares_cover_the_global_batch_once(n, size):
    parts = [World(rank=r, size=size, local_rank=r, backend="gloo", stats_group=None).share(n)
             for r in range(size)]
    rows = [i for p in parts for i in range(n)[p]]
    assert rows == list(range(n))
    assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1


def test_two_processes_match_one_process(shd_root, tmp_path, restore_torch_globals):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(TINY)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    ddp_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "spikedelay", "train", "--config", str(cfg_path), "--data", str(shd_root),
           "--out", str(ddp_dir), "--quiet"]
    ddp = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        # The single-process reference runs here while the two workers start up.
        one_dir = tmp_path / "one"
        cfg = load_config(str(cfg_path), [f"data.root={shd_root}"])
        train_run(cfg, one_dir, progress=False, log=lambda _: None)
        out, err = ddp.communicate(timeout=240)
    finally:
        if ddp.poll() is None:
            ddp.kill()
    assert ddp.returncode == 0, err[-3000:]
    assert out.count("run folder:") == 1 and out.count("epoch 3/3") == 1, out  # rank 0 only

    for name in ("last.safetensors", "best.safetensors"):
        a, b = load_checkpoint(one_dir / name)["model"], load_checkpoint(ddp_dir / name)["model"]
        assert a.keys() == b.keys()
        for key in a:
            if a[key].is_floating_point():
                torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-5, msg=key)
            else:
                assert torch.equal(a[key], b[key]), key
    # Training moved the weights, so the comparison is not between two initialisations.
    torch.manual_seed(cfg.train.seed)
    init = build_model(cfg, torch.device("cpu")).state_dict()
    last = load_checkpoint(one_dir / "last.safetensors")["model"]
    moved = max(float((last[k] - init[k]).abs().max()) for k in init if k.endswith("weight"))
    assert moved > 1e-2
    one = [json.loads(ln) for ln in (one_dir / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(ln) for ln in (ddp_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in two] == [1, 2, 3]
    for r1, r2 in zip(one, two, strict=True):
        assert r2["train_loss"] == pytest.approx(r1["train_loss"], rel=1e-5)
        assert r2["train_acc"] == r1["train_acc"] and r2["val_acc"] == r1["val_acc"]
        assert r2["val_loss"] == pytest.approx(r1["val_loss"], rel=1e-5)
    final = json.loads((ddp_dir / "metrics.json").read_text())
    assert final["test_acc"] == json.loads((one_dir / "metrics.json").read_text())["test_acc"]
    assert not list(ddp_dir.glob(".*.tmp"))
