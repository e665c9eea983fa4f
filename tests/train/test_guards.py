"""Numerical guards and damaged checkpoints: a clear message, a non-zero exit, nothing lost.

Runs the CLI in this process (`main([...])`, the code path of `spikedelay ...`) on tiny data;
~10-20 s on 2 loaded cores.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import spikedelay.train.run as run_module
from spikedelay.checkpoint import load_checkpoint, save_checkpoint
from spikedelay.cli import main
from spikedelay.errors import CheckpointError, TrainingDiverged
from spikedelay.train.loop import train_epoch

TINY = """\
data: {dataset: shd, bin_ms: 20.0, channel_group: 50, val_fraction: 0.2}
model: {in_features: 14, hidden: [8], n_classes: 3, max_delay: 5, dropout: 0.1}
train: {epochs: 3, batch_size: 8, device: cpu}
"""


@pytest.fixture
def train_args(shd_root, tmp_path, restore_torch_globals):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    return ["train", "--config", str(cfg), "--data", str(shd_root), "--quiet",
            "--out", str(tmp_path / "run")]


def _digests(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.iterdir()) if p.is_file()}


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return err


# ---------------------------------------------------------------------------- NaN / Inf guards
def test_nan_in_the_data_stops_naming_epoch_and_step_and_keeps_the_checkpoint(
        train_args, tmp_path, monkeypatch, capsys):
    """Frames get a NaN in the 2nd batch of epoch 3; epochs 1-2 and their files must survive."""
    run = tmp_path / "run"
    real_batches = run_module._batches
    epochs_seen = []
    on_disk_before = {}

    def poisoned(dataset, cfg, *, shuffle, generator=None):
        if shuffle:
            epochs_seen.append(None)
        for step, (x, lengths, labels) in enumerate(
                real_batches(dataset, cfg, shuffle=shuffle, generator=generator)):
            if shuffle and len(epochs_seen) == 3 and step == 1:
                on_disk_before.update(_digests(run))  # what epochs 1-2 left
                x = x.clone()
                x[0, 0, 0] = float("nan")
            yield x, lengths, labels

    monkeypatch.setattr(run_module, "_batches", poisoned)
    assert main(train_args) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert "non-finite loss or gradient at epoch 3, step 2" in err
    assert "last.safetensors (after epoch 2) is unchanged" in err
    assert _digests(run) == on_disk_before  # nothing written after the bad step
    assert load_checkpoint(run / "last.safetensors")["epoch"] == 2
    assert [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2]
    assert not (run / "metrics.json").exists()
    # The weights in `last` are finite: the NaN step was never applied.
    assert all(torch.isfinite(t).all() for t in load_checkpoint(run / "last.safetensors")
               ["model"].values() if t.is_floating_point())


def test_huge_learning_rate_is_stopped_with_a_clear_message(train_args, tmp_path, capsys):
    assert main([*train_args, "--set", "train.lr=1e30"]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert "non-finite loss or gradient at epoch 1, step" in err and "train.lr" in err
    assert "no checkpoint had been written yet" in err
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_nan_gradient_with_a_finite_loss_is_caught_before_the_update():
    from spikedelay.config import ModelConfig
    from spikedelay.model import DelaySNN

    torch.manual_seed(0)
    model = DelaySNN(ModelConfig(in_features=4, hidden=[6], n_classes=3, max_delay=3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model.readout.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
    batches = [(torch.rand(5, 7, 4), torch.full((5,), 7), torch.tensor([0, 1, 2, 0, 1]))]
    with pytest.raises(TrainingDiverged, match=r"epoch 4, step 1 \(loss = [0-9.]+\)"):
        train_epoch(model, batches, [opt], epoch=3)
    assert not opt.state  # no Adam step was taken
    for k, v in model.state_dict().items():
        if v.is_floating_point() and "running" not in k:  # BN running stats move in forward
            assert torch.equal(v, before[k]), k


# ------------------------------------------------------------------------ damaged checkpoints
def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) * 2 // 3]))
    elif how == "bit flip in the weights":
        data[-5] ^= 0x10  # the tensor bytes are at the end of a safetensors file
        path.write_bytes(bytes(data))
    elif how == "garbage":
        path.write_bytes(b"PK\x03\x04 this is a zip, not a checkpoint" * 20)
    elif how == "empty":
        path.write_bytes(b"")
    else:
        raise AssertionError(how)


DAMAGE = ["truncated", "bit flip in the weights", "garbage", "empty"]


def test_a_flipped_bit_is_detected(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.arange(1000, dtype=torch.float32), "epoch": 1})
    _damage(path, "bit flip in the weights")
    with pytest.raises(CheckpointError, match="c.safetensors.*corrupt.*SHA-256"):
        load_checkpoint(path)


@pytest.mark.parametrize("how", DAMAGE)
def test_eval_of_a_damaged_checkpoint_is_a_clear_error(train_args, tmp_path, capsys, how):
    run = tmp_path / "run"
    assert main([*train_args, "--set", "train.epochs=1"]) == 0
    _damage(run / "best.safetensors", how)
    before = _digests(run)
    capsys.readouterr()
    assert main(["eval", str(run)]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert "best.safetensors" in err
    assert _digests(run) == before  # nothing deleted or rewritten


@pytest.mark.parametrize("how", ["truncated", "bit flip in the weights"])
def test_resume_from_a_damaged_checkpoint_is_a_clear_error(train_args, tmp_path, capsys, how):
    run = tmp_path / "run"
    assert main([*train_args, "--set", "train.epochs=2"]) == 0
    (run / "metrics.json").unlink()  # pretend the run was interrupted after epoch 2
    _damage(run / "last.safetensors", how)
    before = _digests(run)
    capsys.readouterr()
    assert main([*train_args, "--set", "train.epochs=2"]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert "last.safetensors: cannot resume from it" in err and "move last.safetensors away" in err
    assert _digests(run) == before


def test_resume_from_a_checkpoint_of_another_model_is_a_clear_error(train_args, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*train_args, "--set", "train.epochs=2"]) == 0
    (run / "metrics.json").unlink()
    state = load_checkpoint(run / "last.safetensors")
    state["model"]["hidden.0.delay.weight"] = torch.zeros(3, 3, 3)
    save_checkpoint(run / "last.safetensors", state)
    capsys.readouterr()
    assert main([*train_args, "--set", "train.epochs=2"]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert "cannot resume" in err and "RuntimeError" in err


def test_eval_with_a_missing_run_or_checkpoint(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in _one_error_line(capsys.readouterr().err)
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty")]) == 2
    assert "checkpoint not found" in _one_error_line(capsys.readouterr().err)


def test_numba_pool_follows_the_torch_thread_count(monkeypatch):
    """``train.threads`` (or torchrun's OMP_NUM_THREADS) also bounds numba's own pool."""
    import os
    import sys

    import numba

    from spikedelay.train.setup import limit_numba_threads

    before = numba.get_num_threads()
    try:
        limit_numba_threads(1)
        assert numba.get_num_threads() == 1
        limit_numba_threads(10_000)  # never more than numba's pool
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    finally:
        numba.set_num_threads(before)
    # before numba is imported, the limit goes through its environment variable
    monkeypatch.delitem(sys.modules, "numba")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "8")
    limit_numba_threads(2)
    assert os.environ["NUMBA_NUM_THREADS"] == "2"
    limit_numba_threads(4)  # a smaller setting already there stays
    assert os.environ["NUMBA_NUM_THREADS"] == "2"
