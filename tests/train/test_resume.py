"""Exact resume: a real `python -m spikedelay train` is SIGKILLed inside a checkpoint write
(random epoch, random point of the write), rerun, and must end bit-identical to an uninterrupted
run, with each epoch once in metrics.jsonl; dropout is on, so the RNG state must resume too.

The uninterrupted reference runs in this process through the same CLI entry point; the
interrupted run is two subprocesses. ~30-60 s on 2 loaded cores (subprocess start-up, mostly
importing torch, dominates). The kill point is random; its seed is in every failure message.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from spikedelay.atomic import WRITE_PAUSE_ENV as _WRITE_PAUSE_ENV
from spikedelay.checkpoint import load_checkpoint
from spikedelay.cli import main

EPOCHS = 5
TINY = f"""\
data: {{dataset: shd, bin_ms: 20.0, channel_group: 50, val_fraction: 0.2}}
model: {{in_features: 14, hidden: [12, 12], n_classes: 3, max_delay: 9, dropout: 0.2}}
train: {{epochs: {EPOCHS}, batch_size: 8, deterministic: true, device: cpu, threads: 1}}
"""


def _metric_lines(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows


def _wait(proc: subprocess.Popen, condition, timeout: float = 120.0) -> bool:
    """Poll every 5 ms until ``condition()`` or the process ends; True if the condition held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError("training subprocess made no progress in time")


def _tensors(state, prefix=""):
    """Flatten a loaded checkpoint into {path: tensor-or-value}."""
    if isinstance(state, dict):
        out = {}
        for k, v in state.items():
            out.update(_tensors(v, f"{prefix}/{k}"))
        return out
    if isinstance(state, (list, tuple)):
        out = {}
        for i, v in enumerate(state):
            out.update(_tensors(v, f"{prefix}/{i}"))
        return out
    return {prefix: state}


def _assert_identical(a_path: Path, b_path: Path, what: str) -> None:
    a, b = _tensors(load_checkpoint(a_path)), _tensors(load_checkpoint(b_path))
    assert a.keys() == b.keys(), what
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), f"{what}: {key}"
        else:
            assert a[key] == b[key], f"{what}: {key}"


def test_sigkill_anywhere_then_rerun_is_bit_identical(shd_root, tmp_path, capsys,
                                                       restore_torch_globals):
    # Replay a failure with SPIKEDELAY_TEST_SEED=<the seed in its message>.
    seed = int(os.environ.get("SPIKEDELAY_TEST_SEED") or int.from_bytes(os.urandom(4), "little"))
    rng = random.Random(seed)
    why = f"(random seed {seed})"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    args = ["train", "--config", str(cfg), "--data", str(shd_root), "--quiet"]

    ref = tmp_path / "reference"
    assert main([*args, "--out", str(ref)]) == 0
    capsys.readouterr()

    run = tmp_path / "killed"
    # The pause sits between fsync and rename of every atomic write, so a kill while a
    # temporary file exists lands inside a checkpoint write (the hardest moment: metrics.jsonl
    # already has the epoch's line, `last` does not have the epoch yet).
    env = {**os.environ, _WRITE_PAUSE_ENV: "0.6", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "spikedelay", *args, "--out", str(run)]
    epoch = rng.randint(2, EPOCHS - 1)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        hit = _wait(proc, lambda: any(run.glob(".last.safetensors.*.tmp"))
                    and len(_metric_lines(run)) >= epoch)
        time.sleep(rng.uniform(0.0, 0.3))  # a random point inside the write window
        assert hit and proc.poll() is None, (proc.stderr.read(), why)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, why
    # What the kill left on disk is loadable: `last` is the previous epoch's, metrics has one
    # line too many, and the temporary file is still there.
    resumed_from = load_checkpoint(run / "last.safetensors")["epoch"]
    lines = len(_metric_lines(run))
    assert list(run.glob(".last.safetensors.*.tmp")), ("kill missed the write", why)
    assert resumed_from == lines - 1 and lines >= epoch, (resumed_from, lines, epoch, why)

    final = subprocess.run(cmd, env={**env, _WRITE_PAUSE_ENV: "0"}, capture_output=True,
                           text=True, timeout=300)
    assert final.returncode == 0, (final.stdout + final.stderr)[-3000:]
    assert f"after epoch {resumed_from}/{EPOCHS}" in final.stdout, (final.stdout, why)
    assert resumed_from < EPOCHS, why

    _assert_identical(ref / "last.safetensors", run / "last.safetensors", f"last {why}")
    _assert_identical(ref / "best.safetensors", run / "best.safetensors", f"best {why}")
    ref_rows, rows = _metric_lines(ref), _metric_lines(run)
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1)), why
    for r_ref, r in zip(ref_rows, rows, strict=True):  # every number but the wall time
        assert {**r, "time_s": 0} == {**r_ref, "time_s": 0}, why
    ref_final = json.loads((ref / "metrics.json").read_text())
    got_final = json.loads((run / "metrics.json").read_text())
    assert {k: got_final[k] for k in ("test_acc", "test_loss", "val_acc", "best_epoch")} == {
        k: ref_final[k] for k in ("test_acc", "test_loss", "val_acc", "best_epoch")}, why
    assert not list(run.glob(".*.tmp")), why  # killed writes leave no temporaries behind


def test_finished_run_is_not_trained_again(shd_root, tmp_path, capsys, restore_torch_globals):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.replace(f"epochs: {EPOCHS}", "epochs: 2"))
    args = ["train", "--config", str(cfg), "--data", str(shd_root), "--quiet", "--out",
            str(tmp_path / "run")]
    assert main(args) == 0
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()}
    capsys.readouterr()
    assert main(args) == 0
    assert "already finished" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()} == before


def test_metrics_lines_past_the_checkpoint_are_dropped_on_resume(tmp_path):
    from spikedelay.train.metrics_log import MetricsLog

    run = tmp_path
    lines = [json.dumps({"epoch": e, "x": e}) for e in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"epoch": 4, "x"')  # half a line
    log = MetricsLog(run, keep_epochs=2, tensorboard=False)
    assert [r["epoch"] for r in log.history] == [1, 2]
    log.write({"epoch": 3, "x": 30})
    assert [json.loads(ln)["x"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [
        1, 2, 30]
