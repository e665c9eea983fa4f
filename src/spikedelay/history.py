"""Reading ``metrics.jsonl``, the per-epoch history of a run: one JSON object per line.

One reader for the trainer, which trims the file to its checkpoint on resume, and for
``spikedelay report``, which plots it. A valid history is epochs 1, 2, 3, … in order; the first
line that breaks the sequence (half a line from a kill, an epoch redone after a resume) ends it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def read_history_lines(path: Path, max_epoch: int | None = None) -> list[tuple[str, Row]]:
    """The valid lines of ``path`` with their parsed rows, at most up to epoch ``max_epoch``.

    A missing file is an empty history.
    """
    if not path.is_file():
        return []
    kept: list[tuple[str, Row]] = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            epoch = row["epoch"]
        except (ValueError, KeyError, TypeError):
            break
        if epoch != len(kept) + 1 or (max_epoch is not None and epoch > max_epoch):
            break
        kept.append((line, row))
    return kept


def read_history(run_dir: Path) -> list[Row]:
    """The per-epoch rows of the run in ``run_dir`` (empty if it has none yet)."""
    return [row for _, row in read_history_lines(Path(run_dir) / "metrics.jsonl")]
