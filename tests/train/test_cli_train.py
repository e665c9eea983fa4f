"""`train` and `eval` options: shortcuts, run identity, --split, the confusion matrix,
--init-from, a checkpoint write that fails, the compile notice. Tiny data; ~40 s on 2 cores."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import spikedelay.checkpoint as checkpoint_module
from spikedelay.atomic import atomic_write
from spikedelay.checkpoint import load_checkpoint
from spikedelay.cli import main
from spikedelay.config import load_config
from spikedelay.data.framing import Framing
from spikedelay.data.hdf5 import read_spike_file
from spikedelay.deploy.net import from_run
from spikedelay.train import kernel_notice
from spikedelay.train.run import train_run
from spikedelay.train.run_folder import run_hash

TINY = """\
data: {dataset: shd, bin_ms: 20.0, channel_group: 50, val_fraction: 0.2}
model: {in_features: 14, hidden: [8], n_classes: 3, max_delay: 5, dropout: 0.1}
train: {epochs: 2, batch_size: 8, device: cpu}
"""


@pytest.fixture
def tiny(tmp_path, shd_root, restore_torch_globals):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    return cfg, shd_root


def _args(tiny, out: Path, *extra: str) -> list[str]:
    cfg, data = tiny
    return ["train", "--config", str(cfg), "--data", str(data), "--quiet", "--out", str(out),
            *extra]


def _error(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return err


# ------------------------------------------------------------------------------ --device/--seed
def test_device_seed_epochs_are_shortcuts_for_set(tiny, tmp_path):
    assert main(_args(tiny, tmp_path / "a", "--device", "cpu", "--seed", "3",
                      "--epochs", "1")) == 0
    saved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert (saved["train"]["device"], saved["train"]["seed"], saved["train"]["epochs"]) == \
        ("cpu", 3, 1)
    assert main(_args(tiny, tmp_path / "b", "--set", "train.device=cpu", "--set",
                      "train.seed=3", "--set", "train.epochs=1")) == 0
    assert (tmp_path / "b" / "config.yaml").read_text() == \
        (tmp_path / "a" / "config.yaml").read_text()
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["seed"] == 3 and a["epochs"] == 1 and a["test_acc"] == b["test_acc"]


# ------------------------------------------------------------------------------- run identity
def test_device_threads_and_data_spelling_are_not_the_run_identity(tiny, tmp_path,
                                                                   monkeypatch):
    cfg_file, data = tiny
    base = load_config(str(cfg_file), [f"data.root={data}"])
    monkeypatch.chdir(data.parent)
    same = [
        load_config(str(cfg_file), [f"data.root={data}", "train.device=auto", "train.threads=2"]),
        load_config(str(cfg_file), [f"data.root={data.parent}/./{data.name}/"]),
        load_config(str(cfg_file), [f"data.root={data.name}"]),  # relative to the cwd
    ]
    assert {run_hash(c) for c in same} == {run_hash(base)}
    other = load_config(str(cfg_file), [f"data.root={data}", "train.seed=1"])
    assert run_hash(other) != run_hash(base)

    # A run started on one device with one spelling resumes with another.
    run = tmp_path / "run"
    assert train_run(base, run, progress=False, log=lambda _: None, stop_after_epochs=1) == \
        {"stopped_after": 1}
    logged: list[str] = []
    moved = load_config(str(cfg_file), [f"data.root={data.name}/", "train.device=auto",
                                        "train.threads=1"])
    final = train_run(moved, run, progress=False, log=logged.append)
    assert any("resuming" in line and "after epoch 1/2" in line for line in logged), logged
    assert final["epochs"] == 2
    with pytest.raises(Exception, match="different config"):
        train_run(other, run, progress=False, log=lambda _: None)


# --------------------------------------------------------------------- eval --split, confusion
def test_eval_split_val_and_confusion_matrix(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_args(tiny, run, "--set", "model.hidden=[16]", "--epochs", "3")) == 0
    final = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "val"]) == 0
    val = json.loads(capsys.readouterr().out)
    assert val["split"] == "val" and val["val_acc"] == final["val_acc"]
    assert val["val_samples"] == final["val_samples"]
    assert main(["eval", str(run), "--json"]) == 0
    test = json.loads(capsys.readouterr().out)
    assert test["test_acc"] == final["test_acc"]

    # The confusion matrix counts the streaming engine's predictions, one sample at a time.
    rec = read_spike_file(tiny[1] / "shd_test.h5")
    framing, net = Framing(bin_ms=20.0, channel_group=50), from_run(run)
    counts = np.zeros((3, 3), dtype=int)
    for times, units, label in zip(rec.times, rec.units, rec.labels, strict=True):
        frames = framing(times, units)[None]
        counts[int(label), int(net.predict(frames)[0])] += 1
    assert test["confusion"] == counts.tolist()
    assert test["class_names"] == ["class0", "class1", "class2"]


# -------------------------------------------------------------------------------- --init-from
def test_init_from_starts_from_the_other_runs_weights(tiny, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(_args(tiny, first, "--epochs", "1")) == 0
    source = load_checkpoint(first / "best.safetensors")["model"]
    second = tmp_path / "second"
    # No learning at all (lr ~ 0, positions frozen): the weights stay the source's.
    assert main(_args(tiny, second, "--epochs", "1", "--init-from", str(first), "--set",
                      "train.lr=1e-30", "--set", "train.lr_positions=0")) == 0
    assert f"initial weights from {first / 'best.safetensors'}" in capsys.readouterr().out
    got = load_checkpoint(second / "last.safetensors")["model"]
    for key in ("hidden.0.delay.weight", "hidden.0.delay.position", "readout.weight"):
        torch.testing.assert_close(got[key], source[key], rtol=0, atol=1e-6)
    # A fresh start differs from the source by far more than that.
    fresh = tmp_path / "fresh"
    assert main(_args(tiny, fresh, "--epochs", "1", "--seed", "5", "--set", "train.lr=1e-30",
                      "--set", "train.lr_positions=0")) == 0
    other = load_checkpoint(fresh / "last.safetensors")["model"]
    assert (other["readout.weight"] - source["readout.weight"]).abs().max() > 1e-2


def test_init_from_another_architecture_is_a_clear_error(tiny, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(_args(tiny, first, "--epochs", "1")) == 0
    capsys.readouterr()
    assert main(_args(tiny, tmp_path / "wide", "--init-from", str(first),
                      "--set", "model.hidden=[12]")) == 2
    err = _error(capsys.readouterr().err)
    assert "do not fit this model" in err and "hidden.0.delay.weight: (8, 14, 1) there, " \
        "(12, 14, 1) here" in err
    assert main(_args(tiny, tmp_path / "none", "--init-from", str(tmp_path / "nope"))) == 2
    assert "not found" in _error(capsys.readouterr().err)


# ------------------------------------------------------------------- a checkpoint write fails
def test_a_failed_checkpoint_write_keeps_the_previous_one(tiny, tmp_path, capsys,
                                                          monkeypatch):
    """Disk full while `last.safetensors` of epoch 2 is written: one error, exit 2, epoch 1's
    file intact and no temporary left; the same command then resumes and finishes."""
    run = tmp_path / "run"
    real = checkpoint_module.atomic_write_bytes
    writes: list[str] = []
    after_epoch_1: dict[str, str] = {}

    def disk_full_on_second_last(path, data):
        path = Path(path)
        if path.name == "last.safetensors":
            writes.append(path.name)
            if len(writes) == 2:
                after_epoch_1["sha"] = hashlib.sha256(path.read_bytes()).hexdigest()

                def half_then_full(tmp: Path) -> None:
                    tmp.write_bytes(data[: len(data) // 2])
                    raise OSError(errno.ENOSPC, "No space left on device")

                return atomic_write(path, half_then_full)
        return real(path, data)

    monkeypatch.setattr(checkpoint_module, "atomic_write_bytes", disk_full_on_second_last)
    assert main(_args(tiny, run, "--epochs", "3")) == 2
    err = _error(capsys.readouterr().err)
    assert "last.safetensors" in err and "No space left on device" in err
    assert "previous version" in err and "rerun the same command" in err
    assert hashlib.sha256((run / "last.safetensors").read_bytes()).hexdigest() == \
        after_epoch_1["sha"]
    assert load_checkpoint(run / "last.safetensors")["epoch"] == 1
    assert not list(run.glob(".*.tmp"))

    monkeypatch.setattr(checkpoint_module, "atomic_write_bytes", real)
    assert main(_args(tiny, run, "--epochs", "3")) == 0
    assert "resuming" in capsys.readouterr().out
    epochs = [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


# ---------------------------------------------------------------------------- compile notice
def test_compile_notice_follows_numbas_cache(tiny, tmp_path, monkeypatch, capsys):
    """After the kernels ran, numba's cache holds them and no notice is printed; with an empty
    cache the notice comes before the first epoch."""
    from spikedelay.config import ModelConfig
    from spikedelay.model import DelaySNN

    model = DelaySNN(ModelConfig(in_features=14, hidden=[8], n_classes=3, max_delay=9))
    x = (torch.rand(4, 20, 14) < 0.2).float()
    model(x, torch.full((4,), 20))[0].sum().backward()  # numba compiles (or loads) its kernels
    assert kernel_notice.kernels_cached()
    assert main(_args(tiny, tmp_path / "warm", "--epochs", "1")) == 0
    assert kernel_notice.COMPILE_NOTICE not in capsys.readouterr().out

    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setattr(kernel_notice, "cache_dirs", lambda source: [empty])
    assert not kernel_notice.kernels_cached()
    assert main(_args(tiny, tmp_path / "cold", "--epochs", "1")) == 0
    out = capsys.readouterr().out
    assert kernel_notice.COMPILE_NOTICE in out
    assert out.index(kernel_notice.COMPILE_NOTICE) < out.index("epoch 1/1")
