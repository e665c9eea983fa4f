"""The Python API: `spikedelay.train` stays callable next to the `spikedelay.train` package,
overrides mean the same in both spellings, `out=None` writes nothing, and every option of the
deployment commands has help. (docs/python.md's examples run as doctests too.) ~10 s."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

import pytest

import spikedelay
from spikedelay.cli import build_parser
from spikedelay.config import dump_config
from spikedelay.errors import ConfigError

TINY = {"model.in_features": 14, "model.hidden": [8], "model.n_classes": 3,
        "model.max_delay": 5, "data.dataset": "shd", "data.bin_ms": 20.0,
        "data.channel_group": 50, "data.val_fraction": 0.2, "train.epochs": 2,
        "train.batch_size": 8, "train.device": "cpu", "train.deterministic": True}


def test_train_is_callable_before_and_after_its_package_is_imported():
    assert callable(spikedelay.train)
    importlib.import_module("spikedelay.train.run")
    import spikedelay.train.loop as loop  # the attribute path through the package still works

    assert callable(spikedelay.train) and spikedelay.train.loop is loop
    assert "out" in __import__("inspect").signature(spikedelay.train).parameters


def test_mapping_and_cli_overrides_are_the_same_config():
    a = spikedelay.load_config("quick", {"train.epochs": 3, "model.hidden": [32, 32]})
    b = spikedelay.load_config("quick", ["train.epochs=3", "model.hidden=[32, 32]"])
    assert dump_config(a) == dump_config(b)
    assert (a.train.epochs, a.model.hidden) == (3, [32, 32])
    with pytest.raises(ConfigError, match="expected 'section.key'"):
        spikedelay.load_config("quick", {"epochs": 3})


def _all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")} if root.exists() else set()


def test_train_out_none_writes_nothing(tmp_path, shd_root, monkeypatch, restore_torch_globals):
    cache = Path(os.environ["SPIKEDELAY_CACHE"])  # private to this test session (conftest)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = spikedelay.load_config("quick", {**TINY, "data.root": str(shd_root)})
    before_cache, before_data = _all_files(cache), _all_files(shd_root)
    final = spikedelay.train(cfg, out=None, log=None)
    assert final["epochs"] == 2 and final["test_samples"] == 12
    assert _all_files(cache) == before_cache  # no new frame-cache entry
    assert _all_files(shd_root) == before_data and not any(work.iterdir())
    # With a folder, the same run: files appear, and the numbers are the in-memory ones.
    folder = spikedelay.train(cfg, out=tmp_path / "run", log=None)
    assert (tmp_path / "run" / "best.safetensors").is_file()
    for key in ("val_acc", "test_acc", "test_loss", "params", "best_epoch"):
        assert folder[key] == final[key], key
    assert spikedelay.evaluate(tmp_path / "run")["test_acc"] == final["test_acc"]


@pytest.mark.parametrize("command", ["export", "report"])
def test_every_option_of_export_and_report_has_help(command):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    missing = [a.dest for a in parser._actions
               if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, f"{command}: options without help: {missing}"
