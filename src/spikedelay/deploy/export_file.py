"""Reading a spikedelay safetensors export: its JSON header and its arrays, one error if damaged.

Why its own module: both export formats (the feed-forward engine's, :mod:`.export`, and the
time-stepped engine's, :mod:`.stepped_export`) read files the same way, and each imports the
other's loader, so the shared reader lives below both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from spikedelay.errors import CheckpointError


def read_export(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(header, tensors)`` of an export file; a missing or damaged file is a CheckpointError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: exported model not found")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        header = json.loads(meta["spikedelay"])
    except Exception as err:  # safetensors raises several types for damaged files
        raise CheckpointError(f"{path}: not a spikedelay export: {err}") from None
    return header, tensors
