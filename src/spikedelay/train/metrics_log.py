"""``metrics.jsonl`` (and optional TensorBoard) of a run, trimmed to the checkpoint on resume."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from spikedelay.atomic import atomic_write_bytes
from spikedelay.history import read_history_lines


class MetricsLog:
    """``metrics.jsonl`` plus optional TensorBoard; on resume, lines past the checkpoint go.

    ``enabled=False`` (ranks other than 0) keeps the history in memory and writes nothing.
    """

    def __init__(self, run_dir: Path, keep_epochs: int, tensorboard: bool = True,
                 enabled: bool = True):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.history: list[dict[str, Any]] = []
        self.tb = None
        if not enabled:
            return
        # Keep epochs 1..keep_epochs once each, in order; anything after them (a line of an
        # epoch redone after a kill, or half a line) goes.
        kept = read_history_lines(self.path, max_epoch=keep_epochs)
        atomic_write_bytes(self.path, "".join(f"{line}\n" for line, _ in kept).encode())
        self.history = [row for _, row in kept]
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception:  # tensorboard is an optional extra
                self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tb.add_scalar(key, value, row["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
