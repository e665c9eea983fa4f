"""End to end through the CLI: train on a tiny timing task, then `eval` reproduces test_acc."""

import json
import subprocess
import sys

import pytest

from spikedelay.cli import main


@pytest.fixture
def timing_root(tmp_path, write_timing_task):
    root = tmp_path / "timing"
    root.mkdir()
    write_timing_task(root / "shd_train.h5", 8, range(0, 6), seed=0)
    write_timing_task(root / "shd_test.h5", 8, range(6, 8), seed=1)
    return root


TINY = ["--set", "model.hidden=[24]", "--set", "model.n_classes=3", "--set", "model.max_delay=9",
        "--set", "train.epochs=12", "--set", "train.batch_size=16", "--set", "model.dropout=0.1",
        "--set", "data.val_fraction=0.2", "--set", "train.lr=0.01"]


def test_train_then_eval_reproduces_test_accuracy(timing_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(timing_root), "--out", str(run), "--quiet", *TINY]) == 0
    final = json.loads((run / "metrics.json").read_text())
    assert final["protocol"] == "validation"
    assert final["test_acc"] > 0.6, final  # chance is 1/3
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == list(range(1, 13))
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_acc"] == final["test_acc"]
    # A finished run is reported, not trained again.
    assert main(["train", "--data", str(timing_root), "--out", str(run), "--quiet", *TINY]) == 0
    assert "already finished" in capsys.readouterr().out


def test_test_selected_protocol_is_labelled(timing_root, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(timing_root), "--out", str(run), "--quiet", *TINY,
            "--set", "train.epochs=2", "--set", "train.protocol=test-selected"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "TEST set" in out
    assert "TEST set" in json.loads((run / "metrics.json").read_text())["protocol_label"]


def test_user_errors_exit_2_with_one_message(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "spikedelay", "train", "--data", str(tmp_path / "missing"),
         "--set", "model.dropout=3"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "data.root" in proc.stderr and "model.dropout" in proc.stderr


def test_missing_data_location_leaves_no_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "shd"]) == 2
    assert "pass --data DIR" in capsys.readouterr().err
    assert main(["train", "--config", "gsc", "--data", str(tmp_path)]) == 2
    assert "validation_list.txt" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
