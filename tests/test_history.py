"""metrics.jsonl reading: the valid history is epochs 1, 2, 3, … in order; the rest is cut."""

import json

from spikedelay.history import read_history, read_history_lines


def _write(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines))


def test_history_stops_at_a_torn_line_or_a_repeated_epoch(tmp_path):
    rows = [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}, {"epoch": 3, "loss": 1.2}]
    good = [json.dumps(r) for r in rows]
    _write(tmp_path / "metrics.jsonl", good + ['{"epoch": 4, "lo'])  # killed mid-write
    assert read_history(tmp_path) == rows
    _write(tmp_path / "metrics.jsonl", good[:2] + [good[1], good[2]])  # epoch 2 redone
    assert read_history(tmp_path) == rows[:2]
    _write(tmp_path / "metrics.jsonl", ["[1, 2]", *good])  # not a row at all
    assert read_history(tmp_path) == []


def test_history_up_to_an_epoch_keeps_the_raw_lines(tmp_path):
    lines = [json.dumps({"epoch": e, "val_acc": e / 10}) for e in (1, 2, 3)]
    _write(tmp_path / "m.jsonl", lines)
    kept = read_history_lines(tmp_path / "m.jsonl", max_epoch=2)
    assert [line for line, _ in kept] == lines[:2]
    assert [row["epoch"] for _, row in kept] == [1, 2]


def test_missing_history_is_empty(tmp_path):
    assert read_history(tmp_path) == []
    assert read_history_lines(tmp_path / "nothing.jsonl") == []
